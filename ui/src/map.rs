//! The service map as the page draws it, built from a view's snapshot:
//! nodes (the workloads table, with the labels the flows told), edges (the
//! edges table, with the drop reasons and the policies of their
//! connections), the namespaces for the picker, and the totals. A stream
//! sends it whole once, then only what changed ([`Delta`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use lumen_model::{Health, NodeKey, Query, Selection, Snapshot, Totals, Windows};
use serde::Serialize;
use serde_json::Value;

use crate::hub::View;
use crate::query::{kind_name, node_id, unit_name, ViewQuery};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapNode {
    pub id: String,
    /// `workload`, `pod`, ..., `reserved`, `world`, `ip`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// How `lumen top` names it (`shop/web`, `api.example.com (reserved:world)`).
    pub label: String,
    pub pods: Vec<String>,
    pub labels: Vec<String>,
    pub identities: Vec<u32>,
    pub flows: u64,
    pub flows_in: u64,
    pub flows_out: u64,
    pub dropped: u64,
    pub in_per_sec: f64,
    pub out_per_sec: f64,
    pub drops_per_sec: f64,
    pub drop_pct: f64,
    /// Flows in each of the last 60 seconds, oldest first (the sparkline).
    pub trend: Vec<u32>,
    pub last_seen_ms: u64,
}

/// A name and how often it was counted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapEdge {
    pub id: String,
    pub source: String,
    pub target: String,
    /// `80/TCP`, by number.
    pub ports: Vec<String>,
    pub ports_other: usize,
    pub flows: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub audit: u64,
    pub flows_per_sec: f64,
    pub drops_per_sec: f64,
    pub drop_pct: f64,
    pub health: Health,
    /// Drops by reason (`POLICY_DENIED`), most first.
    pub drop_reasons: Vec<Count>,
    /// The policies that denied (or would deny) its flows, most first
    /// (`CiliumNetworkPolicy shop/db-in`).
    pub policies: Vec<Count>,
    pub last_seen_ms: u64,
}

/// The whole map of a view at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapState {
    pub unit: &'static str,
    pub now_ms: u64,
    pub nodes: Vec<MapNode>,
    pub edges: Vec<MapEdge>,
    /// Every namespace of the view (for the picker), whatever is selected.
    pub namespaces: Vec<String>,
    pub totals: Totals,
    /// Entries the model had to evict (its tables are bounded).
    pub evicted: u64,
}

/// An edge's drop reasons and policies, by name.
type Why = (BTreeMap<String, u64>, BTreeMap<String, u64>);

fn merge(into: &mut BTreeMap<String, u64>, name: String, count: u64) {
    *into.entry(name).or_default() += count;
}

fn sorted(counts: BTreeMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = counts.into_iter().map(|(name, count)| Count { name, count }).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

/// The map of `view` for `query` (its namespaces) at `now`.
pub fn build(view: &View, query: &ViewQuery, now: SystemTime) -> MapState {
    let snapshot = view.model.snapshot(now, Windows::default());
    from_snapshot(&snapshot, view, query)
}

pub(crate) fn from_snapshot(s: &Snapshot, view: &View, query: &ViewQuery) -> MapState {
    let selection = Selection {
        namespaces: query.namespaces.clone(),
        node: None,
    };
    let select = |sort| Query {
        sort,
        selection: selection.clone(),
        ..Query::default()
    };
    let edges = s.edges.query(&select(None));
    // Drop reasons and policies per edge, from its connections.
    let mut why: HashMap<(&NodeKey, &NodeKey), Why> = HashMap::new();
    for c in &s.connections.rows {
        let (reasons, policies) = why.entry((&c.source, &c.destination)).or_default();
        for r in &c.drop_reasons {
            merge(reasons, r.key.to_string(), r.count);
        }
        for p in &c.policies {
            merge(policies, p.key.to_string(), p.count);
        }
    }
    let mut ends: BTreeSet<&NodeKey> = BTreeSet::new();
    let edges: Vec<MapEdge> = edges
        .rows
        .iter()
        .map(|e| {
            ends.insert(&e.source);
            ends.insert(&e.destination);
            let (reasons, policies) = why.remove(&(&e.source, &e.destination)).unwrap_or_default();
            let (source, target) = (node_id(&e.source), node_id(&e.destination));
            MapEdge {
                id: format!("{source}→{target}"),
                source,
                target,
                ports: e.ports.iter().map(|p| format!("{}/{}", p.port, p.protocol)).collect(),
                ports_other: e.ports_other,
                flows: e.flows,
                forwarded: e.forwarded,
                dropped: e.dropped,
                audit: e.audit,
                flows_per_sec: e.flows_per_sec,
                drops_per_sec: e.drops_per_sec,
                drop_pct: e.drop_pct,
                health: e.health,
                drop_reasons: sorted(reasons),
                policies: sorted(policies),
                last_seen_ms: e.last_seen_ms,
            }
        })
        .collect();
    let nodes = s
        .workloads
        .rows
        .iter()
        .filter(|w| {
            let ns = &query.namespaces;
            ns.is_empty() || ns.contains(&w.node.namespace) || ends.contains(&w.node)
        })
        .map(|w| {
            let details = view.details.get(&w.node).cloned().unwrap_or_default();
            MapNode {
                id: node_id(&w.node),
                kind: kind_name(w.node.kind),
                namespace: w.node.namespace.clone(),
                name: w.node.name.clone(),
                label: w.node.to_string(),
                pods: w.pods.clone(),
                labels: details.labels,
                identities: details.identities,
                flows: w.flows,
                flows_in: w.flows_in,
                flows_out: w.flows_out,
                dropped: w.dropped,
                in_per_sec: w.in_per_sec,
                out_per_sec: w.out_per_sec,
                drops_per_sec: w.drops_per_sec,
                drop_pct: w.drop_pct,
                trend: w.trend.clone(),
                last_seen_ms: w.last_seen_ms,
            }
        })
        .collect();
    let namespaces: BTreeSet<String> = s
        .workloads
        .rows
        .iter()
        .map(|w| w.node.namespace.clone())
        .filter(|n| !n.is_empty())
        .collect();
    MapState {
        unit: unit_name(s.unit),
        now_ms: s.now_ms,
        nodes,
        edges,
        namespaces: namespaces.into_iter().collect(),
        totals: s.totals.clone(),
        evicted: s.connections.evicted + s.workloads.evicted,
    }
}

/// What changed in the map since the last message of a stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Delta {
    pub nodes: Vec<Value>,
    pub nodes_removed: Vec<String>,
    pub edges: Vec<Value>,
    pub edges_removed: Vec<String>,
}

/// A stream's memory of what it sent, by id.
#[derive(Default)]
pub struct Sent {
    nodes: HashMap<String, Value>,
    edges: HashMap<String, Value>,
}

fn diff<T: Serialize>(
    items: &[T],
    id: impl Fn(&T) -> &str,
    sent: &mut HashMap<String, Value>,
) -> (Vec<Value>, Vec<String>) {
    let mut changed = Vec::new();
    let mut now: HashMap<String, Value> = HashMap::with_capacity(items.len());
    for item in items {
        let value = serde_json::to_value(item).expect("map items serialise");
        if sent.get(id(item)) != Some(&value) {
            changed.push(value.clone());
        }
        now.insert(id(item).to_string(), value);
    }
    let mut removed: Vec<String> = sent.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
    removed.sort();
    *sent = now;
    (changed, removed)
}

impl Sent {
    /// The changes from what was sent to `map`, which is then what was sent.
    pub fn delta(&mut self, map: &MapState) -> Delta {
        let (nodes, nodes_removed) = diff(&map.nodes, |n| &n.id, &mut self.nodes);
        let (edges, edges_removed) = diff(&map.edges, |e| &e.id, &mut self.edges);
        Delta {
            nodes,
            nodes_removed,
            edges,
            edges_removed,
        }
    }
}

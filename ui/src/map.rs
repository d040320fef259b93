//! The service map as the page draws it, built from a view's snapshot:
//! nodes (the workloads table, with the labels the flows told), edges (the
//! edges table, with the drop reasons and the policies of their
//! connections), the namespaces for the picker, and the totals. A stream
//! sends it whole once, then what changed ([`Delta`]), damped: a number
//! that moves a little is sent a few seconds later ([`Sent::delta`]).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::time::SystemTime;

use lumen_model::{Health, NodeKey, Query, Selection, Snapshot, Totals, Windows};
use serde::Serialize;
use serde_json::Value;

use crate::hub::View;
use crate::query::{kind_name, node_id, unit_name, Select, ViewQuery};

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
    // A view of the last N minutes shows what was seen that recently.
    let seen_since = query
        .last
        .map_or(0, |last| s.now_ms.saturating_sub(last.as_millis() as u64));
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
        .filter(|e| e.last_seen_ms >= seen_since)
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
            let shown = (ns.is_empty() || ns.contains(&w.node.namespace)) && w.last_seen_ms >= seen_since;
            shown || ends.contains(&w.node)
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

/// A rate of a node or edge is sent again when it moves by this share of
/// what was sent (or to or from zero), a drop percentage when it moves by
/// [`PERCENT_STEP`] points...
pub const STEP: f64 = 0.05;
pub const PERCENT_STEP: f64 = 1.0;
/// ... and anything else that changed (counters, the sparkline) about this
/// long after it was sent: between half and one and a half times, spread by
/// id, so that the refreshes of a large map do not all fall in one message.
pub const REFRESH_MS: u64 = 5_000;

/// A number the map or its labels show.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shows {
    Rate(f64),
    Percent(f64),
}

impl Shows {
    fn moved_from(self, shown: Shows) -> bool {
        match (shown, self) {
            (Shows::Rate(s), Shows::Rate(n)) => s != n && ((s == 0.0) != (n == 0.0) || (n - s).abs() >= STEP * s.abs()),
            (Shows::Percent(s), Shows::Percent(n)) => (n - s).abs() >= PERCENT_STEP,
            _ => true,
        }
    }
}

/// A node or edge as the stream damps it: what it is drawn from (sent as
/// soon as it changes), the rates and percentages shown (sent on a step),
/// and the rest (sent when due). Without the damping a busy map sent every
/// edge twice a second (its counters always move), about 1 MB a message
/// at 2,000 edges, and the page spent its time parsing it.
trait Damped: Serialize {
    fn id(&self) -> &str;
    /// A hash of what the map draws it from and what its panel lists.
    fn look(&self) -> u64;
    fn shows(&self) -> Vec<Shows>;
}

fn hash_of(v: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn names(counts: &[Count]) -> impl Iterator<Item = &str> {
    counts.iter().map(|c| c.name.as_str())
}

impl Damped for MapEdge {
    fn id(&self) -> &str {
        &self.id
    }

    fn look(&self) -> u64 {
        let why: Vec<&str> = names(&self.drop_reasons)
            .chain([""])
            .chain(names(&self.policies))
            .collect();
        hash_of((
            (&self.source, &self.target, &self.ports, self.ports_other),
            (self.health, self.dropped > 0, self.audit > 0),
            why,
        ))
    }

    fn shows(&self) -> Vec<Shows> {
        vec![Shows::Rate(self.flows_per_sec), Shows::Percent(self.drop_pct)]
    }
}

impl Damped for MapNode {
    fn id(&self) -> &str {
        &self.id
    }

    fn look(&self) -> u64 {
        hash_of((
            (self.kind, &self.namespace, &self.name, &self.label),
            (&self.pods, &self.labels, &self.identities, self.dropped > 0),
        ))
    }

    fn shows(&self) -> Vec<Shows> {
        vec![
            Shows::Rate(self.in_per_sec),
            Shows::Rate(self.out_per_sec),
            Shows::Percent(self.drop_pct),
        ]
    }
}

/// What a stream last sent of one node or edge.
struct Shown {
    value: Value,
    look: u64,
    shows: Vec<Shows>,
    /// When it is sent again if it changed at all (ms, the map's clock).
    due_ms: u64,
}

/// A stream's memory of what it sent, by id.
#[derive(Default)]
pub struct Sent {
    nodes: HashMap<String, Shown>,
    edges: HashMap<String, Shown>,
}

/// The items to send of `items` (and the ids no longer there), given what
/// was `sent`; `exact` says which are sent whenever they change at all.
fn diff<T: Damped>(
    items: &[T],
    exact: impl Fn(&T) -> bool,
    now_ms: u64,
    sent: &mut HashMap<String, Shown>,
) -> (Vec<Value>, Vec<String>) {
    let mut changed = Vec::new();
    let mut now: HashMap<String, Shown> = HashMap::with_capacity(items.len());
    for item in items {
        let (look, shows) = (item.look(), item.shows());
        let send = match sent.remove(item.id()) {
            None => Some(serde_json::to_value(item).expect("map items serialise")),
            Some(shown) => {
                let due = exact(item) || now_ms >= shown.due_ms;
                let moved = shows.iter().zip(&shown.shows).any(|(n, s)| n.moved_from(*s));
                let value = (due || moved || shown.look != look)
                    .then(|| serde_json::to_value(item).expect("map items serialise"))
                    .filter(|v| *v != shown.value);
                if value.is_none() {
                    now.insert(item.id().to_string(), shown);
                }
                value
            }
        };
        if let Some(value) = send {
            // Between half and one and a half REFRESH_MS, by id.
            let spread = REFRESH_MS / 2 + hash_of(item.id()) % REFRESH_MS;
            let shown = Shown {
                value: value.clone(),
                look,
                shows,
                due_ms: now_ms + spread,
            };
            changed.push(value);
            now.insert(item.id().to_string(), shown);
        }
    }
    let mut removed: Vec<String> = sent.drain().map(|(k, _)| k).collect();
    removed.sort();
    *sent = now;
    (changed, removed)
}

impl Sent {
    /// What to send of `map` given what was sent, which `map` then updates:
    /// new and removed nodes and edges, those whose look changed, whose
    /// rates or percentages moved a step, or that changed at all and are due; and
    /// the selected node or edge of `select` whenever it changes.
    pub fn delta(&mut self, map: &MapState, select: &Select) -> Delta {
        let (node, edge) = match select {
            Select::Nothing => (None, None),
            Select::Node(n) => (Some(node_id(n)), None),
            Select::Edge(from, to) => (None, Some((node_id(from), node_id(to)))),
        };
        let (nodes, nodes_removed) = diff(
            &map.nodes,
            |n| node.as_deref() == Some(n.id.as_str()),
            map.now_ms,
            &mut self.nodes,
        );
        let (edges, edges_removed) = diff(
            &map.edges,
            |e| edge.as_ref().is_some_and(|(s, t)| *s == e.source && *t == e.target),
            map.now_ms,
            &mut self.edges,
        );
        Delta {
            nodes,
            nodes_removed,
            edges,
            edges_removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use lumen_model::{NodeKind, Totals};

    use super::*;

    fn edge(from: &str, to: &str, flows: u64, per_sec: f64) -> MapEdge {
        MapEdge {
            id: format!("{from}→{to}"),
            source: from.to_string(),
            target: to.to_string(),
            ports: vec!["8080/TCP".to_string()],
            ports_other: 0,
            flows,
            forwarded: flows,
            dropped: 0,
            audit: 0,
            flows_per_sec: per_sec,
            drops_per_sec: 0.0,
            drop_pct: 0.0,
            health: Health::Forwarded,
            drop_reasons: Vec::new(),
            policies: Vec::new(),
            last_seen_ms: 0,
        }
    }

    fn map(now_ms: u64, edges: Vec<MapEdge>) -> MapState {
        MapState {
            unit: "workload",
            now_ms,
            nodes: Vec::new(),
            edges,
            namespaces: Vec::new(),
            totals: Totals::default(),
            evicted: 0,
        }
    }

    fn ids(values: &[Value]) -> Vec<&str> {
        values.iter().map(|v| v["id"].as_str().unwrap()).collect()
    }

    const A: &str = "workload|shop|a";
    const B: &str = "workload|shop|b";
    const C: &str = "workload|shop|c";

    #[test]
    fn small_moves_wait_until_due_while_new_looks_and_big_moves_go_at_once() {
        let mut sent = Sent::default();
        let t = 1_000_000;
        let first = sent.delta(
            &map(t, vec![edge(A, B, 1000, 100.0), edge(B, C, 1000, 100.0)]),
            &Select::Nothing,
        );
        assert_eq!(ids(&first.edges), [format!("{A}→{B}"), format!("{B}→{C}")]);

        // 4 % more flows and rate: below the step, not due yet.
        let small = || vec![edge(A, B, 1040, 104.0), edge(B, C, 1040, 104.0)];
        let quiet = sent.delta(&map(t + REFRESH_MS / 2 - 1, small()), &Select::Nothing);
        assert_eq!(quiet, Delta::default());

        // A drop changes how A→B is drawn; B→C's rate moves by 5 %.
        let mut dropped = edge(A, B, 1041, 104.0);
        dropped.dropped = 1;
        dropped.health = Health::SomeDrops;
        let next = sent.delta(
            &map(t + REFRESH_MS / 2, vec![dropped.clone(), edge(B, C, 1050, 105.0)]),
            &Select::Nothing,
        );
        assert_eq!(ids(&next.edges), [format!("{A}→{B}"), format!("{B}→{C}")]);
        assert_eq!(next.edges[0]["health"], "some-drops");
        assert_eq!(next.edges[1]["flows_per_sec"], 105.0);

        // A small move is sent once due, at the latest 1.5 × REFRESH_MS later.
        let mut later = dropped.clone();
        later.flows = 1042;
        let wait = sent.delta(
            &map(
                t + REFRESH_MS / 2 + REFRESH_MS / 2 - 1,
                vec![later.clone(), edge(B, C, 1050, 105.0)],
            ),
            &Select::Nothing,
        );
        assert_eq!(wait, Delta::default(), "not due before half of REFRESH_MS");
        let due = sent.delta(
            &map(
                t + REFRESH_MS / 2 + REFRESH_MS * 3 / 2,
                vec![later, edge(B, C, 1050, 105.0)],
            ),
            &Select::Nothing,
        );
        assert_eq!(ids(&due.edges), [format!("{A}→{B}")], "B→C did not change: not sent");
        assert_eq!(due.edges[0]["flows"], 1042);
    }

    #[test]
    fn the_selected_edge_goes_on_every_change_and_removals_are_listed() {
        let mut sent = Sent::default();
        let select = Select::Edge(
            NodeKey::new(NodeKind::Workload, "shop", "a"),
            NodeKey::new(NodeKind::Workload, "shop", "b"),
        );
        sent.delta(&map(0, vec![edge(A, B, 1000, 100.0), edge(B, C, 1000, 100.0)]), &select);
        let next = sent.delta(&map(1, vec![edge(A, B, 1001, 100.0), edge(B, C, 1001, 100.0)]), &select);
        assert_eq!(ids(&next.edges), [format!("{A}→{B}")]);
        assert_eq!(next.edges[0]["flows"], 1001);
        let unchanged = sent.delta(&map(2, vec![edge(A, B, 1001, 100.0)]), &select);
        assert_eq!(
            unchanged,
            Delta {
                edges_removed: vec![format!("{B}→{C}")],
                ..Delta::default()
            },
            "the selected edge is not sent again unchanged"
        );
    }
}

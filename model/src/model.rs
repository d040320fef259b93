//! The fold: flows, node status and lost events in; snapshots out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lumen_proto::flow::{Flow, LostEvent, Verdict};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::prost_types::Timestamp;
use lumen_proto::relay::NodeStatusEvent;
use serde::Serialize;

use crate::connections::{self, ConnKey, Connection, ConnectionRow, EdgeRow};
use crate::drops::{drop_reason, responsible, DropTables, Drops, Reason};
use crate::key::{
    node_key, orient, End, KeyMemo, NodeKey, NodeKind, Oriented, PolicyRef, Protocol, Shared, Side, Unit,
};
use crate::lru::Lru;
use crate::nodes::{LossRow, Losses, NodeRow, Nodes, Usage};
use crate::table::Table;
use crate::window::{millis, Clock, Series, Windows, NANOS};
use crate::workloads::{self, Workload, WorkloadRow};

/// The model's unit and capacities. Memory is bounded by the capacities
/// alone, whatever the flow rate: roughly 1 KiB per connection, 2 KiB per
/// workload (with its pods), 0.7 KiB per cluster node, 0.35 KiB per drop
/// entry and 0.15 KiB per endpoint IP (with names of usual length): about
/// 15 MiB with every table full at the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub unit: Unit,
    /// Connections kept (source, destination, port, protocol).
    pub connections: usize,
    /// Nodes of the unit kept in the workloads table.
    pub workloads: usize,
    /// Entries of each drop table (by reason, by policy, by destination).
    pub drops: usize,
    /// Cluster nodes kept.
    pub nodes: usize,
    /// Endpoint IPs whose cluster node is remembered (for [`Unit::Node`]).
    pub endpoint_nodes: usize,
    /// Pods listed per workload (the most recent).
    pub pods_per_workload: usize,
    /// Drop reasons counted by name per connection (the rest as other).
    pub reasons_per_connection: usize,
    /// Policies counted by name per connection (the rest as other).
    pub policies_per_connection: usize,
    /// Ports listed per edge (those with the most flows).
    pub ports_per_edge: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unit: Unit::default(),
            connections: 5_000,
            workloads: 2_000,
            drops: 1_000,
            nodes: 1_000,
            endpoint_nodes: 10_000,
            pods_per_workload: 16,
            reasons_per_connection: 8,
            policies_per_connection: 8,
            ports_per_edge: 16,
        }
    }
}

/// What every table reads of one flow, worked out once.
pub(crate) struct Seen {
    /// Unix nanoseconds.
    pub t: u64,
    pub verdict: Verdict,
    /// For dropped flows.
    pub reason: Option<Reason>,
    /// For dropped and audited flows: who denied, or would deny.
    pub policies: Vec<PolicyRef>,
}

impl Seen {
    pub(crate) fn sec(&self) -> u64 {
        self.t / NANOS
    }
}

fn timestamp_ns(t: &Timestamp) -> u64 {
    let secs = u64::try_from(t.seconds).unwrap_or(0);
    secs.saturating_mul(NANOS)
        .saturating_add(u64::try_from(t.nanos).unwrap_or(0))
}

fn system_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Flows folded into bounded tables, with time supplied by the caller.
///
/// [`Model::ingest`] takes the time of each flow from the flow; snapshots
/// take `now` from the caller, so the same flows and the same `now` give the
/// same snapshot. A flow is counted as it is reported: a flow that two nodes
/// observe (one at each end) counts twice, as in Hubble's own metrics; the
/// counts are those of the stream the consumer asked for.
pub struct Model {
    config: Config,
    connections: Lru<ConnKey, Connection>,
    workloads: Lru<Shared, Workload>,
    drops: Drops,
    nodes: Nodes,
    losses: Losses,
    totals: Series<2>,
    counts: Counts,
    first: Option<u64>,
    latest: Option<u64>,
    memo: KeyMemo,
}

#[derive(Default)]
struct Counts {
    flows: u64,
    forwarded: u64,
    dropped: u64,
    audit: u64,
}

impl Model {
    pub fn new(config: Config) -> Model {
        Model {
            connections: Lru::new(config.connections),
            workloads: Lru::new(config.workloads),
            drops: Drops::new(config.drops),
            nodes: Nodes::new(&config),
            losses: Losses::default(),
            totals: Series::default(),
            counts: Counts::default(),
            first: None,
            latest: None,
            memo: KeyMemo::default(),
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Aggregates by `unit` from now on. The tables keyed by nodes
    /// (connections, workloads, drops by destination) start empty: they
    /// cannot be re-keyed without the flows. A consumer showing several
    /// units at once keeps a model per unit.
    pub fn set_unit(&mut self, unit: Unit) {
        if unit == self.config.unit {
            return;
        }
        self.config.unit = unit;
        self.connections.clear();
        self.workloads.clear();
        self.drops.clear_destinations();
    }

    /// The time of the newest flow or event taken in, if any: a `now` for
    /// snapshots of recorded flows (`--input-file`), which a clock would put
    /// long after them.
    pub fn latest(&self) -> Option<SystemTime> {
        self.latest.map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
    }

    /// Counts one flow at its own time (at the newest time seen if it has
    /// none). A flow that names neither end (no endpoint, no IP) counts in
    /// the totals and for its cluster node only.
    pub fn ingest(&mut self, flow: &Flow) {
        let _ = self.ingest_at(flow, None);
    }

    /// Takes in one item of a GetFlows stream: a flow, a relay's node status
    /// event, or lost events. Items without a time of their own take the
    /// response's, else the newest time seen.
    pub fn ingest_response(&mut self, response: &GetFlowsResponse) {
        self.ingest_response_then(response, |_, _| {});
    }

    /// [`Model::ingest_response`], then `ends` with the source and the
    /// destination a flow counted for under the unit (a reply turned
    /// around, as [`Model::connection_of`] gives them), when it names one.
    pub fn ingest_response_then(&mut self, response: &GetFlowsResponse, ends: impl FnOnce(&NodeKey, &NodeKey)) {
        let at = response.time.as_ref().map(timestamp_ns);
        match &response.response_types {
            Some(ResponseTypes::Flow(flow)) => {
                if let Some((source, destination)) = self.ingest_at(flow, at) {
                    ends(&source, &destination);
                }
            }
            Some(ResponseTypes::NodeStatus(event)) => self.status_at(event, self.time(at)),
            Some(ResponseTypes::LostEvents(event)) => self.lost_at(event, &response.node_name, self.time(at)),
            None => {}
        }
    }

    /// Takes in a relay's node status event, received at `at`.
    pub fn node_status(&mut self, event: &NodeStatusEvent, at: SystemTime) {
        self.status_at(event, system_ns(at));
    }

    /// Takes in lost events reported by `node` (empty if none said), at `at`.
    pub fn lost_events(&mut self, event: &LostEvent, node: &str, at: SystemTime) {
        self.lost_at(event, node, system_ns(at));
    }

    fn time(&self, at: Option<u64>) -> u64 {
        at.or(self.latest).unwrap_or(0)
    }

    fn advance(&mut self, t: u64) {
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
    }

    fn status_at(&mut self, event: &NodeStatusEvent, t: u64) {
        self.advance(t);
        self.nodes.status(event, t);
    }

    fn lost_at(&mut self, event: &LostEvent, node: &str, t: u64) {
        self.advance(t);
        self.losses.record(event, t);
        self.nodes.lost(node, event.num_events_lost);
    }

    /// Counts `flow`; the ends it counted for, if it names one.
    fn ingest_at(&mut self, flow: &Flow, fallback: Option<u64>) -> Option<(Shared, Shared)> {
        let t = flow
            .time
            .as_ref()
            .map(timestamp_ns)
            .unwrap_or_else(|| self.time(fallback));
        self.advance(t);
        let verdict = Verdict::try_from(flow.verdict).unwrap_or(Verdict::Unknown);
        let blamed = matches!(verdict, Verdict::Dropped | Verdict::Audit);
        let seen = Seen {
            t,
            verdict,
            reason: (verdict == Verdict::Dropped).then(|| drop_reason(flow)),
            policies: if blamed { responsible(flow) } else { Vec::new() },
        };
        let dropped = u32::from(verdict == Verdict::Dropped);
        self.totals.add(seen.sec(), [1, dropped]);
        self.counts.flows += 1;
        match verdict {
            Verdict::Forwarded => self.counts.forwarded += 1,
            Verdict::Dropped => self.counts.dropped += 1,
            Verdict::Audit => self.counts.audit += 1,
            _ => {}
        }
        self.nodes.record(&flow.node_name, &seen);

        let conn = orient(flow);
        self.nodes.learn(&conn, &flow.node_name);
        let (source, destination) = self.shared_ends(&conn, &flow.node_name, t / NANOS)?;

        let config = &self.config;
        if source == destination {
            let w = self.workloads.touch(&source, || Workload::new(config));
            w.record(&seen, true, true);
            w.add_pod(&source, &conn.source);
            w.add_pod(&source, &conn.destination);
        } else {
            let w = self.workloads.touch(&source, || Workload::new(config));
            w.record(&seen, false, true);
            w.add_pod(&source, &conn.source);
            let w = self.workloads.touch(&destination, || Workload::new(config));
            w.record(&seen, true, false);
            w.add_pod(&destination, &conn.destination);
        }
        self.drops.record(&seen, &destination);
        let ends = (source.clone(), destination.clone());
        let key = ConnKey {
            source,
            destination,
            port: conn.port,
            protocol: conn.protocol,
        };
        self.connections
            .touch(&key, || Connection::new(config))
            .record(&seen, conn.local);
        Some(ends)
    }

    /// The connection `flow` counts for under the current unit: source,
    /// destination, service port and protocol, a reply turned around. For
    /// consumers that list the flows of a row (a drill-down's recent flows).
    /// `None` for a flow that names neither end.
    pub fn connection_of(&self, flow: &Flow) -> Option<(NodeKey, NodeKey, u32, Protocol)> {
        let conn = orient(flow);
        let (source, destination) = self.ends(&conn, &flow.node_name)?;
        Some((source, destination, conn.port, conn.protocol))
    }

    /// The nodes of the two ends under the unit; `node` observed the flow.
    /// `None` when neither end has an endpoint or an IP.
    fn ends(&self, conn: &Oriented<'_>, node: &str) -> Option<(NodeKey, NodeKey)> {
        let unit = self.config.unit;
        let host = |side, end| host_of(unit, &self.nodes, conn, node, side, end);
        let source = node_key(unit, &conn.source, host(&conn.source, End::Source));
        let destination = node_key(unit, &conn.destination, host(&conn.destination, End::Destination));
        (!unnamed(&source) || !unnamed(&destination)).then_some((source, destination))
    }

    /// [`Model::ends`] through the key memo, at second `sec` of flow time.
    fn shared_ends(&mut self, conn: &Oriented<'_>, node: &str, sec: u64) -> Option<(Shared, Shared)> {
        let unit = self.config.unit;
        let (nodes, memo) = (&self.nodes, &mut self.memo);
        let host = |side, end| host_of(unit, nodes, conn, node, side, end);
        let source = memo.key(unit, &conn.source, host(&conn.source, End::Source), sec);
        let destination = memo.key(unit, &conn.destination, host(&conn.destination, End::Destination), sec);
        (!unnamed(&source) || !unnamed(&destination)).then_some((source, destination))
    }

    /// Every table as of `now`, with rates over `windows`.
    pub fn snapshot(&self, now: SystemTime, windows: Windows) -> Snapshot {
        let now_ns = system_ns(now);
        let clock = Clock {
            now: now_ns / NANOS,
            windows,
        };
        let recent = self.totals.sum(windows.short, clock.now);
        let peers = connections::top_peers(&self.connections, &clock);
        Snapshot {
            unit: self.config.unit,
            now_ms: millis(now_ns),
            windows,
            totals: Totals {
                flows: self.counts.flows,
                forwarded: self.counts.forwarded,
                dropped: self.counts.dropped,
                audit: self.counts.audit,
                lost_events: self.losses.total(),
                flows_per_sec: clock.rate(recent[0]),
                drops_per_sec: clock.rate(recent[1]),
                history: self.totals.history(0, clock.now),
                first_ms: self.first.map(millis),
                latest_ms: self.latest.map(millis),
            },
            connections: connections::rows(&self.connections, &clock),
            edges: connections::edges(&self.connections, &clock, self.config.ports_per_edge),
            workloads: workloads::rows(&self.workloads, &clock, &peers),
            drops: self.drops.tables(&clock),
            nodes: self.nodes.rows(&clock),
            losses: self.losses.rows(&clock),
            endpoint_nodes: self.nodes.host_usage(),
        }
    }
}

fn unnamed(k: &NodeKey) -> bool {
    k.kind == NodeKind::Ip && k.name.is_empty()
}

/// The cluster node an end runs on, which only [`Unit::Node`] asks: the
/// observing node for its own end, else what the model learnt.
fn host_of<'a>(
    unit: Unit,
    nodes: &'a Nodes,
    conn: &Oriented<'_>,
    node: &'a str,
    side: &Side<'_>,
    end: End,
) -> Option<&'a str> {
    match unit {
        Unit::Node if conn.local == Some(end) && !node.is_empty() => Some(node),
        Unit::Node => nodes.host(side),
        _ => None,
    }
}

/// Everything the consumers render, at one instant. Rows are in key order;
/// [`Table::query`] sorts, selects and cuts them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    pub unit: Unit,
    pub now_ms: u64,
    pub windows: Windows,
    pub totals: Totals,
    pub connections: Table<ConnectionRow>,
    /// The connections grouped by (source, destination): the service map.
    /// Its capacity and evictions are the connections'.
    pub edges: Table<EdgeRow>,
    pub workloads: Table<WorkloadRow>,
    pub drops: DropTables,
    pub nodes: Table<NodeRow>,
    /// Every place that lost events.
    pub losses: Vec<LossRow>,
    /// The IP → cluster node memory of [`Unit::Node`].
    pub endpoint_nodes: Usage,
}

/// The whole stream: the header of `lumen top`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub flows: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub audit: u64,
    pub lost_events: u64,
    /// Per second over the short window.
    pub flows_per_sec: f64,
    pub drops_per_sec: f64,
    /// Flows in each of the last 60 completed seconds, oldest first: the
    /// header's sparkline.
    pub history: Vec<u32>,
    /// The oldest and newest times taken in.
    pub first_ms: Option<u64>,
    pub latest_ms: Option<u64>,
}

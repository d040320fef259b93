//! Cluster nodes (each flow's `node_name`, and the relay's node status
//! events), where endpoints run, and lost events.

use std::cmp::Ordering;

use lumen_proto::flow::{LostEvent, LostEventSource, Verdict};
use lumen_proto::relay::{NodeState, NodeStatusEvent};
use serde::{Deserialize, Serialize};

use crate::key::{End, Oriented, Side};
use crate::lru::Lru;
use crate::model::{Config, Seen};
use crate::table::{by_f64, Row, Selection, Table};
use crate::window::{millis, Clock, Series};

#[derive(Default)]
struct NodeEntry {
    /// Lanes: flows, drops.
    series: Series<2>,
    flows: u64,
    dropped: u64,
    lost: u64,
    last_seen: Option<u64>,
    state: i32,
    message: String,
    state_since: Option<u64>,
}

/// How full a table without rows of its own is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub entries: usize,
    pub capacity: usize,
    pub evicted: u64,
}

pub(crate) struct Nodes {
    table: Lru<String, NodeEntry>,
    /// Endpoint IP → the node that observed it as its own end of a flow.
    hosts: Lru<String, String>,
}

impl Nodes {
    pub(crate) fn new(config: &Config) -> Nodes {
        Nodes {
            table: Lru::new(config.nodes),
            hosts: Lru::new(config.endpoint_nodes),
        }
    }

    /// Counts a flow for the node that observed it.
    pub(crate) fn record(&mut self, node: &str, seen: &Seen) {
        if node.is_empty() {
            return;
        }
        let dropped = seen.verdict == Verdict::Dropped;
        let n = self.table.touch(node, NodeEntry::default);
        n.series.add(seen.sec(), [1, u32::from(dropped)]);
        n.flows += 1;
        n.dropped += u64::from(dropped);
        n.last_seen = n.last_seen.max(Some(seen.t));
    }

    /// Remembers the IP of the end of `flow` that is local to `node`, the
    /// node that observed it.
    pub(crate) fn learn(&mut self, flow: &Oriented<'_>, node: &str) {
        let local = match flow.local {
            Some(End::Source) => &flow.source,
            Some(End::Destination) => &flow.destination,
            None => return,
        };
        if !node.is_empty() && !local.ip.is_empty() {
            let host = self.hosts.touch(local.ip, String::new);
            if host != node {
                node.clone_into(host);
            }
        }
    }

    /// The node an endpoint runs on: the node that last reported its IP as
    /// its own (see [`Nodes::learn`]).
    pub(crate) fn host(&self, side: &Side<'_>) -> Option<&str> {
        self.hosts.get(side.ip).map(String::as_str)
    }

    pub(crate) fn status(&mut self, event: &NodeStatusEvent, t: u64) {
        for name in &event.node_names {
            let n = self.table.touch(name.as_str(), NodeEntry::default);
            n.state = event.state_change;
            event.message.clone_into(&mut n.message);
            n.state_since = Some(t);
        }
    }

    pub(crate) fn lost(&mut self, node: &str, events: u64) {
        if !node.is_empty() {
            self.table.touch(node, NodeEntry::default).lost += events;
        }
    }

    pub(crate) fn rows(&self, clock: &Clock) -> Table<NodeRow> {
        let rows = self
            .table
            .iter()
            .map(|(name, n)| {
                let recent = n.series.sum(clock.windows.short, clock.now);
                NodeRow {
                    name: name.clone(),
                    state: NodeState::try_from(n.state)
                        .unwrap_or(NodeState::UnknownNodeState)
                        .as_str_name(),
                    message: n.message.clone(),
                    state_since_ms: n.state_since.map(millis),
                    flows: n.flows,
                    dropped: n.dropped,
                    flows_per_sec: clock.rate(recent[0]),
                    drops_per_sec: clock.rate(recent[1]),
                    lost_events: n.lost,
                    last_seen_ms: n.last_seen.map(millis),
                }
            })
            .collect();
        Table::new(rows, self.table.capacity(), self.table.evicted())
    }

    pub(crate) fn host_usage(&self) -> Usage {
        Usage {
            entries: self.hosts.len(),
            capacity: self.hosts.capacity(),
            evicted: self.hosts.evicted(),
        }
    }
}

/// A cluster node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeRow {
    pub name: String,
    /// The relay's last word on it (`NODE_CONNECTED`); `UNKNOWN_NODE_STATE`
    /// when it has said nothing (a single observer, or no relay yet).
    pub state: &'static str,
    /// The detail that came with the state (an error).
    pub message: String,
    pub state_since_ms: Option<u64>,
    pub flows: u64,
    pub dropped: u64,
    pub flows_per_sec: f64,
    pub drops_per_sec: f64,
    /// Events lost on or for this node.
    pub lost_events: u64,
    /// The newest of its flows; none if it sent none.
    pub last_seen_ms: Option<u64>,
}

/// Columns of [`NodeRow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeColumn {
    Name,
    State,
    Flows,
    Dropped,
    FlowsPerSec,
    DropsPerSec,
    LostEvents,
    LastSeen,
}

impl Row for NodeRow {
    type Column = NodeColumn;

    fn compare(&self, other: &Self, column: NodeColumn) -> Ordering {
        use NodeColumn as C;
        match column {
            C::Name => self.name.cmp(&other.name),
            C::State => self.state.cmp(other.state),
            C::Flows => self.flows.cmp(&other.flows),
            C::Dropped => self.dropped.cmp(&other.dropped),
            C::FlowsPerSec => by_f64(self.flows_per_sec, other.flows_per_sec),
            C::DropsPerSec => by_f64(self.drops_per_sec, other.drops_per_sec),
            C::LostEvents => self.lost_events.cmp(&other.lost_events),
            C::LastSeen => self.last_seen_ms.cmp(&other.last_seen_ms),
        }
    }

    fn compare_key(&self, other: &Self) -> Ordering {
        self.name.cmp(&other.name)
    }

    /// Cluster nodes have no namespace, and are not endpoints: every
    /// selection keeps them.
    fn selected(&self, _: &Selection) -> bool {
        true
    }
}

const SOURCES: [LostEventSource; 4] = [
    LostEventSource::UnknownLostEventSource,
    LostEventSource::PerfEventRingBuffer,
    LostEventSource::ObserverEventsQueue,
    LostEventSource::HubbleRingBuffer,
];

#[derive(Default)]
struct Loss {
    series: Series<1>,
    events: u64,
    last_seen: Option<u64>,
}

/// Lost events by where they were lost. A source this build does not know
/// counts as unknown, so the table has four entries at most.
#[derive(Default)]
pub(crate) struct Losses {
    by_source: [Loss; SOURCES.len()],
}

impl Losses {
    pub(crate) fn record(&mut self, event: &LostEvent, t: u64) {
        let i = SOURCES.iter().position(|s| *s as i32 == event.source).unwrap_or(0);
        let loss = &mut self.by_source[i];
        loss.series.add(
            t / crate::window::NANOS,
            [u32::try_from(event.num_events_lost).unwrap_or(u32::MAX)],
        );
        loss.events += event.num_events_lost;
        loss.last_seen = loss.last_seen.max(Some(t));
    }

    pub(crate) fn total(&self) -> u64 {
        self.by_source.iter().map(|l| l.events).sum()
    }

    /// Every source that lost events.
    pub(crate) fn rows(&self, clock: &Clock) -> Vec<LossRow> {
        SOURCES
            .iter()
            .zip(&self.by_source)
            .filter(|(_, l)| l.events > 0)
            .map(|(source, l)| LossRow {
                source: source.as_str_name(),
                events: l.events,
                events_per_sec: clock.rate(l.series.sum(clock.windows.short, clock.now)[0]),
                last_seen_ms: l.last_seen.map(millis),
            })
            .collect()
    }
}

/// Events lost at one place: shown, so that a quiet dashboard is never
/// mistaken for a quiet cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LossRow {
    /// Hubble's name of where (`PERF_EVENT_RING_BUFFER`).
    pub source: &'static str,
    pub events: u64,
    /// Per second over the short window.
    pub events_per_sec: f64,
    pub last_seen_ms: Option<u64>,
}

//! Per node (a workload, pod, identity, ... under the unit): traffic in and
//! out, drops, the pods seen, and a one-minute trend: `lumen top`'s first tab.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use lumen_proto::flow::Verdict;
use serde::{Deserialize, Serialize};

use crate::key::{namespace, NodeKey, Shared, Side};
use crate::lru::{Lru, RecentSet};
use crate::model::{Config, Seen};
use crate::table::{by_f64, drop_pct, recent_or_total, Row, Selection, Table};
use crate::window::{millis, Clock, Series};

/// Lanes of a workload's series.
const FLOWS: usize = 0;
const IN: usize = 1;
const OUT: usize = 2;
const DROPS: usize = 3;

pub(crate) struct Workload {
    series: Series<4>,
    flows: u64,
    flows_in: u64,
    flows_out: u64,
    dropped: u64,
    first_seen: u64,
    last_seen: u64,
    pods: RecentSet,
}

impl Workload {
    pub(crate) fn new(config: &Config) -> Workload {
        Workload {
            series: Series::default(),
            flows: 0,
            flows_in: 0,
            flows_out: 0,
            dropped: 0,
            first_seen: u64::MAX,
            last_seen: 0,
            pods: RecentSet::new(config.pods_per_workload),
        }
    }

    /// Counts a flow the node receives (`inbound`), sends (`outbound`), or
    /// both (to itself: one flow, one drop).
    pub(crate) fn record(&mut self, seen: &Seen, inbound: bool, outbound: bool) {
        let dropped = seen.verdict == Verdict::Dropped;
        let (i, o, d) = (u32::from(inbound), u32::from(outbound), u32::from(dropped));
        self.series.add(seen.sec(), [1, i, o, d]);
        self.flows += 1;
        self.flows_in += u64::from(i);
        self.flows_out += u64::from(o);
        self.dropped += u64::from(d);
        self.first_seen = self.first_seen.min(seen.t);
        self.last_seen = self.last_seen.max(seen.t);
    }

    /// Notes the pod of `side`, if it is one.
    pub(crate) fn add_pod(&mut self, key: &NodeKey, side: &Side<'_>) {
        if let Some(pod) = pod_name(key, side) {
            self.pods.insert(&pod);
        }
    }
}

/// A pod's name, with its namespace when the node's is not the same (a
/// cluster node's pods come from every namespace).
fn pod_name<'a>(key: &NodeKey, side: &Side<'a>) -> Option<Cow<'a, str>> {
    let ep = side.endpoint?;
    let ns = namespace(ep);
    match ep.pod_name.as_str() {
        "" => None,
        pod if ns == key.namespace || ns.is_empty() => Some(Cow::Borrowed(pod)),
        pod => Some(Cow::Owned(format!("{ns}/{pod}"))),
    }
}

/// One node of the unit, as `lumen top`'s workloads tab lists it. Reserved
/// identities, world peers and bare IPs are nodes too, and have rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadRow {
    /// Its kind, namespace and name.
    pub node: NodeKey,
    /// The pods seen most recently, sorted.
    pub pods: Vec<String>,
    /// Pods pushed out of `pods` by newer ones.
    pub pods_evicted: u64,
    /// Flows to or from it (a flow to itself counts once).
    pub flows: u64,
    pub flows_in: u64,
    pub flows_out: u64,
    pub dropped: u64,
    /// Per second over the short window.
    pub in_per_sec: f64,
    pub out_per_sec: f64,
    pub drops_per_sec: f64,
    /// Dropped flows in percent over the short window (lifetime when idle).
    pub drop_pct: f64,
    /// The node it exchanges the most flows with (short window, then lifetime).
    pub top_peer: Option<NodeKey>,
    /// Its flows in each of the last 60 completed seconds, oldest first.
    pub trend: Vec<u32>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// Columns of [`WorkloadRow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadColumn {
    /// Kind, namespace, name.
    Node,
    Namespace,
    Name,
    /// The number of pods kept.
    Pods,
    Flows,
    FlowsIn,
    FlowsOut,
    Dropped,
    InPerSec,
    OutPerSec,
    DropsPerSec,
    DropPct,
    TopPeer,
    FirstSeen,
    LastSeen,
}

impl Row for WorkloadRow {
    type Column = WorkloadColumn;

    fn compare(&self, other: &Self, column: WorkloadColumn) -> Ordering {
        use WorkloadColumn as C;
        match column {
            C::Node => self.node.cmp(&other.node),
            C::Namespace => self.node.namespace.cmp(&other.node.namespace),
            C::Name => self.node.name.cmp(&other.node.name),
            C::Pods => self.pods.len().cmp(&other.pods.len()),
            C::Flows => self.flows.cmp(&other.flows),
            C::FlowsIn => self.flows_in.cmp(&other.flows_in),
            C::FlowsOut => self.flows_out.cmp(&other.flows_out),
            C::Dropped => self.dropped.cmp(&other.dropped),
            C::InPerSec => by_f64(self.in_per_sec, other.in_per_sec),
            C::OutPerSec => by_f64(self.out_per_sec, other.out_per_sec),
            C::DropsPerSec => by_f64(self.drops_per_sec, other.drops_per_sec),
            C::DropPct => by_f64(self.drop_pct, other.drop_pct),
            C::TopPeer => self.top_peer.cmp(&other.top_peer),
            C::FirstSeen => self.first_seen_ms.cmp(&other.first_seen_ms),
            C::LastSeen => self.last_seen_ms.cmp(&other.last_seen_ms),
        }
    }

    fn compare_key(&self, other: &Self) -> Ordering {
        self.node.cmp(&other.node)
    }

    fn selected(&self, selection: &Selection) -> bool {
        selection.keeps(&[&self.node])
    }
}

pub(crate) fn rows(
    table: &Lru<Shared, Workload>,
    clock: &Clock,
    peers: &HashMap<&NodeKey, &NodeKey, foldhash::fast::RandomState>,
) -> Table<WorkloadRow> {
    let rows = table
        .iter()
        .map(|(node, w)| {
            let recent = w.series.sum(clock.windows.short, clock.now);
            WorkloadRow {
                node: (**node).clone(),
                pods: w.pods.sorted(),
                pods_evicted: w.pods.evicted(),
                flows: w.flows,
                flows_in: w.flows_in,
                flows_out: w.flows_out,
                dropped: w.dropped,
                in_per_sec: clock.rate(recent[IN]),
                out_per_sec: clock.rate(recent[OUT]),
                drops_per_sec: clock.rate(recent[DROPS]),
                drop_pct: drop_pct(recent_or_total([recent[FLOWS], recent[DROPS]], [w.flows, w.dropped])),
                top_peer: peers.get(&**node).map(|p| (*p).clone()),
                trend: w.series.history(FLOWS, clock.now),
                first_seen_ms: millis(w.first_seen),
                last_seen_ms: millis(w.last_seen),
            }
        })
        .collect();
    Table::new(rows, table.capacity(), table.evicted())
}

//! Drops by reason, by policy and by destination, and what a flow says
//! about why it was dropped.

use std::borrow::Cow;
use std::cmp::Ordering;

use lumen_proto::flow::{DropReason, Flow, Policy, Verdict};
use lumen_proto::lumen::v1::FlowExtension;
use serde::{Deserialize, Serialize};

use crate::key::{NodeKey, PolicyRef};
use crate::lru::Lru;
use crate::model::Seen;
use crate::table::{by_f64, Row, Selection, Table};
use crate::window::{millis, Clock, Series};

/// Hubble's name of a drop reason (`POLICY_DENIED`), or its number when
/// this build does not know it (as Hubble prints an unknown enum value).
pub type Reason = Cow<'static, str>;

/// The drop reason of a dropped flow: `drop_reason_desc`, else the
/// deprecated numeric `drop_reason` older agents send.
pub(crate) fn drop_reason(flow: &Flow) -> Reason {
    #[allow(deprecated)]
    let code = match flow.drop_reason_desc {
        0 => i32::try_from(flow.drop_reason).unwrap_or(i32::MAX),
        desc => desc,
    };
    DropReason::try_from(code).map_or_else(|_| Cow::Owned(code.to_string()), |r| Cow::Borrowed(r.as_str_name()))
}

/// The policies responsible for a dropped or audited flow, as `lumen
/// observe` explains it: the policies whose deny rules matched
/// (`ingress_denied_by`, `egress_denied_by`), else, under default deny, the
/// policies that select the endpoint (Lumen's extension's `selected_by`).
pub(crate) fn responsible(flow: &Flow) -> Vec<PolicyRef> {
    let denied = dedup(flow.ingress_denied_by.iter().chain(&flow.egress_denied_by));
    if !denied.is_empty() {
        return denied;
    }
    // An extension that does not decode says nothing about policies; the
    // flow itself still counts.
    match flow.extensions.as_ref().and_then(FlowExtension::from_any) {
        Some(Ok(ext)) => dedup(ext.selected_by.iter()),
        _ => Vec::new(),
    }
}

fn dedup<'a>(policies: impl Iterator<Item = &'a Policy>) -> Vec<PolicyRef> {
    let mut refs: Vec<PolicyRef> = Vec::new();
    for p in policies {
        if !refs.iter().any(|r| r.is(p)) {
            refs.push(PolicyRef::of(p));
        }
    }
    refs
}

#[derive(Default)]
struct DropCount {
    series: Series<1>,
    count: u64,
    last_seen: u64,
}

impl DropCount {
    fn record(&mut self, seen: &Seen) {
        self.series.add(seen.sec(), [1]);
        self.count += 1;
        self.last_seen = self.last_seen.max(seen.t);
    }
}

/// The three drop tables.
pub(crate) struct Drops {
    by_reason: Lru<Reason, DropCount>,
    by_policy: Lru<PolicyRef, DropCount>,
    by_destination: Lru<NodeKey, DropCount>,
}

impl Drops {
    pub(crate) fn new(capacity: usize) -> Drops {
        Drops {
            by_reason: Lru::new(capacity),
            by_policy: Lru::new(capacity),
            by_destination: Lru::new(capacity),
        }
    }

    /// Counts a flow if it was dropped (audited flows were not).
    pub(crate) fn record(&mut self, seen: &Seen, destination: &NodeKey) {
        if seen.verdict != Verdict::Dropped {
            return;
        }
        if let Some(reason) = &seen.reason {
            self.by_reason.touch(reason, DropCount::default).record(seen);
        }
        for policy in &seen.policies {
            self.by_policy.touch(policy, DropCount::default).record(seen);
        }
        self.by_destination.touch(destination, DropCount::default).record(seen);
    }

    /// Forgets the destinations, which are nodes of the old unit.
    pub(crate) fn clear_destinations(&mut self) {
        self.by_destination.clear();
    }

    pub(crate) fn tables(&self, clock: &Clock) -> DropTables {
        DropTables {
            by_reason: table(&self.by_reason, clock),
            by_policy: table(&self.by_policy, clock),
            by_destination: table(&self.by_destination, clock),
        }
    }
}

fn table<K: DropKey>(lru: &Lru<K, DropCount>, clock: &Clock) -> Table<DropRow<K>> {
    let rows = lru
        .iter()
        .map(|(key, d)| DropRow {
            key: key.clone(),
            count: d.count,
            per_sec: clock.rate(d.series.sum(clock.windows.short, clock.now)[0]),
            last_seen_ms: millis(d.last_seen),
        })
        .collect();
    Table::new(rows, lru.capacity(), lru.evicted())
}

/// Drops three ways. A flow denied by two policies counts for both.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropTables {
    pub by_reason: Table<DropRow<Reason>>,
    pub by_policy: Table<DropRow<PolicyRef>>,
    /// By the node the dropped flows were going to.
    pub by_destination: Table<DropRow<NodeKey>>,
}

/// Drops of one reason, policy or destination.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropRow<K> {
    pub key: K,
    pub count: u64,
    /// Per second over the short window.
    pub per_sec: f64,
    pub last_seen_ms: u64,
}

/// Columns of [`DropRow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropColumn {
    Key,
    Count,
    PerSec,
    LastSeen,
}

/// What drops are counted by, and what a [`Selection`] keeps of them.
pub trait DropKey: Ord + Clone + std::hash::Hash {
    fn selected(&self, selection: &Selection) -> bool;
}

impl DropKey for Reason {
    /// Reasons are cluster-wide: every selection keeps them (a node's own
    /// drop reasons are on its connections).
    fn selected(&self, _: &Selection) -> bool {
        true
    }
}

impl DropKey for PolicyRef {
    /// A namespace selection keeps that namespace's policies and the
    /// cluster-wide ones; a node selection does not apply.
    fn selected(&self, selection: &Selection) -> bool {
        self.namespace.is_empty() || selection.namespaces.is_empty() || selection.namespaces.contains(&self.namespace)
    }
}

impl DropKey for NodeKey {
    fn selected(&self, selection: &Selection) -> bool {
        selection.keeps(&[self])
    }
}

impl<K: DropKey> Row for DropRow<K> {
    type Column = DropColumn;

    fn compare(&self, other: &Self, column: DropColumn) -> Ordering {
        match column {
            DropColumn::Key => self.key.cmp(&other.key),
            DropColumn::Count => self.count.cmp(&other.count),
            DropColumn::PerSec => by_f64(self.per_sec, other.per_sec),
            DropColumn::LastSeen => self.last_seen_ms.cmp(&other.last_seen_ms),
        }
    }

    fn compare_key(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }

    fn selected(&self, selection: &Selection) -> bool {
        self.key.selected(selection)
    }
}

//! Connections (source node, destination node, service port, protocol),
//! and the edges of the service map, which group them by node pair.
//!
//! Edges are built from the connections at snapshot time rather than kept
//! as a second table: they can never disagree with the connections, and
//! they cost no memory between snapshots.

use std::cmp::Ordering;
use std::collections::HashMap;

use lumen_proto::flow::Verdict;
use serde::{Deserialize, Serialize};

use crate::drops::Reason;
use crate::key::{End, NodeKey, PolicyRef, Protocol, Shared};
use crate::lru::{Lru, TopCounts};
use crate::model::{Config, Seen};
use crate::table::{by_f64, drop_pct, recent_or_total, Row, Selection, Table};
use crate::window::{millis, Clock, Series};

/// Snapshot-time maps: rebuilt ten times a second, so hashed fast.
type Fast = foldhash::fast::RandomState;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    /// Shared with the key memo: making a lookup key copies no names, and
    /// hashing it hashes two numbers.
    pub source: Shared,
    pub destination: Shared,
    pub port: u32,
    pub protocol: Protocol,
}

/// Reports and drops, in a pair of lanes summed over the ends.
const FLOWS: usize = 0;
const DROPS: usize = 1;

/// Lanes of a connection's series: reports and drops as seen at the
/// source's end (or an end not known), and at the destination's.
const LANES: usize = 4;

/// The first of the two lanes (reports, drops) of the end a report came from.
fn lane(end: Option<End>) -> usize {
    match end {
        Some(End::Destination) => 2,
        Some(End::Source) | None => 0,
    }
}

/// Reports and drops, both ends together (rates count every report).
fn reports([s, sd, d, dd]: [u64; LANES]) -> [u64; 2] {
    [s + d, sd + dd]
}

/// Attempts and how many of them were dropped, for the drop percentage and
/// the health of a path. A packet the source's node forwarded and the
/// destination's dropped is reported at both ends: counting every report
/// would make a denied path look half open. So the attempts are what the
/// source's end (and reports of no known end) saw, or, if that end sent no
/// reports (a client outside the cluster), what the destination's saw; a
/// drop at either end is a failed attempt.
fn attempts([s, sd, d, dd]: [u64; LANES]) -> [u64; 2] {
    let tried = match s {
        0 => d,
        n => n,
    };
    [tried, (sd + dd).min(tried)]
}

pub(crate) struct Connection {
    series: Series<LANES>,
    /// Totals of the lanes.
    by_end: [u64; LANES],
    flows: u64,
    forwarded: u64,
    dropped: u64,
    audit: u64,
    verdict: Verdict,
    first_seen: u64,
    last_seen: u64,
    last_audit: Option<u64>,
    reasons: TopCounts<Reason>,
    policies: TopCounts<PolicyRef>,
}

impl Connection {
    pub(crate) fn new(config: &Config) -> Connection {
        Connection {
            series: Series::default(),
            by_end: [0; LANES],
            flows: 0,
            forwarded: 0,
            dropped: 0,
            audit: 0,
            verdict: Verdict::Unknown,
            first_seen: u64::MAX,
            last_seen: 0,
            last_audit: None,
            reasons: TopCounts::new(config.reasons_per_connection),
            policies: TopCounts::new(config.policies_per_connection),
        }
    }

    /// Counts a report from the node at `end` of the connection.
    pub(crate) fn record(&mut self, seen: &Seen, end: Option<End>) {
        let dropped = seen.verdict == Verdict::Dropped;
        let at = lane(end);
        let mut add = [0; LANES];
        add[at] = 1;
        add[at + 1] = u32::from(dropped);
        self.series.add(seen.sec(), add);
        self.by_end[at] += 1;
        self.by_end[at + 1] += u64::from(dropped);
        self.flows += 1;
        match seen.verdict {
            Verdict::Forwarded => self.forwarded += 1,
            Verdict::Dropped => self.dropped += 1,
            Verdict::Audit => {
                self.audit += 1;
                self.last_audit = self.last_audit.max(Some(seen.t));
            }
            _ => {}
        }
        if seen.t >= self.last_seen {
            self.last_seen = seen.t;
            self.verdict = seen.verdict;
        }
        self.first_seen = self.first_seen.min(seen.t);
        if let Some(reason) = &seen.reason {
            self.reasons.add(|r| r == reason, || reason.clone());
        }
        for policy in &seen.policies {
            self.policies.add(|p| p == policy, || policy.clone());
        }
    }
}

/// A name and how many times it was counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counted<K> {
    pub key: K,
    pub count: u64,
}

fn counted<K: Clone + Ord>(counts: &TopCounts<K>) -> Vec<Counted<K>> {
    counts
        .sorted()
        .into_iter()
        .map(|(key, count)| Counted { key, count })
        .collect()
}

/// One connection, as `lumen top` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionRow {
    pub source: NodeKey,
    pub destination: NodeKey,
    /// The service port (0 for ICMP and the like).
    pub port: u32,
    pub protocol: Protocol,
    pub flows: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub audit: u64,
    /// Flows per second over the short window.
    pub flows_per_sec: f64,
    /// Flows per second over the long window.
    pub flows_per_sec_long: f64,
    /// Drops per second over the short window.
    pub drops_per_sec: f64,
    /// Dropped flows in percent over the short window (lifetime when idle).
    pub drop_pct: f64,
    /// Hubble's name of the newest flow's verdict (`FORWARDED`).
    pub last_verdict: &'static str,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// Drops by Hubble's reason name (`POLICY_DENIED`), most first.
    pub drop_reasons: Vec<Counted<Reason>>,
    /// Drops whose reason did not fit in the list.
    pub drop_reasons_other: u64,
    /// Why dropped: the policies that denied (or, for audit, would deny)
    /// flows, else those that made the endpoint default-deny, most first.
    pub policies: Vec<Counted<PolicyRef>>,
    pub policies_other: u64,
}

/// Columns of [`ConnectionRow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionColumn {
    Source,
    Destination,
    Port,
    Protocol,
    Flows,
    Forwarded,
    Dropped,
    Audit,
    FlowsPerSec,
    FlowsPerSecLong,
    DropsPerSec,
    DropPct,
    LastVerdict,
    FirstSeen,
    LastSeen,
}

impl Row for ConnectionRow {
    type Column = ConnectionColumn;

    fn compare(&self, other: &Self, column: ConnectionColumn) -> Ordering {
        use ConnectionColumn as C;
        match column {
            C::Source => self.source.cmp(&other.source),
            C::Destination => self.destination.cmp(&other.destination),
            C::Port => self.port.cmp(&other.port),
            C::Protocol => self.protocol.cmp(&other.protocol),
            C::Flows => self.flows.cmp(&other.flows),
            C::Forwarded => self.forwarded.cmp(&other.forwarded),
            C::Dropped => self.dropped.cmp(&other.dropped),
            C::Audit => self.audit.cmp(&other.audit),
            C::FlowsPerSec => by_f64(self.flows_per_sec, other.flows_per_sec),
            C::FlowsPerSecLong => by_f64(self.flows_per_sec_long, other.flows_per_sec_long),
            C::DropsPerSec => by_f64(self.drops_per_sec, other.drops_per_sec),
            C::DropPct => by_f64(self.drop_pct, other.drop_pct),
            C::LastVerdict => self.last_verdict.cmp(other.last_verdict),
            C::FirstSeen => self.first_seen_ms.cmp(&other.first_seen_ms),
            C::LastSeen => self.last_seen_ms.cmp(&other.last_seen_ms),
        }
    }

    fn compare_key(&self, other: &Self) -> Ordering {
        (&self.source, &self.destination, self.port, self.protocol).cmp(&(
            &other.source,
            &other.destination,
            other.port,
            other.protocol,
        ))
    }

    fn selected(&self, selection: &Selection) -> bool {
        selection.keeps(&[&self.source, &self.destination])
    }
}

pub(crate) fn rows(table: &Lru<ConnKey, Connection>, clock: &Clock) -> Table<ConnectionRow> {
    let rows = table
        .iter()
        .map(|(key, c)| {
            let recent = c.series.sum(clock.windows.short, clock.now);
            let long = reports(c.series.sum(clock.windows.long, clock.now));
            let (tried, tried_total) = (attempts(recent), attempts(c.by_end));
            let recent = reports(recent);
            ConnectionRow {
                source: (*key.source).clone(),
                destination: (*key.destination).clone(),
                port: key.port,
                protocol: key.protocol,
                flows: c.flows,
                forwarded: c.forwarded,
                dropped: c.dropped,
                audit: c.audit,
                flows_per_sec: clock.rate(recent[FLOWS]),
                flows_per_sec_long: clock.windows.long.rate(long[FLOWS], clock.now),
                drops_per_sec: clock.rate(recent[DROPS]),
                drop_pct: drop_pct(recent_or_total(tried, tried_total)),
                last_verdict: c.verdict.as_str_name(),
                first_seen_ms: millis(c.first_seen),
                last_seen_ms: millis(c.last_seen),
                drop_reasons: counted(&c.reasons),
                drop_reasons_other: c.reasons.other(),
                policies: counted(&c.policies),
                policies_other: c.policies.other(),
            }
        })
        .collect();
    Table::new(rows, table.capacity(), table.evicted())
}

/// What the map colours an edge: its flows over the short window, or over
/// its lifetime when idle. Ordered from healthy to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Nothing dropped or audited.
    Forwarded,
    /// Nothing dropped, but policy in audit mode would have dropped some.
    Audit,
    SomeDrops,
    AllDropped,
}

/// A port a connection of an edge goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Port {
    pub port: u32,
    pub protocol: Protocol,
}

/// An arrow of the service map: every connection from one node to another.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeRow {
    pub source: NodeKey,
    pub destination: NodeKey,
    /// The ports with the most flows, by number.
    pub ports: Vec<Port>,
    /// Ports of the edge that did not fit in `ports`.
    pub ports_other: usize,
    pub flows: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub audit: u64,
    pub flows_per_sec: f64,
    pub drops_per_sec: f64,
    pub drop_pct: f64,
    pub health: Health,
    pub last_seen_ms: u64,
}

/// Columns of [`EdgeRow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeColumn {
    Source,
    Destination,
    /// The number of ports.
    Ports,
    Flows,
    Dropped,
    FlowsPerSec,
    DropsPerSec,
    DropPct,
    Health,
    LastSeen,
}

impl Row for EdgeRow {
    type Column = EdgeColumn;

    fn compare(&self, other: &Self, column: EdgeColumn) -> Ordering {
        use EdgeColumn as C;
        match column {
            C::Source => self.source.cmp(&other.source),
            C::Destination => self.destination.cmp(&other.destination),
            C::Ports => (self.ports.len() + self.ports_other).cmp(&(other.ports.len() + other.ports_other)),
            C::Flows => self.flows.cmp(&other.flows),
            C::Dropped => self.dropped.cmp(&other.dropped),
            C::FlowsPerSec => by_f64(self.flows_per_sec, other.flows_per_sec),
            C::DropsPerSec => by_f64(self.drops_per_sec, other.drops_per_sec),
            C::DropPct => by_f64(self.drop_pct, other.drop_pct),
            C::Health => self.health.cmp(&other.health),
            C::LastSeen => self.last_seen_ms.cmp(&other.last_seen_ms),
        }
    }

    fn compare_key(&self, other: &Self) -> Ordering {
        (&self.source, &self.destination).cmp(&(&other.source, &other.destination))
    }

    fn selected(&self, selection: &Selection) -> bool {
        selection.keeps(&[&self.source, &self.destination])
    }
}

#[derive(Default)]
struct EdgeSum {
    ports: Vec<(Port, u64)>,
    flows: u64,
    forwarded: u64,
    dropped: u64,
    audit: u64,
    /// The lanes over the short window, and since the start.
    recent: [u64; LANES],
    total: [u64; LANES],
    audited_recently: bool,
    last_seen: u64,
}

/// The edges of the connections; `ports` caps each edge's port list.
pub(crate) fn edges(table: &Lru<ConnKey, Connection>, clock: &Clock, ports: usize) -> Table<EdgeRow> {
    let mut sums: HashMap<(&NodeKey, &NodeKey), EdgeSum, Fast> = HashMap::default();
    let audit_since = clock.short_start();
    for (key, c) in table.iter() {
        let e = sums.entry((&*key.source, &*key.destination)).or_default();
        let recent = c.series.sum(clock.windows.short, clock.now);
        let port = Port {
            port: key.port,
            protocol: key.protocol,
        };
        e.ports.push((port, c.flows));
        e.flows += c.flows;
        e.forwarded += c.forwarded;
        e.dropped += c.dropped;
        e.audit += c.audit;
        for ((r, t), (add_r, add_t)) in e.recent.iter_mut().zip(&mut e.total).zip(recent.iter().zip(c.by_end)) {
            *r += add_r;
            *t += add_t;
        }
        e.audited_recently |= c.last_audit.is_some_and(|t| t >= audit_since);
        e.last_seen = e.last_seen.max(c.last_seen);
    }
    let rows = sums
        .into_iter()
        .map(|((source, destination), mut e)| {
            e.ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let ports_other = e.ports.len().saturating_sub(ports);
            let mut kept: Vec<Port> = e.ports.iter().take(ports).map(|(p, _)| *p).collect();
            kept.sort();
            let (recent, tried) = (
                reports(e.recent),
                recent_or_total(attempts(e.recent), attempts(e.total)),
            );
            let audited = match recent[FLOWS] {
                0 => e.audit > 0,
                _ => e.audited_recently,
            };
            EdgeRow {
                source: source.clone(),
                destination: destination.clone(),
                ports: kept,
                ports_other,
                flows: e.flows,
                forwarded: e.forwarded,
                dropped: e.dropped,
                audit: e.audit,
                flows_per_sec: clock.rate(recent[FLOWS]),
                drops_per_sec: clock.rate(recent[DROPS]),
                drop_pct: drop_pct(tried),
                health: health(tried, audited),
                last_seen_ms: millis(e.last_seen),
            }
        })
        .collect();
    Table::new(rows, table.capacity(), table.evicted())
}

fn health([flows, dropped]: [u64; 2], audited: bool) -> Health {
    match dropped {
        0 if audited => Health::Audit,
        0 => Health::Forwarded,
        d if d >= flows => Health::AllDropped,
        _ => Health::SomeDrops,
    }
}

/// Each node's busiest peer (either direction, all ports together): by
/// flows in the short window, then by lifetime flows, then by key, so the
/// answer does not depend on the order of the table.
pub(crate) fn top_peers<'a>(
    table: &'a Lru<ConnKey, Connection>,
    clock: &Clock,
) -> HashMap<&'a NodeKey, &'a NodeKey, Fast> {
    let mut pairs: HashMap<(&NodeKey, &NodeKey), (u64, u64), Fast> = HashMap::default();
    for (key, c) in table.iter() {
        let recent = reports(c.series.sum(clock.windows.short, clock.now))[FLOWS];
        let mut add = |a, b| {
            let w = pairs.entry((a, b)).or_default();
            *w = (w.0 + recent, w.1 + c.flows);
        };
        add(&key.source, &key.destination);
        if key.source != key.destination {
            add(&key.destination, &key.source);
        }
    }
    let mut best: HashMap<&NodeKey, (&NodeKey, (u64, u64)), Fast> = HashMap::default();
    for ((node, peer), weight) in pairs {
        let better = |(p, w): &(&NodeKey, (u64, u64))| weight.cmp(w).then_with(|| p.cmp(&peer)) == Ordering::Greater;
        match best.get(node) {
            Some(current) if !better(current) => {}
            _ => {
                best.insert(node, (peer, weight));
            }
        }
    }
    best.into_iter().map(|(node, (peer, _))| (node, peer)).collect()
}

//! What each tab and drill-down level shows, as plain rows of text: the
//! columns (and which go first when the terminal is narrow), how rows sort,
//! and where Enter leads. The views draw these; `--once` prints them.

use lumen_model::{
    ConnectionColumn, ConnectionRow, DropColumn, Model, NodeColumn, NodeKey, Order, Protocol, Query, Selection,
    Snapshot, Table, WorkloadColumn,
};
use lumen_proto::flow::Flow;
use serde::Serialize;

use super::state::Sort;
use crate::printer::{compact, Style};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tab {
    Workloads,
    Connections,
    Drops,
    Flows,
    Nodes,
}

impl Tab {
    pub const ALL: [Tab; 5] = [Tab::Workloads, Tab::Connections, Tab::Drops, Tab::Flows, Tab::Nodes];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Workloads => "Workloads",
            Tab::Connections => "Connections",
            Tab::Drops => "Drops",
            Tab::Flows => "Flows",
            Tab::Nodes => "Nodes",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn parse(name: &str) -> Option<Tab> {
        Tab::ALL.into_iter().find(|t| t.title().eq_ignore_ascii_case(name))
    }

    /// The busiest first.
    pub fn default_sort(self) -> Sort {
        let column = match self {
            Tab::Workloads => 3,
            Tab::Connections => 3,
            Tab::Drops => 2,
            Tab::Flows => 0,
            Tab::Nodes => 2,
        };
        Sort {
            column,
            ascending: false,
        }
    }
}

/// One connection, as a drill-down level names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionKey {
    pub source: NodeKey,
    pub destination: NodeKey,
    pub port: u32,
    pub protocol: Protocol,
}

/// A place in the drill-down: a tab's top level, a workload's connections,
/// a connection's flows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    Top(Tab),
    Workload(NodeKey),
    Connection(ConnectionKey),
}

impl Level {
    /// The breadcrumb's part for this level.
    pub fn crumb(&self) -> String {
        match self {
            Level::Top(tab) => tab.title().to_string(),
            Level::Workload(k) => k.to_string(),
            Level::Connection(c) => format!(
                "{} → {} {}/{}",
                c.source,
                c.destination,
                c.port,
                protocol_name(c.protocol)
            ),
        }
    }

    /// Whether this level lists flows (the Flows tab, a connection's flows).
    pub fn lists_flows(&self) -> bool {
        matches!(self, Level::Top(Tab::Flows) | Level::Connection(_))
    }

    /// Whether the flows of this level include `f`.
    pub fn keeps_flow(&self, f: &Flow, model: &Model) -> bool {
        match self {
            Level::Top(_) => true,
            Level::Workload(k) => model.connection_of(f).is_some_and(|(s, d, _, _)| &s == k || &d == k),
            Level::Connection(c) => model.connection_of(f).is_some_and(|(s, d, port, protocol)| {
                s == c.source && d == c.destination && port == c.port && protocol == c.protocol
            }),
        }
    }
}

pub fn protocol_name(p: Protocol) -> String {
    p.name().to_string()
}

/// How a cell is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
    Dim,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            tone: Tone::Plain,
        }
    }

    fn toned(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone,
        }
    }
}

/// A column: its heading, its width at most, whether it is a number (right
/// aligned), and its rank when the terminal is narrow (0 stays longest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub width: u16,
    pub numeric: bool,
    pub rank: u8,
}

const fn col(name: &'static str, width: u16, numeric: bool, rank: u8) -> Column {
    Column {
        name,
        width,
        numeric,
        rank,
    }
}

/// Where Enter on a row leads.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    None,
    Workload(NodeKey),
    Connection(ConnectionKey),
    /// A flow of the tail, by its index in the rows.
    Flow(usize),
}

/// A table ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    pub targets: Vec<Target>,
    /// Rows before the view was cut (for "N of M").
    pub matched: usize,
    /// Entries the model evicted from the table shown.
    pub evicted: u64,
}

pub const WORKLOAD_COLUMNS: [Column; 9] = [
    col("NAMESPACE", 14, false, 1),
    col("WORKLOAD", 24, false, 0),
    col("PODS", 5, true, 6),
    col("IN/s", 8, true, 2),
    col("OUT/s", 8, true, 2),
    col("DROPS/s", 8, true, 1),
    col("DROP%", 6, true, 3),
    col("TOP PEER", 24, false, 5),
    col("TREND", 16, false, 7),
];
const WORKLOAD_SORT: [WorkloadColumn; 9] = [
    WorkloadColumn::Namespace,
    WorkloadColumn::Name,
    WorkloadColumn::Pods,
    WorkloadColumn::InPerSec,
    WorkloadColumn::OutPerSec,
    WorkloadColumn::DropsPerSec,
    WorkloadColumn::DropPct,
    WorkloadColumn::TopPeer,
    WorkloadColumn::Flows,
];

pub const CONNECTION_COLUMNS: [Column; 9] = [
    col("SOURCE", 24, false, 0),
    col("DESTINATION", 24, false, 0),
    col("PORT", 9, false, 1),
    col("FLOWS/s", 8, true, 1),
    col("1m/s", 8, true, 3),
    col("FWD", 7, true, 4),
    col("DROP", 7, true, 2),
    col("LAST", 10, false, 2),
    col("AGE", 6, true, 5),
];
const CONNECTION_SORT: [ConnectionColumn; 9] = [
    ConnectionColumn::Source,
    ConnectionColumn::Destination,
    ConnectionColumn::Port,
    ConnectionColumn::FlowsPerSec,
    ConnectionColumn::FlowsPerSecLong,
    ConnectionColumn::Forwarded,
    ConnectionColumn::Dropped,
    ConnectionColumn::LastVerdict,
    ConnectionColumn::FirstSeen,
];

pub const DROP_COLUMNS: [Column; 4] = [
    col("BY", 11, false, 1),
    col("WHAT", 40, false, 0),
    col("COUNT", 8, true, 0),
    col("PER s", 8, true, 2),
];

pub const FLOW_COLUMNS: [Column; 1] = [col("FLOW", 400, false, 0)];

pub const NODE_COLUMNS: [Column; 7] = [
    col("NODE", 20, false, 0),
    col("STATE", 18, false, 0),
    col("FLOWS/s", 8, true, 1),
    col("DROPS/s", 8, true, 2),
    col("LOST", 6, true, 1),
    col("VERSION", 8, false, 4),
    col("UPTIME", 10, true, 3),
];
const NODE_SORT: [NodeColumn; 7] = [
    NodeColumn::Name,
    NodeColumn::State,
    NodeColumn::FlowsPerSec,
    NodeColumn::DropsPerSec,
    NodeColumn::LostEvents,
    NodeColumn::Name,
    NodeColumn::Name,
];

/// The columns of what `level` shows.
pub fn columns(level: &Level) -> &'static [Column] {
    match level {
        Level::Top(Tab::Workloads) => &WORKLOAD_COLUMNS,
        Level::Top(Tab::Connections) | Level::Workload(_) => &CONNECTION_COLUMNS,
        Level::Top(Tab::Drops) => &DROP_COLUMNS,
        Level::Top(Tab::Flows) | Level::Connection(_) => &FLOW_COLUMNS,
        Level::Top(Tab::Nodes) => &NODE_COLUMNS,
    }
}

fn query<C: Copy>(by: &[C], sort: Sort, selection: Selection) -> Query<C> {
    Query {
        sort: by.get(sort.column).copied(),
        order: if sort.ascending {
            Order::Ascending
        } else {
            Order::Descending
        },
        limit: None,
        selection,
    }
}

pub fn rate(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn pct(v: f64) -> String {
    format!("{v:.0}%")
}

fn age(now_ms: u64, since_ms: u64) -> String {
    let s = now_ms.saturating_sub(since_ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// Eight levels of a bar, for trends and the header's sparkline.
pub fn sparkline(values: &[u32], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let values = &values[values.len().saturating_sub(width)..];
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| match max {
            0 => BARS[0],
            m => BARS[((u64::from(v) * 7).div_ceil(u64::from(m))) as usize],
        })
        .collect()
}

fn verdict_tone(v: &str) -> Tone {
    match v {
        "FORWARDED" | "TRANSLATED" | "REDIRECTED" => Tone::Good,
        "DROPPED" | "ERROR" => Tone::Bad,
        "AUDIT" => Tone::Warn,
        _ => Tone::Plain,
    }
}

fn connection_row(r: &ConnectionRow, now_ms: u64) -> Vec<Cell> {
    vec![
        Cell::plain(r.source.to_string()),
        Cell::plain(r.destination.to_string()),
        Cell::plain(match r.port {
            0 => protocol_name(r.protocol),
            p => format!("{p}/{}", protocol_name(r.protocol)),
        }),
        Cell::plain(rate(r.flows_per_sec)),
        Cell::plain(rate(r.flows_per_sec_long)),
        Cell::plain(r.forwarded.to_string()),
        Cell::toned(
            r.dropped.to_string(),
            if r.dropped > 0 { Tone::Bad } else { Tone::Plain },
        ),
        Cell::toned(r.last_verdict, verdict_tone(r.last_verdict)),
        Cell::plain(age(now_ms, r.first_seen_ms)),
    ]
}

fn connection_key(r: &ConnectionRow) -> ConnectionKey {
    ConnectionKey {
        source: r.source.clone(),
        destination: r.destination.clone(),
        port: r.port,
        protocol: r.protocol,
    }
}

fn connections(table: Table<ConnectionRow>, sort: Sort, selection: Selection, now_ms: u64) -> View {
    let evicted = table.evicted;
    let t = table.query(&query(&CONNECTION_SORT, sort, selection));
    View {
        columns: CONNECTION_COLUMNS.to_vec(),
        targets: t.rows.iter().map(|r| Target::Connection(connection_key(r))).collect(),
        rows: t.rows.iter().map(|r| connection_row(r, now_ms)).collect(),
        matched: t.matched,
        evicted,
    }
}

/// The rows of `level` in `snapshot`, sorted by `sort`. `flows` are the
/// tail's flows the level keeps, newest last; `info` the server's nodes.
pub fn view(level: &Level, snapshot: &Snapshot, sort: Sort, flows: &[&Flow], nodes: &[NodeInfo]) -> View {
    let now_ms = snapshot.now_ms;
    match level {
        Level::Top(Tab::Workloads) => {
            let t = snapshot.workloads.clone();
            let evicted = t.evicted;
            let t = t.query(&query(&WORKLOAD_SORT, sort, Selection::default()));
            View {
                columns: WORKLOAD_COLUMNS.to_vec(),
                targets: t.rows.iter().map(|r| Target::Workload(r.node.clone())).collect(),
                rows: t
                    .rows
                    .iter()
                    .map(|r| {
                        vec![
                            Cell::plain(r.node.namespace.clone()),
                            Cell::plain(r.node.name.clone()),
                            Cell::plain(r.pods.len().to_string()),
                            Cell::plain(rate(r.in_per_sec)),
                            Cell::plain(rate(r.out_per_sec)),
                            Cell::toned(
                                rate(r.drops_per_sec),
                                if r.drops_per_sec > 0.0 { Tone::Bad } else { Tone::Plain },
                            ),
                            Cell::toned(pct(r.drop_pct), if r.drop_pct > 0.0 { Tone::Warn } else { Tone::Plain }),
                            Cell::plain(r.top_peer.as_ref().map(ToString::to_string).unwrap_or_default()),
                            Cell::toned(sparkline(&r.trend, 16), Tone::Dim),
                        ]
                    })
                    .collect(),
                matched: t.matched,
                evicted,
            }
        }
        Level::Top(Tab::Connections) => connections(snapshot.connections.clone(), sort, Selection::default(), now_ms),
        Level::Workload(k) => connections(
            snapshot.connections.clone(),
            sort,
            Selection {
                node: Some(k.clone()),
                ..Selection::default()
            },
            now_ms,
        ),
        Level::Top(Tab::Drops) => drops(snapshot, sort),
        Level::Top(Tab::Flows) | Level::Connection(_) => {
            let style = Style::default();
            let mut rows: Vec<(Vec<Cell>, Target)> = flows
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let response = lumen_proto::observer::GetFlowsResponse {
                        node_name: f.node_name.clone(),
                        time: f.time,
                        response_types: Some(lumen_proto::observer::get_flows_response::ResponseTypes::Flow(
                            (*f).clone(),
                        )),
                    };
                    let text = compact(&response, &style).unwrap_or_default();
                    let verdict = lumen_proto::flow::Verdict::try_from(f.verdict)
                        .map(|v| v.as_str_name())
                        .unwrap_or("");
                    (vec![Cell::toned(text, verdict_tone(verdict))], Target::Flow(i))
                })
                .collect();
            // Newest first unless sorted ascending.
            if !sort.ascending {
                rows.reverse();
            }
            View {
                columns: FLOW_COLUMNS.to_vec(),
                matched: rows.len(),
                targets: rows.iter().map(|(_, t)| t.clone()).collect(),
                rows: rows.into_iter().map(|(r, _)| r).collect(),
                evicted: 0,
            }
        }
        Level::Top(Tab::Nodes) => {
            let mut t = snapshot.nodes.clone();
            // Nodes the server names that sent nothing yet (or are down).
            for n in nodes {
                if !t.rows.iter().any(|r| r.name == n.name) {
                    t.rows.push(lumen_model::NodeRow {
                        name: n.name.clone(),
                        state: "UNKNOWN_NODE_STATE",
                        message: String::new(),
                        state_since_ms: None,
                        flows: 0,
                        dropped: 0,
                        flows_per_sec: 0.0,
                        drops_per_sec: 0.0,
                        lost_events: 0,
                        last_seen_ms: None,
                    });
                }
            }
            let evicted = t.evicted;
            let t = t.query(&query(&NODE_SORT, sort, Selection::default()));
            View {
                columns: NODE_COLUMNS.to_vec(),
                targets: vec![Target::None; t.rows.len()],
                rows: t
                    .rows
                    .iter()
                    .map(|r| {
                        let info = nodes.iter().find(|n| n.name == r.name);
                        let state = match (r.state, info) {
                            ("UNKNOWN_NODE_STATE", Some(i)) => i.state.clone(),
                            (s, _) => s.to_string(),
                        };
                        let tone = match state.as_str() {
                            "NODE_CONNECTED" => Tone::Good,
                            "UNKNOWN_NODE_STATE" => Tone::Plain,
                            _ => Tone::Bad,
                        };
                        vec![
                            Cell::plain(r.name.clone()),
                            Cell::toned(state, tone),
                            Cell::plain(rate(r.flows_per_sec)),
                            Cell::plain(rate(r.drops_per_sec)),
                            Cell::toned(
                                r.lost_events.to_string(),
                                if r.lost_events > 0 { Tone::Bad } else { Tone::Plain },
                            ),
                            Cell::plain(info.map(|i| i.version.clone()).unwrap_or_default()),
                            Cell::plain(info.map(|i| uptime(i.uptime_ns)).unwrap_or_default()),
                        ]
                    })
                    .collect(),
                matched: t.matched,
                evicted,
            }
        }
    }
}

/// What the server says of one node (GetNodes).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub state: String,
    pub version: String,
    pub uptime_ns: u64,
}

fn uptime(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0 => String::new(),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn drops(snapshot: &Snapshot, sort: Sort) -> View {
    let d = &snapshot.drops;
    let q = query(
        &[DropColumn::Key, DropColumn::Key, DropColumn::Count, DropColumn::PerSec],
        sort,
        Selection::default(),
    );
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for r in d.by_reason.clone().query(&q).rows {
        rows.push(vec![
            Cell::plain("reason"),
            Cell::toned(r.key.to_string(), Tone::Bad),
            Cell::plain(r.count.to_string()),
            Cell::plain(rate(r.per_sec)),
        ]);
        targets.push(Target::None);
    }
    for r in d.by_policy.clone().query(&q).rows {
        rows.push(vec![
            Cell::plain("policy"),
            Cell::toned(r.key.to_string(), Tone::Warn),
            Cell::plain(r.count.to_string()),
            Cell::plain(rate(r.per_sec)),
        ]);
        targets.push(Target::None);
    }
    for r in d.by_destination.clone().query(&q).rows {
        rows.push(vec![
            Cell::plain("destination"),
            Cell::plain(r.key.to_string()),
            Cell::plain(r.count.to_string()),
            Cell::plain(rate(r.per_sec)),
        ]);
        targets.push(Target::Workload(r.key.clone()));
    }
    View {
        columns: DROP_COLUMNS.to_vec(),
        matched: rows.len(),
        rows,
        targets,
        evicted: d.by_reason.evicted + d.by_policy.evicted + d.by_destination.evicted,
    }
}

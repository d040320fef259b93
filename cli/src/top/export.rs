//! Tables out of the dashboard: `w` writes the table shown as JSON and CSV,
//! `--once -o table` prints it aligned, and the detail panel's lines.

use std::fmt::Write as _;
use std::time::SystemTime;

use lumen_model::Snapshot;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::GetFlowsResponse;

use super::state::App;
use super::tabs::{self, Level, Tab, Target, View};
use crate::printer::{dict, Style};

/// The view as JSON: one object per row, keyed by column names.
pub fn json(view: &View) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = view
        .rows
        .iter()
        .map(|cells| {
            let object = view
                .columns
                .iter()
                .zip(cells)
                .map(|(c, cell)| (c.name.to_string(), serde_json::Value::String(cell.text.clone())))
                .collect();
            serde_json::Value::Object(object)
        })
        .collect();
    serde_json::Value::Array(rows)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn csv(view: &View) -> String {
    let mut out = String::new();
    let header: Vec<String> = view.columns.iter().map(|c| csv_field(c.name)).collect();
    out += &(header.join(",") + "\n");
    for cells in &view.rows {
        let row: Vec<String> = cells.iter().map(|c| csv_field(&c.text)).collect();
        out += &(row.join(",") + "\n");
    }
    out
}

/// The view as aligned text, every column whole.
pub fn text(view: &View) -> String {
    let widths: Vec<usize> = view
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            view.rows
                .iter()
                .map(|r| r[i].text.chars().count())
                .chain([c.name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let last = i + 1 == cells.len();
            match (view.columns[i].numeric, last) {
                (true, _) => out += &format!("{}{cell}", " ".repeat(pad)),
                (false, true) => out += cell,
                (false, false) => out += &format!("{cell}{}", " ".repeat(pad)),
            }
            if !last {
                out += "  ";
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(view.columns.iter().map(|c| c.name).collect());
    for r in &view.rows {
        out += &line(r.iter().map(|c| c.text.as_str()).collect());
    }
    out
}

impl App {
    /// Writes the table shown to `lumen-top-<tab>-<unix seconds>.{json,csv}`
    /// in the working directory; says what it wrote, or why it could not.
    pub fn write_table(&self, now: SystemTime) -> String {
        let snapshot = self.snapshot(now);
        let flows = self.flows();
        let view = tabs::view(
            &self.level(),
            &snapshot,
            self.sort[self.sort_slot()],
            &flows,
            &self.node_infos(),
        );
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let stem = format!("lumen-top-{}-{secs}", self.tab.title().to_lowercase());
        let json = serde_json::to_string_pretty(&json(&view)).unwrap_or_default() + "\n";
        let written = std::fs::write(format!("{stem}.json"), json)
            .and_then(|_| std::fs::write(format!("{stem}.csv"), csv(&view)));
        match written {
            Ok(()) => format!("wrote {stem}.json and {stem}.csv ({} rows)", view.rows.len()),
            Err(e) => format!("cannot write {stem}.json: {e}"),
        }
    }

    pub fn node_infos(&self) -> Vec<tabs::NodeInfo> {
        let Some(info) = &self.info else {
            return Vec::new();
        };
        info.nodes
            .iter()
            .map(|n| tabs::NodeInfo {
                name: n.name.clone(),
                state: lumen_proto::relay::NodeState::try_from(n.state)
                    .map(|s| s.as_str_name().to_string())
                    .unwrap_or_default(),
                version: n.version.clone(),
                uptime_ns: n.uptime_ns,
            })
            .collect()
    }

    /// The detail panel of `target` in `snapshot`.
    pub fn detail_lines(
        &self,
        target: Option<&Target>,
        snapshot: &Snapshot,
        flows: &[&lumen_proto::flow::Flow],
    ) -> Vec<String> {
        match target {
            Some(Target::Flow(i)) => flows.get(*i).map(|f| flow_detail(f)).unwrap_or_default(),
            Some(Target::Connection(c)) => {
                let Some(r) = snapshot.connections.rows.iter().find(|r| {
                    r.source == c.source
                        && r.destination == c.destination
                        && r.port == c.port
                        && r.protocol == c.protocol
                }) else {
                    return vec!["(no longer in the table)".into()];
                };
                let mut out = vec![
                    format!("{} → {}", r.source, r.destination),
                    format!("port {} {}", r.port, tabs::protocol_name(r.protocol)),
                    format!(
                        "flows {} (forwarded {}, dropped {}, audit {})",
                        r.flows, r.forwarded, r.dropped, r.audit
                    ),
                    format!("last verdict {}", r.last_verdict),
                ];
                if !r.drop_reasons.is_empty() {
                    out.push("drop reasons:".into());
                    for c in &r.drop_reasons {
                        out.push(format!("  {} {}", c.key, c.count));
                    }
                }
                if !r.policies.is_empty() {
                    out.push("why dropped (policy):".into());
                    for c in &r.policies {
                        out.push(format!("  {} {}", c.key, c.count));
                    }
                }
                out
            }
            Some(Target::Workload(k)) => {
                let Some(r) = snapshot.workloads.rows.iter().find(|r| &r.node == k) else {
                    return vec![k.to_string()];
                };
                let mut out = vec![
                    k.to_string(),
                    format!(
                        "flows {} (in {}, out {}, dropped {})",
                        r.flows, r.flows_in, r.flows_out, r.dropped
                    ),
                    format!("pods ({}):", r.pods.len() as u64 + r.pods_evicted),
                ];
                out.extend(r.pods.iter().map(|p| format!("  {p}")));
                if let Some(p) = &r.top_peer {
                    out.push(format!("top peer {p}"));
                }
                out
            }
            _ => match self.level() {
                Level::Top(Tab::Flows) => vec!["no flow selected".into()],
                _ => vec!["nothing selected".into()],
            },
        }
    }
}

/// Every field of a flow, as `lumen observe -o dict` prints it.
fn flow_detail(f: &lumen_proto::flow::Flow) -> Vec<String> {
    let response = GetFlowsResponse {
        node_name: f.node_name.clone(),
        time: f.time,
        response_types: Some(ResponseTypes::Flow(f.clone())),
    };
    let mut out = String::new();
    let _ = write!(out, "{}", dict(&response, &Style::default()).unwrap_or_default());
    out.lines().map(str::to_string).collect()
}

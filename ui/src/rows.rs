//! A flow as a row of the page's table and of the CSV export: the columns
//! of `lumen observe`, plus the ids of its two ends on the map (so a click
//! on a row can select them) and its number in the ring (for the detail
//! panel, which asks the server for every field).

use std::fmt::Write as _;

use lumen_flow::summary::tcp_flag_names;
use lumen_model::Model;
use lumen_proto::flow::{layer4::Protocol, DropReason, Endpoint, Flow, TrafficDirection, Verdict};
use serde::Serialize;

use crate::map::MapEdge;
use crate::query::node_id;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRow {
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// RFC 3339, UTC, to the microsecond.
    pub time: String,
    /// `ns/pod`, else a reserved identity or the IP.
    pub source: String,
    pub destination: String,
    pub source_ip: String,
    pub destination_ip: String,
    pub source_identity: u32,
    pub destination_identity: u32,
    /// The ends' nodes on the map of the view's unit (empty if none).
    pub source_node: String,
    pub destination_node: String,
    pub source_port: u32,
    pub destination_port: u32,
    pub protocol: &'static str,
    pub verdict: &'static str,
    /// Hubble's name (`POLICY_DENIED`); empty unless dropped.
    pub drop_reason: String,
    /// Why policy dropped it (`denied by CiliumNetworkPolicy shop/db-in`).
    pub policy: String,
    pub node: String,
    pub tcp_flags: String,
    pub direction: &'static str,
    pub is_reply: Option<bool>,
    pub summary: String,
}

fn endpoint_name(ep: Option<&Endpoint>, ip: &str, names: &[String]) -> String {
    match ep {
        Some(ep) if !ep.pod_name.is_empty() => format!("{}/{}", ep.namespace, ep.pod_name),
        Some(ep) => {
            let reserved = ep
                .labels
                .iter()
                .find_map(|l| l.strip_prefix("reserved:"))
                .map(|l| l.split_once('=').map_or(l, |(k, _)| k));
            match (names.first(), reserved) {
                (Some(name), _) => name.clone(),
                (None, Some(r)) if !ip.is_empty() => format!("{ip} (reserved:{r})"),
                (None, Some(r)) => format!("reserved:{r}"),
                (None, None) if !ip.is_empty() => ip.to_string(),
                (None, None) => lumen_flow::format::identity_name(ep.identity),
            }
        }
        None => names.first().cloned().unwrap_or_else(|| ip.to_string()),
    }
}

fn rfc3339(seconds: i64, nanos: i32) -> String {
    let (year, month, day) = lumen_flow::format::civil_date(seconds.div_euclid(86_400));
    let secs = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        nanos / 1000
    )
}

impl FlowRow {
    /// The row of `flow`, response `seq`; its ends' nodes under `model`'s unit.
    pub fn new(seq: u64, flow: &Flow, model: &Model) -> FlowRow {
        let ip = flow.ip.as_ref();
        let (sip, dip) = ip.map_or(("", ""), |ip| (ip.source.as_str(), ip.destination.as_str()));
        let (protocol, sport, dport, flags) = match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
            Some(Protocol::Tcp(t)) => (
                "TCP",
                t.source_port,
                t.destination_port,
                t.flags
                    .as_ref()
                    .map(|f| tcp_flag_names(f).join(","))
                    .unwrap_or_default(),
            ),
            Some(Protocol::Udp(u)) => ("UDP", u.source_port, u.destination_port, String::new()),
            Some(Protocol::Sctp(s)) => ("SCTP", s.source_port, s.destination_port, String::new()),
            Some(Protocol::IcmPv4(_)) => ("ICMPv4", 0, 0, String::new()),
            Some(Protocol::IcmPv6(_)) => ("ICMPv6", 0, 0, String::new()),
            Some(Protocol::Vrrp(_)) => ("VRRP", 0, 0, String::new()),
            Some(Protocol::Igmp(_)) => ("IGMP", 0, 0, String::new()),
            None => ("", 0, 0, String::new()),
        };
        let verdict = Verdict::try_from(flow.verdict).unwrap_or(Verdict::Unknown);
        let drop_reason = match verdict {
            Verdict::Dropped => DropReason::try_from(flow.drop_reason_desc)
                .map_or_else(|_| flow.drop_reason_desc.to_string(), |r| r.as_str_name().to_string()),
            _ => String::new(),
        };
        let (source_node, destination_node) = model
            .connection_of(flow)
            .map(|(s, d, _, _)| {
                // The model turns replies around; the row keeps the packet's way.
                match flow.is_reply {
                    Some(true) => (node_id(&d), node_id(&s)),
                    _ => (node_id(&s), node_id(&d)),
                }
            })
            .unwrap_or_default();
        let (seconds, nanos) = flow.time.map_or((0, 0), |t| (t.seconds, t.nanos));
        FlowRow {
            seq,
            time_ms: (seconds.max(0) as u64) * 1000 + (nanos.max(0) as u64) / 1_000_000,
            time: rfc3339(seconds, nanos),
            source: endpoint_name(flow.source.as_ref(), sip, &flow.source_names),
            destination: endpoint_name(flow.destination.as_ref(), dip, &flow.destination_names),
            source_ip: sip.to_string(),
            destination_ip: dip.to_string(),
            source_identity: flow.source.as_ref().map_or(0, |e| e.identity),
            destination_identity: flow.destination.as_ref().map_or(0, |e| e.identity),
            source_node,
            destination_node,
            source_port: sport,
            destination_port: dport,
            protocol,
            verdict: verdict.as_str_name(),
            drop_reason,
            policy: lumen_flow::format::why(flow).unwrap_or_default(),
            node: flow.node_name.clone(),
            tcp_flags: flags,
            direction: TrafficDirection::try_from(flow.traffic_direction)
                .unwrap_or(TrafficDirection::Unknown)
                .as_str_name(),
            is_reply: flow.is_reply,
            summary: lumen_flow::format::summary(flow),
        }
    }
}

/// A CSV field: quoted when it holds a comma, a quote or a line break; a
/// leading `=`, `+`, `-` or `@` is prefixed with `'` so that a spreadsheet
/// does not run a label as a formula.
fn field(out: &mut String, value: &str) {
    let guarded = value.starts_with(['=', '+', '-', '@']);
    if guarded || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if guarded {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn record(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

/// The flows as CSV (RFC 4180), with a header line.
pub fn flows_csv(rows: &[FlowRow]) -> String {
    let mut out = String::new();
    record(
        &mut out,
        &[
            "time",
            "source",
            "destination",
            "source_ip",
            "destination_ip",
            "source_port",
            "destination_port",
            "protocol",
            "verdict",
            "drop_reason",
            "policy",
            "node",
            "tcp_flags",
            "direction",
            "summary",
        ],
    );
    for r in rows {
        record(
            &mut out,
            &[
                &r.time,
                &r.source,
                &r.destination,
                &r.source_ip,
                &r.destination_ip,
                &r.source_port.to_string(),
                &r.destination_port.to_string(),
                r.protocol,
                r.verdict,
                &r.drop_reason,
                &r.policy,
                &r.node,
                &r.tcp_flags,
                r.direction,
                &r.summary,
            ],
        );
    }
    out
}

/// The edges as CSV, with a header line; `labels` names each node id.
pub fn edges_csv(edges: &[MapEdge], label: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    record(
        &mut out,
        &[
            "source",
            "destination",
            "ports",
            "flows",
            "forwarded",
            "dropped",
            "audit",
            "flows_per_sec",
            "drops_per_sec",
            "drop_pct",
            "health",
            "drop_reasons",
            "policies",
        ],
    );
    for e in edges {
        let list = |counts: &[crate::map::Count]| {
            counts.iter().fold(String::new(), |mut s, c| {
                if !s.is_empty() {
                    s.push_str("; ");
                }
                let _ = write!(s, "{} ({})", c.name, c.count);
                s
            })
        };
        let health = serde_json::to_value(e.health).expect("health serialises");
        record(
            &mut out,
            &[
                &label(&e.source),
                &label(&e.target),
                &e.ports.join(" "),
                &e.flows.to_string(),
                &e.forwarded.to_string(),
                &e.dropped.to_string(),
                &e.audit.to_string(),
                &format!("{:.2}", e.flows_per_sec),
                &format!("{:.2}", e.drops_per_sec),
                &format!("{:.1}", e.drop_pct),
                health.as_str().unwrap_or_default(),
                &list(&e.drop_reasons),
                &list(&e.policies),
            ],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123456Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn endpoints_are_named_as_lumen_observe_names_them() {
        let ep = |identity, pod: &str, labels: &[&str]| Endpoint {
            identity,
            namespace: "shop".into(),
            pod_name: pod.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..Default::default()
        };
        let world = ep(2, "", &["reserved:world"]);
        assert_eq!(
            endpoint_name(Some(&ep(1001, "web-0", &[])), "10.0.0.1", &[]),
            "shop/web-0"
        );
        assert_eq!(endpoint_name(Some(&world), "1.1.1.1", &[]), "1.1.1.1 (reserved:world)");
        assert_eq!(
            endpoint_name(Some(&world), "1.1.1.1", &["one.one.one.one".into()]),
            "one.one.one.one"
        );
        assert_eq!(
            endpoint_name(Some(&ep(1, "", &["reserved:host"])), "", &[]),
            "reserved:host"
        );
        assert_eq!(endpoint_name(Some(&ep(1003, "", &[])), "10.0.0.9", &[]), "10.0.0.9");
        assert_eq!(endpoint_name(None, "10.0.0.9", &[]), "10.0.0.9");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut out = String::new();
        record(&mut out, &["plain", "a,b", "say \"hi\"", "=cmd()", "-1"]);
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"'=cmd()\",\"'-1\"\r\n");
    }
}

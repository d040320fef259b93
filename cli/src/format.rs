//! Human-readable output: one line per event, tables of endpoints.

use std::fmt::Write;

use lumen_observer::policies::PolicyView;
use lumen_observer::state::EndpointView;
use serde_json::Value;

fn endpoint(e: &Value, side: &str) -> String {
    let ip = e[side].as_str().unwrap_or("?");
    let name = e[format!("{side}_endpoint")].as_str().unwrap_or(ip);
    let port = e[format!("{side}_port")].as_u64().unwrap_or(0);
    let id = &e[format!("{side}_identity")];
    if port > 0 {
        format!("{name}:{port} (ID:{id})")
    } else {
        format!("{name} (ID:{id})")
    }
}

/// `01:43:04.216: default/frontend:59448 (ID:…) -> default/backend:80 (ID:…) to-endpoint FORWARDED (TCP Flags: SYN)`
pub fn event_line(e: &Value) -> Option<String> {
    match e["kind"].as_str()? {
        "lost" => Some(format!(
            "{}: EVENTS LOST: {} events from {}",
            clock(e),
            e["count"],
            e["source"].as_str()?
        )),
        "flow" => {
            let point = match e["observation_point"].as_str()? {
                "TO_ENDPOINT" => "to-endpoint",
                "FROM_ENDPOINT" => "from-endpoint",
                other => other,
            };
            let mut line = format!(
                "{}: {} -> {} {} {}",
                clock(e),
                endpoint(e, "source"),
                endpoint(e, "destination"),
                point,
                e["verdict"].as_str()?
            );
            let proto = e["protocol"].as_u64()?;
            if let Some(flags) = e["tcp_flag_names"].as_array() {
                let names: Vec<&str> = flags.iter().filter_map(Value::as_str).collect();
                let _ = write!(line, " (TCP Flags: {})", names.join(", "));
            } else if proto == 1 || proto == 58 {
                let _ = write!(
                    line,
                    " ({} type {})",
                    if proto == 1 { "ICMPv4" } else { "ICMPv6" },
                    e["icmp_type"]
                );
            } else if proto == 17 {
                line.push_str(" (UDP)");
            }
            if let Some(reason) = e["drop_reason_desc"].as_str() {
                let _ = write!(line, " {reason}");
            }
            if let Some(rule) = e["rule"].as_str() {
                let _ = write!(line, " [rule {rule}]");
            }
            Some(line)
        }
        _ => None,
    }
}

fn clock(e: &Value) -> &str {
    // RFC 3339 "2026-11-25T01:43:04.216252591Z": keep the time to the millisecond.
    e["time"].as_str().and_then(|t| t.get(11..23)).unwrap_or("")
}

pub fn endpoint_table(endpoints: &[EndpointView]) -> String {
    let onoff = |b: bool| if b { "enforced" } else { "open" }.to_string();
    let rows = endpoints.iter().map(|ep| {
        let ips: Vec<String> = ep.spec.ips.iter().map(ToString::to_string).collect();
        let labels: Vec<String> = ep.spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            ep.spec.key(),
            ep.endpoint_id.to_string(),
            ep.identity.to_string(),
            ep.spec.interface.clone().unwrap_or_else(|| "-".into()),
            ips.join(","),
            onoff(ep.enforce_ingress),
            onoff(ep.enforce_egress),
            labels.join(","),
        ]
    });
    table(
        &[
            "ENDPOINT",
            "ID",
            "IDENTITY",
            "INTERFACE",
            "IPS",
            "INGRESS",
            "EGRESS",
            "LABELS",
        ],
        rows,
    )
}

pub fn policy_table(policies: &[PolicyView]) -> String {
    let rows = policies.iter().map(|p| {
        vec![
            p.kind.clone(),
            if p.namespace.is_empty() {
                "-".into()
            } else {
                p.namespace.clone()
            },
            p.name.clone(),
            p.rules.to_string(),
            if p.audit { "audit" } else { "enforce" }.to_string(),
            p.origin.clone(),
            p.source.clone(),
        ]
    });
    table(
        &["KIND", "NAMESPACE", "NAME", "RULES", "MODE", "ORIGIN", "SOURCE"],
        rows,
    )
}

/// Columns padded to their widest cell, two spaces apart.
pub(crate) fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    all.extend(rows);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| all.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in all {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_a_dropped_syn() {
        let e = json!({
            "kind": "flow", "time": "2026-11-25T01:43:04.216252591Z", "observation_point": "TO_ENDPOINT",
            "verdict": "DROPPED", "protocol": 6, "source": "10.0.0.1", "source_port": 40000,
            "source_identity": 300, "source_endpoint": "default/frontend", "destination": "10.0.0.2",
            "destination_port": 8080, "destination_identity": 400, "destination_endpoint": "default/backend",
            "tcp_flag_names": ["SYN"], "drop_reason_desc": "POLICY_DENIED"
        });
        assert_eq!(
            event_line(&e).unwrap(),
            "01:43:04.216: default/frontend:40000 (ID:300) -> default/backend:8080 (ID:400) to-endpoint DROPPED (TCP Flags: SYN) POLICY_DENIED"
        );
    }

    #[test]
    fn formats_forwarded_icmp_with_rule_and_lost_events() {
        let e = json!({
            "kind": "flow", "time": "2026-11-25T01:43:04.216252591Z", "observation_point": "FROM_ENDPOINT",
            "verdict": "FORWARDED", "protocol": 58, "icmp_type": 128, "source": "fd00::1", "source_port": 0,
            "source_identity": 300, "destination": "fd00::2", "destination_port": 0, "destination_identity": 2,
            "rule": "allow-ping"
        });
        assert_eq!(
            event_line(&e).unwrap(),
            "01:43:04.216: fd00::1 (ID:300) -> fd00::2 (ID:2) from-endpoint FORWARDED (ICMPv6 type 128) [rule allow-ping]"
        );
        let lost = json!({"kind": "lost", "time": "2026-11-25T01:43:05.000000000Z", "source": "PERF_EVENT_RING_BUFFER", "count": 12});
        assert_eq!(
            event_line(&lost).unwrap(),
            "01:43:05.000: EVENTS LOST: 12 events from PERF_EVENT_RING_BUFFER"
        );
    }
}

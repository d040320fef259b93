//! Renderings of `GetFlowsResponse`s in the layouts `hubble observe -o …`
//! prints: compact lines, dict blocks, an aligned table, and the protobuf
//! JSON mapping (which [`parse_json`] reads back, for `--input-file`).
//!
//! Times are printed in UTC with Hubble's `Jan _2 15:04:05.000` layout so
//! that output does not depend on the machine's time zone.

use std::fmt::Write;
use std::sync::OnceLock;

use lumen_proto::flow::{layer4::Protocol, Endpoint, Flow, LostEventSource, TcpFlags, TraceObservationPoint, Verdict};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::monitor_type;

/// A JSON line that is not a flow or a `GetFlowsResponse`.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    // The serde errors are printed, not chained, so that `{:#}` does not
    // repeat them.
    #[error("not JSON: {0}")]
    Syntax(serde_json::Error),
    #[error("not a flow or GetFlowsResponse: {0}")]
    Schema(serde_json::Error),
    #[error("cannot convert {message} to JSON: {reason}")]
    Encode { message: &'static str, reason: String },
}

/// `Nov 25 01:46:56.162` (UTC), `N/A` without a time.
pub fn timestamp(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = t.filter(|t| (0..1_000_000_000).contains(&t.nanos)) else {
        return "N/A".into();
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    let (_, month, day) = civil_from_days(days);
    format!(
        "{} {day:>2} {:02}:{:02}:{:02}.{:03}",
        MONTHS[month as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        t.nanos / 1_000_000
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn ports(flow: &Flow) -> (u32, u32) {
    match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => (t.source_port, t.destination_port),
        Some(Protocol::Udp(u)) => (u.source_port, u.destination_port),
        Some(Protocol::Sctp(s)) => (s.source_port, s.destination_port),
        _ => (0, 0),
    }
}

/// `ns/pod:port`, or the IP (`[v6]:port`) for an endpoint without a pod.
fn host(endpoint: Option<&Endpoint>, ip: &str, port: u32) -> String {
    let name = match endpoint.filter(|e| !e.pod_name.is_empty()) {
        Some(e) if e.namespace.is_empty() => e.pod_name.clone(),
        Some(e) => format!("{}/{}", e.namespace, e.pod_name),
        None if ip.is_empty() => "N/A".into(),
        None if ip.contains(':') && port != 0 => format!("[{ip}]"),
        None => ip.to_string(),
    };
    if port == 0 {
        name
    } else {
        format!("{name}:{port}")
    }
}

/// Cilium's reserved identities by name, numbered ones as `ID:n`.
fn identity(id: u32) -> String {
    const RESERVED: [&str; 10] = [
        "host",
        "world",
        "unmanaged",
        "health",
        "init",
        "remote-node",
        "kube-apiserver",
        "ingress",
        "world-ipv4",
        "world-ipv6",
    ];
    match id {
        1..=10 => RESERVED[id as usize - 1].to_string(),
        _ => format!("ID:{id}"),
    }
}

fn source_destination(flow: &Flow) -> (String, String, u32, u32) {
    let (sport, dport) = ports(flow);
    let (sip, dip) = flow
        .ip
        .as_ref()
        .map_or(("", ""), |ip| (ip.source.as_str(), ip.destination.as_str()));
    let src = host(flow.source.as_ref(), sip, sport);
    let dst = host(flow.destination.as_ref(), dip, dport);
    let id = |e: Option<&Endpoint>| e.map_or(0, |e| e.identity);
    (src, dst, id(flow.source.as_ref()), id(flow.destination.as_ref()))
}

/// The event's kind: the observation point in kebab case (`to-endpoint`),
/// else the monitor event type (`drop`, `trace`, `L7`, ...).
pub fn flow_type(flow: &Flow) -> String {
    let point = TraceObservationPoint::try_from(flow.trace_observation_point).unwrap_or_default();
    if point != TraceObservationPoint::UnknownPoint {
        return point.as_str_name().to_ascii_lowercase().replace('_', "-");
    }
    match flow.event_type.as_ref().map_or(0, |e| e.r#type) {
        monitor_type::DROP => "drop",
        monitor_type::TRACE => "trace",
        monitor_type::POLICY_VERDICT => "policy-verdict",
        monitor_type::TRACE_SOCK => "trace-sock",
        monitor_type::ACCESS_LOG => "L7",
        _ => "UNKNOWN",
    }
    .into()
}

fn verdict(flow: &Flow) -> &'static str {
    Verdict::try_from(flow.verdict).map_or("UNKNOWN", |v| v.as_str_name())
}

fn tcp_flags(f: &TcpFlags) -> String {
    [
        (f.syn, "SYN"),
        (f.ack, "ACK"),
        (f.fin, "FIN"),
        (f.rst, "RST"),
        (f.psh, "PSH"),
        (f.urg, "URG"),
        (f.ece, "ECE"),
        (f.cwr, "CWR"),
        (f.ns, "NS"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(", ")
}

fn icmp(version: u8, kind: u32, code: u32) -> String {
    let name = match (version, kind) {
        (4, 0) | (6, 129) => "EchoReply",
        (4, 8) | (6, 128) => "EchoRequest",
        (4, 3) | (6, 1) => "DestinationUnreachable",
        (4, 11) | (6, 3) => "TimeExceeded",
        _ => return format!("ICMPv{version} type {kind} code {code}"),
    };
    format!("ICMPv{version} {name}")
}

/// What the packet was: `TCP Flags: SYN`, `UDP`, `ICMPv4 EchoRequest`.
pub fn summary(flow: &Flow) -> String {
    match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => match t.flags.as_ref().map(tcp_flags) {
            Some(flags) if !flags.is_empty() => format!("TCP Flags: {flags}"),
            _ => "TCP".into(),
        },
        Some(Protocol::Udp(_)) => "UDP".into(),
        Some(Protocol::Sctp(_)) => "SCTP".into(),
        Some(Protocol::IcmPv4(i)) => icmp(4, i.r#type, i.code),
        Some(Protocol::IcmPv6(i)) => icmp(6, i.r#type, i.code),
        None => "N/A".into(),
    }
}

fn lost(response: &GetFlowsResponse) -> Option<String> {
    let Some(ResponseTypes::LostEvents(l)) = &response.response_types else {
        return None;
    };
    let source = LostEventSource::try_from(l.source).map_or("UNKNOWN_LOST_EVENT_SOURCE", |s| s.as_str_name());
    Some(format!("EVENTS LOST: {source} {}", l.num_events_lost))
}

/// One line per response:
/// `Nov 25 01:46:56.162: default/frontend:60060 (ID:2010621) -> default/backend:8080 (ID:10943975) to-endpoint DROPPED (TCP Flags: SYN)`.
/// Replies are printed destination first with `<-`, flows that do not know
/// whether they are replies with `<>`, as Hubble does. Node status events
/// print nothing.
pub fn compact(response: &GetFlowsResponse) -> Option<String> {
    if let Some(line) = lost(response) {
        return Some(format!("{}: {line}", timestamp(response.time.as_ref())));
    }
    let Some(ResponseTypes::Flow(flow)) = &response.response_types else {
        return None;
    };
    let (src, dst, sid, did) = source_destination(flow);
    let mut src = format!("{src} ({})", identity(sid));
    let mut dst = format!("{dst} ({})", identity(did));
    let arrow = match flow.is_reply {
        None => "<>",
        Some(true) => {
            std::mem::swap(&mut src, &mut dst);
            "<-"
        }
        Some(false) => "->",
    };
    Some(format!(
        "{}: {src} {arrow} {dst} {} {} ({}){}",
        timestamp(flow.time.as_ref()),
        flow_type(flow),
        verdict(flow),
        summary(flow),
        why(flow).map(|w| format!(" [{w}]")).unwrap_or_default()
    ))
}

fn policy_name(p: &lumen_proto::flow::Policy) -> String {
    match p.namespace.as_str() {
        "" => format!("{} {}", p.kind, p.name),
        ns => format!("{} {ns}/{}", p.kind, p.name),
    }
}

/// Why policy dropped (or audited) a flow, when the flow says: the deny
/// rule's policy, or under default deny the policies that selected the
/// endpoint (Lumen's flow extension).
pub fn why(flow: &Flow) -> Option<String> {
    let dropped = flow.verdict == Verdict::Dropped as i32 || flow.verdict == Verdict::Audit as i32;
    if !dropped {
        return None;
    }
    let names = |ps: &[lumen_proto::flow::Policy]| ps.iter().map(policy_name).collect::<Vec<_>>().join(", ");
    let denied_by: Vec<_> = flow
        .ingress_denied_by
        .iter()
        .chain(&flow.egress_denied_by)
        .cloned()
        .collect();
    if !denied_by.is_empty() {
        return Some(format!("denied by {}", names(&denied_by)));
    }
    let ext = flow
        .extensions
        .as_ref()
        .and_then(|a| lumen_proto::lumen::v1::FlowExtension::from_any(a)?.ok())?;
    (!ext.selected_by.is_empty()).then(|| format!("no policy allowed it; selected by {}", names(&ext.selected_by)))
}

/// A `key: value` block per response, keys right-aligned like Hubble's.
pub fn dict(response: &GetFlowsResponse) -> Option<String> {
    if let Some(line) = lost(response) {
        return Some(format!(
            "  TIMESTAMP: {}\n       LOST: {}\n",
            timestamp(response.time.as_ref()),
            line.trim_start_matches("EVENTS LOST: ")
        ));
    }
    let Some(ResponseTypes::Flow(flow)) = &response.response_types else {
        return None;
    };
    let (src, dst, _, _) = source_destination(flow);
    Some(format!(
        "  TIMESTAMP: {}\n     SOURCE: {src}\nDESTINATION: {dst}\n       TYPE: {}\n    VERDICT: {}\n    SUMMARY: {}\n",
        timestamp(flow.time.as_ref()),
        flow_type(flow),
        verdict(flow),
        summary(flow)
    ))
}

/// Separator Hubble prints between dict blocks.
pub const DICT_SEPARATOR: &str = "------------";

/// Columns TIMESTAMP SOURCE DESTINATION TYPE VERDICT SUMMARY, two spaces
/// apart, each as wide as its widest cell. Lost events become a row whose
/// SOURCE says `EVENTS LOST`.
pub fn table(responses: &[GetFlowsResponse]) -> String {
    let mut rows = vec![["TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"].map(String::from)];
    for r in responses {
        match &r.response_types {
            Some(ResponseTypes::Flow(flow)) => {
                let (src, dst, _, _) = source_destination(flow);
                rows.push([
                    timestamp(flow.time.as_ref()),
                    src,
                    dst,
                    flow_type(flow),
                    verdict(flow).into(),
                    summary(flow),
                ]);
            }
            Some(ResponseTypes::LostEvents(_)) => {
                let line = lost(r).unwrap_or_default();
                let (what, count) = line
                    .trim_start_matches("EVENTS LOST: ")
                    .split_once(' ')
                    .unwrap_or_default();
                rows.push([
                    timestamp(r.time.as_ref()),
                    "EVENTS LOST".into(),
                    what.into(),
                    String::new(),
                    String::new(),
                    count.into(),
                ]);
            }
            _ => {}
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(lumen_proto::FILE_DESCRIPTOR_SET).expect("lumen-proto ships a valid descriptor set")
    })
}

fn descriptor(name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is in lumen-proto's descriptor set"))
}

fn to_json<M: Message>(message: &M, name: &'static str) -> Result<String, FormatError> {
    let dynamic = DynamicMessage::decode(descriptor(name), message.encode_to_vec().as_slice()).map_err(|e| {
        FormatError::Encode {
            message: name,
            reason: e.to_string(),
        }
    })?;
    let mut out = Vec::new();
    let options = SerializeOptions::new().use_proto_field_name(true);
    dynamic
        .serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)
        .map_err(|e| FormatError::Encode {
            message: name,
            reason: e.to_string(),
        })?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// The response in the protobuf JSON mapping, proto field names, one line
/// (`hubble observe -o jsonpb`).
pub fn jsonpb(response: &GetFlowsResponse) -> Result<String, FormatError> {
    to_json(response, "observer.GetFlowsResponse")
}

/// Just the flow in the protobuf JSON mapping (`-o json`); `None` for
/// responses that are not flows.
pub fn json(response: &GetFlowsResponse) -> Result<Option<String>, FormatError> {
    match &response.response_types {
        Some(ResponseTypes::Flow(flow)) => to_json(flow, "flow.Flow").map(Some),
        _ => Ok(None),
    }
}

/// Reads one JSON line: a `GetFlowsResponse` (an object with `flow`,
/// `lost_events` or `node_status`) or a bare flow, which gets the flow's
/// time and node name as the response's.
pub fn parse_json(line: &str) -> Result<GetFlowsResponse, FormatError> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(FormatError::Syntax)?;
    let is_response = ["flow", "lost_events", "lostEvents", "node_status", "nodeStatus"]
        .iter()
        .any(|k| value.get(k).is_some());
    let name = if is_response {
        "observer.GetFlowsResponse"
    } else {
        "flow.Flow"
    };
    let dynamic = DynamicMessage::deserialize(descriptor(name), value).map_err(FormatError::Schema)?;
    if is_response {
        Ok(dynamic.transcode_to().expect("same descriptor as the prost type"))
    } else {
        let flow: Flow = dynamic.transcode_to().expect("same descriptor as the prost type");
        Ok(GetFlowsResponse {
            node_name: flow.node_name.clone(),
            time: flow.time,
            response_types: Some(ResponseTypes::Flow(flow)),
        })
    }
}

/// A filter in the protobuf JSON mapping, proto field names, one line
/// (`hubble observe --print-raw-filters`).
pub fn filter_json(filter: &lumen_proto::flow::FlowFilter) -> Result<String, FormatError> {
    to_json(filter, "flow.FlowFilter")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::flow::{Layer4, Tcp};

    fn at(seconds: i64, nanos: i32) -> String {
        timestamp(Some(&prost_types::Timestamp { seconds, nanos }))
    }

    #[test]
    fn timestamps_use_hubbles_layout_in_utc() {
        assert_eq!(at(1_764_035_216, 162_999_999), "Nov 25 01:46:56.162");
        assert_eq!(at(951_782_400, 0), "Feb 29 00:00:00.000");
        assert_eq!(at(-1, 0), "Dec 31 23:59:59.000");
        assert_eq!(at(0, 1_000_000_000), "N/A");
        assert_eq!(timestamp(None), "N/A");
    }

    #[test]
    fn summary_names_protocol_and_flags() {
        let flow = Flow {
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp {
                    flags: Some(TcpFlags {
                        fin: true,
                        ack: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        assert_eq!(summary(&flow), "TCP Flags: ACK, FIN");
        assert_eq!(summary(&Flow::default()), "N/A");
    }

    #[test]
    fn bare_flows_become_responses_and_bad_lines_are_refused() {
        let r = parse_json(r#"{"node_name":"n1","time":"1970-01-01T00:00:01Z","verdict":"AUDIT"}"#).unwrap();
        assert_eq!(r.node_name, "n1");
        assert_eq!(r.time.map(|t| t.seconds), Some(1));
        assert!(matches!(r.response_types, Some(ResponseTypes::Flow(f)) if f.verdict == Verdict::Audit as i32));
        assert_eq!(
            parse_json("{\"verdict\":\"MAYBE\"}").unwrap_err().to_string(),
            "not a flow or GetFlowsResponse: unrecognized enum value 'MAYBE'"
        );
        assert_eq!(
            parse_json("{").unwrap_err().to_string(),
            "not JSON: EOF while parsing an object at line 1 column 1"
        );
    }

    #[test]
    fn why_names_the_deny_rule_or_the_policies_behind_a_default_deny() {
        let policy = |name: &str| lumen_proto::flow::Policy {
            name: name.into(),
            namespace: "default".into(),
            kind: "CiliumNetworkPolicy".into(),
            ..Default::default()
        };
        let denied = Flow {
            verdict: Verdict::Dropped as i32,
            ingress_denied_by: vec![policy("deny-other")],
            ..Default::default()
        };
        assert_eq!(
            why(&denied).as_deref(),
            Some("denied by CiliumNetworkPolicy default/deny-other")
        );
        let ext = lumen_proto::lumen::v1::FlowExtension {
            selected_by: vec![policy("a"), policy("b")],
            ..Default::default()
        };
        let default_deny = Flow {
            verdict: Verdict::Dropped as i32,
            extensions: Some(ext.to_any()),
            ..Default::default()
        };
        assert_eq!(
            why(&default_deny).as_deref(),
            Some("no policy allowed it; selected by CiliumNetworkPolicy default/a, CiliumNetworkPolicy default/b")
        );
        let forwarded = Flow {
            verdict: Verdict::Forwarded as i32,
            ..default_deny.clone()
        };
        assert_eq!(why(&forwarded), None);
        let response = GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(default_deny)),
            ..Default::default()
        };
        assert!(compact(&response).unwrap().ends_with("DROPPED (N/A) [no policy allowed it; selected by CiliumNetworkPolicy default/a, CiliumNetworkPolicy default/b]"));
    }
}

//! Flows in Hubble's words, and in the protobuf JSON mapping.
//!
//! What `hubble observe` calls the parts of a flow: its TYPE (`to-endpoint`,
//! `Policy denied`, `policy-verdict:L3-L4 INGRESS`), its SUMMARY (`TCP
//! Flags: SYN`), reserved identities by name; Lumen's reason for a drop
//! ([`why`]); and the protobuf JSON mapping with proto field names that
//! `-o json` and `-o jsonpb` print and [`parse_json`] reads back (for
//! `--input-file`). Laying flows out in lines, blocks and tables, with times,
//! colours and names, is the printer's work (`lumen observe`'s).

use std::borrow::Cow;
use std::sync::OnceLock;

use lumen_proto::flow::{
    layer7::Record, DebugCapturePoint, Flow, FlowFilter, L7FlowType, Policy, SocketTranslationPoint, TrafficDirection,
    Verdict,
};
use lumen_proto::names::RESERVED_IDENTITIES;
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
    #[error("not a FlowFilter: {0}")]
    Filter(serde_json::Error),
    #[error("cannot convert {message} to JSON: {reason}")]
    Encode { message: &'static str, reason: String },
}

/// A protobuf enum value's name, or its number when this build does not
/// know it (as Go prints an unknown enum value).
fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> Cow<'static, str> {
    E::try_from(value).map_or_else(|_| Cow::Owned(value.to_string()), |e| Cow::Borrowed(name(e)))
}

/// The civil date (year, month, day) of `days` since 1970-01-01, by Howard
/// Hinnant's days-from-civil inverse: no calendar library or formatter
/// runs per flow.
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// `n` in decimal, written into `digits` without the formatter (it showed
/// per flow).
pub fn decimal(n: u64, digits: &mut [u8; 20]) -> &str {
    std::str::from_utf8(decimal_bytes(n, digits)).expect("ASCII digits")
}

/// [`decimal`] as bytes, without the UTF-8 check.
pub fn decimal_bytes(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &digits[at..]
}

/// Cilium's name for a reserved identity (`world`; `unknown` for 0),
/// `ID:n` for any other.
pub fn identity_name(id: u32) -> String {
    if id == 0 {
        return "unknown".into();
    }
    RESERVED_IDENTITIES
        .iter()
        .find(|(reserved, _)| *reserved == id)
        .map_or_else(|| format!("ID:{id}"), |(_, name)| name.to_string())
}

/// Cilium's trace observation points, indexed by the number a trace event
/// carries as its sub-type, in the words `hubble observe` uses (its TYPE
/// column, `--type trace:NAME`).
pub const TRACE_POINTS: [&str; 14] = [
    "to-endpoint",
    "to-proxy",
    "to-host",
    "to-stack",
    "to-overlay",
    "from-endpoint",
    "from-proxy",
    "from-host",
    "from-stack",
    "from-overlay",
    "from-network",
    "to-network",
    "from-crypto",
    "to-crypto",
];

/// What Cilium calls a drop reason code in its monitor output (`Policy
/// denied` for 133), `code, 0` for one it does not know.
fn drop_text(code: u8) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        0 => "Success",
        2 => "Invalid packet",
        3 => "Interface",
        4 => "Interface Decrypted",
        5 => "LB, sock cgroup: No backend slot entry found",
        6 => "LB, sock cgroup: No backend entry found",
        7 => "LB, sock cgroup: Reverse entry update failed",
        8 => "LB, sock cgroup: Reverse entry stale",
        9 => "Fragmented packet",
        10 => "Fragmented packet entry update failed",
        11 => "Missed tail call to custom program",
        12 => "Interface Decrypting",
        13 => "Interface Encrypting",
        14 => "LB: sock cgroup: Reverse entry delete succeeded",
        15 => "MTU error message",
        130 => "Invalid source mac",
        131 => "Invalid destination mac",
        132 => "Invalid source ip",
        133 => "Policy denied",
        134 => "Invalid packet",
        135 => "CT: Truncated or invalid header",
        136 => "Fragmentation needed",
        137 => "CT: Unknown L4 protocol",
        138 => "CT: Can't create entry from packet",
        139 => "Unsupported L3 protocol",
        140 => "Missed tail call",
        141 => "Error writing to packet",
        142 => "Unknown L4 protocol",
        143 => "Unknown ICMPv4 code",
        144 => "Unknown ICMPv4 type",
        145 => "Unknown ICMPv6 code",
        146 => "Unknown ICMPv6 type",
        147 => "Error retrieving tunnel key",
        148 => "Error retrieving tunnel options",
        149 => "Invalid Geneve option",
        150 => "Unknown L3 target address",
        151 => "Stale or unroutable IP",
        152 => "No matching local container found",
        153 => "Error while correcting L3 checksum",
        154 => "Error while correcting L4 checksum",
        155 => "CT: Map insertion failed",
        156 => "Invalid IPv6 extension header",
        157 => "IP fragmentation not supported",
        158 => "Service backend not found",
        160 => "No tunnel/encapsulation endpoint (datapath BUG!)",
        161 => "NAT 46/64 not enabled",
        162 => "Reached EDT rate-limiting drop horizon",
        163 => "Unknown connection tracking state",
        164 => "Local host is unreachable",
        165 => "No configuration available to perform policy decision",
        166 => "Unsupported L2 protocol",
        167 => "No mapping for NAT masquerade",
        168 => "Unsupported protocol for NAT masquerade",
        169 => "FIB lookup failed",
        170 => "Encapsulation traffic is prohibited",
        171 => "Invalid identity",
        172 => "Unknown sender",
        173 => "NAT not needed",
        174 => "Is a ClusterIP",
        175 => "First logical datagram fragment not found",
        176 => "Forbidden ICMPv6 message",
        177 => "Denied by LB src range check",
        178 => "Socket lookup failed",
        179 => "Socket assign failed",
        180 => "Proxy redirection not supported for protocol",
        181 => "Policy denied by denylist",
        182 => "VLAN traffic disallowed by VLAN filter",
        183 => "Incorrect VNI from VTEP",
        184 => "Failed to update or lookup TC buffer",
        185 => "No SID was found for the IP address",
        186 => "SRv6 state was removed during tail call",
        187 => "L3 translation from IPv4 to IPv6 failed (NAT46)",
        188 => "L3 translation from IPv6 to IPv4 failed (NAT64)",
        189 => "Authentication required",
        190 => "No conntrack map found",
        191 => "No nat map found",
        192 => "Invalid ClusterID",
        193 => "Unsupported packet protocol for DSR encapsulation",
        194 => "No egress gateway found",
        195 => "Traffic is unencrypted",
        196 => "TTL exceeded",
        197 => "No node ID found",
        198 => "Rate limited",
        199 => "IGMP handled",
        200 => "IGMP subscribed",
        201 => "Multicast handled",
        202 => "Host datapath not ready",
        203 => "Endpoint policy program not available",
        204 => "No Egress IP configured",
        205 => "Punt to proxy",
        _ => return Cow::Owned(format!("{code}, 0")),
    })
}

/// Cilium's names for how a policy-verdict event's rule matched.
fn match_type(code: u32) -> &'static str {
    match code {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        5 => "L3-Proto",
        6 => "Proto-Only",
        _ => "unknown",
    }
}

/// The TYPE column, in Hubble's words: for an L7 record `http-request`,
/// `dns-response proxy`...; for a trace event its observation point
/// (`to-endpoint`), for a drop its reason (`Policy denied`), for a policy
/// verdict `policy-verdict:L3-L4 INGRESS`; `UNKNOWN` for anything else.
pub fn flow_type(flow: &Flow) -> String {
    if let Some(l7) = &flow.l7 {
        let kind = enum_name(l7.r#type, |t: L7FlowType| t.as_str_name()).to_ascii_lowercase();
        #[allow(deprecated)] // Kafka records are deprecated upstream but still shown.
        return match &l7.record {
            Some(Record::Http(_)) => format!("http-{kind}"),
            Some(Record::Dns(d)) => format!("dns-{kind} {}", d.observation_source),
            Some(Record::Kafka(_)) => format!("kafka-{kind}"),
            None => format!("l7-{kind}"),
        };
    }
    let (kind, sub_type) = flow.event_type.as_ref().map_or((0, 0), |e| (e.r#type, e.sub_type));
    // Sub-types are one byte in Cilium's monitor messages.
    let sub_type = sub_type as u8;
    match kind {
        monitor_type::TRACE => TRACE_POINTS
            .get(usize::from(sub_type))
            .map_or_else(|| sub_type.to_string(), |p| p.to_string()),
        monitor_type::DROP => drop_text(sub_type).into_owned(),
        monitor_type::POLICY_VERDICT => format!(
            "policy-verdict:{} {}",
            match_type(flow.policy_match_type),
            enum_name(flow.traffic_direction, |d: TrafficDirection| d.as_str_name())
        ),
        monitor_type::CAPTURE => {
            enum_name(flow.debug_capture_point, |p: DebugCapturePoint| p.as_str_name()).into_owned()
        }
        monitor_type::TRACE_SOCK => match SocketTranslationPoint::try_from(flow.sock_xlate_point) {
            Ok(SocketTranslationPoint::SockXlatePointPreDirectionFwd) => "pre-xlate-fwd".into(),
            Ok(SocketTranslationPoint::SockXlatePointPostDirectionFwd) => "post-xlate-fwd".into(),
            Ok(SocketTranslationPoint::SockXlatePointPreDirectionRev) => "pre-xlate-rev".into(),
            Ok(SocketTranslationPoint::SockXlatePointPostDirectionRev) => "post-xlate-rev".into(),
            _ => enum_name(flow.sock_xlate_point, |p: SocketTranslationPoint| p.as_str_name()).into_owned(),
        },
        _ => "UNKNOWN".into(),
    }
}

/// What the packet was, as Hubble's printer shows it: the flow's `Summary`
/// (`TCP Flags: SYN`, `UDP`, `ICMPv4 EchoRequest`), worked out from the
/// flow for one that came without it, `N/A` when there is nothing to say.
pub fn summary(flow: &Flow) -> String {
    #[allow(deprecated)]
    let given = &flow.summary;
    let summary = match given.is_empty() {
        true => crate::summary::summary(flow),
        false => given.clone(),
    };
    if summary.is_empty() {
        "N/A".into()
    } else {
        summary
    }
}

fn policy_name(p: &Policy) -> String {
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
    let names = |ps: &[Policy]| ps.iter().map(policy_name).collect::<Vec<_>>().join(", ");
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
    let json = String::from_utf8(out).expect("serde_json writes UTF-8");
    Ok(go_escaped(json))
}

/// `json` as Go's JSON encoder writes it for Hubble: `<`, `>`, `&`, U+2028
/// and U+2029 as `\u` escapes (they can only occur inside strings).
fn go_escaped(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The response in the protobuf JSON mapping, proto field names, one line
/// (`hubble observe -o jsonpb`): written directly ([`crate::jsonpb`]) when
/// it is a flow of the fields Lumen fills, else through reflection.
pub fn jsonpb(response: &GetFlowsResponse) -> Result<String, FormatError> {
    let mut out = Vec::new();
    if crate::jsonpb::write_response(response, &mut out) {
        return Ok(String::from_utf8(out).expect("the writer writes UTF-8"));
    }
    jsonpb_reflected(response)
}

/// [`jsonpb`] through reflection (prost encode, prost-reflect decode, serde).
pub(crate) fn jsonpb_reflected(response: &GetFlowsResponse) -> Result<String, FormatError> {
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
pub fn filter_json(filter: &FlowFilter) -> Result<String, FormatError> {
    to_json(filter, "flow.FlowFilter")
}

/// Filters in the protobuf JSON mapping (proto or JSON field names), one or
/// more objects in a row, as `hubble observe --allowlist` takes them.
pub fn parse_filters_json(text: &str) -> Result<Vec<FlowFilter>, FormatError> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .map(|value| {
            let value = value.map_err(FormatError::Syntax)?;
            let dynamic =
                DynamicMessage::deserialize(descriptor("flow.FlowFilter"), value).map_err(FormatError::Filter)?;
            Ok(dynamic.transcode_to().expect("same descriptor as the prost type"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::flow::{layer4::Protocol, CiliumEventType, Dns, Http, Layer4, Layer7, Tcp, TcpFlags};

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

    fn event(r#type: i32, sub_type: i32) -> Flow {
        Flow {
            event_type: Some(CiliumEventType { r#type, sub_type }),
            ..Default::default()
        }
    }

    #[test]
    fn types_in_hubbles_words() {
        assert_eq!(flow_type(&event(4, 0)), "to-endpoint");
        assert_eq!(flow_type(&event(4, 5)), "from-endpoint");
        assert_eq!(flow_type(&event(4, 13)), "to-crypto");
        assert_eq!(flow_type(&event(4, 99)), "99");
        assert_eq!(flow_type(&event(1, 133)), "Policy denied");
        assert_eq!(flow_type(&event(1, 181)), "Policy denied by denylist");
        assert_eq!(flow_type(&event(1, 250)), "250, 0");
        let verdict_event = Flow {
            policy_match_type: 2,
            traffic_direction: TrafficDirection::Ingress as i32,
            ..event(5, 0)
        };
        assert_eq!(flow_type(&verdict_event), "policy-verdict:L3-L4 INGRESS");
        assert_eq!(flow_type(&event(5, 0)), "policy-verdict:none TRAFFIC_DIRECTION_UNKNOWN");
        let sock = Flow {
            sock_xlate_point: SocketTranslationPoint::SockXlatePointPostDirectionRev as i32,
            ..event(7, 0)
        };
        assert_eq!(flow_type(&sock), "post-xlate-rev");
        let capture = Flow {
            debug_capture_point: DebugCapturePoint::DbgCaptureDelivery as i32,
            ..event(3, 0)
        };
        assert_eq!(flow_type(&capture), "DBG_CAPTURE_DELIVERY");
        let l7 = |r#type: L7FlowType, record| Flow {
            l7: Some(Layer7 {
                r#type: r#type as i32,
                record: Some(record),
                ..Default::default()
            }),
            ..event(129, 0)
        };
        assert_eq!(
            flow_type(&l7(L7FlowType::Request, Record::Http(Http::default()))),
            "http-request"
        );
        let dns = Record::Dns(Dns {
            observation_source: "proxy".into(),
            ..Default::default()
        });
        assert_eq!(flow_type(&l7(L7FlowType::Response, dns)), "dns-response proxy");
        assert_eq!(flow_type(&Flow::default()), "UNKNOWN");
    }

    #[test]
    fn reserved_identities_by_name() {
        assert_eq!(identity_name(0), "unknown");
        assert_eq!(identity_name(2), "world");
        assert_eq!(identity_name(10), "world-ipv6");
        assert_eq!(identity_name(11), "ID:11");
        assert_eq!(identity_name(2_010_621), "ID:2010621");
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
    fn json_escapes_html_characters_as_go_does() {
        let flow = Flow {
            node_name: "a<b>&c\u{2028}".into(),
            ..Default::default()
        };
        let response = GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(flow)),
            ..Default::default()
        };
        let line = json(&response).unwrap().unwrap();
        assert_eq!(line, r#"{"node_name":"a\u003cb\u003e\u0026c\u2028"}"#);
        let back = parse_json(&line).unwrap();
        assert_eq!(back.node_name, "a<b>&c\u{2028}");
    }

    #[test]
    fn raw_filters_are_one_or_more_json_objects() {
        let filters = parse_filters_json(
            r#"{"source_pod":["default/"]} {"destinationPod":["kube-system/"],"verdict":["DROPPED"]}"#,
        )
        .unwrap();
        assert_eq!(
            filters,
            vec![
                FlowFilter {
                    source_pod: vec!["default/".into()],
                    ..Default::default()
                },
                FlowFilter {
                    destination_pod: vec!["kube-system/".into()],
                    verdict: vec![Verdict::Dropped as i32],
                    ..Default::default()
                },
            ]
        );
        assert_eq!(
            parse_filters_json(r#"{"source_pods":["x"]}"#).unwrap_err().to_string(),
            "not a FlowFilter: unrecognized field name 'source_pods'"
        );
        assert_eq!(
            parse_filters_json("{").unwrap_err().to_string(),
            "not JSON: EOF while parsing an object at line 1 column 1"
        );
    }

    #[test]
    fn why_names_the_deny_rule_or_the_policies_behind_a_default_deny() {
        let policy = |name: &str| Policy {
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
            ..default_deny
        };
        assert_eq!(why(&forwarded), None);
    }
}

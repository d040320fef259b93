//! The label values Hubble's handlers compute from a flow, by the names
//! and rules of Cilium's Go code (`FlowProtocol`, the monitor's
//! observation points, gopacket's ICMP names, Go's enum strings).

use std::borrow::Cow;

use lumen_proto::flow::{
    layer4::Protocol, layer7::Record, DropReason, Flow, IpVersion, TraceReason, TrafficDirection, Verdict,
};

/// Cilium's monitor message types (`event_type.type`).
const MESSAGE_DROP: i32 = 1;
const MESSAGE_CAPTURE: i32 = 3;
const MESSAGE_TRACE: i32 = 4;
const MESSAGE_POLICY_VERDICT: i32 = 5;
const MESSAGE_ACCESS_LOG: i32 = 129;

/// Cilium's reserved identity of the local host.
const IDENTITY_HOST: u32 = 1;

/// A Go enum's `String()`: its name, or its number if it has none.
fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> Cow<'static, str> {
    match E::try_from(value) {
        Ok(e) => Cow::Borrowed(name(e)),
        Err(_) => Cow::Owned(value.to_string()),
    }
}

pub(crate) fn verdict(flow: &Flow) -> Cow<'static, str> {
    enum_name(flow.verdict, |v: Verdict| v.as_str_name())
}

pub(crate) fn drop_reason(reason: i32) -> Cow<'static, str> {
    enum_name(reason, |r: DropReason| r.as_str_name())
}

fn event_type(flow: &Flow) -> i32 {
    flow.event_type.as_ref().map_or(0, |e| e.r#type)
}

/// The L7 protocol of an access-log flow, as Hubble names it.
fn l7_protocol(flow: &Flow) -> Option<&'static str> {
    // Kafka is deprecated in the API, still a protocol Hubble names.
    #[allow(deprecated)]
    match flow.l7.as_ref()?.record.as_ref()? {
        Record::Dns(_) => Some("DNS"),
        Record::Http(_) => Some("HTTP"),
        Record::Kafka(_) => Some("Kafka"),
    }
}

/// Hubble's `FlowProtocol`: the L7 protocol, else the L4 one.
pub(crate) fn flow_protocol(flow: &Flow) -> &'static str {
    match event_type(flow) {
        MESSAGE_ACCESS_LOG => l7_protocol(flow).unwrap_or("Unknown L7"),
        MESSAGE_DROP | MESSAGE_TRACE | MESSAGE_POLICY_VERDICT | MESSAGE_CAPTURE => {
            match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
                Some(Protocol::Tcp(_)) => "TCP",
                Some(Protocol::Udp(_)) => "UDP",
                Some(Protocol::IcmPv4(_)) => "ICMPv4",
                Some(Protocol::IcmPv6(_)) => "ICMPv6",
                Some(Protocol::Sctp(_)) => "SCTP",
                Some(Protocol::Vrrp(_)) => "VRRP",
                Some(Protocol::Igmp(_)) => "IGMP",
                None => "Unknown L4",
            }
        }
        _ => "Unknown flow",
    }
}

/// Cilium's trace observation points by number (`TraceObservationPoints`).
const OBSERVATION_POINTS: [&str; 12] = [
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
];

/// The `type` and `subtype` labels of `hubble_flows_processed_total`.
pub(crate) fn event_type_names(flow: &Flow) -> (&'static str, Cow<'static, str>) {
    let sub_type = flow.event_type.as_ref().map_or(0, |e| e.sub_type);
    match event_type(flow) {
        MESSAGE_ACCESS_LOG => ("L7", l7_protocol(flow).unwrap_or("").into()),
        MESSAGE_DROP => ("Drop", "".into()),
        MESSAGE_CAPTURE => ("Capture", "".into()),
        // Go converts the sub-type to a byte before looking it up.
        MESSAGE_TRACE => (
            "Trace",
            OBSERVATION_POINTS
                .get(sub_type as u8 as usize)
                .copied()
                .unwrap_or("")
                .into(),
        ),
        MESSAGE_POLICY_VERDICT => ("PolicyVerdict", "".into()),
        other => ("Unknown", other.to_string().into()),
    }
}

/// The `family` label and the flags counted: FIN, SYN or SYN-ACK, RST.
pub(crate) fn tcp_flags(flow: &Flow) -> Option<(Cow<'static, str>, [Option<&'static str>; 3])> {
    let forwarded = [Verdict::Forwarded as i32, Verdict::Redirected as i32].contains(&flow.verdict);
    let ip = flow.ip.as_ref().filter(|_| forwarded)?;
    let Some(Protocol::Tcp(tcp)) = flow.l4.as_ref()?.protocol.as_ref() else {
        return None;
    };
    let f = tcp.flags.as_ref()?;
    let syn = match (f.syn, f.ack) {
        (true, true) => Some("SYN-ACK"),
        (true, false) => Some("SYN"),
        _ => None,
    };
    let flags = [f.fin.then_some("FIN"), syn, f.rst.then_some("RST")];
    let family = enum_name(ip.ip_version, |v: IpVersion| v.as_str_name());
    flags.iter().any(Option::is_some).then_some((family, flags))
}

/// Protocol and destination port of a forwarded flow known not to be a
/// reply (ICMP has port 0).
pub(crate) fn destination_port(flow: &Flow) -> Option<(&'static str, u32)> {
    let forwarded = [Verdict::Forwarded as i32, Verdict::Redirected as i32].contains(&flow.verdict);
    if !forwarded || flow.is_reply != Some(false) {
        return None;
    }
    match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => Some(("TCP", t.destination_port)),
        Protocol::Udp(u) => Some(("UDP", u.destination_port)),
        Protocol::Sctp(s) => Some(("SCTP", s.destination_port)),
        Protocol::IcmPv4(_) => Some(("ICMPv4", 0)),
        Protocol::IcmPv6(_) => Some(("ICMPv6", 0)),
        _ => None,
    }
}

/// The destination port of a TCP, UDP or SCTP flow.
pub(crate) fn world_port(flow: &Flow) -> Option<u32> {
    match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(t) => Some(t.destination_port),
        Protocol::Udp(u) => Some(u.destination_port),
        Protocol::Sctp(s) => Some(s.destination_port),
        _ => None,
    }
}

/// The `family` and `type` labels of an ICMP flow, the type named as
/// gopacket names it (`EchoRequest`, `DestinationUnreachable(Port)`).
/// Hubble labels ICMPv6 with family `IPv4` (a slip in its handler); here
/// it is `IPv6`.
pub(crate) fn icmp(flow: &Flow) -> Option<(&'static str, String)> {
    let family = match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::IcmPv4(_) => "IPv4",
        Protocol::IcmPv6(_) => "IPv6",
        _ => return None,
    };
    // The summary of an ICMP flow is "ICMPv4 <type name>".
    let summary = lumen_flow::summary::summary(flow);
    let name = summary.split_once(' ').map_or("", |(_, n)| n);
    Some((family, name.to_string()))
}

/// Go's `strings.ToLower` of an enum's `String()`.
fn lower(name: Cow<'static, str>) -> Cow<'static, str> {
    match name {
        Cow::Borrowed(n) if n.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Owned(n.to_ascii_lowercase()),
        other => other,
    }
}

/// The lower-case names the policy metric uses most, without allocating.
pub(crate) fn direction_name(flow: &Flow) -> &'static str {
    match TrafficDirection::try_from(flow.traffic_direction) {
        Ok(TrafficDirection::Ingress) => "ingress",
        Ok(TrafficDirection::Egress) => "egress",
        _ => "traffic_direction_unknown",
    }
}

fn action_name(flow: &Flow) -> Cow<'static, str> {
    match Verdict::try_from(flow.verdict) {
        Ok(Verdict::Forwarded) => "forwarded".into(),
        Ok(Verdict::Dropped) => "dropped".into(),
        Ok(Verdict::Audit) => "audit".into(),
        _ => lower(verdict(flow)),
    }
}

/// `direction`, `match` and `action` of a policy verdict.
///
/// Cilium reports a policy decision in an event of its own (type
/// PolicyVerdict); Lumen's datapath reports it in the trace or drop event
/// of the packet it decided. So besides PolicyVerdict and L7 events as
/// Hubble, a trace of a new connection that a rule allowed (or audited) and
/// a drop by policy count as verdicts: what Cilium would have reported.
pub(crate) fn policy_verdict(flow: &Flow) -> Option<[Cow<'static, str>; 3]> {
    let direction = || direction_name(flow).into();
    let kind = event_type(flow);
    if kind == MESSAGE_ACCESS_LOG {
        let sub = l7_protocol(flow).unwrap_or("").to_ascii_lowercase();
        return Some([direction(), format!("l7/{sub}").into(), action_name(flow)]);
    }
    let decided = match kind {
        MESSAGE_POLICY_VERDICT => true,
        MESSAGE_DROP => {
            [DropReason::PolicyDenied as i32, DropReason::PolicyDeny as i32].contains(&flow.drop_reason_desc)
        }
        MESSAGE_TRACE => {
            let new = flow.is_reply == Some(false) && flow.trace_reason == TraceReason::New as i32;
            new && (flow.policy_match_type != 0 || flow.verdict == Verdict::Audit as i32)
        }
        _ => false,
    };
    // Hubble ignores the host's verdicts: the host may reach local endpoints.
    if !decided || flow.source.as_ref().is_some_and(|s| s.identity == IDENTITY_HOST) {
        return None;
    }
    let matched = match flow.policy_match_type {
        0 => "none",
        1 => "l3-only",
        2 => "l3-l4",
        3 => "l4-only",
        4 => "all",
        _ => "unknown",
    };
    Some([direction(), matched.into(), action_name(flow)])
}

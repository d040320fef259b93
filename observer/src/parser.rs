//! The parser stage: a stored datapath record plus the enrichment snapshot
//! that was current when it arrived, turned into Hubble's `flow.Flow`.
//! Pure: no kernel, no clock, no I/O.
//!
//! Over 600 lines with its tests, which build full flows field by field;
//! the code itself is under 370.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use lumen_probes::abi;
use lumen_proto::flow::{self, layer4::Protocol};
use lumen_proto::lumen::v1::FlowExtension;
use lumen_proto::prost_types;

use crate::identity::reserved;
use crate::store::StoredFlow;

mod encode;
pub use encode::Encoder;

/// Cilium's monitor message types, which Hubble reports as `event_type`.
pub const MESSAGE_TYPE_DROP: i32 = 1;
pub const MESSAGE_TYPE_TRACE: i32 = 4;
/// Trace sub-types (Cilium's TraceToLxc / TraceFromLxc).
pub const TRACE_TO_LXC: i32 = 0;
pub const TRACE_FROM_LXC: i32 = 5;

/// What the node knows of a local or remote endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointMeta {
    pub id: u32,
    pub identity: u32,
    pub namespace: String,
    pub pod_name: String,
    /// `k8s:key=value`, sorted, the namespace label included.
    pub labels: Vec<String>,
    /// Policies selecting the endpoint per direction (why it is default-deny).
    pub selected_by_ingress: Vec<RuleMeta>,
    pub selected_by_egress: Vec<RuleMeta>,
}

pub use lumen_policy::compile::RuleMeta;

/// Enrichment state at one point in time. Flows keep the id of the snapshot
/// they arrived under, so later changes do not rewrite history.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub node_name: String,
    pub endpoints: HashMap<IpAddr, Arc<EndpointMeta>>,
    /// The same endpoints by endpoint id.
    pub endpoints_by_id: HashMap<u32, Arc<EndpointMeta>>,
    /// Labels of identities that are not endpoints (CIDR identities).
    pub identity_labels: HashMap<u32, Vec<String>>,
    pub rules: HashMap<u32, Arc<RuleMeta>>,
    /// Host-side interface names by ifindex.
    pub interfaces: HashMap<u32, String>,
}

/// A flow's uuid: the observer instance (random per start) and the flow's
/// sequence number, laid out as an RFC 4122 version 4 string.
pub fn flow_uuid(instance: u64, seq: u64) -> String {
    let bits = (u128::from(instance) << 64) | u128::from(seq);
    uuid::Builder::from_random_bytes(bits.to_be_bytes())
        .into_uuid()
        .to_string()
}

/// An address as text, IPv4 digit by digit: every flow served has two, and
/// `Display` through the formatting machinery costs several times more.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

pub(crate) fn ip_of(family: u8, addr: &[u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}

pub(crate) fn endpoint(ip: IpAddr, identity: u32, snap: &Snapshot) -> flow::Endpoint {
    match snap.endpoints.get(&ip) {
        Some(m) => flow::Endpoint {
            id: m.id,
            identity,
            namespace: m.namespace.clone(),
            labels: m.labels.clone(),
            pod_name: m.pod_name.clone(),
            ..Default::default()
        },
        None => flow::Endpoint {
            identity,
            labels: match reserved::label(identity) {
                Some(l) => vec![l.to_string()],
                None => snap.identity_labels.get(&identity).cloned().unwrap_or_default(),
            },
            ..Default::default()
        },
    }
}

fn l4(ev: &abi::Event) -> Option<flow::Layer4> {
    let protocol = match ev.proto {
        6 => Protocol::Tcp(flow::Tcp {
            source_port: ev.sport.into(),
            destination_port: ev.dport.into(),
            flags: Some(tcp_flags(ev.tcp_flags)),
        }),
        17 => Protocol::Udp(flow::Udp {
            source_port: ev.sport.into(),
            destination_port: ev.dport.into(),
        }),
        132 => Protocol::Sctp(flow::Sctp {
            source_port: ev.sport.into(),
            destination_port: ev.dport.into(),
        }),
        1 => Protocol::IcmPv4(flow::IcmPv4 {
            r#type: ev.icmp_type.into(),
            code: ev.icmp_code.into(),
        }),
        58 => Protocol::IcmPv6(flow::IcmPv6 {
            r#type: ev.icmp_type.into(),
            code: ev.icmp_code.into(),
        }),
        _ => return None,
    };
    Some(flow::Layer4 {
        protocol: Some(protocol),
    })
}

fn tcp_flags(f: u8) -> flow::TcpFlags {
    flow::TcpFlags {
        fin: f & 0x01 != 0,
        syn: f & 0x02 != 0,
        rst: f & 0x04 != 0,
        psh: f & 0x08 != 0,
        ack: f & 0x10 != 0,
        urg: f & 0x20 != 0,
        ece: f & 0x40 != 0,
        cwr: f & 0x80 != 0,
        ns: false,
    }
}

fn ct_state(s: u8) -> (&'static str, flow::TraceReason) {
    match s {
        abi::CT_NEW => ("new", flow::TraceReason::New),
        abi::CT_ESTABLISHED => ("established", flow::TraceReason::Established),
        abi::CT_REPLY => ("reply", flow::TraceReason::Reply),
        abi::CT_RELATED => ("related", flow::TraceReason::Related),
        _ => ("untracked", flow::TraceReason::Unknown),
    }
}

/// The direction of the connection a packet belongs to, as Hubble's
/// `traffic_direction` reports it: a reply travels the other way from the
/// connection it answers.
pub fn connection_direction(ev: &abi::Event) -> u8 {
    let reply = ev.ct_state != 0 && ev.flags & abi::EVF_IS_REPLY != 0;
    match (ev.direction, reply) {
        (abi::DIR_INGRESS, true) => abi::DIR_EGRESS,
        (abi::DIR_EGRESS, true) => abi::DIR_INGRESS,
        (direction, _) => direction,
    }
}

fn verdict(ev: &abi::Event) -> flow::Verdict {
    match ev.verdict {
        abi::VERDICT_FORWARDED => flow::Verdict::Forwarded,
        abi::VERDICT_DROPPED => flow::Verdict::Dropped,
        abi::VERDICT_AUDIT => flow::Verdict::Audit,
        _ => flow::Verdict::Unknown,
    }
}

/// The rule that decided a flow, if the snapshot names it.
fn rule<'s>(ev: &abi::Event, snap: &'s Snapshot) -> Option<&'s RuleMeta> {
    snap.rules.get(&ev.rule_id).filter(|_| ev.rule_id != 0).map(|r| &**r)
}

fn as_policy(r: &RuleMeta) -> flow::Policy {
    flow::Policy {
        name: r.name.clone(),
        namespace: r.namespace.clone(),
        kind: r.kind.clone(),
        ..Default::default()
    }
}

/// Under default deny no rule decided: the endpoint whose policies made it
/// so, and the direction they apply to.
fn default_deny_endpoint<'s>(ev: &abi::Event, snap: &'s Snapshot) -> Option<(&'s EndpointMeta, bool)> {
    let dropped = ev.verdict == abi::VERDICT_DROPPED;
    match snap.endpoints_by_id.get(&ev.endpoint_id) {
        Some(ep) if dropped && ev.drop_reason == abi::DROP_POLICY_DENIED => {
            Some((ep, connection_direction(ev) == abi::DIR_INGRESS))
        }
        _ => None,
    }
}

/// Lumen's extension of a flow: what Hubble's message has no field for.
fn extension(ev: &abi::Event, snap: &Snapshot) -> FlowExtension {
    let selected_by = match default_deny_endpoint(ev, snap) {
        Some((ep, true)) => ep.selected_by_ingress.iter().map(as_policy).collect(),
        Some((ep, false)) => ep.selected_by_egress.iter().map(as_policy).collect(),
        None => Vec::new(),
    };
    FlowExtension {
        rule_id: ev.rule_id,
        rule_name: rule(ev, snap).map(|r| r.name.clone()).unwrap_or_default(),
        ct_state: ct_state(ev.ct_state).0.to_string(),
        local_redirect: false,
        selected_by,
    }
}

fn event_type(ev: &abi::Event) -> flow::CiliumEventType {
    let dropped = ev.verdict == abi::VERDICT_DROPPED;
    flow::CiliumEventType {
        r#type: if dropped { MESSAGE_TYPE_DROP } else { MESSAGE_TYPE_TRACE },
        sub_type: if dropped {
            ev.drop_reason.into()
        } else if ev.direction == abi::DIR_INGRESS {
            TRACE_TO_LXC
        } else {
            TRACE_FROM_LXC
        },
    }
}

fn traffic_direction(ev: &abi::Event) -> flow::TrafficDirection {
    if connection_direction(ev) == abi::DIR_INGRESS {
        flow::TrafficDirection::Ingress
    } else {
        flow::TrafficDirection::Egress
    }
}

fn trace_observation_point(ev: &abi::Event) -> flow::TraceObservationPoint {
    if ev.direction == abi::DIR_INGRESS {
        flow::TraceObservationPoint::ToEndpoint
    } else {
        flow::TraceObservationPoint::FromEndpoint
    }
}

fn trace_reason(ev: &abi::Event) -> flow::TraceReason {
    if ev.verdict == abi::VERDICT_DROPPED {
        flow::TraceReason::Unknown
    } else {
        ct_state(ev.ct_state).1
    }
}

fn ip_version(ev: &abi::Event) -> flow::IpVersion {
    if ev.family == 4 {
        flow::IpVersion::IPv4
    } else {
        flow::IpVersion::IPv6
    }
}

fn is_reply(ev: &abi::Event) -> Option<bool> {
    (ev.ct_state != 0).then_some(ev.flags & abi::EVF_IS_REPLY != 0)
}

fn time(ev: &abi::Event) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ev.timestamp_ns / 1_000_000_000) as i64,
        nanos: (ev.timestamp_ns % 1_000_000_000) as i32,
    }
}

/// Where the deciding rule goes: (ingress, denied).
fn rule_place(ev: &abi::Event) -> (bool, bool) {
    (
        connection_direction(ev) == abi::DIR_INGRESS,
        ev.verdict == abi::VERDICT_DROPPED,
    )
}

/// Builds the Hubble flow of a stored record.
pub fn to_flow(stored: &StoredFlow, snap: &Snapshot, instance: u64) -> flow::Flow {
    let ev = &stored.event;
    let (src, dst) = (ip_of(ev.family, &ev.saddr), ip_of(ev.family, &ev.daddr));
    let dropped = ev.verdict == abi::VERDICT_DROPPED;
    let rule = rule(ev, snap);
    let mut f = flow::Flow {
        time: Some(time(ev)),
        uuid: flow_uuid(instance, stored.seq),
        verdict: verdict(ev) as i32,
        ip: Some(flow::Ip {
            source: ip_text(src),
            destination: ip_text(dst),
            ip_version: ip_version(ev) as i32,
            ..Default::default()
        }),
        l4: l4(ev),
        source: Some(endpoint(src, ev.src_identity, snap)),
        destination: Some(endpoint(dst, ev.dst_identity, snap)),
        r#type: flow::FlowType::L3L4 as i32,
        emitter: Some(emitter()),
        node_name: snap.node_name.clone(),
        is_reply: is_reply(ev),
        event_type: Some(event_type(ev)),
        traffic_direction: traffic_direction(ev) as i32,
        policy_match_type: rule.filter(|_| !dropped).map_or(0, |r| r.match_type),
        trace_observation_point: trace_observation_point(ev) as i32,
        trace_reason: trace_reason(ev) as i32,
        interface: Some(flow::NetworkInterface {
            index: ev.ifindex,
            name: snap.interfaces.get(&ev.ifindex).cloned().unwrap_or_default(),
        }),
        extensions: Some(extension(ev, snap).to_any()),
        ..Default::default()
    };
    if dropped {
        #[allow(deprecated)]
        {
            f.drop_reason = ev.drop_reason.into();
        }
        f.drop_reason_desc = i32::from(ev.drop_reason);
    }
    if let Some(p) = rule.map(as_policy) {
        match rule_place(ev) {
            (true, false) => f.ingress_allowed_by.push(p),
            (false, false) => f.egress_allowed_by.push(p),
            (true, true) => f.ingress_denied_by.push(p),
            (false, true) => f.egress_denied_by.push(p),
        }
    }
    #[allow(deprecated)]
    {
        f.summary = lumen_flow::summary::summary(&f);
    }
    f
}

/// Who made the flows this observer serves (`Flow.emitter`).
pub fn emitter() -> flow::Emitter {
    flow::Emitter {
        name: "Lumen".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.100.255",
            "1.20.3.40",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn snapshot() -> Snapshot {
        let meta = |id, identity, pod: &str| {
            Arc::new(EndpointMeta {
                id,
                identity,
                namespace: "default".into(),
                pod_name: pod.into(),
                labels: vec![
                    format!("k8s:app={pod}"),
                    "k8s:io.kubernetes.pod.namespace=default".into(),
                ],
                ..Default::default()
            })
        };
        let mut s = Snapshot {
            node_name: "node1".into(),
            ..Default::default()
        };
        s.endpoints
            .insert("10.0.0.1".parse().unwrap(), meta(11, 300, "frontend"));
        s.endpoints
            .insert("10.0.0.2".parse().unwrap(), meta(22, 400, "backend"));
        s.rules.insert(
            77,
            Arc::new(RuleMeta {
                name: "deny-http".into(),
                namespace: String::new(),
                kind: "CiliumNetworkPolicy".into(),
                match_type: 2,
            }),
        );
        s.interfaces.insert(9, "lxc9".into());
        s
    }

    fn stored(verdict: u8, drop_reason: u8, rule_id: u32) -> StoredFlow {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        StoredFlow {
            seq: 5,
            names: 0,
            event: abi::Event {
                timestamp_ns: 1_764_000_000_123_456_789,
                ifindex: 9,
                endpoint_id: 22,
                src_identity: 300,
                dst_identity: 400,
                rule_id,
                pkt_len: 74,
                saddr,
                daddr,
                sport: 40_000,
                dport: 80,
                family: 4,
                proto: 6,
                direction: abi::DIR_INGRESS,
                obs_point: abi::OBS_TO_ENDPOINT,
                verdict,
                drop_reason,
                tcp_flags: 0x02,
                ct_state: abi::CT_NEW,
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_reply_has_its_connections_direction_and_is_seen_where_it_was() {
        // The backend answers an ingress connection that a policy change
        // denied: the reply leaves the backend (from-endpoint), the
        // connection came in.
        let mut s = stored(abi::VERDICT_DROPPED, abi::DROP_POLICY_DENY, 77);
        s.event.direction = abi::DIR_EGRESS;
        s.event.obs_point = abi::OBS_FROM_ENDPOINT;
        s.event.ct_state = abi::CT_REPLY;
        s.event.flags = abi::EVF_IS_REPLY;
        let f = to_flow(&s, &snapshot(), 1);
        assert_eq!(f.is_reply, Some(true));
        assert_eq!(f.traffic_direction, flow::TrafficDirection::Ingress as i32);
        assert_eq!(
            f.trace_observation_point,
            flow::TraceObservationPoint::FromEndpoint as i32
        );
        let deny = flow::Policy {
            name: "deny-http".into(),
            kind: "CiliumNetworkPolicy".into(),
            ..Default::default()
        };
        assert_eq!((f.ingress_denied_by, f.egress_denied_by), (vec![deny], vec![]));
        // A request leaving the endpoint is egress.
        let mut s = stored(abi::VERDICT_FORWARDED, 0, 0);
        s.event.direction = abi::DIR_EGRESS;
        s.event.obs_point = abi::OBS_FROM_ENDPOINT;
        let f = to_flow(&s, &snapshot(), 1);
        assert_eq!(
            (f.is_reply, f.traffic_direction),
            (Some(false), flow::TrafficDirection::Egress as i32)
        );
    }

    #[test]
    fn a_drop_by_a_deny_rule_names_the_rule() {
        let f = to_flow(
            &stored(abi::VERDICT_DROPPED, abi::DROP_POLICY_DENY, 77),
            &snapshot(),
            0xabcd,
        );
        assert_eq!(f.verdict, flow::Verdict::Dropped as i32);
        assert_eq!(f.drop_reason_desc, flow::DropReason::PolicyDeny as i32);
        assert_eq!(
            f.time,
            Some(prost_types::Timestamp {
                seconds: 1_764_000_000,
                nanos: 123_456_789
            })
        );
        assert_eq!(f.uuid, "00000000-0000-4bcd-8000-000000000005");
        let ip = f.ip.as_ref().unwrap();
        assert_eq!(
            (ip.source.as_str(), ip.destination.as_str(), ip.ip_version),
            ("10.0.0.1", "10.0.0.2", 1)
        );
        let Some(Protocol::Tcp(tcp)) = f.l4.as_ref().unwrap().protocol else {
            panic!("TCP")
        };
        assert_eq!((tcp.source_port, tcp.destination_port), (40_000, 80));
        assert!(tcp.flags.unwrap().syn);
        let src = f.source.as_ref().unwrap();
        assert_eq!(
            (src.id, src.identity, src.pod_name.as_str(), src.namespace.as_str()),
            (11, 300, "frontend", "default")
        );
        assert_eq!(
            src.labels,
            vec!["k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=default"]
        );
        assert_eq!(
            f.event_type,
            Some(flow::CiliumEventType {
                r#type: 1,
                sub_type: 181
            })
        );
        assert_eq!(f.traffic_direction, flow::TrafficDirection::Ingress as i32);
        assert_eq!(
            f.trace_observation_point,
            flow::TraceObservationPoint::ToEndpoint as i32
        );
        assert_eq!(
            f.ingress_denied_by,
            vec![flow::Policy {
                name: "deny-http".into(),
                kind: "CiliumNetworkPolicy".into(),
                ..Default::default()
            }]
        );
        assert!(f.ingress_allowed_by.is_empty() && f.egress_denied_by.is_empty());
        assert_eq!(f.policy_match_type, 0);
        assert_eq!(f.is_reply, Some(false));
        assert_eq!(
            f.interface,
            Some(flow::NetworkInterface {
                index: 9,
                name: "lxc9".into()
            })
        );
        assert_eq!(f.node_name, "node1");
        let ext = FlowExtension::from_any(f.extensions.as_ref().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            (ext.rule_id, ext.rule_name.as_str(), ext.ct_state.as_str()),
            (77, "deny-http", "new")
        );
    }

    #[test]
    fn a_default_deny_drop_names_the_policies_that_select_the_endpoint() {
        let mut snap = snapshot();
        let selecting = RuleMeta {
            name: "backend-in".into(),
            namespace: "default".into(),
            kind: "CiliumNetworkPolicy".into(),
            match_type: 0,
        };
        let backend = EndpointMeta {
            selected_by_ingress: vec![selecting],
            ..(*snap.endpoints[&"10.0.0.2".parse::<IpAddr>().unwrap()]).clone()
        };
        snap.endpoints_by_id.insert(22, Arc::new(backend));
        let f = to_flow(&stored(abi::VERDICT_DROPPED, abi::DROP_POLICY_DENIED, 0), &snap, 1);
        assert!(f.ingress_denied_by.is_empty(), "no rule decided");
        let ext = FlowExtension::from_any(f.extensions.as_ref().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            ext.selected_by,
            vec![flow::Policy {
                name: "backend-in".into(),
                namespace: "default".into(),
                kind: "CiliumNetworkPolicy".into(),
                ..Default::default()
            }]
        );
        // A drop for another reason, or a forwarded flow, carries none.
        let f = to_flow(&stored(abi::VERDICT_FORWARDED, 0, 0), &snap, 1);
        let ext = FlowExtension::from_any(f.extensions.as_ref().unwrap())
            .unwrap()
            .unwrap();
        assert!(ext.selected_by.is_empty());
    }

    #[test]
    fn cidr_identities_are_labelled_with_their_prefix() {
        let mut snap = snapshot();
        snap.identity_labels
            .insert(16_777_300, vec!["cidr:198.51.100.0/24".into(), "reserved:world".into()]);
        let mut s = stored(abi::VERDICT_FORWARDED, 0, 0);
        s.event.saddr[..4].copy_from_slice(&[198, 51, 100, 10]);
        s.event.src_identity = 16_777_300;
        let src = to_flow(&s, &snap, 1).source.unwrap();
        assert_eq!(src.labels, vec!["cidr:198.51.100.0/24", "reserved:world"]);
    }

    #[test]
    fn a_forwarded_flow_is_a_trace_with_its_reason_and_allowing_rule() {
        let mut s = stored(abi::VERDICT_FORWARDED, 0, 77);
        s.event.direction = abi::DIR_EGRESS;
        s.event.obs_point = abi::OBS_FROM_ENDPOINT;
        let f = to_flow(&s, &snapshot(), 1);
        assert_eq!(f.verdict, flow::Verdict::Forwarded as i32);
        assert_eq!(f.drop_reason_desc, 0);
        assert_eq!(f.event_type, Some(flow::CiliumEventType { r#type: 4, sub_type: 5 }));
        assert_eq!(f.trace_reason, flow::TraceReason::New as i32);
        assert_eq!(f.egress_allowed_by.len(), 1);
        assert_eq!(f.policy_match_type, 2);
    }

    #[test]
    fn unknown_peers_are_reserved_identities_and_icmpv6_is_decoded() {
        let mut s = stored(abi::VERDICT_DROPPED, abi::DROP_POLICY_DENIED, 0);
        s.event.family = 6;
        s.event.saddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        s.event.src_identity = reserved::WORLD;
        s.event.proto = 58;
        s.event.icmp_type = 128;
        let f = to_flow(&s, &snapshot(), 1);
        let src = f.source.unwrap();
        assert_eq!((src.identity, src.labels), (2, vec!["reserved:world".to_string()]));
        assert_eq!(f.ip.unwrap().ip_version, flow::IpVersion::IPv6 as i32);
        assert_eq!(
            f.l4.unwrap().protocol,
            Some(Protocol::IcmPv6(flow::IcmPv6 { r#type: 128, code: 0 }))
        );
        assert!(f.ingress_denied_by.is_empty(), "a default deny names no rule");
        assert_eq!(f.drop_reason_desc, flow::DropReason::PolicyDenied as i32);
    }
}

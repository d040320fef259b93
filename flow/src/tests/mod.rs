//! Filters compiled through the public API against flows shaped like the
//! ones Lumen's observer emits.

mod cel;
mod compose;
mod endpoint_fields;
mod errors;
mod packet_fields;

use lumen_proto::flow::{
    layer4::Protocol, layer7::Record, CiliumEventType, DropReason, Endpoint, EventTypeFilter, Flow, FlowFilter,
    FlowType, Http, HttpHeader, IcmPv4, IcmPv6, Ip, IpVersion, Layer4, Layer7, NetworkInterface, Tcp, TcpFlags,
    TraceContext, TraceParent, TrafficDirection, Udp, Verdict, Workload,
};
use lumen_proto::prost_types::Timestamp;

use crate::{compile, describe, monitor_type};

/// A pod endpoint as the observer fills it: `k8s:` labels including the
/// namespace label, one Deployment workload named after the app.
fn pod(namespace: &str, pod_name: &str, app: &str, identity: u32) -> Endpoint {
    Endpoint {
        id: identity % 4096,
        identity,
        namespace: namespace.into(),
        labels: vec![
            format!("k8s:app={app}"),
            format!("k8s:io.kubernetes.pod.namespace={namespace}"),
        ],
        pod_name: pod_name.into(),
        workloads: vec![Workload {
            name: app.into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    }
}

/// The world outside the cluster: reserved identity 2.
fn world() -> Endpoint {
    Endpoint {
        identity: 2,
        labels: vec!["reserved:world".into()],
        ..Default::default()
    }
}

fn ip(source: &str, destination: &str) -> Option<Ip> {
    let v6 = source.contains(':');
    Some(Ip {
        source: source.into(),
        destination: destination.into(),
        ip_version: if v6 { IpVersion::IPv6 } else { IpVersion::IPv4 } as i32,
        ..Default::default()
    })
}

fn l4(p: Protocol) -> Option<Layer4> {
    Some(Layer4 { protocol: Some(p) })
}

fn event(r#type: i32, sub_type: i32) -> Option<CiliumEventType> {
    Some(CiliumEventType { r#type, sub_type })
}

/// Ingress TCP SYN frontend → backend, forwarded, traced to the endpoint.
fn tcp() -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        uuid: "6c1c8b3e-0000-4000-8000-000000000001".into(),
        verdict: Verdict::Forwarded as i32,
        ip: ip("10.0.1.5", "10.0.2.7"),
        l4: l4(Protocol::Tcp(Tcp {
            source_port: 43120,
            destination_port: 8080,
            flags: Some(TcpFlags {
                syn: true,
                ..Default::default()
            }),
        })),
        source: Some(pod("default", "frontend-5f7d", "frontend", 12345)),
        destination: Some(pod("default", "backend-6c9b", "backend", 23456)),
        r#type: FlowType::L3L4 as i32,
        node_name: "kind-worker".into(),
        is_reply: Some(false),
        event_type: event(monitor_type::TRACE, 0),
        traffic_direction: TrafficDirection::Ingress as i32,
        interface: Some(NetworkInterface {
            index: 12,
            name: "lxc9f3a".into(),
        }),
        ..Default::default()
    }
}

/// The backend's SYN-ACK back to the frontend: a reply.
fn tcp_reply() -> Flow {
    let mut f = tcp();
    f.uuid = "6c1c8b3e-0000-4000-8000-000000000002".into();
    f.ip = ip("10.0.2.7", "10.0.1.5");
    f.l4 = l4(Protocol::Tcp(Tcp {
        source_port: 8080,
        destination_port: 43120,
        flags: Some(TcpFlags {
            syn: true,
            ack: true,
            ..Default::default()
        }),
    }));
    std::mem::swap(&mut f.source, &mut f.destination);
    f.is_reply = Some(true);
    f.event_type = event(monitor_type::TRACE, 5);
    f.traffic_direction = TrafficDirection::Egress as i32;
    f
}

/// The frontend's DNS query to coredns over UDP, egress.
fn udp() -> Flow {
    Flow {
        uuid: "6c1c8b3e-0000-4000-8000-000000000003".into(),
        verdict: Verdict::Forwarded as i32,
        ip: ip("10.0.1.5", "10.96.0.10"),
        l4: l4(Protocol::Udp(Udp {
            source_port: 53124,
            destination_port: 53,
        })),
        source: Some(pod("default", "frontend-5f7d", "frontend", 12345)),
        destination: Some(pod("kube-system", "coredns-787d", "kube-dns", 34567)),
        destination_service: Some(lumen_proto::flow::Service {
            name: "kube-dns".into(),
            namespace: "kube-system".into(),
        }),
        r#type: FlowType::L3L4 as i32,
        node_name: "kind-worker".into(),
        node_labels: vec![
            "kubernetes.io/hostname=kind-worker".into(),
            "topology.kubernetes.io/zone=a".into(),
        ],
        is_reply: Some(false),
        event_type: event(monitor_type::TRACE, 5),
        traffic_direction: TrafficDirection::Egress as i32,
        interface: Some(NetworkInterface {
            index: 12,
            name: "lxc9f3a".into(),
        }),
        ..Default::default()
    }
}

/// A ping to the internet; conntrack has no opinion on it.
fn icmpv4() -> Flow {
    Flow {
        uuid: "6c1c8b3e-0000-4000-8000-000000000004".into(),
        verdict: Verdict::Forwarded as i32,
        ip: ip("10.0.1.5", "8.8.8.8"),
        l4: l4(Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
        source: Some(pod("default", "frontend-5f7d", "frontend", 12345)),
        destination: Some(world()),
        destination_names: vec!["dns.google".into()],
        node_name: "kind-control-plane".into(),
        is_reply: None,
        event_type: event(monitor_type::TRACE, 5),
        traffic_direction: TrafficDirection::Egress as i32,
        interface: Some(NetworkInterface {
            index: 3,
            name: "eth0".into(),
        }),
        ..Default::default()
    }
}

/// An ICMPv6 echo reply between two pods on another cluster's node.
fn icmpv6() -> Flow {
    Flow {
        uuid: "6c1c8b3e-0000-4000-8000-000000000005".into(),
        verdict: Verdict::Forwarded as i32,
        ip: ip("fd00:10:244::7", "fd00:10:244::5"),
        l4: l4(Protocol::IcmPv6(IcmPv6 { r#type: 129, code: 0 })),
        source: Some(Endpoint {
            cluster_name: "east".into(),
            ..pod("monitoring", "prometheus-0", "prometheus", 45678)
        }),
        destination: Some(pod("default", "frontend-5f7d", "frontend", 12345)),
        node_name: "east/node-1".into(),
        is_reply: Some(true),
        event_type: event(monitor_type::TRACE, 0),
        traffic_direction: TrafficDirection::Ingress as i32,
        ..Default::default()
    }
}

/// The frontend's SYN to the backend, denied by policy.
fn drop() -> Flow {
    let mut f = tcp();
    f.uuid = "6c1c8b3e-0000-4000-8000-000000000006".into();
    f.verdict = Verdict::Dropped as i32;
    f.drop_reason_desc = DropReason::PolicyDenied as i32;
    f.is_reply = None;
    f.event_type = event(monitor_type::DROP, DropReason::PolicyDenied as i32);
    f
}

/// An HTTP response seen by the L7 proxy (not produced by Lumen yet, but
/// filters must handle flows from other Hubble sources, e.g. files).
fn http() -> Flow {
    let mut f = tcp_reply();
    f.r#type = FlowType::L7 as i32;
    f.event_type = event(monitor_type::ACCESS_LOG, 0);
    f.trace_context = Some(TraceContext {
        parent: Some(TraceParent {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        }),
    });
    f.l7 = Some(Layer7 {
        record: Some(Record::Http(Http {
            code: 404,
            method: "GET".into(),
            url: "http://backend.default:8080/api/v1/users%2Fme?id=3".into(),
            protocol: "HTTP/1.1".into(),
            headers: vec![HttpHeader {
                key: "x-request-id".into(),
                value: "abc".into(),
            }],
        })),
        ..Default::default()
    });
    f
}

/// A DNS answer seen by the DNS proxy.
fn dns() -> Flow {
    let mut f = udp();
    f.r#type = FlowType::L7 as i32;
    f.event_type = event(monitor_type::ACCESS_LOG, 0);
    f.l7 = Some(Layer7 {
        record: Some(Record::Dns(lumen_proto::flow::Dns {
            query: "api.example.com.".into(),
            ..Default::default()
        })),
        ..Default::default()
    });
    f
}

/// Every sample flow by name, so a table can say which ones a filter keeps.
fn samples() -> Vec<(&'static str, Flow)> {
    vec![
        ("tcp", tcp()),
        ("tcp_reply", tcp_reply()),
        ("udp", udp()),
        ("icmpv4", icmpv4()),
        ("icmpv6", icmpv6()),
        ("drop", drop()),
        ("http", http()),
        ("dns", dns()),
        ("empty", Flow::default()),
    ]
}

/// Compiles `filter` as the only whitelist entry and asserts exactly the
/// sample flows named in `want` pass.
#[track_caller]
fn keeps(filter: FlowFilter, want: &[&str]) {
    let set = compile(std::slice::from_ref(&filter), &[]).unwrap_or_else(|e| panic!("{}: {e}", describe(&filter)));
    let got: Vec<&str> = samples()
        .into_iter()
        .filter(|(_, f)| set.matches(f))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(got, want, "filter {}", describe(&filter));
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn event_type(r#type: i32, sub_type: Option<i32>) -> EventTypeFilter {
    EventTypeFilter {
        r#type,
        match_sub_type: sub_type.is_some(),
        sub_type: sub_type.unwrap_or(0),
    }
}

const FRONTEND_SRC: &[&str] = &["tcp", "udp", "icmpv4", "drop", "dns"];
const ALL_BUT_EMPTY: &[&str] = &["tcp", "tcp_reply", "udp", "icmpv4", "icmpv6", "drop", "http", "dns"];

//! The flows and loss notice the OTLP tests send, and the attributes their
//! log records must have, in the receiver's JSON (protobuf JSON mapping).

use lumen_proto::flow::{
    layer4::Protocol as L4, CiliumEventType, DropReason, Endpoint, Flow, Ip, IpVersion, Layer4, LostEvent,
    LostEventSource, NetworkInterface, Policy, Tcp, TcpFlags, TraceObservationPoint, TrafficDirection, Udp, Verdict,
    Workload,
};
use lumen_proto::prost_types::Timestamp;
use serde_json::{json, Value};

/// 2024-01-01T10:00:00Z.
pub const T0: i64 = 1_704_103_200;

pub fn forwarded() -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: T0,
            nanos: 500_000_000,
        }),
        uuid: "f-1".into(),
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: "10.0.0.1".into(),
            destination: "10.0.0.2".into(),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(L4::Tcp(Tcp {
                source_port: 34567,
                destination_port: 80,
                flags: Some(TcpFlags {
                    syn: true,
                    ack: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(Endpoint {
            identity: 1234,
            namespace: "default".into(),
            pod_name: "client-1".into(),
            labels: vec![
                "k8s:app=client".into(),
                "k8s:io.kubernetes.pod.namespace=default".into(),
            ],
            workloads: vec![Workload {
                name: "client".into(),
                kind: "Deployment".into(),
            }],
            ..Default::default()
        }),
        destination: Some(Endpoint {
            identity: 5678,
            namespace: "default".into(),
            pod_name: "server-1".into(),
            labels: vec!["k8s:app=server".into()],
            ..Default::default()
        }),
        node_name: "node1".into(),
        is_reply: Some(false),
        event_type: Some(CiliumEventType { r#type: 4, sub_type: 0 }),
        trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
        traffic_direction: TrafficDirection::Egress as i32,
        interface: Some(NetworkInterface {
            index: 7,
            name: "eth0".into(),
        }),
        egress_allowed_by: vec![Policy {
            name: "allow-web".into(),
            namespace: "default".into(),
            kind: "CiliumNetworkPolicy".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn dropped() -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: T0 + 1,
            nanos: 0,
        }),
        uuid: "f-2".into(),
        verdict: Verdict::Dropped as i32,
        drop_reason_desc: DropReason::PolicyDenied as i32,
        ip: Some(Ip {
            source: "fd00::3".into(),
            destination: "fd00::4".into(),
            ip_version: IpVersion::IPv6 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(L4::Udp(Udp {
                source_port: 5353,
                destination_port: 53,
            })),
        }),
        source: Some(Endpoint {
            identity: 2,
            labels: vec!["reserved:world".into()],
            ..Default::default()
        }),
        destination: Some(Endpoint {
            identity: 9000,
            namespace: "kube-system".into(),
            pod_name: "coredns-1".into(),
            ..Default::default()
        }),
        node_name: "node2".into(),
        event_type: Some(CiliumEventType {
            r#type: 1,
            sub_type: 133,
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        ingress_denied_by: vec![Policy {
            name: "deny-dns".into(),
            namespace: "kube-system".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn lost() -> LostEvent {
    LostEvent {
        source: LostEventSource::PerfEventRingBuffer as i32,
        num_events_lost: 5,
        cpu: Some(1),
        ..Default::default()
    }
}

pub fn s(v: &str) -> Value {
    json!({ "stringValue": v })
}

pub fn i(v: i64) -> Value {
    json!({ "intValue": v.to_string() })
}

pub fn list(v: &[&str]) -> Value {
    json!({ "arrayValue": { "values": v.iter().map(|x| s(x)).collect::<Vec<_>>() } })
}

/// The forwarded flow's attributes, in order.
pub fn forwarded_attributes() -> Vec<(&'static str, Value)> {
    vec![
        ("source.address", s("10.0.0.1")),
        ("destination.address", s("10.0.0.2")),
        ("network.type", s("ipv4")),
        ("source.port", i(34567)),
        ("destination.port", i(80)),
        ("network.transport", s("tcp")),
        ("network.interface.name", s("eth0")),
        ("source.k8s.namespace.name", s("default")),
        ("source.k8s.pod.name", s("client-1")),
        ("destination.k8s.namespace.name", s("default")),
        ("destination.k8s.pod.name", s("server-1")),
        ("k8s.node.name", s("node1")),
        ("hubble.flow.uuid", s("f-1")),
        ("hubble.verdict", s("FORWARDED")),
        ("hubble.trace_observation_point", s("TO_ENDPOINT")),
        ("hubble.traffic_direction", s("EGRESS")),
        ("hubble.is_reply", json!({ "boolValue": false })),
        ("hubble.event_type", s("to-endpoint")),
        ("hubble.source.identity", i(1234)),
        (
            "hubble.source.labels",
            list(&["k8s:app=client", "k8s:io.kubernetes.pod.namespace=default"]),
        ),
        ("hubble.source.workload.name", s("client")),
        ("hubble.source.workload.kind", s("Deployment")),
        ("hubble.destination.identity", i(5678)),
        ("hubble.destination.labels", list(&["k8s:app=server"])),
        ("hubble.tcp.flags", list(&["SYN", "ACK"])),
        ("hubble.policy.egress_allowed_by", list(&["default/allow-web"])),
    ]
}

pub fn dropped_attributes() -> Vec<(&'static str, Value)> {
    vec![
        ("source.address", s("fd00::3")),
        ("destination.address", s("fd00::4")),
        ("network.type", s("ipv6")),
        ("source.port", i(5353)),
        ("destination.port", i(53)),
        ("network.transport", s("udp")),
        ("destination.k8s.namespace.name", s("kube-system")),
        ("destination.k8s.pod.name", s("coredns-1")),
        ("k8s.node.name", s("node2")),
        ("hubble.flow.uuid", s("f-2")),
        ("hubble.verdict", s("DROPPED")),
        ("hubble.drop_reason", s("POLICY_DENIED")),
        ("hubble.traffic_direction", s("INGRESS")),
        ("hubble.event_type", s("Policy denied")),
        ("hubble.source.identity", i(2)),
        ("hubble.source.labels", list(&["reserved:world"])),
        ("hubble.destination.identity", i(9000)),
        ("hubble.policy.ingress_denied_by", list(&["kube-system/deny-dns"])),
    ]
}

pub fn lost_attributes() -> Vec<(&'static str, Value)> {
    vec![
        ("hubble.lost_events.source", s("PERF_EVENT_RING_BUFFER")),
        ("hubble.lost_events.count", i(5)),
        ("hubble.lost_events.cpu", i(1)),
    ]
}

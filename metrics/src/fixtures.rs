//! Flows as the observer builds them, for the tests: a builder with
//! Lumen's event types (trace to/from endpoint, drop).

use lumen_proto::flow::{
    layer4::Protocol, CiliumEventType, DropReason, Endpoint, Flow, IcmPv4, IcmPv6, Ip, IpVersion, Layer4, Tcp,
    TcpFlags, TraceReason, TrafficDirection, Udp, Verdict,
};

use crate::{MetricsConfig, Registry, Settings};

pub fn pod(namespace: &str, name: &str, app: &str) -> Endpoint {
    Endpoint {
        identity: 1000,
        namespace: namespace.into(),
        pod_name: name.into(),
        labels: vec![
            format!("k8s:app={app}"),
            format!("k8s:io.kubernetes.pod.namespace={namespace}"),
        ],
        ..Default::default()
    }
}

pub fn world() -> Endpoint {
    Endpoint {
        identity: 2,
        labels: vec!["reserved:world".into()],
        ..Default::default()
    }
}

/// A forwarded, new, non-reply IPv4 flow from `default/web` to
/// `default/db`, seen at the destination (ingress, trace to-endpoint).
pub fn flow() -> Flow {
    Flow {
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: "10.0.0.1".into(),
            destination: "10.0.0.2".into(),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        source: Some(pod("default", "web", "web")),
        destination: Some(pod("default", "db", "db")),
        event_type: Some(CiliumEventType { r#type: 4, sub_type: 0 }),
        traffic_direction: TrafficDirection::Ingress as i32,
        trace_reason: TraceReason::New as i32,
        is_reply: Some(false),
        ..Default::default()
    }
}

pub fn tcp(mut f: Flow, port: u32, flags: &str) -> Flow {
    let has = |name: &str| flags.split(',').any(|x| x == name);
    f.l4 = Some(Layer4 {
        protocol: Some(Protocol::Tcp(Tcp {
            source_port: 40000,
            destination_port: port,
            flags: Some(TcpFlags {
                syn: has("SYN"),
                ack: has("ACK"),
                fin: has("FIN"),
                rst: has("RST"),
                psh: has("PSH"),
                ..Default::default()
            }),
        })),
    });
    f
}

pub fn udp(mut f: Flow, port: u32) -> Flow {
    f.l4 = Some(Layer4 {
        protocol: Some(Protocol::Udp(Udp {
            source_port: 40000,
            destination_port: port,
        })),
    });
    f
}

pub fn icmp4(mut f: Flow, kind: u32, code: u32) -> Flow {
    f.l4 = Some(Layer4 {
        protocol: Some(Protocol::IcmPv4(IcmPv4 { r#type: kind, code })),
    });
    f
}

pub fn icmp6(mut f: Flow, kind: u32, code: u32) -> Flow {
    f.l4 = Some(Layer4 {
        protocol: Some(Protocol::IcmPv6(IcmPv6 { r#type: kind, code })),
    });
    if let Some(ip) = f.ip.as_mut() {
        ip.ip_version = IpVersion::IPv6 as i32;
    }
    f
}

/// `f` dropped for `reason` (a drop event, as Lumen's datapath sends).
pub fn dropped(mut f: Flow, reason: DropReason) -> Flow {
    f.verdict = Verdict::Dropped as i32;
    f.drop_reason_desc = reason as i32;
    f.event_type = Some(CiliumEventType {
        r#type: 1,
        sub_type: reason as i32,
    });
    f.trace_reason = TraceReason::Unknown as i32;
    f
}

pub fn reply(mut f: Flow) -> Flow {
    f.is_reply = Some(true);
    f.trace_reason = TraceReason::Reply as i32;
    f
}

pub fn to_world(mut f: Flow) -> Flow {
    f.destination = Some(world());
    f.traffic_direction = TrafficDirection::Egress as i32;
    f.event_type = Some(CiliumEventType { r#type: 4, sub_type: 5 });
    f
}

/// A registry with the `--metrics` string `metrics`.
pub fn registry(metrics: &str) -> Registry {
    let r = Registry::new(Settings::default());
    r.configure(&MetricsConfig::parse_flag(metrics)).unwrap();
    r
}

/// The series lines of the registry's exposition (no comments, no
/// Lumen's own counters).
pub fn lines(r: &Registry) -> Vec<String> {
    r.render()
        .lines()
        .filter(|l| l.starts_with("hubble_"))
        .map(str::to_string)
        .collect()
}

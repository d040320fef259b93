//! For every packet and event field of `FlowFilter` (addresses, ports,
//! protocol, verdict, event type, node, reply, L7): which sample flows it keeps.

use lumen_proto::flow::{FlowFilter, HttpHeader, NetworkInterface};

use super::*;

#[test]
fn uuid() {
    let ids = strings(&[
        "6c1c8b3e-0000-4000-8000-000000000001",
        "6c1c8b3e-0000-4000-8000-000000000006",
    ]);
    keeps(
        FlowFilter {
            uuid: ids,
            ..Default::default()
        },
        &["tcp", "drop"],
    );
    keeps(
        FlowFilter {
            uuid: strings(&["6c1c8b3e"]),
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn source_and_destination_ip() {
    keeps(
        FlowFilter {
            source_ip: strings(&["10.0.1.5"]),
            ..Default::default()
        },
        FRONTEND_SRC,
    );
    keeps(
        FlowFilter {
            source_ip: strings(&["10.0.2.0/24", "fd00:10:244::/64"]),
            ..Default::default()
        },
        &["tcp_reply", "icmpv6", "http"],
    );
    keeps(
        FlowFilter {
            destination_ip: strings(&["10.96.0.0/12"]),
            ..Default::default()
        },
        &["udp", "dns"],
    );
    keeps(
        FlowFilter {
            destination_ip: strings(&["8.8.8.8", "fd00:10:244:0::5"]),
            ..Default::default()
        },
        &["icmpv4", "icmpv6"],
    );
    keeps(
        FlowFilter {
            destination_ip: strings(&["192.168.0.0/16"]),
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn source_ip_xlated() {
    let set = compile(
        &[FlowFilter {
            source_ip_xlated: strings(&["192.168.0.0/24"]),
            ..Default::default()
        }],
        &[],
    )
    .unwrap();
    let mut snat = tcp();
    snat.ip.as_mut().unwrap().source_xlated = "192.168.0.10".into();
    assert!(set.matches(&snat));
    assert!(!set.matches(&tcp()), "no translated source");
}

#[test]
fn source_and_destination_port() {
    keeps(
        FlowFilter {
            source_port: strings(&["8080"]),
            ..Default::default()
        },
        &["tcp_reply", "http"],
    );
    keeps(
        FlowFilter {
            destination_port: strings(&["53", "8080"]),
            ..Default::default()
        },
        &["tcp", "udp", "drop", "dns"],
    );
    // ICMP has no ports, not even port 0.
    keeps(
        FlowFilter {
            destination_port: strings(&["0"]),
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn protocol() {
    let p = |v: &[&str]| FlowFilter {
        protocol: strings(v),
        ..Default::default()
    };
    keeps(p(&["TCP"]), &["tcp", "tcp_reply", "drop", "http"]);
    keeps(p(&["udp"]), &["udp", "dns"]);
    keeps(p(&["icmp"]), &["icmpv4", "icmpv6"]);
    keeps(p(&["icmpv4"]), &["icmpv4"]);
    keeps(p(&["ICMPv6"]), &["icmpv6"]);
    keeps(p(&["sctp"]), &[]);
    keeps(p(&["http"]), &["http"]);
    keeps(p(&["dns", "icmpv6"]), &["icmpv6", "dns"]);
    keeps(p(&["kafka"]), &[]);
}

#[test]
fn verdict() {
    keeps(
        FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        },
        &["drop"],
    );
    keeps(
        FlowFilter {
            verdict: vec![Verdict::Forwarded as i32],
            ..Default::default()
        },
        &["tcp", "tcp_reply", "udp", "icmpv4", "icmpv6", "http", "dns"],
    );
    keeps(
        FlowFilter {
            verdict: vec![Verdict::Audit as i32],
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn drop_reason_desc() {
    keeps(
        FlowFilter {
            drop_reason_desc: vec![DropReason::PolicyDenied as i32],
            ..Default::default()
        },
        &["drop"],
    );
    keeps(
        FlowFilter {
            drop_reason_desc: vec![DropReason::StaleOrUnroutableIp as i32],
            ..Default::default()
        },
        &[],
    );
    // A reason on a flow that was not dropped does not count.
    let set = compile(
        &[FlowFilter {
            drop_reason_desc: vec![DropReason::PolicyDenied as i32],
            ..Default::default()
        }],
        &[],
    )
    .unwrap();
    let mut audited = drop();
    audited.verdict = Verdict::Audit as i32;
    assert!(!set.matches(&audited));
}

#[test]
fn event_type_filter() {
    let e = |v: Vec<EventTypeFilter>| FlowFilter {
        event_type: v,
        ..Default::default()
    };
    keeps(e(vec![event_type(monitor_type::DROP, None)]), &["drop"]);
    keeps(e(vec![event_type(monitor_type::DROP, Some(133))]), &["drop"]);
    keeps(e(vec![event_type(monitor_type::DROP, Some(181))]), &[]);
    keeps(
        e(vec![event_type(monitor_type::TRACE, None)]),
        &["tcp", "tcp_reply", "udp", "icmpv4", "icmpv6"],
    );
    // Sub-type 0 (to-endpoint) is a real sub-type, selected by match_sub_type.
    keeps(e(vec![event_type(monitor_type::TRACE, Some(0))]), &["tcp", "icmpv6"]);
    keeps(e(vec![event_type(monitor_type::ACCESS_LOG, None)]), &["http", "dns"]);
    // Type 0 is any type; the flow must still have an event type.
    keeps(e(vec![event_type(0, None)]), ALL_BUT_EMPTY);
}

#[test]
fn traffic_direction() {
    let d = |v: TrafficDirection| FlowFilter {
        traffic_direction: vec![v as i32],
        ..Default::default()
    };
    keeps(d(TrafficDirection::Ingress), &["tcp", "icmpv6", "drop"]);
    keeps(
        d(TrafficDirection::Egress),
        &["tcp_reply", "udp", "icmpv4", "http", "dns"],
    );
}

#[test]
fn tcp_flags() {
    let t = |v: Vec<TcpFlags>| FlowFilter {
        tcp_flags: v,
        ..Default::default()
    };
    let syn = TcpFlags {
        syn: true,
        ..Default::default()
    };
    let ack = TcpFlags {
        ack: true,
        ..Default::default()
    };
    let fin = TcpFlags {
        fin: true,
        ..Default::default()
    };
    let syn_ack = TcpFlags {
        syn: true,
        ack: true,
        ..Default::default()
    };
    keeps(t(vec![syn]), &["tcp", "tcp_reply", "drop", "http"]);
    keeps(t(vec![syn_ack]), &["tcp_reply", "http"]);
    keeps(t(vec![fin, ack]), &["tcp_reply", "http"]);
    keeps(
        t(vec![TcpFlags {
            rst: true,
            ..Default::default()
        }]),
        &[],
    );
}

#[test]
fn node_name() {
    let n = |v: &[&str]| FlowFilter {
        node_name: strings(v),
        ..Default::default()
    };
    keeps(n(&["kind-worker"]), &["tcp", "tcp_reply", "udp", "drop", "http", "dns"]);
    keeps(
        n(&["kind-*"]),
        &["tcp", "tcp_reply", "udp", "icmpv4", "drop", "http", "dns"],
    );
    keeps(n(&["east/*"]), &["icmpv6"]);
    keeps(n(&["default/kind-control-plane"]), &["icmpv4"]);
    keeps(n(&["node-1"]), &["icmpv6"]);
}

#[test]
fn ip_version() {
    let v = |v: IpVersion| FlowFilter {
        ip_version: vec![v as i32],
        ..Default::default()
    };
    keeps(v(IpVersion::IPv6), &["icmpv6"]);
    keeps(
        v(IpVersion::IPv4),
        &["tcp", "tcp_reply", "udp", "icmpv4", "drop", "http", "dns"],
    );
    keeps(v(IpVersion::IpNotUsed), &["empty"]);
}

#[test]
fn reply() {
    let r = |v: &[bool]| FlowFilter {
        reply: v.to_vec(),
        ..Default::default()
    };
    keeps(r(&[true]), &["tcp_reply", "icmpv6", "http"]);
    // icmpv4 does not know; the dropped SYN without is_reply counts as "not a reply" (Hubble compatibility).
    keeps(r(&[false]), &["tcp", "udp", "drop", "dns"]);
    keeps(
        r(&[true, false]),
        &["tcp", "tcp_reply", "udp", "icmpv6", "drop", "http", "dns"],
    );
}

#[test]
fn interface() {
    let i = |index: u32, name: &str| FlowFilter {
        interface: vec![NetworkInterface {
            index,
            name: name.into(),
        }],
        ..Default::default()
    };
    keeps(i(12, ""), &["tcp", "tcp_reply", "udp", "drop", "http", "dns"]);
    keeps(i(0, "eth0"), &["icmpv4"]);
    keeps(i(12, "eth0"), &[]);
    keeps(i(0, ""), &["tcp", "tcp_reply", "udp", "icmpv4", "drop", "http", "dns"]);
}

#[test]
fn trace_id() {
    keeps(
        FlowFilter {
            trace_id: strings(&["4bf92f3577b34da6a3ce929d0e0e4736"]),
            ..Default::default()
        },
        &["http"],
    );
    keeps(
        FlowFilter {
            trace_id: strings(&["0af7651916cd43dd8448eb211c80319c"]),
            ..Default::default()
        },
        &[],
    );
}

#[test]
fn http_fields() {
    let code = |v: &[&str]| FlowFilter {
        http_status_code: strings(v),
        ..Default::default()
    };
    keeps(code(&["404"]), &["http"]);
    keeps(code(&["4+"]), &["http"]);
    keeps(code(&["40+"]), &["http"]);
    keeps(code(&["200", "5+", "41+"]), &[]);
    keeps(
        FlowFilter {
            http_method: strings(&["get"]),
            ..Default::default()
        },
        &["http"],
    );
    keeps(
        FlowFilter {
            http_method: strings(&["POST"]),
            ..Default::default()
        },
        &[],
    );
    // The path is percent-decoded and has no query.
    keeps(
        FlowFilter {
            http_path: strings(&["^/api/v1/users/me$"]),
            ..Default::default()
        },
        &["http"],
    );
    keeps(
        FlowFilter {
            http_path: strings(&["^/api/v2"]),
            ..Default::default()
        },
        &[],
    );
    keeps(
        FlowFilter {
            http_url: strings(&[r"users%2Fme\?id=3$"]),
            ..Default::default()
        },
        &["http"],
    );
    keeps(
        FlowFilter {
            http_url: strings(&["^https://"]),
            ..Default::default()
        },
        &[],
    );
    let header = |value: &str| FlowFilter {
        http_header: vec![HttpHeader {
            key: "x-request-id".into(),
            value: value.into(),
        }],
        ..Default::default()
    };
    keeps(header("abc"), &["http"]);
    keeps(header("xyz"), &[]);
    // An explicit L7 event type is compatible with HTTP filters.
    keeps(
        FlowFilter {
            http_method: strings(&["GET"]),
            event_type: vec![event_type(monitor_type::ACCESS_LOG, None)],
            ..Default::default()
        },
        &["http"],
    );
}

#[test]
fn dns_query() {
    keeps(
        FlowFilter {
            dns_query: strings(&[r"example\.com\.$"]),
            ..Default::default()
        },
        &["dns"],
    );
    keeps(
        FlowFilter {
            dns_query: strings(&["^google"]),
            ..Default::default()
        },
        &[],
    );
}

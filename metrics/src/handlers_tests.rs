//! Each metric's series for known flows, as exposition lines.

use lumen_proto::flow::{CiliumEventType, DropReason, Flow, Verdict};

use crate::fixtures::*;

fn count(metrics: &str, flows: &[Flow]) -> Vec<String> {
    let r = registry(metrics);
    r.process(flows);
    lines(&r)
}

#[test]
fn flow_counts_every_flow_by_event_type_and_verdict() {
    let mut unknown = tcp(flow(), 80, "SYN");
    unknown.event_type = Some(CiliumEventType { r#type: 7, sub_type: 0 });
    let mut from = udp(flow(), 53);
    from.event_type = Some(CiliumEventType { r#type: 4, sub_type: 5 });
    let flows = [
        tcp(flow(), 80, "SYN"),
        tcp(flow(), 80, "ACK"),
        dropped(tcp(flow(), 81, "SYN"), DropReason::PolicyDenied),
        from,
        unknown,
    ];
    assert_eq!(
        count("flow", &flows),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 2"#,
            r#"hubble_flows_processed_total{protocol="UDP",subtype="from-endpoint",type="Trace",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="Unknown flow",subtype="7",type="Unknown",verdict="FORWARDED"} 1"#,
        ]
    );
}

#[test]
fn drop_counts_drops_by_reason_and_protocol() {
    let mut odd = dropped(udp(flow(), 53), DropReason::PolicyDenied);
    odd.drop_reason_desc = 999;
    let flows = [
        dropped(tcp(flow(), 80, "SYN"), DropReason::PolicyDenied),
        dropped(tcp(flow(), 80, "SYN"), DropReason::PolicyDenied),
        dropped(icmp4(flow(), 8, 0), DropReason::PolicyDeny),
        odd,
        tcp(flow(), 80, "SYN"),
    ];
    assert_eq!(
        count("drop", &flows),
        [
            r#"hubble_drop_total{protocol="ICMPv4",reason="POLICY_DENY"} 1"#,
            r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 2"#,
            r#"hubble_drop_total{protocol="UDP",reason="999"} 1"#,
        ]
    );
}

#[test]
fn tcp_counts_flags_of_forwarded_flows_by_family() {
    let flows = [
        tcp(flow(), 80, "SYN"),
        reply(tcp(flow(), 80, "SYN,ACK")),
        tcp(flow(), 80, "FIN,ACK"),
        tcp(flow(), 80, "RST"),
        tcp(icmp6(flow(), 128, 0), 80, "SYN,FIN"),
        tcp(flow(), 80, "ACK,PSH"),
        dropped(tcp(flow(), 80, "SYN"), DropReason::PolicyDenied),
    ];
    assert_eq!(
        count("tcp", &flows),
        [
            r#"hubble_tcp_flags_total{family="IPv4",flag="FIN"} 1"#,
            r#"hubble_tcp_flags_total{family="IPv4",flag="RST"} 1"#,
            r#"hubble_tcp_flags_total{family="IPv4",flag="SYN"} 1"#,
            r#"hubble_tcp_flags_total{family="IPv4",flag="SYN-ACK"} 1"#,
            r#"hubble_tcp_flags_total{family="IPv6",flag="FIN"} 1"#,
            r#"hubble_tcp_flags_total{family="IPv6",flag="SYN"} 1"#,
        ]
    );
}

#[test]
fn port_distribution_counts_forwarded_requests_by_destination_port() {
    let mut unsure = tcp(flow(), 8080, "SYN");
    unsure.is_reply = None;
    let flows = [
        tcp(flow(), 80, "SYN"),
        tcp(flow(), 80, "ACK"),
        udp(flow(), 53),
        icmp4(flow(), 8, 0),
        reply(tcp(flow(), 80, "SYN,ACK")),
        unsure,
        dropped(tcp(flow(), 81, "SYN"), DropReason::PolicyDenied),
    ];
    assert_eq!(
        count("port-distribution", &flows),
        [
            r#"hubble_port_distribution_total{port="0",protocol="ICMPv4"} 1"#,
            r#"hubble_port_distribution_total{port="53",protocol="UDP"} 1"#,
            r#"hubble_port_distribution_total{port="80",protocol="TCP"} 2"#,
        ]
    );
}

#[test]
fn icmp_counts_messages_by_family_and_gopacket_type_name() {
    let flows = [
        icmp4(flow(), 8, 0),
        reply(icmp4(flow(), 0, 0)),
        icmp4(flow(), 3, 3),
        icmp6(flow(), 128, 0),
        dropped(icmp6(flow(), 1, 4), DropReason::PolicyDenied),
        tcp(flow(), 80, "SYN"),
    ];
    assert_eq!(
        count("icmp", &flows),
        [
            r#"hubble_icmp_total{family="IPv4",type="DestinationUnreachable(Port)"} 1"#,
            r#"hubble_icmp_total{family="IPv4",type="EchoReply"} 1"#,
            r#"hubble_icmp_total{family="IPv4",type="EchoRequest"} 1"#,
            r#"hubble_icmp_total{family="IPv6",type="DestinationUnreachable(PortUnreachable)"} 1"#,
            r#"hubble_icmp_total{family="IPv6",type="EchoRequest"} 1"#,
        ]
    );
}

#[test]
fn flows_to_world_counts_requests_and_policy_drops_with_its_options() {
    let flows = [
        to_world(tcp(flow(), 443, "SYN")),
        to_world(tcp(flow(), 443, "ACK")),
        reply(to_world(tcp(flow(), 443, "SYN,ACK"))),
        to_world(udp(flow(), 53)),
        dropped(to_world(tcp(flow(), 22, "SYN")), DropReason::PolicyDenied),
        dropped(to_world(tcp(flow(), 22, "SYN")), DropReason::CtMapInsertionFailed),
        tcp(flow(), 80, "SYN"),
    ];
    assert_eq!(
        count("flows-to-world", &flows),
        [
            r#"hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED"} 1"#,
            r#"hubble_flows_to_world_total{protocol="TCP",verdict="FORWARDED"} 2"#,
            r#"hubble_flows_to_world_total{protocol="UDP",verdict="FORWARDED"} 1"#,
        ]
    );
    assert_eq!(
        count("flows-to-world:any-drop;port;syn-only", &flows),
        [
            r#"hubble_flows_to_world_total{port="22",protocol="TCP",verdict="DROPPED"} 2"#,
            r#"hubble_flows_to_world_total{port="443",protocol="TCP",verdict="FORWARDED"} 1"#,
        ]
    );
}

#[test]
fn policy_counts_decisions_on_new_connections() {
    let mut allowed = tcp(flow(), 80, "SYN");
    allowed.policy_match_type = 2;
    let mut established = tcp(flow(), 80, "ACK");
    established.policy_match_type = 2;
    established.trace_reason = lumen_proto::flow::TraceReason::Established as i32;
    let mut unenforced = tcp(flow(), 80, "SYN");
    unenforced.policy_match_type = 0;
    let mut from_host = dropped(tcp(flow(), 80, "SYN"), DropReason::PolicyDenied);
    from_host.source.as_mut().unwrap().identity = 1;
    let mut egress = dropped(udp(flow(), 53), DropReason::PolicyDeny);
    egress.traffic_direction = lumen_proto::flow::TrafficDirection::Egress as i32;
    let mut cilium_verdict = udp(flow(), 53);
    cilium_verdict.event_type = Some(CiliumEventType { r#type: 5, sub_type: 0 });
    cilium_verdict.policy_match_type = 4;
    cilium_verdict.trace_reason = 0;
    let mut audited = tcp(flow(), 80, "SYN");
    audited.verdict = Verdict::Audit as i32;
    let flows = [
        allowed.clone(),
        allowed,
        established,
        unenforced,
        dropped(tcp(flow(), 80, "SYN"), DropReason::PolicyDenied),
        dropped(tcp(flow(), 80, "SYN"), DropReason::CtMapInsertionFailed),
        from_host,
        egress,
        cilium_verdict,
        audited,
    ];
    assert_eq!(
        count("policy", &flows),
        [
            r#"hubble_policy_verdicts_total{action="audit",direction="ingress",match="none"} 1"#,
            r#"hubble_policy_verdicts_total{action="dropped",direction="egress",match="none"} 1"#,
            r#"hubble_policy_verdicts_total{action="dropped",direction="ingress",match="none"} 1"#,
            r#"hubble_policy_verdicts_total{action="forwarded",direction="ingress",match="all"} 1"#,
            r#"hubble_policy_verdicts_total{action="forwarded",direction="ingress",match="l3-l4"} 2"#,
        ]
    );
}

#[test]
fn context_labels_go_with_every_metric() {
    let flows = [
        dropped(tcp(flow(), 80, "SYN"), DropReason::PolicyDenied),
        dropped(to_world(tcp(flow(), 443, "SYN")), DropReason::PolicyDenied),
    ];
    assert_eq!(
        count(
            "drop:sourceContext=pod;destinationContext=pod|ip;labelsContext=source_namespace,traffic_direction",
            &flows
        ),
        [
            r#"hubble_drop_total{destination="10.0.0.2",protocol="TCP",reason="POLICY_DENIED",source="default/web",source_namespace="default",traffic_direction="egress"} 1"#,
            r#"hubble_drop_total{destination="default/db",protocol="TCP",reason="POLICY_DENIED",source="default/web",source_namespace="default",traffic_direction="ingress"} 1"#,
        ]
    );
    assert_eq!(
        count(
            "tcp:destinationContext=app;sourceContext=workload-name|pod-name",
            &flows[..0]
        ),
        Vec::<String>::new()
    );
    let forwarded = [tcp(flow(), 80, "SYN")];
    assert_eq!(
        count(
            "tcp:destinationContext=app;sourceContext=workload-name|pod-name",
            &forwarded
        ),
        [r#"hubble_tcp_flags_total{destination="db",family="IPv4",flag="SYN",source="web"} 1"#]
    );
}

#[test]
fn l7_metrics_are_accepted_and_stay_empty() {
    let flows = [tcp(flow(), 80, "SYN")];
    assert_eq!(
        count("dns:query;ignoreAAAA http:sourceContext=pod kafka", &flows),
        Vec::<String>::new()
    );
}

use lumen_proto::flow::{
    layer4::Protocol, AuthType, CiliumEventType, Endpoint, Ethernet, Flow, Ip, IpTraceId, Layer4, LostEvent, Policy,
    Service, TrafficDirection, Udp, Verdict,
};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::relay::{NodeState, NodeStatusEvent};
use prost_types::Timestamp;

use super::*;

fn event(r#type: i32, sub_type: i32) -> Flow {
    Flow {
        event_type: Some(CiliumEventType { r#type, sub_type }),
        ..Default::default()
    }
}

fn response(flow: Flow) -> GetFlowsResponse {
    GetFlowsResponse {
        response_types: Some(ResponseTypes::Flow(flow)),
        ..Default::default()
    }
}

fn status(state: NodeState, names: &[&str], message: &str) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: "relay".into(),
        time: Some(Timestamp {
            seconds: 1_764_035_218,
            nanos: 0,
        }),
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names: names.iter().map(|n| n.to_string()).collect(),
            message: message.into(),
        })),
    }
}

fn line(flow: Flow, style: &Style) -> String {
    compact(&response(flow), style).unwrap()
}

#[test]
#[allow(deprecated)] // Flow.summary
fn colours_escapes_and_numeric_as_hubble() {
    let flow = Flow {
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: "fd00::1".into(),
            destination: "10.0.0.2".into(),
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(Protocol::Udp(Udp {
                source_port: 53,
                destination_port: 41000,
            })),
        }),
        destination: Some(Endpoint {
            pod_name: "evil\x1b[2J\rpod".into(),
            namespace: "default".into(),
            identity: 2,
            ..Default::default()
        }),
        is_reply: Some(false),
        summary: "UDP".into(),
        ..event(4, 0)
    };
    let colour = Style {
        color: true,
        ..Style::default()
    };
    assert_eq!(
        line(flow.clone(), &colour),
        "N/A: \x1b[36m[fd00::1]:\x1b[33m53\x1b[0m\x1b[0m \x1b[35m(unknown)\x1b[0m -> \
         \x1b[36mdefault/evil^[[2J\\rpod:\x1b[33m41000\x1b[0m\x1b[0m \x1b[35m(world)\x1b[0m to-endpoint \
         \x1b[32mFORWARDED\x1b[0m (UDP)"
    );
    let numeric = Style {
        ip_translation: false,
        ..Style::default()
    };
    assert_eq!(
        line(flow, &numeric),
        "N/A: [fd00::1]:53 (unknown) -> 10.0.0.2:41000 (world) to-endpoint FORWARDED (UDP)"
    );
}

#[test]
fn services_names_and_macs_when_there_is_no_pod() {
    let flow = Flow {
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: "10.0.0.9".into(),
            destination: "1.1.1.1".into(),
            ..Default::default()
        }),
        source: Some(Endpoint {
            namespace: "default".into(),
            pod_name: "web-1".into(),
            ..Default::default()
        }),
        source_service: Some(Service {
            name: "web".into(),
            namespace: "shop".into(),
        }),
        destination_names: vec!["one.one.one.one".into(), "dns.cloudflare".into()],
        is_reply: Some(false),
        ..event(4, 11)
    };
    assert_eq!(
        line(flow, &Style::default()),
        "N/A: shop/web-1 (unknown) -> one.one.one.one,dns.cloudflare (unknown) to-network FORWARDED (IPv4)"
    );
    let l2 = Flow {
        ethernet: Some(Ethernet {
            source: "aa:bb:cc:dd:ee:01".into(),
            destination: "aa:bb:cc:dd:ee:02".into(),
        }),
        ..event(4, 2)
    };
    assert_eq!(
        line(l2, &Style::default()),
        "N/A: aa:bb:cc:dd:ee:01 (unknown) <> aa:bb:cc:dd:ee:02 (unknown) to-host VERDICT_UNKNOWN (N/A)"
    );
}

#[test]
fn summary_column_has_the_ip_trace_id_and_auth() {
    let flow = Flow {
        verdict: Verdict::Dropped as i32,
        ip_trace_id: Some(IpTraceId {
            trace_id: 4242,
            ip_option_type: 136,
        }),
        auth_type: AuthType::Spire as i32,
        ..event(1, 189)
    };
    assert_eq!(
        line(flow, &Style::default()),
        "N/A:  (unknown) <>  (unknown) Authentication required DROPPED (IP Trace ID: 4242; N/A; Auth: SPIRE)"
    );
}

#[test]
fn policy_verdict_events_say_allowed_or_denied_and_by_whom() {
    let policy = |name: &str, kind: &str| Policy {
        name: name.into(),
        kind: kind.into(),
        ..Default::default()
    };
    let allowed = Flow {
        verdict: Verdict::Forwarded as i32,
        traffic_direction: TrafficDirection::Egress as i32,
        policy_match_type: 2,
        egress_allowed_by: vec![
            policy("a", "CiliumNetworkPolicy"),
            policy("", "x"),
            policy("b", "NetworkPolicy"),
        ],
        ..event(5, 0)
    };
    let names = Style {
        policy_names: true,
        ..Style::default()
    };
    let tail = |flow: &Flow, style: &Style| {
        line(flow.clone(), style)
            .split_once("policy-verdict:")
            .unwrap()
            .1
            .to_string()
    };
    assert_eq!(tail(&allowed, &Style::default()), "L3-L4 EGRESS ALLOWED (N/A)");
    assert_eq!(
        tail(&allowed, &names),
        "L3-L4 EGRESS ALLOWED BY a (CiliumNetworkPolicy), b (NetworkPolicy) (N/A)"
    );
    let denied = Flow {
        verdict: Verdict::Dropped as i32,
        egress_denied_by: vec![policy("deny", "CiliumNetworkPolicy")],
        ..allowed.clone()
    };
    assert_eq!(
        tail(&denied, &names),
        "L3-L4 EGRESS DENIED BY deny (CiliumNetworkPolicy) (N/A) [denied by CiliumNetworkPolicy deny]"
    );
    let audited = Flow {
        verdict: Verdict::Audit as i32,
        ..allowed.clone()
    };
    assert_eq!(tail(&audited, &names), "L3-L4 EGRESS AUDITED (N/A)");
    let odd = Flow {
        verdict: 42,
        ..event(4, 0)
    };
    assert!(line(odd, &names).ends_with("to-endpoint 42 (N/A)"));
}

#[test]
fn why_a_flow_was_dropped_follows_the_compact_line() {
    let ext = lumen_proto::lumen::v1::FlowExtension {
        selected_by: vec![Policy {
            name: "a".into(),
            namespace: "default".into(),
            kind: "CiliumNetworkPolicy".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let default_deny = Flow {
        verdict: Verdict::Dropped as i32,
        extensions: Some(ext.to_any()),
        ..Default::default()
    };
    assert!(line(default_deny, &Style::default())
        .ends_with("DROPPED (N/A) [no policy allowed it; selected by CiliumNetworkPolicy default/a]"));
}

#[test]
fn node_status_tells_only_of_trouble() {
    let style = Style::default();
    assert_eq!(
        node_status(&status(NodeState::NodeConnected, &["n1"], ""), &style, false),
        None
    );
    assert_eq!(
        node_status(&status(NodeState::NodeUnavailable, &["n1", "n2"], ""), &style, false).unwrap(),
        "Nov 25 01:46:58.000 [relay]: 2 nodes are unavailable: n1, n2\n"
    );
    assert_eq!(
        node_status(&status(NodeState::NodeError, &["n1"], "TLS: expired"), &style, false).unwrap(),
        "Nov 25 01:46:58.000 [relay]: Error \"TLS: expired\" on 1 nodes: n1\n"
    );
    assert_eq!(
        node_status(&status(NodeState::NodeUnavailable, &["n1"], ""), &style, true).unwrap(),
        "  TIMESTAMP: Nov 25 01:46:58.000\n      STATE: NODE_UNAVAILABLE\n      NODES: n1\n    MESSAGE: N/A\n"
    );
    let many: Vec<String> = (1..=12).map(|i| format!("node-{i:02}")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        node_status(&status(NodeState::NodeUnavailable, &names, ""), &style, false).unwrap(),
        "Nov 25 01:46:58.000 [relay]: 12 nodes are unavailable: node-01, node-02, node-03, node-04, node-05 (and 7 more)\n"
    );
}

/// Runs `responses` through a printer: (stdout, stderr).
fn printed(output: Output, style: Style, responses: Vec<GetFlowsResponse>) -> (String, String) {
    let mut err = Vec::new();
    let mut printer = Printer::new(Vec::new(), &mut err, output, style);
    for r in responses {
        printer.print(r).unwrap();
    }
    let out = printer.finish().unwrap();
    (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

#[test]
fn node_status_goes_to_stderr_except_in_jsonpb() {
    let lost = GetFlowsResponse {
        node_name: "n1".into(),
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: 3,
            num_events_lost: 5,
            cpu: Some(2),
            ..Default::default()
        })),
        ..Default::default()
    };
    let all = || {
        vec![
            status(NodeState::NodeConnected, &["n1"], ""),
            lost.clone(),
            status(NodeState::NodeUnavailable, &["n2"], ""),
            lost.clone(),
        ]
    };
    let (out, err) = printed(Output::Compact, Style::default(), all());
    assert_eq!(
        out,
        "N/A EVENTS LOST: HUBBLE_RING_BUFFER CPU(2) 5\nN/A EVENTS LOST: HUBBLE_RING_BUFFER CPU(2) 5\n"
    );
    assert_eq!(err, "Nov 25 01:46:58.000 [relay]: 1 nodes are unavailable: n2\n");
    let node = Style {
        node_name: true,
        ..Style::default()
    };
    let (out, err) = printed(Output::Dict, node, all());
    let block = "  TIMESTAMP: N/A\n       NODE: n1\n     SOURCE: HUBBLE_RING_BUFFER\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: CPU(2) - 5\n";
    assert_eq!(out, format!("{block}------------\n{block}"));
    assert_eq!(
        err,
        "------------\n  TIMESTAMP: Nov 25 01:46:58.000\n      STATE: NODE_UNAVAILABLE\n      NODES: n2\n    MESSAGE: N/A\n"
    );
    let (out, err) = printed(Output::Jsonpb, Style::default(), all());
    assert_eq!((out.lines().count(), err.as_str()), (4, ""));
    let (out, err) = printed(Output::Json, Style::default(), all());
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    let (out, _) = printed(
        Output::Table,
        Style::default(),
        vec![status(NodeState::NodeConnected, &["n1"], "")],
    );
    assert_eq!(out, "", "no header without a row");
}

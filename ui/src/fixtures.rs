//! Flows for the unit tests: pods by namespace and app, at fixed times long
//! past (so that rates are 0 and every figure comes from the counts).

use lumen_proto::flow::{layer4, DropReason, Endpoint, Flow, Layer4, Policy, Tcp, TcpFlags, TrafficDirection, Verdict};
use lumen_proto::flow::{Ip, LostEvent};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::GetFlowsResponse;
use lumen_proto::prost_types::Timestamp;
use lumen_proto::relay::{NodeState, NodeStatusEvent};

/// 2023-11-14T22:13:20Z.
pub const T0: i64 = 1_700_000_000;

pub struct Pod {
    pub namespace: &'static str,
    pub app: &'static str,
    pub ip: &'static str,
    pub identity: u32,
}

pub const WEB: Pod = Pod {
    namespace: "shop",
    app: "web",
    ip: "10.0.0.1",
    identity: 1001,
};
pub const CART: Pod = Pod {
    namespace: "shop",
    app: "cart",
    ip: "10.0.0.2",
    identity: 1002,
};
pub const DB: Pod = Pod {
    namespace: "data",
    app: "db",
    ip: "10.0.0.3",
    identity: 1003,
};

fn endpoint(p: &Pod) -> Endpoint {
    Endpoint {
        identity: p.identity,
        namespace: p.namespace.into(),
        pod_name: format!("{}-0", p.app),
        labels: vec![format!("k8s:app={}", p.app), "k8s:note=<script>x</script>".into()],
        ..Default::default()
    }
}

/// A SYN from `src` to `dst` port 80 at `T0 + sec`, observed by `node`;
/// dropped ones denied by CiliumNetworkPolicy data/db-in.
pub fn syn(sec: i64, src: &Pod, dst: &Pod, verdict: Verdict, node: &str) -> GetFlowsResponse {
    let dropped = verdict == Verdict::Dropped;
    let flow = Flow {
        time: Some(Timestamp {
            seconds: T0 + sec,
            nanos: 5_000,
        }),
        uuid: format!("{node}-{sec}-{}-{}", src.app, dst.app),
        verdict: verdict as i32,
        drop_reason_desc: if dropped { DropReason::PolicyDenied as i32 } else { 0 },
        ip: Some(Ip {
            source: src.ip.into(),
            destination: dst.ip.into(),
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40_000,
                destination_port: 80,
                flags: Some(TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(endpoint(src)),
        destination: Some(endpoint(dst)),
        node_name: node.into(),
        traffic_direction: if dropped {
            TrafficDirection::Ingress as i32
        } else {
            TrafficDirection::Egress as i32
        },
        is_reply: Some(false),
        ingress_denied_by: if dropped {
            vec![Policy {
                name: "db-in".into(),
                namespace: "data".into(),
                kind: "CiliumNetworkPolicy".into(),
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    GetFlowsResponse {
        node_name: node.into(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(flow)),
    }
}

pub fn node_status(state: NodeState, nodes: &[&str]) -> GetFlowsResponse {
    GetFlowsResponse {
        time: Some(Timestamp { seconds: T0, nanos: 0 }),
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names: nodes.iter().map(|n| n.to_string()).collect(),
            message: String::new(),
        })),
        ..Default::default()
    }
}

pub fn lost(events: u64) -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: "n1".into(),
        time: Some(Timestamp { seconds: T0, nanos: 0 }),
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            num_events_lost: events,
            ..Default::default()
        })),
    }
}

/// The traffic of the tests: web → cart forwarded 3 times; web → db twice,
/// each seen forwarded on n1 and dropped on n3; cart → db once, forwarded.
pub fn traffic() -> Vec<GetFlowsResponse> {
    vec![
        syn(0, &WEB, &CART, Verdict::Forwarded, "n1"),
        syn(1, &WEB, &DB, Verdict::Forwarded, "n1"),
        syn(1, &WEB, &DB, Verdict::Dropped, "n3"),
        syn(2, &WEB, &CART, Verdict::Forwarded, "n1"),
        syn(3, &CART, &DB, Verdict::Forwarded, "n2"),
        syn(4, &WEB, &DB, Verdict::Forwarded, "n1"),
        syn(4, &WEB, &DB, Verdict::Dropped, "n3"),
        syn(5, &WEB, &CART, Verdict::Forwarded, "n1"),
    ]
}

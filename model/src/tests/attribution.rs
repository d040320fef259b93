//! Which connection, node and policy a flow counts for.

use lumen_proto::flow::{DropReason, TrafficDirection};

use super::*;
use crate::{Config, Counted, DropRow, PolicyRef, Unit};

#[test]
fn replies_count_for_the_connection_they_answer() {
    let mut model = Model::new(Default::default());
    feed(
        &mut model,
        [
            tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432).at(1),
            tcp(db(), "10.0.2.7", 5432, web(1), "10.0.1.5", 40000).at(1).reply(),
            tcp(db(), "10.0.2.7", 5432, web(1), "10.0.1.5", 40000)
                .at(2)
                .reply()
                .dropped(DropReason::CtMissingTcpAckFlag),
        ],
    );
    let s = snap(&model, 3);
    assert_eq!(names(&s.connections), ["shop/web → shop/db:5432"]);
    let c = &s.connections.rows[0];
    assert_eq!((c.flows, c.forwarded, c.dropped), (3, 2, 1));
    let (w, d) = (workload(&s.workloads, "shop/web"), workload(&s.workloads, "shop/db"));
    assert_eq!((w.flows_out, w.flows_in, d.flows_in, d.flows_out), (3, 0, 3, 0));
    assert_eq!(s.drops.by_destination.rows[0].key.to_string(), "shop/db");

    // A flow that does not say whether it is a reply is taken as it comes.
    let mut model = Model::new(Default::default());
    let mut unsure = tcp(db(), "10.0.2.7", 5432, web(1), "10.0.1.5", 40000).into_flow();
    unsure.is_reply = None;
    model.ingest(&unsure);
    assert_eq!(names(&snap(&model, 1).connections), ["shop/db → shop/web:40000"]);
}

#[test]
fn a_flow_seen_at_both_ends_counts_for_each_report() {
    let mut model = Model::new(Default::default());
    let flow = || tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432).at(1);
    feed(
        &mut model,
        [
            flow().node("node-a", TrafficDirection::Egress),
            flow().node("node-b", TrafficDirection::Ingress),
        ],
    );
    let s = snap(&model, 2);
    assert_eq!((s.connections.rows[0].flows, s.totals.flows), (2, 2));
    let nodes: Vec<_> = s.nodes.rows.iter().map(|n| (n.name.as_str(), n.flows)).collect();
    assert_eq!(nodes, [("node-a", 1), ("node-b", 1)]);
}

#[test]
fn reserved_identities_are_nodes_and_the_world_is_split_by_dns_name_else_ip() {
    let mut model = Model::new(Default::default());
    let world = || Some(reserved(2, "world"));
    feed(
        &mut model,
        [
            tcp(web(1), "10.0.1.5", 40000, world(), "203.0.113.9", 443).names(&[], &["api.example.com"]),
            tcp(web(1), "10.0.1.5", 40001, world(), "203.0.113.10", 443).names(&[], &["api.example.com"]),
            tcp(world(), "203.0.113.9", 443, web(1), "10.0.1.5", 40000)
                .names(&["api.example.com"], &[])
                .reply(),
            tcp(web(1), "10.0.1.5", 40002, world(), "198.51.100.1", 443),
            tcp(
                web(1),
                "10.0.1.5",
                40003,
                Some(reserved(7, "kube-apiserver")),
                "10.96.0.1",
                443,
            ),
            tcp(Some(reserved(1, "host")), "10.0.0.1", 50000, web(1), "10.0.1.5", 8080),
            tcp(
                Some(reserved(6, "remote-node")),
                "10.0.0.2",
                50000,
                web(1),
                "10.0.1.5",
                8080,
            ),
            tcp(None, "192.0.2.1", 50000, web(1), "10.0.1.5", 8080),
        ],
    );
    let s = snap(&model, 1);
    assert_eq!(
        names(&s.connections),
        [
            "shop/web → reserved:kube-apiserver:443",
            "shop/web → 198.51.100.1 (reserved:world):443",
            "shop/web → api.example.com (reserved:world):443",
            "reserved:host → shop/web:8080",
            "reserved:remote-node → shop/web:8080",
            "192.0.2.1 → shop/web:8080",
        ]
    );
    assert_eq!(
        conn(&s.connections, "shop/web", "api.example.com (reserved:world)", 443).flows,
        3
    );
    let world = &s.connections.rows[2].destination;
    assert_eq!(
        (world.kind, world.namespace.as_str(), world.name.as_str()),
        (crate::NodeKind::World, "", "api.example.com")
    );
}

/// Two web pods on node-a call db-0; node-b then reports one call as db-0's.
fn two_webs_and_a_db() -> [F; 3] {
    [
        tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432).node("node-a", TrafficDirection::Egress),
        tcp(web(2), "10.0.1.6", 40001, db(), "10.0.2.7", 5432).node("node-a", TrafficDirection::Egress),
        tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432).node("node-b", TrafficDirection::Ingress),
    ]
}

#[test]
fn each_unit_names_the_same_flows_its_own_way() {
    let expected: [(Unit, &[(&str, u64)]); 5] = [
        (Unit::Workload, &[("shop/web → shop/db:5432", 3)]),
        (
            Unit::Pod,
            &[("shop/web-1 → shop/db-0:5432", 2), ("shop/web-2 → shop/db-0:5432", 1)],
        ),
        (Unit::Identity, &[("shop/1001 → shop/1002:5432", 3)]),
        (Unit::Namespace, &[("shop → shop:5432", 3)]),
        // db-0's node is known from node-b's report only.
        (
            Unit::Node,
            &[("node-a → node-b:5432", 1), ("node-a → 10.0.2.7:5432", 2)],
        ),
    ];
    for (unit, connections) in expected {
        let mut model = Model::new(Config {
            unit,
            ..Default::default()
        });
        feed(&mut model, two_webs_and_a_db());
        let s = snap(&model, 1);
        let got: Vec<_> = names(&s.connections)
            .into_iter()
            .zip(s.connections.rows.iter().map(|c| c.flows))
            .collect();
        let want: Vec<_> = connections.iter().map(|(n, f)| (n.to_string(), *f)).collect();
        assert_eq!(got, want, "{unit:?}");
        assert_eq!(s.unit, unit);
    }

    let mut model = Model::new(Default::default());
    feed(&mut model, two_webs_and_a_db());
    let s = snap(&model, 1);
    assert_eq!(workload(&s.workloads, "shop/web").pods, ["web-1", "web-2"]);
    let mut model = Model::new(Config {
        unit: Unit::Namespace,
        ..Default::default()
    });
    feed(&mut model, two_webs_and_a_db());
    let s = snap(&model, 1);
    let shop = workload(&s.workloads, "shop");
    // Traffic inside a namespace is in and out of it, and one flow each.
    assert_eq!((shop.flows, shop.flows_in, shop.flows_out), (3, 3, 3));
    assert_eq!(shop.pods, ["db-0", "web-1", "web-2"]);
    assert_eq!(shop.top_peer.as_ref().map(ToString::to_string).as_deref(), Some("shop"));
}

#[test]
fn changing_the_unit_starts_the_node_tables_afresh_and_keeps_the_rest() {
    let mut model = Model::new(Default::default());
    feed(&mut model, two_webs_and_a_db());
    model.ingest(
        &tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 3306)
            .dropped(DropReason::PolicyDenied)
            .0,
    );
    model.set_unit(Unit::Pod);
    let s = snap(&model, 1);
    assert_eq!(
        (
            s.unit,
            s.connections.rows.len(),
            s.edges.rows.len(),
            s.workloads.rows.len()
        ),
        (Unit::Pod, 0, 0, 0)
    );
    assert_eq!(
        (s.drops.by_destination.rows.len(), s.drops.by_reason.rows.len()),
        (0, 1)
    );
    assert_eq!((s.totals.flows, s.nodes.rows.len()), (4, 2));
    feed(&mut model, two_webs_and_a_db());
    assert_eq!(snap(&model, 1).connections.rows.len(), 2);
}

#[test]
fn drops_are_blamed_on_the_denying_policies_else_on_those_selecting_the_endpoint() {
    let deny = policy("CiliumNetworkPolicy", "shop", "deny-db");
    let selecting = policy("CiliumNetworkPolicy", "shop", "db-ingress");
    let baseline = policy("CiliumClusterwideNetworkPolicy", "", "baseline");
    let to = |port| tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", port);
    let mut numeric = to(3306).dropped(DropReason::PolicyDenied).into_flow();
    numeric.drop_reason_desc = 0;
    #[allow(deprecated)]
    {
        numeric.drop_reason = 181;
    }
    let mut unknown = to(3306).dropped(DropReason::PolicyDenied).into_flow();
    unknown.drop_reason_desc = 999;
    let mut model = Model::new(Default::default());
    feed(
        &mut model,
        [
            // A deny rule decided: the policy selecting the endpoint is beside the point.
            to(5432)
                .dropped(DropReason::PolicyDenied)
                .denied_by(vec![deny.clone()], vec![])
                .selected_by(vec![selecting.clone()]),
            to(5432)
                .dropped(DropReason::PolicyDenied)
                .selected_by(vec![selecting.clone(), baseline.clone()]),
            to(5432)
                .dropped(DropReason::PolicyDenied)
                .selected_by(vec![selecting.clone(), selecting.clone()]),
            // Audit: blamed on the connection, not a drop.
            to(5432).audit().denied_by(vec![], vec![baseline.clone()]),
            // Forwarded flows blame nobody, whatever they carry.
            to(5432).denied_by(vec![deny.clone()], vec![]),
            F(numeric),
            F(unknown),
        ],
    );
    model.ingest(&to(3306).dropped(DropReason::Unknown).0);
    let s = snap(&model, 1);
    let c = conn(&s.connections, "shop/web", "shop/db", 5432);
    let p = |p: &Policy, count| Counted {
        key: PolicyRef::of(p),
        count,
    };
    assert_eq!(c.policies, [p(&baseline, 2), p(&selecting, 2), p(&deny, 1)]);
    assert_eq!((c.dropped, c.audit, c.forwarded), (3, 1, 1));
    let reasons: Vec<_> = conn(&s.connections, "shop/web", "shop/db", 3306)
        .drop_reasons
        .iter()
        .map(|r| (r.key.to_string(), r.count))
        .collect();
    assert_eq!(
        reasons,
        [
            ("999".into(), 1),
            ("DROP_REASON_UNKNOWN".into(), 1),
            ("POLICY_DENY".to_string(), 1)
        ]
    );

    fn rows<K: std::fmt::Display>(t: &Table<DropRow<K>>) -> Vec<(String, u64)> {
        t.rows.iter().map(|r| (r.key.to_string(), r.count)).collect()
    }
    assert_eq!(
        rows(&s.drops.by_reason),
        [
            ("999".into(), 1),
            ("DROP_REASON_UNKNOWN".into(), 1),
            ("POLICY_DENIED".into(), 3),
            ("POLICY_DENY".into(), 1)
        ]
    );
    assert_eq!(
        rows(&s.drops.by_policy),
        [
            ("CiliumClusterwideNetworkPolicy baseline".into(), 1),
            ("CiliumNetworkPolicy shop/db-ingress".into(), 2),
            ("CiliumNetworkPolicy shop/deny-db".into(), 1)
        ]
    );
    assert_eq!(rows(&s.drops.by_destination), [("shop/db".into(), 6)]);
}

#[test]
fn connection_of_names_the_connection_a_flow_counts_for() {
    let reply = tcp(db(), "10.0.2.7", 5432, web(1), "10.0.1.5", 40000)
        .reply()
        .node("node-b", TrafficDirection::Ingress)
        .into_flow();
    let nobody = tcp(None, "", 1, None, "", 2).into_flow();
    let key = |model: &Model, flow: &Flow| {
        model
            .connection_of(flow)
            .map(|(s, d, port, protocol)| format!("{s} → {d}:{port}/{protocol}"))
    };

    let mut model = Model::new(Default::default());
    assert_eq!(key(&model, &reply).as_deref(), Some("shop/web → shop/db:5432/TCP"));
    assert_eq!(key(&model, &nobody), None);
    model.ingest(&nobody);
    let s = snap(&model, 1);
    assert_eq!(
        (s.totals.flows, s.connections.rows.len(), s.workloads.rows.len()),
        (1, 0, 0)
    );

    // Under the node unit, before and after the model has learnt where db-0 runs.
    let mut model = Model::new(Config {
        unit: Unit::Node,
        ..Default::default()
    });
    assert_eq!(key(&model, &reply).as_deref(), Some("10.0.1.5 → node-b:5432/TCP"));
    model.ingest(
        &tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432)
            .node("node-a", TrafficDirection::Egress)
            .0,
    );
    assert_eq!(key(&model, &reply).as_deref(), Some("node-a → node-b:5432/TCP"));
    model.ingest(&reply);
    assert_eq!(
        names(&snap(&model, 1).connections),
        ["node-a → node-b:5432", "node-a → 10.0.2.7:5432"]
    );
}

#[test]
fn endpoints_without_identity_or_address_are_not_taken_for_one_another() {
    // Two workloads neither of which has an identity or an address: the
    // key memo, which tells endpoints apart by those, must not mix them up.
    let mut model = Model::new(Default::default());
    let ep = |app: &str| Some(pod("evil", &format!("{app}-1"), 0));
    feed(&mut model, [tcp(ep("x"), "", 40000, ep("y"), "", 80).at(1)]);
    let s = snap(&model, 2);
    assert_eq!(names(&s.connections), ["evil/x → evil/y:80"]);
    let mut ends = Vec::new();
    model.ingest_response_then(
        &lumen_proto::observer::GetFlowsResponse {
            response_types: Some(lumen_proto::observer::get_flows_response::ResponseTypes::Flow(
                tcp(ep("x"), "", 40001, ep("y"), "", 80).at(2).into_flow(),
            )),
            ..Default::default()
        },
        |source, destination| ends.push((source.to_string(), destination.to_string())),
    );
    assert_eq!(ends, [("evil/x".to_string(), "evil/y".to_string())]);
}

/// Flows decoded as far as the model reads them count exactly as whole
/// flows do; what the model does not read is not decoded.
#[test]
#[allow(deprecated)] // the summary: a field the model does not read
fn flows_decoded_for_the_model_count_as_whole_flows() {
    use lumen_proto::flow::{NetworkInterface, Service, TraceObservationPoint};
    use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
    use lumen_proto::prost::Message;

    let deny = policy("CiliumNetworkPolicy", "shop", "deny-db");
    let allow = policy("CiliumNetworkPolicy", "shop", "web-egress");
    let to = |port| tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", port);
    let flows = [
        to(5432).node("n1", TrafficDirection::Egress),
        to(5432).reply().at(1).node("n2", TrafficDirection::Ingress),
        to(3306)
            .dropped(DropReason::PolicyDenied)
            .denied_by(vec![deny.clone()], vec![]),
        to(3306)
            .dropped(DropReason::PolicyDenied)
            .selected_by(vec![allow.clone()])
            .udp(),
        to(53).names(&[], &["db.example.com"]).audit(),
        // A forwarded flow's extension blames nobody: not decoded.
        to(5432).selected_by(vec![allow.clone()]),
    ];
    let (mut whole, mut read) = (Model::new(Default::default()), Model::new(Default::default()));
    // Remembers web's and db's endpoints from the first flow on.
    let mut reader = crate::FlowReader::default();
    for f in flows {
        let mut flow = f.into_flow();
        // Fields the model does not read.
        flow.summary = "TCP Flags: SYN".into();
        flow.uuid = "3c8d0e2a-0000-4000-8000-000000000001".into();
        flow.interface = Some(NetworkInterface {
            index: 7,
            name: "lxc1".into(),
        });
        flow.trace_observation_point = TraceObservationPoint::ToEndpoint as i32;
        flow.egress_allowed_by = vec![allow.clone()];
        flow.node_labels = vec!["kubernetes.io/hostname=n1".into()];
        flow.destination_service = Some(Service {
            name: "db".into(),
            namespace: "shop".into(),
        });
        let response = GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(flow.clone())),
            node_name: flow.node_name.clone(),
            time: flow.time,
        };
        whole.ingest_response(&response);
        let decoded = reader.decode(&response.encode_to_vec()).unwrap();
        assert_eq!(decoded, crate::decode_response(&response.encode_to_vec()).unwrap());
        read.ingest_response(&decoded);
        let Some(ResponseTypes::Flow(partial)) = decoded.response_types else {
            panic!("a flow decodes as a flow");
        };
        let blamed = [Verdict::Dropped as i32, Verdict::Audit as i32].contains(&flow.verdict);
        let expected = Flow {
            extensions: if blamed { flow.extensions.clone() } else { None },
            summary: String::new(),
            interface: None,
            trace_observation_point: 0,
            egress_allowed_by: Vec::new(),
            node_labels: Vec::new(),
            destination_service: None,
            ..flow
        };
        assert_eq!(partial, expected);
    }
    let json = |m: &Model| serde_json::to_string(&snap(m, 2)).unwrap();
    assert_eq!(json(&read), json(&whole));
    assert_eq!(snap(&read, 2).totals.flows, 6);
}

//! Edges and their health, the workloads table, nodes and losses, queries,
//! and the JSON consumers read.

use lumen_proto::flow::{DropReason, LostEvent, LostEventSource};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::relay::{NodeState, NodeStatusEvent};

use super::*;
use crate::{
    ConnectionColumn, EdgeRow, Health, LossRow, NodeKey, NodeKind, Order, Protocol, Query, Selection, WorkloadColumn,
};

fn edge<'a>(s: &'a Snapshot, destination: &str) -> &'a EdgeRow {
    s.edges
        .rows
        .iter()
        .find(|e| e.destination.to_string() == destination)
        .unwrap_or_else(|| panic!("no edge to {destination}"))
}

fn health(s: &Snapshot) -> Vec<(String, Health)> {
    s.edges
        .rows
        .iter()
        .map(|e| (e.destination.to_string(), e.health))
        .collect()
}

#[test]
fn edges_group_a_node_pairs_ports_and_take_a_health_class() {
    let mut model = Model::new(Default::default());
    let to = |dst: Option<Endpoint>, port, at| tcp(web(1), "10.0.1.5", 40000, dst, "10.0.9.9", port).at(at);
    let cache = || Some(pod("shop", "cache-0", 1003));
    let api = || Some(pod("shop", "api-0", 1004));
    let world = || Some(reserved(2, "world"));
    feed(&mut model, (1..5).map(|t| to(db(), 5432, t)));
    feed(&mut model, [to(db(), 5433, 5)]);
    feed(&mut model, (1..4).map(|t| to(cache(), 6379, t)));
    feed(&mut model, [to(cache(), 6379, 4).dropped(DropReason::PolicyDenied)]);
    feed(
        &mut model,
        (1..3).map(|t| to(world(), 443, t).dropped(DropReason::PolicyDenied)),
    );
    feed(&mut model, (1..3).map(|t| to(api(), 8080, t).audit()));
    let s = snap(&model, 10);
    let expected = [
        ("shop/api", Health::Audit),
        ("shop/cache", Health::SomeDrops),
        ("shop/db", Health::Forwarded),
        ("10.0.9.9 (reserved:world)", Health::AllDropped),
    ];
    let expected: Vec<_> = expected.iter().map(|(d, h)| (d.to_string(), *h)).collect();
    assert_eq!(health(&s), expected);
    let db = edge(&s, "shop/db");
    let ports: Vec<_> = db.ports.iter().map(|p| p.port).collect();
    assert_eq!((ports, db.flows, db.flows_per_sec), (vec![5432, 5433], 5, 0.5));
    let some = edge(&s, "shop/cache");
    assert_eq!((some.dropped, some.drops_per_sec, some.drop_pct), (1, 0.1, 25.0));
    assert_eq!(edge(&s, "shop/api").audit, 2);

    // Idle, an edge keeps the picture of its lifetime.
    assert_eq!(health(&snap(&model, 30)), expected);
    assert_eq!(edge(&snap(&model, 30), "shop/cache").drop_pct, 25.0);

    // Active again, it shows the window only.
    feed(&mut model, [to(cache(), 6379, 40), to(api(), 8080, 40)]);
    let s = snap(&model, 41);
    assert_eq!(
        (edge(&s, "shop/cache").health, edge(&s, "shop/cache").drop_pct),
        (Health::Forwarded, 0.0)
    );
    assert_eq!(edge(&s, "shop/api").health, Health::Forwarded);
}

/// In each of the seconds 0..10: web-1 calls db twice and cache once (every
/// other call dropped), frontend calls web, and ops/prom scrapes web.
fn busy_shop() -> Model {
    let mut model = Model::new(Default::default());
    let cache = || Some(pod("shop", "cache-0", 1003));
    let frontend = || Some(pod("shop", "frontend-0", 1005));
    let prom = || Some(pod("ops", "prom-0", 2001));
    for t in 0..10 {
        feed(
            &mut model,
            [
                tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432).at(t),
                tcp(web(1), "10.0.1.5", 40001, db(), "10.0.2.7", 5432).at_ms(t * 1000 + 500),
                tcp(frontend(), "10.0.3.1", 40000, web(1), "10.0.1.5", 8080).at(t),
                tcp(prom(), "10.0.4.1", 40000, web(1), "10.0.1.5", 9090).at(t),
            ],
        );
        let call = tcp(web(1), "10.0.1.5", 40002, cache(), "10.0.2.8", 6379).at(t);
        model.ingest(
            &if t % 2 == 0 {
                call.dropped(DropReason::PolicyDenied)
            } else {
                call
            }
            .0,
        );
    }
    model
}

#[test]
fn workloads_show_rates_in_and_out_drops_and_their_top_peer() {
    let s = snap(&busy_shop(), 10);
    let web = workload(&s.workloads, "shop/web");
    assert_eq!((web.flows, web.flows_in, web.flows_out, web.dropped), (50, 20, 30, 5));
    assert_eq!(
        (web.in_per_sec, web.out_per_sec, web.drops_per_sec, web.drop_pct),
        (2.0, 3.0, 0.5, 10.0)
    );
    assert_eq!(web.top_peer, Some(NodeKey::new(NodeKind::Workload, "shop", "db")));
    assert_eq!(web.trend[50..], [5; 10]);
    let cache = workload(&s.workloads, "shop/cache");
    assert_eq!((cache.in_per_sec, cache.out_per_sec, cache.drop_pct), (1.0, 0.0, 50.0));
    assert_eq!(
        cache.top_peer.as_ref().map(ToString::to_string).as_deref(),
        Some("shop/web")
    );
    assert_eq!(workload(&s.workloads, "ops/prom").pods, ["prom-0"]);
}

#[test]
fn queries_sort_by_any_column_either_way_cut_and_select() {
    let s = snap(&busy_shop(), 10);
    let listed = |q: &Query<ConnectionColumn>| names(&s.connections.query(q));
    let by_rate = |order| Query {
        sort: Some(ConnectionColumn::FlowsPerSec),
        order,
        ..Query::default()
    };
    // Ties (1.0/s) in key order, whichever the direction.
    assert_eq!(
        listed(&by_rate(Order::Descending)),
        [
            "shop/web → shop/db:5432",
            "ops/prom → shop/web:9090",
            "shop/frontend → shop/web:8080",
            "shop/web → shop/cache:6379"
        ]
    );
    assert_eq!(
        listed(&by_rate(Order::Ascending)),
        [
            "ops/prom → shop/web:9090",
            "shop/frontend → shop/web:8080",
            "shop/web → shop/cache:6379",
            "shop/web → shop/db:5432"
        ]
    );
    let top = s.connections.query(&Query::top(ConnectionColumn::Dropped, 1));
    assert_eq!(
        (names(&top), top.matched),
        (vec!["shop/web → shop/cache:6379".to_string()], 4)
    );

    // Drill-down: the connections of one workload.
    let of_db = Query {
        selection: Selection {
            node: Some(NodeKey::new(NodeKind::Workload, "shop", "db")),
            ..Default::default()
        },
        ..Query::default()
    };
    assert_eq!(listed(&of_db), ["shop/web → shop/db:5432"]);
    // A namespace keeps its connections with the rest of the cluster.
    let ops = Selection {
        namespaces: vec!["ops".into()],
        node: None,
    };
    let in_ops = Query {
        selection: ops.clone(),
        ..Query::default()
    };
    assert_eq!(listed(&in_ops), ["ops/prom → shop/web:9090"]);
    let workloads = s.workloads.query(&Query {
        selection: ops,
        ..Query::default()
    });
    assert_eq!(
        workloads.rows.iter().map(|w| w.node.to_string()).collect::<Vec<_>>(),
        ["ops/prom"]
    );

    // As the UI receives it.
    let q: Query<WorkloadColumn> = serde_json::from_str(
        r#"{"sort": "drop-pct", "limit": 2, "selection": {"namespaces": ["shop", "kube-system"]}}"#,
    )
    .unwrap();
    let top = s.workloads.query(&q);
    let rows: Vec<_> = top.rows.iter().map(|w| (w.node.to_string(), w.drop_pct)).collect();
    assert_eq!(rows, [("shop/cache".to_string(), 50.0), ("shop/web".to_string(), 10.0)]);
    assert_eq!((top.matched, top.capacity, top.evicted), (4, 2_000, 0));
    let by_name: Query<WorkloadColumn> = serde_json::from_str(r#"{"sort": "name", "order": "ascending"}"#).unwrap();
    let rows = s.workloads.query(&by_name).rows;
    assert_eq!(
        rows.iter().map(|w| w.node.name.as_str()).collect::<Vec<_>>(),
        ["cache", "db", "frontend", "prom", "web"]
    );
    assert!(serde_json::from_str::<Query<WorkloadColumn>>(r#"{"sort": "colour"}"#).is_err());
}

fn response(item: ResponseTypes, node: &str, secs: Option<u64>) -> GetFlowsResponse {
    GetFlowsResponse {
        response_types: Some(item),
        node_name: node.into(),
        time: secs.map(|s| lumen_proto::prost_types::Timestamp {
            seconds: (T0 + s) as i64,
            nanos: 0,
        }),
    }
}

fn lost(source: LostEventSource, n: u64) -> LostEvent {
    LostEvent {
        source: source as i32,
        num_events_lost: n,
        ..Default::default()
    }
}

#[test]
fn node_states_and_lost_events_are_shown_never_dropped() {
    let mut model = Model::new(Default::default());
    let status = |state: NodeState, nodes: &[&str], message: &str| {
        ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names: nodes.iter().map(|n| n.to_string()).collect(),
            message: message.into(),
        })
    };
    let flow = tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432)
        .node("node-a", lumen_proto::flow::TrafficDirection::Egress)
        .at(2)
        .into_flow();
    let mut unknown = lost(LostEventSource::UnknownLostEventSource, 1);
    unknown.source = 42;
    for r in [
        response(status(NodeState::NodeConnected, &["node-a", "node-b"], ""), "", Some(1)),
        response(ResponseTypes::Flow(flow), "node-a", Some(2)),
        response(
            status(NodeState::NodeUnavailable, &["node-b"], "connection refused"),
            "",
            Some(3),
        ),
        response(
            ResponseTypes::LostEvents(lost(LostEventSource::PerfEventRingBuffer, 100)),
            "node-a",
            Some(4),
        ),
        response(
            ResponseTypes::LostEvents(lost(LostEventSource::HubbleRingBuffer, 5)),
            "",
            Some(4),
        ),
        // No time: the newest seen.
        response(ResponseTypes::LostEvents(unknown), "", None),
    ] {
        model.ingest_response(&r);
    }
    model.lost_events(&lost(LostEventSource::HubbleRingBuffer, 2), "node-b", at(5));
    model.node_status(
        &NodeStatusEvent {
            state_change: NodeState::NodeGone as i32,
            node_names: vec!["node-c".into()],
            message: String::new(),
        },
        at(5),
    );
    let s = snap(&model, 10);
    let nodes: Vec<_> = s
        .nodes
        .rows
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.state,
                n.message.as_str(),
                n.state_since_ms,
                n.flows,
                n.lost_events,
                n.last_seen_ms,
            )
        })
        .collect();
    let ms = |s: u64| Some((T0 + s) * 1000);
    assert_eq!(
        nodes,
        [
            ("node-a", "NODE_CONNECTED", "", ms(1), 1, 100, ms(2)),
            ("node-b", "NODE_UNAVAILABLE", "connection refused", ms(3), 0, 2, None),
            ("node-c", "NODE_GONE", "", ms(5), 0, 0, None),
        ]
    );
    let loss = |source, events, events_per_sec, at| LossRow {
        source,
        events,
        events_per_sec,
        last_seen_ms: ms(at),
    };
    assert_eq!(
        s.losses,
        [
            loss("UNKNOWN_LOST_EVENT_SOURCE", 1, 0.1, 4),
            loss("PERF_EVENT_RING_BUFFER", 100, 10.0, 4),
            loss("HUBBLE_RING_BUFFER", 7, 0.7, 5),
        ]
    );
    assert_eq!((s.totals.lost_events, s.totals.flows), (108, 1));
    assert_eq!(model.latest(), Some(at(5)));
}

#[test]
fn snapshots_serialise_with_the_names_consumers_read() {
    let s = snap(&busy_shop(), 10);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["unit"], "workload");
    assert_eq!(v["windows"], serde_json::json!({"short": 10, "long": 60}));
    let c = &v["connections"]["rows"][0];
    assert_eq!(
        c["source"],
        serde_json::json!({"kind": "workload", "namespace": "ops", "name": "prom"})
    );
    assert_eq!((c["protocol"].as_str(), c["port"].as_u64()), (Some("TCP"), Some(9090)));
    assert_eq!(v["edges"]["rows"][2]["health"], "some-drops");
    assert_eq!(v["drops"]["by_reason"]["rows"][0]["key"], "POLICY_DENIED");
    assert_eq!(
        v["connections"]["rows"][2]["drop_reasons"][0],
        serde_json::json!({"key": "POLICY_DENIED", "count": 5})
    );
    assert_eq!(v["totals"]["history"].as_array().map(Vec::len), Some(60));
    for p in [
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Sctp,
        Protocol::IcmpV4,
        Protocol::IcmpV6,
        Protocol::Vrrp,
        Protocol::Igmp,
        Protocol::Unknown,
    ] {
        assert_eq!(serde_json::to_value(p).unwrap(), p.name());
    }
}

/// A packet the source's node forwarded and the destination's node dropped
/// is reported twice; the path's drop percentage and health count it as one
/// failed attempt, while rates still count every report.
#[test]
fn drops_at_the_destination_are_failed_attempts_of_what_the_source_sent() {
    let mut model = Model::new(Default::default());
    let to = |dst: Option<Endpoint>, port, at| tcp(web(1), "10.0.1.5", 40000, dst, "10.0.2.7", port).at(at);
    let cache = || Some(pod("shop", "cache-0", 1003));
    let outside = |at| {
        tcp(
            Some(reserved(2, "world")),
            "203.0.113.9",
            40000,
            cache(),
            "10.0.2.8",
            6379,
        )
        .at(at)
    };
    for t in 1..5 {
        // Denied at the destination: forwarded where it left, dropped where it arrived.
        feed(
            &mut model,
            [
                to(db(), 5432, t).node("node-a", TrafficDirection::Egress),
                to(db(), 5432, t)
                    .node("node-b", TrafficDirection::Ingress)
                    .dropped(DropReason::PolicyDenied),
            ],
        );
        // Half the attempts to the cache dropped at its node.
        let arrived = to(cache(), 6379, t).node("node-c", TrafficDirection::Ingress);
        feed(
            &mut model,
            [
                to(cache(), 6379, t).node("node-a", TrafficDirection::Egress),
                if t % 2 == 0 {
                    arrived.dropped(DropReason::PolicyDenied)
                } else {
                    arrived
                },
            ],
        );
        // From outside the cluster: only the destination's node reports.
        feed(
            &mut model,
            [if t == 1 {
                outside(t)
                    .node("node-c", TrafficDirection::Ingress)
                    .dropped(DropReason::PolicyDenied)
            } else {
                outside(t).node("node-c", TrafficDirection::Ingress)
            }],
        );
    }
    // Denied at the source: never reaches the destination.
    feed(
        &mut model,
        [to(db(), 3306, 4)
            .node("node-a", TrafficDirection::Egress)
            .dropped(DropReason::PolicyDenied)],
    );
    let s = snap(&model, 5);
    let db_edge = edge(&s, "shop/db");
    assert_eq!((db_edge.health, db_edge.drop_pct), (Health::AllDropped, 100.0));
    // Every report still counts in the rates and totals: 9 to db, 5 dropped.
    assert_eq!((db_edge.flows, db_edge.dropped), (9, 5));
    assert_eq!(db_edge.flows_per_sec, 0.9);
    let pct = |source: &str, destination: &str, port| conn(&s.connections, source, destination, port).drop_pct;
    assert_eq!(pct("shop/web", "shop/db", 5432), 100.0);
    assert_eq!(pct("shop/web", "shop/db", 3306), 100.0);
    assert_eq!(pct("shop/web", "shop/cache", 6379), 50.0);
    assert_eq!(pct("203.0.113.9 (reserved:world)", "shop/cache", 6379), 25.0);
    let cache_edges: Vec<(String, Health, f64)> = s
        .edges
        .rows
        .iter()
        .filter(|e| e.destination.to_string() == "shop/cache")
        .map(|e| (e.source.to_string(), e.health, e.drop_pct))
        .collect();
    assert_eq!(cache_edges.len(), 2);
    assert!(cache_edges.contains(&("shop/web".into(), Health::SomeDrops, 50.0)));
    assert!(cache_edges.contains(&("203.0.113.9 (reserved:world)".into(), Health::SomeDrops, 25.0)));
}

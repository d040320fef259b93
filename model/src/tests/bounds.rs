//! Capacities: what is evicted, what is lumped, and that nothing grows.

use std::fmt::Write;

use lumen_proto::flow::{DropReason, TrafficDirection};

use super::*;
use crate::{Config, Counted, PolicyRef, Port, Protocol};

#[test]
fn a_full_table_evicts_the_least_recently_seen_entry_and_counts_it() {
    let mut model = Model::new(Config {
        connections: 3,
        workloads: 2,
        drops: 1,
        ..Default::default()
    });
    let to = |dst: Option<Endpoint>, port, at| tcp(web(1), "10.0.1.5", 40000, dst, "10.0.2.7", port).at(at);
    let cache = || Some(pod("shop", "cache-0", 1003));
    feed(
        &mut model,
        [
            to(db(), 1, 1),
            to(db(), 2, 2),
            to(db(), 3, 3),
            to(db(), 1, 4),
            to(db(), 4, 5),
        ],
    );
    let s = snap(&model, 6);
    let ports: Vec<_> = s.connections.rows.iter().map(|c| c.port).collect();
    assert_eq!(
        (ports, s.connections.evicted, s.connections.capacity),
        (vec![1, 3, 4], 1, 3)
    );
    assert_eq!((s.workloads.rows.len(), s.workloads.evicted), (2, 0));

    // A third workload pushes out db, seen longest ago (web was just seen).
    feed(&mut model, [to(cache(), 6379, 6).dropped(DropReason::PolicyDenied)]);
    // An evicted connection comes back from zero.
    feed(&mut model, [to(db(), 2, 7).dropped(DropReason::PolicyDenied)]);
    let s = snap(&model, 8);
    assert_eq!(
        names(&s.connections),
        [
            "shop/web → shop/cache:6379",
            "shop/web → shop/db:2",
            "shop/web → shop/db:4"
        ]
    );
    assert_eq!(
        (
            s.connections.evicted,
            conn(&s.connections, "shop/web", "shop/db", 2).flows
        ),
        (3, 1)
    );
    assert_eq!(s.edges.evicted, 3);
    let workloads: Vec<_> = s.workloads.rows.iter().map(|w| w.node.to_string()).collect();
    assert_eq!(
        (workloads, s.workloads.evicted),
        (vec!["shop/db".to_string(), "shop/web".to_string()], 2)
    );
    let destinations: Vec<_> = s.drops.by_destination.rows.iter().map(|d| d.key.to_string()).collect();
    assert_eq!(
        (destinations, s.drops.by_destination.evicted),
        (vec!["shop/db".to_string()], 1)
    );
    // The totals never forget.
    assert_eq!((s.totals.flows, s.totals.dropped), (7, 2));
}

#[test]
fn lists_inside_an_entry_are_capped_with_a_count_of_the_rest() {
    let mut model = Model::new(Config {
        pods_per_workload: 2,
        reasons_per_connection: 1,
        policies_per_connection: 1,
        ports_per_edge: 2,
        ..Default::default()
    });
    let deny = policy("CiliumNetworkPolicy", "shop", "deny-db");
    let baseline = policy("CiliumClusterwideNetworkPolicy", "", "baseline");
    let from = |n, port| tcp(web(n), "10.0.1.5", 40000, db(), "10.0.2.7", port);
    feed(
        &mut model,
        [
            from(1, 5432)
                .dropped(DropReason::PolicyDenied)
                .denied_by(vec![deny.clone()], vec![]),
            from(2, 5432)
                .dropped(DropReason::CtMissingTcpAckFlag)
                .denied_by(vec![baseline], vec![]),
            from(3, 5432).dropped(DropReason::CtMissingTcpAckFlag),
            from(1, 5432),
            from(1, 5432),
        ],
    );
    feed(&mut model, (0..3).map(|_| from(1, 80)));
    feed(&mut model, (0..2).map(|_| from(1, 443)));
    feed(&mut model, [from(1, 8080).udp()]);
    let s = snap(&model, 1);

    let web = workload(&s.workloads, "shop/web");
    assert_eq!(
        (web.pods.clone(), web.pods_evicted),
        (vec!["web-1".to_string(), "web-3".to_string()], 2)
    );
    let c = conn(&s.connections, "shop/web", "shop/db", 5432);
    let reason = Counted {
        key: "POLICY_DENIED".into(),
        count: 1,
    };
    assert_eq!((c.drop_reasons.clone(), c.drop_reasons_other), (vec![reason], 2));
    let policy = Counted {
        key: PolicyRef::of(&deny),
        count: 1,
    };
    assert_eq!((c.policies.clone(), c.policies_other), (vec![policy], 1));

    let edge = &s.edges.rows[0];
    let tcp = |port| Port {
        port,
        protocol: Protocol::Tcp,
    };
    // The two ports with the most flows, in port order.
    assert_eq!((edge.ports.clone(), edge.ports_other), (vec![tcp(80), tcp(5432)], 2));
    assert_eq!(edge.flows, 11);
}

#[test]
fn a_million_distinct_connections_never_grow_the_tables_past_their_capacities() {
    let config = Config::default();
    let mut model = Model::new(config.clone());
    // One flow, changed in place: building a million is slower than folding them.
    let mut flow = tcp(None, "", 40000, None, "10.255.0.1", 80)
        .node("", TrafficDirection::Egress)
        .into_flow();
    for i in 0..1_000_000u32 {
        let ip = flow.ip.as_mut().unwrap();
        ip.source.clear();
        write!(ip.source, "10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255).unwrap();
        flow.node_name.clear();
        write!(flow.node_name, "node-{}", i % 1500).unwrap();
        let time = flow.time.as_mut().unwrap();
        (time.seconds, time.nanos) = ((T0 + u64::from(i / 1000)) as i64, (i % 1000 * 1_000_000) as i32);
        model.ingest(&flow);
        if i % 250_000 == 249_999 {
            let s = model.snapshot(at_ms(u64::from(i)), Windows::default());
            assert_eq!(s.connections.rows.len(), config.connections.min(i as usize + 1));
            assert_eq!(s.edges.rows.len(), s.connections.rows.len());
            assert!(s.workloads.rows.len() <= config.workloads);
            assert!(s.nodes.rows.len() <= config.nodes);
            assert!(s.endpoint_nodes.entries <= config.endpoint_nodes);
        }
    }
    let s = snap(&model, 1000);
    assert_eq!((s.connections.rows.len(), s.connections.evicted), (5_000, 995_000));
    // Each source once; the one destination is seen every flow and stays.
    assert_eq!(
        (s.workloads.rows.len(), s.workloads.evicted),
        (2_000, 1_000_001 - 2_000)
    );
    // 1,500 node names in turn through 1,000 places: every one a miss.
    assert_eq!((s.nodes.rows.len(), s.nodes.evicted), (1_000, 999_000));
    let e = s.endpoint_nodes;
    assert_eq!((e.entries, e.capacity, e.evicted), (10_000, 10_000, 990_000));
    assert_eq!(s.totals.flows, 1_000_000);
    // The newest connections are the ones kept.
    assert_eq!(conn(&s.connections, "10.15.66.63", "10.255.0.1", 80).flows, 1);
    assert_eq!(s.totals.flows_per_sec, 1000.0);
}

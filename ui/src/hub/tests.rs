use std::time::UNIX_EPOCH;

use lumen_model::{Health, Windows};
use lumen_proto::flow::Verdict;
use lumen_proto::relay::NodeState;

use super::*;
use crate::fixtures::{self, lost, node_status, T0};
use crate::map::{self, Count};
use crate::query::ViewQuery;

fn key(filter: &str) -> ViewKey {
    ViewKey {
        filter: filter.into(),
        unit: Unit::Workload,
        last: None,
    }
}

fn hub_with_traffic() -> Hub {
    let mut hub = Hub::new(100);
    for r in fixtures::traffic() {
        hub.respond(r);
    }
    hub
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 as u64 + 3600)
}

/// (source, target, flows, forwarded, dropped, health, policies) of an edge.
type EdgeFigures = (String, String, u64, u64, u64, Health, Vec<Count>);

fn edges(hub: &mut Hub, filter: &str) -> Vec<EdgeFigures> {
    let view = hub.view(&key(filter)).unwrap();
    let map = map::build(view, &ViewQuery::default(), now());
    map.edges
        .into_iter()
        .map(|e| {
            (
                e.source,
                e.target,
                e.flows,
                e.forwarded,
                e.dropped,
                e.health,
                e.policies,
            )
        })
        .collect()
}

#[test]
fn a_view_folds_the_flows_of_the_ring_then_the_new_ones() {
    let mut hub = hub_with_traffic();
    let policy = |n| {
        vec![Count {
            name: "CiliumNetworkPolicy data/db-in".into(),
            count: n,
        }]
    };
    assert_eq!(
        edges(&mut hub, ""),
        vec![
            (
                "workload|shop|cart".into(),
                "workload|data|db".into(),
                1,
                1,
                0,
                Health::Forwarded,
                vec![]
            ),
            (
                "workload|shop|web".into(),
                "workload|data|db".into(),
                4,
                2,
                2,
                // Each SYN forwarded where it left and dropped where it
                // arrived: every attempt failed.
                Health::AllDropped,
                policy(2)
            ),
            (
                "workload|shop|web".into(),
                "workload|shop|cart".into(),
                3,
                3,
                0,
                Health::Forwarded,
                vec![]
            ),
        ]
    );
    hub.respond(fixtures::syn(9, &fixtures::WEB, &fixtures::DB, Verdict::Dropped, "n3"));
    assert_eq!(
        edges(&mut hub, "")[1],
        (
            "workload|shop|web".into(),
            "workload|data|db".into(),
            5,
            2,
            3,
            Health::AllDropped,
            policy(3)
        )
    );
}

#[test]
fn a_filtered_view_counts_only_what_its_filter_passes() {
    let mut hub = hub_with_traffic();
    assert_eq!(
        edges(&mut hub, "--verdict DROPPED"),
        vec![(
            "workload|shop|web".into(),
            "workload|data|db".into(),
            2,
            0,
            2,
            Health::AllDropped,
            vec![Count {
                name: "CiliumNetworkPolicy data/db-in".into(),
                count: 2
            }]
        )]
    );
    assert_eq!(
        edges(&mut hub, "--not --to-namespace data").len(),
        1,
        "only web → cart is left"
    );
    assert_eq!(hub.views(), 2);
}

#[test]
fn nodes_carry_the_labels_and_identities_the_flows_told() {
    let mut hub = hub_with_traffic();
    let view = hub.view(&key("")).unwrap();
    let map = map::build(view, &ViewQuery::default(), now());
    let web = map.nodes.iter().find(|n| n.name == "web").unwrap();
    assert_eq!(
        (web.kind, web.namespace.as_str(), web.label.as_str()),
        ("workload", "shop", "shop/web")
    );
    assert_eq!(web.labels, ["k8s:app=web", "k8s:note=<script>x</script>"]);
    assert_eq!(web.identities, [1001]);
    assert_eq!(web.pods, ["web-0"]);
    assert_eq!((web.flows, web.flows_out, web.flows_in, web.dropped), (7, 7, 0, 2));
    let db = map.nodes.iter().find(|n| n.name == "db").unwrap();
    assert_eq!((db.flows, db.flows_in, db.dropped), (5, 5, 2));
    assert_eq!(map.namespaces, ["data", "shop"]);
    assert_eq!((map.totals.flows, map.totals.dropped), (8, 2));
}

#[test]
fn the_namespace_picker_keeps_the_peers_of_the_chosen_namespaces() {
    let mut hub = hub_with_traffic();
    let view = hub.view(&key("")).unwrap();
    let only_data = ViewQuery {
        namespaces: vec!["data".into()],
        ..ViewQuery::default()
    };
    let map = map::build(view, &only_data, now());
    let ends: Vec<(&str, &str)> = map
        .edges
        .iter()
        .map(|e| (e.source.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        ends,
        [
            ("workload|shop|cart", "workload|data|db"),
            ("workload|shop|web", "workload|data|db")
        ]
    );
    let nodes: Vec<&str> = map.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(nodes, ["workload|data|db", "workload|shop|cart", "workload|shop|web"]);
    assert_eq!(map.namespaces, ["data", "shop"], "the picker lists every namespace");
}

#[test]
fn a_bad_filter_is_refused_with_the_reason() {
    let mut hub = hub_with_traffic();
    let err = |f: &str, hub: &mut Hub| hub.view(&key(f)).err().unwrap().to_string();
    assert_eq!(
        err("--verdict NEVER", &mut hub),
        "invalid filter: invalid value for --verdict: \"NEVER\" is not a verdict: use one of FORWARDED, DROPPED, AUDIT, \
         REDIRECTED, ERROR, TRACED, TRANSLATED"
    );
    assert_eq!(
        err("--from-ip 10.0.0.0/33", &mut hub),
        "invalid filter: invalid CIDR \"10.0.0.0/33\" in source_ip: prefix length out of range"
    );
    assert_eq!(err("--pod 'web", &mut hub), "invalid filter: unclosed '");
    assert_eq!(hub.views(), 0, "no view is kept for a bad filter");
}

#[test]
fn views_in_use_are_kept_and_idle_ones_make_room() {
    let mut hub = Hub::new(10).idle_after(Duration::ZERO);
    for i in 0..MAX_VIEWS {
        let k = key(&format!("--to-port {}", i + 1));
        hub.view(&k).unwrap();
        hub.use_view(&k, true);
    }
    assert_eq!(
        hub.view(&key("--to-port 999")).err().unwrap().to_string(),
        "invalid filter: the server already keeps 16 views in use: try again in a minute"
    );
    hub.use_view(&key("--to-port 3"), false);
    hub.view(&key("--to-port 999")).unwrap();
    assert_eq!(hub.views(), MAX_VIEWS);
    assert!(hub.peek(&key("--to-port 3")).is_none(), "the idle view made room");
}

#[test]
fn the_ring_keeps_the_newest_responses_by_number() {
    let mut hub = Hub::new(3);
    for r in fixtures::traffic() {
        hub.respond(r);
    }
    assert_eq!(hub.next_seq(), 8);
    let kept: Vec<u64> = hub.since(0).map(|s| s.seq).collect();
    assert_eq!(kept, [5, 6, 7]);
    let from_six: Vec<u64> = hub.since(6).map(|s| s.seq).collect();
    assert_eq!(from_six, [6, 7]);
    assert_eq!(hub.since(8).count(), 0);
    assert!(hub.get(4).is_none());
    assert_eq!(hub.get(7).unwrap().seq, 7);
    assert_eq!(
        (hub.health().ring, hub.health().ring_capacity, hub.health().received),
        (3, 3, 8)
    );
}

#[test]
fn health_tells_the_link_unavailable_nodes_and_lost_events() {
    let mut hub = Hub::new(10);
    assert_eq!(hub.health().link, LinkState::Connecting);
    let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    hub.follow(FollowEvent::Connected, t);
    assert_eq!(
        hub.health().link,
        LinkState::Connected {
            since_ms: 1_700_000_000_123
        }
    );
    hub.follow(
        FollowEvent::Disconnected {
            reason: "unavailable: relay gone".into(),
            retry_in: Duration::from_millis(250),
        },
        t + Duration::from_secs(1),
    );
    hub.follow(
        FollowEvent::Disconnected {
            reason: "unavailable: still gone".into(),
            retry_in: Duration::from_millis(500),
        },
        t + Duration::from_secs(2),
    );
    assert_eq!(
        hub.health().link,
        LinkState::Reconnecting {
            reason: "unavailable: still gone".into(),
            retry_in_ms: 500,
            since_ms: 1_700_000_001_123
        },
        "reconnecting since the first failure"
    );
    hub.respond(node_status(NodeState::NodeUnavailable, &["n3"]));
    hub.respond(node_status(NodeState::NodeConnected, &["n1", "n2"]));
    hub.respond(lost(7));
    hub.respond(lost(5));
    hub.status(Ok(ServerInfo {
        kind: "relay",
        version: "1".into(),
        connected_nodes: 2,
        unavailable_nodes: vec!["n4".into(), "n3".into()],
        nodes: vec![],
    }));
    let health = hub.health();
    assert_eq!(health.unavailable_nodes, ["n3", "n4"]);
    assert_eq!(health.lost_events, 12);
    assert_eq!(health.status_error, None);
    hub.status(Err("connection refused".into()));
    assert_eq!(hub.health().status_error.as_deref(), Some("connection refused"));
    hub.respond(node_status(NodeState::NodeConnected, &["n3"]));
    assert_eq!(
        hub.health().unavailable_nodes,
        ["n3", "n4"],
        "the last poll still says n3"
    );
    hub.status(Ok(ServerInfo {
        kind: "relay",
        version: "1".into(),
        connected_nodes: 3,
        unavailable_nodes: vec![],
        nodes: vec![],
    }));
    assert_eq!(hub.health().unavailable_nodes, Vec::<String>::new());
    let view = hub.view(&key("")).unwrap();
    let snapshot = view.model.snapshot(t, Windows::default());
    assert_eq!(snapshot.totals.lost_events, 12, "a new view replays the losses too");
}

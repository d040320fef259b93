//! A real three-node cluster on the testbed: each node its own observer
//! (own pins, own gRPC address on the fabric), pods talking across nodes,
//! and the relay finding the observers through the peer service. Needs
//! root: run `scripts/test.sh`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lumen_proto::flow::{TrafficDirection, Verdict};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use lumen_proto::relay::NodeState;
use support::*;

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn the_relay_serves_the_whole_cluster_as_nodes_come_and_go() {
    let mut c = Cluster::new();
    for n in ["n1", "n2", "n3"] {
        c.start(n);
    }
    let relay = c.relay();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = connect(relay.address).await;
        // The nodes file lists n1 and n2 only.
        connected_nodes(&mut client, 2).await;
        let mut follow = client
            .get_flows(GetFlowsRequest {
                follow: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let (n1, n2, n3) = (c.name("n1"), c.name("n2"), c.name("n3"));
        let first = until(&mut follow, "node status", |r| {
            matches!(r.response_types, Some(ResponseTypes::NodeStatus(_)))
        })
        .await;
        let Some(ResponseTypes::NodeStatus(s)) = first.response_types else {
            unreachable!()
        };
        assert_eq!(
            (s.state_change, s.node_names),
            (NodeState::NodeConnected as i32, vec![n1.clone(), n2.clone()])
        );

        // a (n1) -> b (n2): seen leaving n1 and arriving at n2, the same
        // identities on both nodes; b's policy drops port 8080.
        assert!(c.request("a", "b", 80));
        assert!(!c.request("a", "b", 8080));
        let out = until(&mut follow, "a's egress", |r| {
            flow(r).is_some_and(|f| is(f, "a", "b", 80, TrafficDirection::Egress))
        })
        .await;
        let inn = until(&mut follow, "b's ingress", |r| {
            flow(r).is_some_and(|f| is(f, "a", "b", 80, TrafficDirection::Ingress))
        })
        .await;
        let dropped = until(&mut follow, "the drop", |r| {
            flow(r).is_some_and(|f| is(f, "a", "b", 8080, TrafficDirection::Ingress))
        })
        .await;
        let ids = |r: &GetFlowsResponse| {
            let f = flow(r).unwrap();
            (
                f.source.as_ref().unwrap().identity,
                f.destination.as_ref().unwrap().identity,
            )
        };
        assert_eq!(
            (out.node_name.as_str(), inn.node_name.as_str()),
            (n1.as_str(), n2.as_str())
        );
        assert_eq!(ids(&out), (identity("a"), identity("b")));
        assert_eq!(ids(&inn), (identity("a"), identity("b")));
        assert_eq!(flow(&dropped).unwrap().verdict, Verdict::Dropped as i32);
        assert_eq!(flow(&inn).unwrap().ingress_allowed_by[0].name, "b-in");

        // n3 joins the nodes file: the relay picks it up and its flows arrive.
        c.write_nodes(&["n1", "n2", "n3"]);
        until(&mut follow, "n3 connected", |r| {
            status(r, NodeState::NodeConnected, &n3)
        })
        .await;
        assert!(c.request("c", "a", 80));
        let from_c = until(&mut follow, "c's egress", |r| {
            flow(r).is_some_and(|f| is(f, "c", "a", 80, TrafficDirection::Egress))
        })
        .await;
        assert_eq!(from_c.node_name, n3);

        // From node n2 itself (its fabric address, in the nodes file) to a
        // on n1: n1 knows the source as reserved:remote-node.
        let n2_address = node(&c.tb, "n2").address.unwrap().ipv4;
        let a80 = SocketAddr::new(c.pods["a"].ipv4.into(), 80);
        lumen_testbed::in_netns(&node(&c.tb, "n2").netns, || {
            std::net::TcpStream::connect_timeout(&a80, Duration::from_millis(700))
        })
        .unwrap()
        .expect("a accepts the node's connection");
        let from_node = until(&mut follow, "the node's connection", |r| {
            flow(r).is_some_and(|f| {
                f.ip.as_ref().is_some_and(|ip| ip.source == n2_address.to_string())
                    && f.traffic_direction == TrafficDirection::Ingress as i32
            })
        })
        .await;
        let source = flow(&from_node).unwrap().source.clone().unwrap();
        assert_eq!(from_node.node_name, n1);
        assert_eq!(
            (source.identity, source.labels),
            (6, vec!["reserved:remote-node".to_string()])
        );

        // n2's observer stops: the stream says so and goes on; n2 still
        // enforces (its datapath stays pinned); back, its flows resume.
        tokio::task::block_in_place(|| c.stop("n2"));
        until(&mut follow, "n2 unavailable", |r| {
            status(r, NodeState::NodeUnavailable, &n2)
        })
        .await;
        assert!(c.request("a", "c", 80));
        until(&mut follow, "n1's flows", |r| {
            flow(r).is_some_and(|f| is(f, "a", "c", 80, TrafficDirection::Egress))
        })
        .await;
        assert!(!c.request("a", "b", 8080), "n2 enforces without its observer");
        tokio::task::block_in_place(|| c.start("n2"));
        until(&mut follow, "n2 back", |r| status(r, NodeState::NodeConnected, &n2)).await;
        assert!(c.request("a", "b", 80));
        let back = until(&mut follow, "n2's flows", |r| {
            flow(r).is_some_and(|f| is(f, "a", "b", 80, TrafficDirection::Ingress))
        })
        .await;
        assert_eq!(back.node_name, n2);

        // A query of what is stored comes back in time order across nodes.
        let mut all = client.get_flows(GetFlowsRequest::default()).await.unwrap().into_inner();
        let mut times = Vec::new();
        let mut nodes = std::collections::BTreeSet::new();
        while let Some(r) = all.message().await.unwrap() {
            if let Some(t) = flow(&r).and_then(|f| f.time) {
                times.push((t.seconds, t.nanos));
                nodes.insert(r.node_name.clone());
            }
        }
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order across nodes");
        assert_eq!(nodes.into_iter().collect::<Vec<_>>(), [n1, n2, n3]);
    });
}

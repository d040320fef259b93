//! The relay against real observer gRPC servers (the observer's own server
//! code over TCP, its flow store fed with datapath records directly: no
//! kernel needed), through a real socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lumen_observer::hub::Hub;
use lumen_probes::abi;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNodesRequest, ServerStatusRequest,
};
use lumen_proto::relay::NodeState;
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::Streaming;
use lumen_relay::{RelayConfig, RelayHandle};
use tokio::sync::watch;

/// One node: a flow store and the observer's gRPC server on 127.0.0.1.
struct Node {
    hub: Arc<Hub>,
    address: SocketAddr,
    stop: watch::Sender<bool>,
    dir: std::path::PathBuf,
}

async fn start_node(name: &str, address: SocketAddr) -> Node {
    let hub = Hub::new(name, 1000);
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lumen-relay-test-{}-{n}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unix = lumen_observer::server::bind_unix(&dir.join("observer.sock")).unwrap();
    let tcp = lumen_observer::server::bind_tcp(address).await.unwrap();
    let address = tcp.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let peers = lumen_observer::peer::Peers::new(vec![]);
    tokio::spawn(lumen_observer::server::serve(hub.clone(), peers, unix, Some(tcp), rx));
    Node {
        hub,
        address,
        stop,
        dir,
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A flow record at `ms` milliseconds after `base`, to port `port`.
fn flow(base: u64, ms: u64, port: u16) -> abi::Event {
    let mut daddr = [0u8; 16];
    daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    abi::Event {
        timestamp_ns: base + ms * 1_000_000,
        family: 4,
        proto: 6,
        dport: port,
        daddr,
        direction: abi::DIR_INGRESS,
        verdict: abi::VERDICT_FORWARDED,
        ..Default::default()
    }
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn relay(peers: &[SocketAddr]) -> RelayHandle {
    relay_holding(peers, 10_000)
}

/// A relay whose sort buffer holds `capacity` responses.
fn relay_holding(peers: &[SocketAddr], capacity: usize) -> RelayHandle {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    RelayHandle::spawn(RelayConfig {
        listen_address: listen,
        peers: peers.iter().map(ToString::to_string).collect(),
        peer_service: None,
        sort_buffer_len_max: capacity,
        sort_buffer_drain_timeout: Duration::from_millis(100),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        dial_timeout: Duration::from_millis(500),
        export: Default::default(),
        otlp: Default::default(),
        metrics_listen_address: None,
        tls: Default::default(),
    })
}

async fn client(relay: &RelayHandle) -> ObserverClient<Channel> {
    for _ in 0..100 {
        if let Ok(c) = ObserverClient::connect(format!("http://{}", relay.address)).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("relay did not start on {}", relay.address)
}

/// Waits until the relay reports `n` connected nodes.
async fn connected(c: &mut ObserverClient<Channel>, n: u32) {
    for _ in 0..200 {
        let s = c.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
        if s.num_connected_nodes == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the relay never had {n} connected nodes");
}

/// What a response is, compactly: `node:port` for a flow, `STATE[nodes]` for a node status.
fn what(r: &GetFlowsResponse) -> String {
    match r.response_types.as_ref().unwrap() {
        ResponseTypes::Flow(f) => {
            let port = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
                Some(lumen_proto::flow::layer4::Protocol::Tcp(t)) => t.destination_port,
                _ => 0,
            };
            format!("{}:{port}", r.node_name)
        }
        ResponseTypes::NodeStatus(s) => format!(
            "{}{:?}",
            NodeState::try_from(s.state_change).unwrap().as_str_name(),
            s.node_names
        ),
        ResponseTypes::LostEvents(l) => format!("LOST {}", l.num_events_lost),
    }
}

async fn next(s: &mut Streaming<GetFlowsResponse>) -> String {
    let r = tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .expect("a response within 5 s")
        .unwrap()
        .expect("the stream goes on");
    what(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_nodes_in_time_order_and_answers_for_the_cluster() {
    let nodes = [
        start_node("n1", "127.0.0.1:0".parse().unwrap()).await,
        start_node("n2", "127.0.0.1:0".parse().unwrap()).await,
        start_node("n3", "127.0.0.1:0".parse().unwrap()).await,
    ];
    let base = wall_ns() - 10_000_000_000;
    // Interleaved in time across nodes: port = the global order.
    nodes[0]
        .hub
        .push([flow(base, 1, 1), flow(base, 4, 4), flow(base, 7, 7)]);
    nodes[1].hub.push([flow(base, 2, 2), flow(base, 5, 5)]);
    nodes[2]
        .hub
        .push([flow(base, 3, 3), flow(base, 6, 6), flow(base, 8, 8)]);
    let relay = relay(&nodes.iter().map(|n| n.address).collect::<Vec<_>>());
    let mut c = client(&relay).await;
    connected(&mut c, 3).await;

    let all = |number, first| GetFlowsRequest {
        number,
        first,
        ..Default::default()
    };
    let collect = |req| {
        let mut c = c.clone();
        async move {
            let mut s = c.get_flows(req).await.unwrap().into_inner();
            let mut out = Vec::new();
            while let Some(r) = s.message().await.unwrap() {
                out.push(what(&r));
            }
            out
        }
    };
    assert_eq!(
        collect(all(0, false)).await,
        [
            "NODE_CONNECTED[\"n1\", \"n2\", \"n3\"]",
            "n1:1",
            "n2:2",
            "n3:3",
            "n1:4",
            "n2:5",
            "n3:6",
            "n1:7",
            "n3:8"
        ]
    );
    assert_eq!(
        collect(all(3, false)).await,
        ["NODE_CONNECTED[\"n1\", \"n2\", \"n3\"]", "n3:6", "n1:7", "n3:8"]
    );
    assert_eq!(
        collect(all(2, true)).await,
        ["NODE_CONNECTED[\"n1\", \"n2\", \"n3\"]", "n1:1", "n2:2"]
    );

    let s = c.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (
            s.num_flows,
            s.max_flows,
            s.seen_flows,
            s.num_connected_nodes,
            s.num_unavailable_nodes
        ),
        (8, 3000, 8, Some(3), Some(0))
    );
    let nodes_seen = c.get_nodes(GetNodesRequest {}).await.unwrap().into_inner().nodes;
    let summary: Vec<(String, i32, u64, String)> = nodes_seen
        .iter()
        .map(|n| (n.name.clone(), n.state, n.num_flows, n.address.clone()))
        .collect();
    let connected_state = NodeState::NodeConnected as i32;
    assert_eq!(
        summary,
        [
            ("n1".to_string(), connected_state, 3, nodes[0].address.to_string()),
            ("n2".to_string(), connected_state, 2, nodes[1].address.to_string()),
            ("n3".to_string(), connected_state, 3, nodes[2].address.to_string()),
        ]
    );
    // No endpoints were published on these nodes: no namespaces.
    assert!(c
        .get_namespaces(GetNamespacesRequest {})
        .await
        .unwrap()
        .into_inner()
        .namespaces
        .is_empty());
    let err = c
        .get_flows(GetFlowsRequest {
            first: true,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), lumen_proto::tonic::Code::InvalidArgument);
    // A request the nodes would refuse is refused by the relay, with their
    // reason, not turned into a stream of node errors.
    let bad_filter = GetFlowsRequest {
        follow: true,
        whitelist: vec![lumen_proto::flow::FlowFilter {
            source_ip: vec!["10.0.0.300".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = c.get_flows(bad_filter).await.unwrap_err();
    assert_eq!(err.code(), lumen_proto::tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("invalid filter: "), "{}", err.message());
    assert!(err.message().contains("10.0.0.300"), "{}", err.message());
    let bad_time = GetFlowsRequest {
        since: Some(lumen_proto::prost_types::Timestamp { seconds: 1, nanos: -1 }),
        ..Default::default()
    };
    let err = c.get_flows(bad_time).await.unwrap_err();
    assert_eq!(err.message(), "invalid since timestamp: 1s -1ns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_goes_away_and_comes_back_is_reported_and_resumes() {
    let mut n1 = start_node("n1", "127.0.0.1:0".parse().unwrap()).await;
    let n2 = start_node("n2", "127.0.0.1:0".parse().unwrap()).await;
    let relay = relay(&[n1.address, n2.address]);
    let mut c = client(&relay).await;
    connected(&mut c, 2).await;
    let mut follow = c
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut follow).await, "NODE_CONNECTED[\"n1\", \"n2\"]");
    n1.hub.push([flow(wall_ns(), 0, 10)]);
    assert_eq!(next(&mut follow).await, "n1:10");

    // n1's server goes away: the stream says so and goes on with n2.
    let address = n1.address;
    drop(n1);
    assert_eq!(next(&mut follow).await, "NODE_UNAVAILABLE[\"n1\"]");
    n2.hub.push([flow(wall_ns(), 0, 20)]);
    assert_eq!(next(&mut follow).await, "n2:20");
    let s = c.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (s.num_connected_nodes, s.unavailable_nodes.clone()),
        (Some(1), vec!["n1".to_string()])
    );

    // It comes back on the same address: reconnected, and its new flows arrive.
    n1 = start_node("n1", address).await;
    assert_eq!(next(&mut follow).await, "NODE_CONNECTED[\"n1\"]");
    n1.hub.push([flow(wall_ns(), 0, 30)]);
    assert_eq!(next(&mut follow).await, "n1:30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_slows_no_one_else() {
    let nodes = [
        start_node("n1", "127.0.0.1:0".parse().unwrap()).await,
        start_node("n2", "127.0.0.1:0".parse().unwrap()).await,
    ];
    let relay = relay(&nodes.iter().map(|n| n.address).collect::<Vec<_>>());
    let mut c = client(&relay).await;
    connected(&mut c, 2).await;
    let follow = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let _stalled = c.get_flows(follow.clone()).await.unwrap().into_inner();
    let mut reader = c.get_flows(follow).await.unwrap().into_inner();
    assert_eq!(next(&mut reader).await, "NODE_CONNECTED[\"n1\", \"n2\"]");
    // 2 × 900 flows, far more than the stalled client's buffers hold.
    let base = wall_ns();
    for (i, n) in nodes.iter().enumerate() {
        n.hub
            .push((0..900u64).map(|k| flow(base, k * 2 + i as u64, (k * 2 + i as u64) as u16)));
    }
    let mut ports = Vec::new();
    while ports.len() < 1_800 {
        let r = tokio::time::timeout(Duration::from_secs(10), reader.message())
            .await
            .expect("the reading client is served")
            .unwrap()
            .unwrap();
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            if let Some(lumen_proto::flow::layer4::Protocol::Tcp(t)) = f.l4.and_then(|l| l.protocol) {
                ports.push(t.destination_port);
            }
        }
    }
    assert_eq!(ports, (0..1_800).collect::<Vec<u32>>(), "every flow, in time order");
    let status = tokio::time::timeout(Duration::from_secs(2), c.server_status(ServerStatusRequest {}))
        .await
        .expect("the relay still answers");
    assert_eq!(status.unwrap().into_inner().seen_flows, 1_800);
}

/// The destination ports of a non-follow answer's flows, in order.
async fn ports_of(c: &mut ObserverClient<Channel>, number: u64, first: bool) -> Vec<u32> {
    let request = GetFlowsRequest {
        number,
        first,
        ..Default::default()
    };
    let mut stream = c.get_flows(request).await.unwrap().into_inner();
    let mut ports = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            if let Some(lumen_proto::flow::layer4::Protocol::Tcp(t)) = f.l4.and_then(|l| l.protocol) {
                ports.push(t.destination_port);
            }
        }
    }
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_merged_exactly_and_number_means_the_cluster_up_to_the_buffer() {
    let nodes = [
        start_node("n1", "127.0.0.1:0".parse().unwrap()).await,
        start_node("n2", "127.0.0.1:0".parse().unwrap()).await,
        start_node("n3", "127.0.0.1:0".parse().unwrap()).await,
    ];
    // 900 flows per node, interleaved: node i's k-th flow is the
    // (3k + i)-th of the cluster, its port says which.
    let base = wall_ns() - 10_000_000_000;
    for (i, n) in nodes.iter().enumerate() {
        n.hub
            .push((0..900u64).map(|k| flow(base, k * 3 + i as u64, (k * 3 + i as u64) as u16)));
    }
    // The sort buffer holds 100: "the newest N of the cluster" up to 100.
    let relay = relay_holding(&nodes.iter().map(|n| n.address).collect::<Vec<_>>(), 100);
    let mut c = client(&relay).await;
    connected(&mut c, 3).await;
    let range = |r: std::ops::Range<u32>| r.collect::<Vec<u32>>();

    assert_eq!(
        ports_of(&mut c, 0, false).await,
        range(0..2_700),
        "everything, in time order"
    );
    assert_eq!(ports_of(&mut c, u64::MAX, false).await, range(0..2_700), "--all");
    assert_eq!(
        ports_of(&mut c, 1_000, true).await,
        range(0..1_000),
        "the cluster's first 1000"
    );
    assert_eq!(
        ports_of(&mut c, 50, false).await,
        range(2_650..2_700),
        "the cluster's last 50"
    );
    // Above the buffer, as Hubble's relay: each node's last 500, merged.
    assert_eq!(ports_of(&mut c, 500, false).await, range(1_200..2_700));

    // A flow through the relay is the node's own response, unchanged.
    let first_flow = |mut c: ObserverClient<Channel>| async move {
        let request = GetFlowsRequest {
            number: 1,
            first: true,
            ..Default::default()
        };
        let mut s = c.get_flows(request).await.unwrap().into_inner();
        while let Some(r) = s.message().await.unwrap() {
            if let Some(ResponseTypes::Flow(_)) = r.response_types {
                return r;
            }
        }
        panic!("no flow")
    };
    let direct = ObserverClient::connect(format!("http://{}", nodes[0].address))
        .await
        .unwrap();
    let theirs = first_flow(direct).await;
    assert_eq!(theirs.node_name, "n1");
    assert_eq!(first_flow(c.clone()).await, theirs);
}

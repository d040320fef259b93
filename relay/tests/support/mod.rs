//! A real three-node cluster on the testbed for the relay's tests: each node
//! its own observer (own pins, own gRPC address on the fabric), one pod per
//! node, and helpers to read the relay's streams. Needs root.
#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use lumen_observer::identity::{IdentityAllocator, Labels};
use lumen_observer::testing::{self, ClusterSpec};
use lumen_proto::flow::{Flow, TrafficDirection};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetFlowsResponse, ServerStatusRequest};
use lumen_proto::relay::NodeState;
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::Streaming;
use lumen_relay::{RelayConfig, RelayHandle};
use lumen_testbed::{Node, Testbed};

pub const API_PORT: u16 = testing::API_PORT;

/// Pod `i` (a, b, c) on node `i` (n1, n2, n3), app=<pod>.
pub const PODS: [(&str, &str, Ipv4Addr); 3] = [
    ("a", "n1", Ipv4Addr::new(10, 1, 0, 1)),
    ("b", "n2", Ipv4Addr::new(10, 1, 0, 2)),
    ("c", "n3", Ipv4Addr::new(10, 1, 0, 3)),
];

pub const POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b-in}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: a}}]
      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]
";

/// The shared cluster helper, plus a relay in front of it.
pub struct Cluster(testing::Cluster);

impl Deref for Cluster {
    type Target = testing::Cluster;

    fn deref(&self) -> &testing::Cluster {
        &self.0
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut testing::Cluster {
        &mut self.0
    }
}

pub fn node(tb: &Testbed, name: &str) -> Node {
    tb.nodes().iter().find(|n| n.name == name).unwrap().clone()
}

pub fn api(tb: &Testbed, name: &str) -> SocketAddr {
    SocketAddr::new(node(tb, name).address.unwrap().ipv4.into(), API_PORT)
}

impl Cluster {
    /// Echo servers on 80 and 8080 in every pod; the nodes file lists n1
    /// and n2 at first.
    pub fn new() -> Cluster {
        let spec = PODS
            .iter()
            .fold(ClusterSpec::new("cluster"), |s, (p, n, ip)| s.app_pod(p, n, *ip))
            .policy(POLICY)
            .echo_ports(&[80, 8080])
            .listed_nodes(&["n1", "n2"]);
        Cluster(testing::Cluster::new(spec))
    }

    /// A relay on a loopback port of its own, finding the observers through
    /// n1's peer service, quick to reconnect.
    pub fn relay(&self) -> RelayHandle {
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        RelayHandle::spawn(RelayConfig {
            listen_address: listen,
            peers: vec![],
            peer_service: Some(self.api("n1").to_string()),
            sort_buffer_len_max: 10_000,
            sort_buffer_drain_timeout: Duration::from_millis(100),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            dial_timeout: Duration::from_secs(1),
            export: Default::default(),
            otlp: Default::default(),
            metrics_listen_address: None,
            tls: Default::default(),
        })
    }
}

pub fn identity(app: &str) -> u32 {
    IdentityAllocator::default().allocate(&Labels::for_endpoint(
        &BTreeMap::from([("app".to_string(), app.to_string())]),
        "default",
    ))
}

pub async fn connect(address: SocketAddr) -> ObserverClient<Channel> {
    for _ in 0..100 {
        if let Ok(c) = ObserverClient::connect(format!("http://{address}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("relay did not start on {address}")
}

pub async fn connected_nodes(c: &mut ObserverClient<Channel>, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = c.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
        if s.num_connected_nodes == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "never {n} connected nodes: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `stream` until `want` matches a response (5 s at most).
pub async fn until(
    stream: &mut Streaming<GetFlowsResponse>,
    what: &str,
    want: impl Fn(&GetFlowsResponse) -> bool,
) -> GetFlowsResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| panic!("no {what} within 10 s"))
            .unwrap()
            .expect("the stream goes on");
        if want(&r) {
            return r;
        }
    }
}

pub fn status(r: &GetFlowsResponse, state: NodeState, node: &str) -> bool {
    matches!(&r.response_types, Some(ResponseTypes::NodeStatus(s))
        if s.state_change == state as i32 && s.node_names.iter().any(|n| n == node))
}

pub fn flow(r: &GetFlowsResponse) -> Option<&Flow> {
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) => Some(f),
        _ => None,
    }
}

pub fn is(f: &Flow, src: &str, dst: &str, port: u32, dir: TrafficDirection) -> bool {
    let pod = |e: &Option<lumen_proto::flow::Endpoint>| e.as_ref().map(|e| e.pod_name.clone()).unwrap_or_default();
    let dport = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(lumen_proto::flow::layer4::Protocol::Tcp(t)) => t.destination_port,
        _ => 0,
    };
    pod(&f.source) == src && pod(&f.destination) == dst && dport == port && f.traffic_direction == dir as i32
}

//! A real three-node cluster on the testbed: each node its own observer
//! (own pins, own gRPC address on the fabric), pods talking across nodes,
//! and the relay finding the observers through the peer service. Needs
//! root: run `scripts/test.sh`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lumen_observer::identity::{IdentityAllocator, Labels};
use lumen_observer::{ObserverConfig, ObserverHandle};
use lumen_proto::flow::{Flow, TrafficDirection, Verdict};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse, ServerStatusRequest};
use lumen_proto::relay::NodeState;
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::Streaming;
use lumen_relay::{RelayConfig, RelayHandle};
use lumen_testbed::{Node, Pod, PodSpec, Testbed};

const API_PORT: u16 = 4244;

/// Pod `i` (a, b, c) on node `i` (n1, n2, n3), app=<pod>.
const PODS: [(&str, &str, Ipv4Addr); 3] = [
    ("a", "n1", Ipv4Addr::new(10, 1, 0, 1)),
    ("b", "n2", Ipv4Addr::new(10, 1, 0, 2)),
    ("c", "n3", Ipv4Addr::new(10, 1, 0, 3)),
];

const POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b-in}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: a}}]
      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]
";

struct Cluster {
    tb: Testbed,
    pods: BTreeMap<String, Pod>,
    dir: PathBuf,
    configs: BTreeMap<String, ObserverConfig>,
    observers: BTreeMap<String, ObserverHandle>,
    _servers: Vec<lumen_testbed::ServerGuard>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.observers.clear();
        for cfg in self.configs.values() {
            let _ = lumen_observer::daemon::uninstall(&cfg.pin_dir());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn node(tb: &Testbed, name: &str) -> Node {
    tb.nodes().iter().find(|n| n.name == name).unwrap().clone()
}

fn api(tb: &Testbed, name: &str) -> SocketAddr {
    SocketAddr::new(node(tb, name).address.unwrap().ipv4.into(), API_PORT)
}

impl Cluster {
    fn new() -> Cluster {
        let mut tb = Testbed::new().expect("testbed (run as root: scripts/test.sh)");
        for (_, n, _) in PODS {
            tb.add_node(n).unwrap();
        }
        tb.add_fabric().unwrap();
        let mut pods = BTreeMap::new();
        for (p, n, ip) in PODS {
            let pod = tb
                .add_pod(&node(&tb, n), PodSpec::new(p, "default", ip).label("app", p))
                .unwrap();
            pods.insert(p.to_string(), pod);
        }
        let dir = std::env::temp_dir().join(format!("lumen-cluster-{}", tb.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut configs = BTreeMap::new();
        for (_, n, _) in PODS {
            let ndir = dir.join(n);
            std::fs::create_dir_all(&ndir).unwrap();
            // Every node knows every pod: its own with their interfaces,
            // the others by address, so identities agree everywhere.
            let mut eps = String::from("endpoints:\n");
            for (p, pn, ip) in PODS {
                eps += &format!("  - name: {p}\n    labels: {{app: {p}}}\n    ips: [{ip}]\n");
                if pn == n {
                    eps += &format!("    interface: {}\n", pods[p].host_ifname);
                }
            }
            std::fs::write(ndir.join("endpoints.yaml"), eps).unwrap();
            std::fs::write(ndir.join("policy.yaml"), POLICY).unwrap();
            let mut cfg = ObserverConfig::in_dir(&format!("{}-{n}", tb.prefix()), &ndir);
            cfg.netns = Some(node(&tb, n).netns);
            cfg.endpoints = Some(ndir.join("endpoints.yaml"));
            cfg.policy = Some(ndir.join("policy.yaml"));
            cfg.listen_address = Some(api(&tb, n));
            cfg.nodes_file = Some(dir.join("nodes.yaml"));
            configs.insert(n.to_string(), cfg);
        }
        let servers = pods
            .values()
            .flat_map(|p| [80, 8080].map(|port| p.tcp_echo_server(port).unwrap()))
            .collect();
        let c = Cluster {
            tb,
            pods,
            dir,
            configs,
            observers: BTreeMap::new(),
            _servers: servers,
        };
        c.write_nodes(&["n1", "n2"]);
        c
    }

    /// The nodes file every observer watches (replaced in one step).
    fn write_nodes(&self, nodes: &[&str]) {
        let mut text = String::from("nodes:\n");
        for n in nodes {
            let name = &self.configs[*n].node_name;
            text += &format!("  - name: {name}\n    address: {}\n", api(&self.tb, n));
        }
        let tmp = self.dir.join("nodes.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.join("nodes.yaml")).unwrap();
    }

    fn start(&mut self, n: &str) {
        let handle = ObserverHandle::spawn(self.configs[n].clone());
        assert!(handle.wait_ready(Duration::from_secs(20)), "observer {n} did not start");
        self.observers.insert(n.to_string(), handle);
    }

    fn stop(&mut self, n: &str) {
        self.observers.remove(n).unwrap().stop().unwrap();
    }

    fn name(&self, n: &str) -> String {
        self.configs[n].node_name.clone()
    }

    fn request(&self, from: &str, to: &str, port: u16) -> bool {
        let dst = SocketAddr::new(self.pods[to].ipv4.into(), port);
        self.pods[from]
            .tcp_request(dst, b"hi", Duration::from_millis(700))
            .is_ok()
    }
}

fn identity(app: &str) -> u32 {
    IdentityAllocator::default().allocate(&Labels::for_endpoint(
        &BTreeMap::from([("app".to_string(), app.to_string())]),
        "default",
    ))
}

async fn connect(address: SocketAddr) -> ObserverClient<Channel> {
    for _ in 0..100 {
        if let Ok(c) = ObserverClient::connect(format!("http://{address}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("relay did not start on {address}")
}

async fn connected_nodes(c: &mut ObserverClient<Channel>, n: u32) {
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
async fn until(
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

fn status(r: &GetFlowsResponse, state: NodeState, node: &str) -> bool {
    matches!(&r.response_types, Some(ResponseTypes::NodeStatus(s))
        if s.state_change == state as i32 && s.node_names.iter().any(|n| n == node))
}

fn flow(r: &GetFlowsResponse) -> Option<&Flow> {
    match &r.response_types {
        Some(ResponseTypes::Flow(f)) => Some(f),
        _ => None,
    }
}

fn is(f: &Flow, src: &str, dst: &str, port: u32, dir: TrafficDirection) -> bool {
    let pod = |e: &Option<lumen_proto::flow::Endpoint>| e.as_ref().map(|e| e.pod_name.clone()).unwrap_or_default();
    let dport = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(lumen_proto::flow::layer4::Protocol::Tcp(t)) => t.destination_port,
        _ => 0,
    };
    pod(&f.source) == src && pod(&f.destination) == dst && dport == port && f.traffic_direction == dir as i32
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn the_relay_serves_the_whole_cluster_as_nodes_come_and_go() {
    let mut c = Cluster::new();
    for n in ["n1", "n2", "n3"] {
        c.start(n);
    }
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = RelayHandle::spawn(RelayConfig {
        listen_address: listen,
        peers: vec![],
        peer_service: Some(api(&c.tb, "n1").to_string()),
        sort_buffer_len_max: 10_000,
        sort_buffer_drain_timeout: Duration::from_millis(100),
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        dial_timeout: Duration::from_secs(1),
        tls: Default::default(),
    });
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

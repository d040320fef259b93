//! The cluster: 8 observers' real gRPC servers fed with datapath records,
//! the relay in front of them, and a client that reads little of each flow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser as _;
use lumen_observer::hub::Hub;
use lumen_observer::parser::{EndpointMeta, RuleMeta, Snapshot};
use lumen_probes::abi;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetFlowsRequest, ServerStatusRequest};
use lumen_proto::prost_types::Timestamp;
use lumen_proto::tonic::codegen::http;
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::Streaming;
use lumen_relay::{RelayConfig, RelayHandle};
use prost::bytes::Bytes;
use prost::Message as _;
use tokio::sync::watch;

use crate::{NODES, STORE};

pub struct Node {
    pub hub: Arc<Hub>,
    pub address: SocketAddr,
    stop: watch::Sender<bool>,
    dir: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two pods and the policy that allows one to reach the other, so flows carry
/// what a Kubernetes node's flows carry (pod names, labels, the rule).
pub fn snapshot() -> Snapshot {
    let meta = |id, identity, pod: &str, app: &str| {
        Arc::new(EndpointMeta {
            id,
            identity,
            namespace: "shop".into(),
            pod_name: pod.into(),
            labels: vec![
                format!("k8s:app={app}"),
                "k8s:io.cilium.k8s.policy.cluster=default".into(),
                "k8s:io.kubernetes.pod.namespace=shop".into(),
            ],
            ..Default::default()
        })
    };
    let frontend = meta(11, 300, "frontend-7d9f8b6c5-x2k4q", "frontend");
    let backend = meta(22, 400, "backend-5c8d7f9b4-m7p2z", "backend");
    let mut s = Snapshot::default();
    s.endpoints.insert("10.0.0.1".parse().unwrap(), frontend.clone());
    s.endpoints.insert("10.0.0.2".parse().unwrap(), backend.clone());
    s.endpoints_by_id.insert(11, frontend);
    s.endpoints_by_id.insert(22, backend);
    s.rules.insert(
        77,
        Arc::new(RuleMeta {
            name: "backend-from-frontend".into(),
            namespace: "shop".into(),
            kind: "CiliumNetworkPolicy".into(),
            match_type: 2,
        }),
    );
    s.interfaces.insert(3, "lxc4f1b2c3d5e6a".into());
    s
}

/// A datapath record at `timestamp_ns`: frontend to backend, allowed by the
/// policy; every 100th a policy drop.
pub fn record(i: u64, timestamp_ns: u64) -> abi::Event {
    let mut ev = abi::Event {
        timestamp_ns,
        ifindex: 3,
        endpoint_id: 22,
        src_identity: 300,
        dst_identity: 400,
        rule_id: 77,
        family: 4,
        proto: 6,
        direction: abi::DIR_INGRESS,
        obs_point: abi::OBS_TO_ENDPOINT,
        verdict: abi::VERDICT_FORWARDED,
        ct_state: abi::CT_ESTABLISHED,
        sport: 30_000 + (i % 20_000) as u16,
        dport: 8080,
        tcp_flags: 0x18,
        pkt_len: 66,
        ..Default::default()
    };
    ev.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
    ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    if i.is_multiple_of(100) {
        ev.verdict = abi::VERDICT_DROPPED;
        ev.drop_reason = abi::DROP_POLICY_DENIED;
        ev.rule_id = 0;
        ev.ct_state = abi::CT_NEW;
        ev.tcp_flags = 0x02;
    }
    ev
}

pub fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

pub async fn start_node(name: &str) -> Node {
    let hub = Hub::new(name, STORE);
    hub.publish(snapshot());
    let dir = std::env::temp_dir().join(format!("lumen-relay-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unix = lumen_observer::server::bind_unix(&dir.join("observer.sock")).unwrap();
    let tcp = lumen_observer::server::bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
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

/// The relay with the binary's defaults (sort buffer 10,000, window 50 ms).
pub fn start_relay(nodes: &[SocketAddr]) -> RelayHandle {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let peers: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    let cfg = RelayConfig::parse_from([
        "lumen-relay",
        "--listen-address",
        &listen.to_string(),
        "--peer",
        &peers.join(","),
    ]);
    RelayHandle::spawn(cfg)
}

pub async fn connect(address: SocketAddr) -> ObserverClient<Channel> {
    for _ in 0..200 {
        if let Ok(c) = ObserverClient::connect(format!("http://{address}")).await {
            return c.max_decoding_message_size(16 << 20);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on {address}")
}

pub async fn all_connected(c: &mut ObserverClient<Channel>) {
    for _ in 0..400 {
        let s = c.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
        if s.num_connected_nodes == Some(NODES as u32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the relay never had {NODES} connected nodes");
}

/// What the benchmark's client reads of a response: its kind, node and
/// time. The flow stays undecoded bytes: the client shares a CPU with the
/// nodes, and decoding every flow would make it the bottleneck.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub flow: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub lost_events: Option<Bytes>,
    #[prost(string, tag = "1000")]
    pub node_name: String,
    #[prost(message, optional, tag = "1001")]
    pub time: Option<Timestamp>,
}

impl Summary {
    pub fn time_ns(&self) -> i128 {
        self.time
            .as_ref()
            .map_or(0, |t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
    }

    /// The number of events a lost-events response reports.
    pub fn lost(&self) -> u64 {
        self.lost_events.as_ref().map_or(0, |b| {
            lumen_proto::flow::LostEvent::decode(b.as_ref())
                .map(|l| l.num_events_lost)
                .unwrap()
        })
    }
}

/// A `GetFlows` stream read as [`Summary`]s.
pub async fn summaries(address: SocketAddr, request: GetFlowsRequest) -> Streaming<Summary> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .tcp_nodelay(true)
        .max_frame_size(lumen_proto::MAX_FRAME_SIZE)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .connect()
        .await
        .unwrap();
    let mut grpc = lumen_proto::tonic::client::Grpc::new(channel).max_decoding_message_size(16 << 20);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/observer.Observer/GetFlows");
    let codec = tonic_prost::ProstCodec::<GetFlowsRequest, Summary>::default();
    // As `lumen` asks: flows with Lumen's extension.
    grpc.server_streaming(lumen_proto::with_extensions(request), path, codec)
        .await
        .unwrap()
        .into_inner()
}

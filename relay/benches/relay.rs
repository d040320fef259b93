//! The relay against its budgets (DESIGN.md §6): flows merged per second
//! from 8 nodes, the merge stage's own cost on one core, packet-to-CLI
//! latency in follow mode, and the relay's memory. No kernel: 8 real
//! observer gRPC servers run in this process, their flow stores fed with
//! datapath records directly, and the relay runs in-process as the
//! `lumen-relay` binary would, with its default settings. Results go to
//! BENCHMARKS.md.
//!
//! Run: `cargo bench -p lumen-relay --bench relay` (no root needed). With a
//! part's name as argument (`throughput`, `merge`, `follow`) only that part
//! runs and nothing is written (for profiling).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser as _;
use lumen_observer::hub::Hub;
use lumen_observer::parser::{EndpointMeta, RuleMeta, Snapshot};
use lumen_probes::abi;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::observer_server::Observer;
use lumen_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse, GetFlowsRequest,
    GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, GetNodesResponse,
    ServerStatusRequest, ServerStatusResponse,
};
use lumen_proto::prost_types::Timestamp;
use lumen_proto::raw::{RawFlows, RawFlowsResponse, RawFlowsStream, RawObserverServer};
use lumen_proto::tonic::codegen::{http, BoxStream};
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::{Request, Response, Status, Streaming};
use lumen_relay::merge::{Merge, SortBuffer};
use lumen_relay::{RelayConfig, RelayHandle};
use prost::bytes::Bytes;
use prost::Message as _;
use tokio::sync::watch;

#[path = "../../observer/benches/support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "../../observer/benches/support/numbers.rs"]
mod numbers;

use numbers::{count, mib};
#[path = "../../observer/benches/support/machine.rs"]
mod machine;

const NODES: usize = 8;
/// Each node's flow store, as a production observer might be configured.
const STORE: usize = 1_000_000;
/// Flows per node answered by the non-follow GetFlows.
const PER_NODE: usize = 50_000;
const THROUGHPUT_RUNS: usize = 5;
/// Flows per node taken for the merge stage measured alone.
const STAGE_PER_NODE: usize = 25_000;
const STAGE_RUNS: usize = 5;
/// Responses a node's stream delivers to the relay in one go, in the
/// stage's model of arrival order.
const ARRIVAL_CHUNK: usize = 64;
const BUDGET_FLOWS_PER_S: f64 = 1_000_000.0;
const BUDGET_P99_MS: f64 = 100.0;

// ---------------------------------------------------------------------------
// Whose thread is this: the benchmark's (observers, client, producer) or the
// relay's. The relay starts its own threads; every thread the benchmark does
// not mark is the relay's.

thread_local! {
    static BENCH_THREAD: Cell<bool> = const { Cell::new(false) };
}

static BENCH_TIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn is_bench_thread() -> bool {
    BENCH_THREAD.try_with(Cell::get).unwrap_or(true)
}

fn tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("/proc/thread-self names this thread")
}

fn mark_bench_thread() {
    BENCH_THREAD.with(|b| b.set(true));
    BENCH_TIDS.lock().unwrap().push(tid());
}

/// Pins one thread; threads it starts later inherit the CPU.
fn pin(tid: u32, cpu: usize) -> bool {
    std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// CPU time (ns) of the relay's threads, or of the benchmark's.
fn cpu_ns(relay: bool) -> u64 {
    let ours = BENCH_TIDS.lock().unwrap().clone();
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Some(t) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        if ours.contains(&t) == relay {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat.split(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

// ---------------------------------------------------------------------------
// The relay's heap, counted on its threads only. It exchanges only bytes on
// sockets with the rest of the process, so what its threads allocate they
// also free; the benchmark's own threads are not counted (no atomics in
// their way). Counting is off while the throughput is timed.

static COUNTING: AtomicBool = AtomicBool::new(true);
static RELAY_LIVE: AtomicIsize = AtomicIsize::new(0);
static RELAY_PEAK: AtomicIsize = AtomicIsize::new(0);

fn counted() -> bool {
    COUNTING.load(Relaxed) && !is_bench_thread()
}

fn grew(bytes: usize) {
    if counted() {
        let now = RELAY_LIVE.fetch_add(bytes as isize, Relaxed) + bytes as isize;
        RELAY_PEAK.fetch_max(now, Relaxed);
    }
}

fn shrank(bytes: usize) {
    if counted() {
        RELAY_LIVE.fetch_sub(bytes as isize, Relaxed);
    }
}

struct Counting;

// SAFETY: every call goes to `System` unchanged; only counters are added
// (a const thread-local and atomics: no allocation, no reentry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The relay's live heap, and its high-water mark from now on.
fn relay_heap_mark() -> isize {
    let live = RELAY_LIVE.load(Relaxed);
    RELAY_PEAK.store(live, Relaxed);
    live
}

fn relay_heap_peak_since(mark: isize) -> usize {
    (RELAY_PEAK.load(Relaxed) - mark).max(0) as usize
}

fn status_kib(key: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The cluster: 8 observers' gRPC servers and the relay.

struct Node {
    hub: Arc<Hub>,
    address: SocketAddr,
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
fn snapshot() -> Snapshot {
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
fn record(i: u64, timestamp_ns: u64) -> abi::Event {
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

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

async fn start_node(name: &str) -> Node {
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
fn start_relay(nodes: &[SocketAddr]) -> RelayHandle {
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

async fn connect(address: SocketAddr) -> ObserverClient<Channel> {
    for _ in 0..200 {
        if let Ok(c) = ObserverClient::connect(format!("http://{address}")).await {
            return c.max_decoding_message_size(16 << 20);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on {address}")
}

async fn all_connected(c: &mut ObserverClient<Channel>) {
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
struct Summary {
    #[prost(bytes = "bytes", optional, tag = "1")]
    flow: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    lost_events: Option<Bytes>,
    #[prost(string, tag = "1000")]
    node_name: String,
    #[prost(message, optional, tag = "1001")]
    time: Option<Timestamp>,
}

impl Summary {
    fn time_ns(&self) -> i128 {
        self.time
            .as_ref()
            .map_or(0, |t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
    }

    /// The number of events a lost-events response reports.
    fn lost(&self) -> u64 {
        self.lost_events.as_ref().map_or(0, |b| {
            lumen_proto::flow::LostEvent::decode(b.as_ref())
                .map(|l| l.num_events_lost)
                .unwrap()
        })
    }
}

/// A `GetFlows` stream read as [`Summary`]s.
async fn summaries(address: SocketAddr, request: GetFlowsRequest) -> Streaming<Summary> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .tcp_nodelay(true)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .connect()
        .await
        .unwrap();
    let mut grpc = lumen_proto::tonic::client::Grpc::new(channel).max_decoding_message_size(16 << 20);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/observer.Observer/GetFlows");
    let codec = tonic_prost::ProstCodec::<GetFlowsRequest, Summary>::default();
    grpc.server_streaming(Request::new(request), path, codec)
        .await
        .unwrap()
        .into_inner()
}

// ---------------------------------------------------------------------------
// Replaying nodes: what the real observers answered, recorded once, served
// again as encoded bytes. They cost next to nothing per flow, so the relay,
// not the nodes, is what limits the rate.

struct Replay {
    name: String,
    answer: Arc<Vec<RawFlowsResponse>>,
}

#[lumen_proto::tonic::async_trait]
impl Observer for Replay {
    type GetFlowsStream = BoxStream<GetFlowsResponse>;
    type GetAgentEventsStream = BoxStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = BoxStream<GetDebugEventsResponse>;

    async fn get_flows(&self, _: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        Err(Status::unimplemented("served encoded (RawFlows)"))
    }

    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("no agent events"))
    }

    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("no debug events"))
    }

    async fn get_nodes(&self, _: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let node = lumen_proto::observer::Node {
            name: self.name.clone(),
            ..Default::default()
        };
        Ok(Response::new(GetNodesResponse { nodes: vec![node] }))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Ok(Response::new(GetNamespacesResponse::default()))
    }

    async fn server_status(&self, _: Request<ServerStatusRequest>) -> Result<Response<ServerStatusResponse>, Status> {
        Ok(Response::new(ServerStatusResponse {
            num_flows: self.answer.len() as u64,
            ..Default::default()
        }))
    }
}

impl RawFlows for Replay {
    fn raw_flows(&self, _: GetFlowsRequest) -> Result<RawFlowsStream, Status> {
        let answer = self.answer.clone();
        Ok(Box::pin(tokio_stream::iter(
            (0..answer.len()).map(move |i| Ok(answer[i].clone())),
        )))
    }
}

/// Each real node's whole answer, as it sent it.
async fn record_answers(nodes: &[Node]) -> Vec<Vec<RawFlowsResponse>> {
    let mut out = Vec::new();
    for n in nodes {
        let channel = Channel::from_shared(format!("http://{}", n.address))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = lumen_proto::tonic::client::Grpc::new(channel).max_decoding_message_size(16 << 20);
        let mut s = lumen_proto::raw::get_flows(&mut grpc, GetFlowsRequest::default())
            .await
            .unwrap();
        let mut answer = Vec::new();
        while let Some(r) = s.message().await.unwrap() {
            answer.push(r);
        }
        assert_eq!(answer.len(), PER_NODE);
        out.push(answer);
    }
    out
}

/// Serves each recorded answer as a node of its own on 127.0.0.1.
async fn start_replays(answers: Vec<Vec<RawFlowsResponse>>) -> (Vec<SocketAddr>, watch::Sender<bool>) {
    let (stop, rx) = watch::channel(false);
    let mut addresses = Vec::new();
    for (k, answer) in answers.into_iter().enumerate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.push(listener.local_addr().unwrap());
        let service = RawObserverServer::new(Replay {
            name: format!("replay-{k}"),
            answer: Arc::new(answer),
        });
        let mut rx = rx.clone();
        let incoming = lumen_proto::tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(
            lumen_proto::tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.wait_for(|s| *s).await;
                }),
        );
    }
    (addresses, stop)
}

// ---------------------------------------------------------------------------
// Helpers for numbers.

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn min_max(v: &[f64]) -> (f64, f64) {
    (
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// The value at quantile `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

// ---------------------------------------------------------------------------
// (1) Merge throughput end to end.

#[derive(Default)]
struct Throughput {
    /// Where the nodes' answers come from.
    source: &'static str,
    flows_per_s: Vec<f64>,
    first_flow_ms: Vec<f64>,
    relay_cpu_ns_per_flow: Vec<f64>,
    /// CPU time over wall time: the relay's threads, the benchmark's.
    relay_cpu_share: Vec<f64>,
    bench_cpu_share: Vec<f64>,
    relay_heap_peak: usize,
    relay_heap_at_rest: usize,
    rss_kib: (usize, usize),
}

async fn throughput(relay: SocketAddr, source: &'static str) -> Throughput {
    let mut t = Throughput {
        source,
        relay_heap_at_rest: RELAY_LIVE.load(Relaxed).max(0) as usize,
        ..Default::default()
    };
    let rss_before = status_kib("VmRSS:");
    // The timed runs, then one more with the relay's heap counted.
    for run in 0..=THROUGHPUT_RUNS {
        let timed = run < THROUGHPUT_RUNS;
        COUNTING.store(!timed, Relaxed);
        let heap = relay_heap_mark();
        let (relay_cpu, bench_cpu) = (cpu_ns(true), cpu_ns(false));
        let start = Instant::now();
        let mut stream = summaries(relay, GetFlowsRequest::default()).await;
        let (mut flows, mut first, mut last, mut in_order) = (0usize, None, 0i128, true);
        while let Some(r) = stream.message().await.unwrap() {
            if r.flow.is_some() {
                first.get_or_insert_with(|| start.elapsed());
                let at = r.time_ns();
                in_order &= at >= last;
                last = at;
                flows += 1;
            }
        }
        let wall = start.elapsed().as_nanos() as f64;
        assert_eq!(flows, NODES * PER_NODE, "every stored flow comes through the relay");
        assert!(in_order, "the relay's answer is in time order");
        if !timed {
            t.relay_heap_peak = relay_heap_peak_since(heap);
            break;
        }
        let (relay_cpu, bench_cpu) = ((cpu_ns(true) - relay_cpu) as f64, (cpu_ns(false) - bench_cpu) as f64);
        t.flows_per_s.push(flows as f64 / wall * 1e9);
        t.first_flow_ms.push(first.unwrap_or_default().as_secs_f64() * 1e3);
        t.relay_cpu_ns_per_flow.push(relay_cpu / flows as f64);
        t.relay_cpu_share.push(relay_cpu / wall);
        t.bench_cpu_share.push(bench_cpu / wall);
    }
    t.rss_kib = (rss_before, status_kib("VmRSS:"));
    t
}

/// Every flow through the relay is a whole flow as the node built it.
async fn check_integrity(relay: SocketAddr) {
    let mut c = connect(relay).await;
    let request = GetFlowsRequest {
        number: 1_000,
        ..Default::default()
    };
    let mut s = c.get_flows(request).await.unwrap().into_inner();
    let mut flows = 0;
    while let Some(r) = s.message().await.unwrap() {
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            assert!(r.node_name.starts_with("node-"));
            assert_eq!(f.node_name, r.node_name);
            assert_eq!(f.source.unwrap().pod_name, "frontend-7d9f8b6c5-x2k4q");
            flows += 1;
        }
    }
    assert_eq!(flows, 1_000);
}

impl Throughput {
    fn rows(&self) -> String {
        let total = NODES * PER_NODE;
        let rate = median(&self.flows_per_s);
        let (lo, hi) = min_max(&self.flows_per_s);
        let cpu = median(&self.relay_cpu_ns_per_flow);
        let mut rows = vec![
            row(
                &format!("merged flows/s, 8 nodes ({}) → relay → client over gRPC on TCP (non-follow `GetFlows` of all {} flows), wall clock", self.source, count(total)),
                &format!("{:.0} k/s (median of {THROUGHPUT_RUNS}; min {:.0} k, max {:.0} k)", rate / 1e3, lo / 1e3, hi / 1e3),
                &format!("≥ 1,000 k/s on one core: {}", verdict(rate >= BUDGET_FLOWS_PER_S)),
            ),
            row(
                &format!(
                    "the relay's CPU time per merged flow in those runs (all its threads; its CPU {:.0} % busy; the nodes and the client took {:.0} ns per flow on the other, {:.0} % busy) → its one-core ceiling",
                    median(&self.relay_cpu_share) * 100.0,
                    median(&self.bench_cpu_share) / rate * 1e9,
                    median(&self.bench_cpu_share) * 100.0
                ),
                &format!("{cpu:.0} ns → {:.0} k flows/s", 1e6 / cpu),
                &format!("≥ 1,000 k/s: {}", verdict(1e9 / cpu >= BUDGET_FLOWS_PER_S)),
            ),
            row("time to the first flow of that answer", &format!("{:.0} ms (median)", median(&self.first_flow_ms)), "none set"),
            row(
                &format!("relay heap peak, non-follow answer of {} flows", count(total)),
                &format!(
                    "{:.1} MiB (batches in flight, whatever the answer's size; {:.1} MiB with 8 nodes connected and no query)",
                    mib(self.relay_heap_peak),
                    mib(self.relay_heap_at_rest)
                ),
                "none set",
            ),
        ];
        if self.source == "real observers" {
            rows.push(row(
                &format!(
                    "process RSS (8 observers holding {} flows each, relay, client) before / after those runs",
                    count(PER_NODE)
                ),
                &format!(
                    "{:.0} / {:.0} MiB",
                    self.rss_kib.0 as f64 / 1024.0,
                    self.rss_kib.1 as f64 / 1024.0
                ),
                "",
            ));
        }
        rows.concat()
    }
}

// ---------------------------------------------------------------------------
// (2) The merge stage alone, on this thread.

#[derive(Default)]
struct Stage {
    encoded_bytes_per_flow: f64,
    parse_ns: Vec<f64>,
    sort_buffer_ns: Vec<f64>,
    merge_ns: Vec<f64>,
    write_ns: Vec<f64>,
}

fn merge_stage(answers: &[Vec<RawFlowsResponse>]) -> Stage {
    let answers: Vec<&[RawFlowsResponse]> = answers.iter().map(|a| &a[..STAGE_PER_NODE]).collect();
    // Arrival order: each node's stream in chunks, the nodes taking turns.
    let (mut wire, mut arrivals): (Vec<Bytes>, Vec<(usize, usize)>) = (Vec::new(), Vec::new());
    for chunk in 0..STAGE_PER_NODE.div_ceil(ARRIVAL_CHUNK) {
        for (node, a) in answers.iter().enumerate() {
            let part = &a[chunk * ARRIVAL_CHUNK..((chunk + 1) * ARRIVAL_CHUNK).min(a.len())];
            wire.extend(part.iter().map(|r| Bytes::copy_from_slice(r.bytes())));
            arrivals.push((node, part.len()));
        }
    }
    let n = wire.len();
    let mut stage = Stage {
        encoded_bytes_per_flow: wire.iter().map(Bytes::len).sum::<usize>() as f64 / n as f64,
        ..Default::default()
    };
    let per_flow = |t: Instant| t.elapsed().as_nanos() as f64 / n as f64;
    let defaults = lumen_relay::server::MergeOptions::default();
    for _ in 0..STAGE_RUNS {
        // What the relay's decoder does with each message: read its time.
        let t = Instant::now();
        let mut parsed = Vec::with_capacity(n);
        for bytes in &wire {
            parsed.push(RawFlowsResponse::parse(bytes.clone()).unwrap());
        }
        stage.parse_ns.push(per_flow(t));

        // The history path: the k-way merge, fed a chunk per node at a time.
        let mut merge = Merge::new(NODES);
        let mut merged = Vec::with_capacity(n);
        let t = Instant::now();
        let mut next = parsed.iter();
        for &(node, len) in &arrivals {
            merge.push(node, next.by_ref().take(len).cloned());
            while let Some(r) = merge.pop() {
                merged.push(r);
            }
        }
        (0..NODES).for_each(|k| merge.finish(k));
        while let Some(r) = merge.pop() {
            merged.push(r);
        }
        stage.merge_ns.push(per_flow(t));
        assert_eq!(merged.len(), n);
        assert!(merged.windows(2).all(|w| w[0].time_ns() <= w[1].time_ns()));
        drop(merged);

        // The follow path: the sort window at its defaults, read as the relay
        // does when responses keep coming (it is full; each push lets one go).
        let mut buffer = SortBuffer::new(defaults.capacity, defaults.window);
        let mut out = Vec::with_capacity(n);
        let t = Instant::now();
        for (i, r) in parsed.into_iter().enumerate() {
            let now = Instant::now();
            out.extend(buffer.push(r, now));
            if i % 256 == 0 {
                buffer.ready(now, &mut out);
            }
        }
        out.extend(buffer.drain());
        stage.sort_buffer_ns.push(per_flow(t));
        assert_eq!(out.len(), n);
        assert!(out.windows(2).all(|w| w[0].time_ns() <= w[1].time_ns()));

        // Writing for the client: the bytes copied into the send buffer.
        let mut buf = Vec::with_capacity(256 * 1024);
        let t = Instant::now();
        for r in out {
            if buf.len() > 128 * 1024 {
                buf.clear();
            }
            buf.extend_from_slice(r.bytes());
        }
        stage.write_ns.push(per_flow(t));
    }
    stage
}

impl Stage {
    fn rows(&self) -> String {
        let (parse, sb, merge, write) = (
            median(&self.parse_ns),
            median(&self.sort_buffer_ns),
            median(&self.merge_ns),
            median(&self.write_ns),
        );
        [
            row(
                &format!(
                    "merge stage alone, one thread, {} flows ({:.0} B each on the wire), per flow: reading the time / `SortBuffer` push+ready (follow) / k-way `Merge` (history) / copying out",
                    count(NODES * STAGE_PER_NODE),
                    self.encoded_bytes_per_flow,
                ),
                &format!("{parse:.0} ns / {sb:.0} ns / {merge:.0} ns / {write:.0} ns (medians of {STAGE_RUNS})"),
                "",
            ),
            row(
                "→ the merge's single-core ceiling, follow path (no gRPC, HTTP/2 or sockets)",
                &format!("{:.0} k flows/s", 1e6 / (parse + sb + write)),
                &format!("≥ 1,000 k/s: {}", verdict(1e9 / (parse + sb + write) >= BUDGET_FLOWS_PER_S)),
            ),
        ]
        .concat()
    }
}

// ---------------------------------------------------------------------------
// (3) Follow latency, and the relay at full rate.

struct Follow {
    rate: usize,
    seconds: f64,
    sent: usize,
    received: usize,
    lost: u64,
    /// Flow store to client, ms, sorted.
    latency_ms: Vec<f64>,
    /// Flows received per second of the run (first push to last flow).
    delivered_per_s: f64,
    relay_heap_peak: usize,
    relay_cpu_ns_per_flow: f64,
}

/// A follow stream through the relay while a producer stores `rate` flows/s
/// (spread over the nodes) for `seconds`, each stamped with the wall clock
/// at the moment it is stored.
async fn follow(relay: SocketAddr, nodes: &[Node], rate: usize, seconds: f64) -> Follow {
    let req = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut stream = summaries(relay, req).await;
    match stream.message().await.unwrap() {
        Some(r) if r.flow.is_none() && r.lost_events.is_none() => assert!(r.node_name.starts_with("node-")),
        other => panic!("expected the nodes' status first, got {other:?}"),
    }
    let per_node = (rate as f64 * seconds) as usize / NODES;
    let sent = per_node * NODES;
    let hubs: Vec<Arc<Hub>> = nodes.iter().map(|n| n.hub.clone()).collect();
    let heap = relay_heap_mark();
    let relay_cpu = cpu_ns(true);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            mark_bench_thread();
            let mut stored = 0;
            while stored < per_node && !stop.load(Relaxed) {
                let due = ((rate as f64 / NODES as f64) * start.elapsed().as_secs_f64()) as usize;
                let due = due.min(per_node);
                for hub in hubs.iter().filter(|_| due > stored) {
                    let now = wall_ns();
                    hub.push((stored..due).map(|k| record(k as u64, now)));
                }
                stored = stored.max(due);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let (mut received, mut lost, mut latency_ms, mut last) = (0, 0, Vec::with_capacity(sent), start);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds + 30.0);
    while received < sent {
        let Ok(r) = tokio::time::timeout_at(deadline, stream.message()).await else {
            break;
        };
        let r = r.unwrap().expect("the follow stream goes on");
        if r.flow.is_some() {
            latency_ms.push((wall_ns() as i128 - r.time_ns()) as f64 / 1e6);
            received += 1;
            last = Instant::now();
        }
        lost += r.lost();
    }
    stop.store(true, Relaxed);
    producer.join().unwrap();
    latency_ms.sort_by(f64::total_cmp);
    Follow {
        rate,
        seconds,
        sent,
        received,
        lost,
        latency_ms,
        delivered_per_s: received as f64 / last.duration_since(start).as_secs_f64(),
        relay_heap_peak: relay_heap_peak_since(heap),
        relay_cpu_ns_per_flow: (cpu_ns(true) - relay_cpu) as f64 / received.max(1) as f64,
    }
}

impl Follow {
    fn rows(&self) -> String {
        let (p50, p99, max) = (
            quantile(&self.latency_ms, 0.5),
            quantile(&self.latency_ms, 0.99),
            quantile(&self.latency_ms, 1.0),
        );
        let all = self.received == self.sent;
        if self.rate <= 100_000 {
            return row(
                &format!(
                    "follow latency, flow store → client, {} flows/s ({}/s per node, {:.0} s, {} of {} flows received, {} reported lost): p50 / p99 / max",
                    count(self.rate),
                    count(self.rate / NODES),
                    self.seconds,
                    count(self.received),
                    count(self.sent),
                    self.lost
                ),
                &format!("{p50:.1} / {p99:.1} / {max:.1} ms"),
                &format!("p99 ≤ 100 ms: {}", verdict(p99 <= BUDGET_P99_MS && all)),
            );
        }
        [
            row(
                &format!(
                    "follow at full rate: {} flows/s offered for {:.0} s ({} flows), read until all arrived",
                    count(self.rate),
                    self.seconds,
                    count(self.sent)
                ),
                &format!(
                    "{:.0} k flows/s delivered (what the 8 observers and the producer on CPU 0 make); {} received, {} reported lost; latency p50 / p99 {p50:.0} / {p99:.0} ms; relay CPU {:.0} ns per flow → {:.0} k flows/s on one core",
                    self.delivered_per_s / 1e3,
                    count(self.received),
                    self.lost,
                    self.relay_cpu_ns_per_flow,
                    1e6 / self.relay_cpu_ns_per_flow
                ),
                &format!(
                    "≥ 1,000 k/s on one core: {}",
                    verdict(1e9 / self.relay_cpu_ns_per_flow >= BUDGET_FLOWS_PER_S && all)
                ),
            ),
            row("relay heap peak, follow at full rate", &format!("{:.1} MiB", mib(self.relay_heap_peak)), "none set"),
        ]
        .concat()
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    mark_bench_thread();
    let main_tid = tid();
    // The relays get CPU 1 to themselves; the nodes, the client and the
    // producer share CPU 0.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cpus >= 2 && pin(main_tid, 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-observers")
        .on_thread_start(mark_bench_thread)
        .enable_all()
        .build()
        .unwrap();
    let nodes: Vec<Node> = rt.block_on(async {
        let mut nodes = Vec::new();
        for k in 0..NODES {
            nodes.push(start_node(&format!("node-{k}")).await);
        }
        nodes
    });
    // Interleaved in time across nodes, 1 µs apart, ending a minute ago.
    let base = wall_ns() - 60_000_000_000 - (NODES * PER_NODE) as u64 * 1_000;
    for (k, n) in nodes.iter().enumerate() {
        n.hub.push((0..PER_NODE).map(|i| {
            let g = (i * NODES + k) as u64;
            record(g, base + g * 1_000)
        }));
    }
    let answers = rt.block_on(record_answers(&nodes));
    let stage = runs("merge").then(|| merge_stage(&answers));
    let (replays, stop_replays) = rt.block_on(start_replays(answers));
    // Started from CPU 1, the relays' threads stay there.
    if pinned {
        pin(main_tid, 1);
    }
    let relay = start_relay(&nodes.iter().map(|n| n.address).collect::<Vec<_>>());
    let replay_relay = start_relay(&replays);
    if pinned {
        pin(main_tid, 0);
    }
    rt.block_on(async {
        for r in [&relay, &replay_relay] {
            all_connected(&mut connect(r.address).await).await;
        }
        check_integrity(relay.address).await;
    });

    let mut rows = String::new();
    if runs("throughput") {
        rows += &rt.block_on(throughput(relay.address, "real observers")).rows();
    }
    if runs("replay") {
        rows += &rt
            .block_on(throughput(replay_relay.address, "replaying recorded answers"))
            .rows();
    }
    if let Some(stage) = stage {
        rows += &stage.rows();
    }
    if runs("follow") {
        for (rate, seconds) in [(8_000, 5.0), (20_000, 5.0), (1_000_000, 1.0)] {
            rows += &rt.block_on(follow(relay.address, &nodes, rate, seconds)).rows();
        }
    }
    print!("{rows}");
    relay.stop().unwrap();
    replay_relay.stop().unwrap();
    let _ = stop_replays.send(true);
    drop(nodes);
    if only.is_none() {
        benchmarks_md::update_benchmarks("relay", &section(&rows, pinned));
        println!("BENCHMARKS.md updated");
    }
}

fn row(measure: &str, result: &str, budget: &str) -> String {
    format!("| {measure} | {result} | {budget} |\n")
}

fn section(rows: &str, pinned: bool) -> String {
    let placement = if pinned {
        "the relays' threads (each runtime has 2 workers) are pinned to CPU 1; the nodes' servers, the client and the producer to CPU 0"
    } else {
        "nothing is pinned (fewer than 2 CPUs, or taskset failed)"
    };
    format!(
        "## Relay: merged flows from 8 nodes, follow latency, memory

Command: `cargo bench -p lumen-relay --bench relay` (no root, no kernel: the nodes' flow stores are fed with datapath records directly; everything runs in one process).
Machine: {}, kernel {}.

| measure | result | budget |
|---|---|---|
{rows}
How it is set up: 8 observers' real gRPC servers (`lumen_observer::server::serve`, TCP on 127.0.0.1) and the relay (`RelayHandle::spawn`, static peers, the binary's defaults: sort buffer 10,000, window 50 ms) run in this process; {placement}. \
Each node's store (capacity {}) holds {} flows of frontend → backend traffic with pod names, labels and the allowing policy (every 100th a policy drop), timestamps interleaved across nodes 1 µs apart. \
The relay passes flows through as the bytes the nodes sent (it reads each response's time, nothing else) and merges non-follow answers with an exact k-way merge as they stream, holding a few batches per node. \
The throughput runs are one non-follow `GetFlows` each (number 0: everything) through the relay, read by a client that reads each response's kind, node and time (not the whole flow: it shares CPU 0 with the nodes) and checks the time order; before them, 1,000 flows through the relay are decoded whole and checked (node, pod names). \
With real observers, the wall-clock rate also waits on the 8 observers building and encoding flows on CPU 0. Replaying recorded answers: the same 8 answers, recorded from those observers once, served again as encoded bytes by 8 gRPC servers (`RawObserverServer`) on CPU 0, so that the relay is what limits the rate. \
The relay's CPU time is read per thread from `/proc/self/task/*/schedstat` (threads the benchmark did not start are the relays') and includes its gRPC, HTTP/2 and socket work. \
The merge stage alone takes the nodes' own encoded answers, arriving {ARRIVAL_CHUNK} responses per node at a time, and times reading each response's time, the sort window at its defaults (full, so each push lets the oldest go), the k-way merge, and copying the bytes out, on one thread. \
Follow latency is the client's wall clock on receipt minus the flow's timestamp, which the producer sets from the wall clock when it stores the flow: it starts at the flow store, so the observer's ring-buffer reader comes on top (it drains on the ring buffer's wakeups, which the datapath batches, and at least every 20 ms); the relay's 50 ms sort window is its floor by design. \
At full rate the producer offers more than the chain carries and the follow stream reads until every flow arrived; the relay's memory is then bounded by its sort buffer and channels. \
Heap is counted on the relay's threads by a global allocator around the system one (in one extra non-follow run and in the follow runs, not in the timed ones): the relay exchanges only socket bytes with the rest of the process, so what its threads allocate is its own.
",
        machine::cpu_model(),
        machine::kernel(),
        count(STORE),
        count(PER_NODE)
    )
}

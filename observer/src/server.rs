//! The server stage: Hubble's `observer.Observer` service over the hub, plus
//! the standard gRPC health service, on a Unix socket and optionally TCP.
//!
//! `GetFlows` follows Hubble's local observer: `first` starts at the oldest
//! flow held; otherwise the reader rewinds from the newest flow until it has
//! `number` matching flows (all held when `number` is 0) or reaches `since`;
//! `follow` then keeps streaming. Each client has its own task and bounded
//! channel: a slow client falls behind in the store, never blocks the reader,
//! and is told what it missed with a `LostEvent`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use lumen_flow::FlowFilterSet;
use lumen_proto::flow::{Flow, LostEvent, LostEventSource};
use lumen_proto::observer::observer_server::{Observer, ObserverServer};
use lumen_proto::observer::{
    get_flows_response::ResponseTypes, GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest,
    GetDebugEventsResponse, GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, Namespace, Node, ServerStatusRequest, ServerStatusResponse,
};
use lumen_proto::tonic::{self, Request, Response, Status};
use lumen_proto::{prost_types, relay, tonic_health, HEALTH_SERVICE_NAME};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};

use crate::hub::Hub;
use crate::store::StoredFlow;

pub use lumen_proto::{LOST_CLIENT_HEADER, LOST_KERNEL_HEADER};

/// Responses buffered per client before it falls behind in the store.
const CLIENT_BUFFER: usize = 256;
/// Flows copied out of the store per lock.
const READ_BATCH: usize = 1024;

pub use lumen_flow::request::RequestError;

/// A validated `GetFlowsRequest`. Times are wall-clock ns since the epoch.
pub struct Query {
    pub number: u64,
    pub first: bool,
    pub follow: bool,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub filters: FlowFilterSet,
    /// A cheap test on the stored record that never rejects a flow the
    /// filters accept; only flows passing it are built and matched.
    pub prefilter: Prefilter,
    /// The flow fields the client asked for, if it named any.
    pub mask: Option<lumen_flow::mask::FlowMask>,
    /// Whether flows go out with Lumen's extension (only to clients that
    /// ask: see [`lumen_flow::request::Checked::sends_extensions`]).
    pub extensions: bool,
}

impl Query {
    /// `extensions_header`: the request carried
    /// [`lumen_proto::EXTENSIONS_HEADER`].
    pub fn new(req: &GetFlowsRequest, extensions_header: bool) -> Result<Query, RequestError> {
        let checked = lumen_flow::request::check(req)?;
        Ok(Query {
            extensions: checked.sends_extensions(extensions_header),
            number: req.number,
            first: req.first,
            follow: req.follow,
            since: checked.since,
            until: checked.until,
            filters: checked.filters,
            prefilter: Prefilter::new(&req.whitelist),
            mask: checked.mask,
        })
    }

    /// Whether a stored flow passes the request's filters.
    pub fn matches(&self, hub: &Hub, f: &StoredFlow) -> bool {
        self.prefilter.may_match(&f.event) && self.filters.matches(&hub.to_flow(f))
    }

    /// Sequence number to start reading at. `newest_first` walks the flows
    /// held back from the newest; `oldest` is the oldest held and `next` the
    /// sequence number the next flow gets.
    pub fn start(
        &self,
        newest_first: impl IntoIterator<Item = StoredFlow>,
        oldest: u64,
        next: u64,
        matches: impl Fn(&StoredFlow) -> bool,
    ) -> u64 {
        if self.first && self.since.is_none() {
            return oldest;
        }
        if self.follow && self.number == 0 && self.since.is_none() {
            return next;
        }
        let mut count = 0;
        for f in newest_first {
            let f = &f;
            if let Some(since) = self.since {
                if f.event.timestamp_ns < since {
                    return f.seq + 1;
                }
            } else if matches(f) {
                count += 1;
                if count == self.number {
                    return f.seq;
                }
            }
        }
        oldest
    }

    /// Whether a flow read forward goes out; `sent` flows went out before.
    pub fn admit(&self, sent: u64, f: &StoredFlow, matches: impl FnOnce() -> bool) -> Admit {
        let ts = f.event.timestamp_ns;
        if (!self.follow && self.number > 0 && sent >= self.number) || self.until.is_some_and(|u| ts > u) {
            Admit::End
        } else if self.since.is_some_and(|s| ts < s) || !matches() {
            Admit::Skip
        } else {
            Admit::Send
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Send,
    Skip,
    End,
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

fn lost(hub: &Hub, source: LostEventSource, count: u64) -> GetFlowsResponse {
    GetFlowsResponse {
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: source as i32,
            num_events_lost: count,
            ..Default::default()
        })),
        node_name: hub.node_name().to_string(),
        time: Some(now()),
    }
}

fn flow_response(mut flow: Flow, q: &Query) -> GetFlowsResponse {
    if !q.extensions {
        flow.extensions = None;
    }
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(match &q.mask {
            Some(m) => m.apply(&flow),
            None => flow,
        })),
    }
}

type Tx = mpsc::Sender<Result<GetFlowsResponse, Status>>;

/// Flows copied out of the store per lock while rewinding.
const REWIND_CHUNK: u64 = 8192;

/// Walks the store back from the newest flow, a chunk per lock.
struct Rewind<'h> {
    hub: &'h Hub,
    hi: u64,
    oldest: u64,
    buf: Vec<StoredFlow>,
}

impl Iterator for Rewind<'_> {
    type Item = StoredFlow;

    fn next(&mut self) -> Option<StoredFlow> {
        if let Some(f) = self.buf.pop() {
            return Some(f);
        }
        if self.hi <= self.oldest {
            return None;
        }
        let lo = self.hi.saturating_sub(REWIND_CHUNK).max(self.oldest);
        let batch = self.hub.store().read(lo, (self.hi - lo) as usize);
        // Flows the writer overwrote meanwhile are simply not there.
        self.hi = lo;
        self.oldest = self.oldest.max(batch.next - batch.flows.len() as u64);
        self.buf = batch.flows;
        self.buf.pop()
    }
}

/// The fields of a whitelist that can be checked on the stored record.
/// Over-approximates: a flow it rejects matches no whitelist filter.
#[derive(Debug, Default)]
pub struct Prefilter {
    /// One entry per whitelist filter; empty means no prefiltering.
    filters: Vec<RawFilter>,
}

#[derive(Debug, Default)]
struct RawFilter {
    verdicts: Vec<u8>,
    drop_reasons: Vec<u8>,
    directions: Vec<u8>,
    source_ports: Vec<u16>,
    destination_ports: Vec<u16>,
    source_identities: Vec<u32>,
    destination_identities: Vec<u32>,
    source_nets: Vec<(std::net::IpAddr, u8)>,
    destination_nets: Vec<(std::net::IpAddr, u8)>,
}

/// `ip` or `ip/len`; a value that does not parse leaves the field to the full filter.
fn nets(values: &[String]) -> Vec<(std::net::IpAddr, u8)> {
    let parsed: Option<Vec<_>> = values
        .iter()
        .map(|v| {
            let (ip, len) = v.split_once('/').unwrap_or((v, ""));
            let ip: std::net::IpAddr = ip.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = if len.is_empty() {
                max
            } else {
                len.parse().ok().filter(|l| *l <= max)?
            };
            Some((ip, len))
        })
        .collect();
    parsed.unwrap_or_default()
}

/// Whether a datapath address (`family`, 16 bytes) lies in `net`.
fn in_net(net: &(std::net::IpAddr, u8), family: u8, addr: &[u8; 16]) -> bool {
    let mut bytes = [0u8; 16];
    match (net.0, family) {
        (std::net::IpAddr::V4(v4), 4) => bytes[..4].copy_from_slice(&v4.octets()),
        (std::net::IpAddr::V6(v6), 6) => bytes = v6.octets(),
        _ => return false,
    }
    let (full, rest) = (usize::from(net.1 / 8), net.1 % 8);
    bytes[..full] == addr[..full] && (rest == 0 || (bytes[full] ^ addr[full]) >> (8 - rest) == 0)
}

fn ports(values: &[String]) -> Vec<u16> {
    // A value that is not a plain port leaves the field to the full filter.
    let parsed: Option<Vec<u16>> = values.iter().map(|v| v.parse().ok()).collect();
    parsed.unwrap_or_default()
}

impl Prefilter {
    pub fn new(whitelist: &[lumen_proto::flow::FlowFilter]) -> Prefilter {
        let filters = whitelist
            .iter()
            .map(|w| RawFilter {
                verdicts: w.verdict.iter().filter_map(|v| u8::try_from(*v).ok()).collect(),
                drop_reasons: w
                    .drop_reason_desc
                    .iter()
                    .filter_map(|v| u8::try_from(*v).ok())
                    .collect(),
                directions: w
                    .traffic_direction
                    .iter()
                    .filter_map(|v| u8::try_from(*v).ok())
                    .collect(),
                source_ports: ports(&w.source_port),
                destination_ports: ports(&w.destination_port),
                source_identities: w.source_identity.clone(),
                destination_identities: w.destination_identity.clone(),
                source_nets: nets(&w.source_ip),
                destination_nets: nets(&w.destination_ip),
            })
            .collect();
        Prefilter { filters }
    }

    pub fn may_match(&self, ev: &lumen_probes::abi::Event) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f.may_match(ev))
    }
}

impl RawFilter {
    fn may_match(&self, ev: &lumen_probes::abi::Event) -> bool {
        let any = |set: &[u8], v: u8| set.is_empty() || set.contains(&v);
        // Hubble matches ports only on TCP, UDP and SCTP flows.
        let has_ports = matches!(ev.proto, 6 | 17 | 132);
        let port = |set: &[u16], v: u16| set.is_empty() || (has_ports && set.contains(&v));
        let id = |set: &[u32], v: u32| set.is_empty() || set.contains(&v);
        // The datapath's verdict, drop reason and direction numbers are Hubble's.
        any(&self.verdicts, ev.verdict)
            && (self.drop_reasons.is_empty()
                || (ev.verdict == lumen_probes::abi::VERDICT_DROPPED && self.drop_reasons.contains(&ev.drop_reason)))
            && any(&self.directions, crate::parser::connection_direction(ev))
            && port(&self.source_ports, ev.sport)
            && port(&self.destination_ports, ev.dport)
            && id(&self.source_identities, ev.src_identity)
            && id(&self.destination_identities, ev.dst_identity)
            && (self.source_nets.is_empty() || self.source_nets.iter().any(|n| in_net(n, ev.family, &ev.saddr)))
            && (self.destination_nets.is_empty()
                || self.destination_nets.iter().any(|n| in_net(n, ev.family, &ev.daddr)))
    }
}

/// Sends the kernel losses from id `next` on that precede flow `upto_seq`;
/// false if the client left.
async fn send_kernel_losses(hub: &Hub, tx: &Tx, next: &mut u64, upto_seq: u64) -> bool {
    for l in hub.kernel_losses(*next, upto_seq) {
        if tx
            .send(Ok(lost(hub, LostEventSource::PerfEventRingBuffer, l.count)))
            .await
            .is_err()
        {
            return false;
        }
        *next = l.id + 1;
    }
    true
}

/// Where a client's stream starts, fixed when its call is answered: a flow
/// stored after the answer is never missed by a follower.
struct Start {
    cursor: u64,
    end: u64,
    next_loss: u64,
    newest: watch::Receiver<u64>,
    kernel: watch::Receiver<u64>,
}

fn start_of(hub: &Hub, q: &Query) -> Start {
    let newest = hub.subscribe_newest();
    let mut kernel = hub.subscribe_kernel_lost();
    kernel.mark_unchanged();
    let (cursor, end) = {
        let (oldest, next) = {
            let store = hub.store();
            (store.oldest(), store.next_seq())
        };
        let rewind = Rewind {
            hub,
            hi: next,
            oldest,
            buf: Vec::new(),
        };
        let start = q.start(rewind, oldest, next, |f| q.matches(hub, f));
        (start, if q.follow { u64::MAX } else { next })
    };
    // A replay starts at a flow: losses before it are outside the window.
    let next_loss = hub.first_kernel_loss_at(if cursor < end.min(hub.store().next_seq()) {
        cursor + 1
    } else {
        cursor
    });
    Start {
        cursor,
        end,
        next_loss,
        newest,
        kernel,
    }
}

/// Streams one client's flows from `start` until done, the client leaves or
/// shutdown. Kernel losses come in stream order, before the first flow after them.
async fn stream_flows(hub: Arc<Hub>, start: Start, q: Query, tx: Tx, mut shutdown: watch::Receiver<bool>) {
    let Start {
        mut cursor,
        end,
        mut next_loss,
        mut newest,
        mut kernel,
    } = start;
    let mut sent = 0;
    loop {
        let max = READ_BATCH.min(usize::try_from(end - cursor).unwrap_or(READ_BATCH));
        let batch = hub.store().read(cursor, max);
        cursor = batch.next;
        if batch.lost > 0 {
            hub.client_lost(batch.lost);
        }
        if batch.lost > 0
            && tx
                .send(Ok(lost(&hub, LostEventSource::HubbleRingBuffer, batch.lost)))
                .await
                .is_err()
        {
            return;
        }
        let idle = batch.flows.is_empty();
        for f in &batch.flows {
            if !send_kernel_losses(&hub, &tx, &mut next_loss, f.seq).await {
                return;
            }
            let mut built = None;
            let admit = q.admit(sent, f, || {
                q.prefilter.may_match(&f.event) && q.filters.matches(built.insert(hub.to_flow(f)))
            });
            match admit {
                Admit::End => return,
                Admit::Skip => {}
                Admit::Send => {
                    let flow = built.unwrap_or_else(|| hub.to_flow(f));
                    if tx.send(Ok(flow_response(flow, &q))).await.is_err() {
                        return;
                    }
                    sent += 1;
                }
            }
        }
        if !send_kernel_losses(&hub, &tx, &mut next_loss, cursor.min(end)).await {
            return;
        }
        if cursor >= end || (!q.follow && idle && batch.lost == 0) {
            return;
        }
        if idle {
            tokio::select! {
                r = newest.changed() => if r.is_err() { return },
                r = kernel.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The `observer.Observer` service of one node.
pub struct ObserverService {
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
}

impl ObserverService {
    pub fn new(hub: Arc<Hub>, shutdown: watch::Receiver<bool>) -> ObserverService {
        ObserverService { hub, shutdown }
    }
}

#[tonic::async_trait]
impl Observer for ObserverService {
    type GetFlowsStream = ReceiverStream<Result<GetFlowsResponse, Status>>;
    type GetAgentEventsStream = ReceiverStream<Result<GetAgentEventsResponse, Status>>;
    type GetDebugEventsStream = ReceiverStream<Result<GetDebugEventsResponse, Status>>;

    async fn get_flows(&self, req: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        let q = Query::new(req.get_ref(), lumen_flow::request::asks_extensions(req.metadata()))?;
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        let start = start_of(&self.hub, &q);
        tokio::spawn(stream_flows(self.hub.clone(), start, q, tx, self.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("lumen-observer does not record agent events"))
    }

    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented(
            "lumen-observer does not record datapath debug events",
        ))
    }

    async fn get_nodes(&self, _: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let s = self.hub.status();
        let node = Node {
            name: self.hub.node_name().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            state: relay::NodeState::NodeConnected as i32,
            uptime_ns: s.uptime_ns,
            num_flows: s.num_flows,
            max_flows: s.max_flows,
            seen_flows: s.seen_flows,
            ..Default::default()
        };
        Ok(Response::new(GetNodesResponse { nodes: vec![node] }))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        let snapshot = self.hub.current();
        let mut names: Vec<&str> = snapshot.endpoints.values().map(|m| m.namespace.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let namespaces = names
            .into_iter()
            .map(|n| Namespace {
                cluster: String::new(),
                namespace: n.to_string(),
            })
            .collect();
        Ok(Response::new(GetNamespacesResponse { namespaces }))
    }

    async fn server_status(&self, _: Request<ServerStatusRequest>) -> Result<Response<ServerStatusResponse>, Status> {
        let s = self.hub.status();
        let mut response = Response::new(ServerStatusResponse {
            num_flows: s.num_flows,
            max_flows: s.max_flows,
            seen_flows: s.seen_flows,
            uptime_ns: s.uptime_ns,
            num_connected_nodes: Some(1),
            num_unavailable_nodes: Some(0),
            unavailable_nodes: Vec::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            flows_rate: s.flows_rate,
        });
        // Losses have no field in Hubble's message: Lumen adds them as
        // response metadata, which Hubble clients ignore.
        let meta = response.metadata_mut();
        meta.insert(LOST_KERNEL_HEADER, s.kernel_lost.into());
        meta.insert(LOST_CLIENT_HEADER, s.client_lost.into());
        Ok(response)
    }
}

/// A gRPC channel to a server on a Unix socket (tonic dials only TCP by
/// itself): for the CLI, tests and benchmarks.
pub async fn connect_unix(path: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    tonic::transport::Endpoint::from_static("http://lumen")
        .max_frame_size(lumen_proto::MAX_FRAME_SIZE)
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

/// Binds the Unix socket, replacing a stale socket file.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(path)
}

pub async fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the Observer, Peer and health services until `shutdown` turns true.
pub async fn serve(
    hub: Arc<Hub>,
    peers: Arc<crate::peer::Peers>,
    unix: UnixListener,
    tcp: Option<TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    serve_tls(hub, peers, unix, tcp, None, shutdown).await
}

/// [`serve`], with TLS (and mTLS, if it names client CAs) on the TCP
/// listener; the Unix socket stays local and plain.
pub async fn serve_tls(
    hub: Arc<Hub>,
    peers: Arc<crate::peer::Peers>,
    unix: UnixListener,
    tcp: Option<TcpListener>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(HEALTH_SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    let router = |mut builder: tonic::transport::Server| {
        builder
            .add_service(health.clone())
            .add_service(ObserverServer::new(ObserverService::new(hub.clone(), shutdown.clone())))
            .add_service(lumen_proto::peer::peer_server::PeerServer::new(
                crate::peer::PeerService::new(peers.clone(), shutdown.clone()),
            ))
    };
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let shutdown_after = shutdown.clone();
    let on_unix = router(tonic::transport::Server::builder())
        .serve_with_incoming_shutdown(UnixListenerStream::new(unix), stop(shutdown.clone()));
    // The TCP listener may speak TLS; the same services either way.
    let tcp_builder = match tls {
        Some(tls) => tonic::transport::Server::builder().tls_config(tls)?,
        None => tonic::transport::Server::builder(),
    };
    let tcp_router = router(tcp_builder);
    let on_tcp = tcp.map(|tcp| tcp_router.serve_with_incoming_shutdown(nodelay(tcp), stop(shutdown.clone())));
    let both = async move {
        match on_tcp {
            Some(on_tcp) => tokio::try_join!(on_unix, on_tcp).map(|_| ()),
            None => on_unix.await,
        }
    };
    // A graceful shutdown waits for clients to hang up; a relay keeps its
    // connection open, so give them a moment and then go anyway.
    tokio::select! {
        served = both => served,
        _ = async {
            stop(shutdown_after.clone()).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}

/// Accepted connections without Nagle's delay: a flow is a small write and
/// must not wait for the next (tonic sets TCP_NODELAY only on connections it
/// dials).
fn nodelay(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// How long open connections may take to close once the observer stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FlowStore;
    use lumen_probes::abi;
    use lumen_proto::flow::{FlowFilter, Verdict};

    /// A store of flows with timestamps 10, 20, … ns; odd ports are drops.
    fn store(n: u16, capacity: usize) -> FlowStore {
        let mut s = FlowStore::new(capacity);
        for p in 1..=n {
            let ev = abi::Event {
                timestamp_ns: u64::from(p) * 10,
                dport: p,
                verdict: if p % 2 == 1 {
                    abi::VERDICT_DROPPED
                } else {
                    abi::VERDICT_FORWARDED
                },
                ..Default::default()
            };
            s.push(ev, 0);
        }
        s
    }

    fn request(number: u64, first: bool, follow: bool) -> GetFlowsRequest {
        GetFlowsRequest {
            number,
            first,
            follow,
            ..Default::default()
        }
    }

    fn ts(ns: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: 0,
            nanos: ns as i32,
        })
    }

    /// What a non-following client gets: the same steps as `stream_flows`
    /// without the channel.
    fn select(s: &FlowStore, req: &GetFlowsRequest, only_drops: bool) -> Vec<u16> {
        let q = Query::new(req, true).unwrap();
        let matches = |f: &StoredFlow| !only_drops || f.event.verdict == abi::VERDICT_DROPPED;
        let start = q.start(s.last(s.len()).into_iter().rev(), s.oldest(), s.next_seq(), matches);
        let mut out = Vec::new();
        for f in s.read(start, usize::MAX).flows {
            match q.admit(out.len() as u64, &f, || matches(&f)) {
                Admit::End => break,
                Admit::Skip => {}
                Admit::Send => out.push(f.event.dport),
            }
        }
        out
    }

    #[test]
    fn last_n_is_the_newest_n_sent_oldest_first() {
        let s = store(10, 6);
        assert_eq!(select(&s, &request(3, false, false), false), [8, 9, 10]);
        // Zero without follow means every flow held.
        assert_eq!(select(&s, &request(0, false, false), false), [5, 6, 7, 8, 9, 10]);
        assert_eq!(select(&s, &request(50, false, false), false), [5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn first_n_starts_at_the_oldest_flow_held() {
        let s = store(10, 6);
        assert_eq!(select(&s, &request(2, true, false), false), [5, 6]);
    }

    #[test]
    fn last_n_counts_only_matching_flows() {
        let s = store(10, 10);
        assert_eq!(select(&s, &request(2, false, false), true), [7, 9]);
        assert_eq!(select(&s, &request(2, true, false), true), [1, 3]);
    }

    #[test]
    fn since_takes_precedence_over_number_and_until_ends_the_stream() {
        let s = store(10, 10);
        let mut req = request(0, false, false);
        req.since = ts(45);
        assert_eq!(select(&s, &req, false), [5, 6, 7, 8, 9, 10]);
        req.number = 2;
        assert_eq!(select(&s, &req, false), [5, 6]);
        req.number = 0;
        req.until = ts(70);
        assert_eq!(select(&s, &req, false), [5, 6, 7]);
        let mut req = request(3, true, false);
        req.until = ts(20);
        assert_eq!(select(&s, &req, false), [1, 2]);
    }

    #[test]
    fn follow_without_number_starts_at_the_next_flow() {
        let s = store(10, 10);
        let q = Query::new(&request(0, false, true), true).unwrap();
        assert_eq!(
            q.start(s.last(10).into_iter().rev(), s.oldest(), s.next_seq(), |_| true),
            10
        );
        let q = Query::new(&request(2, false, true), true).unwrap();
        assert_eq!(
            q.start(s.last(10).into_iter().rev(), s.oldest(), s.next_seq(), |_| true),
            8
        );
    }

    fn port_or_lost(r: GetFlowsResponse) -> (i32, u64) {
        match r.response_types.unwrap() {
            ResponseTypes::Flow(f) => match f.l4.and_then(|l| l.protocol) {
                Some(lumen_proto::flow::layer4::Protocol::Tcp(t)) => (0, u64::from(t.destination_port)),
                other => panic!("unexpected l4 {other:?}"),
            },
            ResponseTypes::LostEvents(l) => (l.source, l.num_events_lost),
            ResponseTypes::NodeStatus(n) => panic!("unexpected node status {n:?}"),
        }
    }

    fn tcp(port: u16) -> abi::Event {
        abi::Event {
            family: 4,
            proto: 6,
            dport: port,
            ..Default::default()
        }
    }

    // A current-thread runtime: the stream task runs only when the test yields.
    #[tokio::test(flavor = "current_thread")]
    async fn a_follower_the_store_laps_is_told_exactly_what_it_missed() {
        let hub = Hub::new("n1", 4);
        hub.push([tcp(1), tcp(2)]);
        let (tx, mut rx) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        let q = Query::new(&request(2, false, true), true).unwrap();
        tokio::spawn(stream_flows(hub.clone(), start_of(&hub, &q), q, tx, shutdown));
        // The task sends flow 1, then waits for room for flow 2.
        tokio::task::yield_now().await;
        hub.push((3..=12).map(tcp));
        let mut got = Vec::new();
        for _ in 0..7 {
            got.push(port_or_lost(rx.recv().await.unwrap().unwrap()));
        }
        let hubble = LostEventSource::HubbleRingBuffer as i32;
        assert_eq!(got, [(0, 1), (0, 2), (hubble, 6), (0, 9), (0, 10), (0, 11), (0, 12)]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn kernel_losses_reach_followers_and_shutdown_ends_the_stream() {
        let hub = Hub::new("n1", 4);
        let (tx, mut rx) = mpsc::channel(8);
        let (stop, shutdown) = watch::channel(false);
        let q = Query::new(&request(0, false, true), true).unwrap();
        tokio::spawn(stream_flows(hub.clone(), start_of(&hub, &q), q, tx, shutdown));
        tokio::task::yield_now().await;
        hub.kernel_lost(5);
        let r = rx.recv().await.unwrap().unwrap();
        assert_eq!(r.node_name, "n1");
        assert_eq!(port_or_lost(r), (LostEventSource::PerfEventRingBuffer as i32, 5));
        hub.push([tcp(80)]);
        assert_eq!(port_or_lost(rx.recv().await.unwrap().unwrap()), (0, 80));
        stop.send_replace(true);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn kernel_losses_reach_replays_in_stream_order() {
        let hub = Hub::new("n1", 4);
        hub.push([tcp(1)]);
        hub.kernel_lost(3);
        hub.push([tcp(2)]);
        hub.kernel_lost(2);
        let replay = |number| {
            let hub = hub.clone();
            async move {
                let (tx, mut rx) = mpsc::channel(16);
                let (_stop, shutdown) = watch::channel(false);
                let q = Query::new(&request(number, false, false), true).unwrap();
                stream_flows(hub.clone(), start_of(&hub, &q), q, tx, shutdown).await;
                let mut got = Vec::new();
                while let Some(r) = rx.recv().await {
                    got.push(port_or_lost(r.unwrap()));
                }
                got
            }
        };
        let perf = LostEventSource::PerfEventRingBuffer as i32;
        assert_eq!(replay(10).await, [(0, 1), (perf, 3), (0, 2), (perf, 2)]);
        // `--last 1` starts at flow 2: the loss before it is not in the window.
        assert_eq!(replay(1).await, [(0, 2), (perf, 2)]);
    }

    #[test]
    fn invalid_requests_are_invalid_arguments_naming_the_problem() {
        let err = |req: &GetFlowsRequest| Status::from(Query::new(req, true).err().unwrap());
        let e = err(&request(5, true, true));
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "first cannot be specified with follow");

        let mut req = request(5, false, false);
        req.whitelist = vec![FlowFilter {
            source_ip: vec!["10.0.0.300".into()],
            ..Default::default()
        }];
        let e = err(&req);
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("invalid filter: "), "{}", e.message());
        assert!(e.message().contains("10.0.0.300"), "{}", e.message());

        let mut req = request(5, false, false);
        req.since = Some(prost_types::Timestamp { seconds: 1, nanos: -1 });
        assert_eq!(err(&req).message(), "invalid since timestamp: 1s -1ns");

        let mut req = request(5, false, false);
        req.whitelist = vec![FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }];
        assert!(Query::new(&req, true).is_ok());
    }

    #[test]
    fn the_prefilter_never_rejects_what_the_filters_accept() {
        let hub = Hub::new("n", 64);
        let mut events = Vec::new();
        for i in 0..48u32 {
            let mut ev = abi::Event {
                family: 4,
                proto: [6, 17, 1][(i % 3) as usize],
                direction: [abi::DIR_INGRESS, abi::DIR_EGRESS][(i % 2) as usize],
                // Every fourth a reply, whose connection goes the other way.
                ct_state: [abi::CT_NEW, abi::CT_REPLY][usize::from(i % 4 == 3)],
                flags: if i % 4 == 3 { abi::EVF_IS_REPLY } else { 0 },
                verdict: [abi::VERDICT_FORWARDED, abi::VERDICT_DROPPED, abi::VERDICT_AUDIT][(i % 3) as usize],
                drop_reason: if i % 3 == 1 { [133, 181][(i % 2) as usize] } else { 0 },
                sport: 40_000 + (i % 4) as u16,
                dport: [80, 8080, 53][(i % 3) as usize],
                src_identity: 300 + i % 2,
                dst_identity: 400 + i % 3,
                ..Default::default()
            };
            ev.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
            ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
            events.push(ev);
        }
        hub.push(events);
        let filters = [
            vec![FlowFilter {
                verdict: vec![Verdict::Dropped as i32],
                destination_port: vec!["8080".into()],
                ..Default::default()
            }],
            vec![FlowFilter {
                drop_reason_desc: vec![181],
                ..Default::default()
            }],
            vec![FlowFilter {
                traffic_direction: vec![1],
                ..Default::default()
            }],
            vec![
                FlowFilter {
                    source_port: vec!["40001".into()],
                    traffic_direction: vec![2],
                    ..Default::default()
                },
                FlowFilter {
                    destination_identity: vec![402],
                    ..Default::default()
                },
            ],
            vec![FlowFilter {
                destination_port: vec!["80".into(), "53".into()],
                verdict: vec![1, 4],
                ..Default::default()
            }],
            vec![FlowFilter {
                source_ip: vec!["10.0.0.1".into()],
                verdict: vec![Verdict::Audit as i32],
                ..Default::default()
            }],
            vec![FlowFilter {
                destination_ip: vec!["10.0.0.0/30".into(), "fd00::/8".into()],
                ..Default::default()
            }],
            vec![FlowFilter {
                source_ip: vec!["10.0.0.0/8".into()],
                destination_ip: vec!["10.0.0.2".into()],
                ..Default::default()
            }],
        ];
        // Addresses: inside and outside a prefix, and across families.
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 0, 0, 2]);
        let n = |s: &str| nets(&[s.to_string()])[0];
        assert!(in_net(&n("10.0.0.0/30"), 4, &v4));
        assert!(!in_net(&n("10.0.0.4/30"), 4, &v4));
        assert!(in_net(&n("10.0.0.2"), 4, &v4));
        assert!(!in_net(&n("fd00::/8"), 4, &v4));
        assert!(nets(&["pod-a".to_string()]).is_empty(), "unparseable: no prefiltering");
        for whitelist in filters {
            let q = Query::new(
                &GetFlowsRequest {
                    whitelist: whitelist.clone(),
                    ..Default::default()
                },
                true,
            )
            .unwrap();
            let held = hub.store().last(64);
            let (mut full, mut pre) = (0, 0);
            for f in &held {
                let matched = q.filters.matches(&hub.to_flow(f));
                let passed = q.prefilter.may_match(&f.event);
                assert!(
                    !matched || passed,
                    "{whitelist:?} rejected a matching flow: {:?}",
                    f.event
                );
                full += usize::from(matched);
                pre += usize::from(passed);
            }
            assert!(
                full > 0 && pre >= full,
                "{whitelist:?}: {full} matched, {pre} passed the prefilter"
            );
        }
        // A selective filter: the prefilter spares building most flows.
        let q = Query::new(
            &GetFlowsRequest {
                whitelist: vec![FlowFilter {
                    verdict: vec![2],
                    destination_port: vec!["8080".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            true,
        )
        .unwrap();
        let passed = hub
            .store()
            .last(64)
            .iter()
            .filter(|f| q.prefilter.may_match(&f.event))
            .count();
        assert_eq!(passed, 16);
    }
}

//! `observer.Observer` for the whole cluster: every call fans out to the
//! connected nodes; flows come back merged in time order, with node status
//! events when nodes come and go.
//!
//! Flows pass through as the bytes the nodes sent ([`RawFlowsResponse`]):
//! the relay reads each response's time and nothing else, and what it
//! writes is what the node wrote. Readers hand flows on in batches, so the
//! per-flow cost is the merge itself.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use lumen_flow::plan::{Keep, Plan, Take};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::observer_server::Observer;
use lumen_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse, GetFlowsRequest,
    GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, GetNodesResponse, Node,
    ServerStatusRequest, ServerStatusResponse,
};
use lumen_proto::relay::{NodeState, NodeStatusEvent};
use lumen_proto::tonic::codec::Streaming;
use lumen_proto::tonic::codegen::BoxStream;
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::{Request, Response, Status};
use lumen_proto::{LOST_CLIENT_HEADER, LOST_KERNEL_HEADER};
use lumen_rpc::raw::{self, RawFlows, RawFlowsResponse, RawFlowsStream};
use lumen_rpc::telemetry::InternalEvent;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt};

use crate::merge::{Merge, SortBuffer};
use crate::metrics::{BufferShare, ClientGuard};
use crate::pool::{Backoff, PeerView, Peers, Pool};
use crate::telemetry::{NodeStreamBroke, Telemetry};

mod follow;
mod history;

use follow::follow_flows;
use history::history_flows;

/// Responses a node's reader hands on at most at once, and that go to the
/// client in one piece.
const BATCH: usize = 256;

/// How flows are merged.
#[derive(Clone, Copy, Debug)]
pub struct MergeOptions {
    /// Follow: responses held at most before the oldest is sent regardless.
    /// History: `number` up to this is the newest `number` of the whole
    /// cluster; above it (as with `--all`), each node's newest `number`,
    /// merged (what Hubble's relay answers).
    pub capacity: usize,
    /// How long a response waits for earlier ones from slower nodes.
    pub window: Duration,
    /// How long a node may take to answer a unary call.
    pub call_timeout: Duration,
}

impl Default for MergeOptions {
    fn default() -> MergeOptions {
        MergeOptions {
            capacity: 10_000,
            window: Duration::from_millis(50),
            call_timeout: Duration::from_secs(2),
        }
    }
}

pub struct RelayService {
    pool: Arc<Pool>,
    options: MergeOptions,
    shutdown: watch::Receiver<bool>,
}

impl RelayService {
    pub fn new(pool: Arc<Pool>, options: MergeOptions, shutdown: watch::Receiver<bool>) -> RelayService {
        RelayService {
            pool,
            options,
            shutdown,
        }
    }

    /// Starts answering `request`: the merged responses, batch by batch.
    /// A request the nodes would refuse is refused here, with their reason.
    /// `extensions_header`: the client sent [`lumen_proto::EXTENSIONS_HEADER`],
    /// which goes on to the nodes (the relay passes their flows on as they are).
    fn open_flows(&self, request: GetFlowsRequest, extensions_header: bool) -> Result<Batches, Status> {
        let extensions = lumen_flow::request::check(&request)?.sends_extensions(extensions_header);
        let (tx, rx) = mpsc::channel(16);
        let (pool, options, shutdown) = (self.pool.clone(), self.options, self.shutdown.clone());
        tokio::spawn(async move {
            if request.follow {
                follow_flows(pool, request, extensions, options, tx, shutdown).await
            } else {
                history_flows(pool, request, extensions, options, tx, shutdown).await
            }
        });
        Ok(Batches {
            rx,
            current: Vec::new().into_iter(),
            _client: self.pool.metrics().client(),
        })
    }
}

impl RawFlows for RelayService {
    fn raw_flows(&self, request: Request<GetFlowsRequest>) -> Result<RawFlowsStream, Status> {
        let header = lumen_flow::request::asks_extensions(request.metadata());
        Ok(Box::pin(self.open_flows(request.into_inner(), header)?))
    }
}

/// A client's responses, as the merge hands them over in batches.
pub struct Batches {
    rx: mpsc::Receiver<Vec<RawFlowsResponse>>,
    current: std::vec::IntoIter<RawFlowsResponse>,
    /// Counts this stream among the open ones while the client holds it.
    _client: ClientGuard,
}

impl Stream for Batches {
    type Item = Result<RawFlowsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(r) = self.current.next() {
                return Poll::Ready(Some(Ok(r)));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.current = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn now() -> lumen_proto::prost_types::Timestamp {
    lumen_proto::prost_types::Timestamp::from(SystemTime::now())
}

fn node_status(state: NodeState, mut names: Vec<String>, message: String) -> RawFlowsResponse {
    names.sort();
    RawFlowsResponse::encode(&GetFlowsResponse {
        node_name: names.first().cloned().unwrap_or_default(),
        time: Some(now()),
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names: names,
            message,
        })),
    })
}

/// What a node's broken stream means to a client: a node whose connection
/// went (it crashed, was killed, its network failed) is unavailable; a node
/// that answered with an error is in error.
fn broken(address: &str, status: &Status) -> (NodeState, String) {
    use lumen_proto::tonic::Code;
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled => (
            NodeState::NodeUnavailable,
            format!("{address}: connection lost ({})", status.message()),
        ),
        _ => (NodeState::NodeError, format!("{address}: {}", status.message())),
    }
}

/// What a stream starts with: which nodes it hears from (one event for
/// all), which are down (one event), and each node in error.
fn opening(connected: Vec<String>, unavailable: Vec<String>, errors: Vec<RawFlowsResponse>) -> Vec<RawFlowsResponse> {
    let mut out = Vec::with_capacity(BATCH);
    for (state, names) in [
        (NodeState::NodeConnected, connected),
        (NodeState::NodeUnavailable, unavailable),
    ] {
        if !names.is_empty() {
            out.push(node_status(state, names, String::new()));
        }
    }
    out.extend(errors);
    out
}

type Out = mpsc::Sender<Vec<RawFlowsResponse>>;

/// Sends a non-empty batch; false when the client is gone.
async fn flush(out: &Out, batch: &mut Vec<RawFlowsResponse>) -> bool {
    batch.is_empty()
        || out
            .send(std::mem::replace(batch, Vec::with_capacity(BATCH)))
            .await
            .is_ok()
}

/// What a node's stream said.
enum Said {
    /// The node accepted the request (its stream is open).
    Opened,
    /// Its next responses, in its order.
    Responses(Vec<RawFlowsResponse>),
    /// The stream ended.
    End,
    Error(Status),
}

/// A node's stream item: (its address, what it said).
type Item = (Arc<str>, Said);

/// Streams the answer to `request` of the node at `address`, called
/// `node`, into `items`; `extensions`: the node is asked for Lumen's flow
/// extension. Its flows are counted, and a stream that fails, in the
/// pool's metrics and telemetry.
async fn read_node(
    address: Arc<str>,
    node: String,
    channel: Channel,
    request: GetFlowsRequest,
    extensions: bool,
    items: mpsc::Sender<Item>,
    pool: Arc<Pool>,
) {
    let telemetry: &Telemetry = pool.telemetry();
    let broke = |reason: &Status| NodeStreamBroke { peer: &address, reason }.emit(telemetry);
    let send = |said| items.send((address.clone(), said));
    let mut grpc = lumen_proto::tonic::client::Grpc::new(channel).max_decoding_message_size(16 << 20);
    let request = if extensions {
        lumen_proto::with_extensions(request)
    } else {
        Request::new(request)
    };
    let mut stream = match raw::get_flows(&mut grpc, request).await {
        Ok(s) => s,
        Err(e) => {
            broke(&e);
            let _ = send(Said::Error(e)).await;
            return;
        }
    };
    if send(Said::Opened).await.is_err() {
        return;
    }
    loop {
        let (batch, end) = next_batch(&mut stream).await;
        pool.metrics().received(&node, &batch);
        if !batch.is_empty() && send(Said::Responses(batch)).await.is_err() {
            return;
        }
        if let Some(end) = end {
            if let Said::Error(e) = &end {
                broke(e);
            }
            let _ = send(end).await;
            return;
        }
    }
}

/// What the stream has ready (at least one response, at most [`BATCH`]),
/// and how it ended if it did.
async fn next_batch(stream: &mut Streaming<RawFlowsResponse>) -> (Vec<RawFlowsResponse>, Option<Said>) {
    let mut batch = Vec::new();
    let end = std::future::poll_fn(|cx| loop {
        match Pin::new(&mut *stream).poll_next(cx) {
            Poll::Ready(Some(Ok(r))) => {
                batch.push(r);
                if batch.len() == BATCH {
                    return Poll::Ready(None);
                }
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Said::Error(e))),
            Poll::Ready(None) => return Poll::Ready(Some(Said::End)),
            Poll::Pending if batch.is_empty() => return Poll::Pending,
            Poll::Pending => return Poll::Ready(None),
        }
    })
    .await;
    (batch, end)
}

/// Aborts the readers when the answer is over, however it ends.
struct Readers(Vec<JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for r in &self.0 {
            r.abort();
        }
    }
}

/// Runs `call` on every connected node at once, each bounded by `timeout`:
/// (the node, its answer or why there is none), in the pool's order.
async fn each_node<T, F, Fut>(peers: &Peers, timeout: Duration, call: F) -> Vec<(PeerView, Result<T, String>)>
where
    F: Fn(ObserverClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>> + Send + 'static,
    T: Send + 'static,
{
    let mut calls = tokio::task::JoinSet::new();
    for (i, p) in peers.values().enumerate() {
        let p = p.clone();
        let fut = p.channel.clone().map(|c| call(ObserverClient::new(c)));
        calls.spawn(async move {
            let answer = match fut {
                None => Err(p.error.clone().unwrap_or_else(|| "not connected".into())),
                Some(f) => match tokio::time::timeout(timeout, f).await {
                    Ok(Ok(r)) => Ok(r.into_inner()),
                    Ok(Err(s)) => Err(s.message().to_string()),
                    Err(_) => Err("did not answer in time".into()),
                },
            };
            (i, p, answer)
        });
    }
    let mut out: Vec<_> = calls.join_all().await;
    out.sort_by_key(|(i, ..)| *i);
    out.into_iter().map(|(_, p, a)| (p, a)).collect()
}

#[lumen_proto::tonic::async_trait]
impl Observer for RelayService {
    type GetFlowsStream = BoxStream<GetFlowsResponse>;
    type GetAgentEventsStream = BoxStream<GetAgentEventsResponse>;
    type GetDebugEventsStream = BoxStream<GetDebugEventsResponse>;

    /// The same answer decoded (the relay's server passes it through
    /// undecoded: [`RawFlows`]).
    async fn get_flows(&self, req: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        let header = lumen_flow::request::asks_extensions(req.metadata());
        let raw = self.open_flows(req.into_inner(), header)?;
        let decoded = raw.map(|r| r.and_then(|r| r.decode().map_err(|e| Status::internal(e.to_string()))));
        Ok(Response::new(Box::pin(decoded)))
    }

    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("Lumen has no agent events"))
    }

    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("Lumen has no debug events"))
    }

    async fn get_nodes(&self, _: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let peers = self.pool.peers();
        let answers = each_node(&peers, self.options.call_timeout, |mut c| async move {
            c.server_status(ServerStatusRequest {}).await
        })
        .await;
        let mut nodes: Vec<Node> = answers
            .into_iter()
            .map(|(p, status)| {
                let mut node = Node {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    address: p.address.clone(),
                    state: p.state as i32,
                    ..Default::default()
                };
                if let Ok(s) = status {
                    node.uptime_ns = s.uptime_ns;
                    node.num_flows = s.num_flows;
                    node.max_flows = s.max_flows;
                    node.seen_flows = s.seen_flows;
                } else if p.state == NodeState::NodeConnected {
                    node.state = NodeState::NodeError as i32;
                }
                node
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(GetNodesResponse { nodes }))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        let peers = self.pool.peers();
        let answers = each_node(&peers, self.options.call_timeout, |mut c| async move {
            c.get_namespaces(GetNamespacesRequest {}).await
        })
        .await;
        let mut all = BTreeSet::new();
        for (_, answer) in answers {
            for ns in answer.map(|a| a.namespaces).unwrap_or_default() {
                all.insert((ns.cluster, ns.namespace));
            }
        }
        let namespaces = all
            .into_iter()
            .map(|(cluster, namespace)| lumen_proto::observer::Namespace { cluster, namespace })
            .collect();
        Ok(Response::new(GetNamespacesResponse { namespaces }))
    }

    async fn server_status(&self, _: Request<ServerStatusRequest>) -> Result<Response<ServerStatusResponse>, Status> {
        let peers = self.pool.peers();
        let answers = each_node(&peers, self.options.call_timeout, |mut c| async move {
            let r = c.server_status(ServerStatusRequest {}).await?;
            let count = |key: &str| -> u64 {
                r.metadata()
                    .get(key)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0)
            };
            let lost = (count(LOST_KERNEL_HEADER), count(LOST_CLIENT_HEADER));
            Ok(Response::new((r.into_inner(), lost)))
        })
        .await;
        let mut sum = ServerStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        };
        let (mut connected, mut unavailable, mut lost) = (0u32, Vec::new(), (0u64, 0u64));
        for (p, answer) in answers {
            match answer {
                Ok((s, (kernel, client))) => {
                    connected += 1;
                    sum.num_flows += s.num_flows;
                    sum.max_flows += s.max_flows;
                    sum.seen_flows += s.seen_flows;
                    sum.uptime_ns = sum.uptime_ns.max(s.uptime_ns);
                    sum.flows_rate += s.flows_rate;
                    lost = (lost.0 + kernel, lost.1 + client);
                }
                Err(_) => unavailable.push(p.name.clone()),
            }
        }
        unavailable.sort();
        sum.num_connected_nodes = Some(connected);
        sum.num_unavailable_nodes = Some(unavailable.len() as u32);
        sum.unavailable_nodes = unavailable;
        // The connected nodes' losses, as each observer reports its own.
        let mut response = Response::new(sum);
        let meta = response.metadata_mut();
        meta.insert(LOST_KERNEL_HEADER, lost.0.into());
        meta.insert(LOST_CLIENT_HEADER, lost.1.into());
        Ok(response)
    }
}

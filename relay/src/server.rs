//! `observer.Observer` for the whole cluster: every call fans out to the
//! connected nodes; flows come back merged in time order, with node status
//! events when nodes come and go.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::observer_server::Observer;
use lumen_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse, GetFlowsRequest,
    GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, GetNodesResponse, Node,
    ServerStatusRequest, ServerStatusResponse,
};
use lumen_proto::relay::{NodeState, NodeStatusEvent};
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::{Request, Response, Status};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::merge::{self, SortBuffer};
use crate::pool::{PeerView, Peers, Pool};

/// How flows are merged.
#[derive(Clone, Copy, Debug)]
pub struct MergeOptions {
    /// Responses held at most before the oldest is sent regardless.
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
}

fn now() -> lumen_proto::prost_types::Timestamp {
    lumen_proto::prost_types::Timestamp::from(SystemTime::now())
}

fn node_status(state: NodeState, mut names: Vec<String>, message: String) -> GetFlowsResponse {
    names.sort();
    GetFlowsResponse {
        node_name: names.first().cloned().unwrap_or_default(),
        time: Some(now()),
        response_types: Some(ResponseTypes::NodeStatus(NodeStatusEvent {
            state_change: state as i32,
            node_names: names,
            message,
        })),
    }
}

type Tx = mpsc::Sender<Result<GetFlowsResponse, Status>>;

/// What a node's stream said.
enum Said {
    /// The node accepted the request (its stream is open).
    Opened,
    Response(Box<GetFlowsResponse>),
    /// The stream ended.
    End,
    Error(Status),
}

/// A node's stream item: (address, node name, what it said). The names are
/// shared, not copied, per flow.
type Item = (Arc<str>, Arc<str>, Said);

/// Streams one node's answer to `request` into `items`.
async fn read_node(
    address: Arc<str>,
    node: Arc<str>,
    channel: Channel,
    request: GetFlowsRequest,
    items: mpsc::Sender<Item>,
) {
    let mut client = ObserverClient::new(channel).max_decoding_message_size(16 << 20);
    let mut stream = match client.get_flows(request).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            let _ = items.send((address, node, Said::Error(e))).await;
            return;
        }
    };
    let mut said = Said::Opened;
    loop {
        let last = matches!(said, Said::End | Said::Error(_));
        if items.send((address.clone(), node.clone(), said)).await.is_err() || last {
            return;
        }
        said = match stream.message().await {
            Ok(Some(r)) => Said::Response(Box::new(r)),
            Ok(None) => Said::End,
            Err(e) => Said::Error(e),
        };
    }
}

/// A follow stream's view of one node.
struct Tracked {
    name: String,
    /// Announced as connected to this client.
    up: bool,
    reader: Option<tokio::task::JoinHandle<()>>,
    /// When to open its stream again after it broke.
    retry: Option<(Instant, crate::pool::Backoff)>,
    /// The error this client was last told about (not repeated).
    error: Option<String>,
}

/// One client's merged stream, until done, the client leaves or shutdown.
/// Every node gets the request; their answers go through the sort buffer
/// (follow) or are sorted whole (otherwise). Node status events tell the
/// client which nodes it hears from.
async fn relay_flows(
    pool: Arc<Pool>,
    request: GetFlowsRequest,
    options: MergeOptions,
    tx: Tx,
    mut shutdown: watch::Receiver<bool>,
) {
    let follow = request.follow;
    let mut peers = pool.subscribe();
    let (items_tx, mut items) = mpsc::channel::<Item>(1024);
    let mut nodes: BTreeMap<String, Tracked> = BTreeMap::new();
    let mut buffer = SortBuffer::new(options.capacity, options.window);
    let mut collected = Vec::new();
    let send = |r: GetFlowsResponse| {
        let tx = tx.clone();
        async move { tx.send(Ok(r)).await.is_ok() }
    };
    let spawn = |address: &str, name: &str, channel: &Channel, request: &GetFlowsRequest| {
        tokio::spawn(read_node(
            Arc::from(address),
            Arc::from(name),
            channel.clone(),
            request.clone(),
            items_tx.clone(),
        ))
    };

    let start: Peers = peers.borrow_and_update().clone();
    let (mut connected, mut unavailable) = (Vec::new(), Vec::new());
    let mut errors = Vec::new();
    for (address, p) in start.iter() {
        let reader = p.channel.as_ref().map(|c| spawn(address, &p.name, c, &request));
        match (&reader, p.state) {
            (Some(_), _) => {}
            (None, NodeState::NodeError) => errors.push(node_status(
                NodeState::NodeError,
                vec![p.name.clone()],
                p.error.clone().unwrap_or_default(),
            )),
            (None, _) => unavailable.push(p.name.clone()),
        }
        let tracked = Tracked {
            name: p.name.clone(),
            up: false,
            reader,
            retry: None,
            error: (p.state == NodeState::NodeError).then(|| p.error.clone().unwrap_or_default()),
        };
        nodes.insert(address.clone(), tracked);
    }
    // A follower hears "connected" once the node's stream is open, so that
    // every flow stored after that reaches it. What arrives meanwhile waits.
    let mut early = Vec::new();
    if follow {
        let deadline = tokio::time::Instant::now() + options.call_timeout;
        while nodes.values().any(|t| t.reader.is_some() && !t.up) {
            let Ok(Some((address, node, said))) = tokio::time::timeout_at(deadline, items.recv()).await else {
                break;
            };
            let Some(t) = nodes.get_mut(&*address) else { continue };
            match said {
                Said::Opened => {
                    t.up = true;
                    connected.push(node.to_string());
                }
                Said::Response(r) => early.extend(buffer.push(r, Instant::now())),
                Said::End | Said::Error(_) => {
                    t.reader = None;
                    let backoff = crate::pool::Backoff::new(Duration::from_millis(200), Duration::from_secs(5), 1);
                    t.retry = Some((Instant::now() + Duration::from_millis(200), backoff));
                    unavailable.push(node.to_string());
                }
            }
        }
    } else {
        for t in nodes.values_mut().filter(|t| t.reader.is_some()) {
            t.up = true;
            connected.push(t.name.clone());
        }
    }
    for (state, names) in [
        (NodeState::NodeConnected, connected),
        (NodeState::NodeUnavailable, unavailable),
    ] {
        if !names.is_empty() && !send(node_status(state, names, String::new())).await {
            return;
        }
    }
    for e in errors {
        if !send(e).await {
            return;
        }
    }
    for r in early {
        if !send(r).await {
            return;
        }
    }
    // A node that (re)connects later joins a follow stream from then on.
    let later = GetFlowsRequest {
        number: 0,
        first: false,
        since: None,
        ..request.clone()
    };

    loop {
        if !follow && nodes.values().all(|n| n.reader.is_none()) {
            for r in merge::select(std::mem::take(&mut collected), request.number, request.first) {
                if !send(r).await {
                    return;
                }
            }
            return;
        }
        let deadline = buffer.next_deadline();
        let retry_at = nodes.values().filter_map(|n| n.retry.as_ref().map(|r| r.0)).min();
        let mut events = Vec::new();
        tokio::select! {
            item = items.recv() => {
                let Some((address, node, said)) = item else { return };
                let Some(t) = nodes.get_mut(&*address) else { continue };
                match said {
                    Said::Opened => {
                        if let Some((_, backoff)) = t.retry.as_mut() { backoff.reset(); }
                        t.retry = None;
                        if !t.up {
                            t.up = true;
                            events.push(node_status(NodeState::NodeConnected, vec![node.to_string()], String::new()));
                        }
                    }
                    Said::Response(r) if follow => {
                        if let Some(out) = buffer.push(r, Instant::now()) {
                            events.push(out);
                        }
                    }
                    Said::Response(r) => collected.push(*r),
                    Said::End | Said::Error(_) if !follow => {
                        t.reader = None;
                        if let Said::Error(status) = said {
                            events.push(node_status(NodeState::NodeError, vec![node.to_string()], format!("{address}: {}", status.message())));
                        }
                    }
                    Said::End | Said::Error(_) => {
                        // Try again (the node may be back, or its connection
                        // may come back by itself) and say so only once.
                        t.reader = None;
                        let mut backoff = t.retry.take().map(|r| r.1).unwrap_or_else(|| {
                            crate::pool::Backoff::new(Duration::from_millis(200), Duration::from_secs(5), address.len() as u64)
                        });
                        t.retry = Some((Instant::now() + backoff.next_wait(), backoff));
                        if t.up {
                            t.up = false;
                            let (state, message) = match said {
                                Said::Error(s) => (NodeState::NodeError, format!("{address}: {}", s.message())),
                                _ => (NodeState::NodeUnavailable, format!("{address} ended the stream")),
                            };
                            events.push(node_status(state, vec![node.to_string()], message));
                        }
                    }
                }
            }
            changed = peers.changed(), if follow => {
                if changed.is_err() { return; }
                let now: Peers = peers.borrow_and_update().clone();
                for (address, p) in now.iter() {
                    let t = nodes.entry(address.clone()).or_insert_with(|| Tracked { name: p.name.clone(), up: false, reader: None, retry: None, error: None });
                    t.name = p.name.clone();
                    match &p.channel {
                        Some(channel) if t.reader.is_none() => {
                            t.reader = Some(spawn(address, &p.name, channel, &later));
                            t.retry = None;
                        }
                        None if t.up => {
                            t.up = false;
                            if let Some(r) = t.reader.take() { r.abort(); }
                            let state = if p.state == NodeState::NodeError { NodeState::NodeError } else { NodeState::NodeUnavailable };
                            t.error = (state == NodeState::NodeError).then(|| p.error.clone().unwrap_or_default());
                            events.push(node_status(state, vec![p.name.clone()], p.error.clone().unwrap_or_default()));
                        }
                        // A node that was never up may still fail in a new way (TLS).
                        None if p.state == NodeState::NodeError && t.error != p.error => {
                            t.error = p.error.clone();
                            events.push(node_status(NodeState::NodeError, vec![p.name.clone()], p.error.clone().unwrap_or_default()));
                        }
                        _ => {}
                    }
                }
                let gone: Vec<String> = nodes.keys().filter(|a| !now.contains_key(*a)).cloned().collect();
                for address in gone {
                    if let Some(t) = nodes.remove(&address) {
                        if let Some(r) = t.reader { r.abort(); }
                        events.push(node_status(NodeState::NodeGone, vec![t.name], String::new()));
                    }
                }
            }
            _ = sleep_until(retry_at), if retry_at.is_some() => {
                let current = pool.peers();
                let due = Instant::now();
                for (address, t) in nodes.iter_mut() {
                    if t.retry.as_ref().is_some_and(|r| r.0 <= due) && t.reader.is_none() {
                        match current.get(address).and_then(|p| p.channel.as_ref()) {
                            Some(channel) => t.reader = Some(spawn(address, &t.name, channel, &later)),
                            // The pool will say when it is back.
                            None => t.retry = None,
                        }
                        if let Some(r) = t.retry.as_mut() {
                            r.0 = due + r.1.next_wait();
                        }
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                events.extend(buffer.ready(Instant::now()));
            }
            _ = tx.closed() => return,
            _ = shutdown.changed() => return,
        }
        for e in events {
            if !send(e).await {
                return;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
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
    type GetFlowsStream = ReceiverStream<Result<GetFlowsResponse, Status>>;
    type GetAgentEventsStream = ReceiverStream<Result<GetAgentEventsResponse, Status>>;
    type GetDebugEventsStream = ReceiverStream<Result<GetDebugEventsResponse, Status>>;

    async fn get_flows(&self, req: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        let request = req.into_inner();
        if request.first && request.follow {
            return Err(Status::invalid_argument("first cannot be specified with follow"));
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(relay_flows(
            self.pool.clone(),
            request,
            self.options,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
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
            c.server_status(ServerStatusRequest {}).await
        })
        .await;
        let mut sum = ServerStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        };
        let (mut connected, mut unavailable) = (0u32, Vec::new());
        for (p, answer) in answers {
            match answer {
                Ok(s) => {
                    connected += 1;
                    sum.num_flows += s.num_flows;
                    sum.max_flows += s.max_flows;
                    sum.seen_flows += s.seen_flows;
                    sum.uptime_ns = sum.uptime_ns.max(s.uptime_ns);
                    sum.flows_rate += s.flows_rate;
                }
                Err(_) => unavailable.push(p.name.clone()),
            }
        }
        unavailable.sort();
        sum.num_connected_nodes = Some(connected);
        sum.num_unavailable_nodes = Some(unavailable.len() as u32);
        sum.unavailable_nodes = unavailable;
        Ok(Response::new(sum))
    }
}

//! The `observer.Observer` service of one node: `GetFlows` answered from
//! the hub through a subscription per call, status and nodes from the hub's
//! counts, namespaces from the current enrichment snapshot.

use std::sync::Arc;

use lumen_proto::observer::observer_server::Observer;
use lumen_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse, GetFlowsRequest,
    GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, GetNodesResponse, Namespace, Node,
    ServerStatusRequest, ServerStatusResponse,
};
use lumen_proto::tonic::{self, Request, Response, Status};
use lumen_proto::{relay, LOST_CLIENT_HEADER, LOST_KERNEL_HEADER};
use lumen_rpc::raw::{RawFlows, RawFlowsResponse, RawFlowsStream, RawObserverServer};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::query::Query;
use super::stream::{stream_flows, Tx, BATCH};
use crate::hub::Hub;
use crate::parser::Encoder;

/// Responses buffered per client before it falls behind in the store
/// (typed: responses; encoded: batches of up to [`BATCH`] responses).
const CLIENT_BUFFER: usize = 256;
const CLIENT_BATCHES: usize = 4;

/// The `observer.Observer` service of one node.
pub struct ObserverService {
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
}

impl ObserverService {
    pub fn new(hub: Arc<Hub>, shutdown: watch::Receiver<bool>) -> ObserverService {
        ObserverService { hub, shutdown }
    }

    /// The service as served: `GetFlows` answers written as encoded bytes
    /// straight from the stored records ([`RawFlows`]), the other calls typed.
    pub fn into_server(self) -> RawObserverServer<ObserverService> {
        RawObserverServer::new(self)
    }

    fn start(&self, req: &Request<GetFlowsRequest>, tx: impl FnOnce() -> Tx) -> Result<(), Status> {
        let q = Query::new(req.get_ref(), lumen_flow::request::asks_extensions(req.metadata()))?;
        let sub = q.subscribe(&self.hub);
        tokio::spawn(stream_flows(sub, q, tx(), self.shutdown.clone()));
        Ok(())
    }
}

impl RawFlows for ObserverService {
    fn raw_flows(&self, req: Request<GetFlowsRequest>) -> Result<RawFlowsStream, Status> {
        let (tx, rx) = mpsc::channel(CLIENT_BATCHES);
        let encoder = Box::new(Encoder::new(self.hub.instance()));
        self.start(&req, || Tx::Encoded(tx, encoder, Vec::with_capacity(BATCH)))?;
        Ok(Box::pin(Unbatched::new(rx)))
    }
}

/// The responses of a channel of batches, one by one.
pub(super) struct Unbatched {
    rx: mpsc::Receiver<Vec<RawFlowsResponse>>,
    batch: std::vec::IntoIter<RawFlowsResponse>,
}

impl Unbatched {
    pub(super) fn new(rx: mpsc::Receiver<Vec<RawFlowsResponse>>) -> Unbatched {
        Unbatched {
            rx,
            batch: Vec::new().into_iter(),
        }
    }
}

impl tokio_stream::Stream for Unbatched {
    type Item = Result<RawFlowsResponse, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            if let Some(r) = self.batch.next() {
                return std::task::Poll::Ready(Some(Ok(r)));
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(batch) => self.batch = batch.into_iter(),
                None => return std::task::Poll::Ready(None),
            }
        }
    }
}

#[tonic::async_trait]
impl Observer for ObserverService {
    type GetFlowsStream = ReceiverStream<Result<GetFlowsResponse, Status>>;
    type GetAgentEventsStream = ReceiverStream<Result<GetAgentEventsResponse, Status>>;
    type GetDebugEventsStream = ReceiverStream<Result<GetDebugEventsResponse, Status>>;

    async fn get_flows(&self, req: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        self.start(&req, || Tx::Typed(tx))?;
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
        if let Some(dropped) = self.hub.telemetry().exporter_dropped() {
            meta.insert(lumen_proto::EXPORTER_DROPPED_HEADER, dropped.into());
        }
        Ok(response)
    }
}

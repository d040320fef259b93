//! Replaying nodes: what the real observers answered, recorded once, served
//! again as encoded bytes. They cost next to nothing per flow, so the relay,
//! not the nodes, is what limits the rate.

use std::net::SocketAddr;
use std::sync::Arc;

use lumen_proto::observer::observer_server::Observer;
use lumen_proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse, GetFlowsRequest,
    GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse, GetNodesRequest, GetNodesResponse,
    ServerStatusRequest, ServerStatusResponse,
};
use lumen_proto::tonic::codegen::BoxStream;
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::{Request, Response, Status};
use lumen_rpc::raw::{RawFlows, RawFlowsResponse, RawFlowsStream, RawObserverServer};
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use crate::cluster::Node;
use crate::PER_NODE;

pub struct Replay {
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
    /// The recorded answer as fast as the relay takes it; a follow stream
    /// then stays open, as a node's does, with nothing more to say.
    fn raw_flows(&self, request: lumen_proto::tonic::Request<GetFlowsRequest>) -> Result<RawFlowsStream, Status> {
        let answer = self.answer.clone();
        let recorded = tokio_stream::iter((0..answer.len()).map(move |i| Ok(answer[i].clone())));
        Ok(match request.get_ref().follow {
            true => Box::pin(recorded.chain(tokio_stream::pending())),
            false => Box::pin(recorded),
        })
    }
}

/// Each real node's whole answer, as it sent it.
pub async fn record_answers(nodes: &[Node]) -> Vec<Vec<RawFlowsResponse>> {
    let mut out = Vec::new();
    for n in nodes {
        let channel = Channel::from_shared(format!("http://{}", n.address))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = lumen_proto::tonic::client::Grpc::new(channel).max_decoding_message_size(16 << 20);
        let mut s = lumen_rpc::raw::get_flows(&mut grpc, lumen_proto::with_extensions(GetFlowsRequest::default()))
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
pub async fn start_replays(answers: Vec<Vec<RawFlowsResponse>>) -> (Vec<SocketAddr>, watch::Sender<bool>) {
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

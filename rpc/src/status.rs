//! What a server (relay or observer) says of itself, as the dashboards ask
//! for it beside their flow stream: its ServerStatus and its nodes.

use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetNodesRequest, Node, ServerStatusRequest, ServerStatusResponse};
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::Status;

use crate::{Connector, TlsArgs};

/// A server's status and nodes, asked for together.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerView {
    pub status: ServerStatusResponse,
    pub nodes: Vec<Node>,
}

impl ServerView {
    /// A relay names its nodes' addresses; an observer answers for itself.
    pub fn is_relay(&self) -> bool {
        self.nodes.iter().any(|n| !n.address.is_empty())
    }
}

/// Asks the server on `channel` for its status and nodes.
pub async fn server_view(channel: Channel) -> Result<ServerView, Status> {
    let mut client = ObserverClient::new(channel);
    let status = client.server_status(ServerStatusRequest {}).await?.into_inner();
    let nodes = client.get_nodes(GetNodesRequest {}).await?.into_inner().nodes;
    Ok(ServerView { status, nodes })
}

/// A [`Connector`] to `server` as `--server` takes it (empty: the relay if
/// one answers, else the local observer), with `tls`.
pub fn connector(server: &str, tls: &TlsArgs) -> Connector {
    let (given, tls) = (server.to_string(), tls.clone());
    Box::new(move || {
        let (given, tls) = (given.clone(), tls.clone());
        Box::pin(async move {
            crate::connect_default(&given, &tls)
                .await
                .map(|(channel, _)| channel)
                .map_err(|e| e.to_string())
        })
    })
}

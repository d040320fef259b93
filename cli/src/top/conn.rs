//! The dashboard's link to the server: a follow stream that reconnects
//! (lumen-rpc's [`Follow`]) and, beside it, a poll of the server's status
//! and nodes every [`POLL`] for the header and the Nodes tab. Everything
//! arrives on one channel as [`Update`]s; the dashboard never waits on the
//! network.

use std::time::{Duration, SystemTime};

use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetFlowsRequest, GetNodesRequest, Node, ServerStatusRequest};
use lumen_rpc::{Backoff, Connector, Follow, FollowEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::server::ServerArgs;

/// How often the status and the nodes are asked for.
pub const POLL: Duration = Duration::from_secs(2);

/// What the server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Relay,
    Observer,
}

/// The server's own account of itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    pub kind: Kind,
    pub connected: u32,
    pub unavailable: Vec<String>,
    pub nodes: Vec<Node>,
    pub version: String,
}

#[derive(Debug)]
pub enum Update {
    Follow(FollowEvent),
    Status(ServerInfo),
    StatusFailed(String),
}

/// A running connection; dropping it stops both tasks.
pub struct Link {
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn connector(server: &ServerArgs) -> Connector {
    let (given, tls) = (server.server.clone(), server.tls.clone());
    Box::new(move || {
        let (given, tls) = (given.clone(), tls.clone());
        Box::pin(async move {
            lumen_rpc::connect_default(&given, &tls)
                .await
                .map(|(channel, _)| channel)
                .map_err(|e| e.to_string())
        })
    })
}

/// Follows `request` on the server and polls its status, sending both to `tx`.
pub fn start(server: &ServerArgs, request: GetFlowsRequest, tx: mpsc::Sender<Update>) -> Link {
    let mut follow = Follow::new(
        connector(server),
        request,
        true,
        Backoff::new(Duration::from_millis(250), Duration::from_secs(5)),
    );
    let flows = tokio::spawn({
        let tx = tx.clone();
        async move {
            loop {
                let event = follow.next().await;
                if tx.send(Update::Follow(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut connect = connector(server);
    let status = tokio::spawn(async move {
        loop {
            let update = match connect().await {
                Ok(channel) => match info(ObserverClient::new(channel)).await {
                    Ok(info) => Update::Status(info),
                    Err(e) => Update::StatusFailed(e.message().to_string()),
                },
                Err(e) => Update::StatusFailed(e),
            };
            if tx.send(update).await.is_err() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Link { tasks: [flows, status] }
}

async fn info(
    mut client: ObserverClient<lumen_proto::tonic::transport::Channel>,
) -> Result<ServerInfo, lumen_proto::tonic::Status> {
    let status = client.server_status(ServerStatusRequest {}).await?.into_inner();
    let nodes = client.get_nodes(GetNodesRequest {}).await?.into_inner().nodes;
    // A relay names its nodes' addresses; an observer answers for itself.
    let kind = match nodes.iter().any(|n| !n.address.is_empty()) {
        true => Kind::Relay,
        false => Kind::Observer,
    };
    Ok(ServerInfo {
        kind,
        connected: status.num_connected_nodes.unwrap_or(1),
        unavailable: status.unavailable_nodes,
        nodes,
        version: status.version,
    })
}

/// The request the dashboard follows: everything from `history` ago on,
/// with the filters given, and Lumen's extension (why a flow was dropped).
pub fn request(filters: &crate::filters::FilterFlags, history: Duration, now: SystemTime) -> GetFlowsRequest {
    GetFlowsRequest {
        follow: true,
        since: Some(lumen_proto::prost_types::Timestamp::from(now - history)),
        whitelist: filters.whitelist.clone(),
        blacklist: filters.blacklist.clone(),
        ..Default::default()
    }
}

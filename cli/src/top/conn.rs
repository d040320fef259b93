//! The dashboard's link to the server: a follow stream that reconnects
//! (lumen-rpc's [`Follow`]) and, beside it, a poll of the server's status
//! and nodes every [`POLL`] for the header and the Nodes tab. Everything
//! arrives on one channel as [`Update`]s; the dashboard never waits on the
//! network.

use std::time::{Duration, SystemTime};

use lumen_proto::observer::{GetFlowsRequest, Node};
use lumen_rpc::status::ServerView;
use lumen_rpc::{Backoff, Follow, FollowEvent};
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

/// Follows `request` on the server and polls its status, sending both to `tx`.
pub fn start(server: &ServerArgs, request: GetFlowsRequest, tx: mpsc::Sender<Update>) -> Link {
    let mut follow = Follow::new(
        lumen_rpc::status::connector(&server.server, &server.tls),
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
    let mut connect = lumen_rpc::status::connector(&server.server, &server.tls);
    let status = tokio::spawn(async move {
        loop {
            let update = match connect().await {
                Ok(channel) => match lumen_rpc::status::server_view(channel).await {
                    Ok(view) => Update::Status(info(view)),
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

/// The header's and the Nodes tab's view of the server.
fn info(view: ServerView) -> ServerInfo {
    ServerInfo {
        kind: if view.is_relay() { Kind::Relay } else { Kind::Observer },
        connected: view.status.num_connected_nodes.unwrap_or(1),
        unavailable: view.status.unavailable_nodes,
        nodes: view.nodes,
        version: view.status.version,
    }
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

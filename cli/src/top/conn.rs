//! The dashboard's link to the server: a follow stream that reconnects
//! (lumen-rpc's [`Follow`]) and, beside it, a poll of the server's status
//! and nodes every [`POLL`] for the header and the Nodes tab. Everything
//! arrives on one channel as [`Update`]s; the dashboard never waits on the
//! network.

use std::time::{Duration, SystemTime};

use lumen_proto::flow::Flow;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse, Node};
use lumen_proto::prost::bytes::Bytes;
use lumen_proto::prost::{DecodeError, Message};
use lumen_rpc::status::ServerView;
use lumen_rpc::{Backoff, Follow, FollowEvent, FollowItem};
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

/// A response as the dashboard reads it: what the model counts decoded
/// ([`lumen_model::decode_response`]; decoding is most of what following
/// a fast stream costs), and the bytes, to show the whole flow when the
/// Flows tab or a detail panel asks for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub response: Box<GetFlowsResponse>,
    bytes: Bytes,
}

impl Received {
    /// A response already decoded whole (`--once`, tests): read as the
    /// stream's are.
    pub fn of(response: &GetFlowsResponse) -> Received {
        Received::decode(&mut Default::default(), response.encode_to_vec().into()).expect("an encoded response decodes")
    }

    /// The whole flow, decoded from the bytes (`None` if not a flow).
    pub fn whole_flow(&self) -> Option<Flow> {
        match <GetFlowsResponse as Message>::decode(self.bytes.as_ref())
            .ok()?
            .response_types
        {
            Some(ResponseTypes::Flow(f)) => Some(f),
            _ => None,
        }
    }
}

impl FollowItem for Received {
    type Reader = lumen_model::FlowReader;

    fn decode(reader: &mut lumen_model::FlowReader, bytes: Bytes) -> Result<Received, DecodeError> {
        Ok(Received {
            response: reader.decode(&bytes)?,
            bytes,
        })
    }

    fn response(&self) -> &GetFlowsResponse {
        &self.response
    }
}

/// Events the flow task hands on at most at once.
const BATCH: usize = 256;

#[derive(Debug)]
pub enum Update {
    Follow(FollowEvent<Received>),
    /// Events that had arrived together, in order.
    Follows(Vec<FollowEvent<Received>>),
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
    let mut follow = Follow::<Received>::new(
        lumen_rpc::status::connector(&server.server, &server.tls),
        request,
        true,
        Backoff::new(Duration::from_millis(250), Duration::from_secs(5)),
    );
    let flows = tokio::spawn({
        let tx = tx.clone();
        async move {
            loop {
                // What has arrived by the time one event comes goes as one
                // update: a channel send per flow showed at 100,000 flows/s.
                let mut events = vec![follow.next().await];
                while events.len() < BATCH {
                    match follow.ready() {
                        Some(event) => events.push(event),
                        None => break,
                    }
                }
                if tx.send(Update::Follows(events)).await.is_err() {
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

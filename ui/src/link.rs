//! The UI's link to the server, as `lumen top` has it: a follow stream
//! that reconnects (lumen-rpc's [`Follow`]) and, beside it, a poll of the
//! server's status every [`POLL`]. Both write into the [`Shared`] hub.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use lumen_proto::prost_types::Timestamp;
use lumen_rpc::status::ServerView;
use lumen_rpc::{Backoff, Follow, TlsArgs};
use tokio::task::JoinHandle;

use crate::hub::{ServerInfo, Shared};

/// How often the server's status and nodes are asked for.
pub const POLL: Duration = Duration::from_secs(2);

/// A running link; dropping it stops both tasks.
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

/// Follows every flow of the server from `history` ago on (with Lumen's
/// extension: why a flow was dropped) and polls its status, into `hub`.
pub fn start(server: &str, tls: &TlsArgs, history: Duration, hub: Arc<Shared>) -> Link {
    let request = GetFlowsRequest {
        follow: true,
        since: Some(Timestamp::from(SystemTime::now() - history)),
        ..Default::default()
    };
    let mut follow = Follow::new(
        lumen_rpc::status::connector(server, tls),
        request,
        true,
        Backoff::new(Duration::from_millis(250), Duration::from_secs(5)),
    );
    let flows = tokio::spawn({
        let hub = hub.clone();
        async move {
            loop {
                let event = follow.next().await;
                hub.lock().follow(event, SystemTime::now());
            }
        }
    });
    let mut connect = lumen_rpc::status::connector(server, tls);
    let status = tokio::spawn(async move {
        loop {
            let info = match connect().await {
                Ok(channel) => lumen_rpc::status::server_view(channel)
                    .await
                    .map(info)
                    .map_err(|e| e.message().to_string()),
                Err(e) => Err(e),
            };
            hub.lock().status(info);
            tokio::time::sleep(POLL).await;
        }
    });
    Link { tasks: [flows, status] }
}

/// The server's history of flows, asked for by views of the last N minutes
/// (with Lumen's extension, as the follow stream).
pub struct ServerHistory {
    server: String,
    tls: TlsArgs,
}

impl ServerHistory {
    pub fn new(server: &str, tls: &TlsArgs) -> ServerHistory {
        ServerHistory {
            server: server.to_string(),
            tls: tls.clone(),
        }
    }
}

fn status(s: lumen_proto::tonic::Status) -> String {
    format!("{}: {}", s.code(), s.message())
}

impl crate::api::History for ServerHistory {
    fn flows(&self, request: GetFlowsRequest) -> BoxStream<'static, Result<GetFlowsResponse, String>> {
        let (server, tls) = (self.server.clone(), self.tls.clone());
        let open = async move {
            let (channel, _) = lumen_rpc::connect_default(&server, &tls)
                .await
                .map_err(|e| e.to_string())?;
            let mut client = ObserverClient::new(channel).max_decoding_message_size(16 << 20);
            let response = client.get_flows(lumen_proto::with_extensions(request)).await;
            response.map(|r| r.into_inner()).map_err(status)
        };
        futures_util::stream::once(open)
            .flat_map(|opened| match opened {
                Ok(stream) => stream.map(|r| r.map_err(status)).left_stream(),
                Err(e) => futures_util::stream::once(async move { Err(e) }).right_stream(),
            })
            .boxed()
    }
}

/// The UI's view of the server.
fn info(view: ServerView) -> ServerInfo {
    ServerInfo {
        kind: if view.is_relay() { "relay" } else { "observer" },
        version: view.status.version,
        connected_nodes: view.status.num_connected_nodes.unwrap_or(1),
        unavailable_nodes: view.status.unavailable_nodes,
        nodes: view
            .nodes
            .into_iter()
            .map(|n| (n.name.clone(), n.state().as_str_name().to_string()))
            .collect(),
    }
}

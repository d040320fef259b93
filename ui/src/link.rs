//! The UI's link to the server, as `lumen top` has it: a follow stream
//! that reconnects (lumen-rpc's [`Follow`]) and, beside it, a poll of the
//! server's status every [`POLL`]. Both write into the [`Shared`] hub.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetFlowsRequest, GetNodesRequest, ServerStatusRequest};
use lumen_proto::prost_types::Timestamp;
use lumen_rpc::{Backoff, Connector, Follow, TlsArgs};
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

fn connector(server: &str, tls: &TlsArgs) -> Connector {
    let (given, tls) = (server.to_string(), tls.clone());
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

/// Follows every flow of the server from `history` ago on (with Lumen's
/// extension: why a flow was dropped) and polls its status, into `hub`.
pub fn start(server: &str, tls: &TlsArgs, history: Duration, hub: Arc<Shared>) -> Link {
    let request = GetFlowsRequest {
        follow: true,
        since: Some(Timestamp::from(SystemTime::now() - history)),
        ..Default::default()
    };
    let mut follow = Follow::new(
        connector(server, tls),
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
    let mut connect = connector(server, tls);
    let status = tokio::spawn(async move {
        loop {
            let info = match connect().await {
                Ok(channel) => info(ObserverClient::new(channel))
                    .await
                    .map_err(|e| e.message().to_string()),
                Err(e) => Err(e),
            };
            hub.lock().status(info);
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
    let relay = nodes.iter().any(|n| !n.address.is_empty());
    Ok(ServerInfo {
        kind: if relay { "relay" } else { "observer" },
        version: status.version,
        connected_nodes: status.num_connected_nodes.unwrap_or(1),
        unavailable_nodes: status.unavailable_nodes,
        nodes: nodes
            .into_iter()
            .map(|n| (n.state().as_str_name().to_string(), n.name))
            .map(|(state, name)| (name, state))
            .collect(),
    })
}

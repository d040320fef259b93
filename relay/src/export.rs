//! Flow export from the relay (`--export-*`, `--flowlogs-config`,
//! `--otlp-*`, the same flags as the observer's): the cluster's merged
//! flows, as a follow stream of the relay's own GetFlows (in process, no
//! socket) with Lumen's extensions, handed to lumen-export. The stream
//! counts among `lumen_relay_clients` like any other; it reopens if it ends.

use std::sync::Arc;
use std::time::Duration;

use lumen_export::{ExportArgs, OtlpArgs, OtlpService, Outputs, OutputsError};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::GetFlowsRequest;
use lumen_rpc::raw::RawFlows;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::server::RelayService;

/// The name on loss notices and on lines of flows that carry none.
pub const NODE_NAME: &str = "lumen-relay";
/// How long to wait before reopening the stream after it ended or failed.
const REOPEN: Duration = Duration::from_secs(1);

/// Running flow export.
pub struct Export {
    outputs: Arc<Outputs>,
    feed: JoinHandle<()>,
}

impl Export {
    pub fn outputs(&self) -> &Arc<Outputs> {
        &self.outputs
    }

    /// Stops the stream, writes and sends what the queues hold, stops.
    pub async fn stop(self) {
        self.feed.abort();
        let outputs = self.outputs;
        let _ = tokio::task::spawn_blocking(move || outputs.stop()).await;
    }
}

/// Starts the export `files` and `otlp` configure, fed by `service`'s
/// merged stream; `None` if nothing is configured.
pub fn start(
    files: &ExportArgs,
    otlp: &OtlpArgs,
    service: RelayService,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<Export>, OutputsError> {
    let who = OtlpService {
        service_name: "lumen-relay".into(),
        node_name: NODE_NAME.into(),
    };
    let env = |name: &str| std::env::var(name).ok();
    let Some(outputs) = Outputs::start(files, otlp, &env, who, None)? else {
        return Ok(None);
    };
    let outputs = Arc::new(outputs);
    let feed = tokio::spawn(feed(service, outputs.clone(), shutdown));
    Ok(Some(Export { outputs, feed }))
}

/// Follows the merged stream from now on and offers every flow and loss
/// notice; node status events are not flows and are not exported.
async fn feed(service: RelayService, outputs: Arc<Outputs>, shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        let request = lumen_proto::with_extensions(GetFlowsRequest {
            follow: true,
            ..Default::default()
        });
        match service.raw_flows(request) {
            Ok(mut stream) => {
                while let Some(Ok(raw)) = stream.next().await {
                    match raw.decode().map(|r| r.response_types) {
                        Ok(Some(ResponseTypes::Flow(flow))) => outputs.offer_flow(&Arc::new(flow)),
                        Ok(Some(ResponseTypes::LostEvents(lost))) => outputs.offer_lost(&lost),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "a merged response did not decode; not exported"),
                    }
                }
            }
            Err(status) => tracing::warn!(%status, "flow export: the relay refused its own stream"),
        }
        tokio::time::sleep(REOPEN).await;
    }
}

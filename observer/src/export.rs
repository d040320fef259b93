//! Flow export (`--export-*`, `--flowlogs-config`, `--otlp-*`): the node's
//! flows and loss notices handed to lumen-export's flow logs and OTLP, a
//! consumer of the hub's stream like the metrics. Each exporter has its own
//! queue and thread, so offering never waits; what a queue cannot take is
//! dropped there and counted (`lumen_exporter_dropped_total`). Flows the
//! store overwrote before this consumer read them are counted as lost to
//! it and exported as a loss notice, as the kernel's losses are.

use std::sync::Arc;

use lumen_export::otlp::Gather;
use lumen_export::{ExportArgs, LazyFlow, OtlpArgs, OtlpService, Outputs, OutputsError};
use lumen_proto::flow::{LostEvent, LostEventSource};

use crate::hub::{Hub, Notice, Subscription};

/// Running flow export.
pub struct Export {
    outputs: Arc<Outputs>,
    feed: std::thread::JoinHandle<()>,
}

/// Starts the export `files` and `otlp` configure (and the environment's
/// `OTEL_EXPORTER_OTLP_*`), fed from `hub` from now on; `None` if nothing
/// is configured. `gather` gives the metrics OTLP sends.
pub fn start(
    files: &ExportArgs,
    otlp: &OtlpArgs,
    hub: &Arc<Hub>,
    gather: Option<Gather>,
) -> Result<Option<Export>, OutputsError> {
    let service = OtlpService {
        service_name: "lumen-observer".into(),
        node_name: hub.node_name().to_string(),
    };
    let env = |name: &str| std::env::var(name).ok();
    let Some(outputs) = Outputs::start(files, otlp, &env, service, gather)? else {
        return Ok(None);
    };
    let outputs = Arc::new(outputs);
    hub.telemetry().set_outputs(outputs.clone());
    // Follows from before the reader's first record, as the metrics do; on
    // a thread of its own, not the runtime's: building flows costs more
    // than storing them, and a task that builds a batch of them would hold
    // a worker the reader needs. (At the daemon's priority: the exporters'
    // threads are the nicer ones, and they drop what they cannot take.)
    let sub = hub.follow();
    let feed = std::thread::Builder::new().name("export-feed".into()).spawn({
        let outputs = outputs.clone();
        move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(feed(sub, outputs)),
            Err(e) => tracing::error!(error = %e, "flow export cannot start its feed"),
        }
    });
    let feed = match feed {
        Ok(feed) => feed,
        Err(e) => {
            outputs.stop();
            return Err(OutputsError::Feed(e));
        }
    };
    Ok(Some(Export { outputs, feed }))
}

impl Export {
    pub fn outputs(&self) -> &Arc<Outputs> {
        &self.outputs
    }

    /// Once the stream has ended (the hub closed): writes and sends what
    /// the queues hold, and stops.
    pub async fn stop(self) {
        let (feed, outputs) = (self.feed, self.outputs);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = feed.join();
            outputs.stop();
        })
        .await;
    }
}

fn lost(source: LostEventSource, count: u64) -> LostEvent {
    LostEvent {
        source: source as i32,
        num_events_lost: count,
        ..Default::default()
    }
}

/// Offers every flow and loss of `sub` until the stream ends.
async fn feed(mut sub: Subscription, outputs: Arc<Outputs>) {
    let mut notices = Vec::new();
    while sub.next(&mut notices).await {
        // Without an exporter (an empty dynamic file), no flow is built.
        let exporting = !outputs.is_empty();
        for n in notices.drain(..) {
            match n {
                // Built only if an exporter has room for it.
                Notice::Flow(f) if exporting => outputs.offer_flow_lazily(&mut LazyFlow::new(|| sub.flow(&f))),
                Notice::Flow(_) => {}
                Notice::KernelLost(count) => outputs.offer_lost(&lost(LostEventSource::PerfEventRingBuffer, count)),
                Notice::Missed(count) => {
                    sub.hub().exporters_lost(count);
                    outputs.offer_lost(&lost(LostEventSource::HubbleRingBuffer, count));
                }
            }
        }
    }
}

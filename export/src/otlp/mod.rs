//! OTLP export: flows and loss notices as log records (the README's "Flow
//! export" section has the attribute mapping), flow metrics as metrics, to an OpenTelemetry
//! Collector over gRPC or HTTP/protobuf.
//!
//! * Log records go through an [`Exporter`] like a flow log: its own
//!   bounded queue and thread, drops counted by reason
//!   (`lumen_exporter_dropped_total{exporter="otlp",reason}`), a failed
//!   export retried with backoff for `--otlp-retry-max-elapsed`
//!   ([`OtlpStats::log_retries`]); offering never blocks.
//! * Metrics are gathered and sent by a thread of their own at the interval
//!   ([`OtlpStats::metric_exports`], [`OtlpStats::metric_export_failures`]).
//! * Both use the SDK's OTLP exporters on a small tokio runtime of their own
//!   (one worker thread, `lumen-otlp`), so the daemon's runtime never waits
//!   for a collector.
//! * The resource: `service.name` (`lumen-observer` or `lumen-relay`),
//!   `k8s.node.name`, `k8s.cluster.name` (`--cluster-name`), and what the
//!   SDK adds (`telemetry.sdk.*`, `OTEL_RESOURCE_ATTRIBUTES`).

mod args;
mod attributes;
mod logs;
mod metrics;
mod transport;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lumen_proto::flow::{Flow, LostEvent};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;

pub use args::{Compression, OtlpArgs, OtlpSettings, Protocol, Target, DEFAULT_METRICS_INTERVAL, DEFAULT_TIMEOUT};
pub use attributes::{flow_attributes, flow_body, lost_attributes, lost_body, Attribute};
pub use metrics::{Gather, FLOW_IO, FLOW_IO_FAMILY};

use crate::queue::{system_clock, Admission, BuiltFlow, Counters, Exporter, ExporterStats, LazyFlow, Record};

/// The name of the OTLP log exporter, in metrics and `lumen status`.
pub const OTLP_NAME: &str = "otlp";

/// How long the stop waits for the runtime's last requests.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

/// Why OTLP export cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("{name}: {reason}")]
    Env { name: String, reason: String },
    #[error("{source_name}: bad header: {reason}")]
    Headers { source_name: String, reason: String },
    #[error("--otlp-ca-file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Build { endpoint: String, reason: String },
    #[error("cannot start the OTLP threads: {0}")]
    Start(#[from] std::io::Error),
}

/// Who sends: the resource's attributes besides the cluster name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpService {
    /// `lumen-observer` or `lumen-relay`.
    pub service_name: String,
    /// The node the daemon runs on.
    pub node_name: String,
}

/// OTLP export's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpStats {
    /// The log exporter's, named [`OTLP_NAME`]; `None` without log export.
    pub logs: Option<ExporterStats>,
    /// Failed log exports retried (`lumen_exporter_retries_total{exporter="otlp"}`).
    pub log_retries: u64,
    /// Metric exports the collector accepted.
    pub metric_exports: u64,
    /// Metric exports that failed (not retried: the next carries the same
    /// cumulative values).
    pub metric_export_failures: u64,
}

/// Running OTLP export; stops (sending what is queued) when dropped.
pub struct Otlp {
    logs: Option<Exporter>,
    metrics: Option<metrics::MetricsLoop>,
    log_retries: Arc<AtomicU64>,
    metric_counters: Arc<metrics::MetricCounters>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The instrumentation scope of every record and metric.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("lumen")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

fn resource(settings: &OtlpSettings, service: &OtlpService) -> Resource {
    let mut attributes = Vec::new();
    if !service.node_name.is_empty() {
        attributes.push(KeyValue::new("k8s.node.name", service.node_name.clone()));
    }
    if let Some(cluster) = &settings.cluster_name {
        attributes.push(KeyValue::new("k8s.cluster.name", cluster.clone()));
    }
    Resource::builder()
        .with_service_name(service.service_name.clone())
        .with_attributes(attributes)
        .build()
}

impl Otlp {
    /// Starts what `settings` asks for: log export, and metric export when
    /// there are both an interval and `gather`.
    pub fn start(settings: &OtlpSettings, service: &OtlpService, gather: Option<Gather>) -> Result<Otlp, OtlpError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lumen-otlp")
            .on_thread_start(crate::lower_priority)
            .enable_all()
            .build()?;
        let resource = resource(settings, service);
        let log_retries = Arc::new(AtomicU64::new(0));
        let metric_counters = Arc::new(metrics::MetricCounters::default());
        let mut otlp = Otlp {
            logs: None,
            metrics: None,
            log_retries: log_retries.clone(),
            metric_counters: metric_counters.clone(),
            runtime: None,
        };
        if let Some(target) = &settings.logs {
            let exporter = transport::log_exporter(target, runtime.handle())?;
            let sink = logs::OtlpLogSink::new(
                exporter,
                runtime.handle().clone(),
                &resource,
                settings.retry_max_elapsed,
                log_retries,
            );
            otlp.logs = Some(Exporter::spawn(
                OTLP_NAME,
                settings.queue_size,
                Admission::default(),
                Box::new(sink),
                Arc::new(Counters::default()),
                system_clock(),
            )?);
        }
        if let (Some((target, interval)), Some(gather)) = (&settings.metrics, gather) {
            let exporter = transport::metric_exporter(target, runtime.handle())?;
            otlp.metrics = Some(metrics::MetricsLoop::start(
                exporter,
                runtime.handle().clone(),
                resource,
                *interval,
                gather,
                metric_counters,
            )?);
        }
        otlp.runtime = Some(runtime);
        Ok(otlp)
    }

    /// Queues `flow` for the collector; never blocks.
    pub fn offer_flow(&self, flow: &Arc<Flow>) {
        self.offer_flow_lazily(&mut BuiltFlow::built(flow.clone()));
    }

    /// [`Otlp::offer_flow`], the flow built only if the queue takes it.
    pub fn offer_flow_lazily<F: FnOnce() -> Arc<Flow>>(&self, flow: &mut LazyFlow<F>) {
        if let Some(logs) = &self.logs {
            if !logs.drop_if_full() {
                logs.offer(Record::Flow(flow.get().clone()));
            }
        }
    }

    /// Queues a loss notice, noticed now; never blocks.
    pub fn offer_lost(&self, event: &LostEvent) {
        if let Some(logs) = &self.logs {
            logs.offer(Record::Lost {
                event: *event,
                time: SystemTime::now(),
            });
        }
    }

    pub fn stats(&self) -> OtlpStats {
        OtlpStats {
            logs: self.logs.as_ref().map(|l| l.counters().snapshot(OTLP_NAME)),
            log_retries: self.log_retries.load(Ordering::Relaxed),
            metric_exports: self.metric_counters.exports.load(Ordering::Relaxed),
            metric_export_failures: self.metric_counters.failures.load(Ordering::Relaxed),
        }
    }

    /// Sends what is queued (one attempt each, no more retries), the
    /// metrics once more, and stops every thread.
    pub fn shutdown(&mut self) {
        if let Some(logs) = self.logs.take() {
            logs.stop();
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.stop();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
        }
    }
}

impl Drop for Otlp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

//! Flows and loss notices as OTLP log records, sent by the exporter's own
//! thread: each batch the queue hands over becomes one OTLP request made
//! with the SDK's `LogExporter`, retried with backoff while it fails.
//! The SDK's batch processor is not used because it drops records silently
//! when its buffer is full; here a record is either sent, dropped at the
//! queue (`queue_full`) or dropped after the last retry (`write_error`), and
//! counted in each case.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::LogExporter;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::Resource;
use tokio::runtime::Handle;

use lumen_proto::flow::{Flow, Verdict};

use super::attributes;
use crate::queue::{Outcome, Record, Sink};

/// The first wait after a failed export; doubled after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a waiting retry looks whether the exporter stops.
const STOP_POLL: Duration = Duration::from_millis(20);

/// The `Sink` of the `otlp` exporter.
pub(crate) struct OtlpLogSink {
    exporter: LogExporter,
    runtime: Handle,
    logger: SdkLogger,
    scope: InstrumentationScope,
    retry_max_elapsed: Duration,
    stopping: Arc<AtomicBool>,
    retries: Arc<AtomicU64>,
    // Keeps the logger's provider (it has no processors: records are
    // built with it and exported here).
    _provider: SdkLoggerProvider,
}

impl OtlpLogSink {
    pub(crate) fn new(
        mut exporter: LogExporter,
        runtime: Handle,
        resource: &Resource,
        retry_max_elapsed: Duration,
        retries: Arc<AtomicU64>,
    ) -> OtlpLogSink {
        exporter.set_resource(resource);
        let scope = super::scope();
        let provider = SdkLoggerProvider::builder().with_resource(resource.clone()).build();
        let logger = provider.logger_with_scope(scope.clone());
        OtlpLogSink {
            exporter,
            runtime,
            logger,
            scope,
            retry_max_elapsed,
            stopping: Arc::default(),
            retries,
            _provider: provider,
        }
    }

    fn record(&self, record: &Record, now: SystemTime) -> SdkLogRecord {
        let mut r = self.logger.create_log_record();
        r.set_observed_timestamp(now);
        match record {
            Record::Flow(flow) => {
                r.set_event_name("hubble.flow");
                r.set_timestamp(flow_time(flow).unwrap_or(now));
                let (severity, text) = match Verdict::try_from(flow.verdict) {
                    Ok(Verdict::Dropped | Verdict::Error) => (Severity::Warn, "WARN"),
                    _ => (Severity::Info, "INFO"),
                };
                r.set_severity_number(severity);
                r.set_severity_text(text);
                r.set_body(AnyValue::String(attributes::flow_body(flow).into()));
                r.add_attributes(attributes::flow_attributes(flow));
            }
            Record::Lost { event, time } => {
                r.set_event_name("hubble.lost_events");
                r.set_timestamp(*time);
                r.set_severity_number(Severity::Warn);
                r.set_severity_text("WARN");
                r.set_body(AnyValue::String(attributes::lost_body(event).into()));
                r.add_attributes(attributes::lost_attributes(event));
            }
        }
        r
    }

    /// One export of `records`, as one request.
    fn export(&self, records: &[SdkLogRecord]) -> Result<(), String> {
        let data: Vec<(&SdkLogRecord, &InstrumentationScope)> = records.iter().map(|r| (r, &self.scope)).collect();
        self.runtime
            .block_on(self.exporter.export(LogBatch::new(&data)))
            .map_err(|e| e.to_string())
    }

    /// Waits `wait`, or less if the exporter stops meanwhile.
    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        while !self.stopping.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }
}

fn flow_time(flow: &Flow) -> Option<SystemTime> {
    let t = flow.time.as_ref()?;
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

impl Sink for OtlpLogSink {
    fn stop_signal(&mut self, stopping: Arc<AtomicBool>) {
        self.stopping = stopping;
    }

    /// Sends `records`, retrying with backoff for up to the retry budget
    /// (once only when the exporter stops). Meanwhile the queue fills and
    /// what does not fit is dropped as `queue_full`: the pipeline never waits.
    fn write(&mut self, records: &[Record], now: SystemTime) -> Outcome {
        let batch: Vec<SdkLogRecord> = records.iter().map(|r| self.record(r, now)).collect();
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let error = match self.export(&batch) {
                Ok(()) => {
                    return Outcome {
                        written: batch.len() as u64,
                        ..Outcome::default()
                    }
                }
                Err(error) => error,
            };
            let left = self.retry_max_elapsed.saturating_sub(started.elapsed());
            if self.stopping.load(Ordering::Relaxed) || left.is_zero() {
                return Outcome {
                    written: 0,
                    failed: batch.len() as u64,
                    error: Some(format!("OTLP export of {} log records failed: {error}", batch.len())),
                };
            }
            // The first failure of a streak is logged by the exporter's counters.
            self.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, ?backoff, "OTLP log export failed; retrying");
            self.pause(backoff.min(left));
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

//! The observer's own events and counters (see [`lumen_rpc::telemetry`]):
//! every loss and every record that does not decode is one event, which
//! counts and logs (rate-limited) together. The hub owns the registry, so
//! the counts are the ones `ServerStatus` reports: one accounting for both.

use lumen_rpc::telemetry::{Counter, CounterVec, InternalEvent, LogLimit, Sample};

use crate::decode::DecodeError;

/// The observer's counters, one registry per observer (per hub).
#[derive(Debug)]
pub struct Telemetry {
    /// Events the kernel ring buffer could not take (ServerStatus' `lumen-lost-kernel`).
    pub lost_kernel: Counter,
    /// Flows the store overwrote before an Observer API client read them
    /// (ServerStatus' `lumen-lost-client`).
    pub lost_store: Counter,
    /// Flows the store overwrote before the JSON-lines event output wrote
    /// them (it says so in its own stream too, as a `lost` line).
    pub lost_output: Counter,
    /// Flows the store overwrote before the flow metrics counted them.
    pub lost_metrics: Counter,
    /// Flows the store overwrote before the flow export read them.
    pub lost_export: Counter,
    /// The exporters, once export starts: their exported and dropped counts.
    outputs: OutputsCell,
    /// Changes of the `--metrics-config` file, by result (`applied`, `rejected`).
    pub metrics_config_reloads: CounterVec,
    /// Control API requests answered with an error, by method.
    pub control_failed: CounterVec,
    /// `GetFlows` streams open now (Observer API clients).
    pub flow_streams: std::sync::atomic::AtomicU64,
    /// Ring-buffer records that were not well-formed events, by what was wrong.
    pub decode_errors: CounterVec,
    log: Logs,
}

#[derive(Default)]
struct OutputsCell(std::sync::OnceLock<std::sync::Arc<lumen_export::Outputs>>);

impl std::fmt::Debug for OutputsCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "exporters" } else { "none" })
    }
}

#[derive(Debug, Default)]
struct Logs {
    kernel: LogLimit,
    store: LogLimit,
    output: LogLimit,
    metrics: LogLimit,
    export: LogLimit,
    decode: LogLimit,
    control: LogLimit,
}

const LOST_EVENTS: &str = "lumen_lost_events_total";
const LOST_EVENTS_HELP: &str = "Events or flows lost, by the stage that lost them";

impl Default for Telemetry {
    fn default() -> Telemetry {
        let decode_errors = CounterVec::new(
            "lumen_decode_errors_total",
            "Ring-buffer records that were not well-formed events, by what was wrong",
            "reason",
        );
        // Every reason shows from the start, at zero.
        for reason in DecodeError::KINDS {
            decode_errors.add(reason, 0);
        }
        let metrics_config_reloads = CounterVec::new(
            "lumen_metrics_config_reloads_total",
            "Changes of the --metrics-config file, by whether they were applied or rejected (the previous configuration stays)",
            "result",
        );
        for result in ["applied", "rejected"] {
            metrics_config_reloads.add(result, 0);
        }
        Telemetry {
            lost_kernel: Counter::new(LOST_EVENTS, LOST_EVENTS_HELP, &[("stage", "kernel_ring_buffer")]),
            lost_store: Counter::new(
                LOST_EVENTS,
                LOST_EVENTS_HELP,
                &[("stage", "flow_store"), ("consumer", "observer_api")],
            ),
            lost_output: Counter::new(
                LOST_EVENTS,
                LOST_EVENTS_HELP,
                &[("stage", "flow_store"), ("consumer", "json_output")],
            ),
            lost_metrics: Counter::new(
                LOST_EVENTS,
                LOST_EVENTS_HELP,
                &[("stage", "flow_store"), ("consumer", "metrics")],
            ),
            lost_export: Counter::new(
                LOST_EVENTS,
                LOST_EVENTS_HELP,
                &[("stage", "flow_store"), ("consumer", "exporter")],
            ),
            outputs: Default::default(),
            metrics_config_reloads,
            control_failed: CounterVec::new(
                "lumen_control_requests_failed_total",
                "Control API requests answered with an error, by method",
                "method",
            ),
            decode_errors,
            flow_streams: Default::default(),
            log: Logs::default(),
        }
    }
}

impl Telemetry {
    /// Every counter's series, for a metrics endpoint.
    pub fn snapshot(&self) -> Vec<Sample> {
        let mut out = vec![
            self.lost_kernel.sample(),
            self.lost_store.sample(),
            self.lost_output.sample(),
            self.lost_metrics.sample(),
            self.lost_export.sample(),
        ];
        out.extend(self.decode_errors.samples());
        out.extend(self.metrics_config_reloads.samples());
        out.extend(self.control_failed.samples());
        out.extend(self.exporter_samples());
        out
    }

    /// The exporters whose counts [`Telemetry::snapshot`] reports.
    pub fn set_outputs(&self, outputs: std::sync::Arc<lumen_export::Outputs>) {
        let _ = self.outputs.0.set(outputs);
    }

    /// Records the exporters dropped, all together (`lumen status`).
    pub fn exporter_dropped(&self) -> Option<u64> {
        Some(self.outputs.0.get()?.dropped())
    }

    fn exporter_samples(&self) -> Vec<Sample> {
        self.outputs.0.get().map(|o| o.samples()).unwrap_or_default()
    }
}

/// The flow export read slower than the store turned over: `count` flows
/// were overwritten before it offered them to the flow logs.
pub struct ExportFellBehind {
    pub count: u64,
}

impl InternalEvent for ExportFellBehind {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.lost_export.add(self.count);
        if let Some(occurrences) = to.log.export.check("") {
            tracing::warn!(
                count = self.count,
                occurrences,
                "flows lost to the flow export: the store overwrote them before it read them (a larger --max-flows helps)"
            );
        }
    }
}

/// The kernel ring buffer was full: the datapath could not hand over `count` events.
pub struct KernelEventsLost {
    pub count: u64,
}

impl InternalEvent for KernelEventsLost {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.lost_kernel.add(self.count);
        if let Some(occurrences) = to.log.kernel.check("") {
            tracing::warn!(
                count = self.count,
                occurrences,
                "events lost: the kernel ring buffer was full (a larger --ring-buffer-bytes helps)"
            );
        }
    }
}

/// An Observer API client read slower than the store turned over: the
/// store overwrote `count` flows before it read them.
pub struct FlowsOverwrittenBeforeRead {
    pub count: u64,
}

impl InternalEvent for FlowsOverwrittenBeforeRead {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.lost_store.add(self.count);
        if let Some(occurrences) = to.log.store.check("") {
            tracing::warn!(
                count = self.count,
                occurrences,
                "flows lost to a slow client: the store overwrote them before it read them (a larger --max-flows helps)"
            );
        }
    }
}

/// The JSON-lines event output wrote slower than the store turned over:
/// `count` flows were overwritten before it wrote them.
pub struct OutputFellBehind {
    pub count: u64,
}

impl InternalEvent for OutputFellBehind {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.lost_output.add(self.count);
        if let Some(occurrences) = to.log.output.check("") {
            tracing::warn!(
                count = self.count,
                occurrences,
                "flows lost to the event output: the store overwrote them before it wrote them"
            );
        }
    }
}

/// The flow metrics counted slower than the store turned over: `count`
/// flows were overwritten before they were counted.
pub struct MetricsFellBehind {
    pub count: u64,
}

impl InternalEvent for MetricsFellBehind {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.lost_metrics.add(self.count);
        if let Some(occurrences) = to.log.metrics.check("") {
            tracing::warn!(
                count = self.count,
                occurrences,
                "flows lost to the flow metrics: the store overwrote them before they were counted (a larger --max-flows helps)"
            );
        }
    }
}

/// A changed `--metrics-config` file was applied.
pub struct MetricsConfigApplied<'a> {
    pub path: &'a std::path::Path,
    pub metrics: &'a [String],
}

impl InternalEvent for MetricsConfigApplied<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.metrics_config_reloads.add("applied", 1);
        tracing::info!(file = %self.path.display(), metrics = ?self.metrics, "metrics configuration applied");
    }
}

/// A changed `--metrics-config` file could not be applied: the previous
/// configuration stays. Logged once per change of the file.
pub struct MetricsConfigRejected<'a> {
    pub path: &'a std::path::Path,
    pub error: &'a str,
}

impl InternalEvent for MetricsConfigRejected<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.metrics_config_reloads.add("rejected", 1);
        tracing::warn!(
            file = %self.path.display(),
            error = self.error,
            "metrics configuration rejected; the previous one stays"
        );
    }
}

/// A control API request was answered with an error status.
pub struct ControlRequestFailed<'a> {
    pub method: &'static str,
    pub status: &'a lumen_proto::tonic::Status,
}

impl InternalEvent for ControlRequestFailed<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        use lumen_proto::tonic::Code;
        to.control_failed.add(self.method, 1);
        if let Some(occurrences) = to.log.control.check(self.method) {
            let (method, code, message) = (self.method, self.status.code(), self.status.message());
            match code {
                // The node failed, not the request.
                Code::Internal | Code::DataLoss | Code::Unknown => {
                    tracing::warn!(method, ?code, message, occurrences, "control request failed")
                }
                _ => tracing::info!(method, ?code, message, occurrences, "control request refused"),
            }
        }
    }
}

/// A ring-buffer record was not a well-formed event; it is dropped.
pub struct RecordDecodeFailed<'a> {
    pub reason: &'a DecodeError,
}

impl InternalEvent for RecordDecodeFailed<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        let kind = self.reason.kind();
        to.decode_errors.add(kind, 1);
        if let Some(occurrences) = to.log.decode.check(kind) {
            tracing::warn!(error = %self.reason, occurrences, "undecodable ring buffer record dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(t: &Telemetry) -> Vec<(String, u64)> {
        t.snapshot()
            .into_iter()
            .map(|s| {
                let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (format!("{}{{{}}}", s.name, labels.join(",")), s.value)
            })
            .collect()
    }

    #[test]
    fn each_event_moves_its_own_counter() {
        let t = Telemetry::default();
        KernelEventsLost { count: 4 }.emit(&t);
        KernelEventsLost { count: 1 }.emit(&t);
        FlowsOverwrittenBeforeRead { count: 7 }.emit(&t);
        OutputFellBehind { count: 2 }.emit(&t);
        MetricsFellBehind { count: 3 }.emit(&t);
        ExportFellBehind { count: 6 }.emit(&t);
        let path = std::path::Path::new("metrics.yaml");
        MetricsConfigRejected { path, error: "bad" }.emit(&t);
        let refused = lumen_proto::tonic::Status::invalid_argument("p.yaml:3: bad");
        ControlRequestFailed {
            method: "apply_policies",
            status: &refused,
        }
        .emit(&t);
        RecordDecodeFailed {
            reason: &DecodeError::Family(9),
        }
        .emit(&t);
        let s = |name: &str, v: u64| (name.to_string(), v);
        assert_eq!(
            series(&t),
            [
                s("lumen_lost_events_total{stage=kernel_ring_buffer}", 5),
                s("lumen_lost_events_total{stage=flow_store,consumer=observer_api}", 7),
                s("lumen_lost_events_total{stage=flow_store,consumer=json_output}", 2),
                s("lumen_lost_events_total{stage=flow_store,consumer=metrics}", 3),
                s("lumen_lost_events_total{stage=flow_store,consumer=exporter}", 6),
                s("lumen_decode_errors_total{reason=capture_overrun}", 0),
                s("lumen_decode_errors_total{reason=short}", 0),
                s("lumen_decode_errors_total{reason=unknown_family}", 1),
                s("lumen_metrics_config_reloads_total{result=applied}", 0),
                s("lumen_metrics_config_reloads_total{result=rejected}", 1),
                s("lumen_control_requests_failed_total{method=apply_policies}", 1),
            ]
        );
    }

    #[test]
    fn server_status_reports_the_loss_counters() {
        let hub = crate::hub::Hub::new("n1", 2);
        hub.kernel_lost(4);
        hub.kernel_lost(1);
        hub.client_lost(3);
        let s = hub.status();
        assert_eq!((s.kernel_lost, s.client_lost), (5, 3));
        let t = hub.telemetry();
        assert_eq!((t.lost_kernel.get(), t.lost_store.get()), (5, 3));
    }

    #[test]
    fn repeated_events_log_once_per_interval() {
        let t = Telemetry::default();
        for _ in 0..100 {
            KernelEventsLost { count: 1 }.emit(&t);
            RecordDecodeFailed {
                reason: &DecodeError::Short { len: 3, need: 88 },
            }
            .emit(&t);
        }
        assert_eq!((t.lost_kernel.get(), t.decode_errors.get("short")), (100, 100));
        assert_eq!((t.log.kernel.lines(), t.log.decode.lines()), (1, 1));
    }
}

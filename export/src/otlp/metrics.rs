//! Flow metrics as OTLP metrics, every interval and once more at the stop:
//! the Prometheus families a caller's function gathers, under the same
//! names, counters as cumulative monotonic sums and gauges as gauges, each
//! label an attribute; the bytes of `flow-io` as `network.flow.io`
//! ([`FLOW_IO_FAMILY`]).
//!
//! Histograms and summaries are not sent: the OpenTelemetry metrics API has
//! no asynchronous histogram to report a finished one through (nor are
//! untyped metrics, which Lumen's registry does not make).
//!
//! Each family is an SDK observable instrument whose callback reads the
//! last gathered values. The SDK's periodic reader is not used: families
//! appear while running (a Prometheus registry gathers only those with a
//! series), and an instrument cannot be created during a collection, so
//! this thread gathers, creates the new instruments, collects through a
//! manual reader and exports, in that order. A failed export is counted and
//! not retried: the next one carries the cumulative values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality};
use opentelemetry_sdk::Resource;
use prometheus::proto::{MetricFamily, MetricType};
use tokio::runtime::Handle;

/// The flow metrics to send, as a Prometheus registry gathers them.
pub type Gather = Arc<dyn Fn() -> Vec<MetricFamily> + Send + Sync>;

/// What the metrics exporter did.
#[derive(Debug, Default)]
pub(crate) struct MetricCounters {
    pub(crate) exports: AtomicU64,
    pub(crate) failures: AtomicU64,
}

type Snapshot = Arc<Mutex<HashMap<String, MetricFamily>>>;

/// The thread that sends flow metrics.
pub(crate) struct MetricsLoop {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl MetricsLoop {
    pub(crate) fn start(
        exporter: MetricExporter,
        runtime: Handle,
        resource: Resource,
        interval: Duration,
        gather: Gather,
        counters: Arc<MetricCounters>,
    ) -> std::io::Result<MetricsLoop> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = std::thread::Builder::new().name("export-otlp-metrics".into()).spawn({
            let stop = stop.clone();
            move || {
                crate::lower_priority();
                let mut state = State::new(exporter, runtime, resource, gather, counters);
                let mut next = Instant::now() + interval;
                loop {
                    let (lock, wake) = &*stop;
                    let stopped = {
                        let mut stopped = lock.lock().expect("never poisoned");
                        while !*stopped && Instant::now() < next {
                            let wait = next.saturating_duration_since(Instant::now());
                            stopped = wake.wait_timeout(stopped, wait).expect("never poisoned").0;
                        }
                        *stopped
                    };
                    state.export();
                    if stopped {
                        state.shutdown();
                        return;
                    }
                    next += interval;
                }
            }
        })?;
        Ok(MetricsLoop { stop, thread })
    }

    /// Sends the metrics once more and stops.
    pub(crate) fn stop(self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().expect("never poisoned") = true;
        wake.notify_all();
        if self.thread.join().is_err() {
            tracing::error!("OTLP metrics thread panicked");
        }
    }
}

struct State {
    exporter: MetricExporter,
    runtime: Handle,
    gather: Gather,
    counters: Arc<MetricCounters>,
    provider: SdkMeterProvider,
    reader: SharedReader,
    meter: Meter,
    snapshot: Snapshot,
    /// Families with an instrument, and those refused (histograms…).
    known: HashMap<String, bool>,
    failing: bool,
}

impl State {
    fn new(
        exporter: MetricExporter,
        runtime: Handle,
        resource: Resource,
        gather: Gather,
        counters: Arc<MetricCounters>,
    ) -> State {
        let reader = SharedReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ));
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader.clone())
            .build();
        let meter = provider.meter_with_scope(super::scope());
        State {
            exporter,
            runtime,
            gather,
            counters,
            provider,
            reader,
            meter,
            snapshot: Snapshot::default(),
            known: HashMap::new(),
            failing: false,
        }
    }

    fn export(&mut self) {
        let families = (self.gather)();
        for family in &families {
            self.instrument(family);
        }
        *self.snapshot.lock().expect("never poisoned") =
            families.into_iter().map(|f| (f.name().to_string(), f)).collect();
        let mut metrics = ResourceMetrics::default();
        let result = self
            .reader
            .collect(&mut metrics)
            .and_then(|()| self.runtime.block_on(self.exporter.export(&metrics)));
        match result {
            Ok(()) => {
                self.counters.exports.fetch_add(1, Ordering::Relaxed);
                if std::mem::take(&mut self.failing) {
                    tracing::info!("OTLP metrics export works again");
                }
            }
            Err(error) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(%error, "OTLP metrics export failing");
                }
            }
        }
    }

    /// Creates the instrument of a family first seen.
    fn instrument(&mut self, family: &MetricFamily) {
        let name = family.name().to_string();
        if self.known.contains_key(&name) {
            return;
        }
        let snapshot = self.snapshot.clone();
        let help = family.help().to_string();
        let exported = match family.get_field_type() {
            MetricType::COUNTER if name == FLOW_IO_FAMILY => {
                let key = name.clone();
                self.meter
                    .u64_observable_counter(FLOW_IO)
                    .with_description(help)
                    .with_unit("By")
                    .with_callback(move |observer| {
                        for (value, attributes) in points(&snapshot, &key) {
                            let attributes: Vec<KeyValue> = attributes.into_iter().map(io_direction).collect();
                            observer.observe(value as u64, &attributes);
                        }
                    })
                    .build();
                true
            }
            MetricType::COUNTER => {
                let key = name.clone();
                self.meter
                    .f64_observable_counter(name.clone())
                    .with_description(help)
                    .with_callback(move |observer| {
                        for (value, attributes) in points(&snapshot, &key) {
                            observer.observe(value, &attributes);
                        }
                    })
                    .build();
                true
            }
            MetricType::GAUGE => {
                let key = name.clone();
                self.meter
                    .f64_observable_gauge(name.clone())
                    .with_description(help)
                    .with_callback(move |observer| {
                        for (value, attributes) in points(&snapshot, &key) {
                            observer.observe(value, &attributes);
                        }
                    })
                    .build();
                true
            }
            MetricType::HISTOGRAM | MetricType::SUMMARY | MetricType::UNTYPED => {
                tracing::debug!(
                    family = name,
                    "flow metric not sent over OTLP: only counters and gauges are"
                );
                false
            }
        };
        self.known.insert(name, exported);
    }

    fn shutdown(self) {
        let _entered = self.runtime.enter();
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "OTLP meter provider shutdown");
        }
    }
}

/// The Prometheus family of the observer's `flow-io` metric (bytes), sent
/// as OpenTelemetry's development-status `network.flow.io` (unit `By`), its
/// `direction` label as `network.io.direction`.
pub const FLOW_IO_FAMILY: &str = "lumen_flow_io_bytes_total";
pub const FLOW_IO: &str = "network.flow.io";

/// `direction` (`egress`, `ingress`: the observed endpoint's) as
/// `network.io.direction` (`transmit`, `receive`); other attributes as they are.
fn io_direction(kv: KeyValue) -> KeyValue {
    if kv.key.as_str() != "direction" {
        return kv;
    }
    let value = match kv.value.as_str().as_ref() {
        "egress" => "transmit".to_string(),
        "ingress" => "receive".to_string(),
        other => other.to_string(),
    };
    KeyValue::new("network.io.direction", value)
}

/// The values and labels of family `name`'s series.
fn points(snapshot: &Snapshot, name: &str) -> Vec<(f64, Vec<KeyValue>)> {
    let snapshot = snapshot.lock().expect("never poisoned");
    let Some(family) = snapshot.get(name) else {
        return Vec::new();
    };
    family
        .get_metric()
        .iter()
        .map(|m| {
            let value = match family.get_field_type() {
                MetricType::COUNTER => m.get_counter().get_value(),
                _ => m.get_gauge().get_value(),
            };
            let attributes = m
                .get_label()
                .iter()
                .map(|l| KeyValue::new(l.name().to_string(), l.value().to_string()))
                .collect();
            (value, attributes)
        })
        .collect()
}

/// A manual reader the provider and this thread share.
#[derive(Clone, Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

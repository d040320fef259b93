//! The flow metrics of one observer: configured (and reconfigured) as a
//! whole, fed flows, told of deleted pods, and rendered for a scrape.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lumen_proto::flow::Flow;
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};

use crate::handlers::{self, Handler};
use crate::series::SeriesId;
use crate::{ConfigError, MetricsConfig};

/// Series one metric keeps at most by default.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// How long the series of a deleted pod stay by default (Hubble's minute).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(60);

const REFUSED: &str = "lumen_metrics_series_refused_total";
const REFUSED_HELP: &str =
    "New label sets a flow metric did not add because it had its maximum of series (--metrics-max-series)";

/// Limits that keep the metrics bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Series per metric; a new label set beyond it is refused and counted.
    pub max_series: usize,
    /// How long after a pod is deleted its series go.
    pub grace_period: Duration,
    /// Whether the flows come with the bytes of their packets (an
    /// observer's do; a relay's flows carry none): `flow-io` is refused
    /// without.
    pub packet_bytes: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_series: DEFAULT_MAX_SERIES,
            grace_period: DEFAULT_GRACE_PERIOD,
            packet_bytes: false,
        }
    }
}

/// A pod whose series go at `due`.
#[derive(Debug)]
struct Deleted {
    due: Instant,
    namespace: String,
    pod: String,
}

#[derive(Debug, Default)]
struct Inner {
    handlers: Vec<Handler>,
    /// Label sets refused, by series name; every metric ever configured
    /// shows, so a refusal is a change from zero.
    refused: BTreeMap<&'static str, u64>,
    /// Series names that refused since they were configured (logged once).
    warned: Vec<&'static str>,
    /// Pods deleted, oldest first: their series go when due.
    deleted: VecDeque<Deleted>,
    /// Changes whenever series ids or the metrics change (configuration,
    /// series removed): plans made before are void.
    generation: u64,
}

/// Plans kept at most by an [`Alike`] memo; beyond it, it starts again.
const MAX_PLANS: usize = 65_536;

/// Where a flow of one shape counts: for each metric (by position) the
/// series, and the metrics that refused a new series for it.
#[derive(Debug, Default)]
struct Plan {
    series: Vec<(usize, SeriesId)>,
    refused: Vec<usize>,
}

/// What the configured metrics and their filters read of a flow beyond
/// what every metric may read, for a consumer that counts flows alike
/// ([`Registry::process_alike`]). No metric label reads a flow's time,
/// uuid or source port.
/// Flows of one shape, and the bytes of their packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub flows: u64,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// A filter tests the source port.
    pub source_port: bool,
    /// A filter may test any field (a CEL expression) or one unique to a
    /// flow (its uuid): flows cannot be counted alike.
    pub per_flow: bool,
}

/// A consumer's memo of where flows of each shape `K` count, kept between
/// calls to [`Registry::process_alike`] (and cleared by it when the
/// metrics or their series change).
#[derive(Debug)]
pub struct Alike<K> {
    generation: u64,
    plans: HashMap<K, Plan, foldhash::fast::RandomState>,
}

impl<K> Default for Alike<K> {
    fn default() -> Alike<K> {
        Alike {
            generation: u64::MAX,
            plans: HashMap::default(),
        }
    }
}

impl<K> Alike<K> {
    /// Shapes whose plan is kept.
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }
}

/// Hubble's flow metrics with Lumen's limits. Every method takes `&self`:
/// the flow consumer, the scrapes and the configuration watcher share one.
#[derive(Debug, Default)]
pub struct Registry {
    settings: Settings,
    inner: Mutex<Inner>,
}

impl Registry {
    pub fn new(settings: Settings) -> Registry {
        Registry {
            settings,
            inner: Mutex::default(),
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `config` the metrics kept, or changes nothing if it is not
    /// valid. A metric whose name and options did not change keeps its
    /// series (even if its filters did); one whose options changed starts
    /// anew, since its labels may have; one no longer configured is gone.
    pub fn configure(&self, config: &MetricsConfig) -> Result<(), ConfigError> {
        let names: Vec<&str> = config.metrics.iter().map(|m| m.name.as_str()).collect();
        if !self.settings.packet_bytes && names.contains(&"flow-io") {
            return Err(ConfigError::NoPacketBytes);
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(ConfigError::Duplicate {
                    metric: name.to_string(),
                });
            }
        }
        let mut inner = self.inner();
        enum Plan {
            Keep(usize, lumen_flow::FlowFilterSet),
            New(Box<Handler>),
        }
        let mut plans = Vec::new();
        for m in &config.metrics {
            let kept = inner.handlers.iter().position(|h| h.same_series(m));
            plans.push(match kept {
                Some(i) => Plan::Keep(i, handlers::compile_filters(m)?),
                None => Plan::New(Box::new(Handler::new(m.clone(), &names, self.settings.max_series)?)),
            });
        }
        let mut old: Vec<Option<Handler>> = std::mem::take(&mut inner.handlers).into_iter().map(Some).collect();
        for (plan, m) in plans.into_iter().zip(&config.metrics) {
            let handler = match plan {
                Plan::Keep(i, filters) => {
                    let mut h = old[i].take().expect("each kept once: names are unique");
                    h.refilter(m.clone(), filters);
                    h
                }
                Plan::New(h) => *h,
            };
            inner.handlers.push(handler);
        }
        let families: Vec<&'static str> = inner
            .handlers
            .iter()
            .filter_map(|h| h.family.as_ref().map(|f| f.name))
            .collect();
        for name in &families {
            inner.refused.entry(name).or_insert(0);
        }
        inner.warned.retain(|n| families.contains(n));
        inner.generation += 1;
        Ok(())
    }

    /// The names of the metrics configured, in configuration order.
    pub fn metrics(&self) -> Vec<String> {
        self.inner().handlers.iter().map(|h| h.config.name.clone()).collect()
    }

    /// Whether no metric configured counts flows (none is, or only the L7
    /// ones): flows need not be built for it.
    pub fn is_empty(&self) -> bool {
        !self.inner().handlers.iter().any(|h| h.family.is_some())
    }

    /// What the metrics configured read of a flow (see [`Reads`]).
    pub fn reads(&self) -> Reads {
        let inner = self.inner();
        let mut reads = Reads::default();
        for h in inner.handlers.iter().filter(|h| h.family.is_some()) {
            let r = h.reads();
            reads.source_port |= r.source_port;
            reads.per_flow |= r.per_flow;
        }
        reads
    }

    /// Counts `flows` in every metric that counts them (`flow-io` only
    /// counts flows whose bytes are known: [`Registry::process_sized`]).
    pub fn process<'f>(&self, flows: impl IntoIterator<Item = &'f Flow>) {
        self.process_sized(flows.into_iter().map(|f| (f, None)));
    }

    /// Counts `flows`, each with the bytes of its packet if known, in every
    /// metric that counts them.
    pub fn process_sized<'f>(&self, flows: impl IntoIterator<Item = (&'f Flow, Option<u64>)>) {
        let mut inner = self.inner();
        let Inner {
            handlers,
            refused,
            warned,
            ..
        } = &mut *inner;
        if handlers.is_empty() {
            return;
        }
        for (flow, bytes) in flows {
            for h in handlers.iter_mut() {
                if h.process(flow, bytes).is_err() {
                    self.refuse(refused, warned, h, 1);
                }
            }
        }
    }

    /// Counts the flows of shape `K` for each `(shape, counts)` of `groups`,
    /// as [`Registry::process_sized`] would count them, looking at one flow
    /// per shape: `build` makes it the first time a shape comes (or after
    /// the metrics or their series changed), and `memo` keeps where it
    /// counts. Right only if every two flows of one shape differ in nothing
    /// that [`Registry::reads`] says is read.
    pub fn process_alike<K: Hash + Eq>(
        &self,
        memo: &mut Alike<K>,
        groups: impl IntoIterator<Item = (K, Counts)>,
        mut build: impl FnMut(&K) -> Flow,
    ) {
        let mut inner = self.inner();
        let Inner {
            handlers,
            refused,
            warned,
            generation,
            ..
        } = &mut *inner;
        if memo.generation != *generation {
            memo.plans.clear();
            memo.generation = *generation;
        }
        for (shape, counts) in groups {
            let n = counts.flows;
            if memo.plans.len() >= MAX_PLANS {
                memo.plans.clear();
            }
            let plan = match memo.plans.entry(shape) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let flow = build(e.key());
                    let mut plan = Plan::default();
                    let mut series = Vec::new();
                    for (i, h) in handlers.iter_mut().enumerate() {
                        series.clear();
                        if h.plan(&flow, &mut series).is_err() {
                            plan.refused.push(i);
                        }
                        plan.series.extend(series.iter().map(|s| (i, *s)));
                    }
                    e.insert(plan)
                }
            };
            for (i, s) in &plan.series {
                let h = &mut handlers[*i];
                let add = if h.counts_bytes() { counts.bytes } else { n };
                h.family
                    .as_mut()
                    .expect("a plan names metrics with series")
                    .add(*s, add);
            }
            for i in &plan.refused {
                self.refuse(refused, warned, &handlers[*i], n);
            }
        }
    }

    /// Counts `n` label sets `h` refused, warning the first time.
    fn refuse(&self, refused: &mut BTreeMap<&'static str, u64>, warned: &mut Vec<&'static str>, h: &Handler, n: u64) {
        let name = h.family.as_ref().map_or("", |f| f.name);
        *refused.entry(name).or_insert(0) += n;
        if !warned.contains(&name) {
            warned.push(name);
            tracing::warn!(
                metric = name,
                max_series = self.settings.max_series,
                "flow metric at its maximum of series: new label sets are not added, but counted in {REFUSED}"
            );
        }
    }

    /// The pod `namespace/pod` was deleted at `now`: its series go once
    /// the grace period has passed ([`Registry::expire`]).
    pub fn endpoint_deleted(&self, namespace: &str, pod: &str, now: Instant) {
        self.inner().deleted.push_back(Deleted {
            due: now + self.settings.grace_period,
            namespace: namespace.to_string(),
            pod: pod.to_string(),
        });
    }

    /// Removes the series of pods deleted a grace period or longer before
    /// `now`; how many series went.
    pub fn expire(&self, now: Instant) -> usize {
        let mut inner = self.inner();
        let mut removed = 0;
        while inner.deleted.front().is_some_and(|d| d.due <= now) {
            let d = inner.deleted.pop_front().expect("checked");
            for h in inner.handlers.iter_mut() {
                removed += h.remove_pod(&d.namespace, &d.pod);
            }
        }
        if removed > 0 {
            inner.generation += 1;
        }
        removed
    }

    /// Series held, all metrics together.
    pub fn series(&self) -> usize {
        let inner = self.inner();
        inner
            .handlers
            .iter()
            .filter_map(|h| h.family.as_ref())
            .map(|f| f.len())
            .sum()
    }

    /// Every family with series and the refusal counter, sorted by name,
    /// series sorted by label values.
    pub fn gather(&self) -> Vec<MetricFamily> {
        let mut families: Vec<MetricFamily> = {
            let inner = self.inner();
            let mut out: Vec<MetricFamily> = inner
                .handlers
                .iter()
                .filter_map(|h| h.family.as_ref())
                .filter(|f| f.len() > 0)
                .map(|f| f.collect())
                .collect();
            if !inner.refused.is_empty() {
                out.push(refused_family(&inner.refused));
            }
            out
        };
        for f in &mut families {
            f.mut_metric().sort_by(|a, b| {
                let (a, b) = (a.get_label().iter(), b.get_label().iter());
                a.map(|l| l.value()).cmp(b.map(|l| l.value()))
            });
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        families
    }

    /// [`Registry::gather`] in Prometheus' text format.
    pub fn render(&self) -> String {
        encode(&self.gather())
    }
}

/// Families in Prometheus' text format.
pub fn encode(families: &[MetricFamily]) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(families, &mut out)
        .expect("writing to memory does not fail, and every family has a name and help");
    String::from_utf8(out).expect("the text format is UTF-8")
}

fn refused_family(refused: &BTreeMap<&'static str, u64>) -> MetricFamily {
    let metrics = refused
        .iter()
        .map(|(name, n)| {
            let mut pair = LabelPair::default();
            pair.set_name("metric".to_string());
            pair.set_value(name.to_string());
            let mut counter = Counter::default();
            counter.set_value(*n as f64);
            let mut m = Metric::from_label(vec![pair]);
            m.set_counter(counter);
            m
        })
        .collect();
    let mut family = MetricFamily::default();
    family.set_name(REFUSED.to_string());
    family.set_help(REFUSED_HELP.to_string());
    family.set_field_type(MetricType::COUNTER);
    family.set_metric(metrics);
    family
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;

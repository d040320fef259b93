//! The flow logs of one daemon by name: the static one from the flags and
//! those of the dynamic file. A new dynamic configuration starts the flow
//! logs that are new, restarts those that changed and stops those that are
//! gone; the others keep running untouched. One that does not compile
//! changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use lumen_proto::flow::{Flow, LostEvent};

use crate::config::{Compiled, FlowLogConfig, FlowLogsConfig};
use crate::file::FlowLogSink;
use crate::queue::{
    system_clock, Admission, BuiltFlow, Clock, Counters, Exporter, ExporterStats, LazyFlow, Record,
    DEFAULT_QUEUE_CAPACITY,
};
use crate::ConfigError;

/// What [`Exporters::apply`] did, by flow log name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Every exporter's counters and the reloads of the dynamic file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// By name, the static flow log first.
    pub exporters: Vec<ExporterStats>,
    pub reloads_applied: u64,
    pub reloads_rejected: u64,
}

struct Running {
    config: FlowLogConfig,
    exporter: Exporter,
    dynamic: bool,
}

/// The running flow logs.
pub struct Exporters {
    node_name: String,
    capacity: usize,
    clock: Clock,
    running: RwLock<Vec<Running>>,
    /// One apply at a time.
    applying: Mutex<()>,
    reloads_applied: AtomicU64,
    reloads_rejected: AtomicU64,
}

impl Exporters {
    /// No flow logs yet; lines of flows without a node name, and loss
    /// notices, name `node_name`.
    pub fn new(node_name: impl Into<String>) -> Exporters {
        Exporters {
            node_name: node_name.into(),
            capacity: DEFAULT_QUEUE_CAPACITY,
            clock: system_clock(),
            running: RwLock::new(Vec::new()),
            applying: Mutex::new(()),
            reloads_applied: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
        }
    }

    /// Records each flow log's queue holds.
    pub fn with_queue_capacity(mut self, capacity: usize) -> Exporters {
        self.capacity = capacity;
        self
    }

    /// The clock for `end`, aggregation intervals and loss notices.
    pub fn with_clock(mut self, clock: Clock) -> Exporters {
        self.clock = clock;
        self
    }

    /// Starts the static flow log (`--export-*`); kept by every [`Exporters::apply`].
    pub fn start_static(&self, config: FlowLogConfig) -> Result<(), ConfigError> {
        let _applying = self.applying.lock().expect("never poisoned");
        let mut others = FlowLogsConfig::default();
        others.flow_logs.extend(self.configs(|_| true));
        others.validate(Some(&config))?;
        let compiled = config.compile()?;
        let exporter = self.start(&config, compiled, Arc::default())?;
        self.running.write().expect("never poisoned").insert(
            0,
            Running {
                config,
                exporter,
                dynamic: false,
            },
        );
        Ok(())
    }

    /// Makes the dynamic flow logs those of `config`, or changes nothing
    /// and says why. A changed flow log is stopped (its queue written)
    /// before its successor starts, so flows offered meanwhile miss it.
    pub fn apply(&self, config: &FlowLogsConfig) -> Result<Applied, ConfigError> {
        let _applying = self.applying.lock().expect("never poisoned");
        let fixed = self.configs(|r| !r.dynamic).next();
        config.validate(fixed.as_ref())?;
        let running: Vec<FlowLogConfig> = self.configs(|r| r.dynamic).collect();
        let mut applied = Applied::default();
        let mut start = Vec::new();
        for log in &config.flow_logs {
            match running.iter().find(|r| r.name == log.name) {
                Some(r) if r == log => applied.unchanged.push(log.name.clone()),
                Some(_) => {
                    applied.changed.push(log.name.clone());
                    start.push((log, log.compile()?));
                }
                None => {
                    applied.added.push(log.name.clone());
                    start.push((log, log.compile()?));
                }
            }
        }
        applied.removed = running
            .iter()
            .filter(|r| !config.flow_logs.iter().any(|l| l.name == r.name))
            .map(|r| r.name.clone())
            .collect();

        // Stopped before their successors start, so that no two write one file.
        let stopping: Vec<Running> = {
            let mut list = self.running.write().expect("never poisoned");
            let (stop, keep) = std::mem::take(&mut *list).into_iter().partition(|r| {
                r.dynamic && (applied.removed.contains(&r.config.name) || applied.changed.contains(&r.config.name))
            });
            *list = keep;
            stop
        };
        let mut counters: Vec<(String, Arc<Counters>)> = Vec::new();
        for r in stopping {
            counters.push((r.config.name.clone(), r.exporter.counters().clone()));
            r.exporter.stop();
        }
        for (log, compiled) in start {
            // A changed flow log keeps counting where it was.
            let kept = counters.iter().find(|(n, _)| *n == log.name).map(|(_, c)| c.clone());
            let exporter = self.start(log, compiled, kept.unwrap_or_default())?;
            self.running.write().expect("never poisoned").push(Running {
                config: log.clone(),
                exporter,
                dynamic: true,
            });
        }
        Ok(applied)
    }

    fn start(
        &self,
        config: &FlowLogConfig,
        compiled: Compiled,
        counters: Arc<Counters>,
    ) -> Result<Exporter, ConfigError> {
        let admission = Admission {
            filters: compiled.filters.clone(),
            end: config.end,
        };
        let sink = FlowLogSink::new(config, compiled, &self.node_name, (self.clock)());
        Exporter::spawn(
            &config.name,
            self.capacity,
            admission,
            Box::new(sink),
            counters,
            self.clock.clone(),
        )
        .map_err(|source| ConfigError::Start {
            name: config.name.clone(),
            source,
        })
    }

    fn configs(&self, which: impl Fn(&Running) -> bool) -> impl Iterator<Item = FlowLogConfig> {
        let list = self.running.read().expect("never poisoned");
        let configs: Vec<FlowLogConfig> = list.iter().filter(|r| which(r)).map(|r| r.config.clone()).collect();
        configs.into_iter()
    }

    /// Hands `flow` to every flow log; never blocks.
    pub fn offer_flow(&self, flow: &Arc<Flow>) {
        self.offer_flow_lazily(&mut BuiltFlow::built(flow.clone()));
    }

    /// [`Exporters::offer_flow`] with the flow built only if a flow log
    /// takes it or must look at it: not when every queue is full.
    pub fn offer_flow_lazily<F: FnOnce() -> Arc<Flow>>(&self, flow: &mut LazyFlow<F>) {
        for r in self.running.read().expect("never poisoned").iter() {
            if !r.exporter.drop_if_full() {
                r.exporter.offer(Record::Flow(flow.get().clone()));
            }
        }
    }

    /// Hands a loss notice to every flow log; never blocks.
    pub fn offer_lost(&self, event: &LostEvent) {
        let time = (self.clock)();
        for r in self.running.read().expect("never poisoned").iter() {
            r.exporter.offer(Record::Lost { event: *event, time });
        }
    }

    /// Whether any flow log runs (a daemon can skip offering otherwise).
    pub fn is_empty(&self) -> bool {
        self.running.read().expect("never poisoned").is_empty()
    }

    pub fn stats(&self) -> ExportStats {
        ExportStats {
            exporters: self
                .running
                .read()
                .expect("never poisoned")
                .iter()
                .map(|r| r.exporter.counters().snapshot(r.exporter.name()))
                .collect(),
            reloads_applied: self.reloads_applied.load(Ordering::Relaxed),
            reloads_rejected: self.reloads_rejected.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_reload(&self, applied: bool) {
        let counter = match applied {
            true => &self.reloads_applied,
            false => &self.reloads_rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops every flow log after writing what is queued (and what is
    /// aggregated so far); [`Exporters::stats`] has none of them after.
    pub fn shutdown(&self) {
        let _applying = self.applying.lock().expect("never poisoned");
        let all = std::mem::take(&mut *self.running.write().expect("never poisoned"));
        for r in all {
            r.exporter.stop();
        }
    }
}

impl Drop for Exporters {
    fn drop(&mut self) {
        self.shutdown();
    }
}

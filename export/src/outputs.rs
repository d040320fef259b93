//! Everything one daemon exports to, started from its flags and fed
//! together: the flow logs (static and dynamic, [`Exporters`]) and OTLP
//! ([`Otlp`]). The observer and the relay each feed one from their stream
//! and serve its counters ([`Outputs::samples`]) on `/metrics`.

use std::sync::Arc;

use lumen_proto::flow::{Flow, LostEvent};
use lumen_rpc::telemetry::Sample;

use crate::otlp::Gather;
use crate::queue::{BuiltFlow, LazyFlow};
use crate::{ConfigError, ConfigFile, DropReason, ExportArgs, Exporters, Otlp, OtlpArgs, OtlpError, OtlpService};
use crate::{ReloadError, Watcher};

/// Why export cannot start; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    #[error("--export-file-path: {0}")]
    Static(#[source] ConfigError),
    #[error("--flowlogs-config {0}")]
    Dynamic(#[source] ReloadError),
    #[error("cannot watch the flow logs file")]
    Watch(#[source] std::io::Error),
    #[error("OTLP: {0}")]
    Otlp(#[from] OtlpError),
    #[error("cannot start the thread that feeds the exporters")]
    Feed(#[source] std::io::Error),
}

/// Running export.
pub struct Outputs {
    exporters: Arc<Exporters>,
    watcher: std::sync::Mutex<Option<Watcher>>,
    /// Taken out when it stops.
    otlp: std::sync::RwLock<Option<Otlp>>,
}

impl Outputs {
    /// Checks what `files` and `otlp` configure without starting anything:
    /// the static flow log's filters and mask, the dynamic file (read,
    /// parsed, validated, compiled) and the OTLP settings. A daemon calls it
    /// before it changes anything, so that bad input changes nothing.
    pub fn check(
        files: &ExportArgs,
        otlp: &OtlpArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), OutputsError> {
        otlp.resolve(env)?;
        let fixed = files.static_config();
        if let Some(config) = &fixed {
            config.compile().map_err(OutputsError::Static)?;
        }
        if let Some(path) = &files.flowlogs_config {
            let text = std::fs::read_to_string(path).map_err(|source| {
                OutputsError::Dynamic(ReloadError::Read {
                    path: path.clone(),
                    source,
                })
            })?;
            let config = |source| {
                OutputsError::Dynamic(ReloadError::Config {
                    path: path.clone(),
                    source: Box::new(source),
                })
            };
            let parsed = crate::FlowLogsConfig::parse_yaml(&text).map_err(config)?;
            parsed.validate(fixed.as_ref()).map_err(config)?;
            for log in &parsed.flow_logs {
                log.compile().map_err(config)?;
            }
        }
        Ok(())
    }

    /// Starts what `files` and `otlp` configure (the environment's
    /// `OTEL_EXPORTER_OTLP_*` too, read with `env`); `None` if nothing is.
    /// `gather` gives the metrics OTLP sends.
    pub fn start(
        files: &ExportArgs,
        otlp: &OtlpArgs,
        env: &dyn Fn(&str) -> Option<String>,
        service: OtlpService,
        gather: Option<Gather>,
    ) -> Result<Option<Outputs>, OutputsError> {
        let settings = otlp.resolve(env)?;
        let file = files.flowlogs_config.clone().map(ConfigFile::new);
        let config = files.static_config();
        if config.is_none() && file.is_none() && settings.is_none() {
            return Ok(None);
        }
        let exporters = Arc::new(Exporters::new(service.node_name.clone()));
        let stop = |e| {
            exporters.shutdown();
            e
        };
        if let Some(config) = config {
            exporters
                .start_static(config)
                .map_err(|e| stop(OutputsError::Static(e)))?;
        }
        let watcher = match file {
            Some(mut file) => {
                if let Some(Err(e)) = file.reload_if_changed(&exporters) {
                    return Err(stop(OutputsError::Dynamic(e)));
                }
                Some(Watcher::spawn(exporters.clone(), file).map_err(|e| stop(OutputsError::Watch(e)))?)
            }
            None => None,
        };
        let otlp = match settings {
            Some(settings) => Some(Otlp::start(&settings, &service, gather).map_err(|e| stop(e.into()))?),
            None => None,
        };
        Ok(Some(Outputs {
            exporters,
            watcher: std::sync::Mutex::new(watcher),
            otlp: std::sync::RwLock::new(otlp),
        }))
    }

    /// Whether no flow would be exported (only an empty dynamic file): the
    /// caller need not build flows.
    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty() && self.otlp().is_none()
    }

    /// Queues `flow` for every flow log and OTLP; never blocks.
    pub fn offer_flow(&self, flow: &Arc<Flow>) {
        self.offer_flow_lazily(&mut BuiltFlow::built(flow.clone()));
    }

    /// [`Outputs::offer_flow`] with the flow built only if an exporter
    /// takes it or must look at it: when every queue is full (an exporter
    /// far behind), the flow is dropped and counted by each, unbuilt.
    pub fn offer_flow_lazily<F: FnOnce() -> Arc<Flow>>(&self, flow: &mut LazyFlow<F>) {
        self.exporters.offer_flow_lazily(flow);
        if let Some(otlp) = &*self.otlp() {
            otlp.offer_flow_lazily(flow);
        }
    }

    /// Queues a loss notice everywhere; never blocks.
    pub fn offer_lost(&self, event: &LostEvent) {
        self.exporters.offer_lost(event);
        if let Some(otlp) = &*self.otlp() {
            otlp.offer_lost(event);
        }
    }

    pub fn exporters(&self) -> &Arc<Exporters> {
        &self.exporters
    }

    /// Records dropped by every exporter, all reasons (`lumen status`).
    pub fn dropped(&self) -> u64 {
        self.exporter_stats()
            .iter()
            .flat_map(|e| DropReason::ALL.map(|r| e.dropped(r)))
            .sum()
    }

    fn exporter_stats(&self) -> Vec<crate::ExporterStats> {
        let mut all = self.exporters.stats().exporters;
        all.extend(self.otlp().as_ref().and_then(|o| o.stats().logs));
        all
    }

    /// The exporters' counters, as `/metrics` serves them.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for e in self.exporter_stats() {
            out.push(Sample {
                name: "lumen_exporter_exported_total",
                help: "Records (flows, loss notices, aggregates) each exporter wrote or sent",
                labels: vec![("exporter", e.name.clone())],
                value: e.exported,
            });
            for reason in DropReason::ALL {
                out.push(Sample {
                    name: "lumen_exporter_dropped_total",
                    help: "Records an exporter dropped: its queue was full (queue_full) or writing or sending failed (write_error)",
                    labels: vec![("exporter", e.name.clone()), ("reason", reason.as_str().to_string())],
                    value: e.dropped(reason),
                });
            }
        }
        let stats = self.exporters.stats();
        for (result, value) in [("applied", stats.reloads_applied), ("rejected", stats.reloads_rejected)] {
            out.push(Sample {
                name: "lumen_flowlogs_config_reloads_total",
                help: "Changes of the --flowlogs-config file, by whether they were applied or rejected (the flow logs running stay as they were)",
                labels: vec![("result", result.to_string())],
                value,
            });
        }
        if let Some(otlp) = &*self.otlp() {
            let s = otlp.stats();
            out.push(Sample {
                name: "lumen_exporter_retries_total",
                help: "Failed sends an exporter retried",
                labels: vec![("exporter", crate::otlp::OTLP_NAME.to_string())],
                value: s.log_retries,
            });
            for (result, value) in [("ok", s.metric_exports), ("failed", s.metric_export_failures)] {
                out.push(Sample {
                    name: "lumen_otlp_metric_exports_total",
                    help: "Metric exports to the OTLP collector, by result (a failed one is not retried: the next carries the same cumulative values)",
                    labels: vec![("result", result.to_string())],
                    value,
                });
            }
        }
        out
    }

    fn otlp(&self) -> std::sync::RwLockReadGuard<'_, Option<Otlp>> {
        self.otlp.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops watching, writes and sends what the queues hold, and stops
    /// every exporter; offers afterwards go nowhere.
    pub fn stop(&self) {
        if let Some(w) = self.watcher.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.stop();
        }
        self.exporters.shutdown();
        let otlp = self.otlp.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut otlp) = otlp {
            otlp.shutdown();
        }
    }
}

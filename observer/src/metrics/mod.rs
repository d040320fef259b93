//! Prometheus metrics (`--metrics`, `--metrics-config`,
//! `--metrics-listen-address`): Hubble's flow metrics, counted from the
//! hub's stream like any other consumer, and Lumen's own counters, served
//! on `/metrics`.
//!
//! Off unless asked for: without `--metrics`, `--metrics-config` or
//! `--metrics-listen-address` nothing starts, so observers side by side
//! (tests, `lumen demo`) do not contend for Hubble's port 9965, and a node
//! that does not want metrics pays nothing for them.
//!
//! Three tasks: the counter (a subscription to the hub), the watcher
//! (deleted pods as they go; once a second a changed config file and
//! expired series) and the HTTP server.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lumen_metrics::{ConfigError, MetricsConfig, Registry, Settings};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::hub::{Hub, Subscription};

mod alike;
mod http;
mod node;
mod process;
mod watcher;

pub use alike::FlowCounter;
pub use http::{families, render};
pub use node::{Node, PolicyMetrics};

/// Hubble's metrics port, where `/metrics` is served unless told otherwise.
pub const DEFAULT_PORT: u16 = 9965;

/// What the observer was told about metrics.
#[derive(Clone, Debug, Default)]
pub struct MetricsOptions {
    /// The `--metrics` string (Hubble's grammar).
    pub metrics: Option<String>,
    /// The dynamic `--metrics-config` file.
    pub config_file: Option<PathBuf>,
    pub listen_address: Option<SocketAddr>,
    pub settings: Settings,
}

impl MetricsOptions {
    pub fn of(cfg: &crate::ObserverConfig) -> MetricsOptions {
        MetricsOptions {
            metrics: cfg.metrics.clone(),
            config_file: cfg.metrics_config.clone(),
            listen_address: cfg.metrics_listen_address,
            settings: Settings {
                max_series: cfg.metrics_max_series,
                grace_period: cfg.metrics_grace_period,
                packet_bytes: true,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics and --metrics-config cannot be used together: configure the metrics in one of them")]
    BothConfigs,
    #[error("--metrics: {0}")]
    Flag(#[source] ConfigError),
    #[error("cannot read --metrics-config {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("--metrics-config {}: {source}", path.display())]
    File { path: PathBuf, source: ConfigError },
    #[error("cannot listen on {address} for /metrics")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Checks a `--metrics` value as the flag parser: the error says which
/// metric and option, and why.
pub fn parse_flag(value: &str) -> Result<String, String> {
    let observer = Settings {
        packet_bytes: true,
        ..Settings::default()
    };
    Registry::new(observer)
        .configure(&MetricsConfig::parse_flag(value))
        .map(|_| value.to_string())
        .map_err(|e| e.to_string())
}

pub fn parse_max_series(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a number of series of at least 1")),
    }
}

pub use lumen_metrics::exposition::parse_listen_address;

/// Reads and applies the dynamic file to `registry`.
fn apply_file(registry: &Registry, path: &Path, text: &str) -> Result<(), MetricsError> {
    let file_error = |source| MetricsError::File {
        path: path.to_path_buf(),
        source,
    };
    let config = MetricsConfig::parse_yaml(text).map_err(file_error)?;
    registry.configure(&config).map_err(file_error)
}

/// Metrics configured and checked, not yet running: made before the
/// datapath is touched, so that a bad configuration changes nothing.
pub struct Prepared {
    options: MetricsOptions,
    registry: Arc<Registry>,
    /// The config file as read at start, so the watcher knows it.
    stamp: Option<watcher::Stamp>,
    node: Option<Arc<Node>>,
}

impl Prepared {
    /// `None` when no metrics and no address are configured.
    pub fn new(options: &MetricsOptions) -> Result<Option<Prepared>, MetricsError> {
        let registry = Arc::new(Registry::new(options.settings));
        let mut stamp = None;
        match (&options.metrics, &options.config_file) {
            (Some(_), Some(_)) => return Err(MetricsError::BothConfigs),
            (Some(flag), None) => registry
                .configure(&MetricsConfig::parse_flag(flag))
                .map_err(MetricsError::Flag)?,
            (None, Some(path)) => {
                let read = |source| MetricsError::Read {
                    path: path.clone(),
                    source,
                };
                stamp = Some(watcher::Stamp::of(&std::fs::metadata(path).map_err(read)?));
                let text = std::fs::read_to_string(path).map_err(read)?;
                apply_file(&registry, path, &text)?;
            }
            (None, None) if options.listen_address.is_none() => return Ok(None),
            (None, None) => {}
        }
        Ok(Some(Prepared {
            options: options.clone(),
            registry,
            stamp,
            node: None,
        }))
    }

    /// Serves the node's own metrics too (datapath counters, policy).
    pub fn with_node(mut self, node: Node) -> Prepared {
        self.node = Some(Arc::new(node));
        self
    }

    /// The address `/metrics` is served on: the one given, else Hubble's port.
    pub fn address(&self) -> SocketAddr {
        self.options
            .listen_address
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)))
    }

    /// Starts counting `hub`'s flows from now on, watching and serving.
    pub async fn start(self, hub: &Arc<Hub>, shutdown: watch::Receiver<bool>) -> Result<Metrics, MetricsError> {
        let address = self.address();
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| MetricsError::Listen { address, source })?;
        let local = listener.local_addr().unwrap_or(address);
        let flow_metrics = self.options.metrics.is_some() || self.options.config_file.is_some();
        let mut tasks = Vec::new();
        if flow_metrics {
            tasks.push(tokio::spawn(count(hub.follow(), self.registry.clone())));
        }
        let file = self
            .options
            .config_file
            .clone()
            .map(|path| watcher::ConfigFile::new(path, self.stamp));
        tasks.push(tokio::spawn(watcher::run(
            self.registry.clone(),
            hub.clone(),
            file,
            hub.endpoints_gone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(http::serve(
            listener,
            self.registry.clone(),
            hub.clone(),
            self.node,
            shutdown,
        )));
        tracing::info!(address = %local, metrics = ?self.registry.metrics(), "metrics served on /metrics");
        Ok(Metrics {
            registry: self.registry,
            address: local,
            tasks,
        })
    }
}

/// Running metrics; their tasks end with [`Metrics::stop`].
pub struct Metrics {
    registry: Arc<Registry>,
    address: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Metrics {
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Where `/metrics` is served (with the port the system chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Counts every flow `sub` reads; flows the store overwrote before they
/// were counted are lost to the metrics, and counted as such. It reads
/// each batch as soon as it is stored, while the records are still in the
/// CPU's cache (waiting to read more at a time cost more in the benchmark).
async fn count(mut sub: Subscription, registry: Arc<Registry>) {
    let mut counter = FlowCounter::default();
    while counter.next(&mut sub, &registry).await.is_some() {}
}

#[cfg(test)]
mod tests;

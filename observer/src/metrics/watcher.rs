//! Tells the registry of pods that are gone as they go, and once a second
//! re-reads the `--metrics-config` file if it changed and lets the series
//! of pods gone a grace period ago expire.
//!
//! Deleted pods are those the hub's published endpoints no longer have
//! (`Hub::endpoints_gone`): every way an endpoint goes shows there, and
//! the node's state needs to know nothing about metrics.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lumen_metrics::Registry;
use lumen_rpc::telemetry::InternalEvent;
use tokio::sync::{broadcast, watch};

use crate::hub::Hub;
use crate::telemetry::{MetricsConfigApplied, MetricsConfigRejected};

/// How often the file, the endpoints and the expiry are looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// What identifies one version of the file without reading it: a change
/// of any of these is a change of the file (a ConfigMap update swaps a
/// symlink, which changes the inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        }
    }
}

/// The dynamic config file and the version last looked at (`None`: missing).
pub struct ConfigFile {
    path: PathBuf,
    seen: Option<Stamp>,
}

impl ConfigFile {
    pub fn new(path: PathBuf, seen: Option<Stamp>) -> ConfigFile {
        ConfigFile { path, seen }
    }

    /// Applies the file if it changed since last looked at; a version that
    /// cannot be applied is reported once and the configuration stays.
    pub async fn reload_if_changed(&mut self, registry: &Registry, hub: &Hub) {
        let stamp = tokio::fs::metadata(&self.path).await.ok().map(|m| Stamp::of(&m));
        if stamp == self.seen {
            return;
        }
        self.seen = stamp;
        let applied = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => super::apply_file(registry, &self.path, &text),
            Err(source) => Err(super::MetricsError::Read {
                path: self.path.clone(),
                source,
            }),
        };
        match applied {
            Ok(()) => MetricsConfigApplied {
                path: &self.path,
                metrics: &registry.metrics(),
            }
            .emit(hub.telemetry()),
            Err(e) => MetricsConfigRejected {
                path: &self.path,
                error: &crate::error_chain(&e),
            }
            .emit(hub.telemetry()),
        }
    }
}

/// Tells the registry of pods gone until `shutdown`; checks the file and
/// expires series each [`POLL`].
pub async fn run(
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    mut file: Option<ConfigFile>,
    mut gone: broadcast::Receiver<(String, String)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            pod = gone.recv() => {
                match pod {
                    Ok((namespace, pod)) => {
                        tracing::debug!(namespace, pod, "endpoint gone; its metric series expire after the grace period");
                        registry.endpoint_deleted(&namespace, &pod, Instant::now());
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "endpoint deletions missed: their metric series stay until the observer restarts");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                continue;
            }
            _ = shutdown.changed() => return,
        }
        if let Some(f) = file.as_mut() {
            f.reload_if_changed(&registry, &hub).await;
        }
        let removed = registry.expire(Instant::now());
        if removed > 0 {
            tracing::debug!(removed, "metric series of deleted pods removed");
        }
    }
}

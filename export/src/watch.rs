//! Re-reads the dynamic flow logs file when it changes (looked at once a
//! second, like the metrics file) and applies it; a version that cannot be
//! applied is logged, counted and leaves the flow logs as they were.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::config::FlowLogsConfig;
use crate::manager::{Applied, Exporters};
use crate::ReloadError;

/// How often the file is looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// What identifies one version of the file without reading it (a ConfigMap
/// update swaps a symlink, which changes the inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The dynamic file and the version last looked at.
pub struct ConfigFile {
    path: PathBuf,
    /// `None` before the first look, `Some(None)` when it was missing.
    seen: Option<Option<Stamp>>,
}

impl ConfigFile {
    pub fn new(path: impl Into<PathBuf>) -> ConfigFile {
        ConfigFile {
            path: path.into(),
            seen: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies the file if it changed since last looked at (always the
    /// first time); `None` if it did not change.
    pub fn reload_if_changed(&mut self, exporters: &Exporters) -> Option<Result<Applied, ReloadError>> {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        });
        // A missing file is reported once, not every second.
        if self.seen == Some(stamp) {
            return None;
        }
        self.seen = Some(stamp);
        let result = self.reload(exporters);
        exporters.count_reload(result.is_ok());
        match &result {
            Ok(applied) => tracing::info!(
                path = %self.path.display(),
                added = ?applied.added,
                changed = ?applied.changed,
                removed = ?applied.removed,
                "flow logs configuration applied"
            ),
            Err(error) => tracing::warn!(%error, "flow logs configuration rejected; the flow logs stay as they were"),
        }
        Some(result)
    }

    fn reload(&self, exporters: &Exporters) -> Result<Applied, ReloadError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| ReloadError::Read {
            path: self.path.clone(),
            source,
        })?;
        let config = |source| ReloadError::Config {
            path: self.path.clone(),
            source: Box::new(source),
        };
        let parsed = FlowLogsConfig::parse_yaml(&text).map_err(config)?;
        exporters.apply(&parsed).map_err(config)
    }
}

/// A thread applying changes of the file until stopped (or dropped).
pub struct Watcher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Looks at `file` every [`POLL`]; load it once before to refuse to
    /// start on an invalid file.
    pub fn spawn(exporters: Arc<Exporters>, mut file: ConfigFile) -> std::io::Result<Watcher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("flowlogs-watch".into())
            .spawn(move || loop {
                file.reload_if_changed(&exporters);
                match stopped.recv_timeout(POLL) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })?;
        Ok(Watcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.halt();
    }
}

//! What can be wrong with a flow log configuration. The first four
//! messages are Hubble's own; every other names the flow log, the field and
//! why.

use std::path::PathBuf;

use lumen_flow::mask::MaskError;
use lumen_flow::FilterError;

/// A configuration that cannot be applied. Nothing of it is: the exporters
/// running before stay as they were.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("name is required")]
    NameRequired,
    #[error("duplicated flowlog name {0}")]
    DuplicateName(String),
    #[error("filePath is required")]
    PathRequired,
    #[error("duplicated flowlog path {0}")]
    DuplicatePath(String),
    /// An empty item (`- `) in the `flowLogs:` list.
    #[error("invalid flowlog at index {0}")]
    Empty(usize),
    #[error("flowlog {name:?}: {list}[{index}]: {reason}")]
    FilterSyntax {
        name: String,
        list: &'static str,
        index: usize,
        reason: String,
    },
    #[error("flowlog {name:?}: {list}[{index}]: {source}")]
    Filter {
        name: String,
        list: &'static str,
        index: usize,
        #[source]
        source: Box<FilterError>,
    },
    /// A `fieldMask` or `fieldAggregate` path that is not a `Flow` field.
    #[error("flowlog {name:?}: {list}: {source}")]
    Mask {
        name: String,
        list: &'static str,
        #[source]
        source: MaskError,
    },
    #[error("flowlog {name:?}: end: {value:?} is not an RFC 3339 time: {reason}")]
    End {
        name: String,
        value: String,
        reason: String,
    },
    #[error("flowlog {name:?}: aggregationInterval: {value:?} is not a duration such as 30s or 1m: {reason}")]
    Interval {
        name: String,
        value: String,
        reason: String,
    },
    #[error("flowlog {name:?}: aggregationInterval must be more than 0 with fieldAggregate")]
    ZeroInterval { name: String },
    /// The YAML file form; the message has the line and column.
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("flowlog {name:?}: cannot start its writer thread: {source}")]
    Start {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why the dynamic file was not applied (counted in
/// [`crate::ExportStats::reloads_rejected`]).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
}

//! What can be wrong with a metrics configuration: every error names the
//! metric, the option or filter, and why.

use lumen_flow::FilterError;

/// A configuration that cannot be applied. Nothing of it is: the metrics
/// configured before stay as they were.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("metric {metric:?} does not exist; the metrics are {known}")]
    UnknownMetric { metric: String, known: String },
    #[error("metric {metric:?} is configured twice")]
    Duplicate { metric: String },
    #[error("metric {metric:?} conflicts with metric {other:?} (the same series names): configure one of them")]
    Conflict { metric: String, other: String },
    #[error("metric \"flow-io\" counts the bytes of packets, which only an observer sees (flows carry no byte count): configure it on the observers")]
    NoPacketBytes,
    #[error("metric number {number} has no name")]
    MissingName { number: usize },
    #[error("metric {metric:?}: {source}")]
    Option {
        metric: String,
        #[source]
        source: OptionError,
    },
    #[error("metric {metric:?}: {list}[{index}]: {reason}")]
    FilterSyntax {
        metric: String,
        list: &'static str,
        index: usize,
        reason: String,
    },
    #[error("metric {metric:?}: {list}[{index}]: {source}")]
    Filter {
        metric: String,
        list: &'static str,
        index: usize,
        #[source]
        source: Box<FilterError>,
    },
    /// The YAML file form; the message has the line and column.
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// An option of one metric that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("unknown option {option:?}; this metric takes {known}")]
    Unknown { option: String, known: String },
    #[error("option {option:?} is given twice")]
    Twice { option: String },
    #[error("option {option}: {value:?} is not a context; use {known}, several separated by | (the first that is not empty is used)")]
    UnknownContext {
        option: String,
        value: String,
        known: &'static str,
    },
    #[error("option {option} needs a value: one or more contexts separated by |")]
    MissingContext { option: String },
    #[error("option labelsContext: {label:?} is not a label; use {known}, separated by commas")]
    UnknownLabel { label: String, known: &'static str },
    #[error("option labelsContext needs a value: one or more labels separated by commas")]
    MissingLabel,
    #[error("option {option} takes no value, got {value:?}")]
    NoValue { option: String, value: String },
}

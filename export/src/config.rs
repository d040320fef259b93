//! The flow logs to write, read from Hubble's dynamic `flowLogs:` file
//! (`--flowlogs-config`) or from the static `--export-*` flags
//! ([`crate::ExportArgs`]), and compiled once: filters with the code
//! GetFlows uses, field masks with [`FlowMask`].
//!
//! ```yaml
//! flowLogs:
//! - name: denied
//!   filePath: /var/log/lumen/denied.log
//!   fieldMask: [time, source.namespace, source.pod_name, destination, verdict]
//!   includeFilters:
//!   - verdict: [DROPPED]
//!     event_type: [{type: 1}]
//!   excludeFilters:
//!   - source_pod: ["kube-system/"]
//!   fileMaxSizeMb: 10
//!   fileMaxBackups: 5
//!   fileCompress: true
//!   end: "2030-01-01T00:00:00Z"
//! - name: summary
//!   filePath: /var/log/lumen/summary.log
//!   fieldAggregate: [source.namespace, source.workloads, destination.namespace, l4.TCP.destination_port, verdict]
//!   aggregationInterval: 1m
//! ```
//!
//! `fieldAggregate` and `aggregationInterval` are the keys of Hubble's
//! aggregation (CFP-37472): one record per distinct combination of those
//! fields every interval (see the crate docs for the record).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use lumen_flow::mask::FlowMask;
use lumen_flow::{CompiledFilter, FlowFilterSet};
use lumen_proto::flow::FlowFilter;
use serde::Deserialize;

use crate::ConfigError;

/// Hubble's default size at which a file is rotated.
pub const DEFAULT_FILE_MAX_SIZE_MB: u64 = 10;
/// Hubble's default number of rotated files kept.
pub const DEFAULT_FILE_MAX_BACKUPS: u32 = 5;
/// The interval of an aggregated flow log that names no `aggregationInterval`.
pub const DEFAULT_AGGREGATION_INTERVAL: Duration = Duration::from_secs(30);

const MIB: u64 = 1024 * 1024;

/// Every flow log of the dynamic file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowLogsConfig {
    pub flow_logs: Vec<FlowLogConfig>,
}

/// One flow log: Hubble's `FlowLogConfig`, with sizes in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowLogConfig {
    pub name: String,
    pub file_path: PathBuf,
    /// `Flow` fields written (all if empty).
    pub field_mask: Vec<String>,
    /// Flows written: those any of these match (all if none is given)…
    pub include_filters: Vec<FlowFilter>,
    /// …and none of these.
    pub exclude_filters: Vec<FlowFilter>,
    /// Size at which the file is rotated (`fileMaxSizeMb` MiB).
    pub file_max_bytes: u64,
    /// Rotated files kept: `<file>.1` (newest) to `<file>.N`.
    pub file_max_backups: u32,
    /// Whether rotated files are gzipped (`<file>.1.gz`).
    pub file_compress: bool,
    /// Nothing is written from this time on.
    pub end: Option<SystemTime>,
    /// Aggregate on these `Flow` fields instead of writing each flow.
    pub field_aggregate: Vec<String>,
    pub aggregation_interval: Duration,
}

impl FlowLogConfig {
    /// A flow log of every flow with Hubble's defaults.
    pub fn new(name: impl Into<String>, file_path: impl Into<PathBuf>) -> FlowLogConfig {
        FlowLogConfig {
            name: name.into(),
            file_path: file_path.into(),
            field_mask: Vec::new(),
            include_filters: Vec::new(),
            exclude_filters: Vec::new(),
            file_max_bytes: DEFAULT_FILE_MAX_SIZE_MB * MIB,
            file_max_backups: DEFAULT_FILE_MAX_BACKUPS,
            file_compress: false,
            end: None,
            field_aggregate: Vec::new(),
            aggregation_interval: DEFAULT_AGGREGATION_INTERVAL,
        }
    }

    /// Compiles the filters and masks, or says which one is wrong.
    pub fn compile(&self) -> Result<Compiled, ConfigError> {
        for (list, filters) in [
            ("includeFilters", &self.include_filters),
            ("excludeFilters", &self.exclude_filters),
        ] {
            for (index, filter) in filters.iter().enumerate() {
                CompiledFilter::new(filter).map_err(|e| ConfigError::Filter {
                    name: self.name.clone(),
                    list,
                    index,
                    source: Box::new(e),
                })?;
            }
        }
        let filters =
            FlowFilterSet::new(&self.include_filters, &self.exclude_filters).expect("each filter compiled above");
        let mask = |list, paths: &[String]| {
            FlowMask::new(paths).map_err(|source| ConfigError::Mask {
                name: self.name.clone(),
                list,
                source,
            })
        };
        let field_mask = mask("fieldMask", &self.field_mask)?;
        let aggregate = mask("fieldAggregate", &self.field_aggregate)?;
        if aggregate.is_some() && self.aggregation_interval.is_zero() {
            return Err(ConfigError::ZeroInterval {
                name: self.name.clone(),
            });
        }
        Ok(Compiled {
            filters,
            field_mask,
            aggregate,
        })
    }
}

/// A flow log's filters and masks, compiled.
#[derive(Debug)]
pub struct Compiled {
    pub filters: FlowFilterSet,
    pub field_mask: Option<FlowMask>,
    /// The fields aggregated on, when the flow log aggregates.
    pub aggregate: Option<FlowMask>,
}

impl FlowLogsConfig {
    /// Reads the dynamic file and checks names and paths as Hubble does.
    /// Unlike Hubble, an unknown key is an error rather than ignored, so
    /// that a misspelt `excludeFilter` does not silently write everything.
    pub fn parse_yaml(text: &str) -> Result<FlowLogsConfig, ConfigError> {
        let raw: Option<RawConfig> = serde_yaml_ng::from_str(text)?;
        let raw = raw.and_then(|r| r.flow_logs).unwrap_or_default();
        let mut flow_logs = Vec::with_capacity(raw.len());
        for (index, item) in raw.into_iter().enumerate() {
            flow_logs.push(item.ok_or(ConfigError::Empty(index))?.into_config()?);
        }
        let config = FlowLogsConfig { flow_logs };
        config.validate(None)?;
        Ok(config)
    }

    /// Hubble's checks: every flow log has a name and a file, none twice;
    /// nor the name or file of `other` (the static flow log).
    pub fn validate(&self, other: Option<&FlowLogConfig>) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        for log in other.into_iter().chain(&self.flow_logs) {
            if log.name.is_empty() {
                return Err(ConfigError::NameRequired);
            }
            if !names.insert(log.name.as_str()) {
                return Err(ConfigError::DuplicateName(log.name.clone()));
            }
            if log.file_path.as_os_str().is_empty() {
                return Err(ConfigError::PathRequired);
            }
            if !paths.insert(log.file_path.as_path()) {
                return Err(ConfigError::DuplicatePath(log.file_path.display().to_string()));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.flow_logs.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    flow_logs: Option<Vec<Option<RawFlowLog>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFlowLog {
    #[serde(default)]
    name: String,
    #[serde(default)]
    file_path: String,
    #[serde(default)]
    field_mask: Vec<String>,
    #[serde(default)]
    include_filters: Vec<serde_json::Value>,
    #[serde(default)]
    exclude_filters: Vec<serde_json::Value>,
    #[serde(default)]
    file_max_size_mb: u64,
    #[serde(default)]
    file_max_backups: u32,
    #[serde(default)]
    file_compress: bool,
    end: Option<String>,
    #[serde(default)]
    field_aggregate: Vec<String>,
    aggregation_interval: Option<String>,
}

impl RawFlowLog {
    fn into_config(self) -> Result<FlowLogConfig, ConfigError> {
        let name = self.name;
        let end = self
            .end
            .map(|value| match chrono::DateTime::parse_from_rfc3339(&value) {
                Ok(t) => Ok(SystemTime::from(t)),
                Err(e) => Err(ConfigError::End {
                    name: name.clone(),
                    value,
                    reason: e.to_string(),
                }),
            })
            .transpose()?;
        let aggregation_interval = match self.aggregation_interval {
            // Hubble writes `0s` for no aggregation.
            Some(value) if !self.field_aggregate.is_empty() => {
                humantime::parse_duration(&value).map_err(|e| ConfigError::Interval {
                    name: name.clone(),
                    value,
                    reason: e.to_string(),
                })?
            }
            _ => DEFAULT_AGGREGATION_INTERVAL,
        };
        let include_filters = filters(&name, "includeFilters", self.include_filters)?;
        let exclude_filters = filters(&name, "excludeFilters", self.exclude_filters)?;
        // 0 is Hubble's "default".
        let file_max_bytes = match self.file_max_size_mb {
            0 => DEFAULT_FILE_MAX_SIZE_MB,
            mb => mb,
        }
        .saturating_mul(MIB);
        let file_max_backups = match self.file_max_backups {
            0 => DEFAULT_FILE_MAX_BACKUPS,
            n => n,
        };
        Ok(FlowLogConfig {
            file_path: PathBuf::from(self.file_path),
            field_mask: self.field_mask,
            include_filters,
            exclude_filters,
            file_max_bytes,
            file_max_backups,
            file_compress: self.file_compress,
            end,
            field_aggregate: self.field_aggregate,
            aggregation_interval,
            name,
        })
    }
}

/// Filters as Hubble's protobuf JSON mapping reads them (proto or JSON
/// field names, enums by name).
fn filters(name: &str, list: &'static str, raw: Vec<serde_json::Value>) -> Result<Vec<FlowFilter>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(index, value)| {
            let syntax = |reason: String| ConfigError::FilterSyntax {
                name: name.to_string(),
                list,
                index,
                reason,
            };
            if !value.is_object() {
                return Err(syntax(format!("a filter is a map of FlowFilter fields, got {value}")));
            }
            let mut parsed =
                lumen_flow::format::parse_filters_json(&value.to_string()).map_err(|e| syntax(e.to_string()))?;
            Ok(parsed.pop().expect("one object, one filter"))
        })
        .collect()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

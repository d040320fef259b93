//! The static flow log, from flags named like Hubble's `--hubble-export-*`
//! options, and the path of the dynamic file. Flatten [`ExportArgs`] into a
//! daemon's command line (`#[command(flatten)]`).

use std::path::PathBuf;
use std::time::Duration;

use lumen_proto::flow::FlowFilter;

use crate::config::{FlowLogConfig, DEFAULT_AGGREGATION_INTERVAL, DEFAULT_FILE_MAX_BACKUPS, DEFAULT_FILE_MAX_SIZE_MB};

/// The name of the flow log the flags configure, in metrics and `lumen status`.
pub const STATIC_NAME: &str = "static";

/// Flow export flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ExportArgs {
    /// Write every flow and loss notice to this file as a JSON line, in the
    /// format of Hubble's exporter ({"flow":{…},"node_name":…,"time":…}).
    /// Nothing is written without it.
    #[arg(long)]
    pub export_file_path: Option<PathBuf>,
    /// Size in MiB at which the file is rotated to <file>.1, <file>.2, ….
    #[arg(long, default_value_t = DEFAULT_FILE_MAX_SIZE_MB, value_parser = clap::value_parser!(u64).range(1..))]
    pub export_file_max_size_mb: u64,
    /// Rotated files kept; the oldest beyond are removed.
    #[arg(long, default_value_t = DEFAULT_FILE_MAX_BACKUPS)]
    pub export_file_max_backups: u32,
    /// Gzip rotated files (<file>.1.gz, …).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub export_file_compress: bool,
    /// Write only flows that match one of these filters: FlowFilters as
    /// JSON objects, as `lumen observe --print-raw-filters` prints them.
    #[arg(long, value_parser = parse_filters)]
    pub export_allowlist: Option<FlowFilters>,
    /// Write no flow that matches one of these filters (JSON, as above).
    #[arg(long, value_parser = parse_filters)]
    pub export_denylist: Option<FlowFilters>,
    /// Flow fields to write (e.g. time,source.namespace,verdict), comma
    /// separated or repeated; all if none.
    #[arg(long, value_delimiter = ',')]
    pub export_fieldmask: Vec<String>,
    /// Write, every --export-aggregate-interval, one record per distinct
    /// combination of these flow fields with its ingress and egress counts
    /// instead of each flow (e.g. source.namespace,destination.namespace,verdict).
    #[arg(long, value_delimiter = ',')]
    pub export_aggregate_fields: Vec<String>,
    /// How often aggregated records are written.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub export_aggregate_interval: Duration,
    /// Hubble's dynamic flow logs file (a `flowLogs:` list of name,
    /// filePath, fieldMask, includeFilters, excludeFilters, fileMaxSizeMb,
    /// fileMaxBackups, fileCompress, end, fieldAggregate,
    /// aggregationInterval), re-read when it changes: a valid change applies
    /// at once, an invalid one is logged and the flow logs stay as they were.
    #[arg(long)]
    pub flowlogs_config: Option<PathBuf>,
}

/// Every flag at its default: no export.
impl Default for ExportArgs {
    fn default() -> ExportArgs {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            export: ExportArgs,
        }
        <Flags as clap::Parser>::parse_from(["lumen"]).export
    }
}

/// FlowFilters given on the command line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowFilters(pub Vec<FlowFilter>);

fn parse_filters(text: &str) -> Result<FlowFilters, String> {
    lumen_flow::format::parse_filters_json(text)
        .map(FlowFilters)
        .map_err(|e| e.to_string())
}

impl ExportArgs {
    /// The flow log the flags configure, named [`STATIC_NAME`]; `None`
    /// without `--export-file-path`.
    pub fn static_config(&self) -> Option<FlowLogConfig> {
        let path = self.export_file_path.clone()?;
        let interval = match self.export_aggregate_interval {
            d if d.is_zero() => DEFAULT_AGGREGATION_INTERVAL,
            d => d,
        };
        Some(FlowLogConfig {
            field_mask: self.export_fieldmask.clone(),
            include_filters: self.export_allowlist.clone().unwrap_or_default().0,
            exclude_filters: self.export_denylist.clone().unwrap_or_default().0,
            file_max_bytes: self.export_file_max_size_mb.saturating_mul(1024 * 1024),
            file_max_backups: self.export_file_max_backups,
            file_compress: self.export_file_compress,
            field_aggregate: self.export_aggregate_fields.clone(),
            aggregation_interval: interval,
            ..FlowLogConfig::new(STATIC_NAME, path)
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use lumen_proto::flow::Verdict;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        export: ExportArgs,
    }

    fn parse(args: &[&str]) -> Result<ExportArgs, String> {
        Cli::try_parse_from(std::iter::once("lumen").chain(args.iter().copied()))
            .map(|c| c.export)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_make_the_static_flow_log() {
        assert_eq!(parse(&[]).unwrap().static_config(), None);
        let args = parse(&[
            "--export-file-path=/var/log/lumen/events.log",
            "--export-file-max-size-mb=2",
            "--export-file-max-backups=3",
            "--export-file-compress",
            r#"--export-allowlist={"verdict":["DROPPED"]} {"source_pod":["default/"]}"#,
            r#"--export-denylist={"destination_port":["53"]}"#,
            "--export-fieldmask=time,verdict",
            "--export-fieldmask=source.namespace",
        ])
        .unwrap();
        let config = args.static_config().unwrap();
        assert_eq!(
            config,
            FlowLogConfig {
                field_mask: vec!["time".into(), "verdict".into(), "source.namespace".into()],
                include_filters: vec![
                    FlowFilter {
                        verdict: vec![Verdict::Dropped as i32],
                        ..Default::default()
                    },
                    FlowFilter {
                        source_pod: vec!["default/".into()],
                        ..Default::default()
                    },
                ],
                exclude_filters: vec![FlowFilter {
                    destination_port: vec!["53".into()],
                    ..Default::default()
                }],
                file_max_bytes: 2 * 1024 * 1024,
                file_max_backups: 3,
                file_compress: true,
                ..FlowLogConfig::new("static", "/var/log/lumen/events.log")
            }
        );
        let aggregated = parse(&[
            "--export-file-path=a.log",
            "--export-aggregate-fields=source.namespace,verdict",
            "--export-aggregate-interval=1m",
        ])
        .unwrap()
        .static_config()
        .unwrap();
        assert_eq!(aggregated.field_aggregate, ["source.namespace", "verdict"]);
        assert_eq!(aggregated.aggregation_interval, Duration::from_secs(60));
    }

    #[test]
    fn bad_filters_are_refused_at_the_command_line() {
        let err = parse(&[r#"--export-allowlist={"source_pods":["x"]}"#]).unwrap_err();
        assert!(
            err.starts_with(
                "error: invalid value '{\"source_pods\":[\"x\"]}' for '--export-allowlist <EXPORT_ALLOWLIST>': \
                 not a FlowFilter: unrecognized field name 'source_pods'"
            ),
            "{err}"
        );
    }
}

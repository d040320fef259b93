//! `lumen observe`: Hubble's GetFlows from the command line, with `hubble
//! observe`'s flags and output formats.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, ValueEnum};
use lumen_flow::format;
use lumen_flow::plan::{Keep, Plan};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{observer_client::ObserverClient, GetFlowsRequest, GetFlowsResponse};
use prost_types::FieldMask;

use crate::filters::FilterFlags;
use crate::printer::{parse_time, Output, Printer, Style, TimeFormat};
use crate::server::{connect, runtime, ServerArgs};

/// When `--color` colours compact and dict output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// When stdout is a terminal, NO_COLOR is unset and TERM is not dumb.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    #[command(flatten, next_help_heading = "Server")]
    pub server: ServerArgs,
    /// The last N matching flows (default 20 unless following, reading a file or given a time range). Through a
    /// relay, the cluster's last N (beyond its sort buffer, each node's).
    #[arg(long, value_name = "N", conflicts_with_all = ["first", "all"], help_heading = "Selectors")]
    pub last: Option<u64>,
    /// The first N matching flows in the observer's buffer.
    #[arg(long, value_name = "N", conflicts_with_all = ["all", "follow"], help_heading = "Selectors")]
    pub first: Option<u64>,
    /// Every flow in the observer's buffer.
    #[arg(long, help_heading = "Selectors")]
    pub all: bool,
    /// Keep printing new flows as they arrive.
    #[arg(short, long, help_heading = "Selectors")]
    pub follow: bool,
    /// Flows from this time on: a duration ago (3s, 4m, 1h43m, 1.5h) or a time: 2025-11-25,
    /// 2025-11-25T01Z, 2025-11-25T01:46+01:00, RFC 3339 (2025-11-25T01:46:56.162Z), RFC 1123 with a
    /// numeric zone (Tue, 25 Nov 2025 01:46:56 +0000).
    #[arg(long, value_name = "TIME", help_heading = "Selectors")]
    pub since: Option<String>,
    /// Flows up to this time, in the forms --since takes (ignored with --follow, as by hubble).
    #[arg(long, value_name = "TIME", help_heading = "Selectors")]
    pub until: Option<String>,
    #[command(flatten)]
    pub filters: FilterFlags,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "compact", help_heading = "Formatting")]
    pub output: Output,
    /// Print the node that saw each flow.
    #[arg(long, help_heading = "Formatting")]
    pub print_node_name: bool,
    /// Print the policies behind a policy-verdict event's ALLOWED or DENIED.
    #[arg(long, help_heading = "Formatting")]
    pub print_policy_names: bool,
    /// How to print times (not in -o json/jsonpb), always in UTC: StampMilli (Nov 25 01:46:56.162),
    /// YearMonthDay, YearMonthDayHour, YearMonthDayHourMinute, RFC3339, RFC3339Milli, RFC3339Micro,
    /// RFC3339Nano, RFC1123Z.
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "StampMilli",
        value_parser = TimeFormat::from_name,
        help_heading = "Formatting"
    )]
    pub time_format: TimeFormat,
    /// Colour compact and dict output.
    #[arg(long, value_enum, default_value = "auto", help_heading = "Flow format")]
    pub color: ColorWhen,
    /// Show pod, service and DNS names instead of IP addresses (--ip-translation=false: addresses).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        help_heading = "Flow format"
    )]
    pub ip_translation: bool,
    /// Show everything in numeric form: addresses, not names (turns --ip-translation off).
    #[arg(long, help_heading = "Flow format")]
    pub numeric: bool,
    /// Ask the server for these flow fields only (comma-separated paths: time,verdict,source.pod_name);
    /// with -o json or -o jsonpb.
    #[arg(
        long,
        value_name = "PATHS",
        value_delimiter = ',',
        alias = "experimental-field-mask",
        help_heading = "Other"
    )]
    pub field_mask: Vec<String>,
    /// With -o compact, dict or table, ask the server only for the fields they show.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        alias = "experimental-use-default-field-masks",
        help_heading = "Other"
    )]
    pub use_default_field_masks: bool,
    /// Read flows from this file (JSON lines as -o jsonpb or -o json writes; - for stdin) instead of a server.
    #[arg(long, value_name = "FILE", help_heading = "Other")]
    pub input_file: Option<PathBuf>,
    /// Print the filters the flags build, as Hubble's JSON filters, and exit.
    #[arg(long, help_heading = "Other")]
    pub print_raw_filters: bool,
    /// Say nothing on stderr about the relay's nodes.
    #[arg(short, long, help_heading = "Other")]
    pub silent_errors: bool,
}

/// The fields `hubble observe` asks for when it prints compact, dict or
/// table output (`--use-default-field-masks`).
const HUBBLE_FIELD_MASK: &[&str] = &[
    "time",
    "verdict",
    "ethernet",
    "IP",
    "l4",
    "source.identity",
    "source.namespace",
    "source.pod_name",
    "destination.identity",
    "destination.namespace",
    "destination.pod_name",
    "Type",
    "node_name",
    "l7",
    "event_type",
    "source_service",
    "destination_service",
    "is_reply",
    "Summary",
    "ip_trace_id",
];

/// What else Lumen's printer reads: Lumen's extension and the deny rules
/// (why a flow was dropped), and fields Hubble's printer reads but its mask
/// leaves out (a policy verdict's direction and match, a socket event's
/// translation point, a capture's point, authentication, DNS names).
const LUMEN_FIELD_MASK: &[&str] = &[
    "extensions",
    "ingress_denied_by",
    "egress_denied_by",
    "traffic_direction",
    "policy_match_type",
    "sock_xlate_point",
    "debug_capture_point",
    "auth_type",
    "source_names",
    "destination_names",
];

/// The field mask the request carries: `--field-mask` as given (JSON
/// output only, as hubble), else with `--use-default-field-masks` the
/// fields the printer shows.
fn field_mask(args: &ObserveArgs) -> anyhow::Result<Option<FieldMask>> {
    let json = matches!(args.output, Output::Json | Output::Jsonpb);
    if !args.field_mask.is_empty() {
        if !json {
            let output = args.output.to_possible_value().expect("no skipped values");
            bail!(
                "-o {} cannot be used with --field-mask: a custom mask is for -o json or -o jsonpb",
                output.get_name()
            );
        }
        lumen_flow::mask::FlowMask::new(&args.field_mask).context("invalid --field-mask")?;
        return Ok(Some(FieldMask {
            paths: args.field_mask.clone(),
        }));
    }
    if json || !args.use_default_field_masks {
        return Ok(None);
    }
    let policies: &[&str] = match args.print_policy_names {
        true => &["ingress_allowed_by", "egress_allowed_by"],
        false => &[],
    };
    let paths = HUBBLE_FIELD_MASK.iter().chain(LUMEN_FIELD_MASK).chain(policies);
    Ok(Some(FieldMask {
        paths: paths.map(|p| p.to_string()).collect(),
    }))
}

/// The request the flags describe, as `hubble observe` builds it.
pub fn request(args: &ObserveArgs, now: SystemTime) -> anyhow::Result<GetFlowsRequest> {
    let since = args.since.as_deref().map(|s| parse_time(s, now)).transpose()?;
    let until = match args.follow {
        true => None,
        false => args.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
    };
    if let (Some(s), Some(u)) = (&since, &until) {
        if (s.seconds, s.nanos) > (u.seconds, u.nanos) {
            bail!("--since is after --until: nothing can match");
        }
    }
    let number = match (args.first, args.last) {
        (Some(n), _) | (_, Some(n)) => n,
        _ if args.all => u64::MAX,
        _ if args.follow || since.is_some() || until.is_some() || args.input_file.is_some() => 0,
        _ => 20,
    };
    lumen_flow::compile(&args.filters.whitelist, &args.filters.blacklist).context("invalid filter")?;
    Ok(GetFlowsRequest {
        number,
        first: args.first.is_some(),
        follow: args.follow,
        since,
        until,
        whitelist: args.filters.whitelist.clone(),
        blacklist: args.filters.blacklist.clone(),
        field_mask: field_mask(args)?,
        ..Default::default()
    })
}

/// Hubble's `--print-raw-filters` layout: YAML lists of JSON filters.
pub fn raw_filters(filters: &FilterFlags) -> anyhow::Result<String> {
    let mut out = String::new();
    for (name, list) in [("allowlist", &filters.whitelist), ("denylist", &filters.blacklist)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(name);
        out.push_str(":\n");
        for f in list {
            // A YAML single-quoted string, so a quote inside is doubled.
            out.push_str(&format!("- '{}'\n", format::filter_json(f)?.replace('\'', "''")));
        }
    }
    Ok(out)
}

/// The printer's style the flags choose; `terminal`: whether stdout is one,
/// `env`: the environment (NO_COLOR, TERM) for `--color auto`.
pub fn style(args: &ObserveArgs, terminal: bool, env: impl Fn(&str) -> Option<String>) -> Style {
    let color = match args.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            terminal && env("NO_COLOR").is_none_or(|v| v.is_empty()) && env("TERM").is_none_or(|t| t != "dumb")
        }
    };
    Style {
        time: args.time_format,
        node_name: args.print_node_name,
        policy_names: args.print_policy_names,
        ip_translation: args.ip_translation && !args.numeric,
        color: color && matches!(args.output, Output::Compact | Output::Dict),
    }
}

/// Applies the request to flows read from a file: filters, time range, and
/// first/last N, as the observer would.
pub fn filter_offline(
    input: impl BufRead,
    source: &str,
    req: &GetFlowsRequest,
    mut emit: impl FnMut(GetFlowsResponse) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let filters = lumen_flow::compile(&req.whitelist, &req.blacklist).context("invalid filter")?;
    // The same window as a server's; the file is read forward once.
    let plan = Plan::new(&GetFlowsRequest {
        follow: false,
        ..req.clone()
    })?;
    let mut kept = Keep::new(plan.take());
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading {source}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let response = format::parse_json(&line).with_context(|| format!("{source}:{}", n + 1))?;
        if let Some(ResponseTypes::Flow(flow)) = &response.response_types {
            // A flow without a time is before any `since`.
            let t = flow.time.as_ref().map_or(0, |t| {
                u64::try_from(t.seconds).map_or(0, |s| s.saturating_mul(1_000_000_000).saturating_add(t.nanos as u64))
            });
            if !filters.matches(flow) || plan.before(t) || plan.after(t) {
                continue;
            }
        }
        if !kept.offer(response) {
            break;
        }
    }
    kept.into_kept().into_iter().try_for_each(&mut emit)
}

pub fn observe(args: &ObserveArgs) -> anyhow::Result<()> {
    match print_flows(args) {
        // The reader went away (`lumen observe | head`): nothing more to do.
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == Some(std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        done => done,
    }
}

fn print_flows(args: &ObserveArgs) -> anyhow::Result<()> {
    if args.print_raw_filters {
        print!("{}", raw_filters(&args.filters)?);
        return Ok(());
    }
    if args.output == Output::Table && args.follow {
        bail!("-o table aligns columns over all flows and cannot follow: use -o compact with --follow");
    }
    let req = request(args, SystemTime::now())?;
    let stdout = std::io::stdout();
    let style = style(args, stdout.is_terminal(), |name| std::env::var(name).ok());
    let errors: Box<dyn Write> = match args.silent_errors {
        true => Box::new(std::io::sink()),
        false => Box::new(std::io::stderr()),
    };
    let mut printer = Printer::new(stdout.lock(), errors, args.output, style);
    if let Some(file) = &args.input_file {
        if args.follow {
            bail!("--follow cannot be used with --input-file");
        }
        let name = file.display().to_string();
        if name == "-" {
            filter_offline(std::io::stdin().lock(), "stdin", &req, |r| printer.print(r))?;
        } else {
            let f = std::fs::File::open(file).with_context(|| format!("cannot open --input-file {name}"))?;
            filter_offline(std::io::BufReader::new(f), &name, &req, |r| printer.print(r))?;
        }
        drop(printer.finish()?);
        return Ok(());
    }
    runtime()?.block_on(async {
        let (channel, server) = connect(&args.server).await?;
        let mut client = ObserverClient::new(channel);
        let mut stream = client
            .get_flows(lumen_proto::with_extensions(req))
            .await
            .with_context(|| format!("GetFlows on {server}"))?
            .into_inner();
        while let Some(response) = stream.message().await.context("flow stream broke off")? {
            printer.print(response)?;
        }
        anyhow::Ok(())
    })?;
    drop(printer.finish()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        observe: ObserveArgs,
    }

    fn args(list: &[&str]) -> ObserveArgs {
        T::try_parse_from(std::iter::once("observe").chain(list.iter().copied()))
            .unwrap()
            .observe
    }

    fn mask(list: &[&str]) -> Option<Vec<String>> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_035_216);
        request(&args(list), now).unwrap().field_mask.map(|m| m.paths)
    }

    #[test]
    fn default_field_masks_ask_for_what_the_printer_shows() {
        let compact = mask(&[]).unwrap();
        assert_eq!(compact.len(), 30);
        assert_eq!(&compact[..3], ["time", "verdict", "ethernet"]);
        assert!(compact.contains(&"extensions".to_string()));
        assert!(compact.contains(&"ingress_denied_by".to_string()));
        assert!(!compact.contains(&"ingress_allowed_by".to_string()));
        assert_eq!(mask(&["-o", "table"]), Some(compact.clone()));
        let policies = mask(&["-o", "dict", "--print-policy-names"]).unwrap();
        assert_eq!(&policies[30..], ["ingress_allowed_by", "egress_allowed_by"]);
        assert_eq!(mask(&["--use-default-field-masks=false"]), None);
        assert_eq!(mask(&["-o", "jsonpb"]), None);
        assert_eq!(mask(&["-o", "json"]), None);
        lumen_flow::mask::FlowMask::new(&compact).unwrap();
    }

    #[test]
    fn a_custom_field_mask_is_sent_as_given_with_json_output() {
        assert_eq!(
            mask(&[
                "-o",
                "jsonpb",
                "--field-mask",
                "time,verdict",
                "--field-mask",
                "source.pod_name"
            ]),
            Some(vec!["time".into(), "verdict".into(), "source.pod_name".into()])
        );
        let now = SystemTime::UNIX_EPOCH;
        let refuse = |list: &[&str]| format!("{:#}", request(&args(list), now).unwrap_err());
        assert_eq!(
            refuse(&["--field-mask", "time"]),
            "-o compact cannot be used with --field-mask: a custom mask is for -o json or -o jsonpb"
        );
        assert_eq!(
            refuse(&["-o", "json", "--field-mask", "source.podname"]),
            "invalid --field-mask: field_mask path \"source.podname\": flow.Endpoint has no field \"podname\""
        );
    }

    #[test]
    fn number_and_times_as_hubble_asks() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_035_216);
        let req = |list: &[&str]| request(&args(list), now).unwrap();
        assert_eq!((req(&[]).number, req(&[]).first), (20, false));
        assert_eq!(req(&["--all"]).number, u64::MAX);
        assert_eq!((req(&["--first", "3"]).number, req(&["--first", "3"]).first), (3, true));
        assert_eq!(req(&["-f"]).number, 0);
        assert_eq!(req(&["--input-file", "x"]).number, 0);
        let following = req(&["-f", "--since", "5m", "--until", "1m"]);
        assert_eq!(following.since.map(|t| t.seconds), Some(1_764_035_216 - 300));
        assert_eq!(following.until, None, "--until is ignored when following");
        assert_eq!(
            req(&["--until", "1m"]).until.map(|t| t.seconds),
            Some(1_764_035_216 - 60)
        );
    }

    #[test]
    fn style_follows_the_formatting_flags() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let plain = style(&args(&[]), false, env(&[]));
        assert_eq!(plain, Style::default());
        assert!(style(&args(&[]), true, env(&[])).color);
        assert!(!style(&args(&[]), true, env(&[("NO_COLOR", "1")])).color);
        assert!(!style(&args(&[]), true, env(&[("TERM", "dumb")])).color);
        assert!(style(&args(&["--color", "always", "-o", "dict"]), false, env(&[])).color);
        assert!(!style(&args(&["--color", "always", "-o", "table"]), true, env(&[])).color);
        assert!(!style(&args(&["--color", "never"]), true, env(&[])).color);
        let all = style(
            &args(&[
                "--numeric",
                "--print-node-name",
                "--print-policy-names",
                "--time-format",
                "rfc3339nano",
            ]),
            false,
            env(&[]),
        );
        assert_eq!(
            all,
            Style {
                time: TimeFormat::Rfc3339Nano,
                node_name: true,
                policy_names: true,
                ip_translation: false,
                color: false,
            }
        );
        assert!(!style(&args(&["--ip-translation=false"]), false, env(&[])).ip_translation);
    }
}

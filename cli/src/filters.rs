//! `lumen observe`'s filter flags, turned into Hubble `FlowFilter` lists the
//! way `hubble observe` builds them:
//!
//! * every flag of one list goes into the same filter (AND);
//! * a both-direction flag (`--pod x`) splits the list into a "source" and
//!   a "destination" filter (`source_pod=x` OR `destination_pod=x`), and
//!   every other flag is added to both;
//! * `--not` sends the next filter flag to the blacklist.
//!
//! The order of `--not` relative to the other flags matters, so the filters
//! are built from clap's argument indices rather than from derived fields.

use clap::error::ErrorKind;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use lumen_flow::monitor_type;
use lumen_proto::flow::{DropReason, EventTypeFilter, FlowFilter, TcpFlags, TrafficDirection, Verdict};

/// Adds one value to a filter list; the error explains the value.
type Apply = fn(&mut Tracker, &str) -> Result<(), String>;

/// Up to two filters: `left` gets source-side fields of both-direction flags,
/// `right` destination-side ones, and all other flags go to both.
#[derive(Debug, Default)]
pub struct Tracker {
    left: Option<FlowFilter>,
    right: Option<FlowFilter>,
}

impl Tracker {
    fn left(&mut self, update: impl FnOnce(&mut FlowFilter)) {
        update(self.left.get_or_insert_with(FlowFilter::default));
    }

    fn right(&mut self, update: impl FnOnce(&mut FlowFilter)) {
        update(self.right.get_or_insert_with(FlowFilter::default));
    }

    fn both(&mut self, update: impl Fn(&mut FlowFilter)) {
        self.left(&update);
        self.right(&update);
    }

    fn filters(self) -> Vec<FlowFilter> {
        match (self.left, self.right) {
            (Some(l), Some(r)) if l == r => vec![l],
            (l, r) => l.into_iter().chain(r).collect(),
        }
    }
}

fn side(t: &mut Tracker, from: bool, to: bool, value: String, field: fn(&mut FlowFilter, bool) -> &mut Vec<String>) {
    match (from, to) {
        (true, true) => {
            t.left(|f| field(f, true).push(value.clone()));
            t.right(|f| field(f, false).push(value));
        }
        (true, false) => t.both(|f| field(f, true).push(value.clone())),
        _ => t.both(|f| field(f, false).push(value.clone())),
    }
}

fn ip(f: &mut FlowFilter, source: bool) -> &mut Vec<String> {
    if source {
        &mut f.source_ip
    } else {
        &mut f.destination_ip
    }
}

fn pod(f: &mut FlowFilter, source: bool) -> &mut Vec<String> {
    if source {
        &mut f.source_pod
    } else {
        &mut f.destination_pod
    }
}

fn label(f: &mut FlowFilter, source: bool) -> &mut Vec<String> {
    if source {
        &mut f.source_label
    } else {
        &mut f.destination_label
    }
}

fn port(f: &mut FlowFilter, source: bool) -> &mut Vec<String> {
    if source {
        &mut f.source_port
    } else {
        &mut f.destination_port
    }
}

fn identity(t: &mut Tracker, from: bool, to: bool, value: &str) -> Result<(), String> {
    let id: u32 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a numeric identity (e.g. 12345)"))?;
    let push = |f: &mut FlowFilter, source: bool| {
        if source {
            f.source_identity.push(id)
        } else {
            f.destination_identity.push(id)
        }
    };
    match (from, to) {
        (true, true) => {
            t.left(|f| push(f, true));
            t.right(|f| push(f, false));
        }
        (true, false) => t.both(|f| push(f, true)),
        _ => t.both(|f| push(f, false)),
    }
    Ok(())
}

fn port_value(value: &str) -> Result<String, String> {
    value
        .parse::<u16>()
        .map(|p| p.to_string())
        .map_err(|_| format!("{value:?} is not a port (0-65535)"))
}

fn enum_value(value: &str, what: &str, parse: fn(&str) -> Option<i32>, names: &str) -> Result<i32, String> {
    parse(&value.to_ascii_uppercase()).ok_or_else(|| format!("{value:?} is not a {what}: use one of {names}"))
}

fn event_type(value: &str) -> Result<EventTypeFilter, String> {
    let (kind, sub) = value.split_once(':').map_or((value, None), |(k, s)| (k, Some(s)));
    let r#type = match kind {
        "drop" => monitor_type::DROP,
        "debug" => monitor_type::DEBUG,
        "capture" => monitor_type::CAPTURE,
        "trace" => monitor_type::TRACE,
        "policy-verdict" => monitor_type::POLICY_VERDICT,
        "recorder" => monitor_type::RECORDER_CAPTURE,
        "trace-sock" => monitor_type::TRACE_SOCK,
        "l7" => monitor_type::ACCESS_LOG,
        "agent" => monitor_type::AGENT,
        _ => {
            return Err(format!(
                "{value:?} is not an event type: use one of trace, drop, l7, policy-verdict, trace-sock, capture, debug, recorder, agent, optionally with :SUBTYPE (a number)"
            ))
        }
    };
    let sub_type = sub
        .map(|s| {
            s.parse::<i32>()
                .map_err(|_| format!("{s:?} in {value:?} is not a numeric sub-type"))
        })
        .transpose()?;
    Ok(EventTypeFilter {
        r#type,
        match_sub_type: sub_type.is_some(),
        sub_type: sub_type.unwrap_or(0),
    })
}

fn tcp_flags(value: &str) -> Result<TcpFlags, String> {
    let mut flags = TcpFlags::default();
    for name in value.split(',') {
        let flag = match name.trim().to_ascii_uppercase().as_str() {
            "SYN" => &mut flags.syn,
            "ACK" => &mut flags.ack,
            "FIN" => &mut flags.fin,
            "RST" => &mut flags.rst,
            "PSH" => &mut flags.psh,
            "URG" => &mut flags.urg,
            "ECE" => &mut flags.ece,
            "CWR" => &mut flags.cwr,
            "NS" => &mut flags.ns,
            _ => {
                return Err(format!(
                "{name:?} is not a TCP flag: use a comma-separated list of SYN, ACK, FIN, RST, PSH, URG, ECE, CWR, NS"
            ))
            }
        };
        *flag = true;
    }
    Ok(flags)
}

/// `(flag, value name, help, apply)`; `from-`/`to-` forms are generated for
/// the first group by [`side_flags`].
const OTHER_FLAGS: &[(&str, &str, &str, Apply)] = &[
    (
        "protocol",
        "PROTO",
        "Flows with this L4/L7 protocol (tcp, udp, icmp, http, dns, ...)",
        |t, v| {
            let v = v.to_string();
            t.both(|f| f.protocol.push(v.clone()));
            Ok(())
        },
    ),
    (
        "verdict",
        "VERDICT",
        "Flows with this verdict (FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED)",
        |t, v| {
            let n = enum_value(
                v,
                "verdict",
                |s| Verdict::from_str_name(s).map(|e| e as i32),
                "FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED",
            )?;
            t.both(|f| f.verdict.push(n));
            Ok(())
        },
    ),
    (
        "drop-reason",
        "REASON",
        "Dropped flows with this drop reason (e.g. POLICY_DENIED)",
        |t, v| {
            let n = enum_value(
                v,
                "drop reason",
                |s| DropReason::from_str_name(s).map(|e| e as i32),
                "the drop reason names of flow.proto, e.g. POLICY_DENIED, POLICY_DENY, CT_MAP_INSERTION_FAILED",
            )?;
            t.both(|f| f.drop_reason_desc.push(n));
            Ok(())
        },
    ),
    (
        "type",
        "TYPE[:SUBTYPE]",
        "Flows of this event type (trace, drop, l7, policy-verdict, trace-sock, ...)",
        |t, v| {
            let e = event_type(v)?;
            t.both(|f| f.event_type.push(e));
            Ok(())
        },
    ),
    (
        "traffic-direction",
        "DIRECTION",
        "Flows in this direction (ingress, egress)",
        |t, v| {
            let n = enum_value(
                v,
                "traffic direction",
                |s| match s {
                    "INGRESS" | "EGRESS" => TrafficDirection::from_str_name(s).map(|e| e as i32),
                    _ => None,
                },
                "ingress, egress",
            )?;
            t.both(|f| f.traffic_direction.push(n));
            Ok(())
        },
    ),
    (
        "tcp-flags",
        "FLAGS",
        "TCP flows with all these flags set (e.g. SYN or SYN,ACK)",
        |t, v| {
            let flags = tcp_flags(v)?;
            t.both(|f| f.tcp_flags.push(flags));
            Ok(())
        },
    ),
    (
        "node-name",
        "NAME",
        "Flows observed on this node (a glob, e.g. node-*)",
        |t, v| {
            let v = v.to_string();
            t.both(|f| f.node_name.push(v.clone()));
            Ok(())
        },
    ),
];

/// Flag names and help of the direction-aware filters; `apply(from, to)`.
type SideApply = fn(&mut Tracker, bool, bool, &str) -> Result<(), String>;
const SIDE_FLAGS: &[(&str, &str, &str, SideApply)] = &[
    ("ip", "IP", "IP or CIDR", |t, from, to, v| {
        side(t, from, to, v.to_string(), ip);
        Ok(())
    }),
    ("pod", "[NAMESPACE/]POD", "pod (name prefix)", |t, from, to, v| {
        side(t, from, to, v.to_string(), pod);
        Ok(())
    }),
    ("namespace", "NAMESPACE", "namespace", |t, from, to, v| {
        side(t, from, to, format!("{v}/"), pod);
        Ok(())
    }),
    (
        "label",
        "SELECTOR",
        "label selector (e.g. app=web)",
        |t, from, to, v| {
            side(t, from, to, v.to_string(), label);
            Ok(())
        },
    ),
    ("identity", "ID", "security identity", identity),
    ("port", "PORT", "L4 port", |t, from, to, v| {
        side(t, from, to, port_value(v)?, port);
        Ok(())
    }),
];

/// How one filter flag changes a [`Tracker`].
type FlagFn = Box<dyn Fn(&mut Tracker, &str) -> Result<(), String>>;

/// Every filter flag's name and what it does.
fn filter_flags() -> Vec<(String, FlagFn)> {
    let mut flags: Vec<(String, FlagFn)> = Vec::new();
    for &(name, _, _, apply) in SIDE_FLAGS {
        flags.push((name.into(), Box::new(move |t, v| apply(t, true, true, v))));
        flags.push((format!("from-{name}"), Box::new(move |t, v| apply(t, true, false, v))));
        flags.push((format!("to-{name}"), Box::new(move |t, v| apply(t, false, true, v))));
    }
    for &(name, _, _, apply) in OTHER_FLAGS {
        flags.push((name.into(), Box::new(apply)));
    }
    flags
}

/// The whitelist and blacklist the filter flags describe.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FilterFlags {
    pub whitelist: Vec<FlowFilter>,
    pub blacklist: Vec<FlowFilter>,
}

fn leak(s: String) -> &'static str {
    // clap wants 'static ids for args built at run time; a few dozen short
    // strings once per process.
    Box::leak(s.into_boxed_str())
}

impl Args for FilterFlags {
    fn augment_args(mut cmd: Command) -> Command {
        let arg = |name: String, value: &'static str, help: String| {
            clap::Arg::new(leak(name.clone()))
                .long(leak(name))
                .value_name(value)
                .help(help)
                .action(clap::ArgAction::Append)
                .help_heading("Filters")
        };
        for &(name, value, what, _) in SIDE_FLAGS {
            cmd = cmd
                .arg(arg(name.into(), value, format!("Flows from or to this {what}")))
                .arg(arg(format!("from-{name}"), value, format!("Flows from this {what}")))
                .arg(arg(format!("to-{name}"), value, format!("Flows to this {what}")));
        }
        for &(name, value, help, _) in OTHER_FLAGS {
            cmd = cmd.arg(arg(name.into(), value, help.into()));
        }
        cmd.arg(
            clap::Arg::new("not")
                .long("not")
                // Append keeps the position of every occurrence, which Count does not.
                .action(clap::ArgAction::Append)
                .num_args(0)
                .default_missing_value("true")
                .help("Negate the next filter flag: its flows are excluded (blacklist)")
                .help_heading("Filters"),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for FilterFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let flags = filter_flags();
        let mut uses: Vec<(usize, usize, &String)> = Vec::new();
        for (i, (name, _)) in flags.iter().enumerate() {
            if let (Some(idx), Some(values)) = (matches.indices_of(name), matches.get_many::<String>(name)) {
                uses.extend(idx.zip(values).map(|(at, v)| (at, i, v)));
            }
        }
        uses.sort_by_key(|u| u.0);
        let mut nots: Vec<usize> = match matches.value_source("not") {
            Some(clap::parser::ValueSource::CommandLine) => {
                matches.indices_of("not").map(Iterator::collect).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        nots.sort_unstable();
        let (mut white, mut black) = (Tracker::default(), Tracker::default());
        let mut next_not = nots.iter().peekable();
        for (at, i, value) in uses {
            let mut negate = false;
            while next_not.next_if(|n| **n < at).is_some() {
                negate = true;
            }
            let (name, apply) = &flags[i];
            apply(if negate { &mut black } else { &mut white }, value).map_err(|e| {
                clap::Error::raw(ErrorKind::ValueValidation, format!("invalid value for --{name}: {e}\n"))
            })?;
        }
        if next_not.next().is_some() {
            return Err(clap::Error::raw(
                ErrorKind::ValueValidation,
                "--not must come before the filter flag it negates, e.g. --not --verdict DROPPED\n",
            ));
        }
        Ok(FilterFlags {
            whitelist: white.filters(),
            blacklist: black.filters(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        f: FilterFlags,
    }

    fn build(args: &[&str]) -> FilterFlags {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .f
    }

    fn err(args: &[&str]) -> String {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap_err()
            .to_string()
            .split("\n\n")
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn from_and_to_flags_share_one_filter() {
        let f = build(&[
            "--from-pod",
            "default/front",
            "--to-port",
            "8080",
            "--verdict",
            "dropped",
        ]);
        assert_eq!(
            f.whitelist,
            vec![FlowFilter {
                source_pod: vec!["default/front".into()],
                destination_port: vec!["8080".into()],
                verdict: vec![Verdict::Dropped as i32],
                ..Default::default()
            }]
        );
        assert!(f.blacklist.is_empty());
    }

    #[test]
    fn both_direction_flag_is_source_or_destination() {
        let f = build(&[
            "--pod",
            "default/web",
            "--protocol",
            "tcp",
            "--namespace",
            "kube-system",
        ]);
        assert_eq!(
            f.whitelist,
            vec![
                FlowFilter {
                    source_pod: vec!["default/web".into(), "kube-system/".into()],
                    protocol: vec!["tcp".into()],
                    ..Default::default()
                },
                FlowFilter {
                    destination_pod: vec!["default/web".into(), "kube-system/".into()],
                    protocol: vec!["tcp".into()],
                    ..Default::default()
                },
            ]
        );
        let f = build(&[
            "--ip",
            "10.0.0.0/8",
            "--identity",
            "42",
            "--label",
            "app=x",
            "--port",
            "53",
        ]);
        assert_eq!(
            f.whitelist,
            vec![
                FlowFilter {
                    source_ip: vec!["10.0.0.0/8".into()],
                    source_identity: vec![42],
                    source_label: vec!["app=x".into()],
                    source_port: vec!["53".into()],
                    ..Default::default()
                },
                FlowFilter {
                    destination_ip: vec!["10.0.0.0/8".into()],
                    destination_identity: vec![42],
                    destination_label: vec!["app=x".into()],
                    destination_port: vec!["53".into()],
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn not_sends_only_the_next_flag_to_the_blacklist() {
        let f = build(&[
            "--from-namespace",
            "default",
            "--not",
            "--verdict",
            "FORWARDED",
            "--type",
            "drop",
            "--not",
            "--to-ip",
            "10.0.0.1",
        ]);
        assert_eq!(
            f.whitelist,
            vec![FlowFilter {
                source_pod: vec!["default/".into()],
                event_type: vec![EventTypeFilter {
                    r#type: 1,
                    match_sub_type: false,
                    sub_type: 0
                }],
                ..Default::default()
            }]
        );
        assert_eq!(
            f.blacklist,
            vec![FlowFilter {
                verdict: vec![Verdict::Forwarded as i32],
                destination_ip: vec!["10.0.0.1".into()],
                ..Default::default()
            }]
        );
        let f = build(&["--not", "--pod", "kube-system/"]);
        assert!(f.whitelist.is_empty());
        assert_eq!(f.blacklist.len(), 2);
        assert_eq!(f.blacklist[0].source_pod, vec!["kube-system/".to_string()]);
        assert_eq!(f.blacklist[1].destination_pod, vec!["kube-system/".to_string()]);
    }

    #[test]
    fn enum_like_values_are_parsed_exactly() {
        let f = build(&[
            "--drop-reason",
            "policy_denied",
            "--traffic-direction",
            "ingress",
            "--tcp-flags",
            "syn,ack",
            "--type",
            "trace:101",
            "--node-name",
            "node-*",
        ]);
        assert_eq!(
            f.whitelist,
            vec![FlowFilter {
                drop_reason_desc: vec![DropReason::PolicyDenied as i32],
                traffic_direction: vec![TrafficDirection::Ingress as i32],
                tcp_flags: vec![TcpFlags {
                    syn: true,
                    ack: true,
                    ..Default::default()
                }],
                event_type: vec![EventTypeFilter {
                    r#type: 4,
                    match_sub_type: true,
                    sub_type: 101
                }],
                node_name: vec!["node-*".into()],
                ..Default::default()
            }]
        );
    }

    #[test]
    fn bad_values_say_what_to_use() {
        assert_eq!(
            err(&["--verdict", "LOST"]),
            "error: invalid value for --verdict: \"LOST\" is not a verdict: use one of FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED"
        );
        assert_eq!(
            err(&["--tcp-flags", "SYN,FOO"]),
            "error: invalid value for --tcp-flags: \"FOO\" is not a TCP flag: use a comma-separated list of SYN, ACK, FIN, RST, PSH, URG, ECE, CWR, NS"
        );
        assert_eq!(
            err(&["--from-port", "http"]),
            "error: invalid value for --from-port: \"http\" is not a port (0-65535)"
        );
        assert_eq!(
            err(&["--verdict", "DROPPED", "--not"]),
            "error: --not must come before the filter flag it negates, e.g. --not --verdict DROPPED"
        );
    }
}

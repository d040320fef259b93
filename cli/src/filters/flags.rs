//! Every filter flag of `hubble observe`: its name, the value it takes, its
//! help, and what it adds to a list's filters.

use lumen_proto::flow::{DropReason, FlowFilter, HttpHeader, IpVersion, NetworkInterface, TrafficDirection, Verdict};

use super::tracker::{Dir, Tracker};
use super::values::{enum_value, event_type, identity, ip_version, port, tcp_flags, workload, VERDICTS};

/// What a flag takes.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// A value, under this name in `--help`.
    Named(&'static str),
    /// None (`-A`, `--encrypted`); `--flag=VALUE` may only repeat this one,
    /// as `hubble observe` lets it.
    Switch(&'static str),
}

/// A flag that applies to both ends or neither: `--verdict`.
pub struct Flag {
    pub name: &'static str,
    pub short: Option<char>,
    /// Another name the flag answers to (Lumen's older spelling).
    pub alias: Option<&'static str>,
    pub value: Value,
    pub help: &'static str,
    pub apply: fn(&mut Tracker, &str) -> Result<(), String>,
}

/// A direction-aware flag and its `--from-` and `--to-` forms: `--pod`,
/// `--from-pod`, `--to-pod`.
pub struct SideFlag {
    pub name: &'static str,
    /// Of the form without a direction.
    pub short: Option<char>,
    pub value: Value,
    /// What the value selects, for the help: "Flows from or to {what}".
    pub what: &'static str,
    /// Added to the help of all three forms.
    pub note: &'static str,
    pub apply: fn(&mut Tracker, Dir, &str) -> Result<(), String>,
}

/// Said in the help of flags that look at data Lumen's flows do not carry.
macro_rules! not_yet {
    ($what:literal) => {
        concat!(" (Lumen's flows carry no ", $what, " yet: matches nothing)")
    };
}

pub const SIDE_FLAGS: &[SideFlag] = &[
    SideFlag {
        name: "ip",
        short: None,
        value: Value::Named("IP"),
        what: "this IP, or an IP in this CIDR (1.1.1.1, 10.0.0.0/8)",
        note: "",
        apply: |t, dir, v| {
            let v = v.to_string();
            t.side(dir, |f, src| {
                pick(src, &mut f.source_ip, &mut f.destination_ip).push(v.clone())
            });
            Ok(())
        },
    },
    SideFlag {
        name: "pod",
        short: None,
        value: Value::Named("[NAMESPACE/]POD"),
        what: "pods whose name starts with POD, in NAMESPACE (default: default)",
        note: "",
        apply: |t, dir, v| {
            let v = v.to_string();
            t.side(dir, |f, src| {
                pick(src, &mut f.source_pod, &mut f.destination_pod).push(v.clone())
            });
            Ok(())
        },
    },
    SideFlag {
        name: "namespace",
        short: Some('n'),
        value: Value::Named("NAMESPACE"),
        what: "any pod or service in this Kubernetes namespace",
        note: "",
        apply: |t, dir, v| {
            t.namespace(dir, v);
            Ok(())
        },
    },
    SideFlag {
        name: "all-namespaces",
        short: Some('A'),
        value: Value::Switch("true"),
        what: "any pod or service in any Kubernetes namespace",
        note: "",
        apply: |t, dir, _| {
            t.namespace(dir, "");
            Ok(())
        },
    },
    SideFlag {
        name: "label",
        short: Some('l'),
        value: Value::Named("SELECTOR"),
        what: "endpoints whose labels match SELECTOR (app=web, k8s:app in (a,b), reserved:world)",
        note: "",
        apply: |t, dir, v| {
            let v = v.to_string();
            t.side(dir, |f, src| {
                pick(src, &mut f.source_label, &mut f.destination_label).push(v.clone())
            });
            Ok(())
        },
    },
    SideFlag {
        name: "service",
        short: None,
        value: Value::Named("[NAMESPACE/]SERVICE"),
        what: "the ClusterIP of services whose name starts with SERVICE, in NAMESPACE (default: default)",
        note: not_yet!("service"),
        apply: |t, dir, v| {
            let v = v.to_string();
            t.side(dir, |f, src| {
                pick(src, &mut f.source_service, &mut f.destination_service).push(v.clone())
            });
            Ok(())
        },
    },
    SideFlag {
        name: "fqdn",
        short: None,
        value: Value::Named("NAME"),
        what: "addresses with this DNS name (a pattern: *.cilium.io)",
        note: not_yet!("DNS names"),
        apply: |t, dir, v| {
            let v = v.to_string();
            t.side(dir, |f, src| {
                pick(src, &mut f.source_fqdn, &mut f.destination_fqdn).push(v.clone())
            });
            Ok(())
        },
    },
    SideFlag {
        name: "identity",
        short: None,
        value: Value::Named("ID"),
        what: "endpoints of this security identity (a number, or host, world, remote-node, …)",
        note: "",
        apply: |t, dir, v| {
            let id = identity(v)?;
            t.side(dir, |f, src| {
                pick(src, &mut f.source_identity, &mut f.destination_identity).push(id)
            });
            Ok(())
        },
    },
    SideFlag {
        name: "port",
        short: None,
        value: Value::Named("PORT"),
        what: "this L4 port",
        note: "",
        apply: |t, dir, v| {
            let port = port(v)?;
            t.side(dir, |f, src| {
                pick(src, &mut f.source_port, &mut f.destination_port).push(port.clone())
            });
            Ok(())
        },
    },
    SideFlag {
        name: "workload",
        short: None,
        value: Value::Named("[KIND/]NAME"),
        what: "endpoints of this workload (Deployment/web, web, Deployment/)",
        note: not_yet!("workloads"),
        apply: |t, dir, v| {
            let w = workload(v);
            t.side(dir, |f, src| {
                pick(src, &mut f.source_workload, &mut f.destination_workload).push(w.clone())
            });
            Ok(())
        },
    },
    SideFlag {
        name: "cluster",
        short: None,
        value: Value::Named("NAME"),
        what: "endpoints in this cluster (a pattern: prod-*)",
        note: not_yet!("cluster names"),
        apply: |t, dir, v| {
            let v = v.to_string();
            t.side(dir, |f, src| {
                pick(src, &mut f.source_cluster_name, &mut f.destination_cluster_name).push(v.clone())
            });
            Ok(())
        },
    },
];

pub const FLAGS: &[Flag] = &[
    Flag {
        name: "uuid",
        short: None,
        alias: None,
        value: Value::Named("UUID"),
        help: "The flow with this unique id",
        apply: |t, v| all(t, v.to_string(), |f| &mut f.uuid),
    },
    Flag {
        name: "node-name",
        short: None,
        alias: None,
        value: Value::Named("NAME"),
        help: "Flows observed on this node (a pattern: node-*, prod/node-*)",
        apply: |t, v| all(t, v.to_string(), |f| &mut f.node_name),
    },
    Flag {
        name: "node-label",
        short: None,
        alias: None,
        value: Value::Named("SELECTOR"),
        help: concat!(
            "Flows observed on nodes whose labels match SELECTOR (zone=a, io.cilium/egress-gateway)",
            not_yet!("node labels")
        ),
        apply: |t, v| all(t, v.to_string(), |f| &mut f.node_labels),
    },
    Flag {
        name: "protocol",
        short: None,
        alias: None,
        value: Value::Named("PROTO"),
        help: "Flows of this L4 or L7 protocol (tcp, udp, icmp, icmpv4, icmpv6, sctp, vrrp, igmp; dns, http, kafka)",
        apply: |t, v| all(t, v.to_string(), |f| &mut f.protocol),
    },
    Flag {
        name: "tcp-flags",
        short: None,
        alias: None,
        value: Value::Named("FLAGS"),
        help: "TCP flows with all these flags set (syn, or syn,ack)",
        apply: |t, v| all(t, tcp_flags(v)?, |f| &mut f.tcp_flags),
    },
    Flag {
        name: "type",
        short: Some('t'),
        alias: None,
        value: Value::Named("TYPE[:SUBTYPE]"),
        help: "Flows of this event type: capture, drop, l7, policy-verdict, trace, trace-sock (also agent, debug, \
               or a number). Subtypes of trace: from-endpoint, from-host, from-network, from-overlay, from-proxy, \
               from-stack, from-crypto, to-endpoint, to-host, to-network, to-overlay, to-proxy, to-stack, \
               to-crypto; of other types, a number",
        apply: |t, v| all(t, event_type(v)?, |f| &mut f.event_type),
    },
    Flag {
        name: "verdict",
        short: None,
        alias: None,
        value: Value::Named("VERDICT"),
        help: "Flows with this verdict (FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED)",
        apply: |t, v| {
            let n = enum_value(v, "verdict", |s| Verdict::from_str_name(s).map(|e| e as i32), VERDICTS)?;
            all(t, n, |f| &mut f.verdict)
        },
    },
    Flag {
        name: "drop-reason-desc",
        short: None,
        alias: Some("drop-reason"),
        value: Value::Named("REASON"),
        help:
            "Dropped flows with this drop reason (POLICY_DENIED, UNSUPPORTED_L3_PROTOCOL, … as flow.proto names them)",
        apply: |t, v| {
            let n = enum_value(
                v,
                "drop reason",
                |s| DropReason::from_str_name(s).map(|e| e as i32),
                "the drop reason names of flow.proto, e.g. POLICY_DENIED, POLICY_DENY, CT_MAP_INSERTION_FAILED",
            )?;
            all(t, n, |f| &mut f.drop_reason_desc)
        },
    },
    Flag {
        name: "http-status",
        short: None,
        alias: None,
        value: Value::Named("CODE"),
        help: concat!(
            "HTTP flows with this status code, or prefix (404, 5+)",
            not_yet!("L7 data")
        ),
        apply: |t, v| all(t, v.to_string(), |f| &mut f.http_status_code),
    },
    Flag {
        name: "http-method",
        short: None,
        alias: None,
        value: Value::Named("METHOD"),
        help: concat!("HTTP flows with this method (get, post)", not_yet!("L7 data")),
        apply: |t, v| all(t, v.to_string(), |f| &mut f.http_method),
    },
    Flag {
        name: "http-path",
        short: None,
        alias: None,
        value: Value::Named("REGEX"),
        help: concat!(
            "HTTP flows whose path matches this regular expression (/page/\\d+)",
            not_yet!("L7 data")
        ),
        apply: |t, v| all(t, v.to_string(), |f| &mut f.http_path),
    },
    Flag {
        name: "http-url",
        short: None,
        alias: None,
        value: Value::Named("REGEX"),
        help: concat!(
            "HTTP flows whose URL matches this regular expression (http://.*cilium\\.io/page/\\d+)",
            not_yet!("L7 data")
        ),
        apply: |t, v| all(t, v.to_string(), |f| &mut f.http_url),
    },
    Flag {
        name: "http-header",
        short: None,
        alias: None,
        value: Value::Named("KEY:VALUE"),
        help: concat!("HTTP flows with this header (foo:bar)", not_yet!("L7 data")),
        apply: |t, v| {
            let (key, value) = v
                .split_once(':')
                .ok_or_else(|| format!("{v:?} is not a header: use KEY:VALUE (e.g. foo:bar)"))?;
            let header = HttpHeader {
                key: key.into(),
                value: value.into(),
            };
            all(t, header, |f| &mut f.http_header)
        },
    },
    Flag {
        name: "trace-id",
        short: None,
        alias: None,
        value: Value::Named("ID"),
        help: concat!("Flows of this distributed-tracing trace id", not_yet!("trace context")),
        apply: |t, v| all(t, v.to_string(), |f| &mut f.trace_id),
    },
    Flag {
        name: "ip-trace-id",
        short: None,
        alias: None,
        value: Value::Named("ID"),
        help: concat!(
            "Flows whose packets carried this trace id (a number above 0) in an IP option",
            not_yet!("IP trace ids")
        ),
        apply: |t, v| {
            let id = v
                .parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("{v:?} is not an IP trace id: use a number above 0"))?;
            all(t, id, |f| &mut f.ip_trace_id)
        },
    },
    Flag {
        name: "snat-ip",
        short: None,
        alias: None,
        value: Value::Named("IP"),
        help: concat!(
            "Flows whose source was SNATed to this IP, or an IP in this CIDR (1.1.1.1, 1.1.1.0/24)",
            not_yet!("SNAT address")
        ),
        apply: |t, v| all(t, v.to_string(), |f| &mut f.source_ip_xlated),
    },
    Flag {
        name: "ip-version",
        short: None,
        alias: None,
        value: Value::Named("VERSION"),
        help: "Flows of this IP version: v4, v6, or none (not IP, e.g. ARP)",
        apply: |t, v| all(t, ip_version(v)? as i32, |f| &mut f.ip_version),
    },
    Flag {
        name: "ipv4",
        short: Some('4'),
        alias: None,
        value: Value::Switch("v4"),
        help: "IPv4 flows (--ip-version v4)",
        apply: |t, _| all(t, IpVersion::IPv4 as i32, |f| &mut f.ip_version),
    },
    Flag {
        name: "ipv6",
        short: Some('6'),
        alias: None,
        value: Value::Switch("v6"),
        help: "IPv6 flows (--ip-version v6)",
        apply: |t, _| all(t, IpVersion::IPv6 as i32, |f| &mut f.ip_version),
    },
    Flag {
        name: "traffic-direction",
        short: None,
        alias: None,
        value: Value::Named("DIRECTION"),
        help: "Flows in this direction (ingress, egress)",
        apply: |t, v| {
            let n = enum_value(
                v,
                "traffic direction",
                |s| match s {
                    "INGRESS" | "EGRESS" => TrafficDirection::from_str_name(s).map(|e| e as i32),
                    _ => None,
                },
                "ingress, egress",
            )?;
            all(t, n, |f| &mut f.traffic_direction)
        },
    },
    Flag {
        name: "interface",
        short: None,
        alias: None,
        value: Value::Named("NAME"),
        help: "Flows observed on this network interface (eth0)",
        apply: |t, v| {
            let iface = NetworkInterface {
                name: v.into(),
                ..Default::default()
            };
            all(t, iface, |f| &mut f.interface)
        },
    },
    Flag {
        name: "encrypted",
        short: None,
        alias: None,
        value: Value::Switch("true"),
        help: "Flows that were encrypted (WireGuard, IPsec) (Lumen does not see encryption yet: matches nothing)",
        apply: |t, _| all(t, true, |f| &mut f.encrypted),
    },
    Flag {
        name: "unencrypted",
        short: None,
        alias: None,
        value: Value::Switch("true"),
        help: "Flows that were not encrypted (for now, every flow of Lumen's)",
        apply: |t, _| all(t, false, |f| &mut f.encrypted),
    },
    Flag {
        name: "reply",
        short: None,
        alias: None,
        value: Value::Named("BOOL"),
        help: "Replies (true) or flows that are not (false); Lumen's addition, FlowFilter.reply",
        apply: |t, v| {
            let reply = match v.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(format!("{v:?} is not a boolean: use true or false")),
            };
            all(t, reply, |f| &mut f.reply)
        },
    },
    Flag {
        name: "cel-expression",
        short: None,
        alias: None,
        value: Value::Named("EXPR"),
        help: "Flows for which this CEL expression over _flow is true (_flow.verdict == Verdict.DROPPED)",
        apply: |t, v| {
            let v = v.to_string();
            t.all(|f| {
                f.experimental
                    .get_or_insert_with(Default::default)
                    .cel_expression
                    .push(v.clone())
            });
            Ok(())
        },
    },
];

/// The source field when `source`, else the destination one.
fn pick<'a, T>(source: bool, src: &'a mut T, dst: &'a mut T) -> &'a mut T {
    if source {
        src
    } else {
        dst
    }
}

/// Adds `value` to one repeated field of both filters.
fn all<T: Clone>(t: &mut Tracker, value: T, field: fn(&mut FlowFilter) -> &mut Vec<T>) -> Result<(), String> {
    t.all(|f| field(f).push(value.clone()));
    Ok(())
}

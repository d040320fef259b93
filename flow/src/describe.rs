//! A compact, one-line rendering of a `FlowFilter` for humans
//! (`--print-raw-filters`, logs, the UI's filter chips).

use std::fmt::Write;

use lumen_proto::flow::{DropReason, FlowFilter, IpVersion, TcpFlags, TrafficDirection, Verdict};

use crate::tcp::{self, TcpFlag};

/// Renders the populated fields of `filter` as `field=value,value`, space
/// separated, in flow.proto order; enums by their proto names. A value with
/// whitespace, a comma or a quote, or an empty one, is quoted. An empty
/// filter is `{}`.
///
/// `source_pod=default/front verdict=DROPPED,AUDIT tcp_flags=SYN|ACK`
pub fn describe(filter: &FlowFilter) -> String {
    let mut out = Out(String::new());
    let f = filter;
    out.strings("uuid", &f.uuid);
    out.strings("source_ip", &f.source_ip);
    out.strings("source_ip_xlated", &f.source_ip_xlated);
    out.strings("source_pod", &f.source_pod);
    out.strings("source_fqdn", &f.source_fqdn);
    out.strings("source_label", &f.source_label);
    out.strings("source_service", &f.source_service);
    out.field(
        "source_workload",
        f.source_workload.iter().map(|w| workload(&w.kind, &w.name)),
    );
    out.strings("source_cluster_name", &f.source_cluster_name);
    out.strings("destination_ip", &f.destination_ip);
    out.strings("destination_pod", &f.destination_pod);
    out.strings("destination_fqdn", &f.destination_fqdn);
    out.strings("destination_label", &f.destination_label);
    out.strings("destination_service", &f.destination_service);
    out.field(
        "destination_workload",
        f.destination_workload.iter().map(|w| workload(&w.kind, &w.name)),
    );
    out.strings("destination_cluster_name", &f.destination_cluster_name);
    out.field(
        "traffic_direction",
        f.traffic_direction
            .iter()
            .map(|v| enum_name(*v, |v| TrafficDirection::try_from(v).ok().map(|e| e.as_str_name()))),
    );
    out.field(
        "verdict",
        f.verdict
            .iter()
            .map(|v| enum_name(*v, |v| Verdict::try_from(v).ok().map(|e| e.as_str_name()))),
    );
    out.field(
        "drop_reason_desc",
        f.drop_reason_desc
            .iter()
            .map(|v| enum_name(*v, |v| DropReason::try_from(v).ok().map(|e| e.as_str_name()))),
    );
    out.field(
        "interface",
        f.interface.iter().map(|i| match (i.index, i.name.as_str()) {
            (0, name) => name.to_string(),
            (index, "") => index.to_string(),
            (index, name) => format!("{index}:{name}"),
        }),
    );
    out.field(
        "event_type",
        f.event_type.iter().map(|e| match e.match_sub_type {
            true => format!("{}:{}", e.r#type, e.sub_type),
            false => e.r#type.to_string(),
        }),
    );
    out.strings("http_status_code", &f.http_status_code);
    out.strings("http_method", &f.http_method);
    out.strings("http_path", &f.http_path);
    out.strings("http_url", &f.http_url);
    out.field(
        "http_header",
        f.http_header.iter().map(|h| format!("{}:{}", h.key, h.value)),
    );
    out.strings("protocol", &f.protocol);
    out.strings("source_port", &f.source_port);
    out.strings("destination_port", &f.destination_port);
    out.field("reply", f.reply.iter().map(bool::to_string));
    out.strings("dns_query", &f.dns_query);
    out.field("source_identity", f.source_identity.iter().map(u32::to_string));
    out.field(
        "destination_identity",
        f.destination_identity.iter().map(u32::to_string),
    );
    out.field("tcp_flags", f.tcp_flags.iter().map(tcp_flags));
    out.strings("node_name", &f.node_name);
    out.strings("node_labels", &f.node_labels);
    out.field(
        "ip_version",
        f.ip_version
            .iter()
            .map(|v| enum_name(*v, |v| IpVersion::try_from(v).ok().map(|e| e.as_str_name()))),
    );
    out.strings("trace_id", &f.trace_id);
    if let Some(e) = &f.experimental {
        out.strings("cel_expression", &e.cel_expression);
    }
    if out.0.is_empty() {
        out.0.push_str("{}");
    }
    out.0
}

struct Out(String);

impl Out {
    fn field(&mut self, name: &str, values: impl Iterator<Item = String>) {
        let mut values = values.peekable();
        if values.peek().is_none() {
            return;
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(name);
        self.0.push('=');
        for (i, v) in values.enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == ',' || c == '"') {
                let _ = write!(self.0, "{v:?}");
            } else {
                self.0.push_str(&v);
            }
        }
    }

    fn strings(&mut self, name: &str, values: &[String]) {
        self.field(name, values.iter().cloned());
    }
}

/// The proto name of an enum value, or the number when it is not one.
fn enum_name(value: i32, name: impl Fn(i32) -> Option<&'static str>) -> String {
    name(value).map_or_else(|| value.to_string(), str::to_string)
}

fn workload(kind: &str, name: &str) -> String {
    match (kind, name) {
        ("", name) => name.to_string(),
        (kind, name) => format!("{kind}/{name}"),
    }
}

fn tcp_flags(flags: &TcpFlags) -> String {
    let set = tcp::names(tcp::mask(flags), &TcpFlag::ALL);
    if set.is_empty() {
        "none".to_string()
    } else {
        set.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::flow::{flow_filter::Experimental, EventTypeFilter, HttpHeader, NetworkInterface, Workload};

    #[test]
    fn empty_filter() {
        assert_eq!(describe(&FlowFilter::default()), "{}");
    }

    #[test]
    fn renders_every_kind_of_field() {
        let f = FlowFilter {
            source_pod: vec!["default/front".into()],
            source_label: vec!["app in (a, b)".into(), "k8s:app=x".into()],
            source_workload: vec![Workload {
                name: "front".into(),
                kind: "Deployment".into(),
            }],
            destination_ip: vec!["10.0.0.0/8".into(), "fd00::1".into()],
            traffic_direction: vec![TrafficDirection::Ingress as i32],
            verdict: vec![Verdict::Dropped as i32, 99],
            drop_reason_desc: vec![DropReason::PolicyDenied as i32],
            interface: vec![
                NetworkInterface {
                    index: 3,
                    name: "eth0".into(),
                },
                NetworkInterface {
                    index: 4,
                    name: String::new(),
                },
            ],
            event_type: vec![
                EventTypeFilter {
                    r#type: 4,
                    match_sub_type: false,
                    sub_type: 0,
                },
                EventTypeFilter {
                    r#type: 1,
                    match_sub_type: true,
                    sub_type: 133,
                },
            ],
            http_header: vec![HttpHeader {
                key: "x-id".into(),
                value: "1".into(),
            }],
            protocol: vec!["tcp".into()],
            reply: vec![false],
            destination_identity: vec![2, 1234],
            tcp_flags: vec![
                TcpFlags {
                    syn: true,
                    ack: true,
                    ..Default::default()
                },
                TcpFlags::default(),
            ],
            node_name: vec![String::new()],
            ip_version: vec![IpVersion::IPv6 as i32],
            experimental: Some(Experimental {
                cel_expression: vec!["_flow.verdict == 1".into()],
            }),
            ..Default::default()
        };
        assert_eq!(
            describe(&f),
            "source_pod=default/front source_label=\"app in (a, b)\",k8s:app=x \
             source_workload=Deployment/front destination_ip=10.0.0.0/8,fd00::1 \
             traffic_direction=INGRESS verdict=DROPPED,99 drop_reason_desc=POLICY_DENIED \
             interface=3:eth0,4 event_type=4,1:133 http_header=x-id:1 protocol=tcp reply=false \
             destination_identity=2,1234 tcp_flags=SYN|ACK,none node_name=\"\" ip_version=IPv6 \
             cel_expression=\"_flow.verdict == 1\""
        );
    }
}

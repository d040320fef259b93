//! A flow, or a loss notice, as the attributes of an OTLP log record: the
//! OpenTelemetry semantic conventions' names where they have one, `hubble.*`
//! for the rest (the README's "Flow export" section has the table). An attribute whose field is
//! unset (an empty string, 0, an unknown enum value) is left out, as the
//! protobuf JSON mapping leaves out default values.

use lumen_proto::flow::{
    layer4::Protocol, DropReason, Endpoint, Flow, LostEvent, LostEventSource, Policy, TraceObservationPoint,
    TrafficDirection, Verdict,
};
use opentelemetry::logs::AnyValue;

/// An attribute's name and value.
pub type Attribute = (&'static str, AnyValue);

/// The log record's body: Hubble's summary of the packet (`TCP Flags: SYN`,
/// `UDP`, `ICMPv4 EchoRequest`), `N/A` when there is nothing to say.
pub fn flow_body(flow: &Flow) -> String {
    lumen_flow::format::summary(flow)
}

/// The attributes of `flow`'s log record, in the order of the table.
pub fn flow_attributes(flow: &Flow) -> Vec<Attribute> {
    let mut a = Vec::with_capacity(24);
    if let Some(ip) = &flow.ip {
        text(&mut a, "source.address", &ip.source);
        text(&mut a, "destination.address", &ip.destination);
        match ip.ip_version {
            1 => a.push(("network.type", "ipv4".into())),
            2 => a.push(("network.type", "ipv6".into())),
            _ => {}
        }
    }
    let (transport, ports) = match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => ("tcp", Some((t.source_port, t.destination_port))),
        Some(Protocol::Udp(u)) => ("udp", Some((u.source_port, u.destination_port))),
        Some(Protocol::Sctp(s)) => ("sctp", Some((s.source_port, s.destination_port))),
        Some(Protocol::IcmPv4(_)) | Some(Protocol::IcmPv6(_)) => ("icmp", None),
        Some(Protocol::Vrrp(_)) => ("vrrp", None),
        Some(Protocol::Igmp(_)) => ("igmp", None),
        None => ("", None),
    };
    if let Some((source, destination)) = ports {
        number(&mut a, "source.port", source.into());
        number(&mut a, "destination.port", destination.into());
    }
    text(&mut a, "network.transport", transport);
    if let Some(interface) = &flow.interface {
        text(&mut a, "network.interface.name", &interface.name);
    }
    if let Some(source) = &flow.source {
        text(&mut a, "source.k8s.namespace.name", &source.namespace);
        text(&mut a, "source.k8s.pod.name", &source.pod_name);
    }
    if let Some(destination) = &flow.destination {
        text(&mut a, "destination.k8s.namespace.name", &destination.namespace);
        text(&mut a, "destination.k8s.pod.name", &destination.pod_name);
    }
    text(&mut a, "k8s.node.name", &flow.node_name);

    text(&mut a, "hubble.flow.uuid", &flow.uuid);
    if let Ok(v) = Verdict::try_from(flow.verdict) {
        enum_name(&mut a, "hubble.verdict", flow.verdict, v.as_str_name());
    }
    if let Ok(r) = DropReason::try_from(flow.drop_reason_desc) {
        enum_name(&mut a, "hubble.drop_reason", flow.drop_reason_desc, r.as_str_name());
    }
    if let Ok(p) = TraceObservationPoint::try_from(flow.trace_observation_point) {
        enum_name(
            &mut a,
            "hubble.trace_observation_point",
            flow.trace_observation_point,
            p.as_str_name(),
        );
    }
    if let Ok(d) = TrafficDirection::try_from(flow.traffic_direction) {
        enum_name(
            &mut a,
            "hubble.traffic_direction",
            flow.traffic_direction,
            d.as_str_name(),
        );
    }
    if let Some(is_reply) = flow.is_reply {
        a.push(("hubble.is_reply", is_reply.into()));
    }
    if flow.event_type.is_some() || flow.l7.is_some() {
        a.push(("hubble.event_type", lumen_flow::format::flow_type(flow).into()));
    }
    if let Some(source) = &flow.source {
        endpoint(&mut a, Side::Source, source);
    }
    if let Some(destination) = &flow.destination {
        endpoint(&mut a, Side::Destination, destination);
    }
    list(&mut a, "hubble.source.names", flow.source_names.iter().cloned());
    list(
        &mut a,
        "hubble.destination.names",
        flow.destination_names.iter().cloned(),
    );
    if let Some(Protocol::Tcp(tcp)) = flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        if let Some(flags) = &tcp.flags {
            let names = lumen_flow::summary::tcp_flag_names(flags);
            list(&mut a, "hubble.tcp.flags", names.into_iter().map(String::from));
        }
    }
    policies(&mut a, "hubble.policy.ingress_allowed_by", &flow.ingress_allowed_by);
    policies(&mut a, "hubble.policy.egress_allowed_by", &flow.egress_allowed_by);
    policies(&mut a, "hubble.policy.ingress_denied_by", &flow.ingress_denied_by);
    policies(&mut a, "hubble.policy.egress_denied_by", &flow.egress_denied_by);
    a
}

/// The body of a loss notice's log record.
pub fn lost_body(event: &LostEvent) -> String {
    format!("{} events lost ({})", event.num_events_lost, lost_source(event))
}

/// The attributes of a loss notice's log record.
pub fn lost_attributes(event: &LostEvent) -> Vec<Attribute> {
    let mut a = vec![
        ("hubble.lost_events.source", lost_source(event).into()),
        (
            "hubble.lost_events.count",
            AnyValue::Int(saturating_i64(event.num_events_lost)),
        ),
    ];
    if let Some(cpu) = event.cpu {
        a.push(("hubble.lost_events.cpu", AnyValue::Int(cpu.into())));
    }
    a
}

fn lost_source(event: &LostEvent) -> String {
    LostEventSource::try_from(event.source)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| event.source.to_string())
}

#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
}

fn endpoint(a: &mut Vec<Attribute>, side: Side, e: &Endpoint) {
    let [identity, labels, workload, kind, cluster] = match side {
        Side::Source => [
            "hubble.source.identity",
            "hubble.source.labels",
            "hubble.source.workload.name",
            "hubble.source.workload.kind",
            "hubble.source.cluster_name",
        ],
        Side::Destination => [
            "hubble.destination.identity",
            "hubble.destination.labels",
            "hubble.destination.workload.name",
            "hubble.destination.workload.kind",
            "hubble.destination.cluster_name",
        ],
    };
    number(a, identity, e.identity.into());
    list(a, labels, e.labels.iter().cloned());
    // Cilium names one workload (the top owner); the first is it.
    if let Some(w) = e.workloads.first() {
        text(a, workload, &w.name);
        text(a, kind, &w.kind);
    }
    text(a, cluster, &e.cluster_name);
}

/// Policies as `namespace/name` (`name` for a cluster-wide one).
fn policies(a: &mut Vec<Attribute>, key: &'static str, list_of: &[Policy]) {
    let names = list_of.iter().map(|p| match p.namespace.as_str() {
        "" => p.name.clone(),
        ns => format!("{ns}/{}", p.name),
    });
    list(a, key, names);
}

fn text(a: &mut Vec<Attribute>, key: &'static str, value: &str) {
    if !value.is_empty() {
        a.push((key, AnyValue::String(value.to_string().into())));
    }
}

fn number(a: &mut Vec<Attribute>, key: &'static str, value: i64) {
    if value != 0 {
        a.push((key, AnyValue::Int(value)));
    }
}

fn enum_name(a: &mut Vec<Attribute>, key: &'static str, value: i32, name: &str) {
    if value != 0 {
        a.push((key, AnyValue::String(name.to_string().into())));
    }
}

fn list(a: &mut Vec<Attribute>, key: &'static str, values: impl Iterator<Item = String>) {
    let values: Vec<AnyValue> = values.map(|v| AnyValue::String(v.into())).collect();
    if !values.is_empty() {
        a.push((key, AnyValue::ListAny(Box::new(values))));
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

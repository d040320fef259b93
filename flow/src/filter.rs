//! One `FlowFilter` compiled into a list of field matchers that must all hold.

use lumen_proto::flow::{Flow, FlowFilter, Verdict};

use crate::cel::CelMatcher;
use crate::endpoint::{
    ClusterNameMatcher, IdentityMatcher, LabelMatcher, LabelTarget, NameKind, NameMatcher, WorkloadMatcher,
};
use crate::error::FilterError;
use crate::event::{EventTypeMatcher, InterfaceMatcher, ReplyMatcher};
use crate::ip::{EncryptedMatcher, IpField, IpMatcher, IpTraceIdMatcher, IpVersionMatcher};
use crate::l4::{PortMatcher, ProtocolMatcher, TcpFlagsMatcher};
use crate::l7::{
    check_l7_event_type, compile_regexes, DnsQueryMatcher, HttpHeaderMatcher, HttpMethodMatcher, HttpPathMatcher,
    HttpStatusMatcher, HttpUrlMatcher,
};
use crate::pattern::{FqdnMatcher, NodeNameMatcher};
use crate::Side;

/// One populated `FlowFilter` field, ready to test flows.
#[derive(Debug, Clone)]
enum Matcher {
    EventType(EventTypeMatcher),
    Verdict(Vec<i32>),
    DropReason(Vec<i32>),
    TrafficDirection(Vec<i32>),
    Reply(ReplyMatcher),
    IpVersion(IpVersionMatcher),
    IpTraceId(IpTraceIdMatcher),
    Encrypted(EncryptedMatcher),
    Identity(IdentityMatcher),
    Protocol(ProtocolMatcher),
    Port(PortMatcher),
    TcpFlags(TcpFlagsMatcher),
    Interface(InterfaceMatcher),
    Uuid(Vec<String>),
    TraceId(Vec<String>),
    Ip(IpMatcher),
    Name(NameMatcher),
    Workload(WorkloadMatcher),
    ClusterName(ClusterNameMatcher),
    NodeName(NodeNameMatcher),
    Label(LabelMatcher),
    Fqdn(FqdnMatcher),
    HttpStatus(HttpStatusMatcher),
    HttpMethod(HttpMethodMatcher),
    HttpPath(HttpPathMatcher),
    HttpUrl(HttpUrlMatcher),
    HttpHeader(HttpHeaderMatcher),
    DnsQuery(DnsQueryMatcher),
    Cel(CelMatcher),
}

impl Matcher {
    fn matches(&self, flow: &Flow) -> bool {
        match self {
            Matcher::EventType(m) => m.matches(flow),
            Matcher::Verdict(v) => v.contains(&flow.verdict),
            // A drop reason only counts on a dropped flow.
            Matcher::DropReason(r) => flow.verdict == Verdict::Dropped as i32 && r.contains(&flow.drop_reason_desc),
            Matcher::TrafficDirection(d) => d.contains(&flow.traffic_direction),
            Matcher::Reply(m) => m.matches(flow),
            Matcher::IpVersion(m) => m.matches(flow),
            Matcher::IpTraceId(m) => m.matches(flow),
            Matcher::Encrypted(m) => m.matches(flow),
            Matcher::Identity(m) => m.matches(flow),
            Matcher::Protocol(m) => m.matches(flow),
            Matcher::Port(m) => m.matches(flow),
            Matcher::TcpFlags(m) => m.matches(flow),
            Matcher::Interface(m) => m.matches(flow),
            Matcher::Uuid(ids) => ids.contains(&flow.uuid),
            Matcher::TraceId(ids) => {
                let id = flow
                    .trace_context
                    .as_ref()
                    .and_then(|t| t.parent.as_ref())
                    .map_or("", |p| &p.trace_id);
                ids.iter().any(|t| t == id)
            }
            Matcher::Ip(m) => m.matches(flow),
            Matcher::Name(m) => m.matches(flow),
            Matcher::Workload(m) => m.matches(flow),
            Matcher::ClusterName(m) => m.matches(flow),
            Matcher::NodeName(m) => m.matches(flow),
            Matcher::Label(m) => m.matches(flow),
            Matcher::Fqdn(m) => m.matches(flow),
            Matcher::HttpStatus(m) => m.matches(flow),
            Matcher::HttpMethod(m) => m.matches(flow),
            Matcher::HttpPath(m) => m.matches(flow),
            Matcher::HttpUrl(m) => m.matches(flow),
            Matcher::HttpHeader(m) => m.matches(flow),
            Matcher::DnsQuery(m) => m.matches(flow),
            Matcher::Cel(m) => m.matches(flow),
        }
    }
}

/// A compiled `FlowFilter`: a flow matches when every populated field
/// matches (AND); within a repeated field any value may match (OR). A
/// filter with no populated field matches every flow.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter {
    /// Cheap integer comparisons first, string and regex work last.
    matchers: Vec<Matcher>,
}

impl CompiledFilter {
    /// Compiles one filter. Every populated field is either evaluated or
    /// refused with an error; none is ignored.
    pub fn new(ff: &FlowFilter) -> Result<Self, FilterError> {
        // Matched last: it encodes the whole flow, so cheaper fields reject first.
        let cel = match &ff.experimental {
            Some(e) if !e.cel_expression.is_empty() => Some(CelMatcher::new(&e.cel_expression)?),
            _ => None,
        };
        let mut m = Vec::new();
        if !ff.event_type.is_empty() {
            m.push(Matcher::EventType(EventTypeMatcher(ff.event_type.clone())));
        }
        if !ff.verdict.is_empty() {
            m.push(Matcher::Verdict(ff.verdict.clone()));
        }
        if !ff.drop_reason_desc.is_empty() {
            m.push(Matcher::DropReason(ff.drop_reason_desc.clone()));
        }
        if !ff.traffic_direction.is_empty() {
            m.push(Matcher::TrafficDirection(ff.traffic_direction.clone()));
        }
        if !ff.reply.is_empty() {
            m.push(Matcher::Reply(ReplyMatcher(ff.reply.clone())));
        }
        if !ff.ip_version.is_empty() {
            m.push(Matcher::IpVersion(IpVersionMatcher(ff.ip_version.clone())));
        }
        if !ff.ip_trace_id.is_empty() {
            m.push(Matcher::IpTraceId(IpTraceIdMatcher(ff.ip_trace_id.clone())));
        }
        if !ff.encrypted.is_empty() {
            m.push(Matcher::Encrypted(EncryptedMatcher(ff.encrypted.clone())));
        }
        for (side, ids) in [
            (Side::Source, &ff.source_identity),
            (Side::Destination, &ff.destination_identity),
        ] {
            if !ids.is_empty() {
                m.push(Matcher::Identity(IdentityMatcher {
                    side,
                    identities: ids.clone(),
                }));
            }
        }
        if !ff.protocol.is_empty() {
            m.push(Matcher::Protocol(ProtocolMatcher::new(&ff.protocol)?));
        }
        for (side, ports) in [
            (Side::Source, &ff.source_port),
            (Side::Destination, &ff.destination_port),
        ] {
            if !ports.is_empty() {
                m.push(Matcher::Port(PortMatcher::new(side, ports)?));
            }
        }
        if !ff.tcp_flags.is_empty() {
            m.push(Matcher::TcpFlags(TcpFlagsMatcher::new(&ff.tcp_flags)));
        }
        if !ff.interface.is_empty() {
            m.push(Matcher::Interface(InterfaceMatcher(ff.interface.clone())));
        }
        if !ff.uuid.is_empty() {
            m.push(Matcher::Uuid(ff.uuid.clone()));
        }
        if !ff.trace_id.is_empty() {
            m.push(Matcher::TraceId(ff.trace_id.clone()));
        }
        for (field, ips) in [
            (IpField::Source, &ff.source_ip),
            (IpField::SourceXlated, &ff.source_ip_xlated),
            (IpField::Destination, &ff.destination_ip),
        ] {
            if !ips.is_empty() {
                m.push(Matcher::Ip(IpMatcher::new(field, ips)?));
            }
        }
        for (side, kind, names) in [
            (Side::Source, NameKind::Pod, &ff.source_pod),
            (Side::Destination, NameKind::Pod, &ff.destination_pod),
            (Side::Source, NameKind::Service, &ff.source_service),
            (Side::Destination, NameKind::Service, &ff.destination_service),
        ] {
            if !names.is_empty() {
                m.push(Matcher::Name(NameMatcher::new(side, kind, names)?));
            }
        }
        for (side, workloads) in [
            (Side::Source, &ff.source_workload),
            (Side::Destination, &ff.destination_workload),
        ] {
            if !workloads.is_empty() {
                m.push(Matcher::Workload(WorkloadMatcher {
                    side,
                    workloads: workloads.clone(),
                }));
            }
        }
        for (side, names) in [
            (Side::Source, &ff.source_cluster_name),
            (Side::Destination, &ff.destination_cluster_name),
        ] {
            if !names.is_empty() {
                m.push(Matcher::ClusterName(ClusterNameMatcher::new(side, names)?));
            }
        }
        if !ff.node_name.is_empty() {
            m.push(Matcher::NodeName(NodeNameMatcher::new(&ff.node_name)?));
        }
        for (target, selectors) in [
            (LabelTarget::Source, &ff.source_label),
            (LabelTarget::Destination, &ff.destination_label),
            (LabelTarget::Node, &ff.node_labels),
        ] {
            if !selectors.is_empty() {
                m.push(Matcher::Label(LabelMatcher::new(target, selectors)?));
            }
        }
        for (side, patterns) in [
            (Side::Source, &ff.source_fqdn),
            (Side::Destination, &ff.destination_fqdn),
        ] {
            if !patterns.is_empty() {
                m.push(Matcher::Fqdn(FqdnMatcher::new(side, patterns)?));
            }
        }
        compile_l7(ff, &mut m)?;
        m.extend(cel.map(Matcher::Cel));
        Ok(Self { matchers: m })
    }

    /// Whether `flow` satisfies every populated field of the filter.
    pub fn matches(&self, flow: &Flow) -> bool {
        self.matchers.iter().all(|m| m.matches(flow))
    }

    /// Whether the filter has no populated field (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }
}

fn compile_l7(ff: &FlowFilter, m: &mut Vec<Matcher>) -> Result<(), FilterError> {
    if !ff.http_status_code.is_empty() {
        check_l7_event_type("http_status_code", &ff.event_type)?;
        m.push(Matcher::HttpStatus(HttpStatusMatcher::new(&ff.http_status_code)?));
    }
    if !ff.http_method.is_empty() {
        check_l7_event_type("http_method", &ff.event_type)?;
        m.push(Matcher::HttpMethod(HttpMethodMatcher(ff.http_method.clone())));
    }
    if !ff.http_path.is_empty() {
        check_l7_event_type("http_path", &ff.event_type)?;
        m.push(Matcher::HttpPath(HttpPathMatcher(compile_regexes(
            "http_path",
            &ff.http_path,
        )?)));
    }
    if !ff.http_url.is_empty() {
        check_l7_event_type("http_url", &ff.event_type)?;
        m.push(Matcher::HttpUrl(HttpUrlMatcher(compile_regexes(
            "http_url",
            &ff.http_url,
        )?)));
    }
    if !ff.http_header.is_empty() {
        check_l7_event_type("http_header", &ff.event_type)?;
        m.push(Matcher::HttpHeader(HttpHeaderMatcher(ff.http_header.clone())));
    }
    if !ff.dns_query.is_empty() {
        m.push(Matcher::DnsQuery(DnsQueryMatcher(compile_regexes(
            "dns_query",
            &ff.dns_query,
        )?)));
    }
    Ok(())
}

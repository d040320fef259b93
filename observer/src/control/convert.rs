//! The control API's messages (`lumen.v1`) to and from the node's own
//! types. Requests are checked here; what is wrong with them is a
//! [`ControlError`].

use std::net::IpAddr;

use lumen_policy::compile::RuleMeta;
use lumen_policy::trace::{Decision, Trace, Verdict};
use lumen_proto::lumen::v1 as pb;

use super::ControlError;
use crate::daemon::Aggregation;
use crate::endpoint::{EndpointSpec, PortSpec};
use crate::policies::PolicyView;
use crate::state::EndpointView;

fn origin(text: &str) -> pb::Origin {
    match text {
        "file" => pb::Origin::File,
        "runtime" => pb::Origin::Runtime,
        _ => pb::Origin::Unspecified,
    }
}

fn origin_name(origin: pb::Origin) -> String {
    match origin {
        pb::Origin::File => "file",
        pb::Origin::Runtime => "runtime",
        pb::Origin::Unspecified => "",
    }
    .to_string()
}

impl From<EndpointSpec> for pb::EndpointSpec {
    fn from(spec: EndpointSpec) -> pb::EndpointSpec {
        pb::EndpointSpec {
            name: spec.name,
            namespace: spec.namespace,
            labels: spec.labels.into_iter().collect(),
            ips: spec.ips.iter().map(ToString::to_string).collect(),
            interface: spec.interface,
            ports: spec
                .ports
                .into_iter()
                .map(|p| pb::NamedPort {
                    name: p.name,
                    port: p.port.into(),
                    protocol: p.protocol,
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::EndpointSpec> for EndpointSpec {
    type Error = ControlError;

    fn try_from(spec: pb::EndpointSpec) -> Result<EndpointSpec, ControlError> {
        let key = format!("{}/{}", spec.namespace, spec.name);
        let ips = spec
            .ips
            .iter()
            .map(|ip| {
                ip.parse::<IpAddr>().map_err(|_| ControlError::BadIp {
                    endpoint: key.clone(),
                    ip: ip.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        let ports = spec
            .ports
            .into_iter()
            .map(|p| {
                let port = u16::try_from(p.port).map_err(|_| ControlError::BadNamedPort {
                    endpoint: key.clone(),
                    name: p.name.clone(),
                    port: p.port,
                })?;
                Ok(PortSpec {
                    name: p.name,
                    port,
                    protocol: p.protocol,
                })
            })
            .collect::<Result<_, ControlError>>()?;
        Ok(EndpointSpec {
            name: spec.name,
            namespace: spec.namespace,
            labels: spec.labels.into_iter().collect(),
            interface: spec.interface,
            ips,
            ports,
        })
    }
}

impl From<EndpointView> for pb::Endpoint {
    fn from(view: EndpointView) -> pb::Endpoint {
        pb::Endpoint {
            spec: Some(view.spec.into()),
            endpoint_id: view.endpoint_id,
            identity: view.identity,
            origin: origin(&view.origin).into(),
            enforce_ingress: view.enforce_ingress,
            enforce_egress: view.enforce_egress,
        }
    }
}

impl TryFrom<pb::Endpoint> for EndpointView {
    type Error = ControlError;

    fn try_from(ep: pb::Endpoint) -> Result<EndpointView, ControlError> {
        Ok(EndpointView {
            origin: origin_name(ep.origin()),
            spec: ep.spec.ok_or(ControlError::Missing { field: "spec" })?.try_into()?,
            endpoint_id: ep.endpoint_id,
            identity: ep.identity,
            enforce_ingress: ep.enforce_ingress,
            enforce_egress: ep.enforce_egress,
        })
    }
}

impl From<PolicyView> for pb::Policy {
    fn from(p: PolicyView) -> pb::Policy {
        pb::Policy {
            r#ref: Some(pb::PolicyRef {
                kind: p.kind,
                namespace: p.namespace,
                name: p.name,
            }),
            origin: origin(&p.origin).into(),
            source: p.source,
            document: p.document as u32,
            rules: p.rules as u32,
            audit: p.audit,
        }
    }
}

impl From<pb::Policy> for PolicyView {
    fn from(p: pb::Policy) -> PolicyView {
        let origin = origin_name(p.origin());
        let r = p.r#ref.unwrap_or_default();
        PolicyView {
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
            origin,
            source: p.source,
            document: p.document as usize,
            rules: p.rules as usize,
            audit: p.audit,
        }
    }
}

/// A policy's key in the node's store: `Kind/namespace/name`, or
/// `Kind/name` for a clusterwide one.
pub fn policy_key(r: &pb::PolicyRef) -> String {
    if r.namespace.is_empty() {
        format!("{}/{}", r.kind, r.name)
    } else {
        format!("{}/{}/{}", r.kind, r.namespace, r.name)
    }
}

/// The reference to a policy by its key (see [`policy_key`]).
pub fn policy_ref_of_key(key: &str) -> pb::PolicyRef {
    let parts: Vec<&str> = key.splitn(3, '/').collect();
    match parts[..] {
        [kind, namespace, name] => pb::PolicyRef {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        },
        [kind, name] => pb::PolicyRef {
            kind: kind.into(),
            namespace: String::new(),
            name: name.into(),
        },
        _ => pb::PolicyRef {
            name: key.into(),
            ..Default::default()
        },
    }
}

pub fn policy_ref(p: &lumen_policy::Policy) -> pb::PolicyRef {
    pb::PolicyRef {
        kind: p.kind.to_string(),
        namespace: p.namespace.clone().unwrap_or_default(),
        name: p.name.clone(),
    }
}

pub fn documents(documents: Vec<pb::PolicyDocument>) -> Vec<lumen_policy::Document> {
    documents
        .into_iter()
        .map(|d| lumen_policy::Document {
            source: d.source,
            yaml: d.yaml,
        })
        .collect()
}

pub fn aggregation(level: i32) -> Result<Aggregation, ControlError> {
    match pb::AggregationLevel::try_from(level) {
        Ok(pb::AggregationLevel::None) => Ok(Aggregation::None),
        Ok(pb::AggregationLevel::Medium) => Ok(Aggregation::Medium),
        Ok(pb::AggregationLevel::Max) => Ok(Aggregation::Max),
        _ => Err(ControlError::BadAggregation { level }),
    }
}

pub fn aggregation_level(level: Aggregation) -> pb::AggregationLevel {
    match level {
        Aggregation::None => pb::AggregationLevel::None,
        Aggregation::Medium => pb::AggregationLevel::Medium,
        Aggregation::Max => pb::AggregationLevel::Max,
    }
}

fn verdict(v: Verdict) -> pb::TraceVerdict {
    match v {
        Verdict::Forwarded => pb::TraceVerdict::Forwarded,
        Verdict::Dropped => pb::TraceVerdict::Dropped,
        Verdict::Audit => pb::TraceVerdict::Audit,
    }
}

fn verdict_of(v: i32) -> Result<Verdict, ControlError> {
    match pb::TraceVerdict::try_from(v) {
        Ok(pb::TraceVerdict::Forwarded) => Ok(Verdict::Forwarded),
        Ok(pb::TraceVerdict::Dropped) => Ok(Verdict::Dropped),
        Ok(pb::TraceVerdict::Audit) => Ok(Verdict::Audit),
        _ => Err(ControlError::Missing { field: "verdict" }),
    }
}

fn rule(m: RuleMeta) -> pb::TraceRule {
    pb::TraceRule {
        policy: Some(pb::PolicyRef {
            kind: m.kind,
            namespace: m.namespace,
            name: m.name,
        }),
        match_type: m.match_type,
    }
}

fn rule_of(r: pb::TraceRule) -> RuleMeta {
    let p = r.policy.unwrap_or_default();
    RuleMeta {
        name: p.name,
        namespace: p.namespace,
        kind: p.kind,
        match_type: r.match_type,
    }
}

fn decision(d: Decision) -> pb::TraceDecision {
    pb::TraceDecision {
        verdict: verdict(d.verdict).into(),
        drop_reason: d.drop_reason,
        by: d.by.map(rule),
        selected_by: d.selected_by.into_iter().map(rule).collect(),
        enforced: d.enforced,
    }
}

fn decision_of(d: pb::TraceDecision) -> Result<Decision, ControlError> {
    Ok(Decision {
        verdict: verdict_of(d.verdict)?,
        drop_reason: d.drop_reason,
        by: d.by.map(rule_of),
        selected_by: d.selected_by.into_iter().map(rule_of).collect(),
        enforced: d.enforced,
    })
}

pub fn trace(t: Trace) -> pb::TracePolicyResponse {
    pb::TracePolicyResponse {
        egress: t.egress.map(decision),
        ingress: t.ingress.map(decision),
        verdict: verdict(t.verdict).into(),
    }
}

pub fn trace_of(t: pb::TracePolicyResponse) -> Result<Trace, ControlError> {
    Ok(Trace {
        egress: t.egress.map(decision_of).transpose()?,
        ingress: t.ingress.map(decision_of).transpose()?,
        verdict: verdict_of(t.verdict)?,
    })
}

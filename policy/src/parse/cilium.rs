//! CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (`cilium.io/v2`).
//!
//! The structs mirror Cilium's CRD field for field. Fields Cilium has and
//! Lumen does not implement are read as [`Given`] and refused by name: a
//! policy that silently lost its `toFQDNs` would allow something else than
//! its author wrote.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::model::{Direction, Kind, Origin, Peer, PeerRule, Policy, Port, PortRule, Protocol, Rule, Selector};

use super::error::{FieldPath, Issues};
use super::meta::{self, Metadata};
use super::peer;
use super::ports::{self, PortEntry, PortValue};
use super::selector::{selector, LabelSelector};
use super::{deserialize, present, Flavor, Given};

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a Cilium policy (apiVersion, kind, metadata, spec or specs)"
)]
struct CiliumPolicy {
    #[serde(rename = "apiVersion")]
    _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    _kind: Option<IgnoredAny>,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<CiliumRule>,
    specs: Option<Vec<CiliumRule>>,
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a Cilium rule (endpointSelector, ingress, ingressDeny, egress, egressDeny, enableDefaultDeny)"
)]
struct CiliumRule {
    endpoint_selector: Option<LabelSelector>,
    #[serde(default)]
    node_selector: Given,
    #[serde(default, deserialize_with = "present")]
    ingress: Option<Vec<IngressRule>>,
    #[serde(default, deserialize_with = "present")]
    ingress_deny: Option<Vec<IngressRule>>,
    #[serde(default, deserialize_with = "present")]
    egress: Option<Vec<EgressRule>>,
    #[serde(default, deserialize_with = "present")]
    egress_deny: Option<Vec<EgressRule>>,
    enable_default_deny: Option<DefaultDeny>,
    #[serde(rename = "description")]
    _description: Option<String>,
    #[serde(rename = "labels")]
    _labels: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "enableDefaultDeny (ingress, egress)")]
struct DefaultDeny {
    ingress: Option<bool>,
    egress: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an ingress rule")]
struct IngressRule {
    from_endpoints: Option<Vec<LabelSelector>>,
    #[serde(rename = "fromCIDR")]
    from_cidr: Option<Vec<String>>,
    #[serde(rename = "fromCIDRSet")]
    from_cidr_set: Option<Vec<CidrRule>>,
    from_entities: Option<Vec<String>>,
    to_ports: Option<Vec<CiliumPorts>>,
    #[serde(default)]
    from_requires: Given,
    #[serde(default)]
    from_groups: Given,
    #[serde(default)]
    from_nodes: Given,
    #[serde(default)]
    icmps: Given,
    #[serde(default)]
    authentication: Given,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an egress rule")]
struct EgressRule {
    to_endpoints: Option<Vec<LabelSelector>>,
    #[serde(rename = "toCIDR")]
    to_cidr: Option<Vec<String>>,
    #[serde(rename = "toCIDRSet")]
    to_cidr_set: Option<Vec<CidrRule>>,
    to_entities: Option<Vec<String>>,
    to_ports: Option<Vec<CiliumPorts>>,
    #[serde(default)]
    to_requires: Given,
    #[serde(default)]
    to_groups: Given,
    #[serde(default)]
    to_nodes: Given,
    #[serde(default, rename = "toFQDNs")]
    to_fqdns: Given,
    #[serde(default)]
    to_services: Given,
    #[serde(default)]
    icmps: Given,
    #[serde(default)]
    authentication: Given,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a CIDR rule (cidr, except)"
)]
struct CidrRule {
    cidr: Option<String>,
    except: Option<Vec<String>>,
    #[serde(default)]
    cidr_group_ref: Given,
    #[serde(default)]
    cidr_group_selector: Given,
}

/// An entry of `toPorts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "a port rule (ports)")]
struct CiliumPorts {
    ports: Option<Vec<PortProtocol>>,
    #[serde(default)]
    rules: Given,
    #[serde(default)]
    server_names: Given,
    #[serde(default)]
    listener: Given,
    #[serde(default, rename = "originatingTLS")]
    originating_tls: Given,
    #[serde(default, rename = "terminatingTLS")]
    terminating_tls: Given,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a port (port, endPort, protocol)"
)]
struct PortProtocol {
    port: Option<PortValue>,
    end_port: Option<PortValue>,
    protocol: Option<String>,
}

pub(super) fn policy(doc: &Value, kind: Kind, issues: &mut Issues) -> Option<Policy> {
    let doc: CiliumPolicy = deserialize(doc, issues)?;
    let identity = meta::identity(&doc.metadata, kind, issues);
    let scope = identity.as_ref().and_then(|id| id.namespace.as_deref());
    let root = FieldPath::default();
    let rules = match (&doc.spec, &doc.specs) {
        (Some(rule), None) => vec![self::rule(rule, scope, &root.field("spec"), issues)],
        (None, Some(rules)) if !rules.is_empty() => {
            let path = root.field("specs");
            let mut out = Vec::new();
            for (i, r) in rules.iter().enumerate() {
                out.push(self::rule(r, scope, &path.index(i), issues));
            }
            out
        }
        (None, Some(_)) => {
            issues.push(&root.field("specs"), "needs at least one rule");
            vec![]
        }
        (Some(_), Some(_)) => {
            issues.push(
                &root.field("specs"),
                "give either spec (one rule) or specs (a list of rules), not both",
            );
            vec![]
        }
        (None, None) => {
            issues.push(
                &root.field("spec"),
                "required (one rule in spec, or a list of rules in specs)",
            );
            vec![]
        }
    };
    let identity = identity?;
    Some(Policy {
        kind,
        name: identity.name,
        namespace: identity.namespace,
        audit: identity.audit,
        rules,
        origin: Origin::default(),
    })
}

/// One rule. `scope` is the namespace of a namespaced policy, which every
/// selector of it is confined to unless it names a namespace itself.
fn rule(rule: &CiliumRule, scope: Option<&str>, path: &FieldPath, issues: &mut Issues) -> Rule {
    issues.unsupported(path, "nodeSelector", rule.node_selector.0);
    let subject = match &rule.endpoint_selector {
        Some(sel) => selector(sel, Flavor::Cilium, &path.field("endpointSelector"), issues),
        None => {
            if !rule.node_selector.0 {
                issues.push(&path.field("endpointSelector"), "required");
            }
            Selector::all()
        }
    };
    let subject = match scope {
        Some(ns) => subject.in_namespace(ns),
        None => subject,
    };
    let default_deny = rule.enable_default_deny.as_ref();
    Rule {
        subject,
        ingress: Direction {
            selects: rule.ingress.is_some() || rule.ingress_deny.is_some(),
            allow: peer_rules(rule.ingress.as_deref(), scope, &path.field("ingress"), issues),
            deny: peer_rules(rule.ingress_deny.as_deref(), scope, &path.field("ingressDeny"), issues),
            default_deny: default_deny.and_then(|d| d.ingress),
        },
        egress: Direction {
            selects: rule.egress.is_some() || rule.egress_deny.is_some(),
            allow: peer_rules(rule.egress.as_deref(), scope, &path.field("egress"), issues),
            deny: peer_rules(rule.egress_deny.as_deref(), scope, &path.field("egressDeny"), issues),
            default_deny: default_deny.and_then(|d| d.egress),
        },
    }
}

/// An ingress or egress rule seen apart from its direction's field names.
struct PeerFields<'a> {
    names: &'static Names,
    endpoints: &'a [LabelSelector],
    cidr: &'a [String],
    cidr_set: &'a [CidrRule],
    entities: &'a [String],
    to_ports: &'a [CiliumPorts],
    unsupported: Vec<(&'static str, bool)>,
}

struct Names {
    endpoints: &'static str,
    cidr: &'static str,
    cidr_set: &'static str,
    entities: &'static str,
}

const FROM: Names = Names {
    endpoints: "fromEndpoints",
    cidr: "fromCIDR",
    cidr_set: "fromCIDRSet",
    entities: "fromEntities",
};

const TO: Names = Names {
    endpoints: "toEndpoints",
    cidr: "toCIDR",
    cidr_set: "toCIDRSet",
    entities: "toEntities",
};

trait PeerSide {
    fn fields(&self) -> PeerFields<'_>;
}

impl PeerSide for IngressRule {
    fn fields(&self) -> PeerFields<'_> {
        PeerFields {
            names: &FROM,
            endpoints: self.from_endpoints.as_deref().unwrap_or_default(),
            cidr: self.from_cidr.as_deref().unwrap_or_default(),
            cidr_set: self.from_cidr_set.as_deref().unwrap_or_default(),
            entities: self.from_entities.as_deref().unwrap_or_default(),
            to_ports: self.to_ports.as_deref().unwrap_or_default(),
            unsupported: vec![
                ("fromRequires", self.from_requires.0),
                ("fromGroups", self.from_groups.0),
                ("fromNodes", self.from_nodes.0),
                ("icmps", self.icmps.0),
                ("authentication", self.authentication.0),
            ],
        }
    }
}

impl PeerSide for EgressRule {
    fn fields(&self) -> PeerFields<'_> {
        PeerFields {
            names: &TO,
            endpoints: self.to_endpoints.as_deref().unwrap_or_default(),
            cidr: self.to_cidr.as_deref().unwrap_or_default(),
            cidr_set: self.to_cidr_set.as_deref().unwrap_or_default(),
            entities: self.to_entities.as_deref().unwrap_or_default(),
            to_ports: self.to_ports.as_deref().unwrap_or_default(),
            unsupported: vec![
                ("toRequires", self.to_requires.0),
                ("toGroups", self.to_groups.0),
                ("toNodes", self.to_nodes.0),
                ("toFQDNs", self.to_fqdns.0),
                ("toServices", self.to_services.0),
                ("icmps", self.icmps.0),
                ("authentication", self.authentication.0),
            ],
        }
    }
}

fn peer_rules<R: PeerSide>(
    rules: Option<&[R]>,
    scope: Option<&str>,
    path: &FieldPath,
    issues: &mut Issues,
) -> Vec<PeerRule> {
    let rules = rules.unwrap_or_default().iter().enumerate();
    rules
        .map(|(i, r)| peer_rule(r.fields(), scope, &path.index(i), issues))
        .collect()
}

/// One Cilium ingress/egress rule: its L3 peers (any peer when it only
/// names ports, none when it names nothing) and its ports.
fn peer_rule(fields: PeerFields<'_>, scope: Option<&str>, path: &FieldPath, issues: &mut Issues) -> PeerRule {
    for (name, given) in &fields.unsupported {
        issues.unsupported(path, name, *given);
    }
    let names = fields.names;
    let mut peers = Vec::new();
    for (i, sel) in fields.endpoints.iter().enumerate() {
        let sel = selector(sel, Flavor::Cilium, &path.field(names.endpoints).index(i), issues);
        peers.push(Peer::Endpoints(match scope {
            Some(ns) if !sel.names_namespace() && !selects_reserved(&sel) => sel.in_namespace(ns),
            _ => sel,
        }));
    }
    for (i, text) in fields.cidr.iter().enumerate() {
        let cidr = issues.check(&path.field(names.cidr).index(i), peer::cidr(text, true));
        peers.extend(cidr.map(|cidr| Peer::Cidr { cidr, except: vec![] }));
    }
    for (i, set) in fields.cidr_set.iter().enumerate() {
        let path = path.field(names.cidr_set).index(i);
        issues.unsupported(&path, "cidrGroupRef", set.cidr_group_ref.0);
        issues.unsupported(&path, "cidrGroupSelector", set.cidr_group_selector.0);
        if set.cidr.is_none() && (set.cidr_group_ref.0 || set.cidr_group_selector.0) {
            continue;
        }
        let except = set.except.as_deref().unwrap_or_default();
        peers.extend(peer::cidr_with_except(set.cidr.as_deref(), except, true, &path, issues));
    }
    for (i, name) in fields.entities.iter().enumerate() {
        peers.extend(issues.check(&path.field(names.entities).index(i), peer::entity(name)));
    }
    let l3 = !(fields.endpoints.is_empty()
        && fields.cidr.is_empty()
        && fields.cidr_set.is_empty()
        && fields.entities.is_empty());
    if !l3 && !fields.to_ports.is_empty() {
        peers.push(Peer::Any);
    }
    PeerRule {
        peers,
        ports: to_ports(fields.to_ports, &path.field("toPorts"), issues),
    }
}

/// Whether a peer selector names a reserved identity (`reserved:host`).
/// Cilium leaves those out of namespace scoping: reserved identities
/// belong to no namespace, so scoping would make the selector match nothing.
fn selects_reserved(sel: &Selector) -> bool {
    let reserved = |key: &str| key.starts_with("reserved:");
    sel.match_labels.keys().any(|k| reserved(k)) || sel.match_expressions.iter().any(|r| reserved(&r.key))
}

/// Every `toPorts[].ports[]` entry; an entry without ports stands for all.
fn to_ports(list: &[CiliumPorts], path: &FieldPath, issues: &mut Issues) -> Vec<PortRule> {
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let path = path.index(i);
        if entry.rules.0 {
            issues.push(&path.field("rules"), "L7 rules are not supported yet");
        }
        issues.unsupported(&path, "serverNames", entry.server_names.0);
        issues.unsupported(&path, "listener", entry.listener.0);
        issues.unsupported(&path, "originatingTLS", entry.originating_tls.0);
        issues.unsupported(&path, "terminatingTLS", entry.terminating_tls.0);
        let ports = entry.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            out.push(PortRule {
                port: Port::All,
                protocol: Protocol::Any,
            });
        }
        for (j, port) in ports.iter().enumerate() {
            let entry = PortEntry {
                port: port.port.as_ref(),
                end_port: port.end_port.as_ref(),
                protocol: port.protocol.as_deref(),
            };
            out.extend(ports::port_rule(
                entry,
                Flavor::Cilium,
                &path.field("ports").index(j),
                issues,
            ));
        }
    }
    out
}

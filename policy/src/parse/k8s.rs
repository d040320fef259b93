//! Kubernetes NetworkPolicy (`networking.k8s.io/v1`), translated the way
//! Cilium enforces it: namespace selectors become selectors on the
//! `io.cilium.k8s.namespace.labels.*` labels of endpoints.

use std::collections::btree_map::Entry;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::model::{
    Direction, Kind, Operator, Origin, Peer, PeerRule, Policy, PortRule, Requirement, Rule, Selector,
    NAMESPACE_LABELS_PREFIX,
};

use super::error::{FieldPath, Issues};
use super::meta::{self, Metadata};
use super::peer;
use super::ports::{self, PortEntry, PortValue};
use super::selector::{selector, LabelSelector};
use super::{deserialize, present, Flavor};

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a NetworkPolicy (apiVersion, kind, metadata, spec)"
)]
struct NetworkPolicy {
    #[serde(rename = "apiVersion")]
    _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    _kind: Option<IgnoredAny>,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<Spec>,
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a NetworkPolicy spec (podSelector, policyTypes, ingress, egress)"
)]
struct Spec {
    pod_selector: Option<LabelSelector>,
    policy_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    ingress: Option<Vec<IngressRule>>,
    #[serde(default, deserialize_with = "present")]
    egress: Option<Vec<EgressRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an ingress rule (from, ports)")]
struct IngressRule {
    from: Option<Vec<NetworkPeer>>,
    ports: Option<Vec<NetworkPort>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an egress rule (to, ports)")]
struct EgressRule {
    to: Option<Vec<NetworkPeer>>,
    ports: Option<Vec<NetworkPort>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a peer (podSelector, namespaceSelector, ipBlock)"
)]
struct NetworkPeer {
    pod_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    ip_block: Option<IpBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an ipBlock (cidr, except)")]
struct IpBlock {
    cidr: Option<String>,
    except: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a port (protocol, port, endPort)"
)]
struct NetworkPort {
    protocol: Option<String>,
    port: Option<PortValue>,
    end_port: Option<PortValue>,
}

pub(super) fn policy(doc: &Value, issues: &mut Issues) -> Option<Policy> {
    let doc: NetworkPolicy = deserialize(doc, issues)?;
    let identity = meta::identity(&doc.metadata, Kind::NetworkPolicy, issues);
    let path = FieldPath::default().field("spec");
    let Some(spec) = &doc.spec else {
        issues.push(&path, "required");
        return None;
    };
    // A namespace is always known here, even when the given one was refused.
    let ns = identity
        .as_ref()
        .and_then(|id| id.namespace.clone())
        .unwrap_or_default();
    let rule = rule(spec, &ns, &path, issues);
    let identity = identity?;
    Some(Policy {
        kind: Kind::NetworkPolicy,
        name: identity.name,
        namespace: identity.namespace,
        audit: identity.audit,
        rules: vec![rule],
        origin: Origin::default(),
    })
}

fn rule(spec: &Spec, ns: &str, path: &FieldPath, issues: &mut Issues) -> Rule {
    let subject = match &spec.pod_selector {
        Some(sel) => selector(sel, Flavor::Kubernetes, &path.field("podSelector"), issues),
        None => {
            issues.push(
                &path.field("podSelector"),
                "required ({} selects every pod of the namespace)",
            );
            Selector::all()
        }
    };
    let (ingress, egress) = policy_types(spec, &path.field("policyTypes"), issues);
    let ingress_path = path.field("ingress");
    let allow_in = spec.ingress.iter().flatten().enumerate().map(|(i, r)| {
        let path = ingress_path.index(i);
        peer_rule(r.from.as_deref(), r.ports.as_deref(), "from", ns, &path, issues)
    });
    let allow_in: Vec<PeerRule> = allow_in.collect();
    let egress_path = path.field("egress");
    let allow_out = spec.egress.iter().flatten().enumerate().map(|(i, r)| {
        let path = egress_path.index(i);
        peer_rule(r.to.as_deref(), r.ports.as_deref(), "to", ns, &path, issues)
    });
    let allow_out: Vec<PeerRule> = allow_out.collect();
    // Rules of a direction the policy types leave out are checked but have
    // no effect, as in Kubernetes.
    let direction = |selects: bool, allow: Vec<PeerRule>| Direction {
        selects,
        allow: if selects { allow } else { vec![] },
        deny: vec![],
        default_deny: None,
    };
    Rule {
        subject: subject.in_namespace(ns),
        ingress: direction(ingress, allow_in),
        egress: direction(egress, allow_out),
    }
}

/// Whether the policy selects its pods for ingress and for egress. Without
/// `policyTypes`: ingress always, egress when the `egress` key is given.
fn policy_types(spec: &Spec, path: &FieldPath, issues: &mut Issues) -> (bool, bool) {
    let types = spec.policy_types.as_deref().unwrap_or_default();
    if types.is_empty() {
        return (true, spec.egress.is_some());
    }
    let (mut ingress, mut egress) = (false, false);
    for (i, name) in types.iter().enumerate() {
        match name.as_str() {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => issues.push(
                &path.index(i),
                format!("unknown policy type \"{other}\" (Ingress, Egress)"),
            ),
        }
    }
    (ingress, egress)
}

/// One `ingress[]`/`egress[]` entry. No peers means every peer; no ports
/// means every port.
fn peer_rule(
    peers: Option<&[NetworkPeer]>,
    ports: Option<&[NetworkPort]>,
    peers_name: &str,
    ns: &str,
    path: &FieldPath,
    issues: &mut Issues,
) -> PeerRule {
    let peers = peers.unwrap_or_default();
    let peers_path = path.field(peers_name);
    let mut out: Vec<Peer> = peers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| peer(p, ns, &peers_path.index(i), issues))
        .collect();
    if peers.is_empty() {
        out.push(Peer::Any);
    }
    let ports_path = path.field("ports");
    let ports = ports.unwrap_or_default().iter().enumerate().filter_map(|(i, port)| {
        let entry = PortEntry {
            port: port.port.as_ref(),
            end_port: port.end_port.as_ref(),
            protocol: port.protocol.as_deref(),
        };
        ports::port_rule(entry, Flavor::Kubernetes, &ports_path.index(i), issues)
    });
    let ports: Vec<PortRule> = ports.collect();
    PeerRule { peers: out, ports }
}

fn peer(peer: &NetworkPeer, ns: &str, path: &FieldPath, issues: &mut Issues) -> Option<Peer> {
    let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    if let Some(block) = &peer.ip_block {
        if has_selector {
            issues.push(path, "ipBlock cannot be combined with podSelector or namespaceSelector");
            return None;
        }
        let except = block.except.as_deref().unwrap_or_default();
        return peer::cidr_with_except(block.cidr.as_deref(), except, false, &path.field("ipBlock"), issues);
    }
    let pods = peer.pod_selector.as_ref();
    let pods = pods.map(|s| selector(s, Flavor::Kubernetes, &path.field("podSelector"), issues));
    let namespaces = peer.namespace_selector.as_ref();
    let namespaces = namespaces.map(|s| selector(s, Flavor::Kubernetes, &path.field("namespaceSelector"), issues));
    let endpoints = match (pods, namespaces) {
        (None, None) => {
            issues.push(path, "a peer needs podSelector, namespaceSelector or ipBlock");
            return None;
        }
        (Some(pods), None) => pods.in_namespace(ns),
        (pods, Some(namespaces)) => both(pods.unwrap_or_default(), namespace_labels(namespaces)),
    };
    Some(Peer::Endpoints(endpoints))
}

/// A namespace selector as a selector on endpoints: their namespace's
/// labels are theirs under [`NAMESPACE_LABELS_PREFIX`].
fn namespace_labels(sel: Selector) -> Selector {
    let prefixed = |key: String| format!("{NAMESPACE_LABELS_PREFIX}{key}");
    Selector {
        match_labels: sel.match_labels.into_iter().map(|(k, v)| (prefixed(k), v)).collect(),
        match_expressions: sel
            .match_expressions
            .into_iter()
            .map(|r| Requirement {
                key: prefixed(r.key),
                ..r
            })
            .collect(),
    }
}

/// Endpoints both selectors select. A key both give a label for keeps
/// both requirements (as an expression), not just one of the values.
fn both(mut pods: Selector, namespaces: Selector) -> Selector {
    for (key, value) in namespaces.match_labels {
        match pods.match_labels.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(slot) => pods.match_expressions.push(Requirement {
                key: slot.key().clone(),
                operator: Operator::In,
                values: vec![value],
            }),
        }
    }
    pods.match_expressions.extend(namespaces.match_expressions);
    pods
}

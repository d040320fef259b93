//! The policy model every source format is normalised into: what a rule
//! selects, whom it allows or denies, on which ports. Namespace scoping is
//! already applied here (a namespaced policy's selectors carry the
//! namespace requirement), so the compiler needs no knowledge of the kind.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The label that carries an endpoint's namespace, as Kubernetes names it.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

/// Prefix of the labels that carry the labels of an endpoint's namespace
/// (Cilium's convention), e.g. `io.cilium.k8s.namespace.labels.team=a`.
pub const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

/// The annotation that puts one policy in audit mode (Lumen's own): its
/// denials are reported as AUDIT and nothing it selects is dropped.
pub const AUDIT_ANNOTATION: &str = "policy.lumen.io/audit-mode";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
    NetworkPolicy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            Kind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            Kind::NetworkPolicy => "NetworkPolicy",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a policy came from, for error messages and `policy list`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
}

/// One policy object (one Kubernetes resource).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub kind: Kind,
    pub name: String,
    /// `None` for cluster-wide policies.
    pub namespace: Option<String>,
    /// Set by [`AUDIT_ANNOTATION`]: report instead of drop.
    pub audit: bool,
    /// `spec` and every entry of `specs`; a NetworkPolicy has exactly one.
    pub rules: Vec<Rule>,
    pub origin: Origin,
}

impl Policy {
    /// `kind/namespace/name` (or `kind/name`): unique within a policy set.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// One rule: the endpoints it applies to and what it says about them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The endpoints the rule applies to (`endpointSelector`,
    /// `podSelector`), namespace requirement included.
    pub subject: Selector,
    pub ingress: Direction,
    pub egress: Direction,
}

/// What a rule says about one direction of its subject.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direction {
    /// The rule selects its subject in this direction: the subject becomes
    /// default-deny there (unless `default_deny` is `Some(false)`).
    pub selects: bool,
    pub allow: Vec<PeerRule>,
    pub deny: Vec<PeerRule>,
    /// `enableDefaultDeny` for this direction, when the policy sets it.
    pub default_deny: Option<bool>,
}

/// Peers and ports: traffic matches when its peer matches any of `peers`
/// and its port/protocol matches any of `ports` (no ports: all traffic,
/// any protocol).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PortRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Peer {
    /// Any peer at all, in or outside the cluster (an L4-only rule, a
    /// NetworkPolicy rule without `from`/`to`, the entity `all`).
    Any,
    /// Endpoints (pods) whose labels match, namespace scoping applied.
    Endpoints(Selector),
    /// Addresses in `cidr` but in none of `except`.
    Cidr {
        cidr: IpNet,
        except: Vec<IpNet>,
    },
    Entity(Entity),
}

/// Cilium's entities (`all` is [`Peer::Any`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Entity {
    World,
    Host,
    /// Everything managed by the cluster: pods, host, remote nodes, health,
    /// init, ingress, kube-apiserver, unmanaged.
    Cluster,
    RemoteNode,
    KubeApiserver,
    Ingress,
    Health,
    Init,
    Unmanaged,
}

impl Entity {
    /// Every entity by the name policies use (Cilium's `api.Entity`).
    const NAMED: [(&'static str, Entity); 9] = [
        ("world", Entity::World),
        ("host", Entity::Host),
        ("cluster", Entity::Cluster),
        ("remote-node", Entity::RemoteNode),
        ("kube-apiserver", Entity::KubeApiserver),
        ("ingress", Entity::Ingress),
        ("health", Entity::Health),
        ("init", Entity::Init),
        ("unmanaged", Entity::Unmanaged),
    ];

    pub fn parse(name: &str) -> Option<Entity> {
        Entity::NAMED.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }
}

/// Every entity name a policy may use, `all` included.
pub fn entity_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("all").chain(Entity::NAMED.iter().map(|(name, _)| *name))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    /// TCP, UDP and SCTP (Cilium's `ANY`).
    Any,
}

impl Protocol {
    /// IP protocol numbers this stands for.
    pub fn numbers(self) -> &'static [u8] {
        match self {
            Protocol::Tcp => &[6],
            Protocol::Udp => &[17],
            Protocol::Sctp => &[132],
            Protocol::Any => &[6, 17, 132],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Port {
    /// Every port of the protocol (`port: 0` or no port).
    All,
    /// `port` .. `end` inclusive (`end == port` for a single port).
    Range { port: u16, end: u16 },
    /// A port the selected endpoint declares by this name.
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRule {
    pub port: Port,
    pub protocol: Protocol,
}

/// A Kubernetes label selector. Keys are plain (`app`), Cilium's `k8s:`
/// and `any:` source prefixes removed; `reserved:<name>` keys select the
/// reserved identity of that name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    /// The selector that matches every endpoint.
    pub fn all() -> Selector {
        Selector::default()
    }

    /// `self` restricted to endpoints of namespace `ns`.
    pub fn in_namespace(mut self, ns: &str) -> Selector {
        self.match_expressions.push(Requirement {
            key: NAMESPACE_LABEL.to_string(),
            operator: Operator::In,
            values: vec![ns.to_string()],
        });
        self
    }

    /// Whether the selector says which namespace it wants (then a
    /// namespaced policy does not scope it to its own).
    pub fn names_namespace(&self) -> bool {
        self.match_labels.contains_key(NAMESPACE_LABEL)
            || self.match_expressions.iter().any(|r| r.key == NAMESPACE_LABEL)
    }

    /// Whether a label set (`key → value`) is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let v = labels.get(&r.key);
                match r.operator {
                    Operator::In => v.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => v.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => v.is_some(),
                    Operator::DoesNotExist => v.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selector_operators() {
        let req = |operator, values: &[&str]| Selector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![Requirement {
                key: "tier".into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        };
        let web = labels(&[("tier", "web")]);
        let none = labels(&[("app", "x")]);
        assert!(req(Operator::In, &["web", "db"]).matches(&web));
        assert!(!req(Operator::In, &["db"]).matches(&web));
        assert!(!req(Operator::In, &["web"]).matches(&none));
        assert!(!req(Operator::NotIn, &["web"]).matches(&web));
        assert!(req(Operator::NotIn, &["web"]).matches(&none));
        assert!(req(Operator::Exists, &[]).matches(&web));
        assert!(!req(Operator::Exists, &[]).matches(&none));
        assert!(req(Operator::DoesNotExist, &[]).matches(&none));
        assert!(Selector::all().matches(&none));
        let scoped = Selector::all().in_namespace("prod");
        assert!(scoped.names_namespace());
        assert!(scoped.matches(&labels(&[(NAMESPACE_LABEL, "prod")])));
        assert!(!scoped.matches(&labels(&[(NAMESPACE_LABEL, "dev")])));
    }
}

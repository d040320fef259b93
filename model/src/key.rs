//! What a flow's endpoints are called under a [`Unit`], and which way the
//! connection goes.
//!
//! An endpoint maps to a [`NodeKey`]: a pod's workload, pod, identity,
//! namespace or cluster node, depending on the unit. Reserved identities are
//! nodes of their own under every unit (`reserved:host`), the world is split
//! by the DNS name the flow carries, else by IP, and an endpoint with no
//! identity information is its IP.

use std::fmt;

use lumen_proto::flow::{layer4::Protocol as L4, Endpoint, Flow, Policy, TrafficDirection};
use lumen_proto::names::RESERVED_IDENTITIES;
use serde::{Deserialize, Serialize};

/// What a node of the map (a row of the workloads table) stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// A Deployment, StatefulSet, ...: the pods' workload, else their `app` label.
    #[default]
    Workload,
    Pod,
    /// A security identity (pods with the same labels).
    Identity,
    Namespace,
    /// A cluster node, as the flows' `node_name` calls it.
    Node,
}

impl Unit {
    /// Every unit, in the order `lumen top` cycles through them.
    pub const ALL: [Unit; 5] = [Unit::Workload, Unit::Pod, Unit::Identity, Unit::Namespace, Unit::Node];
}

/// The kind of a [`NodeKey`]: the unit it was made under, or what an
/// endpoint is under every unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    Workload,
    Pod,
    Identity,
    Namespace,
    Node,
    /// A reserved identity other than the world: `name` is `reserved:host`, ...
    Reserved,
    /// The world (`reserved:world`, `-ipv4`, `-ipv6`, CIDR identities): `name`
    /// is the DNS name the flow carries, else the IP.
    World,
    /// An endpoint with no identity information (or, under [`Unit::Node`], one
    /// whose node is not known yet): `name` is the IP.
    Ip,
}

/// A node of the map: an aggregation key for one end of a connection.
///
/// Ordered by kind, then namespace, then name, so a sorted list has the
/// cluster's own nodes first and the world last.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeKey {
    pub kind: NodeKind,
    /// Kubernetes namespace (a namespace node's is its name); empty for
    /// cluster nodes, reserved identities, the world and IPs.
    pub namespace: String,
    /// Workload, pod or node name, identity number, namespace, `reserved:…`
    /// name, DNS name or IP.
    pub name: String,
}

impl NodeKey {
    pub fn new(kind: NodeKind, namespace: &str, name: &str) -> NodeKey {
        NodeKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for NodeKey {
    /// `ns/name` for namespaced nodes, `api.example.com (reserved:world)`
    /// for the world, the bare name otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.namespace.as_str(), self.name.as_str()) {
            (NodeKind::World, _, "") => f.write_str("reserved:world"),
            (NodeKind::World, _, name) => write!(f, "{name} (reserved:world)"),
            (NodeKind::Ip, _, "") => f.write_str("(unknown)"),
            (NodeKind::Namespace, _, name) | (_, "", name) => f.write_str(name),
            (_, ns, name) => write!(f, "{ns}/{name}"),
        }
    }
}

/// The L4 protocol of a connection, in Hubble's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
    #[serde(rename = "ICMPv4")]
    IcmpV4,
    #[serde(rename = "ICMPv6")]
    IcmpV6,
    #[serde(rename = "VRRP")]
    Vrrp,
    #[serde(rename = "IGMP")]
    Igmp,
    /// The flow has no L4 header.
    #[serde(rename = "unknown")]
    Unknown,
}

impl Protocol {
    /// Hubble's name (`TCP`, `ICMPv4`), as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::IcmpV4 => "ICMPv4",
            Protocol::IcmpV6 => "ICMPv6",
            Protocol::Vrrp => "VRRP",
            Protocol::Igmp => "IGMP",
            Protocol::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A network policy by kind and name: who dropped (or would drop) a flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRef {
    /// CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy.
    pub kind: String,
    /// Empty for cluster-wide policies.
    pub namespace: String,
    pub name: String,
}

impl PolicyRef {
    pub(crate) fn is(&self, p: &Policy) -> bool {
        self.kind == p.kind && self.namespace == p.namespace && self.name == p.name
    }

    pub(crate) fn of(p: &Policy) -> PolicyRef {
        PolicyRef {
            kind: p.kind.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        }
    }
}

impl fmt::Display for PolicyRef {
    /// As `lumen observe` names a policy: `CiliumNetworkPolicy default/deny`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace.as_str() {
            "" => write!(f, "{} {}", self.kind, self.name),
            ns => write!(f, "{} {ns}/{}", self.kind, self.name),
        }
    }
}

/// One end of a connection as the flow describes it.
#[derive(Clone, Copy)]
pub(crate) struct Side<'a> {
    pub endpoint: Option<&'a Endpoint>,
    pub ip: &'a str,
    /// DNS names the observer knows for the IP.
    pub names: &'a [String],
}

/// Which end of the connection is on the node that observed the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Source,
    Destination,
}

/// A flow turned the way its connection goes.
pub(crate) struct Oriented<'a> {
    pub source: Side<'a>,
    pub destination: Side<'a>,
    /// The service port: the destination port, or a reply's source port.
    pub port: u32,
    pub protocol: Protocol,
    pub local: Option<End>,
}

/// Turns a reply (`is_reply == Some(true)`) around so that it counts for the
/// connection it answers. Hubble's traffic direction is the connection's
/// (a reply keeps the direction of its request), so it names the local end
/// of the turned flow.
pub(crate) fn orient(flow: &Flow) -> Oriented<'_> {
    let ip = flow.ip.as_ref();
    let source = Side {
        endpoint: flow.source.as_ref(),
        ip: ip.map_or("", |ip| &ip.source),
        names: &flow.source_names,
    };
    let destination = Side {
        endpoint: flow.destination.as_ref(),
        ip: ip.map_or("", |ip| &ip.destination),
        names: &flow.destination_names,
    };
    let (protocol, sport, dport) = match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
        Some(L4::Tcp(p)) => (Protocol::Tcp, p.source_port, p.destination_port),
        Some(L4::Udp(p)) => (Protocol::Udp, p.source_port, p.destination_port),
        Some(L4::Sctp(p)) => (Protocol::Sctp, p.source_port, p.destination_port),
        Some(L4::IcmPv4(_)) => (Protocol::IcmpV4, 0, 0),
        Some(L4::IcmPv6(_)) => (Protocol::IcmpV6, 0, 0),
        Some(L4::Vrrp(_)) => (Protocol::Vrrp, 0, 0),
        Some(L4::Igmp(_)) => (Protocol::Igmp, 0, 0),
        None => (Protocol::Unknown, 0, 0),
    };
    let local = match TrafficDirection::try_from(flow.traffic_direction) {
        Ok(TrafficDirection::Ingress) => Some(End::Destination),
        Ok(TrafficDirection::Egress) => Some(End::Source),
        _ => None,
    };
    match flow.is_reply {
        Some(true) => Oriented {
            source: destination,
            destination: source,
            port: sport,
            protocol,
            local,
        },
        _ => Oriented {
            source,
            destination,
            port: dport,
            protocol,
            local,
        },
    }
}

/// The value of the label `key` (with any source prefix: `k8s:app=web`).
fn label<'a>(labels: &'a [String], key: &str) -> Option<&'a str> {
    labels.iter().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        let k = k.split_once(':').map_or(k, |(_, k)| k);
        (k == key && !v.is_empty()).then_some(v)
    })
}

/// The reserved identity an endpoint is: by number, or for CIDR and other
/// non-pod identities by their `reserved:` label.
fn reserved(ep: &Endpoint) -> Option<&str> {
    if let Some((_, name)) = RESERVED_IDENTITIES.iter().find(|(id, _)| *id == ep.identity) {
        return Some(name);
    }
    if !ep.pod_name.is_empty() {
        return None;
    }
    ep.labels
        .iter()
        .find_map(|l| l.strip_prefix("reserved:"))
        .map(|l| l.split_once('=').map_or(l, |(k, _)| k))
}

/// The namespace of a pod endpoint; remote pods may carry it only as a label.
pub(crate) fn namespace(ep: &Endpoint) -> &str {
    match ep.namespace.as_str() {
        "" => label(&ep.labels, "io.kubernetes.pod.namespace").unwrap_or(""),
        ns => ns,
    }
}

fn workload(ep: &Endpoint) -> Option<&str> {
    ep.workloads
        .first()
        .map(|w| w.name.as_str())
        .filter(|n| !n.is_empty())
        .or_else(|| label(&ep.labels, "app"))
        .or_else(|| label(&ep.labels, "app.kubernetes.io/name"))
        .or(Some(ep.pod_name.as_str()).filter(|p| !p.is_empty()))
}

/// A node key shared by the tables, with its hash: looking an entry up
/// hashes a number and, for the same key, compares a pointer.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    key: std::sync::Arc<NodeKey>,
    hash: u64,
}

impl std::hash::Hash for Shared {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Shared) -> bool {
        std::sync::Arc::ptr_eq(&self.key, &other.key) || (self.hash == other.hash && *self.key == *other.key)
    }
}

impl Eq for Shared {}

impl std::ops::Deref for Shared {
    type Target = NodeKey;

    fn deref(&self) -> &NodeKey {
        &self.key
    }
}

/// Node keys of the endpoints seen lately, so that a flow between known
/// endpoints is named without reading their labels again or copying a name.
/// An entry is found by a hash of the endpoint's identity and address and
/// checked against them: a pod's address and identity name it in the
/// cluster. Its name and labels are not compared, so the memo is emptied
/// every [`MEMO_SECS`] of flow time (and when full) for a replaced or
/// relabelled pod to be named anew.
#[derive(Default)]
pub(crate) struct KeyMemo {
    hasher: foldhash::fast::RandomState,
    entries: std::collections::HashMap<u64, Memo, foldhash::fast::RandomState>,
    unit: Unit,
    since_sec: u64,
}

struct Memo {
    identity: u32,
    ip: String,
    key: Shared,
}

/// Endpoints remembered at most.
const MEMO_ENTRIES: usize = 16_384;
/// How long a name is trusted, in seconds of flow time.
const MEMO_SECS: u64 = 10;

impl KeyMemo {
    /// A key made elsewhere, hashed as the memo's are (every key of one
    /// model's tables comes through here or [`KeyMemo::key`]).
    pub(crate) fn share(&self, key: NodeKey) -> Shared {
        Shared {
            hash: std::hash::BuildHasher::hash_one(&self.hasher, &key),
            key: std::sync::Arc::new(key),
        }
    }

    /// [`node_key`], shared. Cluster nodes (which depend on where the
    /// endpoint was seen), world peers named by DNS and endpoints without
    /// both an identity and an address (which would not tell two apart)
    /// are not remembered.
    pub(crate) fn key(&mut self, unit: Unit, side: &Side<'_>, host: Option<&str>, sec: u64) -> Shared {
        let remembered =
            |ep: &&Endpoint| unit != Unit::Node && side.names.is_empty() && ep.identity != 0 && !side.ip.is_empty();
        let Some(ep) = side.endpoint.filter(remembered) else {
            return self.share(node_key(unit, side, host));
        };
        if unit != self.unit || sec >= self.since_sec + MEMO_SECS || self.entries.len() >= MEMO_ENTRIES {
            self.entries.clear();
            (self.unit, self.since_sec) = (unit, sec);
        }
        // A pod's address and identity name it in the cluster.
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, (ep.identity, side.ip));
        if let Some(m) = self.entries.get(&hash) {
            if m.identity == ep.identity && m.ip == side.ip {
                return m.key.clone();
            }
        }
        let key = self.share(node_key(unit, side, host));
        self.entries.insert(
            hash,
            Memo {
                identity: ep.identity,
                ip: side.ip.to_string(),
                key: key.clone(),
            },
        );
        key
    }
}

/// The node `side` is under `unit`. `host` is the cluster node the endpoint
/// runs on, when known (only [`Unit::Node`] reads it).
pub(crate) fn node_key(unit: Unit, side: &Side<'_>, host: Option<&str>) -> NodeKey {
    let ip = || NodeKey::new(NodeKind::Ip, "", side.ip);
    let Some(ep) = side.endpoint else {
        return ip();
    };
    if let Some(name) = reserved(ep) {
        if name.starts_with("world") {
            let peer = side
                .names
                .iter()
                .find(|n| !n.is_empty())
                .map_or(side.ip, |n| n.as_str());
            return NodeKey::new(NodeKind::World, "", peer);
        }
        return NodeKey::new(NodeKind::Reserved, "", &format!("reserved:{name}"));
    }
    let ns = namespace(ep);
    let key = match unit {
        Unit::Workload => workload(ep).map(|w| NodeKey::new(NodeKind::Workload, ns, w)),
        Unit::Pod => Some(ep.pod_name.as_str())
            .filter(|p| !p.is_empty())
            .map(|p| NodeKey::new(NodeKind::Pod, ns, p)),
        Unit::Identity => None,
        Unit::Namespace => Some(ns)
            .filter(|ns| !ns.is_empty())
            .map(|ns| NodeKey::new(NodeKind::Namespace, ns, ns)),
        Unit::Node => return host.map_or_else(ip, |h| NodeKey::new(NodeKind::Node, "", h)),
    };
    match (key, ep.identity) {
        (Some(key), _) => key,
        (None, 0) => ip(),
        (None, id) => NodeKey::new(NodeKind::Identity, ns, &id.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::flow::Workload;

    fn ep(identity: u32, namespace: &str, pod: &str, labels: &[&str]) -> Endpoint {
        Endpoint {
            identity,
            namespace: namespace.into(),
            pod_name: pod.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..Default::default()
        }
    }

    fn key(unit: Unit, ep: &Endpoint, names: &[String]) -> String {
        let side = Side {
            endpoint: Some(ep),
            ip: "10.0.0.7",
            names,
        };
        node_key(unit, &side, Some("node-a")).to_string()
    }

    #[test]
    fn a_pod_is_named_under_each_unit() {
        let web = ep(
            4242,
            "shop",
            "web-7d4f-x2",
            &["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"],
        );
        let under: Vec<_> = Unit::ALL.iter().map(|u| key(*u, &web, &[])).collect();
        assert_eq!(under, ["shop/web", "shop/web-7d4f-x2", "shop/4242", "shop", "node-a"]);
    }

    #[test]
    fn workload_names_come_from_workloads_then_labels_then_the_pod() {
        let mut db = ep(
            30000,
            "",
            "db-0",
            &["k8s:io.kubernetes.pod.namespace=data", "k8s:app.kubernetes.io/name=pg"],
        );
        assert_eq!(key(Unit::Workload, &db, &[]), "data/pg");
        db.workloads = vec![Workload {
            name: "postgres".into(),
            kind: "StatefulSet".into(),
        }];
        assert_eq!(key(Unit::Workload, &db, &[]), "data/postgres");
        assert_eq!(key(Unit::Workload, &ep(30001, "data", "db-1", &[]), &[]), "data/db-1");
        // Identity but no name: the identity; nothing at all: the IP.
        assert_eq!(key(Unit::Workload, &ep(30002, "", "", &[]), &[]), "30002");
        assert_eq!(key(Unit::Pod, &ep(0, "", "", &[]), &[]), "10.0.0.7");
    }

    #[test]
    fn reserved_identities_are_their_own_nodes_and_the_world_is_split_by_name() {
        let host = ep(1, "", "", &["reserved:host"]);
        let world = ep(2, "", "", &["reserved:world"]);
        let cidr = ep(16_777_300, "", "", &["cidr:198.51.100.0/24", "reserved:world"]);
        let names = ["api.example.com".to_string()];
        for unit in Unit::ALL {
            assert_eq!(key(unit, &host, &[]), "reserved:host");
            assert_eq!(key(unit, &ep(7, "", "", &[]), &[]), "reserved:kube-apiserver");
            assert_eq!(key(unit, &world, &names), "api.example.com (reserved:world)");
            assert_eq!(key(unit, &world, &[]), "10.0.0.7 (reserved:world)");
            assert_eq!(key(unit, &cidr, &[]), "10.0.0.7 (reserved:world)");
        }
    }
}

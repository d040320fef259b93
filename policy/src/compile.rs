//! Policies resolved against the node's identities and compiled into the
//! entries of one endpoint's policy map.
//!
//! The numbers here (directions, actions, flags) are the datapath's
//! (`probes-ebpf/include/lumen.h`); the observer checks that they agree.
//!
//! Over 600 lines with its tests; the compiler is one pass whose rules
//! (deny wins, default deny, named ports, CIDR identities) interlock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::identity::{fnv1a, reserved, Labels, MAX_CIDR_IDENTITY, MIN_CIDR_IDENTITY};
use crate::model::{self, Entity, Peer, PeerRule, Policy, Port, Protocol, Rule};

pub const DIR_INGRESS: u8 = 1;
pub const DIR_EGRESS: u8 = 2;

pub const ACTION_ALLOW: u8 = 1;
pub const ACTION_DENY: u8 = 2;
/// A deny of a policy in audit mode: forwarded, reported AUDIT.
pub const ACTION_AUDIT: u8 = 3;

pub const ENFORCE_INGRESS: u32 = 1 << 0;
pub const ENFORCE_EGRESS: u32 = 1 << 1;
/// Drops in this direction are reported AUDIT and forwarded.
pub const AUDIT_INGRESS: u32 = 1 << 2;
pub const AUDIT_EGRESS: u32 = 1 << 3;

/// Cilium's policy enforcement modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// An endpoint is default-deny in a direction once a rule selects it there.
    #[default]
    Default,
    /// Every endpoint is default-deny in both directions.
    Always,
    /// Nothing is enforced.
    Never,
}

impl std::str::FromStr for Enforcement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Enforcement::Default),
            "always" => Ok(Enforcement::Always),
            "never" => Ok(Enforcement::Never),
            other => Err(format!("unknown enforcement mode {other:?} (default, always, never)")),
        }
    }
}

/// Node-wide policy settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub enforcement: Enforcement,
    /// Global audit mode: nothing is dropped by policy, drops become AUDIT.
    pub audit: bool,
}

/// A port an endpoint declares by name (a container port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    /// 6, 17 or 132.
    pub proto: u8,
}

/// What an identity stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    Reserved,
    Workload(Labels),
    Cidr(IpNet),
}

/// Every identity the node knows, and the named ports of the endpoints that
/// carry each workload identity.
#[derive(Clone, Debug, Default)]
pub struct Universe {
    identities: BTreeMap<u32, IdentityKind>,
    named_ports: HashMap<u32, BTreeSet<NamedPort>>,
}

impl Universe {
    /// The reserved identities only.
    pub fn new() -> Universe {
        let mut u = Universe::default();
        for (id, _) in crate::identity::RESERVED {
            u.identities.insert(*id, IdentityKind::Reserved);
        }
        u
    }

    pub fn add_workload(&mut self, id: u32, labels: Labels, named_ports: &[NamedPort]) {
        self.identities.insert(id, IdentityKind::Workload(labels));
        self.named_ports
            .entry(id)
            .or_default()
            .extend(named_ports.iter().cloned());
    }

    pub fn add_cidr(&mut self, id: u32, net: IpNet) {
        self.identities.insert(id, IdentityKind::Cidr(net));
    }

    pub fn get(&self, id: u32) -> Option<&IdentityKind> {
        self.identities.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &IdentityKind)> {
        self.identities.iter().map(|(id, k)| (*id, k))
    }

    /// The identities a peer stands for; 0 is "any identity".
    fn expand(&self, peer: &Peer) -> Vec<u32> {
        match peer {
            Peer::Any => vec![0],
            Peer::Endpoints(sel) => self
                .iter()
                .filter(|(id, kind)| match kind {
                    IdentityKind::Workload(l) => sel.matches(l.as_map()),
                    // Only a selector that names a reserved label selects one.
                    IdentityKind::Reserved => reserved_labels(*id).is_some_and(|l| {
                        sel.match_labels.keys().any(|k| k.starts_with("reserved:")) && sel.matches(&l)
                    }),
                    IdentityKind::Cidr(_) => false,
                })
                .map(|(id, _)| id)
                .collect(),
            Peer::Entity(e) => self
                .iter()
                .filter(|(id, kind)| entity_has(*e, *id, kind))
                .map(|(id, _)| id)
                .collect(),
            Peer::Cidr { cidr, except } => {
                let world: &[u32] = match (cidr.prefix_len(), cidr) {
                    (0, IpNet::V4(_)) => &[reserved::WORLD, reserved::WORLD_IPV4],
                    (0, IpNet::V6(_)) => &[reserved::WORLD, reserved::WORLD_IPV6],
                    _ => &[],
                };
                self.iter()
                    .filter(|(_, kind)| match kind {
                        IdentityKind::Cidr(p) => cidr.contains(p) && !except.iter().any(|e| e.contains(p)),
                        _ => false,
                    })
                    .map(|(id, _)| id)
                    .chain(world.iter().copied())
                    .collect()
            }
        }
    }

    fn named_ports(&self, id: u32) -> impl Iterator<Item = &NamedPort> {
        self.named_ports.get(&id).into_iter().flatten()
    }
}

/// The labels a selector sees on a reserved identity (`reserved:host`).
fn reserved_labels(id: u32) -> Option<BTreeMap<String, String>> {
    let name = reserved::label(id)?;
    Some(BTreeMap::from([(name.to_string(), String::new())]))
}

/// Whether identity `id` belongs to an entity.
pub fn entity_has(entity: Entity, id: u32, kind: &IdentityKind) -> bool {
    match entity {
        Entity::World => {
            matches!(id, reserved::WORLD | reserved::WORLD_IPV4 | reserved::WORLD_IPV6)
                || matches!(kind, IdentityKind::Cidr(_))
        }
        Entity::Host => id == reserved::HOST,
        Entity::RemoteNode => id == reserved::REMOTE_NODE,
        Entity::KubeApiserver => id == reserved::KUBE_APISERVER,
        Entity::Ingress => id == reserved::INGRESS,
        Entity::Health => id == reserved::HEALTH,
        Entity::Init => id == reserved::INIT,
        Entity::Unmanaged => id == reserved::UNMANAGED,
        Entity::Cluster => match kind {
            IdentityKind::Workload(_) => true,
            IdentityKind::Reserved => !matches!(id, reserved::WORLD | reserved::WORLD_IPV4 | reserved::WORLD_IPV6),
            IdentityKind::Cidr(_) => false,
        },
    }
}

/// The CIDR identity of a prefix: a hash, so every node agrees; `taken`
/// resolves the rare collision.
pub fn cidr_identity(net: &IpNet, taken: impl Fn(u32) -> bool) -> u32 {
    let span = u64::from(MAX_CIDR_IDENTITY - MIN_CIDR_IDENTITY + 1);
    (0u32..)
        .map(|salt| {
            let key = format!("cidr:{net}#{salt}");
            MIN_CIDR_IDENTITY + (fnv1a(key.as_bytes()) % span) as u32
        })
        .find(|id| !taken(*id))
        .expect("the CIDR identity space has room")
}

/// Cilium's PolicyMatchType of a rule: what it matched on.
pub fn match_type(rule: &PeerRule) -> u32 {
    let any_peer = rule.peers.contains(&Peer::Any);
    match (!any_peer, rule.ports.is_empty()) {
        (true, true) => 1,
        (true, false) => 2,
        (false, false) => 3,
        (false, true) => 4,
    }
}

/// A policy as flows name it (Hubble's `flow.Policy`) and how it matched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RuleMeta {
    pub name: String,
    pub namespace: String,
    pub kind: String,
    /// Cilium's PolicyMatchType: 1 L3 only, 2 L3 and L4, 3 L4 only, 4 all.
    pub match_type: u32,
}

impl RuleMeta {
    pub fn of(policy: &Policy, match_type: u32) -> RuleMeta {
        RuleMeta {
            name: policy.name.clone(),
            namespace: policy.namespace.clone().unwrap_or_default(),
            kind: policy.kind.to_string(),
            match_type,
        }
    }
}

/// What the datapath holds for one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    pub flags: u32,
    pub entries: Vec<PolicyEntry>,
}

/// One policy map entry, before it is keyed to an endpoint's policy id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyEntry {
    pub direction: u8,
    /// 0 = any identity.
    pub identity: u32,
    /// 0 = any protocol (and then any port).
    pub proto: u8,
    pub port: u16,
    /// Significant leading bits of `port`; 0 = any port.
    pub port_bits: u8,
    pub action: u8,
    pub rule_id: u32,
}

impl PolicyEntry {
    /// True when every packet `other` matches is also matched by `self`.
    fn covers(&self, other: &PolicyEntry) -> bool {
        if self.direction != other.direction || self.identity != other.identity {
            return false;
        }
        if self.proto == 0 {
            return true;
        }
        if self.proto != other.proto || self.port_bits > other.port_bits {
            return false;
        }
        let mask = if self.port_bits == 0 {
            0
        } else {
            u16::MAX << (16 - self.port_bits)
        };
        self.port & mask == other.port & mask
    }

    /// Whether a packet with this peer identity, protocol and port matches.
    pub fn matches(&self, identity: u32, proto: u8, port: u16) -> bool {
        let probe = PolicyEntry {
            identity: self.identity,
            proto,
            port,
            port_bits: 16,
            ..*self
        };
        (self.identity == 0 || self.identity == identity) && self.covers(&probe)
    }
}

/// Splits an inclusive port range into aligned power-of-two blocks (LPM
/// prefixes): `(first port, significant bits)`.
pub fn port_prefixes(first: u16, last: u16) -> Vec<(u16, u8)> {
    if first == 0 && last == u16::MAX {
        return vec![(0, 0)];
    }
    let mut out = Vec::new();
    let mut start = u32::from(first);
    let end = u32::from(last);
    while start <= end {
        let mut size = if start == 0 {
            1 << 16
        } else {
            1 << start.trailing_zeros().min(16)
        };
        while start + size - 1 > end {
            size >>= 1;
        }
        out.push((start as u16, 16 - size.trailing_zeros() as u8));
        start += size;
    }
    out
}

fn rank(action: u8) -> u8 {
    match action {
        ACTION_DENY => 3,
        ACTION_AUDIT => 2,
        _ => 1,
    }
}

/// Makes longest-prefix lookups honour "deny wins": an entry covered by a
/// broader entry of higher rank (deny > audit > allow) takes that entry's
/// action and rule. Duplicate keys keep the highest rank.
fn resolve(mut entries: Vec<PolicyEntry>) -> Vec<PolicyEntry> {
    entries.sort();
    entries.dedup();
    let snapshot = entries.clone();
    for e in entries.iter_mut() {
        for other in &snapshot {
            if rank(other.action) > rank(e.action) && other.covers(e) {
                e.action = other.action;
                e.rule_id = other.rule_id;
            }
        }
    }
    let key = |e: &PolicyEntry| (e.direction, e.identity, e.proto, e.port, e.port_bits);
    entries.sort_by_key(|e| (key(e), std::cmp::Reverse(rank(e.action)), e.rule_id));
    entries.dedup_by_key(|e| key(e));
    entries
}

/// The rule id of a policy (by key) and match type: a hash, so it is the
/// same on every node and across restarts; `salt` > 0 only after a collision.
pub fn rule_id_candidate(policy_key: &str, match_type: u32, salt: u32) -> u32 {
    (fnv1a(format!("{policy_key}#{match_type}#{salt}").as_bytes()) as u32).max(1)
}

/// A validated set of policies with the ids their rules are reported by.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    /// (policy key, match type) → rule id.
    ids: HashMap<(String, u32), u32>,
    metas: BTreeMap<u32, RuleMeta>,
}

/// A policy and one of its rules, as resolution walks them.
type Selected<'a> = (&'a Policy, &'a model::Direction);

impl PolicySet {
    /// Takes policies whose keys are unique (the parser checks that).
    pub fn new(mut policies: Vec<Policy>) -> PolicySet {
        policies.sort_by_key(Policy::key);
        let mut ids = HashMap::new();
        let mut metas = BTreeMap::new();
        for p in &policies {
            for mt in 1..=4 {
                let id = (0u32..)
                    .map(|salt| rule_id_candidate(&p.key(), mt, salt))
                    .find(|id| !metas.contains_key(id))
                    .expect("rule id space has room");
                ids.insert((p.key(), mt), id);
                metas.insert(id, RuleMeta::of(p, mt));
            }
        }
        PolicySet { policies, ids, metas }
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Every rule id with the policy it names.
    pub fn rule_metas(&self) -> impl Iterator<Item = (u32, &RuleMeta)> {
        self.metas.iter().map(|(id, m)| (*id, m))
    }

    pub fn rule_id(&self, policy: &Policy, rule: &PeerRule) -> u32 {
        self.ids.get(&(policy.key(), match_type(rule))).copied().unwrap_or(0)
    }

    /// Every prefix the policies name (CIDRs and their exceptions), but the
    /// whole address space, which is the world identity.
    pub fn cidrs(&self) -> BTreeSet<IpNet> {
        let mut out = BTreeSet::new();
        for rule in self.policies.iter().flat_map(|p| &p.rules) {
            for dir in [&rule.ingress, &rule.egress] {
                for peer in dir.allow.iter().chain(&dir.deny).flat_map(|r| &r.peers) {
                    if let Peer::Cidr { cidr, except } = peer {
                        out.extend(
                            std::iter::once(cidr)
                                .chain(except)
                                .filter(|n| n.prefix_len() > 0)
                                .map(IpNet::trunc),
                        );
                    }
                }
            }
        }
        out
    }

    /// The rules that select an endpoint with `labels` in direction `dir`.
    pub fn selecting<'a>(&'a self, labels: &Labels, dir: u8) -> Vec<Selected<'a>> {
        self.policies
            .iter()
            .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
            .filter(|(_, r)| r.subject.matches(labels.as_map()))
            .map(|(p, r): (&Policy, &Rule)| (p, if dir == DIR_INGRESS { &r.ingress } else { &r.egress }))
            .filter(|(_, d)| d.selects)
            .collect()
    }

    /// The datapath view of the policies for one endpoint.
    pub fn compile(&self, labels: &Labels, named_ports: &[NamedPort], u: &Universe, opts: &Options) -> EndpointPolicy {
        let mut out = EndpointPolicy::default();
        for (dir, enforce, audit) in [
            (DIR_INGRESS, ENFORCE_INGRESS, AUDIT_INGRESS),
            (DIR_EGRESS, ENFORCE_EGRESS, AUDIT_EGRESS),
        ] {
            let selecting = self.selecting(labels, dir);
            let Some(mode) = direction_mode(&selecting, opts) else {
                continue;
            };
            out.flags |= enforce;
            if mode.audit {
                out.flags |= audit;
            }
            if !mode.default_deny {
                out.entries.push(PolicyEntry {
                    direction: dir,
                    identity: 0,
                    proto: 0,
                    port: 0,
                    port_bits: 0,
                    action: ACTION_ALLOW,
                    rule_id: 0,
                });
            }
            for (policy, d) in &selecting {
                let deny = if policy.audit { ACTION_AUDIT } else { ACTION_DENY };
                for (rules, action) in [(&d.allow, ACTION_ALLOW), (&d.deny, deny)] {
                    for rule in rules {
                        let rule_id = self.rule_id(policy, rule);
                        self.entries(&mut out.entries, dir, rule, action, rule_id, named_ports, u);
                    }
                }
            }
        }
        out.entries = resolve(out.entries);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn entries(
        &self,
        out: &mut Vec<PolicyEntry>,
        direction: u8,
        rule: &PeerRule,
        action: u8,
        rule_id: u32,
        own_ports: &[NamedPort],
        u: &Universe,
    ) {
        let identities: BTreeSet<u32> = rule.peers.iter().flat_map(|p| u.expand(p)).collect();
        for identity in identities {
            // A named port is the receiver's: the endpoint's own on ingress,
            // the peer's on egress.
            // For any peer (identity 0), any endpoint's declaration counts.
            let declared: Vec<&NamedPort> = if direction == DIR_INGRESS {
                own_ports.iter().collect()
            } else if identity == 0 {
                u.named_ports.values().flatten().collect()
            } else {
                u.named_ports(identity).collect()
            };
            for (proto, first, last) in port_ranges(&rule.ports, &declared) {
                for (port, port_bits) in if proto == 0 {
                    vec![(0, 0)]
                } else {
                    port_prefixes(first, last)
                } {
                    out.push(PolicyEntry {
                        direction,
                        identity,
                        proto,
                        port,
                        port_bits,
                        action,
                        rule_id,
                    });
                }
            }
        }
    }
}

/// How one direction of an endpoint is enforced, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectionMode {
    pub default_deny: bool,
    /// Drops are reported AUDIT instead.
    pub audit: bool,
}

/// Cilium's rules: selected in a direction means default-deny there, unless
/// every selecting rule opts out with `enableDefaultDeny: false`; a
/// default-deny that only audit-mode policies ask for only audits.
pub fn direction_mode(selecting: &[Selected<'_>], opts: &Options) -> Option<DirectionMode> {
    let wanting: Vec<_> = selecting
        .iter()
        .filter(|(_, d)| d.default_deny != Some(false))
        .collect();
    match opts.enforcement {
        Enforcement::Never => None,
        Enforcement::Default if selecting.is_empty() => None,
        // The mode itself asks for default-deny: only global audit softens it.
        Enforcement::Always => Some(DirectionMode {
            default_deny: true,
            audit: opts.audit,
        }),
        Enforcement::Default => Some(DirectionMode {
            default_deny: !wanting.is_empty(),
            audit: opts.audit || (!wanting.is_empty() && wanting.iter().all(|(p, _)| p.audit)),
        }),
    }
}

/// `(protocol, first, last)` ranges of a rule's ports; protocol 0 = all
/// traffic. Named ports resolve through `declared`; one that is not
/// declared matches nothing.
pub fn port_ranges(ports: &[model::PortRule], declared: &[&NamedPort]) -> Vec<(u8, u16, u16)> {
    if ports.is_empty() {
        return vec![(0, 0, u16::MAX)];
    }
    let mut out = Vec::new();
    for p in ports {
        match &p.port {
            Port::All => out.extend(p.protocol.numbers().iter().map(|proto| (*proto, 0, u16::MAX))),
            Port::Range { port, end } => out.extend(p.protocol.numbers().iter().map(|proto| (*proto, *port, *end))),
            Port::Named(name) => out.extend(
                declared
                    .iter()
                    .filter(|n| {
                        n.name == *name && (p.protocol == Protocol::Any || p.protocol.numbers().contains(&n.proto))
                    })
                    .map(|n| (n.proto, n.port, n.port)),
            ),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Where an address lands among a set of CIDR prefixes: the longest one
/// that holds it, as the ipcache resolves it.
pub fn longest_prefix<'a>(ip: IpAddr, prefixes: impl IntoIterator<Item = &'a IpNet>) -> Option<&'a IpNet> {
    prefixes
        .into_iter()
        .filter(|n| n.contains(&ip))
        .max_by_key(|n| n.prefix_len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(yaml: &str) -> PolicySet {
        PolicySet::new(crate::parse_str(yaml, Path::new("t.yaml")).unwrap())
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::for_endpoint(
            &pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            "default",
        )
    }

    fn cnp(spec: &str) -> String {
        format!("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: p}}\nspec:\n{spec}")
    }

    const KEY: &str = "CiliumNetworkPolicy/default/p";

    fn universe() -> Universe {
        let mut u = Universe::new();
        u.add_workload(300, labels(&[("app", "frontend")]), &[]);
        u.add_workload(
            400,
            labels(&[("app", "backend")]),
            &[NamedPort {
                name: "http".into(),
                port: 8080,
                proto: 6,
            }],
        );
        u
    }

    fn entry(
        direction: u8,
        identity: u32,
        proto: u8,
        port: u16,
        port_bits: u8,
        action: u8,
        rule_id: u32,
    ) -> PolicyEntry {
        PolicyEntry {
            direction,
            identity,
            proto,
            port,
            port_bits,
            action,
            rule_id,
        }
    }

    #[test]
    fn an_l3_l4_allow_becomes_one_exact_entry() {
        let s = set(&cnp("  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"));
        let p = s.compile(&labels(&[("app", "backend")]), &[], &universe(), &Options::default());
        assert_eq!(p.flags, ENFORCE_INGRESS);
        assert_eq!(
            p.entries,
            vec![entry(
                DIR_INGRESS,
                300,
                6,
                80,
                16,
                ACTION_ALLOW,
                rule_id_candidate(KEY, 2, 0)
            )]
        );
        assert_eq!(
            s.rule_metas().find(|(id, _)| *id == p.entries[0].rule_id).unwrap().1,
            &RuleMeta {
                name: "p".into(),
                namespace: "default".into(),
                kind: "CiliumNetworkPolicy".into(),
                match_type: 2,
            }
        );
        // The frontend is not selected: nothing enforced.
        let fe = s.compile(&labels(&[("app", "frontend")]), &[], &universe(), &Options::default());
        assert_eq!(fe, EndpointPolicy::default());
        // Enforcement modes.
        let always = Options {
            enforcement: Enforcement::Always,
            audit: false,
        };
        assert_eq!(
            s.compile(&labels(&[("app", "frontend")]), &[], &universe(), &always)
                .flags,
            ENFORCE_INGRESS | ENFORCE_EGRESS
        );
        let never = Options {
            enforcement: Enforcement::Never,
            audit: false,
        };
        assert_eq!(
            s.compile(&labels(&[("app", "backend")]), &[], &universe(), &never),
            EndpointPolicy::default()
        );
    }

    #[test]
    fn a_broader_deny_overrides_a_narrower_allow() {
        let s = set(&cnp("  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n  ingressDeny:\n    - fromEntities: [all]\n      toPorts: [{ports: [{port: \"0\", protocol: TCP}]}]\n"));
        let p = s.compile(&labels(&[("app", "backend")]), &[], &universe(), &Options::default());
        let deny = rule_id_candidate(KEY, 3, 0);
        assert_eq!(
            p.entries,
            vec![
                entry(DIR_INGRESS, 0, 6, 0, 0, ACTION_DENY, deny),
                entry(DIR_INGRESS, 0, 6, 80, 16, ACTION_DENY, deny)
            ]
        );
    }

    #[test]
    fn cidr_rules_select_prefix_identities_and_world() {
        let s = set(&cnp("  endpointSelector: {}\n  egress:\n    - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]\n    - toCIDR: [0.0.0.0/0]\n      toPorts: [{ports: [{port: \"53\", protocol: UDP}]}]\n"));
        assert_eq!(
            s.cidrs().into_iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["10.0.0.0/8", "10.1.0.0/16"]
        );
        let mut u = universe();
        u.add_cidr(MIN_CIDR_IDENTITY + 1, "10.0.0.0/8".parse().unwrap());
        u.add_cidr(MIN_CIDR_IDENTITY + 2, "10.1.0.0/16".parse().unwrap());
        let p = s.compile(&labels(&[("app", "x")]), &[], &u, &Options::default());
        let ids = |proto: u8| {
            p.entries
                .iter()
                .filter(|e| e.proto == proto)
                .map(|e| e.identity)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(0), [MIN_CIDR_IDENTITY + 1], "the except prefix is not selected");
        assert_eq!(
            ids(17),
            [
                reserved::WORLD,
                reserved::WORLD_IPV4,
                MIN_CIDR_IDENTITY + 1,
                MIN_CIDR_IDENTITY + 2
            ],
            "0.0.0.0/0 is the world and every IPv4 prefix"
        );
    }

    #[test]
    fn named_ports_are_the_receivers() {
        let s = set(&cnp("  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: http}]}]\n  egress:\n    - toPorts: [{ports: [{port: http, protocol: TCP}]}]\n"));
        let own = [NamedPort {
            name: "http".into(),
            port: 9000,
            proto: 6,
        }];
        let p = s.compile(&labels(&[("app", "frontend")]), &own, &universe(), &Options::default());
        let l4 = rule_id_candidate(KEY, 3, 0);
        // Ingress: our own port 9000; egress to any peer: port 8080, what the
        // only endpoint declaring `http` (the backend) says.
        assert_eq!(
            p.entries,
            vec![
                entry(DIR_INGRESS, 0, 6, 9000, 16, ACTION_ALLOW, l4),
                entry(DIR_EGRESS, 0, 6, 8080, 16, ACTION_ALLOW, l4)
            ]
        );
        assert_eq!(p.flags, ENFORCE_INGRESS | ENFORCE_EGRESS);
        let s = set(&cnp("  endpointSelector: {}\n  egress:\n    - toEndpoints: [{matchLabels: {app: backend}}]\n      toPorts: [{ports: [{port: http}]}]\n"));
        let p = s.compile(&labels(&[("app", "frontend")]), &[], &universe(), &Options::default());
        assert_eq!(
            p.entries,
            vec![entry(
                DIR_EGRESS,
                400,
                6,
                8080,
                16,
                ACTION_ALLOW,
                rule_id_candidate(KEY, 2, 0)
            )]
        );
    }

    #[test]
    fn default_deny_off_allows_the_rest_and_audit_policies_only_report() {
        let s = set(&cnp("  endpointSelector: {}\n  enableDefaultDeny: {ingress: false}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n"));
        let p = s.compile(&labels(&[("app", "backend")]), &[], &universe(), &Options::default());
        assert_eq!(p.flags, ENFORCE_INGRESS);
        assert_eq!(
            p.entries,
            vec![
                entry(DIR_INGRESS, 0, 0, 0, 0, ACTION_ALLOW, 0),
                entry(DIR_INGRESS, 300, 0, 0, 0, ACTION_DENY, rule_id_candidate(KEY, 1, 0))
            ]
        );
        let audited =
            cnp("  endpointSelector: {}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n")
                .replace(
                    "metadata: {name: p}",
                    "metadata: {name: p, annotations: {policy.lumen.io/audit-mode: \"true\"}}",
                );
        let p = set(&audited).compile(&labels(&[("app", "backend")]), &[], &universe(), &Options::default());
        assert_eq!(p.flags, ENFORCE_INGRESS | AUDIT_INGRESS);
        assert_eq!(
            p.entries,
            vec![entry(
                DIR_INGRESS,
                300,
                0,
                0,
                0,
                ACTION_AUDIT,
                rule_id_candidate(KEY, 1, 0)
            )]
        );
        let global = Options {
            enforcement: Enforcement::Default,
            audit: true,
        };
        let p = set(&cnp("  endpointSelector: {}\n  ingress: [{}]\n")).compile(&labels(&[]), &[], &universe(), &global);
        assert_eq!((p.flags, p.entries.len()), (ENFORCE_INGRESS | AUDIT_INGRESS, 0));
    }

    #[test]
    fn port_ranges_become_prefixes() {
        assert_eq!(port_prefixes(80, 80), vec![(80, 16)]);
        assert_eq!(port_prefixes(8000, 8003), vec![(8000, 14)]);
        assert_eq!(port_prefixes(8000, 8004), vec![(8000, 14), (8004, 16)]);
        assert_eq!(port_prefixes(1, 65535).len(), 16);
        assert_eq!(port_prefixes(0, 65535), vec![(0, 0)]);
        let covered: u32 = port_prefixes(1000, 2000).iter().map(|(_, b)| 1u32 << (16 - b)).sum();
        assert_eq!(covered, 1001);
    }
}

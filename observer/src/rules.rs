//! The minimal policy input of the foundation: a small YAML rule file
//! (allow / deny / audit by labels, port and protocol), compiled into
//! per-endpoint policy map entries. The CiliumNetworkPolicy engine will
//! replace the file format; the compiled form stays.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use lumen_probes::abi;
use serde::Deserialize;

use crate::identity::{self, Labels};
use crate::source::{self, FileError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn abi(self) -> u8 {
        match self {
            Direction::Ingress => abi::DIR_INGRESS,
            Direction::Egress => abi::DIR_EGRESS,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    /// A deny that only reports: traffic passes with verdict AUDIT.
    Audit,
}

impl Action {
    fn abi(self) -> u8 {
        match self {
            Action::Allow => abi::ACTION_ALLOW,
            Action::Deny => abi::ACTION_DENY,
            Action::Audit => abi::ACTION_AUDIT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// Labels of the endpoints this rule applies to.
    pub endpoints: BTreeMap<String, String>,
    pub direction: Direction,
    pub action: Action,
    /// Labels of the peers it matches; absent means any peer at all.
    #[serde(default)]
    pub peers: Option<BTreeMap<String, String>>,
    /// `PORT[-END][/PROTO]` or `PROTO`; absent means every port and protocol.
    #[serde(default)]
    pub ports: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

/// A port selector: protocol (0 = any) and an inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMatch {
    pub proto: u8,
    pub first: u16,
    pub last: u16,
}

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// Parses `80`, `80/tcp`, `8000-8080/udp`, `tcp`, `icmp`. A port without a
/// protocol means TCP, UDP and SCTP, as in Cilium.
pub fn parse_port(spec: &str) -> Result<Vec<PortMatch>, String> {
    let proto_of = |p: &str| -> Result<Option<u8>, String> {
        Ok(match p.to_ascii_lowercase().as_str() {
            "tcp" => Some(PROTO_TCP),
            "udp" => Some(PROTO_UDP),
            "sctp" => Some(PROTO_SCTP),
            "icmp" => Some(PROTO_ICMP),
            "icmpv6" => Some(PROTO_ICMPV6),
            "any" => None,
            other => {
                return Err(format!(
                    "unknown protocol {other:?} in port {spec:?} (tcp, udp, sctp, icmp, icmpv6, any)"
                ))
            }
        })
    };
    let (range, proto) = match spec.split_once('/') {
        Some((r, p)) => (r, proto_of(p)?),
        None if spec.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => ("", proto_of(spec)?),
        None => (spec, None),
    };
    let all = PortMatch {
        proto: 0,
        first: 0,
        last: u16::MAX,
    };
    if range.is_empty() {
        return Ok(vec![PortMatch {
            proto: proto.unwrap_or(0),
            ..all
        }]);
    }
    let port = |s: &str| -> Result<u16, String> {
        match s.trim().parse::<u32>() {
            Ok(p) if (1..=65_535).contains(&p) => Ok(p as u16),
            _ => Err(format!("port {s:?} in {spec:?} is not a number from 1 to 65535")),
        }
    };
    let (first, last) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(range)?, port(range)?),
    };
    if first > last {
        return Err(format!("port range {spec:?} ends before it starts"));
    }
    if matches!(proto, Some(PROTO_ICMP | PROTO_ICMPV6)) {
        return Err(format!("{spec:?}: ICMP has no ports"));
    }
    let protos = match proto {
        Some(p) => vec![p],
        None => vec![PROTO_TCP, PROTO_UDP, PROTO_SCTP],
    };
    Ok(protos
        .into_iter()
        .map(|proto| PortMatch { proto, first, last })
        .collect())
}

/// A validated rule set, ready to compile.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    spec: RuleSpec,
    id: u32,
    ports: Vec<PortMatch>,
}

/// Stable id of a rule, carried in datapath events.
pub fn rule_id(name: &str) -> u32 {
    (identity::fnv1a(name.as_bytes()) as u32).max(1)
}

impl RuleSet {
    pub fn load_file(path: &Path) -> Result<RuleSet, FileError> {
        let doc = source::read::<RuleFile>(path, "rules")?;
        Self::build(doc.value.rules.clone()).map_err(|(i, reason)| doc.invalid(i, reason))
    }

    pub fn parse(text: &str, name: &Path) -> Result<RuleSet, FileError> {
        let doc = source::parse::<RuleFile>(text, name, "rules")?;
        Self::build(doc.value.rules.clone()).map_err(|(i, reason)| doc.invalid(i, reason))
    }

    /// Validates every rule; on error returns the index of the bad one.
    pub fn build(specs: Vec<RuleSpec>) -> Result<RuleSet, (usize, String)> {
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        let mut rules = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            if spec.name.is_empty() {
                return Err((i, "rule has an empty name".into()));
            }
            if !names.insert(spec.name.clone()) {
                return Err((i, format!("rule {:?} is declared twice", spec.name)));
            }
            let id = rule_id(&spec.name);
            if !ids.insert(id) {
                return Err((
                    i,
                    format!("rule name {:?} collides with another rule's id; rename it", spec.name),
                ));
            }
            let mut ports = Vec::new();
            for p in &spec.ports {
                ports.extend(parse_port(p).map_err(|r| (i, format!("rule {:?}: {r}", spec.name)))?);
            }
            if spec.ports.is_empty() {
                ports.push(PortMatch {
                    proto: 0,
                    first: 0,
                    last: u16::MAX,
                });
            }
            rules.push(Rule { spec, id, ports });
        }
        Ok(RuleSet { rules })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule names by id, to name the deciding rule of an event.
    pub fn names(&self) -> impl Iterator<Item = (u32, &str)> {
        self.rules.iter().map(|r| (r.id, r.spec.name.as_str()))
    }

    /// Rules by id as Hubble flows name them.
    pub fn metas(&self) -> impl Iterator<Item = (u32, crate::parser::RuleMeta)> + '_ {
        self.rules.iter().map(|r| {
            // Cilium's PolicyMatchType: 1 L3 only, 2 L3 and L4, 3 L4 only, 4 all.
            let match_type = match (r.spec.peers.is_some(), r.spec.ports.is_empty()) {
                (true, true) => 1,
                (true, false) => 2,
                (false, false) => 3,
                (false, true) => 4,
            };
            let meta = crate::parser::RuleMeta {
                name: r.spec.name.clone(),
                namespace: String::new(),
                kind: "LumenRule".to_string(),
                match_type,
            };
            (r.id, meta)
        })
    }

    /// The datapath view of the rules for one endpoint: its enforcement
    /// flags and its policy entries. `identities` are all identities known
    /// to the node; a peer selector expands to the ones it matches.
    pub fn compile<'a>(
        &self,
        endpoint: &Labels,
        identities: impl Iterator<Item = (u32, &'a Labels)> + Clone,
    ) -> EndpointPolicy {
        let mut flags = 0;
        let mut entries = Vec::new();
        for rule in self.rules.iter().filter(|r| endpoint.matches(&r.spec.endpoints)) {
            flags |= match rule.spec.direction {
                Direction::Ingress => abi::EP_ENFORCE_INGRESS,
                Direction::Egress => abi::EP_ENFORCE_EGRESS,
            };
            let peers: Vec<u32> = match &rule.spec.peers {
                None => vec![0],
                Some(sel) => identities
                    .clone()
                    .filter(|(_, l)| l.matches(sel))
                    .map(|(id, _)| id)
                    .collect(),
            };
            for identity in peers {
                for port in &rule.ports {
                    for (first, bits) in port_prefixes(port) {
                        entries.push(PolicyEntry {
                            direction: rule.spec.direction.abi(),
                            identity,
                            proto: port.proto,
                            port: first,
                            port_bits: bits,
                            action: rule.spec.action.abi(),
                            rule_id: rule.id,
                        });
                    }
                }
            }
        }
        EndpointPolicy {
            flags,
            entries: resolve(entries),
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
    pub fn key(&self, policy_id: u32) -> abi::PolicyKey {
        let prefixlen = match (self.proto, self.port_bits) {
            (0, _) => abi::POLICY_PREFIX_FIXED,
            (_, 0) => abi::POLICY_PREFIX_FIXED + 8,
            (_, bits) => abi::POLICY_PREFIX_FIXED + 16 + u32::from(bits),
        };
        abi::PolicyKey {
            prefixlen,
            policy_id_be: policy_id.to_be(),
            direction: self.direction,
            identity_be: self.identity.to_be(),
            proto: self.proto,
            dport_be: if self.proto == 0 { 0 } else { self.port.to_be() },
            ..Default::default()
        }
    }

    pub fn value(&self) -> abi::PolicyValue {
        abi::PolicyValue {
            action: self.action,
            rule_id: self.rule_id,
            ..Default::default()
        }
    }

    /// True when every packet this entry matches is also matched by `self`.
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
}

/// Splits a port range into aligned power-of-two blocks (LPM prefixes).
fn port_prefixes(p: &PortMatch) -> Vec<(u16, u8)> {
    if p.proto == 0 || (p.first == 0 && p.last == u16::MAX) {
        return vec![(0, 0)];
    }
    let mut out = Vec::new();
    let mut start = u32::from(p.first);
    let end = u32::from(p.last);
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
        abi::ACTION_DENY => 3,
        abi::ACTION_AUDIT => 2,
        _ => 1,
    }
}

/// Makes longest-prefix lookups honour "deny wins": an entry covered by a
/// broader entry of higher rank (deny > audit > allow) takes that entry's
/// action and rule. Duplicate keys keep the highest rank.
fn resolve(mut entries: Vec<PolicyEntry>) -> Vec<PolicyEntry> {
    let snapshot = entries.clone();
    for e in entries.iter_mut() {
        for other in &snapshot {
            if rank(other.action) > rank(e.action) && other.covers(e) {
                e.action = other.action;
                e.rule_id = other.rule_id;
            }
        }
    }
    entries.sort_by_key(|e| (e.key(0), std::cmp::Reverse(rank(e.action))));
    entries.dedup_by_key(|e| e.key(0));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn rules(text: &str) -> RuleSet {
        RuleSet::parse(text, Path::new("rules.yaml")).unwrap()
    }

    #[test]
    fn port_specs() {
        let tcp80 = PortMatch {
            proto: PROTO_TCP,
            first: 80,
            last: 80,
        };
        assert_eq!(parse_port("80/tcp").unwrap(), vec![tcp80]);
        assert_eq!(parse_port("80/TCP").unwrap(), vec![tcp80]);
        assert_eq!(parse_port("80").unwrap().len(), 3);
        assert_eq!(
            parse_port("icmp").unwrap(),
            vec![PortMatch {
                proto: PROTO_ICMP,
                first: 0,
                last: 65535
            }]
        );
        assert_eq!(
            parse_port("any").unwrap(),
            vec![PortMatch {
                proto: 0,
                first: 0,
                last: 65535
            }]
        );
        assert!(parse_port("0/tcp")
            .unwrap_err()
            .contains("not a number from 1 to 65535"));
        assert!(parse_port("70000")
            .unwrap_err()
            .contains("not a number from 1 to 65535"));
        assert!(parse_port("90-80/tcp").unwrap_err().contains("ends before it starts"));
        assert!(parse_port("80/gre").unwrap_err().contains("unknown protocol \"gre\""));
        assert!(parse_port("7/icmp").unwrap_err().contains("ICMP has no ports"));
    }

    #[test]
    fn port_ranges_become_prefixes() {
        let r = |first, last| {
            port_prefixes(&PortMatch {
                proto: PROTO_TCP,
                first,
                last,
            })
        };
        assert_eq!(r(80, 80), vec![(80, 16)]);
        assert_eq!(r(8000, 8003), vec![(8000, 14)]);
        assert_eq!(r(8000, 8004), vec![(8000, 14), (8004, 16)]);
        assert_eq!(r(1, 65535).len(), 16);
        let covered: u32 = r(1000, 2000).iter().map(|(_, b)| 1u32 << (16 - b)).sum();
        assert_eq!(covered, 1001);
    }

    #[test]
    fn compiles_allow_to_exact_entries() {
        let set = rules(
            "rules:\n  - name: http\n    endpoints: {app: backend}\n    direction: ingress\n    action: allow\n    peers: {app: frontend}\n    ports: [80/tcp]\n",
        );
        let fe = labels(&[("app", "frontend")]);
        let other = labels(&[("app", "other")]);
        let ids = [(300, &fe), (400, &other)];
        let p = set.compile(&labels(&[("app", "backend")]), ids.iter().copied());
        assert_eq!(p.flags, abi::EP_ENFORCE_INGRESS);
        assert_eq!(
            p.entries,
            vec![PolicyEntry {
                direction: abi::DIR_INGRESS,
                identity: 300,
                proto: PROTO_TCP,
                port: 80,
                port_bits: 16,
                action: abi::ACTION_ALLOW,
                rule_id: rule_id("http"),
            }]
        );
        let key = p.entries[0].key(7);
        assert_eq!(key.prefixlen, 128);
        assert_eq!(u32::from_be(key.policy_id_be), 7);
        assert_eq!(u16::from_be(key.dport_be), 80);
        // Not selected: nothing enforced.
        assert_eq!(set.compile(&fe, ids.iter().copied()), EndpointPolicy::default());
    }

    #[test]
    fn broader_deny_overrides_narrower_allow() {
        let set = rules(
            "rules:\n  - name: allow-http\n    endpoints: {app: b}\n    direction: ingress\n    action: allow\n    ports: [80/tcp]\n  - name: deny-all\n    endpoints: {app: b}\n    direction: ingress\n    action: deny\n",
        );
        let p = set.compile(&labels(&[("app", "b")]), std::iter::empty());
        assert_eq!(p.entries.len(), 2);
        assert!(p
            .entries
            .iter()
            .all(|e| e.action == abi::ACTION_DENY && e.rule_id == rule_id("deny-all")));
    }

    #[test]
    fn invalid_rules_name_the_line() {
        let cases = [
            ("rules:\n  - name: a\n    endpoints: {}\n    direction: sideways\n    action: allow\n", ":4:", "unknown variant `sideways`"),
            ("rules:\n  - name: a\n    endpoints: {}\n    direction: ingress\n    action: allow\n  - name: b\n    endpoints: {}\n    direction: ingress\n    action: allow\n    ports: [99999]\n", ":6:", "rule \"b\": port \"99999\""),
            ("rules:\n  - name: a\n    endpoints: {}\n    direction: ingress\n    action: allow\n  - name: a\n    endpoints: {}\n    direction: egress\n    action: deny\n", ":6:", "declared twice"),
            ("rules:\n  - name: a\n    direction: ingress\n    action: allow\n", ":2:", "missing field `endpoints`"),
        ];
        for (text, line, reason) in cases {
            let err = RuleSet::parse(text, Path::new("r.yaml")).unwrap_err().to_string();
            assert!(err.starts_with("r.yaml"), "{err}");
            assert!(err.contains(line) && err.contains(reason), "{text:?} -> {err}");
        }
    }
}

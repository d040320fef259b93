//! `policy trace`: the verdict policy gives a new connection, worked out
//! from the policies themselves (not from compiled map entries), so that
//! comparing it with the datapath tests the compiler too.

use std::net::IpAddr;

use lumen_proto::flow::DropReason;
use serde::{Deserialize, Serialize};

use crate::compile::{self, NamedPort, Options, PolicySet, RuleMeta, DIR_EGRESS, DIR_INGRESS};
use crate::identity::{reserved, Labels};
use crate::model::{Entity, Peer, PeerRule, Policy, Port, Protocol};

/// Hubble's drop reasons for policy.
pub const DROP_POLICY_DENIED: u32 = DropReason::PolicyDenied as u32;
pub const DROP_POLICY_DENY: u32 = DropReason::PolicyDeny as u32;

/// One end of a traced connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// An endpoint (pod) of the cluster; `local` ones have policy enforced
    /// on this node.
    Endpoint {
        labels: Labels,
        named_ports: Vec<NamedPort>,
        local: bool,
    },
    /// A reserved identity (host, remote-node, …).
    Reserved(u32),
    /// An address outside the cluster.
    World(IpAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Forwarded,
    Dropped,
    Audit,
}

/// The decision of one side (egress of the sender, ingress of the receiver).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// 133 (no policy allowed it) or 181 (a deny rule); 0 when not dropped.
    pub drop_reason: u32,
    /// The policy whose rule decided; none under default deny or when
    /// nothing is enforced.
    pub by: Option<RuleMeta>,
    /// Policies that select the endpoint in this direction (why it is
    /// default-deny).
    pub selected_by: Vec<RuleMeta>,
    /// Whether policy is enforced in this direction at all.
    pub enforced: bool,
}

/// Both sides and the outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub egress: Option<Decision>,
    pub ingress: Option<Decision>,
    /// Dropped if either side drops; otherwise Audit if either audits.
    pub verdict: Verdict,
}

impl Trace {
    pub fn allowed(&self) -> bool {
        self.verdict != Verdict::Dropped
    }
}

/// Traces a new connection from `from` to `to` with protocol `proto`
/// (IP protocol number) and destination port `port`.
pub fn trace(set: &PolicySet, opts: &Options, from: &End, to: &End, proto: u8, port: u16) -> Trace {
    let side = |subject: &End, dir: u8, peer: &End| match subject {
        End::Endpoint {
            labels,
            named_ports,
            local: true,
        } => {
            let receiver_ports = if dir == DIR_INGRESS {
                named_ports.as_slice()
            } else {
                match peer {
                    End::Endpoint { named_ports, .. } => named_ports.as_slice(),
                    _ => &[],
                }
            };
            Some(decide(set, opts, labels, dir, peer, receiver_ports, proto, port))
        }
        _ => None,
    };
    let egress = side(from, DIR_EGRESS, to);
    let ingress = side(to, DIR_INGRESS, from);
    let verdicts = || egress.iter().chain(&ingress).map(|d| d.verdict);
    let verdict = if verdicts().any(|v| v == Verdict::Dropped) {
        Verdict::Dropped
    } else if verdicts().any(|v| v == Verdict::Audit) {
        Verdict::Audit
    } else {
        Verdict::Forwarded
    };
    Trace {
        egress,
        ingress,
        verdict,
    }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    set: &PolicySet,
    opts: &Options,
    labels: &Labels,
    dir: u8,
    peer: &End,
    receiver_ports: &[NamedPort],
    proto: u8,
    port: u16,
) -> Decision {
    let selecting = set.selecting(labels, dir);
    let selected_by: Vec<RuleMeta> = {
        let mut v: Vec<_> = selecting.iter().map(|(p, _)| RuleMeta::of(p, 0)).collect();
        v.dedup();
        v
    };
    let decision = |verdict, drop_reason, by, enforced| Decision {
        verdict,
        drop_reason,
        by,
        selected_by: selected_by.clone(),
        enforced,
    };
    let Some(mode) = compile::direction_mode(&selecting, opts) else {
        return decision(Verdict::Forwarded, 0, None, false);
    };
    let matching = |rules: fn(&crate::model::Direction) -> &Vec<PeerRule>| -> Vec<(&Policy, &PeerRule)> {
        selecting
            .iter()
            .flat_map(|(p, d)| rules(d).iter().map(move |r| (*p, r)))
            .filter(|(_, r)| peer_matches(r, peer) && port_matches(r, receiver_ports, proto, port))
            .collect()
    };
    // A drop the direction's audit mode turns into a report.
    let drop = |reason, by| match mode.audit {
        true => decision(Verdict::Audit, 0, by, true),
        false => decision(Verdict::Dropped, reason, by, true),
    };
    let meta = |(p, r): (&Policy, &PeerRule)| RuleMeta::of(p, compile::match_type(r));
    let denies = matching(|d| &d.deny);
    if let Some(hit) = denies.iter().find(|(p, _)| !p.audit) {
        return drop(DROP_POLICY_DENY, Some(meta(*hit)));
    }
    if let Some(hit) = denies.first() {
        return decision(Verdict::Audit, 0, Some(meta(*hit)), true);
    }
    if let Some(hit) = matching(|d| &d.allow).first() {
        return decision(Verdict::Forwarded, 0, Some(meta(*hit)), true);
    }
    if mode.default_deny {
        return drop(DROP_POLICY_DENIED, None);
    }
    decision(Verdict::Forwarded, 0, None, true)
}

fn peer_matches(rule: &PeerRule, peer: &End) -> bool {
    rule.peers.iter().any(|p| match (p, peer) {
        (Peer::Any, _) => true,
        (Peer::Endpoints(sel), End::Endpoint { labels, .. }) => sel.matches(labels.as_map()),
        (Peer::Endpoints(sel), End::Reserved(id)) => {
            let name = reserved::label(*id).unwrap_or_default();
            sel.match_labels.keys().any(|k| k.starts_with("reserved:"))
                && sel.matches(&[(name.to_string(), String::new())].into_iter().collect())
        }
        (Peer::Entity(e), End::Endpoint { labels, .. }) => {
            compile::entity_has(*e, 256, &compile::IdentityKind::Workload(labels.clone()))
        }
        (Peer::Entity(e), End::Reserved(id)) => compile::entity_has(*e, *id, &compile::IdentityKind::Reserved),
        (Peer::Entity(e), End::World(_)) => *e == Entity::World,
        (Peer::Cidr { cidr, except }, End::World(ip)) => cidr.contains(ip) && !except.iter().any(|e| e.contains(ip)),
        _ => false,
    })
}

fn port_matches(rule: &PeerRule, receiver_ports: &[NamedPort], proto: u8, port: u16) -> bool {
    rule.ports.is_empty()
        || rule.ports.iter().any(|p| {
            p.protocol.numbers().contains(&proto)
                && match &p.port {
                    Port::All => true,
                    Port::Range { port: first, end } => (*first..=*end).contains(&port),
                    Port::Named(name) => receiver_ports.iter().any(|n| {
                        n.name == *name
                            && n.port == port
                            && n.proto == proto
                            && (p.protocol == Protocol::Any || p.protocol.numbers().contains(&n.proto))
                    }),
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(yaml: &str) -> PolicySet {
        PolicySet::new(crate::parse_str(yaml, Path::new("t.yaml")).unwrap())
    }

    fn pod(app: &str) -> End {
        End::Endpoint {
            labels: Labels::for_endpoint(&[("app".to_string(), app.to_string())].into(), "default"),
            named_ports: vec![],
            local: true,
        }
    }

    fn meta(match_type: u32) -> RuleMeta {
        RuleMeta {
            name: "backend-in".into(),
            namespace: "default".into(),
            kind: "CiliumNetworkPolicy".into(),
            match_type,
        }
    }

    const POLICY: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: backend-in}\nspec:\n  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n  ingressDeny:\n    - fromCIDR: [198.51.100.0/24]\n";

    #[test]
    fn each_side_says_who_decided_and_why() {
        let s = set(POLICY);
        let o = Options::default();
        let t = trace(&s, &o, &pod("frontend"), &pod("backend"), 6, 80);
        assert_eq!(t.verdict, Verdict::Forwarded);
        assert_eq!(t.ingress.as_ref().unwrap().by, Some(meta(2)));
        let egress = t.egress.unwrap();
        assert_eq!((egress.enforced, egress.verdict), (false, Verdict::Forwarded));

        let t = trace(&s, &o, &pod("other"), &pod("backend"), 6, 80);
        let ingress = t.ingress.unwrap();
        assert_eq!(
            (t.verdict, ingress.drop_reason, ingress.by),
            (Verdict::Dropped, DROP_POLICY_DENIED, None)
        );
        assert_eq!(ingress.selected_by, vec![meta(0)], "why it is default-deny");

        let world = End::World("198.51.100.7".parse().unwrap());
        let t = trace(&s, &o, &world, &pod("backend"), 6, 80);
        assert_eq!(t.egress, None, "the world has no policy of ours");
        let ingress = t.ingress.unwrap();
        assert_eq!((ingress.drop_reason, ingress.by), (DROP_POLICY_DENY, Some(meta(1))));

        let audit = Options {
            audit: true,
            ..Options::default()
        };
        let t = trace(&s, &audit, &pod("other"), &pod("backend"), 6, 80);
        assert_eq!((t.verdict, t.allowed()), (Verdict::Audit, true));
    }
}

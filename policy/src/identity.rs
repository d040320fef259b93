//! Labels and security identities.
//!
//! An identity is a number for a set of labels (Cilium's model). Workload
//! identities are derived from a hash of the canonical label set, so every
//! node computes the same number for the same labels without talking to the
//! others.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

pub use crate::model::NAMESPACE_LABEL;

/// The label Kubernetes puts on every namespace, with its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Reserved identities, numbered as in Cilium.
pub mod reserved {
    pub const HOST: u32 = 1;
    pub const WORLD: u32 = 2;
    pub const UNMANAGED: u32 = 3;
    pub const HEALTH: u32 = 4;
    pub const INIT: u32 = 5;
    pub const REMOTE_NODE: u32 = 6;
    pub const KUBE_APISERVER: u32 = 7;
    pub const INGRESS: u32 = 8;
    pub const WORLD_IPV4: u32 = 9;
    pub const WORLD_IPV6: u32 = 10;

    /// The label Hubble shows for a reserved identity (`reserved:world`).
    pub fn label(id: u32) -> Option<&'static str> {
        // Built once from the names; indexed by number (1, 2, … without gaps)
        // since every flow's endpoints are looked up here.
        static LABELS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
            super::RESERVED
                .iter()
                .map(|(_, name)| format!("reserved:{name}"))
                .collect()
        });
        LABELS
            .get(usize::try_from(id).ok()?.checked_sub(1)?)
            .map(String::as_str)
    }
}

/// Every reserved identity with the name its `reserved:` label and entity use.
pub const RESERVED: &[(u32, &str)] = &lumen_proto::names::RESERVED_IDENTITIES;

/// First identity handed to workloads; below are reserved (Cilium: 256).
pub const MIN_WORKLOAD_IDENTITY: u32 = 256;
/// Identities are 24 bits wide in Cilium's cluster-local scope.
pub const MAX_WORKLOAD_IDENTITY: u32 = (1 << 24) - 1;
/// CIDR identities are node-local in Cilium, from 2^24 on.
pub const MIN_CIDR_IDENTITY: u32 = 1 << 24;
pub const MAX_CIDR_IDENTITY: u32 = (1 << 25) - 1;

/// A sorted set of `key=value` labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Labels(map)
    }

    /// The security-relevant labels of an endpoint: its own, its namespace,
    /// and its namespace's name label as Kubernetes sets it on every
    /// namespace (so `namespaceSelector`s can name namespaces).
    pub fn for_endpoint(labels: &BTreeMap<String, String>, namespace: &str) -> Self {
        let mut map = labels.clone();
        map.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
        map.insert(
            format!("{}{NAMESPACE_NAME_LABEL}", crate::model::NAMESPACE_LABELS_PREFIX),
            namespace.to_string(),
        );
        Labels(map)
    }

    /// The labels as a selector sees them.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when every `key=value` of `selector` is present here.
    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.0.get(k) == Some(v))
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// FNV-1a: small, stable across builds and platforms (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn candidate(labels: &Labels, salt: u32) -> u32 {
    let mut key = labels.to_string().into_bytes();
    if salt > 0 {
        key.extend_from_slice(format!("#{salt}").as_bytes());
    }
    let span = u64::from(MAX_WORKLOAD_IDENTITY - MIN_WORKLOAD_IDENTITY + 1);
    MIN_WORKLOAD_IDENTITY + (fnv1a(&key) % span) as u32
}

/// Hands out identities for label sets.
#[derive(Debug, Default)]
pub struct IdentityAllocator {
    by_labels: HashMap<Labels, u32>,
    by_id: HashMap<u32, Labels>,
}

impl IdentityAllocator {
    /// The identity of `labels`, allocating it on first use. The number is a
    /// hash of the labels; only a hash collision (rare: 24-bit space) makes
    /// it depend on allocation order, and that is logged.
    pub fn allocate(&mut self, labels: &Labels) -> u32 {
        if let Some(id) = self.by_labels.get(labels) {
            return *id;
        }
        let mut salt = 0;
        let id = loop {
            let id = candidate(labels, salt);
            match self.by_id.get(&id) {
                None => break id,
                Some(other) => {
                    tracing::warn!(%labels, %other, id, "identity hash collision; rehashing");
                    salt += 1;
                }
            }
        };
        self.by_labels.insert(labels.clone(), id);
        self.by_id.insert(id, labels.clone());
        id
    }

    pub fn labels(&self, id: u32) -> Option<&Labels> {
        self.by_id.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Labels)> + Clone {
        self.by_id.iter().map(|(id, l)| (*id, l))
    }

    /// Forgets identities no longer in use.
    pub fn retain(&mut self, keep: impl Fn(&Labels) -> bool) {
        self.by_labels.retain(|l, _| keep(l));
        self.by_id.retain(|_, l| keep(l));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn same_labels_same_identity_on_every_allocator() {
        let l = labels(&[("app", "backend"), (NAMESPACE_LABEL, "default")]);
        let mut a = IdentityAllocator::default();
        let mut b = IdentityAllocator::default();
        b.allocate(&labels(&[("app", "other")]));
        let id = a.allocate(&l);
        assert_eq!(id, b.allocate(&l));
        assert!((MIN_WORKLOAD_IDENTITY..=MAX_WORKLOAD_IDENTITY).contains(&id));
        // The value is part of the cluster contract: pin it.
        assert_eq!(id, candidate(&l, 0));
    }

    #[test]
    fn label_order_does_not_matter() {
        let a = labels(&[("a", "1"), ("b", "2")]);
        let b = labels(&[("b", "2"), ("a", "1")]);
        assert_eq!(
            IdentityAllocator::default().allocate(&a),
            IdentityAllocator::default().allocate(&b)
        );
    }

    #[test]
    fn thousand_label_sets_get_distinct_identities() {
        let mut alloc = IdentityAllocator::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            assert!(seen.insert(alloc.allocate(&labels(&[("app", &format!("svc{i}"))]))));
        }
    }

    #[test]
    fn selector_matching() {
        let l = labels(&[("app", "backend"), ("tier", "db")]);
        let sel = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(l.matches(&sel(&[("app", "backend")])));
        assert!(l.matches(&sel(&[])));
        assert!(!l.matches(&sel(&[("app", "frontend")])));
        assert!(!l.matches(&sel(&[("app", "backend"), ("zone", "a")])));
    }

    #[test]
    fn reserved_labels_follow_hubble() {
        assert_eq!(reserved::label(2), Some("reserved:world"));
        assert_eq!(reserved::label(1), Some("reserved:host"));
        assert_eq!(reserved::label(10), Some("reserved:world-ipv6"));
        assert_eq!(reserved::label(0), None);
        assert_eq!(reserved::label(11), None);
        assert_eq!(reserved::label(300), None);
        for (i, (id, _)) in RESERVED.iter().enumerate() {
            assert_eq!(*id as usize, i + 1, "numbered without gaps");
        }
        assert_eq!(RESERVED[reserved::KUBE_APISERVER as usize - 1], (7, "kube-apiserver"));
        assert_eq!(RESERVED[reserved::WORLD_IPV6 as usize - 1], (10, "world-ipv6"));
    }
}

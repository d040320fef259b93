//! Filters on who is talking: pods, services, identities, workloads,
//! cluster names and labels of either endpoint.

use lumen_proto::flow::{Endpoint, Flow, Workload};

use crate::error::FilterError;
use crate::label::Selector;
use crate::Side;

/// The namespace Hubble assumes when a pod or service filter names none.
const DEFAULT_NAMESPACE: &str = "default";

fn endpoint(side: Side, flow: &Flow) -> Option<&Endpoint> {
    side.pick(flow.source.as_ref(), flow.destination.as_ref())
}

/// Pods or services: `[namespace/][name-prefix]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    Pod,
    Service,
}

/// `namespace/prefix`: the namespace exactly, the name by prefix. Without a
/// `/` the value is a name prefix in namespace `default`; `ns/` is every
/// name in `ns`; an empty namespace is any namespace (`/front`, and `/` for
/// every named endpoint: `hubble observe --all-namespaces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespacedName {
    namespace: String,
    prefix: String,
}

impl NamespacedName {
    /// `None` when the value is empty or has more than one `/` (Hubble
    /// ignores what follows a second `/`; Lumen refuses it).
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (namespace, prefix) = match value.split_once('/') {
            Some((_, rest)) if rest.contains('/') => return None,
            Some((ns, prefix)) => (ns, prefix),
            None => (DEFAULT_NAMESPACE, value),
        };
        if value.is_empty() {
            return None;
        }
        Some(Self {
            namespace: namespace.to_string(),
            prefix: prefix.to_string(),
        })
    }

    fn matches(&self, namespace: &str, name: &str) -> bool {
        (self.namespace.is_empty() || self.namespace == namespace) && name.starts_with(self.prefix.as_str())
    }
}

/// `source_pod`, `destination_pod`, `source_service`, `destination_service`.
#[derive(Debug, Clone)]
pub(crate) struct NameMatcher {
    side: Side,
    kind: NameKind,
    names: Vec<NamespacedName>,
}

impl NameMatcher {
    pub(crate) fn new(side: Side, kind: NameKind, values: &[String]) -> Result<Self, FilterError> {
        let field = match kind {
            NameKind::Pod => side.pick("source_pod", "destination_pod"),
            NameKind::Service => side.pick("source_service", "destination_service"),
        };
        let names = values
            .iter()
            .map(|v| {
                NamespacedName::parse(v).ok_or_else(|| FilterError::InvalidNamespacedName {
                    field,
                    value: v.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { side, kind, names })
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let (namespace, name) = match self.kind {
            NameKind::Pod => endpoint(self.side, flow).map_or(("", ""), |e| (&e.namespace, &e.pod_name)),
            NameKind::Service => {
                let svc = self
                    .side
                    .pick(flow.source_service.as_ref(), flow.destination_service.as_ref());
                svc.map_or(("", ""), |s| (&s.namespace, &s.name))
            }
        };
        if namespace.is_empty() && name.is_empty() {
            return false;
        }
        self.names.iter().any(|n| n.matches(namespace, name))
    }
}

/// `source_identity` / `destination_identity`: numeric security identities.
#[derive(Debug, Clone)]
pub(crate) struct IdentityMatcher {
    pub(crate) side: Side,
    pub(crate) identities: Vec<u32>,
}

impl IdentityMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        endpoint(self.side, flow).is_some_and(|e| self.identities.contains(&e.identity))
    }
}

/// `source_workload` / `destination_workload`: an empty name or kind in the
/// filter matches any.
#[derive(Debug, Clone)]
pub(crate) struct WorkloadMatcher {
    pub(crate) side: Side,
    pub(crate) workloads: Vec<Workload>,
}

impl WorkloadMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(ep) = endpoint(self.side, flow) else {
            return false;
        };
        ep.workloads.iter().any(|w| {
            self.workloads
                .iter()
                .any(|f| (f.name.is_empty() || f.name == w.name) && (f.kind.is_empty() || f.kind == w.kind))
        })
    }
}

/// `source_cluster_name` / `destination_cluster_name`: exact names.
#[derive(Debug, Clone)]
pub(crate) struct ClusterNameMatcher {
    side: Side,
    names: Vec<String>,
}

impl ClusterNameMatcher {
    pub(crate) fn new(side: Side, names: &[String]) -> Result<Self, FilterError> {
        if names.iter().any(String::is_empty) {
            let field = side.pick("source_cluster_name", "destination_cluster_name");
            return Err(FilterError::EmptyValue { field });
        }
        Ok(Self {
            side,
            names: names.to_vec(),
        })
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let name = endpoint(self.side, flow).map_or("", |e| e.cluster_name.as_str());
        self.names.iter().any(|n| n == name)
    }
}

/// Whose labels a selector looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelTarget {
    Source,
    Destination,
    Node,
}

/// `source_label`, `destination_label`, `node_labels`: any selector may match.
#[derive(Debug, Clone)]
pub(crate) struct LabelMatcher {
    target: LabelTarget,
    selectors: Vec<Selector>,
}

impl LabelMatcher {
    pub(crate) fn new(target: LabelTarget, values: &[String]) -> Result<Self, FilterError> {
        let field = match target {
            LabelTarget::Source => "source_label",
            LabelTarget::Destination => "destination_label",
            LabelTarget::Node => "node_labels",
        };
        let selectors = values
            .iter()
            .map(|v| {
                Selector::parse(v).map_err(|reason| FilterError::InvalidLabelSelector {
                    field,
                    value: v.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { target, selectors })
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let labels: &[String] = match self.target {
            LabelTarget::Source => flow.source.as_ref().map_or(&[], |e| &e.labels),
            LabelTarget::Destination => flow.destination.as_ref().map_or(&[], |e| &e.labels),
            LabelTarget::Node => &flow.node_labels,
        };
        self.selectors.iter().any(|s| s.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaced_names() {
        let nn = |ns: &str, p: &str| {
            Some(NamespacedName {
                namespace: ns.into(),
                prefix: p.into(),
            })
        };
        assert_eq!(NamespacedName::parse("front"), nn("default", "front"));
        assert_eq!(NamespacedName::parse("default/"), nn("default", ""));
        assert_eq!(
            NamespacedName::parse("kube-system/coredns-"),
            nn("kube-system", "coredns-")
        );
        assert_eq!(NamespacedName::parse("/front"), nn("", "front"));
        assert_eq!(NamespacedName::parse(""), None);
        assert_eq!(NamespacedName::parse("/"), nn("", ""));
        assert_eq!(NamespacedName::parse("a/b/c"), None);
    }
}

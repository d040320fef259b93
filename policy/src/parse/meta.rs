//! What every policy object has: `apiVersion`, `kind` and `metadata`.
//!
//! `apiVersion` and `kind` are read from the raw document first, since
//! they decide which structs the rest is read into.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::model::{Kind, AUDIT_ANNOTATION};
use crate::names;

use super::error::{FieldPath, Issues};

const KINDS: &str = "CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy";

/// The namespace a namespaced policy without one lives in, as kubectl does.
const DEFAULT_NAMESPACE: &str = "default";

fn api_version(kind: Kind) -> &'static str {
    match kind {
        Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy => "cilium.io/v2",
        Kind::NetworkPolicy => "networking.k8s.io/v1",
    }
}

fn namespaced(kind: Kind) -> bool {
    kind != Kind::CiliumClusterwideNetworkPolicy
}

/// What the raw document says it is.
pub(super) struct Header {
    /// `None` when the kind is missing or not one Lumen reads.
    pub(super) kind: Option<Kind>,
    /// `CiliumNetworkPolicy default/web`, for error messages.
    pub(super) object: Option<String>,
}

pub(super) fn header(doc: &Value, issues: &mut Issues) -> Header {
    let root = FieldPath::default();
    let Value::Mapping(map) = doc else {
        issues.push(
            &root,
            format!(
                "a policy document must be a mapping (apiVersion, kind, metadata, spec), not {}",
                describe(doc)
            ),
        );
        return Header {
            kind: None,
            object: None,
        };
    };
    let kind = match map.get("kind") {
        None => {
            issues.push(&root.field("kind"), format!("required ({KINDS})"));
            None
        }
        Some(Value::String(name)) => {
            let kind = parse_kind(name);
            if kind.is_none() {
                issues.push(&root.field("kind"), format!("unknown kind \"{name}\" ({KINDS})"));
            }
            kind
        }
        Some(other) => {
            issues.push(
                &root.field("kind"),
                format!("expected a string ({KINDS}), not {}", describe(other)),
            );
            None
        }
    };
    let path = root.field("apiVersion");
    match (map.get("apiVersion"), kind) {
        (None, Some(kind)) => issues.push(&path, format!("required ({} for {kind})", api_version(kind))),
        (None, None) => issues.push(&path, "required (cilium.io/v2 or networking.k8s.io/v1)"),
        (Some(Value::String(version)), Some(kind)) if version != api_version(kind) => issues.push(
            &path,
            format!(
                "\"{version}\" is not an apiVersion of {kind} (expected {})",
                api_version(kind)
            ),
        ),
        (Some(Value::String(_)), _) => {}
        (Some(other), _) => issues.push(&path, format!("expected a string, not {}", describe(other))),
    }
    Header {
        kind,
        object: kind.and_then(|kind| object(kind, doc)),
    }
}

fn parse_kind(name: &str) -> Option<Kind> {
    [
        Kind::CiliumNetworkPolicy,
        Kind::CiliumClusterwideNetworkPolicy,
        Kind::NetworkPolicy,
    ]
    .into_iter()
    .find(|kind| kind.as_str() == name)
}

/// The object's name as `kubectl` would print it, when it can be read.
fn object(kind: Kind, doc: &Value) -> Option<String> {
    let name = doc.get("metadata")?.get("name")?.as_str()?;
    if !namespaced(kind) {
        return Some(format!("{kind} {name}"));
    }
    let namespace = doc
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    Some(format!("{kind} {namespace}/{name}"))
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// `metadata`. Keys the API server sets (uid, resourceVersion,
/// creationTimestamp…) are accepted so that `kubectl get -o yaml` output
/// can be read back.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "object metadata (name, namespace, labels, annotations)")]
pub(super) struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(rename = "labels")]
    _labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Who a policy is: the metadata checked and defaulted.
pub(super) struct Identity {
    pub(super) name: String,
    /// `None` for cluster-wide kinds.
    pub(super) namespace: Option<String>,
    pub(super) audit: bool,
}

pub(super) fn identity(meta: &Metadata, kind: Kind, issues: &mut Issues) -> Option<Identity> {
    let path = FieldPath::default().field("metadata");
    let name = match &meta.name {
        None => {
            issues.push(&path.field("name"), "required");
            None
        }
        Some(name) if !names::is_dns_subdomain(name) => {
            issues.push(
                &path.field("name"),
                format!(
                    "invalid name \"{name}\": at most 253 lowercase letters, digits, '-' and '.', starting and \
                     ending with a letter or digit"
                ),
            );
            None
        }
        Some(name) => Some(name.clone()),
    };
    let given = meta.namespace.as_deref().filter(|ns| !ns.is_empty());
    let ns_path = path.field("namespace");
    let namespace = match given {
        Some(_) if !namespaced(kind) => {
            issues.push(&ns_path, format!("{kind} is cluster-wide and takes no namespace"));
            None
        }
        None if !namespaced(kind) => Some(None),
        None => Some(Some(DEFAULT_NAMESPACE.to_string())),
        Some(ns) if !names::is_dns_label(ns) => {
            issues.push(
                &ns_path,
                format!(
                    "invalid namespace \"{ns}\": 1-63 lowercase letters, digits and '-', starting and ending \
                     with a letter or digit"
                ),
            );
            None
        }
        Some(ns) => Some(Some(ns.to_string())),
    };
    let audit = match meta.annotations.as_ref().and_then(|a| a.get(AUDIT_ANNOTATION)) {
        None => Some(false),
        Some(value) => issues.check(
            &path.field("annotations").key(AUDIT_ANNOTATION),
            match value.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(format!("invalid value \"{other}\" (true, false)")),
            },
        ),
    };
    Some(Identity {
        name: name?,
        namespace: namespace?,
        audit: audit?,
    })
}

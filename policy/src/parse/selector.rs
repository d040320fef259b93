//! Label selectors: Kubernetes syntax, and Cilium's label sources (`k8s:`,
//! `any:`, `reserved:`) on top.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::identity::{reserved, RESERVED};
use crate::model::{Operator, Requirement, Selector};
use crate::names;

use super::error::{FieldPath, Issues};
use super::Flavor;

/// Cilium's reserved identities a `reserved:<name>` key may select: all but
/// `world-ipv4` and `world-ipv6`, which Lumen's selectors do not take.
fn reserved_names() -> impl Iterator<Item = &'static str> {
    RESERVED
        .iter()
        .filter(|(id, _)| *id <= reserved::INGRESS)
        .map(|(_, name)| *name)
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a label selector (matchLabels, matchExpressions)"
)]
pub(super) struct LabelSelector {
    match_labels: Option<BTreeMap<String, String>>,
    match_expressions: Option<Vec<Expression>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a selector requirement (key, operator, values)")]
struct Expression {
    key: Option<String>,
    operator: Option<String>,
    values: Option<Vec<String>>,
}

/// The selector in the model's terms, source prefixes removed. Entries
/// with errors are left out (and reported).
pub(super) fn selector(sel: &LabelSelector, flavor: Flavor, path: &FieldPath, issues: &mut Issues) -> Selector {
    let mut out = Selector::all();
    let labels = path.field("matchLabels");
    for (raw, value) in sel.match_labels.iter().flatten() {
        let entry = labels.key(raw);
        let key = issues.check(&entry, label_key(raw, flavor));
        let value = issues.check(&entry, names::label_value(value).map(|()| value.clone()));
        let (Some(key), Some(value)) = (key, value) else {
            continue;
        };
        if out.match_labels.contains_key(&key) {
            issues.push(
                &entry,
                format!("label key \"{key}\" is given twice (with and without a source prefix)"),
            );
            continue;
        }
        out.match_labels.insert(key, value);
    }
    let expressions = path.field("matchExpressions");
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        if let Some(req) = requirement(expr, flavor, &expressions.index(i), issues) {
            out.match_expressions.push(req);
        }
    }
    out
}

fn requirement(expr: &Expression, flavor: Flavor, path: &FieldPath, issues: &mut Issues) -> Option<Requirement> {
    let key = required(expr.key.as_deref(), &path.field("key"), issues, |raw| {
        label_key(raw, flavor)
    });
    let operator = required(expr.operator.as_deref(), &path.field("operator"), issues, operator);
    let values = expr.values.clone().unwrap_or_default();
    let values_path = path.field("values");
    for (i, value) in values.iter().enumerate() {
        issues.check(&values_path.index(i), names::label_value(value));
    }
    let (operator, name) = operator?;
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            issues.push(&values_path, format!("operator {name} needs at least one value"));
            return None;
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            issues.push(&values_path, format!("operator {name} takes no values"));
            return None;
        }
        _ => {}
    }
    Some(Requirement {
        key: key?,
        operator,
        values,
    })
}

fn required<'a, T>(
    value: Option<&'a str>,
    path: &FieldPath,
    issues: &mut Issues,
    parse: impl FnOnce(&'a str) -> Result<T, String>,
) -> Option<T> {
    match value {
        Some(value) => issues.check(path, parse(value)),
        None => {
            issues.push(path, "required");
            None
        }
    }
}

fn operator(name: &str) -> Result<(Operator, &str), String> {
    let operator = match name {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        _ => return Err(format!("unknown operator \"{name}\" (In, NotIn, Exists, DoesNotExist)")),
    };
    Ok((operator, name))
}

/// A key as the model holds it. Cilium keys may carry a source: `k8s:`
/// and `any:` are what a plain key means anyway, `reserved:` selects a
/// reserved identity; other sources (`container:`, `cidr:`…) Lumen has no
/// labels for.
fn label_key(raw: &str, flavor: Flavor) -> Result<String, String> {
    if flavor == Flavor::Cilium {
        if let Some((source, name)) = raw.split_once(':') {
            return match source {
                "k8s" | "any" => names::label_key(name).map(|()| name.to_string()),
                "reserved" if reserved_names().any(|n| n == name) => Ok(raw.to_string()),
                "reserved" => Err(format!(
                    "unknown reserved label \"{name}\" ({})",
                    reserved_names().collect::<Vec<_>>().join(", ")
                )),
                _ => Err(format!(
                    "label source \"{source}:\" in \"{raw}\" is not supported (k8s:, any:, reserved:)"
                )),
            };
        }
    }
    names::label_key(raw).map(|()| raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cilium_sources() {
        assert_eq!(label_key("k8s:app", Flavor::Cilium), Ok("app".into()));
        assert_eq!(label_key("any:app", Flavor::Cilium), Ok("app".into()));
        assert_eq!(label_key("reserved:host", Flavor::Cilium), Ok("reserved:host".into()));
        assert_eq!(
            label_key("container:app", Flavor::Cilium),
            Err("label source \"container:\" in \"container:app\" is not supported (k8s:, any:, reserved:)".into())
        );
        assert_eq!(
            label_key("reserved:moon", Flavor::Cilium),
            Err(
                "unknown reserved label \"moon\" (host, world, unmanaged, health, init, remote-node, \
                 kube-apiserver, ingress)"
                    .into()
            )
        );
        assert!(label_key("k8s:app", Flavor::Kubernetes).is_err());
    }
}

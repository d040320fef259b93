//! Reading policy files: YAML (or JSON) text in, validated and normalised
//! [`Policy`] values out, or every error found, each naming the file, the
//! document, the line, the object and the field.
//!
//! A document goes through three stages, each reporting with the field
//! path: read as a `serde_yaml_ng::Value` (syntax), its `apiVersion` and
//! `kind` checked (`meta`), deserialized into the serde structs of its kind
//! (`cilium`, `k8s`: unknown fields, wrong types), then validated and
//! normalised into the model (all semantic errors). Lines are looked up in
//! the text afterwards (`lines`), only for the errors.

mod cilium;
mod error;
mod k8s;
mod lines;
mod meta;
mod peer;
mod ports;
mod selector;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::model::{Kind, Origin, Policy};

pub use error::PolicyError;
use error::{FieldPath, Issue, Issues};

/// Parses one file's text: every document of it (`---` separated), empty
/// ones skipped. `file` only names the origin in policies and errors.
pub fn parse_str(text: &str, file: &Path) -> Result<Vec<Policy>, Vec<PolicyError>> {
    let mut set = PolicySet::default();
    set.add_text(text, file);
    set.finish()
}

/// Reads a file, or every `*.yaml`, `*.yml` and `*.json` file of a
/// directory (not its subdirectories) in name order.
pub fn load_path(path: &Path) -> Result<Vec<Policy>, Vec<PolicyError>> {
    let mut set = PolicySet::default();
    match files(path) {
        Ok(files) => {
            for file in files {
                match std::fs::read_to_string(&file) {
                    Ok(text) => set.add_text(&text, &file),
                    Err(e) => set.errors.push(unreadable(&file, &e)),
                }
            }
        }
        Err(e) => set.errors.push(unreadable(path, &e)),
    }
    set.finish()
}

fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let file = entry?.path();
        let policy_file = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if policy_file && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

fn unreadable(file: &Path, e: &std::io::Error) -> PolicyError {
    PolicyError {
        file: file.to_path_buf(),
        document: 0,
        line: None,
        object: None,
        field: String::new(),
        reason: format!("cannot read: {e}"),
    }
}

/// Which conventions a selector or port follows: Cilium's (label sources,
/// port 0 and protocol `ANY`) or Kubernetes' plain ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    Cilium,
    Kubernetes,
}

/// Everything one call read: policies, errors, and where each policy key
/// was first seen, to refuse duplicates across documents and files.
#[derive(Default)]
struct PolicySet {
    policies: Vec<Policy>,
    errors: Vec<PolicyError>,
    seen: HashMap<String, Origin>,
}

impl PolicySet {
    fn add_text(&mut self, text: &str, file: &Path) {
        for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let document = i + 1;
            let value = match Value::deserialize(de) {
                Ok(value) => value,
                Err(e) => {
                    self.errors.push(PolicyError {
                        file: file.to_path_buf(),
                        document,
                        line: e.location().map(|l| l.line()),
                        object: None,
                        field: String::new(),
                        reason: format!("invalid YAML: {e}"),
                    });
                    // The parser stops mid-document: what follows cannot be
                    // read reliably (serde_yaml_ng may even panic on it).
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            let origin = Origin {
                file: file.to_path_buf(),
                document,
            };
            let (object, result) = read_document(&value);
            let error = |issue: Issue| PolicyError {
                file: file.to_path_buf(),
                document,
                line: lines::line_of(text, document, &issue.path),
                object: object.clone(),
                field: issue.path.to_string(),
                reason: issue.reason.replace('\n', " "),
            };
            match result.and_then(|policy| self.add(policy, origin)) {
                Ok(()) => {}
                Err(issues) => self.errors.extend(issues.into_iter().map(error)),
            }
        }
    }

    /// Keeps a policy unless one with its key was seen before.
    fn add(&mut self, policy: Policy, origin: Origin) -> Result<(), Vec<Issue>> {
        if let Some(first) = self.seen.get(&policy.key()) {
            let reason = format!(
                "duplicate policy: already defined in {} document {}",
                first.file.display(),
                first.document
            );
            let path = FieldPath::default().field("metadata").field("name");
            return Err(vec![Issue::new(&path, reason)]);
        }
        self.seen.insert(policy.key(), origin.clone());
        self.policies.push(Policy { origin, ..policy });
        Ok(())
    }

    /// All policies, or all errors: never a part of the set.
    fn finish(self) -> Result<Vec<Policy>, Vec<PolicyError>> {
        if self.errors.is_empty() {
            Ok(self.policies)
        } else {
            Err(self.errors)
        }
    }
}

/// One non-empty document: the object it names (for errors) and the
/// policy, or every issue found in it.
fn read_document(doc: &Value) -> (Option<String>, Result<Policy, Vec<Issue>>) {
    let mut issues = Issues::default();
    let header = meta::header(doc, &mut issues);
    let policy = header.kind.and_then(|kind| match kind {
        Kind::NetworkPolicy => k8s::policy(doc, &mut issues),
        Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy => cilium::policy(doc, kind, &mut issues),
    });
    let result = match policy {
        Some(policy) if issues.is_empty() => Ok(policy),
        _ => Err(issues.into_vec()),
    };
    (header.object, result)
}

/// Deserializes a document into its kind's structs; `None` with the issue
/// recorded when serde refuses it (serde stops at its first error).
fn deserialize<'de, T: Deserialize<'de>>(doc: &'de Value, issues: &mut Issues) -> Option<T> {
    serde_path_to_error::deserialize(doc).map_err(|e| issues.serde(&e)).ok()
}

/// A field Cilium defines and Lumen does not implement: whether it was
/// given, with any value (null included), so that it can be refused by
/// name. Use with `#[serde(default)]`.
#[derive(Debug, Default)]
struct Given(bool);

impl<'de> Deserialize<'de> for Given {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(de).map(|_| Given(true))
    }
}

/// `Some` whenever the key is there, `null` and `[]` included: `ingress:`
/// alone still makes a rule select its subject for ingress. Use with
/// `#[serde(default, deserialize_with = "present")]`.
fn present<'de, D, T>(de: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(de).map(|list| Some(list.unwrap_or_default()))
}

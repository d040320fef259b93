//! Policy documents as a client sends them (a file's text and its name),
//! parsed together: a policy defined twice across files is an error naming
//! both. The CLI validates with this before it sends anything, and the
//! observer parses what it receives with the same code.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{parse_str, Policy, PolicyError};

/// One file's text as the client read it; `source` names it in errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub source: String,
    pub yaml: String,
}

/// Parses every document: the policies of all, or every error of all.
pub fn parse_documents(documents: &[Document]) -> Result<Vec<Policy>, Vec<PolicyError>> {
    let mut policies: Vec<Policy> = Vec::new();
    // Where each key was first defined, to name it when it comes again.
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let mut errors = Vec::new();
    for d in documents {
        match parse_str(&d.yaml, Path::new(&d.source)) {
            Ok(ps) => {
                for p in ps {
                    match seen.entry(p.key()) {
                        Entry::Occupied(first) => {
                            let (file, document) = first.get();
                            let name = match &p.namespace {
                                Some(ns) => format!("{ns}/{}", p.name),
                                None => p.name.clone(),
                            };
                            errors.push(PolicyError {
                                file: p.origin.file.clone(),
                                document: p.origin.document,
                                line: None,
                                object: Some(format!("{} {name}", p.kind)),
                                field: "metadata.name".into(),
                                reason: format!("also defined in {} document {document}", file.display()),
                            });
                        }
                        Entry::Vacant(slot) => {
                            slot.insert((p.origin.file.clone(), p.origin.document));
                            policies.push(p);
                        }
                    }
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_defined_in_two_files_names_both() {
        let doc = |source: &str| {
            Document {
            source: source.into(),
            yaml: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web}\nspec:\n  endpointSelector: {}\n".into(),
        }
        };
        let errors = parse_documents(&[doc("a.yaml"), doc("b.yaml")]).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["b.yaml: document 1 (CiliumNetworkPolicy default/web): metadata.name: also defined in a.yaml document 1"]
        );
        assert_eq!(parse_documents(&[doc("a.yaml")]).unwrap().len(), 1);
    }
}

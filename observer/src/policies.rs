//! The node's policies: those of the `--policy` path (read at start, changed
//! by editing it) and those applied at runtime (`lumen policy apply`), which
//! are kept in a file across restarts. Changes are computed on a copy and
//! only kept once the datapath took them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lumen_policy::{Policy, PolicyError};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    #[error("invalid policy:\n{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid { errors: Vec<PolicyError> },
    #[error("{key} comes from {file}: edit that file instead")]
    FromFile { key: String, file: String },
    #[error("no policy {key}")]
    NotFound { key: String },
    #[error("cannot read runtime policies from {}", path.display())]
    Load { path: PathBuf, source: std::io::Error },
    #[error("runtime policies in {} are unreadable", path.display())]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("cannot save runtime policies to {}", path.display())]
    Persist { path: PathBuf, source: std::io::Error },
}

/// A policy as `lumen policy list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// "file" or "runtime".
    pub origin: String,
    /// The file it was read from, and the 1-based YAML document in it.
    pub source: String,
    pub document: usize,
    pub rules: usize,
    pub audit: bool,
}

pub struct PolicyStore {
    options: lumen_policy::Options,
    file: Vec<Policy>,
    file_path: Option<PathBuf>,
    runtime: BTreeMap<String, Policy>,
    runtime_file: PathBuf,
}

impl PolicyStore {
    /// Reads the `--policy` path (a file or a directory) and the runtime
    /// policies a previous run kept.
    pub fn load(
        file_path: Option<&Path>,
        runtime_file: PathBuf,
        options: lumen_policy::Options,
    ) -> Result<PolicyStore, PolicyStoreError> {
        let file = match file_path {
            Some(p) => lumen_policy::load_path(p).map_err(|errors| PolicyStoreError::Invalid { errors })?,
            None => Vec::new(),
        };
        let runtime: Vec<Policy> = match std::fs::read(&runtime_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PolicyStoreError::Corrupt {
                path: runtime_file.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(PolicyStoreError::Load {
                    path: runtime_file,
                    source,
                })
            }
        };
        let mut store = PolicyStore {
            options,
            file,
            file_path: file_path.map(Path::to_path_buf),
            runtime: BTreeMap::new(),
            runtime_file,
        };
        // A runtime policy a file now declares gives way to the file.
        for p in runtime {
            if store.file_policy(&p.key()).is_none() {
                store.runtime.insert(p.key(), p);
            }
        }
        Ok(store)
    }

    /// How the node enforces policy (`--enable-policy`, `--policy-audit-mode`).
    pub fn options(&self) -> &lumen_policy::Options {
        &self.options
    }

    fn file_policy(&self, key: &str) -> Option<&Policy> {
        self.file.iter().find(|p| p.key() == key)
    }

    fn declared_in_file(&self, key: &str) -> PolicyStoreError {
        PolicyStoreError::FromFile {
            key: key.to_string(),
            file: self
                .file_path
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
        }
    }

    /// Every policy in force.
    pub fn all(&self) -> Vec<Policy> {
        self.file.iter().chain(self.runtime.values()).cloned().collect()
    }

    /// The runtime policies with `policies` created or replaced (by key).
    pub fn applying(&self, policies: &[Policy]) -> Result<BTreeMap<String, Policy>, PolicyStoreError> {
        let mut next = self.runtime.clone();
        for p in policies {
            if self.file_policy(&p.key()).is_some() {
                return Err(self.declared_in_file(&p.key()));
            }
            next.insert(p.key(), p.clone());
        }
        Ok(next)
    }

    /// The runtime policies without those keyed `keys`.
    pub fn deleting(&self, keys: &[String]) -> Result<BTreeMap<String, Policy>, PolicyStoreError> {
        let mut next = self.runtime.clone();
        for key in keys {
            if self.file_policy(key).is_some() {
                return Err(self.declared_in_file(key));
            }
            if next.remove(key).is_none() {
                return Err(PolicyStoreError::NotFound { key: key.clone() });
            }
        }
        Ok(next)
    }

    /// Every policy in force if the runtime ones were `runtime`.
    pub fn all_with(&self, runtime: &BTreeMap<String, Policy>) -> Vec<Policy> {
        self.file.iter().chain(runtime.values()).cloned().collect()
    }

    /// Keeps `runtime` (saved first, so a crash cannot lose what is enforced).
    pub fn commit(&mut self, runtime: BTreeMap<String, Policy>) -> Result<(), PolicyStoreError> {
        let err = |source| PolicyStoreError::Persist {
            path: self.runtime_file.clone(),
            source,
        };
        if let Some(dir) = self.runtime_file.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let list: Vec<&Policy> = runtime.values().collect();
        let json = serde_json::to_vec_pretty(&list).expect("policies serialize");
        let tmp = self.runtime_file.with_extension("tmp");
        std::fs::write(&tmp, json).map_err(err)?;
        std::fs::rename(&tmp, &self.runtime_file).map_err(err)?;
        self.runtime = runtime;
        Ok(())
    }

    pub fn list(&self) -> Vec<PolicyView> {
        let view = |p: &Policy, origin: &str| PolicyView {
            kind: p.kind.to_string(),
            namespace: p.namespace.clone().unwrap_or_default(),
            name: p.name.clone(),
            origin: origin.to_string(),
            source: p.origin.file.display().to_string(),
            document: p.origin.document,
            rules: p.rules.len(),
            audit: p.audit,
        };
        let mut out: Vec<PolicyView> = self.file.iter().map(|p| view(p, "file")).collect();
        out.extend(self.runtime.values().map(|p| view(p, "runtime")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lumen-policies-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn cnp(name: &str) -> String {
        format!("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  endpointSelector: {{}}\n  ingress: [{{}}]\n")
    }

    fn parse(yaml: &str) -> Vec<Policy> {
        lumen_policy::parse_str(yaml, Path::new("applied.yaml")).unwrap()
    }

    fn keys(store: &PolicyStore) -> Vec<String> {
        store.all().iter().map(Policy::key).collect()
    }

    #[test]
    fn runtime_policies_survive_a_restart_and_file_policies_are_the_files() {
        let dir = temp("store");
        let file = dir.0.join("file.yaml");
        std::fs::write(&file, cnp("from-file")).unwrap();
        let runtime = dir.0.join("state/policies.json");
        let options = lumen_policy::Options::default();
        let mut store = PolicyStore::load(Some(&file), runtime.clone(), options).unwrap();
        assert_eq!(keys(&store), ["CiliumNetworkPolicy/default/from-file"]);

        let next = store.applying(&parse(&cnp("web"))).unwrap();
        store.commit(next).unwrap();
        let reloaded = PolicyStore::load(Some(&file), runtime.clone(), options).unwrap();
        assert_eq!(
            keys(&reloaded),
            [
                "CiliumNetworkPolicy/default/from-file",
                "CiliumNetworkPolicy/default/web"
            ]
        );
        assert_eq!(
            reloaded.list().iter().map(|v| v.origin.as_str()).collect::<Vec<_>>(),
            ["file", "runtime"]
        );

        let err = store.applying(&parse(&cnp("from-file"))).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "CiliumNetworkPolicy/default/from-file comes from {}: edit that file instead",
                file.display()
            )
        );
        let err = store
            .deleting(&["CiliumNetworkPolicy/default/nope".into()])
            .unwrap_err();
        assert_eq!(err.to_string(), "no policy CiliumNetworkPolicy/default/nope");
        // A failed change leaves the store as it was.
        assert_eq!(keys(&store).len(), 2);
        let next = store.deleting(&["CiliumNetworkPolicy/default/web".into()]).unwrap();
        store.commit(next).unwrap();
        assert_eq!(keys(&store), ["CiliumNetworkPolicy/default/from-file"]);

        std::fs::write(&runtime, "not json").unwrap();
        let err = PolicyStore::load(None, runtime.clone(), options).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("runtime policies in {} are unreadable", runtime.display())
        );
    }
}

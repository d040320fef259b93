//! Endpoint, identity and policy state of the node, and its projection onto
//! the datapath. Every change is validated as a whole before anything is
//! written; on error the running state is unchanged.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::datapath::{self, Datapath, DatapathError, IpcacheEntry};
use crate::endpoint::{self, EndpointSpec};
use crate::hub::Hub;
use crate::identity::IdentityAllocator;
use crate::output::{Names, SharedNames};
use crate::parser::{EndpointMeta, Snapshot};
use crate::rules::RuleSet;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("no endpoint {key}")]
    NotFound { key: String },
    #[error("endpoint {key} comes from {file}: edit that file instead")]
    FromFile { key: String, file: String },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("cannot save runtime endpoints to {}", path.display())]
    Persist { path: PathBuf, source: std::io::Error },
}

/// An endpoint as the node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    #[serde(flatten)]
    pub spec: EndpointSpec,
    pub endpoint_id: u32,
    pub identity: u32,
    /// "file" or "runtime".
    pub origin: String,
    pub enforce_ingress: bool,
    pub enforce_egress: bool,
}

pub struct NodeState {
    file_endpoints: Vec<EndpointSpec>,
    file_name: String,
    runtime_endpoints: Vec<EndpointSpec>,
    runtime_file: PathBuf,
    rules: RuleSet,
    identities: IdentityAllocator,
    datapath: Datapath,
    names: SharedNames,
    hub: Arc<Hub>,
}

impl NodeState {
    pub fn new(
        datapath: Datapath,
        file_endpoints: Vec<EndpointSpec>,
        file_name: String,
        runtime_file: PathBuf,
        rules: RuleSet,
        names: SharedNames,
        hub: Arc<Hub>,
    ) -> Result<NodeState, StateError> {
        let mut runtime_endpoints: Vec<EndpointSpec> = match std::fs::read(&runtime_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
                reason: format!("{}: {e}", runtime_file.display()),
            })?,
            Err(_) => Vec::new(),
        };
        // A pod deleted while no observer ran leaves its endpoint behind.
        runtime_endpoints.retain(|ep| match ep.interface.as_deref() {
            Some(ifname) if datapath::ifindex(ifname).is_none() => {
                tracing::warn!(endpoint = %ep.key(), ifname, "interface is gone; dropping runtime endpoint");
                false
            }
            _ => true,
        });
        let state = NodeState {
            file_endpoints,
            file_name,
            runtime_endpoints,
            runtime_file,
            rules,
            identities: IdentityAllocator::default(),
            datapath,
            names,
            hub,
        };
        state.check(&state.all_endpoints())?;
        Ok(state)
    }

    fn all_endpoints(&self) -> Vec<EndpointSpec> {
        self.file_endpoints
            .iter()
            .chain(&self.runtime_endpoints)
            .cloned()
            .collect()
    }

    /// Validates a whole endpoint set, including that interfaces exist.
    fn check(&self, all: &[EndpointSpec]) -> Result<(), StateError> {
        endpoint::check_set(all).map_err(|(_, reason)| StateError::Invalid { reason })?;
        for ep in all {
            if let Some(ifname) = &ep.interface {
                if datapath::ifindex(ifname).is_none() {
                    return Err(DatapathError::NoInterface { ifname: ifname.clone() }.into());
                }
            }
        }
        Ok(())
    }

    /// Projects the whole state onto the datapath.
    pub fn apply(&mut self) -> Result<(), StateError> {
        let all = self.all_endpoints();
        let labels: Vec<_> = all.iter().map(EndpointSpec::security_labels).collect();
        let wanted: HashSet<_> = labels.iter().cloned().collect();
        self.identities.retain(|l| wanted.contains(l));
        let ids: Vec<u32> = labels.iter().map(|l| self.identities.allocate(l)).collect();

        let mut ipcache = HashMap::new();
        let mut names = Names::default();
        let mut snapshot = Snapshot::default();
        for ((ep, id), l) in all.iter().zip(&ids).zip(&labels) {
            let meta = Arc::new(EndpointMeta {
                id: ep.endpoint_id(),
                identity: *id,
                namespace: ep.namespace.clone(),
                pod_name: ep.name.clone(),
                labels: l.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect(),
            });
            if let Some((ifname, index)) = ep.interface.as_ref().and_then(|i| Some((i, datapath::ifindex(i)?))) {
                snapshot.interfaces.insert(index, ifname.clone());
            }
            for ip in &ep.ips {
                snapshot.endpoints.insert(*ip, meta.clone());
                let entry = IpcacheEntry {
                    identity: *id,
                    endpoint_id: ep.endpoint_id(),
                    interface: ep.interface.clone(),
                };
                ipcache.insert(*ip, entry);
                names.endpoints_by_ip.insert(*ip, ep.key());
            }
        }
        names.rules = self.rules.names().map(|(id, n)| (id, n.to_string())).collect();
        snapshot.rules = self.rules.metas().collect();
        self.datapath.sync_ipcache(&ipcache)?;

        let mut guarded = HashSet::new();
        for ((ep, id), l) in all.iter().zip(&ids).zip(&labels) {
            let Some(ifname) = &ep.interface else { continue };
            let policy = self.rules.compile(l, self.identities.iter());
            self.datapath.upsert_endpoint(ifname, ep.endpoint_id(), *id, &policy)?;
            guarded.insert(ifname.clone());
        }
        for ifname in self.datapath.stale_attachments(&guarded) {
            tracing::info!(ifname, "no longer an endpoint; detaching");
            self.datapath.remove_endpoint(&ifname)?;
        }
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = names;
        self.hub.publish(snapshot);
        Ok(())
    }

    pub fn add_endpoint(&mut self, spec: EndpointSpec) -> Result<EndpointView, StateError> {
        let mut all = self.all_endpoints();
        all.push(spec.clone());
        self.check(&all)?;
        self.runtime_endpoints.push(spec.clone());
        if let Err(e) = self.persist().and_then(|_| self.apply()) {
            self.runtime_endpoints.pop();
            let _ = self.persist();
            let _ = self.apply();
            return Err(e);
        }
        Ok(self.view(&spec, "runtime"))
    }

    pub fn delete_endpoint(&mut self, namespace: &str, name: &str) -> Result<(), StateError> {
        let key = format!("{namespace}/{name}");
        if self.file_endpoints.iter().any(|e| e.key() == key) {
            return Err(StateError::FromFile {
                key,
                file: self.file_name.clone(),
            });
        }
        let before = self.runtime_endpoints.len();
        self.runtime_endpoints.retain(|e| e.key() != key);
        if self.runtime_endpoints.len() == before {
            return Err(StateError::NotFound { key });
        }
        self.persist()?;
        self.apply()
    }

    pub fn set_rules(&mut self, rules: RuleSet) -> Result<(), StateError> {
        let old = std::mem::replace(&mut self.rules, rules);
        if let Err(e) = self.apply() {
            self.rules = old;
            let _ = self.apply();
            return Err(e);
        }
        Ok(())
    }

    pub fn set_aggregation(&mut self, level: u32) -> Result<(), StateError> {
        Ok(self.datapath.set_aggregation(level)?)
    }

    pub fn endpoints(&mut self) -> Vec<EndpointView> {
        let file = self.file_endpoints.clone();
        let runtime = self.runtime_endpoints.clone();
        let mut views: Vec<EndpointView> = file.iter().map(|e| self.view(e, "file")).collect();
        views.extend(runtime.iter().map(|e| self.view(e, "runtime")));
        views
    }

    fn view(&mut self, spec: &EndpointSpec, origin: &str) -> EndpointView {
        let labels = spec.security_labels();
        let identity = self.identities.allocate(&labels);
        let policy = self.rules.compile(&labels, self.identities.iter());
        EndpointView {
            spec: spec.clone(),
            endpoint_id: spec.endpoint_id(),
            identity,
            origin: origin.to_string(),
            enforce_ingress: policy.flags & lumen_probes::abi::EP_ENFORCE_INGRESS != 0,
            enforce_egress: policy.flags & lumen_probes::abi::EP_ENFORCE_EGRESS != 0,
        }
    }

    pub fn identity_of(&self, ip: IpAddr) -> Option<u32> {
        let ep = self.all_endpoints().into_iter().find(|e| e.ips.contains(&ip))?;
        self.identities
            .iter()
            .find(|(_, l)| **l == ep.security_labels())
            .map(|(id, _)| id)
    }

    fn persist(&self) -> Result<(), StateError> {
        let err = |source| StateError::Persist {
            path: self.runtime_file.clone(),
            source,
        };
        if let Some(dir) = self.runtime_file.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let json = serde_json::to_vec_pretty(&self.runtime_endpoints).expect("endpoints serialize");
        let tmp = self.runtime_file.with_extension("tmp");
        std::fs::write(&tmp, json).map_err(err)?;
        std::fs::rename(&tmp, &self.runtime_file).map_err(err)
    }
}

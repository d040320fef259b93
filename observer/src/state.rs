//! Endpoint, identity and policy state of the node, and its projection onto
//! the datapath. Every change is validated as a whole before anything is
//! written; on error the running state is unchanged.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use lumen_policy::compile::{self, RuleMeta, Universe};
use lumen_policy::trace::{self, End, Trace};
use lumen_policy::{Policy, PolicySet};
use serde::{Deserialize, Serialize};

use crate::datapath::{self, Datapath, DatapathError, IpcacheEntry};
use crate::endpoint::{self, EndpointSpec};
use crate::hub::Hub;
use crate::identity::{reserved, IdentityAllocator, Labels};
use crate::metrics::PolicyMetrics;
use crate::parser::{EndpointMeta, Snapshot};
use crate::policies::{PolicyStore, PolicyStoreError, PolicyView};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("no endpoint {key}")]
    NotFound { key: String },
    #[error("endpoint {key} comes from {file}: edit that file instead")]
    FromFile { key: String, file: String },
    #[error(transparent)]
    Endpoints(#[from] endpoint::SetError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Policy(#[from] PolicyStoreError),
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
    policies: PolicyStore,
    /// The policies the datapath enforces.
    in_force: PolicySet,
    /// Identities of the prefixes policies name.
    cidr_ids: BTreeMap<IpNet, u32>,
    identities: IdentityAllocator,
    /// The other nodes' addresses (from the nodes file): reserved:remote-node.
    remote_nodes: BTreeSet<IpAddr>,
    datapath: Datapath,
    hub: Arc<Hub>,
    /// Revision and apply durations, for `/metrics`.
    metrics: Arc<PolicyMetrics>,
}

impl NodeState {
    pub fn new(
        datapath: Datapath,
        file_endpoints: Vec<EndpointSpec>,
        file_name: String,
        runtime_file: PathBuf,
        policies: PolicyStore,
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
            policies,
            in_force: PolicySet::default(),
            cidr_ids: BTreeMap::new(),
            identities: IdentityAllocator::default(),
            remote_nodes: BTreeSet::new(),
            metrics: Arc::default(),
            datapath,
            hub,
        };
        state.metrics.set_revision(state.datapath.revision());
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
        endpoint::check_set(all).map_err(|(_, e)| StateError::Endpoints(e))?;
        for ep in all {
            if let Some(ifname) = &ep.interface {
                if datapath::ifindex(ifname).is_none() {
                    return Err(DatapathError::NoInterface { ifname: ifname.clone() }.into());
                }
            }
        }
        Ok(())
    }

    /// The other nodes' addresses changed (the nodes file): they are
    /// reserved:remote-node from now on. True when anything changed.
    pub fn set_remote_nodes(&mut self, addresses: BTreeSet<IpAddr>) -> Result<bool, StateError> {
        if addresses == self.remote_nodes {
            return Ok(false);
        }
        let old = std::mem::replace(&mut self.remote_nodes, addresses);
        if let Err(e) = self.apply() {
            self.remote_nodes = old;
            return Err(e);
        }
        Ok(true)
    }

    /// Projects the whole state onto the datapath.
    pub fn apply(&mut self) -> Result<(), StateError> {
        self.project(PolicySet::new(self.policies.all()))
    }

    /// Projects endpoints and the policies `next` onto the datapath, moving
    /// from the policies in force so that no packet meets a mix of old and
    /// new: each step flips every endpoint at once (see
    /// [`Datapath::commit_policy`]). New CIDR prefixes enter the ipcache
    /// only once the old policies are compiled over their identities too,
    /// and old prefixes leave only once the new policies are in force; a
    /// rule selects a prefix's identity exactly when it selects every
    /// address the prefix resolves, so neither step changes a decision.
    fn project(&mut self, next: PolicySet) -> Result<(), StateError> {
        let all = self.all_endpoints();
        let labels: Vec<Labels> = all.iter().map(EndpointSpec::security_labels).collect();
        let wanted: HashSet<_> = labels.iter().cloned().collect();
        self.identities.retain(|l| wanted.contains(l));
        let ids: Vec<u32> = labels.iter().map(|l| self.identities.allocate(l)).collect();

        let old_cidrs: BTreeSet<IpNet> = self.cidr_ids.keys().copied().collect();
        let new_cidrs = next.cidrs();
        for net in &new_cidrs {
            if !self.cidr_ids.contains_key(net) {
                let taken: HashSet<u32> = self.cidr_ids.values().copied().collect();
                let id = compile::cidr_identity(net, |id| taken.contains(&id));
                self.cidr_ids.insert(*net, id);
            }
        }
        let union: BTreeSet<IpNet> = old_cidrs.union(&new_cidrs).copied().collect();
        let mut base = Universe::new();
        for ((ep, id), l) in all.iter().zip(&ids).zip(&labels) {
            base.add_workload(*id, l.clone(), &ep.named_ports());
        }
        let cidr_ids = self.cidr_ids.clone();
        let universe = |cidrs: &BTreeSet<IpNet>| {
            let mut u = base.clone();
            for net in cidrs {
                u.add_cidr(cidr_ids[net], *net);
            }
            u
        };
        let ipcache = self.ipcache(&all, &ids, &union);
        let u_union = universe(&union);
        if !new_cidrs.is_subset(&old_cidrs) {
            let current = self.in_force.clone();
            self.install(&current, &all, &ids, &labels, &u_union)?;
        }
        self.datapath.sync_ipcache(&ipcache)?;
        self.install(&next, &all, &ids, &labels, &u_union)?;
        if !old_cidrs.is_subset(&new_cidrs) {
            let ipcache = self.ipcache(&all, &ids, &new_cidrs);
            self.datapath.sync_ipcache(&ipcache)?;
            self.cidr_ids.retain(|net, _| new_cidrs.contains(net));
            self.install(&next, &all, &ids, &labels, &universe(&new_cidrs))?;
        }
        self.in_force = next;
        self.publish(&all, &ids, &labels);
        Ok(())
    }

    /// Endpoint addresses, the host's own addresses, the other nodes'
    /// addresses and policy prefixes; the more specific wins.
    fn ipcache(&self, all: &[EndpointSpec], ids: &[u32], cidrs: &BTreeSet<IpNet>) -> HashMap<IpNet, IpcacheEntry> {
        let mut out = HashMap::new();
        for net in cidrs {
            let entry = IpcacheEntry {
                identity: self.cidr_ids[net],
                endpoint_id: 0,
                interface: None,
            };
            out.insert(*net, entry);
        }
        let reserved_address = |identity| IpcacheEntry {
            identity,
            endpoint_id: 0,
            interface: None,
        };
        for ip in &self.remote_nodes {
            out.insert(IpNet::from(*ip), reserved_address(reserved::REMOTE_NODE));
        }
        for ip in datapath::local_addresses() {
            out.insert(IpNet::from(ip), reserved_address(reserved::HOST));
        }
        for (ep, id) in all.iter().zip(ids) {
            for ip in &ep.ips {
                let entry = IpcacheEntry {
                    identity: *id,
                    endpoint_id: ep.endpoint_id(),
                    interface: ep.interface.clone(),
                };
                out.insert(IpNet::from(*ip), entry);
            }
        }
        out
    }

    /// Compiles `set` for every guarded endpoint, stages it and commits.
    fn install(
        &mut self,
        set: &PolicySet,
        all: &[EndpointSpec],
        ids: &[u32],
        labels: &[Labels],
        universe: &Universe,
    ) -> Result<(), StateError> {
        let mut guarded = HashSet::new();
        for ((ep, id), l) in all.iter().zip(ids).zip(labels) {
            let Some(ifname) = &ep.interface else { continue };
            let policy = set.compile(l, &ep.named_ports(), universe, self.policies.options());
            self.datapath.upsert_endpoint(ifname, ep.endpoint_id(), *id, &policy)?;
            guarded.insert(ifname.clone());
        }
        for ifname in self.datapath.stale_attachments(&guarded) {
            tracing::info!(ifname, "no longer an endpoint; detaching");
            self.datapath.remove_endpoint(&ifname)?;
        }
        self.datapath.commit_policy()?;
        self.metrics.set_revision(self.datapath.revision());
        Ok(())
    }

    /// Makes the names of endpoints, identities and rules known to flows.
    /// Flows keep the snapshot they arrived under, so what did not change
    /// is shared with the previous snapshot rather than copied.
    fn publish(&mut self, all: &[EndpointSpec], ids: &[u32], labels: &[Labels]) {
        let previous = self.hub.current();
        let mut snapshot = Snapshot::default();
        let selected_by = |l: &Labels, dir| {
            let mut v: Vec<RuleMeta> = self
                .in_force
                .selecting(l, dir)
                .iter()
                .map(|(p, _)| RuleMeta::of(p, 0))
                .collect();
            v.dedup();
            v
        };
        for ((ep, id), l) in all.iter().zip(ids).zip(labels) {
            let meta = EndpointMeta {
                id: ep.endpoint_id(),
                identity: *id,
                namespace: ep.namespace.clone(),
                pod_name: ep.name.clone(),
                labels: l.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect(),
                selected_by_ingress: selected_by(l, compile::DIR_INGRESS),
                selected_by_egress: selected_by(l, compile::DIR_EGRESS),
            };
            let meta = match previous.endpoints_by_id.get(&meta.id) {
                Some(same) if **same == meta => same.clone(),
                _ => Arc::new(meta),
            };
            if let Some((ifname, index)) = ep.interface.as_ref().and_then(|i| Some((i, datapath::ifindex(i)?))) {
                snapshot.interfaces.insert(index, ifname.clone());
            }
            snapshot.endpoints_by_id.insert(meta.id, meta.clone());
            for ip in &ep.ips {
                snapshot.endpoints.insert(*ip, meta.clone());
            }
        }
        for (net, id) in &self.cidr_ids {
            snapshot
                .identity_labels
                .insert(*id, vec![format!("cidr:{net}"), "reserved:world".into()]);
        }
        for (id, meta) in self.in_force.rule_metas() {
            let meta = match previous.rules.get(&id) {
                Some(same) if **same == *meta => same.clone(),
                _ => Arc::new(meta.clone()),
            };
            snapshot.rules.insert(id, meta);
        }
        self.hub.publish(snapshot);
    }

    /// Applies `policies` (created or replaced); on error nothing changes.
    pub fn apply_policies(&mut self, policies: Vec<Policy>) -> Result<(), StateError> {
        let started = Instant::now();
        let result = self
            .policies
            .applying(&policies)
            .map_err(StateError::from)
            .and_then(|next| self.switch_policies(next));
        self.metrics.observe_apply(started.elapsed());
        result
    }

    /// Deletes the runtime policies keyed `keys`; on error nothing changes.
    pub fn delete_policies(&mut self, keys: &[String]) -> Result<(), StateError> {
        let started = Instant::now();
        let result = self
            .policies
            .deleting(keys)
            .map_err(StateError::from)
            .and_then(|next| self.switch_policies(next));
        self.metrics.observe_apply(started.elapsed());
        result
    }

    /// The policy metrics this state keeps up to date.
    pub fn policy_metrics(&self) -> Arc<PolicyMetrics> {
        self.metrics.clone()
    }

    fn switch_policies(&mut self, runtime: BTreeMap<String, Policy>) -> Result<(), StateError> {
        let old = self.in_force.clone();
        let result = self
            .project(PolicySet::new(self.policies.all_with(&runtime)))
            .and_then(|_| Ok(self.policies.commit(runtime)?));
        if let Err(e) = result {
            if let Err(again) = self.project(old) {
                tracing::error!(error = %again, "cannot restore the previous policies");
            }
            return Err(e);
        }
        Ok(())
    }

    pub fn list_policies(&self) -> Vec<PolicyView> {
        self.policies.list()
    }

    /// The verdict policy gives a new connection, without sending traffic.
    pub fn trace(&mut self, from: &str, to: &str, proto: u8, port: u16) -> Result<Trace, StateError> {
        let (from, to) = (self.trace_end(from)?, self.trace_end(to)?);
        Ok(trace::trace(
            &self.in_force,
            self.policies.options(),
            &from,
            &to,
            proto,
            port,
        ))
    }

    /// `ns/pod` or `pod` (namespace default), `key=value,…` labels of a
    /// local endpoint, an IP address, or `reserved:<name>`.
    fn trace_end(&self, spec: &str) -> Result<End, StateError> {
        let invalid = |reason: String| StateError::Invalid { reason };
        if let Some(name) = spec.strip_prefix("reserved:") {
            return crate::identity::RESERVED
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(id, _)| End::Reserved(*id))
                .ok_or_else(|| invalid(format!("unknown reserved identity {spec:?}")));
        }
        let endpoint = |ep: &EndpointSpec| End::Endpoint {
            labels: ep.security_labels(),
            named_ports: ep.named_ports(),
            local: ep.interface.is_some(),
        };
        if let Ok(ip) = spec.parse::<IpAddr>() {
            if let Some(ep) = self.all_endpoints().iter().find(|e| e.ips.contains(&ip)) {
                return Ok(endpoint(ep));
            }
            if datapath::local_addresses().contains(&ip) {
                return Ok(End::Reserved(reserved::HOST));
            }
            if self.remote_nodes.contains(&ip) {
                return Ok(End::Reserved(reserved::REMOTE_NODE));
            }
            return Ok(End::World(ip));
        }
        if spec.contains('=') {
            let mut map = BTreeMap::new();
            for pair in spec.split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| invalid(format!("{pair:?} in {spec:?} is not key=value")))?;
                let k = k.trim();
                let k = k.strip_prefix("k8s:").or_else(|| k.strip_prefix("any:")).unwrap_or(k);
                map.insert(k.to_string(), v.trim().to_string());
            }
            let ns = map
                .remove(crate::identity::NAMESPACE_LABEL)
                .unwrap_or_else(|| "default".to_string());
            return Ok(End::Endpoint {
                labels: Labels::for_endpoint(&map, &ns),
                named_ports: Vec::new(),
                local: true,
            });
        }
        let key = if spec.contains('/') {
            spec.to_string()
        } else {
            format!("default/{spec}")
        };
        self.all_endpoints()
            .iter()
            .find(|e| e.key() == key)
            .map(endpoint)
            .ok_or(StateError::NotFound { key })
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
        let policy = self
            .in_force
            .compile(&labels, &spec.named_ports(), &Universe::new(), self.policies.options());
        EndpointView {
            spec: spec.clone(),
            endpoint_id: spec.endpoint_id(),
            identity,
            origin: origin.to_string(),
            enforce_ingress: policy.flags & compile::ENFORCE_INGRESS != 0,
            enforce_egress: policy.flags & compile::ENFORCE_EGRESS != 0,
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

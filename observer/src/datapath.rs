//! The loader stage: loads the datapath object with aya, pins its maps and
//! links under the node's bpffs directory, attaches programs to endpoint
//! interfaces, and writes endpoint, ipcache and policy entries.
//!
//! Restart safety: maps and TCX links are pinned, so enforcement goes on
//! while no observer runs. A new observer re-opens the pinned maps and swaps
//! its freshly loaded programs into the pinned links with `bpf_link_update`
//! (atomic), so there is no instant without a program or without policy.
//!
//! Over 600 lines: every map's update protocol (the order that keeps
//! enforcement and connections intact) is kept beside the maps it orders.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, RingBuf};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use ipnet::IpNet;
use lumen_probes::abi;
use lumen_probes::maps as names;

use lumen_policy::compile::{EndpointPolicy, PolicyEntry};

/// Why the datapath could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("no BPF filesystem at {path}: mount one with `mount -t bpf bpf /sys/fs/bpf`")]
    NoBpffs { path: PathBuf },
    #[error("the kernel has no BTF ({path} is missing): Lumen needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf { path: PathBuf },
    #[error("cannot create {path}")]
    PinDir { path: PathBuf, source: std::io::Error },
    #[error("loading the datapath failed (are you root, with CAP_BPF and CAP_NET_ADMIN?)")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map {name}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("mapping map {name} into memory")]
    Mmap { name: &'static str, source: std::io::Error },
    #[error(
        "interface {ifname} does not exist in this network namespace; create it or fix the endpoint's `interface`"
    )]
    NoInterface { ifname: String },
    #[error("attaching to {ifname} ({hook}) failed: {reason}")]
    Attach {
        ifname: String,
        hook: &'static str,
        reason: String,
    },
}

/// Knobs of the datapath that user space sets.
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    /// Pins go to `<bpffs_root>/<node>`.
    pub pin_dir: PathBuf,
    pub btf_path: PathBuf,
    pub ring_buffer_bytes: u32,
    pub aggregation: u32,
    pub capture_bytes: u32,
    pub wakeup_bytes: u64,
    /// Hand traffic between local endpoints straight to the receiver.
    pub local_redirect: bool,
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is a valid C string.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// The bpffs mount point that `path` lives under must be a real bpffs.
fn check_bpffs(pin_dir: &Path) -> Result<(), DatapathError> {
    let mut probe = pin_dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    if is_bpffs(&probe) {
        Ok(())
    } else {
        Err(DatapathError::NoBpffs { path: probe })
    }
}

pub fn ifindex(ifname: &str) -> Option<u32> {
    let c = CString::new(ifname).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The unicast addresses of this network namespace's interfaces (loopback
/// and link-local left out): traffic from them is the host's.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we only read and then free once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out.retain(|ip| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && v6.segments()[0] & 0xffc0 != 0xfe80,
    });
    out.sort();
    out.dedup();
    out
}

/// The hardware address of an interface in this network namespace.
pub fn mac_address(ifname: &str) -> Option<[u8; 6]> {
    let name = CString::new(ifname).ok()?;
    if name.as_bytes_with_nul().len() > libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: a plain ioctl on a socket we own, with an ifreq we zeroed and
    // whose name fits; the fd is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req);
        libc::close(fd);
        if rc != 0 {
            return None;
        }
        let data = req.ifr_ifru.ifru_hwaddr.sa_data;
        Some([
            data[0] as u8,
            data[1] as u8,
            data[2] as u8,
            data[3] as u8,
            data[4] as u8,
            data[5] as u8,
        ])
    }
}

/// `(family, address bytes, prefix bits)` of a prefix for the ipcache trie.
fn ipcache_key(net: IpNet) -> Key<[u8; 20]> {
    let mut data = [0u8; 20];
    match net.trunc() {
        IpNet::V4(v4) => {
            data[0] = 4;
            data[4..8].copy_from_slice(&v4.addr().octets());
        }
        IpNet::V6(v6) => {
            data[0] = 6;
            data[4..20].copy_from_slice(&v6.addr().octets());
        }
    }
    Key::new(32 + u32::from(net.prefix_len()), data)
}

// lumen-policy numbers directions, actions and endpoint flags as the datapath does.
const _: () = {
    use lumen_policy::compile as c;
    assert!(c::DIR_INGRESS == abi::DIR_INGRESS && c::DIR_EGRESS == abi::DIR_EGRESS);
    assert!(c::ACTION_ALLOW == abi::ACTION_ALLOW && c::ACTION_DENY == abi::ACTION_DENY);
    assert!(c::ACTION_AUDIT == abi::ACTION_AUDIT);
    assert!(c::ENFORCE_INGRESS == abi::EP_ENFORCE_INGRESS && c::ENFORCE_EGRESS == abi::EP_ENFORCE_EGRESS);
    assert!(c::AUDIT_INGRESS == abi::EP_AUDIT_INGRESS && c::AUDIT_EGRESS == abi::EP_AUDIT_EGRESS);
};

/// The datapath's key for a policy entry of the endpoint policy `policy_id`.
pub fn policy_key(e: &PolicyEntry, policy_id: u32) -> abi::PolicyKey {
    let prefixlen = match (e.proto, e.port_bits) {
        (0, _) => abi::POLICY_PREFIX_FIXED,
        (_, 0) => abi::POLICY_PREFIX_FIXED + 8,
        (_, bits) => abi::POLICY_PREFIX_FIXED + 16 + u32::from(bits),
    };
    abi::PolicyKey {
        prefixlen,
        policy_id_be: policy_id.to_be(),
        direction: e.direction,
        identity_be: e.identity.to_be(),
        proto: e.proto,
        dport_be: if e.proto == 0 { 0 } else { e.port.to_be() },
        ..Default::default()
    }
}

pub fn policy_value(e: &PolicyEntry) -> abi::PolicyValue {
    abi::PolicyValue {
        action: e.action,
        rule_id: e.rule_id,
        ..Default::default()
    }
}

/// The LPM-trie key of a policy map key (aya keeps the prefix length apart).
pub fn policy_trie_key(k: &abi::PolicyKey) -> Key<[u8; 16]> {
    let mut data = [0u8; 16];
    data[0..4].copy_from_slice(&k.policy_id_be.to_ne_bytes());
    data[4] = k.direction;
    data[8..12].copy_from_slice(&k.identity_be.to_ne_bytes());
    data[12] = k.proto;
    data[14..16].copy_from_slice(&k.dport_be.to_ne_bytes());
    Key::new(k.prefixlen, data)
}

fn policy_id_of(key: &Key<[u8; 16]>) -> u32 {
    u32::from_be_bytes(key.data()[0..4].try_into().unwrap())
}

/// What the ipcache knows of an IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpcacheEntry {
    pub identity: u32,
    /// Endpoint id and host-side interface, for endpoints guarded here.
    pub endpoint_id: u32,
    pub interface: Option<String>,
}

/// Where an endpoint's programs are attached, and its policy: the one in
/// force and the one staged for the next commit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Attachment {
    ifindex: u32,
    endpoint_id: u32,
    identity: u32,
    active: (EndpointPolicy, u32),
    staged: Option<(EndpointPolicy, u32)>,
}

/// The endpoint maps (an array indexed by ifindex, a hash for the rare
/// large ifindex) and a mirror of their contents, so that user space never
/// has to scan the array.
struct EndpointTable {
    array: Array<MapData, abi::EndpointInfo>,
    ext: BpfHashMap<MapData, u32, abi::EndpointInfo>,
    mirror: HashMap<u32, abi::EndpointInfo>,
}

impl EndpointTable {
    fn open(ebpf: &mut Ebpf) -> Result<EndpointTable, DatapathError> {
        let array: Array<MapData, abi::EndpointInfo> = take(ebpf, names::ENDPOINTS)?;
        let ext: BpfHashMap<MapData, u32, abi::EndpointInfo> = take(ebpf, names::ENDPOINTS_EXT)?;
        let mut mirror: HashMap<u32, abi::EndpointInfo> = ext.iter().filter_map(Result::ok).collect();
        // Once per start: pick up what a previous observer left.
        for (idx, info) in array.iter().enumerate() {
            if let Ok(info) = info {
                if info.endpoint_id != 0 {
                    mirror.insert(idx as u32, info);
                }
            }
        }
        Ok(EndpointTable { array, ext, mirror })
    }

    fn set(&mut self, ifindex: u32, mut info: abi::EndpointInfo) -> Result<(), DatapathError> {
        // Keep the pod MAC the datapath learnt for this same endpoint.
        let current = if ifindex < abi::ENDPOINTS_ARRAY {
            self.array.get(&ifindex, 0).ok()
        } else {
            self.ext.get(&ifindex, 0).ok()
        };
        if let Some(c) = current.filter(|c| c.endpoint_id == info.endpoint_id) {
            info.pod_mac = c.pod_mac;
        }
        if ifindex < abi::ENDPOINTS_ARRAY {
            self.array.set(ifindex, info, 0).map_err(map_err(names::ENDPOINTS))?;
        } else {
            self.ext
                .insert(ifindex, info, 0)
                .map_err(map_err(names::ENDPOINTS_EXT))?;
        }
        self.mirror.insert(ifindex, info);
        Ok(())
    }

    fn remove(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        if ifindex < abi::ENDPOINTS_ARRAY {
            self.array
                .set(ifindex, abi::EndpointInfo::default(), 0)
                .map_err(map_err(names::ENDPOINTS))?;
        } else {
            let _ = self.ext.remove(&ifindex);
        }
        self.mirror.remove(&ifindex);
        Ok(())
    }

    fn policy_ids(&self) -> HashSet<u32> {
        self.mirror.values().flat_map(|v| v.policy_id).collect()
    }
}

pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    endpoints: EndpointTable,
    ipcache: LpmTrie<MapData, [u8; 20], abi::IpcacheValue>,
    policy: LpmTrie<MapData, [u8; 16], abi::PolicyValue>,
    config: Array<MapData, abi::Config>,
    /// The last revision committed, pinned beside the conntrack map.
    revision_pin: Array<MapData, u32>,
    attached: HashMap<String, Attachment>,
    next_policy_id: u32,
    /// The datapath uses policy slot `revision & 1`.
    revision: u32,
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn take<T: TryFrom<Map, Error = aya::maps::MapError>>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError> {
    let map = ebpf.take_map(name).ok_or(DatapathError::Map {
        name,
        source: aya::maps::MapError::InvalidName { name: name.into() },
    })?;
    T::try_from(map).map_err(map_err(name))
}

impl Datapath {
    /// Loads the programs and opens (or creates and pins) the maps.
    pub fn load(cfg: &DatapathConfig) -> Result<Datapath, DatapathError> {
        if !cfg.btf_path.exists() {
            return Err(DatapathError::NoBtf {
                path: cfg.btf_path.clone(),
            });
        }
        check_bpffs(&cfg.pin_dir)?;
        for dir in [cfg.pin_dir.clone(), cfg.pin_dir.join("links")] {
            std::fs::create_dir_all(&dir).map_err(|source| DatapathError::PinDir { path: dir, source })?;
        }
        // Every start gets a fresh ring buffer: aya 0.13's reader assumes the
        // consumer starts at position 0 and spins on a reused buffer (found
        // restarting observers in-process). The old buffer goes with the
        // previous programs once the links hold the new ones; events they
        // write meanwhile are lost uncounted (a few, during the swap).
        match std::fs::remove_file(cfg.pin_dir.join(names::EVENTS)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(DatapathError::PinDir {
                    path: cfg.pin_dir.join(names::EVENTS),
                    source: e,
                })
            }
            _ => {}
        }
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(&cfg.pin_dir)
            .set_max_entries(names::EVENTS, cfg.ring_buffer_bytes)
            .load(lumen_probes::DATAPATH_OBJECT)?;
        for name in [lumen_probes::PROG_FROM_ENDPOINT, lumen_probes::PROG_TO_ENDPOINT] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .expect("program is in the object")
                .try_into()
                .map_err(|source| DatapathError::Program {
                    name: prog_name(name),
                    source,
                })?;
            prog.load().map_err(|source| DatapathError::Program {
                name: prog_name(name),
                source,
            })?;
        }
        // Conntrack entries outlive an observer and carry the revision they
        // were decided under: continue past the last one committed, so that
        // every entry of a previous observer is decided again.
        let mut revision_pin: Array<MapData, u32> = take(&mut ebpf, names::POLICY_REVISION)?;
        let revision = revision_pin
            .get(&0, 0)
            .map_err(map_err(names::POLICY_REVISION))?
            .wrapping_add(1);
        revision_pin
            .set(0, revision, 0)
            .map_err(map_err(names::POLICY_REVISION))?;
        let mut config: Array<MapData, abi::Config> = take(&mut ebpf, names::CONFIG)?;
        config
            .set(
                0,
                abi::Config {
                    aggregation: cfg.aggregation,
                    capture_len: cfg.capture_bytes.min(abi::CAPTURE_MAX),
                    wakeup_bytes: cfg.wakeup_bytes.min(u64::from(cfg.ring_buffer_bytes) / 4),
                    local_redirect: u32::from(cfg.local_redirect),
                    policy_revision: revision,
                },
                0,
            )
            .map_err(map_err(names::CONFIG))?;
        let endpoints = EndpointTable::open(&mut ebpf)?;
        let next_policy_id = endpoints.policy_ids().into_iter().max().unwrap_or(0) + 1;
        Ok(Datapath {
            ipcache: take(&mut ebpf, names::IPCACHE)?,
            policy: take(&mut ebpf, names::POLICY)?,
            endpoints,
            config,
            ebpf,
            pin_dir: cfg.pin_dir.clone(),
            attached: HashMap::new(),
            next_policy_id,
            revision,
            revision_pin,
        })
    }

    /// The policy revision the datapath decides under.
    pub fn revision(&self) -> u32 {
        self.revision
    }

    /// Changes the aggregation level; the datapath uses it from the next packet.
    pub fn set_aggregation(&mut self, level: u32) -> Result<(), DatapathError> {
        let mut cfg = self.config.get(&0, 0).map_err(map_err(names::CONFIG))?;
        cfg.aggregation = level;
        self.config.set(0, cfg, 0).map_err(map_err(names::CONFIG))
    }

    /// The ring buffer, for the reader stage.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, DatapathError> {
        take(&mut self.ebpf, names::EVENTS)
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Makes the ipcache hold exactly `entries`: prefix → identity, and the
    /// host-side interface for endpoints guarded on this node.
    pub fn sync_ipcache(&mut self, entries: &HashMap<IpNet, IpcacheEntry>) -> Result<(), DatapathError> {
        for (net, entry) in entries {
            let ifindex = entry.interface.as_deref().and_then(ifindex).unwrap_or(0);
            let value = abi::IpcacheValue {
                identity: entry.identity,
                ifindex,
                endpoint_id: if ifindex == 0 { 0 } else { entry.endpoint_id },
                pad: 0,
            };
            self.ipcache
                .insert(&ipcache_key(*net), value, 0)
                .map_err(map_err(names::IPCACHE))?;
        }
        let wanted: HashSet<[u8; 20]> = entries.keys().map(|net| ipcache_key(*net).data()).collect();
        let stale: Vec<_> = self
            .ipcache
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(&k.data()))
            .collect();
        for key in stale {
            self.ipcache.remove(&key).map_err(map_err(names::IPCACHE))?;
        }
        Ok(())
    }

    /// Guards `ifname` as endpoint `endpoint_id` with `identity`, and stages
    /// `policy` for it: the datapath enforces it from the next
    /// [`commit_policy`](Self::commit_policy), together with every other
    /// endpoint's. A new endpoint starts with `policy` at once.
    pub fn upsert_endpoint(
        &mut self,
        ifname: &str,
        endpoint_id: u32,
        identity: u32,
        policy: &EndpointPolicy,
    ) -> Result<(), DatapathError> {
        let ifindex = ifindex(ifname).ok_or_else(|| DatapathError::NoInterface {
            ifname: ifname.to_string(),
        })?;
        let known = self
            .attached
            .get(ifname)
            .filter(|a| a.ifindex == ifindex && a.endpoint_id == endpoint_id)
            .cloned();
        if let Some(a) = &known {
            let pending = a.staged.as_ref().unwrap_or(&a.active);
            if pending.0 == *policy && a.identity == identity {
                return Ok(());
            }
        }
        let policy_id = match &known {
            Some(a) if a.active.0 == *policy => a.active.1,
            _ => self.write_policy(policy)?,
        };
        let new = (policy.clone(), policy_id);
        let (active, staged) = match known {
            Some(a) if a.active.1 != policy_id => (a.active, Some(new)),
            _ => (new, None),
        };
        let slot = (self.revision & 1) as usize;
        self.set_endpoint(
            ifname,
            ifindex,
            endpoint_id,
            identity,
            [&active, staged.as_ref().unwrap_or(&active)],
            slot,
        )?;
        self.attach(ifname)?;
        self.attached.insert(
            ifname.to_string(),
            Attachment {
                ifindex,
                endpoint_id,
                identity,
                active,
                staged,
            },
        );
        Ok(())
    }

    fn write_policy(&mut self, policy: &EndpointPolicy) -> Result<u32, DatapathError> {
        let policy_id = self.allocate_policy_id();
        for entry in &policy.entries {
            self.policy
                .insert(&policy_trie_key(&policy_key(entry, policy_id)), policy_value(entry), 0)
                .map_err(map_err(names::POLICY))?;
        }
        Ok(policy_id)
    }

    /// One map update sets identity and both policy slots: `policies[0]`
    /// into `active_slot`, `policies[1]` into the other.
    fn set_endpoint(
        &mut self,
        ifname: &str,
        ifindex: u32,
        endpoint_id: u32,
        identity: u32,
        policies: [&(EndpointPolicy, u32); 2],
        active_slot: usize,
    ) -> Result<(), DatapathError> {
        let mut info = abi::EndpointInfo {
            endpoint_id,
            identity,
            host_mac: mac_address(ifname).unwrap_or_default(),
            ..Default::default()
        };
        for (i, (policy, id)) in policies.into_iter().enumerate() {
            let slot = (active_slot + i) % 2;
            info.policy_id[slot] = *id;
            info.flags[slot] = policy.flags;
        }
        self.endpoints.set(ifindex, info)
    }

    /// Switches every endpoint to its staged policy at once (one write of
    /// the policy revision), then drops policy entries nothing refers to.
    pub fn commit_policy(&mut self) -> Result<(), DatapathError> {
        if self.attached.values().any(|a| a.staged.is_some()) {
            let mut cfg = self.config.get(&0, 0).map_err(map_err(names::CONFIG))?;
            self.revision = self.revision.wrapping_add(1);
            cfg.policy_revision = self.revision;
            self.revision_pin
                .set(0, self.revision, 0)
                .map_err(map_err(names::POLICY_REVISION))?;
            self.config.set(0, cfg, 0).map_err(map_err(names::CONFIG))?;
            let slot = (self.revision & 1) as usize;
            let staged: Vec<(String, Attachment)> = self
                .attached
                .iter()
                .filter(|(_, a)| a.staged.is_some())
                .map(|(n, a)| (n.clone(), a.clone()))
                .collect();
            // The slot just left now gets the new policy too, so both agree
            // until the next change.
            for (ifname, mut a) in staged {
                a.active = a.staged.take().expect("staged");
                self.set_endpoint(
                    &ifname,
                    a.ifindex,
                    a.endpoint_id,
                    a.identity,
                    [&a.active, &a.active],
                    slot,
                )?;
                self.attached.insert(ifname, a);
            }
        }
        self.collect_policy_garbage()
    }

    /// Stops guarding `ifname`.
    pub fn remove_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        for hook in ["from", "to"] {
            let _ = std::fs::remove_file(self.link_pin(ifname, hook));
        }
        let ifindex = self
            .attached
            .remove(ifname)
            .map(|a| a.ifindex)
            .or_else(|| ifindex(ifname));
        if let Some(idx) = ifindex {
            self.endpoints.remove(idx)?;
        }
        self.collect_policy_garbage()
    }

    /// Interfaces guarded by a previous observer that are not in `keep`.
    pub fn stale_attachments(&self, keep: &HashSet<String>) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.pin_dir.join("links")) else {
            return vec![];
        };
        let mut out: Vec<String> = dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.rsplit_once('-'))
                    .map(|(i, _)| i.to_string())
            })
            .filter(|i| !keep.contains(i))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn allocate_policy_id(&mut self) -> u32 {
        let in_use = self.endpoints.policy_ids();
        loop {
            let id = self.next_policy_id;
            self.next_policy_id = self.next_policy_id.wrapping_add(1).max(1);
            if !in_use.contains(&id) {
                return id;
            }
        }
    }

    /// Removes policy entries no endpoint refers to any more.
    fn collect_policy_garbage(&mut self) -> Result<(), DatapathError> {
        let live = self.endpoints.policy_ids();
        let dead: Vec<_> = self
            .policy
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !live.contains(&policy_id_of(k)))
            .collect();
        for key in dead {
            self.policy.remove(&key).map_err(map_err(names::POLICY))?;
        }
        Ok(())
    }

    fn link_pin(&self, ifname: &str, hook: &str) -> PathBuf {
        self.pin_dir.join("links").join(format!("{ifname}-{hook}"))
    }

    fn attach(&mut self, ifname: &str) -> Result<(), DatapathError> {
        for (prog_name, attach_type, hook) in [
            (lumen_probes::PROG_FROM_ENDPOINT, TcAttachType::Ingress, "from"),
            (lumen_probes::PROG_TO_ENDPOINT, TcAttachType::Egress, "to"),
        ] {
            let pin = self.link_pin(ifname, hook);
            let prog: &mut SchedClassifier = self
                .ebpf
                .program_mut(prog_name)
                .expect("program is in the object")
                .try_into()
                .expect("a classifier");
            let attach_err = |reason: String| DatapathError::Attach {
                ifname: ifname.to_string(),
                hook,
                reason,
            };
            if pin.exists() {
                // A previous observer's link: swap our program in atomically.
                let swapped = PinnedLink::from_pin(&pin)
                    .map_err(|e| crate::error_chain(&e))
                    .and_then(|p| SchedClassifierLink::try_from(FdLink::from(p)).map_err(|e| crate::error_chain(&e)))
                    .and_then(|link| prog.attach_to_link(link).map_err(|e| crate::error_chain(&e)));
                // A link whose interface went away answers ENOLINK: re-attach.
                match swapped {
                    Ok(id) => {
                        drop(prog.take_link(id));
                        continue;
                    }
                    Err(reason) => tracing::info!(ifname, hook, reason, "pinned link unusable; re-attaching"),
                }
                std::fs::remove_file(&pin).map_err(|e| attach_err(crate::error_chain(&e)))?;
            }
            let id = prog
                .attach_with_options(ifname, attach_type, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .map_err(|e| attach_err(crate::error_chain(&e)))?;
            let link = prog.take_link(id).map_err(|e| attach_err(crate::error_chain(&e)))?;
            let fd_link = FdLink::try_from(link).map_err(|e| attach_err(crate::error_chain(&e)))?;
            fd_link.pin(&pin).map_err(|e| attach_err(crate::error_chain(&e)))?;
        }
        Ok(())
    }
}

fn prog_name(name: &str) -> &'static str {
    if name == lumen_probes::PROG_FROM_ENDPOINT {
        lumen_probes::PROG_FROM_ENDPOINT
    } else {
        lumen_probes::PROG_TO_ENDPOINT
    }
}

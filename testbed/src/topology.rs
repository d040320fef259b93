//! The testbed itself: nodes, pods and the routed topology between them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use crate::fabric::{Fabric, NodeAddress};
use crate::netns;
use crate::process::{spawn_in, Process};
use crate::{cmd, Error};

/// Gateway address every pod routes through; it lives on each host-side veth.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// IPv6 gateway (link-local) on each host-side veth.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// Writes to stderr without ever panicking (unlike `eprintln!`), for Drop.
pub(crate) fn log(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// A simulated Kubernetes node: a network namespace that routes for its pods.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name given to [`Testbed::add_node`].
    pub name: String,
    /// Netns name under `/var/run/netns`.
    pub netns: String,
    /// The node's addresses on the fabric, once it is joined to one (see
    /// [`Testbed::add_fabric`]); processes in the node netns can listen on
    /// them.
    pub address: Option<NodeAddress>,
}

impl Node {
    /// Starts `cmd` inside the node's netns; see [`Process`].
    pub fn spawn(&self, cmd: Command) -> Result<Process, Error> {
        spawn_in(&self.netns, cmd)
    }
}

/// What a pod should look like; see [`Testbed::add_pod`].
#[derive(Clone, Debug)]
pub struct PodSpec {
    /// Pod name, also used in its netns name.
    pub name: String,
    /// Kubernetes namespace, only carried along as metadata.
    pub namespace: String,
    /// Pod labels, only carried along as metadata.
    pub labels: BTreeMap<String, String>,
    /// The pod's IPv4 address (configured as a /32).
    pub ipv4: Ipv4Addr,
    /// The pod's optional IPv6 address (configured as a /128).
    pub ipv6: Option<Ipv6Addr>,
}

impl PodSpec {
    /// A spec without labels or IPv6.
    pub fn new(name: &str, namespace: &str, ipv4: Ipv4Addr) -> PodSpec {
        PodSpec {
            name: name.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            ipv4,
            ipv6: None,
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> PodSpec {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the IPv6 address.
    pub fn ipv6(mut self, ipv6: Ipv6Addr) -> PodSpec {
        self.ipv6 = Some(ipv6);
        self
    }
}

/// A pod: its own netns with `eth0`, veth-attached to its node's netns.
#[derive(Clone, Debug)]
pub struct Pod {
    /// Pod name.
    pub name: String,
    /// Kubernetes namespace (metadata).
    pub namespace: String,
    /// Labels (metadata).
    pub labels: BTreeMap<String, String>,
    /// IPv4 address on the pod's `eth0`.
    pub ipv4: Ipv4Addr,
    /// IPv6 address on the pod's `eth0`, if any.
    pub ipv6: Option<Ipv6Addr>,
    /// The pod's netns name.
    pub netns: String,
    /// Host side of the veth; lives in `node_netns`.
    pub host_ifname: String,
    /// Name of the node the pod runs on.
    pub node: String,
    /// The node's netns name.
    pub node_netns: String,
}

impl Pod {
    /// Starts `cmd` inside the pod's netns; see [`Process`].
    pub fn spawn(&self, cmd: Command) -> Result<Process, Error> {
        spawn_in(&self.netns, cmd)
    }

    /// The pod's addresses, IPv4 first.
    pub fn ips(&self) -> Vec<IpAddr> {
        let mut ips = vec![IpAddr::V4(self.ipv4)];
        ips.extend(self.ipv6.map(IpAddr::V6));
        ips
    }
}

/// Owns every netns it creates and deletes them all on drop, killing the
/// processes inside first. Several testbeds can exist at once, in one or in
/// many processes, because all names start with a unique prefix.
#[derive(Debug)]
pub struct Testbed {
    pub(crate) prefix: String,
    pub(crate) nodes: Vec<Node>,
    pub(crate) pods: Vec<Pod>,
    /// Every netns created so far, in creation order; deleted in reverse.
    netns: Vec<String>,
    /// Links created in the caller's netns; deleted before the netns.
    pub(crate) root_links: Vec<String>,
    /// Pod addresses per node netns, to reject duplicates with a clear error.
    addresses: HashSet<(String, IpAddr)>,
    pub(crate) fabric: Option<Fabric>,
}

impl Testbed {
    /// Creates an empty testbed. Fails with [`Error::NotRoot`] unless root
    /// and with [`Error::MissingTool`] if `ip` cannot be run.
    pub fn new() -> Result<Testbed, Error> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(Error::NotRoot { euid });
        }
        cmd::ip(&["-V"])?;
        let prefix = netns::next_prefix()?.to_string();
        Ok(Testbed {
            prefix,
            nodes: Vec::new(),
            pods: Vec::new(),
            netns: Vec::new(),
            root_links: Vec::new(),
            addresses: HashSet::new(),
            fabric: None,
        })
    }

    /// The prefix of every name this testbed creates, e.g. `lt1f3as0`; see
    /// the crate docs for the scheme.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Nodes added so far.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Pods added so far.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Names of all netns this testbed owns, the fabric's included.
    pub fn netns_names(&self) -> &[String] {
        &self.netns
    }

    /// Adds a node: a netns named `{prefix}-{name}` with `lo` up, IPv4 and
    /// IPv6 forwarding on and reverse-path filtering off. Once the testbed
    /// has a fabric, the node is joined to it and the returned value carries
    /// its [`Node::address`].
    pub fn add_node(&mut self, name: &str) -> Result<Node, Error> {
        netns::validate_name("node", name)?;
        let node = Node {
            name: name.into(),
            netns: format!("{}-{name}", self.prefix),
            address: None,
        };
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(Error::Invalid {
                what: format!("node name {name:?}"),
                reason: "a node with this name already exists".into(),
            });
        }
        self.check_netns_free(&format!("node name {name:?}"), &node.netns)?;
        self.create_netns(&node.netns)?;
        netns::write_sysctls(
            &node.netns,
            &[
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv6/conf/all/forwarding", "1"),
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
                // Host-side veths get only the fe80::1 we assign.
                ("net/ipv6/conf/default/addr_gen_mode", "1"),
            ],
        )?;
        cmd::ip_batch(&node.netns, &["link set lo up".into()])?;
        self.nodes.push(node);
        if self.fabric.is_some() {
            self.join(self.nodes.len() - 1)?;
        }
        Ok(self.nodes[self.nodes.len() - 1].clone())
    }

    /// Adds a pod on `node`: a netns `{prefix}-{node}-{pod}` whose `eth0` is
    /// veth-paired with `{prefix}h{idx}` in the node netns, addressed and
    /// routed as described in the crate docs. On a testbed with a fabric,
    /// every other node gets routes to the pod.
    pub fn add_pod(&mut self, node: &Node, spec: PodSpec) -> Result<Pod, Error> {
        // The caller's copy may predate the fabric; ours is current.
        let Some(node) = self.nodes.iter().find(|n| n.netns == node.netns).cloned() else {
            return Err(Error::Invalid {
                what: format!("node {:?}", node.name),
                reason: format!("not a node of testbed {}", self.prefix),
            });
        };
        let node = &node;
        netns::validate_name("pod", &spec.name)?;
        self.check_addresses(node, &spec)?;
        let pod = Pod {
            netns: format!("{}-{}", node.netns, spec.name),
            host_ifname: netns::host_ifname(&self.prefix, self.pods.len() as u32)?,
            node: node.name.clone(),
            node_netns: node.netns.clone(),
            name: spec.name,
            namespace: spec.namespace,
            labels: spec.labels,
            ipv4: spec.ipv4,
            ipv6: spec.ipv6,
        };
        self.check_netns_free(&format!("pod name {:?}", pod.name), &pod.netns)?;
        self.create_netns(&pod.netns)?;
        // RA/autoconf/RS off and no automatic link-local address, so the pod
        // sends as little spontaneous IPv6 traffic as possible. `default`
        // must be set before eth0 appears for it to apply there.
        let mut sysctls = vec![
            ("net/ipv6/conf/all/accept_ra", "0"),
            ("net/ipv6/conf/default/accept_ra", "0"),
            ("net/ipv6/conf/all/autoconf", "0"),
            ("net/ipv6/conf/default/autoconf", "0"),
            ("net/ipv6/conf/all/router_solicitations", "0"),
            ("net/ipv6/conf/default/router_solicitations", "0"),
            ("net/ipv6/conf/default/addr_gen_mode", "1"),
            ("net/ipv4/conf/all/rp_filter", "0"),
            ("net/ipv4/conf/default/rp_filter", "0"),
            // Dual-stack listeners on [::] rely on this (the netns default).
            ("net/ipv6/bindv6only", "0"),
        ];
        if pod.ipv6.is_none() {
            // Without IPv6 on eth0 an IPv4-only pod emits no MLD reports at
            // all; `lo` keeps IPv6, so `[::]` listeners still work.
            sysctls.push(("net/ipv6/conf/default/disable_ipv6", "1"));
        }
        netns::write_sysctls(&pod.netns, &sysctls)?;

        let host = &pod.host_ifname;
        cmd::ip_batch(
            &node.netns,
            &[format!("link add {host} type veth peer name eth0 netns {}", pod.netns)],
        )?;
        let mut node_cmds = vec![
            format!("link set {host} addrgenmode none"),
            format!("link set {host} up"),
            format!("addr add {GATEWAY_V4}/32 dev {host}"),
            format!("route add {}/32 dev {host}", pod.ipv4),
        ];
        let mut pod_cmds = vec![
            "link set lo up".to_string(),
            "link set eth0 addrgenmode none".into(),
            "link set eth0 up".into(),
            format!("addr add {}/32 dev eth0", pod.ipv4),
            format!("route add {GATEWAY_V4} dev eth0 scope link"),
            format!("route add default via {GATEWAY_V4} dev eth0"),
        ];
        match pod.ipv6 {
            Some(v6) => {
                node_cmds.push(format!("addr add {GATEWAY_V6}/64 dev {host} nodad"));
                node_cmds.push(format!("route add {v6}/128 dev {host}"));
                pod_cmds.push(format!("addr add {v6}/128 dev eth0 nodad"));
                pod_cmds.push(format!("route add ::/0 via {GATEWAY_V6} dev eth0"));
            }
            // The node has forwarding on, so an IPv6-enabled host side would
            // join (and report) the all-routers groups.
            None => netns::write_sysctls(&node.netns, &[(&format!("net/ipv6/conf/{host}/disable_ipv6"), "1")])?,
        }
        cmd::ip_batch(&node.netns, &node_cmds)?;
        cmd::ip_batch(&pod.netns, &pod_cmds)?;
        self.addresses
            .extend(pod.ips().into_iter().map(|ip| (node.netns.clone(), ip)));
        self.pods.push(pod.clone());
        self.advertise(&pod)?;
        Ok(pod)
    }

    fn check_addresses(&self, node: &Node, spec: &PodSpec) -> Result<(), Error> {
        let mut ips = vec![IpAddr::V4(spec.ipv4)];
        ips.extend(spec.ipv6.map(IpAddr::V6));
        for ip in ips {
            let reason = if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
                Some("must be a unicast address".to_string())
            } else if ip == IpAddr::V4(GATEWAY_V4) {
                Some("is the pods' gateway address".to_string())
            } else if matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80) {
                Some("must not be link-local".to_string())
            } else if self.addresses.contains(&(node.netns.clone(), ip)) {
                Some(format!("already used by a pod on node {}", node.name))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::Invalid {
                    what: format!("address {ip} of pod {:?}", spec.name),
                    reason,
                });
            }
            if node.address.is_some() {
                self.check_fabric_address(node, &spec.name, ip)?;
            }
        }
        Ok(())
    }

    /// Names are joined with `-`, which names may contain too, so e.g. node
    /// `a` + pod `b-c` and node `a-b` + pod `c` would share a netns name.
    pub(crate) fn check_netns_free(&self, what: &str, netns: &str) -> Result<(), Error> {
        if self.netns.iter().any(|n| n == netns) {
            return Err(Error::Invalid {
                what: what.into(),
                reason: format!("netns {netns} already exists in this testbed"),
            });
        }
        Ok(())
    }

    /// Creates a netns and records it for cleanup before anything else can fail.
    pub(crate) fn create_netns(&mut self, name: &str) -> Result<(), Error> {
        netns::create_netns(name)?;
        self.netns.push(name.into());
        Ok(())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // The caller-side fabric veth would also vanish with the fabric
        // netns, but only once the kernel has torn that down; deleting it
        // here means it is gone when drop returns.
        for link in self.root_links.drain(..) {
            if let Err(e) = cmd::ip(&["link", "del", &link]) {
                log(format_args!("lumen-testbed: deleting link {link}: {e}"));
            }
        }
        // Kill everything first so no process keeps a namespace alive, then
        // delete pods before nodes (the reverse of creation).
        if let Err(e) = netns::kill_pids_in(&self.netns) {
            log(format_args!("lumen-testbed: killing processes of {}: {e}", self.prefix));
        }
        for name in self.netns.drain(..).rev() {
            if let Err(e) = netns::delete_netns(&name) {
                log(format_args!("lumen-testbed: deleting netns {name}: {e}"));
            }
        }
    }
}

//! The cluster network: a bridge in its own netns that joins the nodes, host
//! routes that make every pod reachable from every node, and a veth from the
//! caller's netns so the test process can reach node addresses.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use crate::netns::{self, OwnerPrefix, IFNAME_MAX, NETNS_DIR};
use crate::topology::{Node, Pod, Testbed};
use crate::{cmd, Error};

/// Name of the node side of a node's veth to the fabric, in the node netns.
pub const FABRIC_IFNAME: &str = "fab0";
/// Name of the bridge inside the fabric netns.
pub const FABRIC_BRIDGE: &str = "br0";
/// Prefix length of the fabric's IPv4 subnet.
pub const FABRIC_V4_PREFIX_LEN: u8 = 24;
/// The fabric's IPv6 subnet, the same in every testbed (it is only
/// configured inside node netns, which are private to their testbed).
pub const FABRIC_V6_SUBNET: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0);
/// Prefix length of [`FABRIC_V6_SUBNET`].
pub const FABRIC_V6_PREFIX_LEN: u8 = 64;

/// Third octet of the first candidate IPv4 subnet, `192.168.200.0/24`.
const FIRST_SUBNET: u8 = 200;
/// How many `/24`s (`192.168.200.0` to `192.168.249.0`) fabrics may use at
/// once, across all processes.
const SUBNETS: u8 = 50;
/// Last octet of the caller-side address on the fabric.
const ROOT_HOST: u8 = 254;
/// Highest node number; `.254` belongs to the caller and `.255` is broadcast.
const MAX_NODES: usize = ROOT_HOST as usize - 1;
/// Appended to the testbed prefix to name the caller-side veth. Not a hex
/// digit, so the name cannot be read as a different prefix.
const ROOT_SUFFIX: char = 'r';
/// Name of the caller-side veth's peer, a port of the bridge.
const ROOT_PORT: &str = "root";

/// A node's addresses on the fabric, on [`FABRIC_IFNAME`] in its netns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    /// Position in join order, from 1; the last part of both addresses.
    pub index: u8,
    /// `192.168.{200 + k}.{index}`, inside [`Fabric::ipv4_subnet`].
    pub ipv4: Ipv4Addr,
    /// `fd01::{index}`, inside [`FABRIC_V6_SUBNET`].
    pub ipv6: Ipv6Addr,
}

impl NodeAddress {
    fn new(fabric: &Fabric, index: u8) -> NodeAddress {
        let [a, b, c, _] = fabric.ipv4_subnet.octets();
        NodeAddress {
            index,
            ipv4: Ipv4Addr::new(a, b, c, index),
            ipv6: Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, u16::from(index)),
        }
    }

    /// Both addresses, IPv4 first.
    pub fn ips(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.ipv4), IpAddr::V6(self.ipv6)]
    }
}

/// The cluster network of a testbed; see [`Testbed::add_fabric`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fabric {
    /// Netns holding the bridge, `{prefix}-fabric`.
    pub netns: String,
    /// The bridge inside [`Fabric::netns`]; every node and the caller have a
    /// port on it.
    pub bridge: String,
    /// Network address of the fabric's IPv4 `/24`, unique among the fabrics
    /// of all live testbeds on the machine, e.g. `192.168.200.0`.
    pub ipv4_subnet: Ipv4Addr,
    /// The veth in the netns that called [`Testbed::add_fabric`] (normally
    /// the init netns), `{prefix}r`.
    pub root_ifname: String,
    /// Address of [`Fabric::root_ifname`], `.254` of the subnet. IPv4 only:
    /// IPv6 is disabled on that veth so it sends nothing unprompted.
    pub root_ipv4: Ipv4Addr,
}

impl Fabric {
    /// Whether `ip` lies in one of the fabric's subnets.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => same_net_v4(v4, self.ipv4_subnet, FABRIC_V4_PREFIX_LEN),
            IpAddr::V6(v6) => in_fabric_v6(v6),
        }
    }
}

fn in_fabric_v6(ip: Ipv6Addr) -> bool {
    ip.segments()[..4] == FABRIC_V6_SUBNET.segments()[..4]
}

impl Testbed {
    /// Adds the cluster network and joins every node to it, those added so
    /// far and those added later (by [`Testbed::add_node`]). Afterwards
    /// every pod is reachable from every pod, over IPv4 and (if both have
    /// it) IPv6, and the calling netns reaches every node over IPv4.
    ///
    /// Builds a netns `{prefix}-fabric` with the bridge [`FABRIC_BRIDGE`],
    /// and a veth [`Fabric::root_ifname`] from the calling thread's netns
    /// into it, holding [`Fabric::root_ipv4`]. Nodes get [`NodeAddress`]es;
    /// see the crate docs for the scheme. [`Node`] values cloned before this
    /// call do not show their address; take them from [`Testbed::nodes`].
    pub fn add_fabric(&mut self) -> Result<Fabric, Error> {
        if self.fabric.is_some() {
            return Err(Error::Invalid {
                what: format!("fabric of testbed {}", self.prefix),
                reason: "the testbed already has one".into(),
            });
        }
        self.check_pods_fit_fabric()?;
        let netns = format!("{}-fabric", self.prefix);
        self.check_netns_free("fabric", &netns)?;
        self.create_netns(&netns)?;
        // The bridge forwards frames without any IP of its own; without IPv6
        // it sends no MLD or router solicitations into the fabric either.
        // br_netfilter, if loaded, hands bridged packets to this netns'
        // iptables, which are empty, so it needs no switching off.
        netns::write_sysctls(
            &netns,
            &[
                ("net/ipv6/conf/all/disable_ipv6", "1"),
                ("net/ipv6/conf/default/disable_ipv6", "1"),
            ],
        )?;
        // Multicast snooping off: the bridge then floods neighbour
        // solicitations instead of relying on MLD reports it may have missed.
        cmd::ip_batch(
            &netns,
            &[
                format!("link add {FABRIC_BRIDGE} type bridge mcast_snooping 0 stp_state 0"),
                format!("link set {FABRIC_BRIDGE} up"),
            ],
        )?;
        let root_ifname = format!("{}{ROOT_SUFFIX}", self.prefix);
        debug_assert!(root_ifname.len() <= IFNAME_MAX);
        let ipv4_subnet = self.attach_root(&netns, &root_ifname)?;
        cmd::ip_batch(
            &netns,
            &[
                format!("link set {ROOT_PORT} master {FABRIC_BRIDGE}"),
                format!("link set {ROOT_PORT} up"),
            ],
        )?;
        let [a, b, c, _] = ipv4_subnet.octets();
        let fabric = Fabric {
            netns,
            bridge: FABRIC_BRIDGE.into(),
            ipv4_subnet,
            root_ifname,
            root_ipv4: Ipv4Addr::new(a, b, c, ROOT_HOST),
        };
        self.fabric = Some(fabric.clone());
        for i in 0..self.nodes.len() {
            self.join(i)?;
        }
        Ok(fabric)
    }

    /// Checks, before anything is built, that the pods added so far can
    /// share the fabric's address space.
    fn check_pods_fit_fabric(&self) -> Result<(), Error> {
        for (i, pod) in self.pods.iter().enumerate() {
            let clash = if pod.ipv6.is_some_and(in_fabric_v6) {
                Some(format!(
                    "lies in the fabric subnet {FABRIC_V6_SUBNET}/{FABRIC_V6_PREFIX_LEN}"
                ))
            } else {
                self.pods[..i]
                    .iter()
                    .find(|other| {
                        other.node_netns != pod.node_netns && other.ips().iter().any(|ip| pod.ips().contains(ip))
                    })
                    .map(|other| {
                        format!(
                            "shared with pod {:?} on node {}; pods on the fabric share one address space",
                            other.name, other.node
                        )
                    })
            };
            if let Some(reason) = clash {
                return Err(Error::Invalid {
                    what: format!("addresses of pod {:?} on node {}", pod.name, pod.node),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// The fabric, once [`Testbed::add_fabric`] has built it.
    pub fn fabric(&self) -> Option<&Fabric> {
        self.fabric.as_ref()
    }

    /// Creates the caller-side veth with its peer in `fabric_netns` and
    /// gives it `.254` of a free subnet, which it returns.
    fn attach_root(&mut self, fabric_netns: &str, ifname: &str) -> Result<Ipv4Addr, Error> {
        // Names never contain spaces (see `validate_name`).
        let add = format!("link add {ifname} type veth peer name {ROOT_PORT} netns {fabric_netns}");
        cmd::ip(&add.split(' ').collect::<Vec<_>>())?;
        self.root_links.push(ifname.into());
        // Before the link comes up, so it never gets an IPv6 address. This
        // thread is in the caller's netns, which /proc/sys/net follows.
        let disable = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
        match std::fs::write(&disable, "1") {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::sys(format!("writing 1 to {disable}"), e));
            }
            // NotFound: no IPv6 in this kernel, nothing to disable.
            _ => {}
        }
        // Choosing a subnet and claiming it must not interleave with another
        // testbed doing the same, in this process or another one.
        let _lock = lock_subnets()?;
        let taken = taken_v4(
            &cmd::ip(&["-4", "-o", "addr", "show"])?,
            &cmd::ip(&["-4", "route", "show", "table", "all"])?,
        );
        let pod_ips: Vec<Ipv4Addr> = self.pods.iter().map(|p| p.ipv4).collect();
        let subnet = free_subnet(&taken, &pod_ips).ok_or_else(|| Error::Invalid {
            what: format!("fabric of testbed {}", self.prefix),
            reason: format!(
                "all {SUBNETS} subnets 192.168.{FIRST_SUBNET}.0/24 to 192.168.{}.0/24 are in use; \
                 run lumen-testbed-sweep if test processes were killed",
                FIRST_SUBNET + SUBNETS - 1
            ),
        })?;
        let [a, b, c, _] = subnet.octets();
        let root_ipv4 = Ipv4Addr::new(a, b, c, ROOT_HOST);
        cmd::ip(&[
            "addr",
            "add",
            &format!("{root_ipv4}/{FABRIC_V4_PREFIX_LEN}"),
            "dev",
            ifname,
        ])?;
        cmd::ip(&["link", "set", ifname, "up"])?;
        Ok(subnet)
    }

    /// Connects `self.nodes[i]` to the fabric, gives it the next address and
    /// installs the routes between its pods and those of the other nodes.
    pub(crate) fn join(&mut self, i: usize) -> Result<NodeAddress, Error> {
        let Some(fabric) = self.fabric.clone() else {
            return Err(Error::Invalid {
                what: format!("node {:?}", self.nodes[i].name),
                reason: "the testbed has no fabric to join".into(),
            });
        };
        let joined = self.nodes.iter().filter(|n| n.address.is_some()).count();
        if joined >= MAX_NODES {
            return Err(Error::Invalid {
                what: format!("node {:?}", self.nodes[i].name),
                reason: format!("a fabric holds at most {MAX_NODES} nodes"),
            });
        }
        // Its pods' addresses were checked by `add_fabric` (nodes added
        // later join before they have pods).
        let node = self.nodes[i].clone();
        let address = NodeAddress::new(&fabric, (joined + 1) as u8);
        let port = format!("n{}", address.index);
        cmd::ip_batch(
            &node.netns,
            &[format!(
                "link add {FABRIC_IFNAME} type veth peer name {port} netns {}",
                fabric.netns
            )],
        )?;
        cmd::ip_batch(
            &fabric.netns,
            &[
                format!("link set {port} master {}", fabric.bridge),
                format!("link set {port} up"),
            ],
        )?;
        let mut node_cmds = vec![
            format!("link set {FABRIC_IFNAME} addrgenmode none"),
            format!("addr add {}/{FABRIC_V4_PREFIX_LEN} dev {FABRIC_IFNAME}", address.ipv4),
            format!(
                "addr add {}/{FABRIC_V6_PREFIX_LEN} dev {FABRIC_IFNAME} nodad",
                address.ipv6
            ),
            // The kernel only solicits a neighbour for a forwarded packet
            // from a link-local address of the outgoing device.
            format!("addr add fe80::{:x}/64 dev {FABRIC_IFNAME} nodad", address.index),
            format!("link set {FABRIC_IFNAME} up"),
        ];
        for pod in &self.pods {
            if let Some(via) = self.remote_address(&node, pod) {
                node_cmds.extend(pod_routes(pod, &via));
            }
        }
        cmd::ip_batch(&node.netns, &node_cmds)?;
        self.nodes[i].address = Some(address);
        for pod in self.pods.iter().filter(|p| p.node_netns == node.netns) {
            self.advertise(pod)?;
        }
        Ok(address)
    }

    /// Installs routes to `pod` on every joined node but its own, if its own
    /// node is joined.
    pub(crate) fn advertise(&self, pod: &Pod) -> Result<(), Error> {
        let Some(via) = self.node_of(pod).and_then(|n| n.address) else {
            return Ok(());
        };
        let routes = pod_routes(pod, &via);
        for other in self
            .nodes
            .iter()
            .filter(|n| n.address.is_some() && n.netns != pod.node_netns)
        {
            cmd::ip_batch(&other.netns, &routes)?;
        }
        Ok(())
    }

    /// Rejects an address for a pod on `node` if it would clash on the
    /// fabric: pods of joined nodes share one address space, and the
    /// fabric's own subnets are not for pods.
    pub(crate) fn check_fabric_address(&self, node: &Node, pod: &str, ip: IpAddr) -> Result<(), Error> {
        let Some(fabric) = &self.fabric else {
            return Ok(());
        };
        let reason = if fabric.contains(ip) {
            Some("lies in the fabric's subnet".to_string())
        } else {
            self.pods
                .iter()
                .filter(|p| p.node_netns != node.netns && p.ips().contains(&ip))
                .find(|p| self.node_of(p).is_some_and(|n| n.address.is_some()))
                .map(|p| {
                    format!(
                        "already used by pod {:?} on node {}; pods on the fabric share one address space",
                        p.name, p.node
                    )
                })
        };
        match reason {
            Some(reason) => Err(Error::Invalid {
                what: format!("address {ip} of pod {pod:?}"),
                reason,
            }),
            None => Ok(()),
        }
    }

    fn node_of(&self, pod: &Pod) -> Option<&Node> {
        self.nodes.iter().find(|n| n.netns == pod.node_netns)
    }

    /// The fabric address of `pod`'s node, if that node is joined and is not
    /// `from`.
    fn remote_address(&self, from: &Node, pod: &Pod) -> Option<NodeAddress> {
        if pod.node_netns == from.netns {
            return None;
        }
        self.node_of(pod).and_then(|n| n.address)
    }
}

/// `ip` batch lines routing `pod`'s addresses to the node at `via`.
fn pod_routes(pod: &Pod, via: &NodeAddress) -> Vec<String> {
    let mut routes = vec![format!(
        "route replace {}/32 via {} dev {FABRIC_IFNAME}",
        pod.ipv4, via.ipv4
    )];
    if let Some(v6) = pod.ipv6 {
        routes.push(format!("route replace {v6}/128 via {} dev {FABRIC_IFNAME}", via.ipv6));
    }
    routes
}

/// Takes an exclusive `flock` on the netns directory, which exists once the
/// fabric netns does; it is released when the returned file is closed, also
/// when the process dies, so nothing is left behind.
fn lock_subnets() -> Result<File, Error> {
    let dir = File::open(NETNS_DIR).map_err(|e| Error::sys(format!("opening {NETNS_DIR} to lock it"), e))?;
    loop {
        // SAFETY: flock on a valid, owned fd.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(dir);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Error::sys(format!("locking {NETNS_DIR}"), e));
        }
    }
}

fn same_net_v4(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

/// Parses `a.b.c.d/len`, `a.b.c.d` (a /32) or `default` (a /0).
fn parse_v4_prefix(s: &str) -> Option<(Ipv4Addr, u8)> {
    if s == "default" {
        return Some((Ipv4Addr::UNSPECIFIED, 0));
    }
    match s.split_once('/') {
        Some((addr, len)) => Some((addr.parse().ok()?, len.parse().ok().filter(|&l| l <= 32)?)),
        None => Some((s.parse().ok()?, 32)),
    }
}

/// Prefixes in use in a netns, from `ip -4 -o addr show` (each address as a
/// /32) and `ip -4 route show table all` (each destination).
fn taken_v4(addrs: &str, routes: &str) -> Vec<(Ipv4Addr, u8)> {
    let mut taken = Vec::new();
    for line in addrs.lines() {
        let mut words = line.split_whitespace();
        if words.by_ref().any(|w| w == "inet") {
            if let Some((addr, _)) = words.next().and_then(parse_v4_prefix) {
                taken.push((addr, 32));
            }
        }
    }
    // The destination is the first word, or the second after a route type
    // such as `local`; neither a type nor `dev` or `proto` parses.
    taken.extend(
        routes
            .lines()
            .filter_map(|line| line.split_whitespace().find_map(parse_v4_prefix)),
    );
    taken
}

/// The first candidate `/24` that holds none of `taken` (addresses and
/// routes at least as specific; a broader route such as the default one is
/// merely overridden inside it) and none of this testbed's pod addresses.
fn free_subnet(taken: &[(Ipv4Addr, u8)], pod_ips: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    (0..SUBNETS)
        .map(|k| Ipv4Addr::new(192, 168, FIRST_SUBNET + k, 0))
        .find(|&net| {
            let clash = taken
                .iter()
                .any(|&(addr, len)| len >= FABRIC_V4_PREFIX_LEN && same_net_v4(addr, net, FABRIC_V4_PREFIX_LEN));
            let pod_inside = pod_ips.iter().any(|&ip| same_net_v4(ip, net, FABRIC_V4_PREFIX_LEN));
            !clash && !pod_inside
        })
}

/// The owner of a caller-side fabric veth name, `{prefix}r`.
fn root_link_owner(name: &str) -> Option<OwnerPrefix> {
    let prefix = name.strip_suffix(ROOT_SUFFIX)?;
    OwnerPrefix::parse(prefix).filter(|owner| owner.to_string() == prefix)
}

/// Interface names from `ip -o link show` (`7: name@peer: <...> ...`).
fn link_names(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|line| {
            let name = line.split(": ").nth(1)?;
            Some(name.split('@').next().unwrap_or(name).to_string())
        })
        .collect()
}

/// Caller-side fabric veths in the calling thread's netns whose owner
/// `is_stale`. Deleting one also deletes its peer in the fabric netns.
pub(crate) fn stale_root_links(is_stale: impl Fn(OwnerPrefix) -> bool) -> Result<Vec<String>, Error> {
    let out = cmd::ip(&["-o", "link", "show", "type", "veth"])?;
    Ok(link_names(&out)
        .into_iter()
        .filter(|name| root_link_owner(name).is_some_and(&is_stale))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn taken_prefixes_come_from_addresses_and_routes() {
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                     2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n";
        let routes = "default via 192.0.2.1 dev eth0 \n\
                      192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2 \n\
                      local 192.168.200.254 dev lt1s0r table local proto kernel scope host src 192.168.200.254 \n\
                      broadcast 192.168.200.255 dev lt1s0r table local proto kernel scope link src 192.168.200.254 \n\
                      unreachable 192.168.201.0/24 \n";
        assert_eq!(
            taken_v4(addrs, routes),
            vec![
                (v4("127.0.0.1"), 32),
                (v4("192.0.2.2"), 32),
                (v4("0.0.0.0"), 0),
                (v4("192.0.2.0"), 24),
                (v4("192.168.200.254"), 32),
                (v4("192.168.200.255"), 32),
                (v4("192.168.201.0"), 24),
            ]
        );
    }

    #[test]
    fn free_subnet_skips_specific_routes_addresses_and_pods_but_not_broad_routes() {
        assert_eq!(free_subnet(&[], &[]), Some(v4("192.168.200.0")));
        let taken = [
            (v4("0.0.0.0"), 0),
            (v4("192.168.0.0"), 16),
            (v4("192.168.200.254"), 32),
            (v4("192.168.201.0"), 24),
            (v4("192.168.202.128"), 25),
        ];
        assert_eq!(free_subnet(&taken, &[]), Some(v4("192.168.203.0")));
        assert_eq!(free_subnet(&taken, &[v4("192.168.203.7")]), Some(v4("192.168.204.0")));
        let all: Vec<_> = (0..SUBNETS)
            .map(|k| (Ipv4Addr::new(192, 168, FIRST_SUBNET + k, 254), 32))
            .collect();
        assert_eq!(free_subnet(&all, &[]), None);
    }

    #[test]
    fn prefixes_parse() {
        assert_eq!(parse_v4_prefix("default"), Some((v4("0.0.0.0"), 0)));
        assert_eq!(parse_v4_prefix("10.1.0.0/16"), Some((v4("10.1.0.0"), 16)));
        assert_eq!(parse_v4_prefix("10.1.0.7"), Some((v4("10.1.0.7"), 32)));
        assert_eq!(parse_v4_prefix("10.1.0.0/33"), None);
        assert_eq!(parse_v4_prefix("via"), None);
    }

    #[test]
    fn root_link_names_round_trip_and_foreign_ones_do_not_parse() {
        let owner = OwnerPrefix { pid: 0x1f3a, seq: 0xa };
        let name = format!("{owner}{ROOT_SUFFIX}");
        assert_eq!(name, "lt1f3asar");
        assert_eq!(root_link_owner(&name), Some(owner));
        // Worst case length: largest pid_max, largest sequence number.
        let longest = format!(
            "{}{ROOT_SUFFIX}",
            OwnerPrefix {
                pid: 4_194_304,
                seq: 0xfff
            }
        );
        assert!(longest.len() <= IFNAME_MAX, "{longest}");
        for foreign in [
            "eth0",
            "lt1f3as0",
            "lt1f3as0h1",
            "lt1f3as0-fabricr",
            "lt1f3as00r",
            "ltr",
            "xlt1s0r",
        ] {
            assert_eq!(root_link_owner(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn link_names_drop_peer_suffixes() {
        let out = "5: lt1f3as0r@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\\    link/ether 7e:5d\n\
                   6: veth0: <BROADCAST> mtu 1500\n";
        assert_eq!(link_names(out), vec!["lt1f3as0r".to_string(), "veth0".to_string()]);
    }

    #[test]
    fn node_addresses_follow_the_subnet_and_index() {
        let fabric = Fabric {
            netns: "lt1s0-fabric".into(),
            bridge: FABRIC_BRIDGE.into(),
            ipv4_subnet: v4("192.168.203.0"),
            root_ifname: "lt1s0r".into(),
            root_ipv4: v4("192.168.203.254"),
        };
        let a = NodeAddress::new(&fabric, 3);
        assert_eq!(a.ipv4, v4("192.168.203.3"));
        assert_eq!(a.ipv6, "fd01::3".parse::<Ipv6Addr>().unwrap());
        assert!(fabric.contains(IpAddr::V4(a.ipv4)));
        assert!(fabric.contains(IpAddr::V6(a.ipv6)));
        assert!(!fabric.contains(IpAddr::V4(v4("192.168.204.3"))));
        assert!(!fabric.contains("fd00::3".parse().unwrap()));
    }
}

//! Real network topologies for Lumen's integration tests, benchmarks and demo.
//!
//! A [`Testbed`] builds a routed, Calico/Cilium-style topology out of Linux
//! network namespaces and veth pairs, and removes all of it again on drop
//! (also while unwinding from a panic). It needs root and iproute2's `ip`.
//!
//! ```text
//!   node netns  {prefix}-{node}          pod netns  {prefix}-{node}-{pod}
//!  +-----------------------------+      +------------------------------+
//!  | {prefix}h{idx}  <--veth-->  |------| eth0  <ipv4>/32 <ipv6>/128   |
//!  |   169.254.1.1/32, fe80::1   |      |   default via 169.254.1.1    |
//!  |   <ipv4>/32 dev ..., <ipv6> |      |   default via fe80::1        |
//!  +-----------------------------+      +------------------------------+
//! ```
//!
//! Pods on the same node reach each other through the node netns, which has
//! forwarding on and a host route per pod. Nodes are not connected to each
//! other unless the testbed has a fabric.
//!
//! # Fabric: a multi-node cluster
//!
//! [`Testbed::add_fabric`] adds the cluster network: a bridge in its own
//! netns, a veth from every node onto it, and one from the netns that called
//! `add_fabric` (normally the init netns, where the test harness runs).
//! Nodes added before or after are all joined, in order.
//!
//! ```text
//!   node netns {prefix}-{node}                 fabric netns {prefix}-fabric
//!  +------------------------------------+     +----------------------------+
//!  | fab0  192.168.S.N/24, fd01::N/64   |-----| nN ---+                    |
//!  | <pod on node M>/32  via 192.168.S.M|     |       br0 (bridge, no IP)  |
//!  | <pod on node M>/128 via fd01::M    |     | root -+                    |
//!  +------------------------------------+     +--|-------------------------+
//!                                                |
//!   caller's netns (normally the init netns)     |
//!     {prefix}r  192.168.S.254/24  --------------+
//! ```
//!
//! * Node `N` (1, 2, ... in join order, at most 253; hex in IPv6) has
//!   `192.168.S.N/24` and `fd01::N/64` on [`FABRIC_IFNAME`] (`fab0`); see
//!   [`Node::address`]. Processes in the node netns can listen there, e.g. an
//!   observer on `192.168.S.N:4244`, reachable from every node and pod.
//! * `S` is 200 to 249: each fabric takes the first `/24` of
//!   `192.168.200.0`-`192.168.249.0` that no address or route in the
//!   caller's netns uses yet, chosen under an exclusive `flock` on
//!   `/var/run/netns`, so testbeds running in parallel, in one process or in
//!   several, never share one. [`Fabric::ipv4_subnet`] tells which.
//! * The caller's netns holds `192.168.S.254` on `{prefix}r`, so the test
//!   process connects to `192.168.S.N:port` directly, without entering any
//!   netns. IPv6 is disabled on that veth; node IPv6 addresses are reachable
//!   from nodes and pods only, and are the same `fd01::N` in every testbed.
//! * Routes: every node has a host route to every pod of every other node,
//!   via that node's fabric address (`/32` via `192.168.S.M`, and `/128` via
//!   `fd01::M` for pods with IPv6); they are (re)installed whenever a node
//!   joins or a pod is added, in whatever order. So pod addresses must be
//!   unique across nodes once there is a fabric, and must not lie in the
//!   fabric's subnets; [`Testbed::add_pod`] and [`Testbed::add_fabric`]
//!   reject those with [`Error::Invalid`].
//! * The bridge has multicast snooping off (neighbour solicitations are
//!   flooded) and the fabric netns has IPv6 disabled, so the bridge itself
//!   sends nothing. `fab0` also has the link-local `fe80::N` (no automatic
//!   one): the kernel solicits neighbours for forwarded packets only from a
//!   link-local address. Like the pods' host sides it emits a few MLDv2
//!   reports when it comes up.
//!
//! ```no_run
//! # fn main() -> Result<(), lumen_testbed::Error> {
//! use std::net::{IpAddr, SocketAddr, TcpStream};
//! use lumen_testbed::{PodSpec, Testbed};
//!
//! let mut tb = Testbed::new()?;
//! tb.add_fabric()?;
//! let n1 = tb.add_node("node1")?;
//! let n2 = tb.add_node("node2")?;
//! let a = tb.add_pod(&n1, PodSpec::new("a", "default", "10.0.0.1".parse().unwrap()))?;
//! let b = tb.add_pod(&n2, PodSpec::new("b", "default", "10.0.0.2".parse().unwrap()))?;
//! assert_eq!(a.ping(IpAddr::V4(b.ipv4), 1, std::time::Duration::from_secs(1))?.received, 1);
//! // A server in node2's netns (here an echo server; an observer in a real
//! // test), reached from the test process itself.
//! let _server = n2.tcp_echo_server(4244)?;
//! let node2 = n2.address.expect("joined").ipv4;
//! TcpStream::connect(SocketAddr::new(IpAddr::V4(node2), 4244)).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! Spontaneous traffic is kept minimal: no RA/autoconf/router solicitations,
//! no automatic link-local addresses, and IPv4-only pods have IPv6 disabled on
//! both veth ends, so they send nothing unprompted. Dual-stack pods still emit
//! a few MLDv2 reports (ICMPv6 type 143) right after setup: the pod joins the
//! solicited-node group of its address (reported from `::`, as it has no
//! link-local address) and the host side, being a router, the all-routers
//! groups. Flow assertions should ignore those.
//!
//! # Naming scheme
//!
//! Every testbed has a prefix `lt{pid}s{seq}`, where `lt` is [`TAG`], `{pid}`
//! is the creating process id and `{seq}` a per-process counter, both in
//! lowercase hex (e.g. `lt1f3as0`). Hex leaves the letters `g`-`z` free as
//! separators, so names stay short and unambiguous:
//!
//! * node netns: `{prefix}-{node}`
//! * pod netns: `{prefix}-{node}-{pod}`
//! * host side of a pod's veth: `{prefix}h{idx}` with `{idx}` the pod's
//!   index within the testbed in hex; at most 15 bytes (`IFNAMSIZ`), unique
//!   across all live testbeds of all processes. The pod side is always `eth0`.
//! * fabric netns: `{prefix}-fabric` (so no node may be called `fabric`
//!   once there is a fabric, nor the other way round)
//! * the fabric's veth in the caller's netns: `{prefix}r`, at most 13 bytes;
//!   its peer is the bridge port `root`. Node-side veths are `fab0` in the
//!   node netns and bridge ports `n{N}` in the fabric netns.
//!
//! Dropping a [`Testbed`] deletes `{prefix}r` and then every netns it
//! created. [`sweep_stale`] deletes netns whose name parses as `{prefix}` or
//! `{prefix}-...`, and links `{prefix}r` in its own netns, whose pid is no
//! longer alive: the leftovers of a process that was killed before its
//! testbeds were dropped. Deleting a netns also removes the veth ends inside
//! it, and with them their peers elsewhere, so `{prefix}r` goes with the
//! fabric netns too, just not synchronously.
//!
//! # Running code inside a netns
//!
//! [`in_netns`] runs a closure on a fresh thread that joined the netns;
//! sockets created there stay in that netns. [`Node::spawn`] and
//! [`Pod::spawn`] start processes inside, and the traffic helpers on [`Pod`]
//! (ping, TCP/UDP servers and clients, benchmarks) use real sockets.

pub mod cluster;
mod cmd;
mod fabric;
mod netns;
mod process;
mod topology;
mod traffic;

use std::io;
use std::time::Duration;

pub use fabric::{
    Fabric, NodeAddress, FABRIC_BRIDGE, FABRIC_IFNAME, FABRIC_V4_PREFIX_LEN, FABRIC_V6_PREFIX_LEN, FABRIC_V6_SUBNET,
};
pub use netns::{in_netns, list_netns, sweep_stale, OwnerPrefix, TAG};
pub use process::Process;
pub use topology::{Node, Pod, PodSpec, Testbed, GATEWAY_V4, GATEWAY_V6};
pub use traffic::{PingResult, ServerGuard};

/// A loopback TCP address (`127.0.0.1:port`) nothing listens on now, for a
/// server a test starts: the system's pick.
pub fn free_loopback_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port to bind")
        .to_string()
}

/// `target/<name>`, emptied: where a test leaves what a person looks at
/// afterwards (screenshots). Found from the test's own executable,
/// `target/<profile>/deps/<test>`.
pub fn artifacts_dir(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's executable");
    let target = exe.ancestors().nth(3).expect("target/<profile>/deps/<test>");
    let dir = target.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("an artifacts directory");
    dir
}

/// Everything that can go wrong while building or using a testbed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The testbed manipulates network namespaces, which needs root.
    #[error("the testbed needs root (effective uid is {euid}); run as root, e.g. via scripts/test.sh")]
    NotRoot {
        /// Effective user id of this process.
        euid: u32,
    },
    /// A required external program could not be run.
    #[error("required tool `{tool}` could not be run (install iproute2/iputils-ping): {source}")]
    MissingTool {
        /// Program name, e.g. `ip`.
        tool: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },
    /// An external command ran but failed.
    #[error("command `{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the reader.
        cmd: String,
        /// Exit status as printed by std.
        status: String,
        /// What the command wrote to stderr (trimmed).
        stderr: String,
    },
    /// An external command's output could not be understood.
    #[error("could not parse output of `{cmd}`: {output}")]
    Parse {
        /// The command line.
        cmd: String,
        /// The output that did not parse.
        output: String,
    },
    /// A system call or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long it was waited for.
        after: Duration,
    },
    /// A name, address or argument is not acceptable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The offending thing, e.g. `node name "a/b"`.
        what: String,
        /// Why it is rejected.
        reason: String,
    },
}

impl Error {
    /// Wraps an `io::Error`, turning socket time-outs into [`Error::Timeout`].
    pub(crate) fn io(context: impl Into<String>, source: io::Error, after: Duration) -> Error {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
                what: context.into(),
                after,
            },
            _ => Error::Io {
                context: context.into(),
                source,
            },
        }
    }

    /// Wraps an `io::Error` that is never a time-out.
    pub(crate) fn sys(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

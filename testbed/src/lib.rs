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
//! other.
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
//!
//! [`sweep_stale`] deletes netns whose name parses as `{prefix}` or
//! `{prefix}-...` and whose pid is no longer alive: the leftovers of a process
//! that was killed before its testbeds were dropped. Deleting a netns also
//! removes the veth ends inside it.
//!
//! # Running code inside a netns
//!
//! [`in_netns`] runs a closure on a fresh thread that joined the netns;
//! sockets created there stay in that netns. [`Node::spawn`] and
//! [`Pod::spawn`] start processes inside, and the traffic helpers on [`Pod`]
//! (ping, TCP/UDP servers and clients, benchmarks) use real sockets.

mod cmd;
mod netns;
mod process;
mod topology;
mod traffic;

use std::io;
use std::time::Duration;

pub use netns::{in_netns, list_netns, sweep_stale, OwnerPrefix, TAG};
pub use process::Process;
pub use topology::{Node, Pod, PodSpec, Testbed, GATEWAY_V4, GATEWAY_V6};
pub use traffic::{PingResult, ServerGuard};

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

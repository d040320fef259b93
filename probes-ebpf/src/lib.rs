//! Lumen's eBPF datapath: the compiled object and the Rust view of its ABI.
//!
//! The programs are written in C (`src/bpf/lumen.bpf.c`, `include/lumen.h`)
//! and compiled by `build.rs` with clang for the BPF target.

pub mod abi;

/// The compiled datapath object, aligned as aya's loader requires.
pub static DATAPATH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lumen.bpf.o"));

/// A program that passes every packet: the hook's own cost, for benchmarks.
pub static PASS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pass.bpf.o"));
pub const PROG_PASS: &str = "lumen_pass";

/// Program attached at TC ingress of an endpoint's host-side veth.
pub const PROG_FROM_ENDPOINT: &str = "lumen_from_endpoint";
/// Program attached at TC egress of an endpoint's host-side veth.
pub const PROG_TO_ENDPOINT: &str = "lumen_to_endpoint";

/// Names of the maps, as pinned under the node's bpffs directory.
pub mod maps {
    pub const ENDPOINTS: &str = "endpoints";
    pub const ENDPOINTS_EXT: &str = "endpoints_ext";
    pub const IPCACHE: &str = "ipcache";
    pub const POLICY: &str = "policy";
    pub const CONNTRACK: &str = "conntrack";
    pub const FRAGS: &str = "frags";
    /// The last policy revision committed (one `u32`), for a restarted observer.
    pub const POLICY_REVISION: &str = "policy_rev";
    /// The datapath's global variables (`struct lumen_config`); not pinned:
    /// each loaded program has its own, set by the observer.
    pub const CONFIG: &str = ".data";
    pub const EVENTS: &str = "events";
    pub const TRAFFIC_COUNTERS: &str = "traffic_ctrs";
    /// Per-CPU drops by direction and reason.
    pub const DROP_COUNTERS: &str = "drop_ctrs";
    pub const EVENT_COUNTERS: &str = "event_ctrs";

    /// Every pinned map.
    pub const ALL: [&str; 11] = [
        ENDPOINTS,
        ENDPOINTS_EXT,
        IPCACHE,
        POLICY,
        CONNTRACK,
        FRAGS,
        POLICY_REVISION,
        EVENTS,
        TRAFFIC_COUNTERS,
        DROP_COUNTERS,
        EVENT_COUNTERS,
    ];
}

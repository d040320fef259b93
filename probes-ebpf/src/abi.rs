//! Rust mirror of `include/lumen.h`, the datapath's kernel ABI.
//!
//! Every struct marked `/// C: struct …` and every `pub const` here is
//! checked against the header at build time (sizes, field offsets, values):
//! see `build.rs`. Field names must match the C names.

pub const DIR_INGRESS: u8 = 1;
pub const DIR_EGRESS: u8 = 2;

pub const OBS_FROM_ENDPOINT: u8 = 5;
pub const OBS_TO_ENDPOINT: u8 = 101;

pub const VERDICT_FORWARDED: u8 = 1;
pub const VERDICT_DROPPED: u8 = 2;
pub const VERDICT_AUDIT: u8 = 4;
pub const VERDICT_MAX: u32 = 8;
pub const DROP_REASON_MAX: u32 = 256;

pub const DROP_POLICY_DENIED: u8 = 133;
pub const DROP_INVALID_PACKET: u8 = 134;
pub const DROP_CT_INVALID_HEADER: u8 = 135;
pub const DROP_INVALID_IPV6_EXT_HEADER: u8 = 156;
pub const DROP_FRAG_NOT_FOUND: u8 = 175;
pub const DROP_POLICY_DENY: u8 = 181;

pub const CT_NEW: u8 = 1;
pub const CT_ESTABLISHED: u8 = 2;
pub const CT_REPLY: u8 = 3;
pub const CT_RELATED: u8 = 4;

pub const AGG_NONE: u32 = 0;
pub const AGG_MEDIUM: u32 = 1;
pub const AGG_MAX: u32 = 2;

pub const ACTION_ALLOW: u8 = 1;
pub const ACTION_DENY: u8 = 2;
pub const ACTION_AUDIT: u8 = 3;

pub const EP_ENFORCE_INGRESS: u32 = 1 << 0;
pub const EP_ENFORCE_EGRESS: u32 = 1 << 1;
pub const EP_AUDIT_INGRESS: u32 = 1 << 2;
pub const EP_AUDIT_EGRESS: u32 = 1 << 3;

pub const EVF_IS_REPLY: u8 = 1 << 0;
pub const EVF_FRAGMENT: u8 = 1 << 1;
pub const EVF_TRUNCATED: u8 = 1 << 2;

pub const ID_WORLD: u32 = 2;

pub const ENDPOINTS_ARRAY: u32 = 65536;

pub const EVC_EMITTED: u32 = 0;
pub const EVC_LOST: u32 = 1;
pub const EVC_MAX: u32 = 2;

pub const CAPTURE_MAX: u32 = 128;

pub const POLICY_PREFIX_FIXED: u32 = 96;
pub const POLICY_PREFIX_FULL: u32 = 128;
pub const POLICY_SLOTS: u32 = 2;

/// C: struct lumen_ipcache_key
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpcacheKey {
    pub prefixlen: u32,
    pub family: u8,
    pub pad: [u8; 3],
    pub addr: [u8; 16],
}

/// C: struct lumen_ipcache_value
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcacheValue {
    pub identity: u32,
    pub ifindex: u32,
    pub endpoint_id: u32,
    pub pad: u32,
}

/// C: struct lumen_endpoint_info
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    pub endpoint_id: u32,
    pub identity: u32,
    pub policy_id: [u32; POLICY_SLOTS as usize],
    pub flags: [u32; POLICY_SLOTS as usize],
    pub pod_mac: [u8; 6],
    pub host_mac: [u8; 6],
    pub pad: [u8; 4],
}

/// C: struct lumen_policy_key
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub prefixlen: u32,
    pub policy_id_be: u32,
    pub direction: u8,
    pub pad: [u8; 3],
    pub identity_be: u32,
    pub proto: u8,
    pub pad2: u8,
    pub dport_be: u16,
}

/// C: struct lumen_policy_value
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyValue {
    pub action: u8,
    pub pad: [u8; 3],
    pub rule_id: u32,
}

/// C: struct lumen_ct_key
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    pub port_a: u16,
    pub port_b: u16,
    pub endpoint_id: u32,
    pub proto: u8,
    pub family: u8,
    pub pad: [u8; 2],
}

/// C: struct lumen_ct_entry
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    pub created_ns: u64,
    pub packets_fwd: u64,
    pub packets_rev: u64,
    pub rule_id: u32,
    pub tcp_flags_fwd: u8,
    pub tcp_flags_rev: u8,
    pub closing: u8,
    pub verdict: u8,
    pub orig_src_is_a: u8,
    pub orig_dir: u8,
    pub drop_reason: u8,
    pub pad: u8,
    pub peer_ifindex: u32,
    pub peer_endpoint_id: u32,
    pub policy_revision: u32,
    pub pad2: u32,
}

/// C: struct lumen_frag_key
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub pad: [u8; 2],
}

/// C: struct lumen_frag_value
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    pub sport: u16,
    pub dport: u16,
    pub pad: u32,
}

/// C: struct lumen_config
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub aggregation: u32,
    pub capture_len: u32,
    pub wakeup_bytes: u64,
    pub local_redirect: u32,
    pub policy_revision: u32,
}

/// C: struct lumen_traffic_counter
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounter {
    pub packets: u64,
    pub bytes: u64,
}

/// C: struct lumen_event
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub timestamp_ns: u64,
    pub ifindex: u32,
    pub endpoint_id: u32,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub rule_id: u32,
    pub pkt_len: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub proto: u8,
    pub direction: u8,
    pub obs_point: u8,
    pub verdict: u8,
    pub drop_reason: u8,
    pub tcp_flags: u8,
    pub ct_state: u8,
    pub flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub pad: u8,
    pub cap_len: u16,
    pub pad2: u16,
    pub pad3: u32,
}

// SAFETY: all of these are `repr(C)` plain data with explicit padding, valid
// for every bit pattern, as aya requires of map keys and values.
unsafe impl aya::Pod for IpcacheKey {}
unsafe impl aya::Pod for IpcacheValue {}
unsafe impl aya::Pod for EndpointInfo {}
unsafe impl aya::Pod for PolicyKey {}
unsafe impl aya::Pod for PolicyValue {}
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for CtEntry {}
unsafe impl aya::Pod for FragKey {}
unsafe impl aya::Pod for FragValue {}
unsafe impl aya::Pod for Config {}
unsafe impl aya::Pod for TrafficCounter {}

include!(concat!(env!("OUT_DIR"), "/layout_check.rs"));

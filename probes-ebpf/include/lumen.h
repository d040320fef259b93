/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The kernel ABI of Lumen's datapath: every struct and constant shared
 * between the eBPF programs and user space is defined here and only here.
 * The Rust mirror (probes-ebpf/src/abi.rs) is checked against this file at
 * build time; see probes-ebpf/build.rs.
 *
 * Rules: fixed-width types only, padding spelled out, no bool.
 * Multi-byte fields are host byte order unless the name ends in _be.
 */
#ifndef LUMEN_H
#define LUMEN_H

#include <linux/types.h>

/* Hubble's TrafficDirection numbering. */
#define LUMEN_DIR_INGRESS 1 /* traffic to the endpoint */
#define LUMEN_DIR_EGRESS 2  /* traffic from the endpoint */

/* Hubble's TraceObservationPoint numbering. */
#define LUMEN_OBS_FROM_ENDPOINT 5
#define LUMEN_OBS_TO_ENDPOINT 101

/* Hubble's Verdict numbering. */
#define LUMEN_VERDICT_FORWARDED 1
#define LUMEN_VERDICT_DROPPED 2
#define LUMEN_VERDICT_AUDIT 4
#define LUMEN_VERDICT_MAX 8

/* Hubble's DropReason numbering. */
#define LUMEN_DROP_POLICY_DENIED 133
#define LUMEN_DROP_INVALID_PACKET 134
#define LUMEN_DROP_CT_INVALID_HEADER 135
#define LUMEN_DROP_INVALID_IPV6_EXT_HEADER 156
#define LUMEN_DROP_FRAG_NOT_FOUND 175
#define LUMEN_DROP_POLICY_DENY 181

/* Conntrack state of the packet that produced an event. */
#define LUMEN_CT_NEW 1
#define LUMEN_CT_ESTABLISHED 2
#define LUMEN_CT_REPLY 3
#define LUMEN_CT_RELATED 4

/* Event volume, like Cilium's monitor aggregation. */
#define LUMEN_AGG_NONE 0   /* every packet */
#define LUMEN_AGG_MEDIUM 1 /* new, TCP flag change, close, drops */
#define LUMEN_AGG_MAX 2    /* open, close, drops */

/* Policy map value actions. */
#define LUMEN_ACTION_ALLOW 1
#define LUMEN_ACTION_DENY 2
#define LUMEN_ACTION_AUDIT 3 /* a deny in audit mode: forwarded, reported AUDIT */

/* endpoint_info.flags */
#define LUMEN_EP_ENFORCE_INGRESS (1U << 0)
#define LUMEN_EP_ENFORCE_EGRESS (1U << 1)
#define LUMEN_EP_AUDIT_INGRESS (1U << 2)
#define LUMEN_EP_AUDIT_EGRESS (1U << 3)

/* event.flags */
#define LUMEN_EVF_IS_REPLY (1U << 0)
#define LUMEN_EVF_FRAGMENT (1U << 1)  /* an IP fragment (first or later) */
#define LUMEN_EVF_TRUNCATED (1U << 2) /* L4 header missing or cut short */

/*
 * Endpoints are found by the ifindex of their host-side interface: in an
 * array below this bound (no hashing on the hot path), in a hash above it.
 */
#define LUMEN_ENDPOINTS_ARRAY 65536

/* Reserved identities (Cilium's numbering). */
#define LUMEN_ID_WORLD 2

/* Indexes into the per-CPU event counters. */
#define LUMEN_EVC_EMITTED 0 /* events the program tried to write */
#define LUMEN_EVC_LOST 1    /* of which the ring buffer could not take */
#define LUMEN_EVC_MAX 2

#define LUMEN_CAPTURE_MAX 128

/* Byte order of the LPM-trie keys must be big endian for prefix matching. */
struct lumen_ipcache_key {
	__u32 prefixlen; /* 32 (family + pad) + address bits */
	__u8 family;     /* 4 or 6 */
	__u8 pad[3];
	__u8 addr[16];
};

struct lumen_ipcache_value {
	__u32 identity;
	__u32 ifindex;     /* host-side interface of a local endpoint, 0 otherwise */
	__u32 endpoint_id; /* of that local endpoint */
	__u32 pad;
};

/*
 * Policy comes in two slots: the datapath uses slot (policy_revision & 1) of
 * every endpoint. The observer writes a new policy into the other slot of
 * each endpoint, then flips the revision: every endpoint changes policy at
 * the same instant, so no packet sees one endpoint's old policy and
 * another's new one.
 */
#define LUMEN_POLICY_SLOTS 2

struct lumen_endpoint_info {
	__u32 endpoint_id; /* 0: not an endpoint (an empty array slot) */
	__u32 identity;
	__u32 policy_id[LUMEN_POLICY_SLOTS]; /* selects the endpoint's entries in the policy map */
	__u32 flags[LUMEN_POLICY_SLOTS];     /* LUMEN_EP_* */
	__u8 pod_mac[6];  /* learnt by the datapath from the pod's frames */
	__u8 host_mac[6]; /* of the host-side interface, set by the observer */
	__u8 pad[4];
};

/*
 * Policy: an LPM trie so that protocol and port can be wildcarded and port
 * ranges expressed as prefixes. policy_id, direction and identity are always
 * matched in full (prefixlen >= 72); identity 0 is the "any identity" entry.
 */
struct lumen_policy_key {
	__u32 prefixlen;
	__u32 policy_id_be;
	__u8 direction;
	__u8 pad[3];
	__u32 identity_be;
	__u8 proto; /* 0 = any */
	__u8 pad2;
	__u16 dport_be;
};

#define LUMEN_POLICY_PREFIX_FIXED 96 /* policy_id + direction + pad + identity */
#define LUMEN_POLICY_PREFIX_FULL 128

struct lumen_policy_value {
	__u8 action; /* LUMEN_ACTION_* */
	__u8 pad[3];
	__u32 rule_id;
};

/*
 * Conntrack is keyed by the endpoint and the tuple in canonical order (the
 * lower address/port pair first), so both directions of a connection find
 * the same entry with a single lookup.
 */
struct lumen_ct_key {
	__u8 addr_a[16];
	__u8 addr_b[16];
	__u16 port_a; /* for ICMP echo: the echo id on the requester's side */
	__u16 port_b;
	__u32 endpoint_id;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/*
 * The fast path reads no clock: the observer's GC ages an entry by watching
 * its packet counters stand still (see observer/src/counters.rs).
 *
 * A connection that a policy change denies keeps its entry as a tombstone
 * (verdict LUMEN_VERDICT_DROPPED): its packets in both directions are
 * dropped as packets of that connection, and a reply is never taken for a
 * new connection in the other direction. The next policy change decides it
 * again (an allow revives it), a TCP SYN on its tuple is decided as a new
 * connection, and the GC ages it like any entry, since its peers may keep
 * retransmitting for as long as the connection would have lived.
 */
struct lumen_ct_entry {
	__u64 created_ns; /* CLOCK_MONOTONIC, coarse */
	__u64 packets_fwd;
	__u64 packets_rev;
	__u32 rule_id;      /* rule that decided the connection */
	__u8 tcp_flags_fwd; /* union of TCP flags seen in each direction */
	__u8 tcp_flags_rev;
	__u8 closing;       /* bit 0: FIN or RST seen forward, bit 1: in reply */
	__u8 verdict;       /* LUMEN_VERDICT_FORWARDED, _AUDIT, or _DROPPED: a tombstone */
	__u8 orig_src_is_a; /* the first packet came from side a of the key */
	__u8 orig_dir;      /* and was seen in this direction */
	__u8 drop_reason;   /* of a tombstone: LUMEN_DROP_POLICY_DENIED or _DENY */
	__u8 pad;
	__u32 peer_ifindex; /* host interface of the peer if it is a local endpoint */
	__u32 peer_endpoint_id; /* and its endpoint id, in case the ifindex is reused */
	__u32 policy_revision;  /* decided under; a newer revision decides again */
	__u32 pad2;
};

/* Tracks the L4 ports of a fragmented datagram, keyed by its first fragment. */
struct lumen_frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct lumen_frag_value {
	__u16 sport;
	__u16 dport;
	__u32 pad;
};

struct lumen_config {
	__u32 aggregation;    /* LUMEN_AGG_* */
	__u32 capture_len;    /* packet bytes copied into each event, <= LUMEN_CAPTURE_MAX */
	__u64 wakeup_bytes;   /* force a reader wakeup once this much is pending */
	__u32 local_redirect; /* hand node-local traffic straight to the peer's interface */
	__u32 policy_revision; /* bumped by every policy change; its low bit picks the slot */
};

/* Drop reasons are one byte: drop counters are indexed by direction * DROP_REASON_MAX + reason. */
#define LUMEN_DROP_REASON_MAX 256

/* Per-CPU packet and byte counters, indexed by direction * VERDICT_MAX + verdict
 * (traffic_ctrs), or for drops by direction * DROP_REASON_MAX + reason (drop_ctrs). */
struct lumen_traffic_counter {
	__u64 packets;
	__u64 bytes;
};

struct lumen_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 ifindex;
	__u32 endpoint_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 rule_id;
	__u32 pkt_len;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 direction;
	__u8 obs_point;
	__u8 verdict;
	__u8 drop_reason;
	__u8 tcp_flags;
	__u8 ct_state;
	__u8 flags; /* LUMEN_EVF_* */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pad;
	__u16 cap_len; /* bytes of the packet that follow this header */
	__u16 pad2;
	__u32 pad3;
};

#endif /* LUMEN_H */

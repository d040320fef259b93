// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * Lumen's enforcing datapath for endpoint interfaces.
 *
 * Attached to the host side of a pod's veth: TC ingress sees traffic *from*
 * the endpoint (its egress policy), TC egress sees traffic *to* the endpoint
 * (its ingress policy). Each packet is parsed, looked up in conntrack, and on
 * a new connection checked against the endpoint's policy; every decision that
 * the aggregation level asks for becomes an event in the ring buffer.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lumen.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PIN_BY_NAME __uint(pinning, LIBBPF_PIN_BY_NAME)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LUMEN_ENDPOINTS_ARRAY);
	__type(key, __u32); /* ifindex */
	__type(value, struct lumen_endpoint_info);
	PIN_BY_NAME;
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* ifindex >= LUMEN_ENDPOINTS_ARRAY */
	__type(value, struct lumen_endpoint_info);
	PIN_BY_NAME;
} endpoints_ext SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct lumen_ipcache_key);
	__type(value, struct lumen_ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN_BY_NAME;
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__type(key, struct lumen_policy_key);
	__type(value, struct lumen_policy_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN_BY_NAME;
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct lumen_ct_key);
	__type(value, struct lumen_ct_entry);
	PIN_BY_NAME;
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct lumen_frag_key);
	__type(value, struct lumen_frag_value);
	PIN_BY_NAME;
} frags SEC(".maps");

/*
 * The last policy revision an observer committed, kept with the conntrack
 * map it stamps: a restarted observer continues from it, so an entry decided
 * under the previous observer's policy is never mistaken for a current one.
 * Only user space reads and writes it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	PIN_BY_NAME;
} policy_rev SEC(".maps");

/*
 * Knobs the observer sets at load and changes at runtime through the .data
 * map. A global rather than a map lookup: the hot path reads it directly.
 */
volatile struct lumen_config lumen_config = {
	.aggregation = LUMEN_AGG_MEDIUM,
	.capture_len = 0,
	.wakeup_bytes = 64 << 10,
	.local_redirect = 1,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	PIN_BY_NAME;
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3 * LUMEN_VERDICT_MAX);
	__type(key, __u32);
	__type(value, struct lumen_traffic_counter);
	PIN_BY_NAME;
} traffic_ctrs SEC(".maps");

/* Drops by reason and direction, as Cilium's drop counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3 * LUMEN_DROP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct lumen_traffic_counter);
	PIN_BY_NAME;
} drop_ctrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LUMEN_EVC_MAX);
	__type(key, __u32);
	__type(value, __u64);
	PIN_BY_NAME;
} event_ctrs SEC(".maps");

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define NEXTHDR_NONE 59
#define IPV6_MAX_EXT_HEADERS 8

struct tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* What parsing learnt about a packet. */
struct packet {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 ct_sport; /* ports as conntrack keys them (ICMP echo id) */
	__u16 ct_dport;
	__u8 family;
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 flags;        /* LUMEN_EVF_* */
	__u8 drop_reason;  /* set when the packet cannot be parsed safely */
	__u8 always_allow; /* neighbour discovery and friends */
	__u8 has_inner;    /* an ICMP error carrying a tuple */
	__u8 later_fragment;
	__u8 pad[2];
	__u32 frag_id;
	struct tuple inner; /* quoted by an ICMP error */
};

struct ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct ipv6_hdr {
	__u32 vtc_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/*
 * Copies len bytes at off: straight from the linear packet data when it is
 * there (the common case, no helper call), else through the helper, which
 * also copes with paged data.
 */
static __always_inline int load(struct __sk_buff *skb, __u32 off, void *dst, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	void *at;

	if (off > 512)
		return bpf_skb_load_bytes(skb, off, dst, len);
	at = data + off;
	if (at + len <= end) {
		__builtin_memcpy(dst, at, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, dst, len);
}

static __always_inline void zero16(__u8 *a)
{
	__builtin_memset(a, 0, 16);
}

static __always_inline int is_icmp_error(__u8 family, __u8 type)
{
	if (family == 4)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

static __always_inline int is_icmp_echo_request(__u8 family, __u8 type)
{
	return family == 4 ? type == 8 : type == 128;
}

static __always_inline int is_icmp_echo_reply(__u8 family, __u8 type)
{
	return family == 4 ? type == 0 : type == 129;
}

/* Reads the transport ports (or ICMP header) of a packet at l4_off. */
static __always_inline void parse_l4(struct __sk_buff *skb, struct packet *p, __u32 l4_off)
{
	__u8 l4[14];

	switch (p->proto) {
	case IPPROTO_TCP:
		if (load(skb, l4_off, l4, 14) < 0) {
			p->flags |= LUMEN_EVF_TRUNCATED;
			return;
		}
		p->tcp_flags = l4[13];
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (load(skb, l4_off, l4, 4) < 0) {
			p->flags |= LUMEN_EVF_TRUNCATED;
			return;
		}
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (load(skb, l4_off, l4, 8) < 0) {
			p->flags |= LUMEN_EVF_TRUNCATED;
			return;
		}
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		if (is_icmp_echo_request(p->family, l4[0]))
			p->ct_sport = ((__u16)l4[4] << 8) | l4[5];
		else if (is_icmp_echo_reply(p->family, l4[0]))
			p->ct_dport = ((__u16)l4[4] << 8) | l4[5];
		/* Neighbour discovery, MLD and router messages keep IPv6 alive. */
		if (p->family == 6 && (l4[0] == 130 || l4[0] == 131 || l4[0] == 132 ||
				       l4[0] == 143 || (l4[0] >= 133 && l4[0] <= 137)))
			p->always_allow = 1;
		return;
	default:
		return;
	}
	p->sport = ((__u16)l4[0] << 8) | l4[1];
	p->dport = ((__u16)l4[2] << 8) | l4[3];
	p->ct_sport = p->sport;
	p->ct_dport = p->dport;
}

/* The tuple quoted in an ICMP error (the packet that caused it). */
static __always_inline void parse_icmp_inner(struct __sk_buff *skb, struct packet *p, __u32 l4_off)
{
	__u32 off = l4_off + 8;
	__u8 proto;
	__u8 ports[4];

	if (p->family == 4) {
		struct ipv4_hdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return;
		zero16(p->inner.saddr);
		zero16(p->inner.daddr);
		__builtin_memcpy(p->inner.saddr, ip.saddr, 4);
		__builtin_memcpy(p->inner.daddr, ip.daddr, 4);
		proto = ip.protocol;
		off += (ip.ver_ihl & 0x0f) * 4;
	} else {
		struct ipv6_hdr ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return;
		__builtin_memcpy(p->inner.saddr, ip6.saddr, 16);
		__builtin_memcpy(p->inner.daddr, ip6.daddr, 16);
		proto = ip6.nexthdr;
		off += sizeof(ip6);
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP)
		return;
	if (bpf_skb_load_bytes(skb, off, ports, 4) < 0)
		return;
	p->inner.sport = ((__u16)ports[0] << 8) | ports[1];
	p->inner.dport = ((__u16)ports[2] << 8) | ports[3];
	p->inner.proto = proto;
	p->has_inner = 1;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct packet *p)
{
	struct ipv4_hdr ip;
	__u32 l4_off;
	__u16 frag;

	if (load(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || (ip.ver_ihl >> 4) != 4 ||
	    (ip.ver_ihl & 0x0f) < 5) {
		p->drop_reason = LUMEN_DROP_INVALID_PACKET;
		return 0;
	}
	p->family = 4;
	p->proto = ip.protocol;
	__builtin_memcpy(p->saddr, ip.saddr, 4);
	__builtin_memcpy(p->daddr, ip.daddr, 4);
	l4_off = ETH_HLEN + (ip.ver_ihl & 0x0f) * 4;

	frag = bpf_ntohs(ip.frag_off);
	if (frag & (IP_MF | IP_OFFSET)) {
		p->flags |= LUMEN_EVF_FRAGMENT;
		p->frag_id = bpf_ntohs(ip.id);
		if (frag & IP_OFFSET) {
			p->later_fragment = 1;
			return 0;
		}
	}
	parse_l4(skb, p, l4_off);
	if ((p->proto == IPPROTO_ICMP) && is_icmp_error(4, p->icmp_type))
		parse_icmp_inner(skb, p, l4_off);
	return 0;
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct packet *p)
{
	struct ipv6_hdr ip6;
	__u32 off = ETH_HLEN + sizeof(ip6);
	__u8 nexthdr;

	if (load(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0 ||
	    (bpf_ntohl(ip6.vtc_flow) >> 28) != 6) {
		p->drop_reason = LUMEN_DROP_INVALID_PACKET;
		return 0;
	}
	p->family = 6;
	__builtin_memcpy(p->saddr, ip6.saddr, 16);
	__builtin_memcpy(p->daddr, ip6.daddr, 16);
	nexthdr = ip6.nexthdr;

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		__u8 ext[8];

		if (nexthdr != NEXTHDR_HOP && nexthdr != NEXTHDR_ROUTING &&
		    nexthdr != NEXTHDR_FRAGMENT && nexthdr != NEXTHDR_AUTH &&
		    nexthdr != NEXTHDR_DEST)
			break;
		if (bpf_skb_load_bytes(skb, off, ext, 8) < 0) {
			p->drop_reason = LUMEN_DROP_INVALID_IPV6_EXT_HEADER;
			return 0;
		}
		if (nexthdr == NEXTHDR_FRAGMENT) {
			__u16 frag = ((__u16)ext[2] << 8) | ext[3];
			p->flags |= LUMEN_EVF_FRAGMENT;
			p->frag_id = ((__u32)ext[4] << 24) | ((__u32)ext[5] << 16) |
				     ((__u32)ext[6] << 8) | ext[7];
			p->proto = ext[0];
			if (frag & 0xfff8) {
				p->later_fragment = 1;
				return 0;
			}
			off += 8;
		} else if (nexthdr == NEXTHDR_AUTH) {
			off += ((__u32)ext[1] + 2) * 4;
		} else {
			off += ((__u32)ext[1] + 1) * 8;
		}
		nexthdr = ext[0];
	}
	if (nexthdr == NEXTHDR_HOP || nexthdr == NEXTHDR_ROUTING || nexthdr == NEXTHDR_FRAGMENT ||
	    nexthdr == NEXTHDR_AUTH || nexthdr == NEXTHDR_DEST) {
		/* More extension headers than we are willing to walk. */
		p->drop_reason = LUMEN_DROP_INVALID_IPV6_EXT_HEADER;
		return 0;
	}
	p->proto = nexthdr;
	parse_l4(skb, p, off);
	if (p->proto == IPPROTO_ICMPV6 && is_icmp_error(6, p->icmp_type))
		parse_icmp_inner(skb, p, off);
	return 0;
}

/* Fragments after the first carry no ports: borrow them from the first one. */
static __always_inline void track_fragments(struct packet *p)
{
	struct lumen_frag_key fk = {};
	struct lumen_frag_value *fv;

	if (!(p->flags & LUMEN_EVF_FRAGMENT))
		return;
	__builtin_memcpy(fk.saddr, p->saddr, 16);
	__builtin_memcpy(fk.daddr, p->daddr, 16);
	fk.id = p->frag_id;
	fk.proto = p->proto;
	fk.family = p->family;
	if (!p->later_fragment) {
		struct lumen_frag_value v = {.sport = p->ct_sport, .dport = p->ct_dport};
		bpf_map_update_elem(&frags, &fk, &v, BPF_ANY);
		return;
	}
	fv = bpf_map_lookup_elem(&frags, &fk);
	if (!fv) {
		p->drop_reason = LUMEN_DROP_FRAG_NOT_FOUND;
		return;
	}
	p->ct_sport = fv->sport;
	p->ct_dport = fv->dport;
	if (p->proto != IPPROTO_ICMP && p->proto != IPPROTO_ICMPV6) {
		p->sport = fv->sport;
		p->dport = fv->dport;
	}
}

static __always_inline struct lumen_ipcache_value ipcache_lookup(__u8 family, const __u8 *addr)
{
	struct lumen_ipcache_key k = {};
	struct lumen_ipcache_value *v, world = {.identity = LUMEN_ID_WORLD};

	k.family = family;
	k.prefixlen = 32 + (family == 4 ? 32 : 128);
	__builtin_memcpy(k.addr, addr, 16);
	v = bpf_map_lookup_elem(&ipcache, &k);
	return v ? *v : world;
}

static __always_inline struct lumen_policy_value *
policy_lookup(__u32 policy_id, __u8 dir, __u32 identity, __u8 proto, __u16 dport)
{
	struct lumen_policy_key k = {};

	k.prefixlen = LUMEN_POLICY_PREFIX_FULL;
	k.policy_id_be = bpf_htonl(policy_id);
	k.direction = dir;
	k.identity_be = bpf_htonl(identity);
	k.proto = proto;
	k.dport_be = bpf_htons(dport);
	return bpf_map_lookup_elem(&policy, &k);
}

static __always_inline int action_rank(const struct lumen_policy_value *v)
{
	if (!v)
		return 0;
	if (v->action == LUMEN_ACTION_DENY)
		return 3;
	if (v->action == LUMEN_ACTION_AUDIT)
		return 2;
	return 1;
}

struct decision {
	__u8 verdict;
	__u8 drop_reason;
	__u8 pad[2];
	__u32 rule_id;
};

/*
 * Policy for a connection opened in direction dir to port dport. The
 * peer-specific and the any-identity entry are both consulted: deny beats
 * audit beats allow, and on a tie the peer-specific entry names the rule.
 */
static __always_inline struct decision decide(const struct lumen_endpoint_info *ep, __u32 slot,
					      __u8 dir, __u32 peer, __u8 proto, __u16 dport)
{
	struct decision d = {.verdict = LUMEN_VERDICT_FORWARDED};
	__u32 enforce = dir == LUMEN_DIR_INGRESS ? LUMEN_EP_ENFORCE_INGRESS : LUMEN_EP_ENFORCE_EGRESS;
	__u32 audit = dir == LUMEN_DIR_INGRESS ? LUMEN_EP_AUDIT_INGRESS : LUMEN_EP_AUDIT_EGRESS;
	__u32 flags = ep->flags[slot], policy_id = ep->policy_id[slot];
	struct lumen_policy_value *specific, *any, *v;

	if (!(flags & enforce))
		return d;
	specific = policy_lookup(policy_id, dir, peer, proto, dport);
	any = policy_lookup(policy_id, dir, 0, proto, dport);
	v = action_rank(any) > action_rank(specific) ? any : specific;
	if (!v) {
		d.verdict = LUMEN_VERDICT_DROPPED;
		d.drop_reason = LUMEN_DROP_POLICY_DENIED;
	} else if (v->action == LUMEN_ACTION_DENY) {
		d.verdict = LUMEN_VERDICT_DROPPED;
		d.drop_reason = LUMEN_DROP_POLICY_DENY;
		d.rule_id = v->rule_id;
	} else {
		d.verdict = v->action == LUMEN_ACTION_AUDIT ? LUMEN_VERDICT_AUDIT
							    : LUMEN_VERDICT_FORWARDED;
		d.rule_id = v->rule_id;
	}
	if (d.verdict == LUMEN_VERDICT_DROPPED && (flags & audit))
		d.verdict = LUMEN_VERDICT_AUDIT;
	return d;
}

static __always_inline void count_traffic(__u8 dir, __u8 verdict, __u32 len)
{
	__u32 idx = (__u32)dir * LUMEN_VERDICT_MAX + verdict;
	struct lumen_traffic_counter *c = bpf_map_lookup_elem(&traffic_ctrs, &idx);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

static __always_inline void count_drop(__u8 dir, __u8 reason, __u32 len)
{
	__u32 idx = (__u32)dir * LUMEN_DROP_REASON_MAX + reason;
	struct lumen_traffic_counter *c = bpf_map_lookup_elem(&drop_ctrs, &idx);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

static __always_inline void count_event(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&event_ctrs, &idx);

	if (c)
		(*c)++;
}

/* An event and the packet bytes captured with it, assembled off the stack. */
struct event_buf {
	struct lumen_event ev;
	__u8 data[LUMEN_CAPTURE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event_buf);
} scratch SEC(".maps");

static __always_inline void emit(struct __sk_buff *skb,
				 struct event_buf *buf)
{
	__u32 cap = lumen_config.capture_len;
	__u64 wakeup = lumen_config.wakeup_bytes;
	__u64 pending, flags;

	if (cap > skb->len)
		cap = skb->len;
	if (cap > LUMEN_CAPTURE_MAX)
		cap = LUMEN_CAPTURE_MAX;
	buf->ev.cap_len = 0;
	if (cap > 0 && bpf_skb_load_bytes(skb, 0, buf->data, cap) == 0)
		buf->ev.cap_len = cap;
	else
		cap = 0;

	/*
	 * Batch wakeups: wake the reader once, when pending data crosses the
	 * threshold. A reader that is behind is awake anyway, and it also
	 * polls on a short timer, so nothing waits for long.
	 */
	pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	flags = BPF_RB_NO_WAKEUP;
	if (pending < wakeup && pending + sizeof(buf->ev) + cap >= wakeup)
		flags = BPF_RB_FORCE_WAKEUP;
	count_event(LUMEN_EVC_EMITTED);
	if (bpf_ringbuf_output(&events, buf, sizeof(buf->ev) + cap, flags) < 0)
		count_event(LUMEN_EVC_LOST);
}

/*
 * Fills the canonical conntrack key of a tuple seen at an endpoint and
 * returns 1 when the tuple's source is side a of the key.
 */
static __always_inline __u8 ct_key(struct lumen_ct_key *k, const __u8 *saddr, const __u8 *daddr,
				   __u16 sport, __u16 dport, __u8 proto, __u8 family, __u32 ep_id)
{
	const __u32 *s = (const __u32 *)saddr, *d = (const __u32 *)daddr;
	int cmp = 0;
	__u8 src_is_a;

#pragma unroll
	for (int i = 0; i < 4; i++)
		if (cmp == 0 && s[i] != d[i])
			cmp = s[i] < d[i] ? -1 : 1;
	if (cmp == 0)
		cmp = sport < dport ? -1 : (sport > dport ? 1 : 0);
	src_is_a = cmp <= 0;
	if (src_is_a) {
		__builtin_memcpy(k->addr_a, saddr, 16);
		__builtin_memcpy(k->addr_b, daddr, 16);
		k->port_a = sport;
		k->port_b = dport;
	} else {
		__builtin_memcpy(k->addr_a, daddr, 16);
		__builtin_memcpy(k->addr_b, saddr, 16);
		k->port_a = dport;
		k->port_b = sport;
	}
	k->endpoint_id = ep_id;
	k->proto = proto;
	k->family = family;
	k->pad[0] = 0;
	k->pad[1] = 0;
	return src_is_a;
}

/* What deciding for one endpoint in one direction produced. */
struct outcome {
	__u8 verdict;
	__u8 pad[3];
	__u32 peer_ifindex; /* host interface of the peer when it is a local endpoint */
	__u32 peer_endpoint_id;
};

/*
 * Conntrack, policy, counters and event for endpoint ep (whose host-side
 * interface is ifindex) and a packet in direction dir.
 */
static __always_inline struct outcome process(struct __sk_buff *skb, struct packet *p,
					      const struct lumen_endpoint_info *ep, __u32 ifindex,
					      __u8 dir, __u8 agg)
{
	__u32 zero = 0;
	struct lumen_ct_entry *ct;
	struct lumen_ct_key key = {};
	struct lumen_ipcache_value peer = {.identity = LUMEN_ID_WORLD};
	struct decision d = {.verdict = LUMEN_VERDICT_FORWARDED};
	struct outcome o = {};
	__u8 ct_state = 0, report = 0, src_is_a, have_peer = 0;
	const __u8 *peer_addr = dir == LUMEN_DIR_INGRESS ? p->saddr : p->daddr;
	__u32 revision = lumen_config.policy_revision;
	__u32 slot = revision & 1;

	if (p->drop_reason) {
		/* Unparseable packets are dropped only where policy is enforced. */
		__u32 enforce = dir == LUMEN_DIR_INGRESS ? LUMEN_EP_ENFORCE_INGRESS
							 : LUMEN_EP_ENFORCE_EGRESS;
		if (ep->flags[slot] & enforce) {
			d.verdict = LUMEN_VERDICT_DROPPED;
			d.drop_reason = p->drop_reason;
		}
		report = 1;
		goto out;
	}

	src_is_a = ct_key(&key, p->saddr, p->daddr, p->ct_sport, p->ct_dport, p->proto, p->family,
			  ep->endpoint_id);
	ct = bpf_map_lookup_elem(&conntrack, &key);
	/*
	 * A SYN on the tuple of a connection that policy denied opens a new
	 * connection: it is decided as one, and replaces the tombstone if allowed.
	 */
	if (ct && ct->verdict == LUMEN_VERDICT_DROPPED &&
	    (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		ct = NULL;
	if (ct && src_is_a == ct->orig_src_is_a) {
		__u8 seen = ct->tcp_flags_fwd;
		ct_state = LUMEN_CT_ESTABLISHED;
		ct->packets_fwd++;
		if ((seen | p->tcp_flags) != seen) {
			ct->tcp_flags_fwd = seen | p->tcp_flags;
			report = agg == LUMEN_AGG_MEDIUM;
		}
		if ((p->tcp_flags & (TCP_FIN | TCP_RST)) && !(ct->closing & 1)) {
			ct->closing |= 1;
			report = agg != LUMEN_AGG_NONE;
		}
	} else if (ct) {
		__u8 seen = ct->tcp_flags_rev;
		ct_state = LUMEN_CT_REPLY;
		/* The first answer tells that the peer responded at all. */
		if (ct->packets_rev == 0)
			report = agg == LUMEN_AGG_MEDIUM;
		ct->packets_rev++;
		if ((seen | p->tcp_flags) != seen) {
			ct->tcp_flags_rev = seen | p->tcp_flags;
			report = agg == LUMEN_AGG_MEDIUM;
		}
		if ((p->tcp_flags & (TCP_FIN | TCP_RST)) && !(ct->closing & 2)) {
			ct->closing |= 2;
			report = agg != LUMEN_AGG_NONE;
		}
	}
	if (ct) {
		if (ct->policy_revision != revision) {
			/*
			 * Policy changed since the connection was decided: the first
			 * packet of either direction decides it again, for the
			 * direction it was opened in. A denied connection becomes a
			 * tombstone: neither direction passes any more.
			 */
			peer = ipcache_lookup(p->family, peer_addr);
			have_peer = 1;
			d = decide(ep, slot, ct->orig_dir, peer.identity, p->proto,
				   ct_state == LUMEN_CT_REPLY ? p->sport : p->dport);
			ct->verdict = d.verdict;
			ct->drop_reason = d.drop_reason;
			ct->rule_id = d.rule_id;
			ct->policy_revision = revision;
			report = report || agg != LUMEN_AGG_MAX;
		}
		d.verdict = ct->verdict;
		d.drop_reason = ct->drop_reason;
		d.rule_id = ct->rule_id;
		o.peer_ifindex = ct->peer_ifindex;
		o.peer_endpoint_id = ct->peer_endpoint_id;
		goto out;
	}

	if (p->has_inner) {
		struct lumen_ct_key inner = {};

		ct_key(&inner, p->inner.saddr, p->inner.daddr, p->inner.sport, p->inner.dport,
		       p->inner.proto, p->family, ep->endpoint_id);
		ct = bpf_map_lookup_elem(&conntrack, &inner);
		if (ct) {
			ct_state = LUMEN_CT_RELATED;
			d.verdict = ct->verdict;
			d.drop_reason = ct->drop_reason;
			d.rule_id = ct->rule_id;
			report = agg == LUMEN_AGG_MEDIUM;
			goto out;
		}
	}

	ct_state = LUMEN_CT_NEW;
	report = 1;
	peer = ipcache_lookup(p->family, peer_addr);
	have_peer = 1;
	d = decide(ep, slot, dir, peer.identity, p->proto, p->dport);
	if (d.verdict != LUMEN_VERDICT_DROPPED) {
		struct lumen_ct_entry entry = {
			.created_ns = bpf_ktime_get_coarse_ns(),
			.packets_fwd = 1,
			.rule_id = d.rule_id,
			.tcp_flags_fwd = p->tcp_flags,
			.closing = (p->tcp_flags & (TCP_FIN | TCP_RST)) ? 1 : 0,
			.verdict = d.verdict,
			.orig_src_is_a = src_is_a,
			.orig_dir = dir,
			.peer_ifindex = peer.ifindex,
			.peer_endpoint_id = peer.endpoint_id,
			.policy_revision = revision,
		};
		bpf_map_update_elem(&conntrack, &key, &entry, BPF_ANY);
		o.peer_ifindex = peer.ifindex;
		o.peer_endpoint_id = peer.endpoint_id;
	}

out:
	if (d.verdict == LUMEN_VERDICT_DROPPED)
		report = 1;
	o.verdict = d.verdict;
	count_traffic(dir, d.verdict, skb->len);
	if (d.verdict == LUMEN_VERDICT_DROPPED)
		count_drop(dir, d.drop_reason, skb->len);
	if (report || agg == LUMEN_AGG_NONE) {
		struct event_buf *buf = bpf_map_lookup_elem(&scratch, &zero);
		struct lumen_event *ev;

		if (!buf) {
			count_event(LUMEN_EVC_EMITTED);
			count_event(LUMEN_EVC_LOST);
			return o;
		}
		ev = &buf->ev;
		if (!have_peer)
			peer = ipcache_lookup(p->family, peer_addr);
		ev->timestamp_ns = bpf_ktime_get_ns();
		ev->ifindex = ifindex;
		ev->endpoint_id = ep->endpoint_id;
		ev->src_identity = dir == LUMEN_DIR_INGRESS ? peer.identity : ep->identity;
		ev->dst_identity = dir == LUMEN_DIR_INGRESS ? ep->identity : peer.identity;
		ev->rule_id = d.rule_id;
		ev->pkt_len = skb->len;
		__builtin_memcpy(ev->saddr, p->saddr, 16);
		__builtin_memcpy(ev->daddr, p->daddr, 16);
		ev->sport = p->sport;
		ev->dport = p->dport;
		ev->family = p->family;
		ev->proto = p->proto;
		ev->direction = dir;
		ev->obs_point = dir == LUMEN_DIR_INGRESS ? LUMEN_OBS_TO_ENDPOINT
							 : LUMEN_OBS_FROM_ENDPOINT;
		ev->verdict = d.verdict;
		ev->drop_reason = d.drop_reason;
		ev->tcp_flags = p->tcp_flags;
		ev->ct_state = ct_state;
		ev->flags = p->flags | (ct_state == LUMEN_CT_REPLY ? LUMEN_EVF_IS_REPLY : 0);
		ev->icmp_type = p->icmp_type;
		ev->icmp_code = p->icmp_code;
		ev->pad = 0;
		ev->pad2 = 0;
		ev->pad3 = 0;
		emit(skb, buf);
	}
	return o;
}

static __always_inline struct lumen_endpoint_info *endpoint_of(__u32 ifindex)
{
	/* The array answers NULL past its end; only then is the hash consulted. */
	struct lumen_endpoint_info *ep = bpf_map_lookup_elem(&endpoints, &ifindex);

	if (!ep)
		ep = bpf_map_lookup_elem(&endpoints_ext, &ifindex);
	return ep && ep->endpoint_id ? ep : NULL;
}

static __always_inline int mac_unset(const __u8 *mac)
{
	return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) == 0;
}

/*
 * Local delivery: a packet from one endpoint to another on this node is
 * decided for the receiver here as well, then handed straight to the
 * receiver's interface (as the host would route it: MACs rewritten, TTL
 * decremented), skipping the host stack and the receiver's own hook. When
 * anything needed is missing the packet takes the ordinary path instead,
 * where the receiver's hook decides.
 */
static __always_inline int deliver_local(struct __sk_buff *skb, struct packet *p, __u32 peer_if,
					 __u32 peer_ep_id, __u8 agg)
{
	struct lumen_endpoint_info *dep = endpoint_of(peer_if);
	struct outcome o;
	__u32 ttl_off = ETH_HLEN + (p->family == 4 ? 8 : 7);
	__u8 ttl[2];

	if (!dep || dep->endpoint_id != peer_ep_id || mac_unset(dep->pod_mac) || mac_unset(dep->host_mac) ||
	    (p->flags & LUMEN_EVF_FRAGMENT))
		return TC_ACT_OK;
	if (load(skb, ttl_off, ttl, 2) < 0 || ttl[0] <= 1)
		return TC_ACT_OK; /* the stack answers with time exceeded */

	o = process(skb, p, dep, peer_if, LUMEN_DIR_INGRESS, agg);
	if (o.verdict == LUMEN_VERDICT_DROPPED)
		return TC_ACT_SHOT;

	if (p->family == 4) {
		__u16 old, new;
		__builtin_memcpy(&old, ttl, 2);
		ttl[0]--;
		__builtin_memcpy(&new, ttl, 2);
		if (bpf_l3_csum_replace(skb, ETH_HLEN + 10, old, new, 2) < 0)
			return TC_ACT_SHOT;
	} else {
		ttl[0]--;
	}
	if (bpf_skb_store_bytes(skb, ttl_off, ttl, 1, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 0, dep->pod_mac, 6, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 6, dep->host_mac, 6, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(peer_if, 0);
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	__u32 ifindex = skb->ifindex;
	struct lumen_endpoint_info *ep;
	struct packet p = {};
	struct outcome o;
	__u8 agg;

	ep = endpoint_of(ifindex);
	if (!ep)
		return TC_ACT_OK;

	if (dir == LUMEN_DIR_EGRESS && mac_unset(ep->pod_mac)) {
		/* Learn the pod's MAC, for local delivery to it. */
		__u8 src[6];
		if (load(skb, 6, src, 6) == 0)
			__builtin_memcpy(ep->pod_mac, src, 6);
	}

	if (skb->protocol == bpf_htons(ETH_P_IP))
		parse_ipv4(skb, &p);
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		parse_ipv6(skb, &p);
	else
		return TC_ACT_OK; /* ARP and other non-IP traffic is not policed */

	if (p.always_allow)
		return TC_ACT_OK;
	if (!p.drop_reason)
		track_fragments(&p);

	agg = lumen_config.aggregation;
	o = process(skb, &p, ep, ifindex, dir, agg);
	if (o.verdict == LUMEN_VERDICT_DROPPED)
		return TC_ACT_SHOT;
	if (dir == LUMEN_DIR_EGRESS && o.peer_ifindex && o.peer_ifindex != ifindex && !p.drop_reason &&
	    lumen_config.local_redirect)
		return deliver_local(skb, &p, o.peer_ifindex, o.peer_endpoint_id, agg);
	return TC_ACT_OK;
}

SEC("classifier")
int lumen_from_endpoint(struct __sk_buff *skb)
{
	return handle(skb, LUMEN_DIR_EGRESS);
}

SEC("classifier")
int lumen_to_endpoint(struct __sk_buff *skb)
{
	return handle(skb, LUMEN_DIR_INGRESS);
}

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * A program that passes every packet and does nothing else. Benchmarks
 * attach it where the datapath would go, to tell the cost of the hook
 * itself from the cost of Lumen's work.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("classifier")
int lumen_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

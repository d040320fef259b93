//! Per-packet cost of the datapath program, measured in the kernel with
//! BPF_PROG_TEST_RUN on crafted packets: the conntrack fast path, and new
//! connections decided by policy with 10, 1,000 and 10,000 rules loaded.
//! Results go to BENCHMARKS.md.
//!
//! Run as root: `cargo bench -p lumen-observer --bench prog_run`.

use std::fmt::Write as _;
use std::path::Path;

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::MapData;
use aya::programs::SchedClassifier;
use aya::{Ebpf, EbpfLoader};
use lumen_observer::datapath::{policy_key, policy_trie_key, policy_value};
use lumen_policy::PolicyEntry;

const PROTO_TCP: u8 = 6;
use lumen_probes::abi;

#[path = "support/benchmarks_md.rs"]
mod benchmarks_md;
use benchmarks_md::update_benchmarks;

#[path = "support/test_run.rs"]
mod test_run;
use test_run::{tcp_packet, ENDPOINT_IFINDEX};

const REPEAT: u32 = 200_000;

fn test_run(prog: &SchedClassifier, packet: &[u8]) -> (u32, u32) {
    test_run::test_run(prog, packet, REPEAT)
}

fn load(pin_dir: &Path) -> Ebpf {
    let mut ebpf = EbpfLoader::new()
        .map_pin_path(pin_dir)
        .set_max_entries(lumen_probes::maps::EVENTS, 64 << 20)
        .load(lumen_probes::DATAPATH_OBJECT)
        .expect("load the datapath (run as root)");
    for name in [lumen_probes::PROG_FROM_ENDPOINT, lumen_probes::PROG_TO_ENDPOINT] {
        let prog: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
        prog.load().unwrap();
    }
    ebpf
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pin_dir = Path::new("/sys/fs/bpf/lumen").join(format!("bench-prog-run-{}", std::process::id()));
    std::fs::create_dir_all(&pin_dir).unwrap();
    let mut rows = Vec::new();

    let mut pass = Ebpf::load(lumen_probes::PASS_OBJECT).unwrap();
    let p: &mut SchedClassifier = pass.program_mut(lumen_probes::PROG_PASS).unwrap().try_into().unwrap();
    p.load().unwrap();
    rows.push((
        "a program that only passes (the harness's own cost)",
        test_run(p, &tcp_packet(80, 0x10)).1,
    ));

    for rules in [10usize, 1_000, 10_000] {
        let _ = std::fs::remove_dir_all(&pin_dir);
        std::fs::create_dir_all(&pin_dir).unwrap();
        let mut ebpf = load(&pin_dir);
        let mut endpoints: aya::maps::Array<MapData, abi::EndpointInfo> =
            aya::maps::Array::try_from(ebpf.take_map(lumen_probes::maps::ENDPOINTS).unwrap()).unwrap();
        let mut policy: LpmTrie<MapData, [u8; 16], abi::PolicyValue> =
            LpmTrie::try_from(ebpf.take_map(lumen_probes::maps::POLICY).unwrap()).unwrap();
        let mut config: aya::maps::Array<MapData, abi::Config> =
            aya::maps::Array::try_from(ebpf.take_map(lumen_probes::maps::CONFIG).unwrap()).unwrap();
        // What the observer sets by default: medium aggregation, batched wakeups.
        let settings = |policy_revision| abi::Config {
            aggregation: abi::AGG_MEDIUM,
            capture_len: 0,
            wakeup_bytes: 64 << 10,
            local_redirect: 1,
            policy_revision,
        };
        config.set(0, settings(0), 0).unwrap();
        let info = abi::EndpointInfo {
            endpoint_id: 1,
            identity: 300,
            policy_id: [1, 1],
            flags: [abi::EP_ENFORCE_EGRESS; 2],
            ..Default::default()
        };
        endpoints.set(ENDPOINT_IFINDEX, info, 0).unwrap();
        // Rules for other identities and ports; port 80 is allowed for any
        // identity, port 81 matches nothing (dropped: POLICY_DENIED).
        for i in 0..rules - 1 {
            let e = PolicyEntry {
                direction: abi::DIR_EGRESS,
                identity: 1000 + (i % 1000) as u32,
                proto: PROTO_TCP,
                port: 10_000 + (i / 1000) as u16,
                port_bits: 16,
                action: abi::ACTION_ALLOW,
                rule_id: i as u32 + 1,
            };
            insert(&mut policy, &e);
        }
        let allow80 = PolicyEntry {
            direction: abi::DIR_EGRESS,
            identity: 0,
            proto: PROTO_TCP,
            port: 80,
            port_bits: 16,
            action: abi::ACTION_ALLOW,
            rule_id: 99_999,
        };
        insert(&mut policy, &allow80);
        let prog: &mut SchedClassifier = ebpf
            .program_mut(lumen_probes::PROG_FROM_ENDPOINT)
            .unwrap()
            .try_into()
            .unwrap();
        let (verdict, ns) = test_run(prog, &tcp_packet(81, 0x02));
        assert_eq!(verdict, 2, "TC_ACT_SHOT for a denied SYN");
        rows.push((
            leak(format!("new connection denied by policy, event emitted, {rules} rules")),
            ns,
        ));
        if rules == 10_000 {
            // The first run creates the conntrack entry; the rest take the fast path.
            let (verdict, ns) = test_run(prog, &tcp_packet(80, 0x10));
            assert_eq!(verdict, 0, "TC_ACT_OK for an allowed packet");
            rows.push((
                "established connection (conntrack fast path, no event), 10000 rules",
                ns,
            ));
            // A policy change denies it: the first run decides it again and
            // keeps its entry as a tombstone, the rest are dropped by it.
            policy.remove(&policy_trie_key(&policy_key(&allow80, 1))).unwrap();
            config.set(0, settings(1), 0).unwrap();
            let (verdict, ns) = test_run(prog, &tcp_packet(80, 0x10));
            assert_eq!(verdict, 2, "TC_ACT_SHOT for a packet of a denied connection");
            rows.push((
                "packet of a connection a policy change denied (conntrack tombstone, event emitted), 10000 rules",
                ns,
            ));
        }
        drop(endpoints);
        drop(policy);
        drop(ebpf);
    }
    let _ = std::fs::remove_dir_all(&pin_dir);

    let mut table = String::from("| case | ns per packet |\n|---|---:|\n");
    for (case, ns) in &rows {
        let _ = writeln!(table, "| {case} | {ns} |");
    }
    let section = format!(
        "## Datapath program: cost per packet (BPF_PROG_TEST_RUN)\n\n\
         Command: `cargo bench -p lumen-observer --bench prog_run` (as root; {REPEAT} runs per case, the kernel's \
         average). Budget: ≤ 150 ns per packet for the full path, flat from 10 to 10,000 rules.\n\n{table}\n\
         The denied case is the most expensive one the datapath has: parse, conntrack miss, ipcache lookup, two \
         policy lookups (the peer's identity and any identity), and a ring-buffer event. A packet of a \
         connection that a policy change denied is dropped by its conntrack entry (kept as a tombstone), \
         without a policy lookup.\n"
    );
    update_benchmarks("prog_run", &section);
    println!("{section}");
}

fn insert(policy: &mut LpmTrie<MapData, [u8; 16], abi::PolicyValue>, e: &PolicyEntry) {
    policy
        .insert(&policy_trie_key(&policy_key(e, 1)), policy_value(e), 0)
        .unwrap();
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

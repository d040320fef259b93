//! Per-packet cost of the datapath program, measured in the kernel with
//! BPF_PROG_TEST_RUN on crafted packets: the conntrack fast path, and new
//! connections decided by policy with 10, 1,000 and 10,000 rules loaded.
//! Results go to BENCHMARKS.md.
//!
//! Run as root: `cargo bench -p lumen-observer --bench prog_run`.

use std::fmt::Write as _;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::MapData;
use aya::programs::SchedClassifier;
use aya::{Ebpf, EbpfLoader};
use lumen_observer::datapath::policy_trie_key;
use lumen_observer::rules::{PolicyEntry, PROTO_TCP};
use lumen_probes::abi;

#[path = "support/benchmarks_md.rs"]
mod benchmarks_md;
use benchmarks_md::update_benchmarks;

const REPEAT: u32 = 200_000;
const ENDPOINT_IFINDEX: u32 = 1; // lo: BPF_PROG_TEST_RUN needs a device that exists

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// Runs the program `REPEAT` times on `packet`; returns (verdict, ns per run).
fn test_run(prog: &SchedClassifier, packet: &[u8]) -> (u32, u32) {
    let mut ctx = [0u8; 192]; // struct __sk_buff
    ctx[40..44].copy_from_slice(&ENDPOINT_IFINDEX.to_ne_bytes());
    let fd = prog.fd().unwrap();
    let mut attr = TestRunAttr {
        prog_fd: fd.as_fd().as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: REPEAT,
        ctx_size_in: ctx.len() as u32,
        ctx_in: ctx.as_ptr() as u64,
        ..Default::default()
    };
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    // SAFETY: attr points at buffers that outlive the call; the kernel reads
    // data_in/ctx_in and writes retval and duration into attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    assert_eq!(rc, 0, "BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
    (attr.retval, attr.duration)
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 + TCP from 10.0.0.1:40000 to 10.0.0.2:`dport`.
fn tcp_packet(dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(&40_000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
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
        config
            .set(
                0,
                abi::Config {
                    aggregation: abi::AGG_MEDIUM,
                    capture_len: 0,
                    wakeup_bytes: 64 << 10,
                    local_redirect: 1,
                    pad: 0,
                },
                0,
            )
            .unwrap();
        let info = abi::EndpointInfo {
            endpoint_id: 1,
            identity: 300,
            policy_id: 1,
            flags: abi::EP_ENFORCE_EGRESS,
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
         policy lookups (the peer's identity and any identity), and a ring-buffer event.\n"
    );
    update_benchmarks("prog_run", &section);
    println!("{section}");
}

fn insert(policy: &mut LpmTrie<MapData, [u8; 16], abi::PolicyValue>, e: &PolicyEntry) {
    policy.insert(&policy_trie_key(&e.key(1)), e.value(), 0).unwrap();
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

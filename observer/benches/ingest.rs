//! Events from the kernel to stored flows, end to end: the real datapath
//! program, driven with BPF_PROG_TEST_RUN on one core, writes drop events
//! into the node's pinned ring buffer; the real observer (reader, decode,
//! store) drains it on the other core. Measures whether 500,000 events/s
//! sustained lose nothing, and the most the pipeline keeps up with.
//! Results go to BENCHMARKS.md.
//!
//! Run as root: `cargo bench -p lumen-observer --bench ingest`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::SchedClassifier;
use aya::EbpfLoader;
use lumen_observer::{counters, ObserverConfig, ObserverHandle};
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::ServerStatusRequest;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::pin_to_cpu;
#[path = "support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "support/test_run.rs"]
mod test_run;

fn seen_flows(rt: &tokio::runtime::Runtime, socket: &Path) -> u64 {
    rt.block_on(async move {
        let channel = lumen_observer::server::connect_unix(socket).await.unwrap();
        ObserverClient::new(channel)
            .server_status(ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .seen_flows
    })
}

/// Drives `per_tick` events every 10 ms for `duration` (0: as fast as it goes).
fn drive(prog: &SchedClassifier, packet: &[u8], per_tick: u32, duration: Duration) {
    let start = Instant::now();
    let mut tick = start;
    while start.elapsed() < duration {
        let (verdict, _) = test_run::test_run(prog, packet, per_tick.max(1));
        assert_eq!(
            verdict, 2,
            "the generator's packets are dropped (and so always reported)"
        );
        if per_tick > 0 {
            tick += Duration::from_millis(10);
            if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    pin_to_cpu(0);
    let mut tb = lumen_testbed::Testbed::new().expect("run as root");
    let node = tb.add_node("ingest").unwrap();
    let dir = std::env::temp_dir().join(format!("lumen-bench-ingest-{}", tb.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    // The generator's "endpoint" is the node's lo: BPF_PROG_TEST_RUN runs
    // packets as if on it. Its egress allows only UDP 9, so the generated
    // TCP packets are dropped and every one is reported.
    std::fs::write(
        dir.join("endpoints.yaml"),
        "endpoints:\n  - name: gen\n    labels: {app: gen}\n    interface: lo\n    ips: [10.0.0.1]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: gen-out}\nspec:\n  endpointSelector: {matchLabels: {app: gen}}\n  egress:\n    - toPorts: [{ports: [{port: \"9\", protocol: UDP}]}]\n",
    )
    .unwrap();
    let mut cfg = ObserverConfig::in_dir(&format!("{}-ingest", tb.prefix()), &dir);
    cfg.netns = Some(node.netns.clone());
    cfg.endpoints = Some(dir.join("endpoints.yaml"));
    cfg.policy = Some(dir.join("policy.yaml"));
    cfg.ring_buffer_bytes = 16 << 20;
    cfg.max_flows = 1_000_000;
    let pin_dir = cfg.pin_dir();
    pin_to_cpu(1);
    let observer = ObserverHandle::spawn(cfg.clone());
    pin_to_cpu(0);
    assert!(observer.wait_ready(Duration::from_secs(20)), "observer did not start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let packet = test_run::tcp_packet(80, 0x02);
    let results = lumen_testbed::in_netns(&node.netns, || {
        // Same pinned maps (ring buffer included) as the observer's.
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(&pin_dir)
            .load(lumen_probes::DATAPATH_OBJECT)
            .unwrap();
        let prog: &mut SchedClassifier = ebpf
            .program_mut(lumen_probes::PROG_FROM_ENDPOINT)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().unwrap();
        let mut out = Vec::new();
        for (label, per_tick, secs) in [
            ("sustained 500,000 events/s", 5_000, 5),
            ("as fast as one core generates", 0, 3),
        ] {
            let k0 = counters::event_counters(&pin_dir).unwrap();
            let s0 = seen_flows(&rt, &cfg.socket);
            let start = Instant::now();
            if per_tick > 0 {
                drive(prog, &packet, per_tick, Duration::from_secs(secs));
            } else {
                let deadline = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < deadline {
                    test_run::test_run(prog, &packet, 20_000);
                }
            }
            let elapsed = start.elapsed();
            std::thread::sleep(Duration::from_millis(500));
            let k1 = counters::event_counters(&pin_dir).unwrap();
            let s1 = seen_flows(&rt, &cfg.socket);
            let emitted = k1.emitted - k0.emitted;
            out.push((
                label,
                emitted as f64 / elapsed.as_secs_f64(),
                emitted,
                k1.lost - k0.lost,
                s1 - s0,
            ));
        }
        out
    })
    .unwrap();
    observer.stop().unwrap();
    let _ = lumen_observer::daemon::uninstall(&pin_dir);
    let _ = std::fs::remove_dir_all(&dir);

    let mut table = String::from(
        "| load | generated (events/s) | events | lost in the kernel | stored |\n|---|---:|---:|---:|---:|\n",
    );
    for (label, rate, emitted, lost, stored) in &results {
        let _ = writeln!(table, "| {label} | {rate:.0} | {emitted} | {lost} | {stored} |");
    }
    let sustained = &results[0];
    let section = format!(
        "## Observer ingest: kernel events to stored flows\n\n\
         Command: `cargo bench -p lumen-observer --bench ingest` (as root). The real datapath program, driven \
         with BPF_PROG_TEST_RUN on CPU 0 (a TCP SYN its policy drops, so every run writes an event), fills the \
         node's pinned ring buffer (16 MiB); the real observer drains it on CPU 1 into the flow store. \
         \"Stored\" is the observer's seen_flows over gRPC.\n\n{table}\n\
         Zero loss at 500,000 events/s sustained: **{}** ({} lost of {}). Unpaced, the generating core is the \
         limit: the observer stored {} of {} events ({:.2} M/s) on the other core; budget ≥ 1 M/s: **{}**.\n",
        if sustained.3 == 0 && sustained.4 == sustained.2 {
            "met"
        } else {
            "NOT met"
        },
        sustained.3,
        sustained.2,
        results[1].4,
        results[1].2,
        results[1].4 as f64 / results[1].2 as f64 * results[1].1 / 1e6,
        if results[1].4 as f64 / results[1].2 as f64 * results[1].1 >= 1e6 {
            "met"
        } else {
            "NOT met"
        },
    );
    benchmarks_md::update_benchmarks("ingest", &section);
    println!("{section}");
}

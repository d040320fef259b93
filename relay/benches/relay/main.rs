//! The relay against its budgets (DESIGN.md §6): flows merged per second
//! from 8 nodes, for a query of stored flows and for a follow stream, the
//! merge stage's own cost on one core, follow latency from the nodes' flow
//! stores to a client, and the relay's memory. No kernel: 8 real observer
//! gRPC servers run in this process, their flow stores fed with datapath
//! records directly, and the relay runs in-process as the `lumen-relay`
//! binary would, with its default settings. Packet-to-CLI latency on a
//! real cluster is `cargo bench -p lumen-cli --bench latency`. Results go
//! to BENCHMARKS.md.
//!
//! Run: `cargo bench -p lumen-relay --bench relay` (no root needed). With a
//! part's name as argument (`throughput`, `replay`, `saturated`, `baseline`,
//! `merge`, `follow`) only that part runs and nothing is written (for profiling).

mod baseline;
mod cluster;
mod follow;
mod replay;
mod stage;
mod threads;
mod throughput;

#[path = "../../../observer/benches/support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "../../../observer/benches/support/machine.rs"]
mod machine;
#[path = "../../../observer/benches/support/numbers.rs"]
mod numbers;

use baseline::forward;
use cluster::{all_connected, connect, record, start_node, start_relay, wall_ns, Node};
use follow::{follow, follow_saturated};
use numbers::count;
use replay::{record_answers, start_replays};
use stage::merge_stage;
use threads::{mark_bench_thread, pin, tid};
use throughput::{check_integrity, throughput};

const NODES: usize = 8;
/// Each node's flow store, as a production observer might be configured.
const STORE: usize = 1_000_000;
/// Flows per node answered by the non-follow GetFlows.
const PER_NODE: usize = 50_000;
const THROUGHPUT_RUNS: usize = 5;
/// Flows per node taken for the merge stage measured alone.
const STAGE_PER_NODE: usize = 25_000;
const STAGE_RUNS: usize = 5;
/// Responses a node's stream delivers to the relay in one go, in the
/// stage's model of arrival order.
const ARRIVAL_CHUNK: usize = 64;
const BUDGET_FLOWS_PER_S: f64 = 1_000_000.0;
const BUDGET_P99_MS: f64 = 100.0;
/// The throughput runs' sources.
const REAL: &str = "real observers";

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    mark_bench_thread();
    let main_tid = tid();
    // The relays get CPU 1 to themselves; the nodes, the client and the
    // producer share CPU 0.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cpus >= 2 && pin(main_tid, 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-observers")
        .on_thread_start(mark_bench_thread)
        .enable_all()
        .build()
        .unwrap();
    let nodes: Vec<Node> = rt.block_on(async {
        let mut nodes = Vec::new();
        for k in 0..NODES {
            nodes.push(start_node(&format!("node-{k}")).await);
        }
        nodes
    });
    // Interleaved in time across nodes, 1 µs apart, ending a minute ago.
    let base = wall_ns() - 60_000_000_000 - (NODES * PER_NODE) as u64 * 1_000;
    for (k, n) in nodes.iter().enumerate() {
        n.hub.push((0..PER_NODE).map(|i| {
            let g = (i * NODES + k) as u64;
            record(g, base + g * 1_000)
        }));
    }
    let answers = rt.block_on(record_answers(&nodes));
    let stage = runs("merge").then(|| merge_stage(&answers));
    let baseline = runs("baseline").then(|| rt.block_on(forward(&answers, THROUGHPUT_RUNS)));
    let (replays, stop_replays) = rt.block_on(start_replays(answers));
    // Started from CPU 1, the relays' threads stay there.
    if pinned {
        pin(main_tid, 1);
    }
    let relay = start_relay(&nodes.iter().map(|n| n.address).collect::<Vec<_>>());
    let replay_relay = start_relay(&replays);
    if pinned {
        pin(main_tid, 0);
    }
    rt.block_on(async {
        for r in [&relay, &replay_relay] {
            all_connected(&mut connect(r.address).await).await;
        }
        check_integrity(relay.address).await;
    });

    let mut rows = String::new();
    if runs("throughput") {
        rows += &rt.block_on(throughput(relay.address, REAL)).rows();
    }
    let (mut history_ns, mut follow_ns) = (None, None);
    if runs("replay") {
        let t = rt.block_on(throughput(replay_relay.address, "replaying recorded answers"));
        history_ns = Some(t.relay_ns_per_flow());
        rows += &t.rows();
    }
    if runs("saturated") {
        let s = rt.block_on(follow_saturated(replay_relay.address, THROUGHPUT_RUNS));
        follow_ns = Some(s.relay_ns_per_flow());
        rows += &s.rows();
    }
    if let Some(baseline) = baseline {
        rows += &baseline.rows(history_ns, follow_ns);
    }
    if let Some(stage) = stage {
        rows += &stage.rows();
    }
    if runs("follow") {
        for (rate, seconds) in [(8_000, 5.0), (20_000, 5.0), (1_000_000, 1.0)] {
            rows += &rt.block_on(follow(relay.address, &nodes, rate, seconds)).rows();
        }
    }
    print!("{rows}");
    relay.stop().unwrap();
    replay_relay.stop().unwrap();
    let _ = stop_replays.send(true);
    drop(nodes);
    if only.is_none() {
        benchmarks_md::update_benchmarks("relay", &section(&rows, pinned));
        println!("BENCHMARKS.md updated");
    }
}

fn row(measure: &str, result: &str, budget: &str) -> String {
    format!("| {measure} | {result} | {budget} |\n")
}

fn section(rows: &str, pinned: bool) -> String {
    let placement = if pinned {
        "the relays' threads (each runtime has 2 workers) are pinned to CPU 1; the nodes' servers, the client and the producer to CPU 0"
    } else {
        "nothing is pinned (fewer than 2 CPUs, or taskset failed)"
    };
    format!(
        "## Relay: merged flows from 8 nodes, follow latency, memory

Command: `cargo bench -p lumen-relay --bench relay` (no root, no kernel: the nodes' flow stores are fed with datapath records directly; everything runs in one process).
Machine: {}, kernel {}.

| measure | result | budget |
|---|---|---|
{rows}
How it is set up: 8 observers' real gRPC servers (`lumen_observer::server::serve`, TCP on 127.0.0.1) and the relay (`RelayHandle::spawn`, static peers, the binary's defaults: sort buffer 10,000, window 50 ms) run in this process; {placement}. \
Each node's store (capacity {}) holds {} flows of frontend → backend traffic with pod names, labels and the allowing policy (every 100th a policy drop), timestamps interleaved across nodes 1 µs apart. \
The relay passes flows through as the bytes the nodes sent (it reads each response's time, nothing else) and merges non-follow answers with an exact k-way merge as they stream, holding a few batches per node. \
The throughput runs are one non-follow `GetFlows` each (number 0: everything) through the relay, read by a client that reads each response's kind, node and time (not the whole flow: it shares CPU 0 with the nodes) and checks the time order; before them, 1,000 flows through the relay are decoded whole and checked (node, pod names). \
With real observers, the wall-clock rate also waits on the 8 observers building and encoding flows on CPU 0. Replaying recorded answers: the same 8 answers, recorded from those observers once, served again as encoded bytes by 8 gRPC servers (`RawObserverServer`) on CPU 0, so that the relay is what limits the rate. \
Follow, saturated: the replaying servers answer a follow request with their whole recorded answer at once and then keep the stream open, so the sort window is full from the start and every flow leaves it by capacity, as when nodes send faster than the relay forwards; the client reads until all 400,000 arrived. \
Every client here, and the relay towards the nodes, accepts HTTP/2 frames of up to 1 MiB (`lumen_proto::MAX_FRAME_SIZE`; `lumen` does too). \
The baseline: the same 8 answers behind gRPC's 5-byte prefixes, written over TCP by 8 tasks on CPU 0 to a forwarder on one thread on CPU 1 (a current-thread tokio runtime: 8 reader tasks hand 64 KiB chunks to one writer), which writes them to a client on CPU 0; its CPU time is its thread's own (`CLOCK_THREAD_CPUTIME_ID`, kernel time included, as the relay's is): what moving these bytes costs on this machine before any HTTP/2, gRPC or merging, so the relay's multiple of it carries from one machine to another where nanoseconds do not. \
The relay's CPU time is read per thread from `/proc/self/task/*/schedstat` (threads the benchmark did not start are the relays') and includes its gRPC, HTTP/2 and socket work. \
The merge stage alone takes the nodes' own encoded answers, arriving {ARRIVAL_CHUNK} responses per node at a time, and times reading each response's time, the sort window at its defaults (full, so each push lets the oldest go), the k-way merge, and copying the bytes out, on one thread. \
Follow latency is the client's wall clock on receipt minus the flow's timestamp, which the producer sets from the wall clock when it stores the flow: it starts at the flow store, so the observer's ring-buffer reader comes on top (it drains on the ring buffer's wakeups, which the datapath batches, and at least every 20 ms); the relay's 50 ms sort window is its floor by design. \
At full rate the producer offers more than the chain carries and the follow stream reads until every flow arrived; the relay's memory is then bounded by its sort buffer and channels. \
Heap is counted on the relay's threads by a global allocator around the system one (in one extra non-follow run and in the follow runs, not in the timed ones): the relay exchanges only socket bytes with the rest of the process, so what its threads allocate is its own.
",
        machine::cpu_model(),
        machine::kernel(),
        count(STORE),
        count(PER_NODE)
    )
}

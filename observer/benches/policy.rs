//! Network policy at cluster scale. (1) In-process, no kernel: parsing
//! 1,000 CiliumNetworkPolicies and compiling them for each of 1,000
//! endpoints, with wall time and heap. (2) On the testbed: kernel memory
//! per policy map entry at 10,000 rules, and the time from a `policy apply`
//! on the control socket to enforcement, measured with a stream of numbered
//! datagrams between two pods, for 1, 100 and 1,000 policies over 1,000
//! known endpoints. Results go to BENCHMARKS.md.
//!
//! Run as root: `cargo bench -p lumen-observer --bench policy`
//! (`LUMEN_BENCH_ROUNDS` sets the applies per policy-set size).
//!
//! One bench binary over 600 lines: both parts write one BENCHMARKS.md
//! section together.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{Map, MapData};
use lumen_observer::{daemon, ObserverConfig, ObserverHandle};
use lumen_policy::compile::{cidr_identity, Universe};
use lumen_policy::identity::{IdentityAllocator, Labels};
use lumen_policy::{Options, PolicySet};
use lumen_probes::abi;
use lumen_testbed::{Pod, PodSpec, Testbed};

use control::{PolicyDocument, Request, Response};

#[path = "support/benchmarks_md.rs"]
mod benchmarks_md;
/// The control API driven as the tests drive it.
#[path = "../tests/support/control.rs"]
mod control;
#[path = "support/machine.rs"]
mod machine;
#[path = "support/numbers.rs"]
mod numbers;
#[path = "support/synthetic.rs"]
mod synthetic;

use numbers::{count, mib};
use synthetic::{cnp, policies_yaml, policy, rule, workload, Workload, ENDPOINTS};

const POLICIES: usize = 1_000;
/// Runs of each in-process step; the median is reported.
const RUNS: usize = 5;
const APPLY_ROUNDS: usize = 5;
const APPLY_SIZES: [usize; 3] = [1, 100, 1_000];
const PROBE_PORT: u16 = 7100;
const PROBE_INTERVAL: Duration = Duration::from_micros(100);
const RULES: usize = 10_000;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call goes to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`: its result, the heap's high-water mark above what was live
/// before, and what it left allocated.
fn heap<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let r = f();
    (r, PEAK.load(Relaxed) - base, LIVE.load(Relaxed).saturating_sub(base))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Times `f` `RUNS` times: milliseconds of each run, and the last result.
fn timed<R>(mut f: impl FnMut() -> R) -> (Vec<f64>, R) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        last = Some(std::hint::black_box(f()));
        times.push(ms(t.elapsed()));
    }
    (times, last.unwrap())
}

fn sorted(times: &[f64]) -> Vec<f64> {
    let mut v = times.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// "median ms (median of n; min, max)".
fn spread(times: &[f64]) -> String {
    let v = sorted(times);
    format!(
        "{:.1} ms (median of {}; min {:.1}, max {:.1})",
        v[v.len() / 2],
        v.len(),
        v[0],
        v[v.len() - 1]
    )
}

/// Part 1: parse, PolicySet::new, universe, compile; the table's rows.
fn compile_bench() -> String {
    let yaml = policies_yaml(POLICIES);
    let file = Path::new("policies.yaml");
    let (policies, parse_peak, _) = heap(|| lumen_policy::parse_str(&yaml, file).expect("the policies parse"));
    assert_eq!(policies.len(), POLICIES);
    let (parse_ms, _) = timed(|| lumen_policy::parse_str(&yaml, file).unwrap());
    let (new_ms, set) = timed(|| PolicySet::new(policies.clone()));

    let workloads: Vec<Workload> = (0..ENDPOINTS).map(workload).collect();
    let (universe_ms, (universe, labels)) = timed(|| {
        let mut identities = IdentityAllocator::default();
        let mut universe = Universe::new();
        let mut labels = Vec::new();
        for w in &workloads {
            let l = Labels::for_endpoint(&w.labels, "default");
            universe.add_workload(identities.allocate(&l), l.clone(), &w.named_ports);
            labels.push(l);
        }
        let mut taken = HashSet::new();
        for net in set.cidrs() {
            let id = cidr_identity(&net, |id| taken.contains(&id));
            taken.insert(id);
            universe.add_cidr(id, net);
        }
        (universe, labels)
    });
    let compile_all = || {
        let opts = Options::default();
        let each = workloads.iter().zip(&labels);
        each.map(|(w, l)| set.compile(l, &w.named_ports, &universe, &opts))
            .collect::<Vec<_>>()
    };
    let (compiled, compile_peak, compile_kept) = heap(compile_all);
    let (compile_ms, _) = timed(compile_all);
    let entries: usize = compiled.iter().map(|p| p.entries.len()).sum();
    let most = compiled.iter().map(|p| p.entries.len()).max().unwrap_or(0);
    let enforced = compiled.iter().filter(|p| p.flags != 0).count();

    let rows = [
        (
            format!(
                "parse 1,000 policies (`parse_str`, one file of {} KiB)",
                yaml.len() / 1024
            ),
            spread(&parse_ms),
        ),
        ("`PolicySet::new`".into(), spread(&new_ms)),
        (
            format!(
                "identities and universe (1,000 workloads, {} CIDR prefixes)",
                set.cidrs().len()
            ),
            spread(&universe_ms),
        ),
        (
            "`PolicySet::compile` for each of the 1,000 endpoints, total".into(),
            format!(
                "{}; {:.2} ms per endpoint",
                spread(&compile_ms),
                sorted(&compile_ms)[RUNS / 2] / ENDPOINTS as f64
            ),
        ),
        (
            "policy map entries produced".into(),
            format!(
                "{} ({:.1} per policy, {:.1} per endpoint, at most {most}; {} endpoints enforced)",
                count(entries),
                entries as f64 / POLICIES as f64,
                entries as f64 / ENDPOINTS as f64,
                count(enforced)
            ),
        ),
        (
            "peak heap growth while parsing (the policies kept)".into(),
            format!("{:.1} MiB", mib(parse_peak)),
        ),
        (
            "peak heap growth while compiling (every endpoint's result kept)".into(),
            format!(
                "{:.1} MiB: {:.0} B per entry ({:.0} B per entry still held afterwards)",
                mib(compile_peak),
                compile_peak as f64 / entries as f64,
                compile_kept as f64 / entries as f64
            ),
        ),
    ];
    rows.iter()
        .map(|(measure, result)| format!("| {measure} | {result} | none set |\n"))
        .collect()
}

/// Client-to-server UDP datagrams every ~100 µs, numbered from 0, sent
/// from inside the client pod; the server side keeps how many were
/// delivered as a prefix (the highest number seen + 1).
struct Probe {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Instant>>>,
    delivered: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Probe {
    fn start(client: &Pod, server: &Pod) -> Probe {
        let dst = SocketAddr::from((server.ipv4, PROBE_PORT));
        let bind = |pod: &Pod, port| {
            lumen_testbed::in_netns(&pod.netns, || UdpSocket::bind(("0.0.0.0", port)))
                .unwrap()
                .unwrap()
        };
        let (rx, tx) = (bind(server, PROBE_PORT), bind(client, 0));
        rx.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // Room for the whole run, so that pushing never reallocates.
        let sent = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
        let delivered = Arc::new(AtomicUsize::new(0));
        let (stop_rx, delivered_rx) = (stop.clone(), delivered.clone());
        let receiver = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            while !stop_rx.load(Relaxed) {
                if let Ok(8) = rx.recv(&mut buf) {
                    let n = u64::from_be_bytes(buf[..8].try_into().unwrap()) as usize;
                    delivered_rx.fetch_max(n + 1, Relaxed);
                }
            }
        });
        let (stop_tx, sent_tx) = (stop.clone(), sent.clone());
        let sender = std::thread::spawn(move || {
            while !stop_tx.load(Relaxed) {
                let n = {
                    let mut sent = sent_tx.lock().unwrap();
                    sent.push(Instant::now());
                    sent.len() - 1
                };
                let _ = tx.send_to(&(n as u64).to_be_bytes(), dst);
                std::thread::sleep(PROBE_INTERVAL);
            }
        });
        Probe {
            stop,
            sent,
            delivered,
            threads: vec![receiver, sender],
        }
    }

    /// Waits until a datagram sent from now on is delivered.
    fn wait_delivering(&self) {
        let from = self.sent.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.delivered.load(Relaxed) <= from {
            assert!(Instant::now() < deadline, "the probe datagrams do not get through");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Send times of every datagram so far, and how many were delivered.
    fn snapshot(&self) -> (Vec<Instant>, usize) {
        let delivered = self.delivered.load(Relaxed);
        (self.sent.lock().unwrap().clone(), delivered)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A node with two pods and an observer guarding them. On drop, also on a
/// panic: the observer stops and its pins go, then the testbed removes its
/// namespaces.
struct Lab {
    observer: Option<ObserverHandle>,
    pin_dir: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
    client: Pod,
    server: Pod,
    _tb: Testbed,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(observer) = self.observer.take() {
            let _ = observer.stop();
        }
        let _ = daemon::uninstall(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An entry of the observer's endpoints file.
fn endpoint_yaml(name: &str, labels: &BTreeMap<String, String>, interface: Option<&str>, ip: Ipv4Addr) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let interface = interface.map_or(String::new(), |i| format!("    interface: {i}\n"));
    format!(
        "  - name: {name}\n    labels: {{{}}}\n{interface}    ips: [{ip}]\n",
        labels.join(", ")
    )
}

impl Lab {
    /// Client and server pods (guarded) and workloads 0..998 of the
    /// cluster as ipcache-only endpoints; no policy.
    fn start() -> Lab {
        let mut tb = Testbed::new().expect("run as root: sudo cargo bench -p lumen-observer --bench policy");
        let node = tb.add_node("policy").unwrap();
        let pod = |name: &str, ip: u8, team: &str, tier: &str| {
            PodSpec::new(name, "default", Ipv4Addr::new(10, 0, 0, ip))
                .label("app", name)
                .label("team", team)
                .label("tier", tier)
        };
        let client = tb.add_pod(&node, pod("client", 1, "t0", "web")).unwrap();
        let server = tb.add_pod(&node, pod("server", 2, "t1", "db")).unwrap();
        let dir = std::env::temp_dir().join(format!("lumen-bench-policy-{}", tb.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut yaml = String::from("endpoints:\n");
        for p in [&client, &server] {
            yaml.push_str(&endpoint_yaml(&p.name, &p.labels, Some(&p.host_ifname), p.ipv4));
        }
        for i in 0..ENDPOINTS - 2 {
            let w = workload(i);
            let ip = Ipv4Addr::new(10, 100 + (i / 250) as u8, (i % 250) as u8, 1);
            yaml.push_str(&endpoint_yaml(&format!("svc{i}"), &w.labels, None, ip));
            let ports: Vec<String> = w
                .named_ports
                .iter()
                .map(|p| format!("{{name: {}, port: {}}}", p.name, p.port))
                .collect();
            let _ = writeln!(yaml, "    ports: [{}]", ports.join(", "));
        }
        std::fs::write(dir.join("endpoints.yaml"), yaml).unwrap();
        let mut cfg = ObserverConfig::in_dir(&format!("{}-policy", tb.prefix()), &dir);
        cfg.netns = Some(node.netns.clone());
        cfg.endpoints = Some(dir.join("endpoints.yaml"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let mut lab = Lab {
            observer: None,
            pin_dir: cfg.pin_dir(),
            dir,
            socket: cfg.control_socket.clone(),
            rt: rt.unwrap(),
            client,
            server,
            _tb: tb,
        };
        let observer = lab.observer.insert(ObserverHandle::spawn(cfg));
        assert!(observer.wait_ready(Duration::from_secs(60)), "observer did not start");
        lab
    }

    fn call(&self, request: &Request) -> Response {
        self.rt.block_on(control::call(&self.socket, request.clone())).unwrap()
    }

    /// Applies `yaml` (one file): how long until the observer answered.
    fn apply(&self, yaml: &str) -> Duration {
        let documents = vec![PolicyDocument {
            source: "policies.yaml".into(),
            yaml: yaml.into(),
        }];
        let request = Request::ApplyPolicies { documents };
        let t = Instant::now();
        let response = self.call(&request);
        let took = t.elapsed();
        assert_eq!(response, Response::Ok, "apply");
        took
    }

    /// Deletes every runtime policy.
    fn delete_all(&self) {
        let Response::Policies { policies } = self.call(&Request::ListPolicies) else {
            panic!("policy list");
        };
        let keys = policies
            .iter()
            .map(|p| format!("{}/{}/{}", p.kind, p.namespace, p.name))
            .collect();
        assert_eq!(self.call(&Request::DeletePolicies { keys }), Response::Ok, "delete");
    }
}

/// `n` policies: the first n - 1 of the cluster, then one in which the
/// server's ingress denies the probe from the client.
fn apply_set(n: usize) -> String {
    let client = "{matchLabels: {app: client}}";
    let deny = format!(
        "  endpointSelector: {{matchLabels: {{app: server}}}}\n  ingressDeny:\n{}",
        rule("fromEndpoints", client, &[&format!("{PROBE_PORT}/UDP")])
    );
    let mut docs: Vec<String> = (0..n - 1).map(policy).collect();
    docs.push(cnp("probe-deny", &deny));
    docs.join("---\n")
}

/// Applies `yaml`, then deletes it again: how long until the answer, and
/// until the first datagram of the tail that was never delivered was sent.
fn apply_and_probe(lab: &Lab, probe: &Probe, yaml: &str) -> (Duration, Duration) {
    probe.wait_delivering();
    let t0 = Instant::now();
    let returned = lab.apply(yaml);
    std::thread::sleep(Duration::from_millis(50));
    let (sent, delivered) = probe.snapshot();
    assert!(
        delivered > 0 && sent.len() > delivered,
        "the probe is dropped after the apply"
    );
    let last_delivered = sent[delivered - 1] - t0;
    assert!(
        last_delivered < returned,
        "a datagram sent {last_delivered:?} after the request, after the answer ({returned:?}), was delivered"
    );
    lab.delete_all();
    (returned, sent[delivered].saturating_duration_since(t0))
}

/// 10,000 rules, each one map entry: half ingress on the server, half
/// egress on the client, peer svc(i mod 998), port 10000 + i / 998.
fn rules_yaml() -> String {
    let (mut server, mut client) = (String::new(), String::new());
    for i in 0..RULES {
        let (out, key) = if i % 2 == 0 {
            (&mut server, "fromEndpoints")
        } else {
            (&mut client, "toEndpoints")
        };
        let peer = format!("{{matchLabels: {{app: svc{}}}}}", i % (ENDPOINTS - 2));
        out.push_str(&rule(key, &peer, &[&format!("{}/TCP", 10_000 + i / (ENDPOINTS - 2))]));
    }
    let side = |owner: &str, dir: &str, rules: &str| {
        format!("  endpointSelector: {{matchLabels: {{app: {owner}}}}}\n  {dir}:\n{rules}")
    };
    format!(
        "{}---\n{}",
        cnp("server-in", &side("server", "ingress", &server)),
        cnp("client-out", &side("client", "egress", &client))
    )
}

fn map_entries(path: &Path) -> usize {
    let map = Map::LpmTrie(MapData::from_pin(path).unwrap());
    let trie: LpmTrie<MapData, [u8; 16], abi::PolicyValue> = LpmTrie::try_from(map).unwrap();
    trie.keys().filter_map(Result::ok).count()
}

/// The map's memory as bpftool reports it (`bytes_memlock`).
fn memlock(path: &Path) -> u64 {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(path)
        .output()
        .expect("bpftool (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["bytes_memlock"].as_u64().expect("bytes_memlock")
}

/// Kernel memory charged to this process's memory cgroup (v1
/// `memory.kmem.usage_in_bytes`, v2 `kernel` of memory.stat), if readable.
fn cgroup_kernel_memory() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let v1 = cgroups.lines().find_map(|l| l.split_once(":memory:")).map(|(_, p)| p);
    if let Some(path) = v1 {
        let text = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.kmem.usage_in_bytes"));
        return text.ok()?.trim().parse().ok();
    }
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let stat = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.stat")).ok()?;
    stat.lines().find_map(|l| l.strip_prefix("kernel "))?.parse().ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("LUMEN_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(APPLY_ROUNDS);
    let compile_rows = compile_bench();
    let lab = Lab::start();

    // Map memory first, while the map has never held entries.
    let map = lab.pin_dir.join(lumen_probes::maps::POLICY);
    let (empty_entries, empty_memlock) = (map_entries(&map), memlock(&map));
    let kmem_before = cgroup_kernel_memory();
    let rules_apply = lab.apply(&rules_yaml());
    let kmem_after = cgroup_kernel_memory();
    let (full_entries, full_memlock) = (map_entries(&map), memlock(&map));
    lab.delete_all();
    let added = full_entries - empty_entries;
    assert!(added >= RULES, "{full_entries} map entries for {RULES} rules");
    let per_entry = |bytes: u64| bytes as f64 / added as f64;

    let probe = Probe::start(&lab.client, &lab.server);
    let heap_before = LIVE.load(Relaxed);
    let sets: Vec<String> = APPLY_SIZES.iter().map(|n| apply_set(*n)).collect();
    let mut results: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); sets.len()];
    for round in 0..rounds {
        for (i, set) in sets.iter().enumerate() {
            let (returned, enforced) = apply_and_probe(&lab, &probe, set);
            eprintln!(
                "round {round}, {} policies: answer {returned:?}, enforced {enforced:?}",
                APPLY_SIZES[i]
            );
            results[i].push((returned, enforced));
        }
    }
    let observer_heap = LIVE.load(Relaxed).saturating_sub(heap_before);
    let (sent, _) = probe.snapshot();
    let interval = (*sent.last().unwrap() - sent[0]) / sent.len() as u32;
    drop(probe);
    drop(lab);

    let mut rows = String::new();
    for (n, runs) in APPLY_SIZES.iter().zip(&results) {
        let returned: Vec<f64> = runs.iter().map(|r| ms(r.0)).collect();
        let enforced: Vec<f64> = runs.iter().map(|r| ms(r.1)).collect();
        let policies = if *n == 1 {
            "1 policy".into()
        } else {
            format!("{} policies", count(*n))
        };
        let _ = writeln!(
            rows,
            "| `policy apply` of {policies}: the answer | {} | none set |\n\
             | `policy apply` of {policies}: the first datagram dropped | {} | none set |",
            spread(&returned),
            spread(&enforced)
        );
    }
    let _ = writeln!(
        rows,
        "| `policy apply` of 10,000 rules (2 policies): the answer | {:.1} ms (one run) | none set |\n\
         | policy map memory per entry, `bytes_memlock` ({} entries added) | {:.0} B | none set |",
        ms(rules_apply),
        count(added),
        per_entry(full_memlock - empty_memlock)
    );
    if let Some((before, after)) = kmem_before.zip(kmem_after) {
        let _ = writeln!(
            rows,
            "| kernel memory charged to the memory cgroup by that apply, per entry | {:.0} B | none set |",
            per_entry(after.saturating_sub(before))
        );
    }
    let applies = rounds * APPLY_SIZES.len();
    let section = format!(
        "## Network policy: compile, apply to enforcement, map memory\n\n\
         Command: `cargo bench -p lumen-observer --bench policy` (as root).\n\
         Machine: {}, kernel {}.\n\n\
         DESIGN.md sets no budget for compiling or applying policy. Its policy budget is per packet (≤ 150 ns for \
         the full path, flat from 10 to 10,000 rules); the prog_run section above measures it and is not repeated \
         here.\n\n\
         Compiling in-process (no kernel), 1,000 CiliumNetworkPolicies over 1,000 endpoints:\n\n\
         | measure | result | budget |\n|---|---|---|\n{compile_rows}\n\
         On the testbed, the observer knowing 1,000 endpoints (2 guarded pods, 998 ipcache-only):\n\n\
         | measure | result | budget |\n|---|---|---|\n{rows}\n\
         How it is set up: the synthetic cluster has 1,000 endpoints in namespace default (`app=svc<i>`, ten teams, \
         three tiers; half declare the named port `http`, a fifth `metrics`) and 1,000 policies of ten shapes: a \
         service and its two callers on a port and a range (one in four by named port); a service open to one \
         team's front tiers (`matchExpressions` In); egress to three services by named port and to DNS; egress to \
         outside prefixes (`toCIDRSet` with `except`, `toCIDR`); a database that allows its team and denies other \
         teams' web tier (NotIn) and an outside address (`ingressDeny`); a team-wide scraper rule; egress to a \
         port range. Times are wall-clock; heap is counted by a global allocator around the system one (live and \
         peak bytes). For `policy apply` the observer runs in-process, started with no policy; the client pod \
         sends the server a numbered UDP datagram every {:.0} µs (sleep-paced: the resolution of \"the first \
         datagram dropped\") and the server keeps the highest number received. Each apply sends, over the control \
         socket, the first n − 1 cluster policies plus one that denies the probe, as one file (as `lumen policy \
         apply -f` does), and the set is deleted again before the next; sizes are interleaved, {rounds} rounds. \
         The observer answers once the datapath has committed: every datagram sent after the answer was checked \
         to be dropped. \"The first datagram dropped\" is when the first datagram of the never-delivered tail was \
         sent, counted from the request. Over these {applies} applies and as many deletes the observer's heap grew \
         by {:.0} MiB ({:.1} MiB per change): it keeps the enrichment snapshot of every change for as long as a \
         stored flow refers to it (at most 64; what a change leaves alone is shared, but every apply and delete \
         here re-labels all 1,000 endpoints with the policies that select them). Map memory: the pinned \
         policy map (an LPM trie, BPF_F_NO_PREALLOC) is read before and after applying 10,000 rules shaped like \
         the datapath section's (one entry each, counted by iterating the map); `bytes_memlock` of `bpftool map \
         show` is, since Linux 6.4, the map's own memory-usage estimate (for an LPM trie, stored entries × node \
         size, without intermediate nodes or allocator overhead), so the kernel memory charged to this process's \
         memory cgroup during that apply is shown beside it (everything the kernel allocated for it: an upper \
         bound).\n",
        machine::cpu_model(),
        machine::kernel(),
        interval.as_secs_f64() * 1e6,
        mib(observer_heap),
        mib(observer_heap) / (2 * applies) as f64,
    );
    benchmarks_md::update_benchmarks("policy", &section);
    println!("{section}");
}

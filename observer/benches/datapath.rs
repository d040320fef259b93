//! Datapath cost, measured end to end between two pods on the testbed:
//! TCP request/response rate and bulk throughput with (i) no program,
//! (ii) Lumen without rules, (iii) Lumen with 1,000 identities and 10,000
//! rules, (iv) the same 10,000 rules as iptables rules in the node's
//! forwarding path. Results go to BENCHMARKS.md.
//!
//! Run as root: `cargo bench -p lumen-observer --bench datapath`
//! (`LUMEN_BENCH_SECONDS` and `LUMEN_BENCH_ROUNDS` shorten or lengthen it).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lumen_observer::{daemon, ObserverConfig, ObserverHandle};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::pin_to_cpu;
#[path = "support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "support/machine.rs"]
mod machine;
use benchmarks_md::update_benchmarks;
use lumen_testbed::{Node, Pod, PodSpec, Testbed};

const IDENTITIES: usize = 1_000;
const RULES: usize = 10_000;
const RR_PORT: u16 = 7000;
const BULK_PORT: u16 = 7001;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Bare,
    PassOnly,
    LumenNoRules,
    Lumen10k,
    Lumen10kNoRedirect,
    Iptables10k,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Bare => "(i) no program attached",
            Setup::PassOnly => "(i-b) a program that only passes (hook cost)",
            Setup::LumenNoRules => "(ii) Lumen, no rules",
            Setup::Lumen10k => "(iii) Lumen, 1,000 identities, 10,000 rules",
            Setup::Lumen10kNoRedirect => "(iii-b) as (iii), --local-redirect=false",
            Setup::Iptables10k => "(iv) iptables, the same 10,000 rules",
        }
    }
}

/// The 998 endpoints that exist only as identities (ipcache entries).
fn fake_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100 + (i / 250) as u8, (i % 250) as u8, 1)
}

fn endpoints_yaml(client: &Pod, server: &Pod) -> String {
    let mut s = String::from("endpoints:\n");
    for p in [client, server] {
        let _ = write!(
            s,
            "  - name: {}\n    labels: {{app: {}}}\n    interface: {}\n    ips: [{}]\n",
            p.name, p.name, p.host_ifname, p.ipv4
        );
    }
    for i in 0..IDENTITIES - 2 {
        let _ = write!(
            s,
            "  - name: svc{i}\n    labels: {{app: svc{i}}}\n    ips: [{}]\n",
            fake_ip(i)
        );
    }
    s
}

/// Rule i: peer svc(i mod 998), port 10000 + i / 998; half ingress on the
/// server, half egress on the client; plus the two rules that allow the
/// benchmark's own traffic, last. One CiliumNetworkPolicy per side.
fn rules_yaml() -> String {
    let (mut server, mut client) = (String::new(), String::new());
    for i in 0..RULES - 2 {
        let (out, peer_key) = if i % 2 == 0 {
            (&mut server, "fromEndpoints")
        } else {
            (&mut client, "toEndpoints")
        };
        let _ = write!(
            out,
            "    - {peer_key}: [{{matchLabels: {{app: svc{}}}}}]\n      toPorts: [{{ports: [{{port: \"{}\", protocol: TCP}}]}}]\n",
            i % (IDENTITIES - 2),
            10_000 + i / (IDENTITIES - 2)
        );
    }
    let own = |peer_key: &str, peer: &str| {
        format!("    - {peer_key}: [{{matchLabels: {{app: {peer}}}}}]\n      toPorts: [{{ports: [{{port: \"7000\", endPort: 7001, protocol: TCP}}]}}]\n")
    };
    server.push_str(&own("fromEndpoints", "client"));
    client.push_str(&own("toEndpoints", "server"));
    let cnp = |name: &str, owner: &str, dir: &str, rules: &str| {
        format!("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n  endpointSelector: {{matchLabels: {{app: {owner}}}}}\n  {dir}:\n{rules}")
    };
    format!(
        "{}---\n{}",
        cnp("server-in", "server", "ingress", &server),
        cnp("client-out", "client", "egress", &client)
    )
}

/// The same rules for iptables: each a non-matching ACCEPT the packet walks
/// past, then the rule that accepts the benchmark traffic, then DROP.
fn iptables_rules(client: &Pod, server: &Pod) -> String {
    let mut s = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..RULES - 2 {
        let peer = fake_ip(i % (IDENTITIES - 2));
        let port = 10_000 + i / (IDENTITIES - 2);
        let (src, dst) = if i % 2 == 0 {
            (peer, server.ipv4)
        } else {
            (client.ipv4, peer)
        };
        let _ = writeln!(s, "-A FORWARD -s {src}/32 -d {dst}/32 -p tcp --dport {port} -j ACCEPT");
    }
    let _ = writeln!(
        s,
        "-A FORWARD -s {}/32 -d {}/32 -p tcp --dport 7000:7001 -j ACCEPT",
        client.ipv4, server.ipv4
    );
    let _ = writeln!(
        s,
        "-A FORWARD -s {}/32 -d {}/32 -p tcp --sport 7000:7001 -j ACCEPT",
        server.ipv4, client.ipv4
    );
    s.push_str("COMMIT\n");
    s
}

fn sh(node: &Node, args: &[&str], stdin: Option<&str>) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node.netns]).args(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("spawn");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{args:?} failed");
}

struct Running {
    handle: ObserverHandle,
    pin_dir: PathBuf,
}

fn start_lumen(node: &Node, dir: &Path, node_name: &str, rules: &str, local_redirect: bool) -> Running {
    std::fs::write(dir.join("policy.yaml"), rules).unwrap();
    let mut cfg = ObserverConfig::in_dir(node_name, dir);
    cfg.netns = Some(node.netns.clone());
    cfg.endpoints = Some(dir.join("endpoints.yaml"));
    cfg.policy = Some(dir.join("policy.yaml"));
    cfg.local_redirect = local_redirect;
    let pin_dir = cfg.pin_dir();
    // The observer gets the other core, so its threads do not perturb the
    // workload's; threads inherit the affinity of the thread that made them.
    pin_to_cpu(1);
    let handle = ObserverHandle::spawn(cfg);
    pin_to_cpu(0);
    assert!(handle.wait_ready(Duration::from_secs(120)), "observer did not start");
    Running { handle, pin_dir }
}

fn stop_lumen(r: Running) {
    r.handle.stop().unwrap();
    daemon::uninstall(&r.pin_dir).unwrap();
}

/// Attaches the pass-only program at both TC hooks of each interface; the
/// links go when the returned object is dropped.
fn attach_pass(node: &Node, ifnames: &[&str]) -> aya::Ebpf {
    use aya::programs::tc::TcAttachOptions;
    use aya::programs::{links::LinkOrder, SchedClassifier, TcAttachType};
    lumen_testbed::in_netns(&node.netns, || {
        let mut ebpf = aya::Ebpf::load(lumen_probes::PASS_OBJECT).unwrap();
        let prog: &mut SchedClassifier = ebpf.program_mut(lumen_probes::PROG_PASS).unwrap().try_into().unwrap();
        prog.load().unwrap();
        for ifname in ifnames {
            for hook in [TcAttachType::Ingress, TcAttachType::Egress] {
                prog.attach_with_options(ifname, hook, TcAttachOptions::TcxOrder(LinkOrder::default()))
                    .unwrap();
            }
        }
        ebpf
    })
    .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("LUMEN_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rounds: usize = std::env::var("LUMEN_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let duration = Duration::from_secs(seconds);

    // Client, server and their softirq work share CPU 0, as netperf -T would
    // pin them: cross-CPU wakeups otherwise make request/response bimodal.
    pin_to_cpu(0);
    let mut tb = Testbed::new().expect("run as root: sudo cargo bench -p lumen-observer --bench datapath");
    let node = tb.add_node("bench").unwrap();
    let client = tb
        .add_pod(
            &node,
            PodSpec::new("client", "default", Ipv4Addr::new(10, 0, 0, 1)).label("app", "client"),
        )
        .unwrap();
    let server = tb
        .add_pod(
            &node,
            PodSpec::new("server", "default", Ipv4Addr::new(10, 0, 0, 2)).label("app", "server"),
        )
        .unwrap();
    let dir = std::env::temp_dir().join(format!("lumen-bench-{}", tb.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("endpoints.yaml"), endpoints_yaml(&client, &server)).unwrap();
    let node_name = format!("{}-bench", tb.prefix());
    let big_rules = rules_yaml();
    let ipt = iptables_rules(&client, &server);
    let _rr = server.tcp_echo_server(RR_PORT).unwrap();
    let _sink = server.tcp_sink_server(BULK_PORT).unwrap();
    let rr_addr = SocketAddr::new(IpAddr::V4(server.ipv4), RR_PORT);
    let bulk_addr = SocketAddr::new(IpAddr::V4(server.ipv4), BULK_PORT);

    let setups = [
        Setup::Bare,
        Setup::PassOnly,
        Setup::LumenNoRules,
        Setup::Lumen10k,
        Setup::Lumen10kNoRedirect,
        Setup::Iptables10k,
    ];
    let mut rr: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut bulk: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut startup = Duration::ZERO;
    let mut runs_per_transaction = 0.0;
    for round in 0..rounds {
        for (i, setup) in setups.iter().enumerate() {
            let t = Instant::now();
            let mut pass = None;
            let running = match setup {
                Setup::Bare => None,
                Setup::PassOnly => {
                    pass = Some(attach_pass(&node, &[&client.host_ifname, &server.host_ifname]));
                    None
                }
                Setup::LumenNoRules => Some(start_lumen(&node, &dir, &node_name, "", true)),
                Setup::Lumen10k => Some(start_lumen(&node, &dir, &node_name, &big_rules, true)),
                Setup::Lumen10kNoRedirect => Some(start_lumen(&node, &dir, &node_name, &big_rules, false)),
                Setup::Iptables10k => {
                    sh(&node, &["iptables-restore"], Some(&ipt));
                    None
                }
            };
            if *setup == Setup::Lumen10k {
                startup = t.elapsed();
            }
            // Let deferred kernel work (freeing the previous setup's maps,
            // RCU callbacks) finish before measuring.
            std::thread::sleep(Duration::from_secs(2));
            let before = running
                .as_ref()
                .map(|r| lumen_observer::counters::traffic_counters(&r.pin_dir).unwrap());
            rr[i].push(client.tcp_rr(rr_addr, duration).unwrap());
            if let (Some(r), Some(before), Setup::Lumen10k) = (running.as_ref(), before, setup) {
                let after = lumen_observer::counters::traffic_counters(&r.pin_dir).unwrap();
                let runs: u64 = after.iter().zip(&before).map(|(a, b)| a.packets - b.packets).sum();
                runs_per_transaction = runs as f64 / (rr[i][round] * duration.as_secs_f64());
            }
            bulk[i].push(client.tcp_bulk(bulk_addr, duration).unwrap());
            eprintln!(
                "round {round} {:<45} rr {:>9.0}/s  bulk {:>6.2} Gbit/s",
                setup.label(),
                rr[i][round],
                bulk[i][round] / 1e9
            );
            if let Some(r) = running {
                stop_lumen(r);
            }
            drop(pass);
            if *setup == Setup::Iptables10k {
                sh(&node, &["iptables", "-P", "FORWARD", "ACCEPT"], None);
                sh(&node, &["iptables", "-F", "FORWARD"], None);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let rr: Vec<f64> = rr.into_iter().map(median).collect();
    let bulk: Vec<f64> = bulk.into_iter().map(median).collect();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| setup | TCP RR (transactions/s) | ratio to (i) | bulk (Gbit/s) | ratio to (i) |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|");
    for (i, setup) in setups.iter().enumerate() {
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.3} | {:.2} | {:.3} |",
            setup.label(),
            rr[i],
            rr[i] / rr[0],
            bulk[i] / 1e9,
            bulk[i] / bulk[0]
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let section = format!(
        "## Datapath: TCP request/response and bulk between two pods\n\n\
         Command: `cargo bench -p lumen-observer --bench datapath` (as root; {rounds} rounds of {seconds} s per setup, \
         setups interleaved per round, median shown; client, server and their softirq work pinned to CPU 0, the observer to CPU 1).\n\
         Machine: {}, kernel {}.\n\n{table}\n\
         Budget for (iii): request/response ≥ 0.95 of (i): **{}**; bulk ≥ 0.90 of (i): **{}**.\n\n\
         How it is set up: one node namespace, two pods joined to it by veths (routed). Lumen guards both pod \
         interfaces; in (iii) the server's ingress and the client's egress are enforced with 10,000 allow rules over \
         1,000 identities (998 of them ipcache-only endpoints) and the benchmark flow is allowed by the last rules. \
         Request/response runs over one persistent connection, so after the handshake every packet takes the \
         conntrack fast path (no policy lookup), which is the point of the design. In (iv) the rules are iptables \
         rules in the node's FORWARD chain, walked linearly by every packet (no conntrack shortcut in front); \
         starting Lumen with the 10,000 rules (compile, load, map writes, attach) took {:.1} s.\n",
        machine::cpu_model(),
        machine::kernel(),
        verdict(rr[3] / rr[0] >= 0.95),
        verdict(bulk[3] / bulk[0] >= 0.90),
        startup.as_secs_f64(),
    );
    let section = format!(
        "{section}In (iii) the datapath took {runs_per_transaction:.1} policy decisions per request/response transaction \
         (each packet is decided for the sender's egress and the receiver's ingress; from the per-CPU counters). \
         With local redirect (the default) both decisions for a packet between two pods of the node are taken in \
         the sender's program, which then hands the packet to the receiving pod directly (`bpf_redirect_peer`), \
         skipping the host's routing and the receiver's veth hook, as Cilium does; (iii-b) shows the cost when every \
         packet is routed by the host and decided at both veths.\n"
    );
    update_benchmarks("datapath", &section);
    println!("{section}");
}

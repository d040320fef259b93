//! `lumen demo`: a small online shop on a real three-node cluster on this
//! machine (network namespaces joined by a fabric): 15 pods of 12
//! workloads in five namespaces and an outside peer, an observer per node,
//! the relay serving the whole cluster on 127.0.0.1:4245 and, when the
//! `lumen-ui` binary sits beside `lumen`, the web UI on 127.0.0.1:12000.
//! Traffic flows every second; after a few seconds policies apply, with
//! one mistake (the database does not take checkout's connections) and
//! one deliberate deny. Drops are printed from the relay's stream.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lumen_observer::{daemon, ObserverConfig, ObserverHandle};
use lumen_proto::flow::Verdict;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{observer_client::ObserverClient, GetFlowsRequest};
use lumen_relay::{RelayConfig, RelayHandle};

use lumen_rpc::control::{Control, ControlError};
use lumen_testbed::{Pod, PodSpec, Testbed};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. 30s); by default run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Seconds of open traffic before the policy is applied.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub policy_after: Duration,
    /// Cluster name: node N is <name>-nodeN, pinned under /sys/fs/bpf/lumen/<name>-nodeN.
    #[arg(long, default_value = "demo")]
    pub node_name: String,
    /// Where the relay serves the cluster's flows.
    #[arg(long, default_value = "127.0.0.1:4245")]
    pub relay_address: SocketAddr,
    /// Where the web UI serves (when `lumen-ui` sits beside `lumen`).
    #[arg(long, default_value = "127.0.0.1:12000")]
    pub ui_address: SocketAddr,
    /// Print every flow, not only drops.
    #[arg(long)]
    pub all_events: bool,
}

const POLICY: &str = "\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: db-in
  namespace: data
spec:
  endpointSelector:
    matchLabels: {app: db}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: catalog, io.kubernetes.pod.namespace: shop}
      toPorts:
        - ports: [{port: \"5432\", protocol: TCP}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: payments-in
  namespace: pay
spec:
  endpointSelector:
    matchLabels: {app: payments}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: checkout, io.kubernetes.pod.namespace: shop}
      toPorts:
        - ports: [{port: \"8443\", protocol: TCP}]
    - fromEndpoints:
        - matchLabels: {app: scraper, io.kubernetes.pod.namespace: monitoring}
      toPorts:
        - ports: [{port: \"9090\", protocol: TCP}]
  ingressDeny:
    - fromEndpoints:
        - matchLabels: {app: frontend, io.kubernetes.pod.namespace: shop}
";

/// What the policy says, for the banner.
const POLICY_SUMMARY: &str = "data/db-in lets only shop/catalog reach the database (checkout needs it too: \
its connections are dropped), pay/payments-in takes checkout and the scraper and denies the frontend";

struct Outcomes {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// The shop's pods: (name, namespace, app, node, last octet of 10.1.0.x).
const PODS: [(&str, &str, &str, &str, u8); 15] = [
    ("frontend-1", "shop", "frontend", "node1", 1),
    ("frontend-2", "shop", "frontend", "node2", 2),
    ("catalog-1", "shop", "catalog", "node2", 3),
    ("catalog-2", "shop", "catalog", "node3", 4),
    ("cart", "shop", "cart", "node3", 5),
    ("checkout", "shop", "checkout", "node1", 6),
    ("recommend", "shop", "recommendations", "node2", 7),
    ("search", "shop", "search", "node3", 8),
    ("payments", "pay", "payments", "node3", 9),
    ("fraud", "pay", "fraud", "node1", 10),
    ("db", "data", "db", "node2", 11),
    ("cache", "data", "cache", "node1", 12),
    ("dns", "infra", "dns", "node3", 13),
    ("scraper", "monitoring", "scraper", "node1", 14),
    ("dns-2", "infra", "dns", "node2", 15),
];

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// A payment provider outside the cluster (not an endpoint: `world`), on
/// the payments pod's node.
const PSP: (&str, &str, Ipv4Addr) = ("psp", "node3", Ipv4Addr::new(198, 51, 100, 10));

/// Who calls whom every second: (client pod, server pod, port, TCP).
const CALLS: [(&str, &str, u16, bool); 20] = [
    ("frontend-1", "catalog-1", 8080, true),
    ("frontend-2", "catalog-2", 8080, true),
    ("frontend-1", "cart", 8080, true),
    ("frontend-2", "recommend", 8080, true),
    ("frontend-1", "search", 8080, true),
    ("search", "catalog-1", 8080, true),
    ("catalog-1", "db", 5432, true),
    ("catalog-2", "db", 5432, true),
    ("cart", "cache", 6379, true),
    ("checkout", "cart", 8080, true),
    ("checkout", "payments", 8443, true),
    ("checkout", "db", 5432, true),
    ("payments", "fraud", 9000, true),
    ("payments", "psp", 443, true),
    ("frontend-2", "payments", 8443, true),
    ("scraper", "frontend-1", 9090, true),
    ("scraper", "payments", 9090, true),
    ("frontend-1", "dns", 53, false),
    ("checkout", "dns-2", 53, false),
    ("payments", "dns", 53, false),
];

/// The observer API port on each node's fabric address.
const API_PORT: u16 = 4244;

/// Everything the demo started, stopped and removed on drop (also on error).
struct Cluster {
    observers: Vec<(String, ObserverHandle, PathBuf)>,
    state_dir: PathBuf,
    tb: Option<Testbed>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, handle, pin_dir) in self.observers.drain(..) {
            let _ = handle.stop();
            let _ = daemon::uninstall(&pin_dir);
        }
        drop(self.tb.take());
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

pub fn run(args: &DemoArgs, socket: &Path) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("lumen demo builds network namespaces and loads eBPF: run it as root (scripts/demo.sh)");
    }
    let state_dir = PathBuf::from("/var/run/lumen").join(&args.node_name);
    let node_name = |n: &str| format!("{}-{n}", args.node_name);
    for n in NODES {
        // A previous demo killed outright leaves its pins; start clean.
        let pin_dir = Path::new("/sys/fs/bpf/lumen").join(node_name(n));
        daemon::uninstall(&pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::create_dir_all(&state_dir)?;
    let mut cluster = Cluster {
        observers: Vec::new(),
        state_dir: state_dir.clone(),
        tb: None,
    };

    let mut tb = Testbed::new().context("building the demo topology")?;
    for n in NODES {
        tb.add_node(n)?;
    }
    tb.add_fabric().context("joining the nodes")?;
    let nodes = tb.nodes().to_vec();
    let node = |n: &str| nodes.iter().find(|x| x.name == n).expect("demo node").clone();
    let api = |n: &str| SocketAddr::new(node(n).address.expect("joined").ipv4.into(), API_PORT);
    let mut pods = Vec::new();
    for (name, namespace, app, n, i) in PODS {
        let spec = PodSpec::new(name, namespace, Ipv4Addr::new(10, 1, 0, i))
            .ipv6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, i.into()))
            .label("app", app);
        pods.push(tb.add_pod(&node(n), spec)?);
    }
    let psp = tb.add_pod(&node(PSP.1), PodSpec::new(PSP.0, "default", PSP.2))?;
    let nodes_file = state_dir.join("nodes.yaml");
    let mut nodes_text = String::from("nodes:\n");
    for n in NODES {
        nodes_text += &format!("  - name: {}\n    address: {}\n", node_name(n), api(n));
    }
    std::fs::write(&nodes_file, nodes_text)?;
    cluster.tb = Some(tb);

    for (i, n) in NODES.iter().enumerate() {
        let dir = state_dir.join(n);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("endpoints.yaml"), endpoint_file(&pods, n))?;
        let mut cfg = ObserverConfig::for_node(&node_name(n));
        cfg.netns = Some(node(n).netns);
        cfg.endpoints = Some(dir.join("endpoints.yaml"));
        cfg.state_dir = dir.join("state");
        cfg.control_socket = if i == 0 {
            socket.to_path_buf()
        } else {
            dir.join("control.sock")
        };
        cfg.socket = dir.join("observer.sock");
        cfg.events_output = dir.join("events.jsonl").display().to_string();
        cfg.listen_address = Some(api(n));
        cfg.nodes_file = Some(nodes_file.clone());
        let pin_dir = cfg.pin_dir();
        let control_socket = cfg.control_socket.clone();
        let observer = ObserverHandle::spawn(cfg);
        if !observer.wait_ready(Duration::from_secs(20)) {
            return Err(match observer.stop() {
                Err(e) => anyhow::Error::new(e).context(format!("the observer of {n} did not start")),
                Ok(_) => anyhow::anyhow!("the observer of {n} did not answer within 20 s"),
            });
        }
        cluster
            .observers
            .push((control_socket.display().to_string(), observer, pin_dir));
    }
    let relay = RelayHandle::spawn(RelayConfig {
        metrics_listen_address: None,
        listen_address: args.relay_address,
        peers: vec![],
        peer_service: Some(api("node1").to_string()),
        sort_buffer_len_max: 10_000,
        sort_buffer_drain_timeout: Duration::from_millis(50),
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(5),
        dial_timeout: Duration::from_secs(2),
        export: Default::default(),
        otlp: Default::default(),
        tls: Default::default(),
    });

    let pod = |name: &str| -> Pod {
        match pods.iter().find(|p| p.name == name) {
            Some(p) => p.clone(),
            None => psp.clone(),
        }
    };
    let mut servers = Vec::new();
    for (server, port, tcp) in CALLS.iter().map(|&(_, server, port, tcp)| (server, port, tcp)) {
        if servers.iter().any(|(s, p, t, _)| (*s, *p, *t) == (server, port, tcp)) {
            continue;
        }
        let p = pod(server);
        let guard = if tcp {
            p.tcp_echo_server(port)?
        } else {
            p.udp_echo_server(port)?
        };
        servers.push((server, port, tcp, guard));
    }
    let ui = start_ui(args);

    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "lumen".into());
    println!(
        "Lumen demo: cluster {}, an online shop on three nodes ({} pods of 12 workloads in 5 namespaces) and a relay",
        args.node_name,
        PODS.len()
    );
    for n in NODES {
        let here: Vec<String> = PODS
            .iter()
            .filter(|p| p.3 == n)
            .map(|(name, namespace, ..)| format!("{namespace}/{name}"))
            .collect();
        println!("  {:<16} observer API {}  {}", node_name(n), api(n), here.join(" "));
    }
    println!("  outside peer     {} ({}): world to the cluster", PSP.2, PSP.0);
    println!("  relay            {}", args.relay_address);
    match &ui {
        Ok(ui) => println!("  web UI           http://{}/  (service map and flows)", ui.address),
        Err(why) => println!("  web UI           not started: {why}"),
    }
    println!("Look at it from another terminal:");
    println!("  {exe} observe -f --verdict DROPPED          # the whole cluster through the relay (hubble observe works too)");
    println!("  {exe} top                                    # a live dashboard: workloads, connections, drops");
    println!("  {exe} list nodes");
    println!("  {exe} status");
    println!("  {exe} policy list --control-socket {}", socket.display());
    println!(
        "  {exe} policy trace --from shop/checkout --to data/db --port 5432/tcp --control-socket {}",
        cluster.observers[1].0
    );
    println!(
        "Traffic every second: {} calls between the workloads, DNS, metrics scrapes and a call to the outside.",
        CALLS.len()
    );
    println!(
        "Policies applied after {}: {POLICY_SUMMARY}.",
        humantime::format_duration(args.policy_after)
    );
    println!("Ctrl-C stops the demo and removes everything it made.\n");

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Outcomes {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let calls: Vec<(Pod, SocketAddr, bool)> = CALLS
        .iter()
        .map(|&(client, server, port, tcp)| (pod(client), SocketAddr::new(pod(server).ipv4.into(), port), tcp))
        .collect();
    let traffic = std::thread::spawn({
        let (stop, outcomes) = (stop.clone(), outcomes.clone());
        move || traffic_loop(&calls, &stop, &outcomes)
    });

    let sockets: Vec<PathBuf> = cluster.observers.iter().map(|(s, ..)| PathBuf::from(s)).collect();
    let result = watch(args, &sockets, &stop);
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    drop(ui);
    drop(servers);
    drop(relay);
    let mut received = 0;
    for (_, handle, pin_dir) in cluster.observers.drain(..) {
        received += handle.stop().map(|s| s.received).unwrap_or(0);
        daemon::uninstall(&pin_dir)?;
    }
    drop(cluster);
    result?;
    println!(
        "\ndemo finished: {} requests answered, {} refused by policy or unanswered; {received} events read from the datapaths",
        outcomes.ok.load(Ordering::Relaxed),
        outcomes.failed.load(Ordering::Relaxed),
    );
    Ok(())
}

/// Node `local`'s endpoint file: every pod, those on `local` with their
/// interface.
fn endpoint_file(pods: &[Pod], local: &str) -> String {
    let mut text = String::from("endpoints:\n");
    for p in pods {
        text.push_str(&format!(
            "  - name: {}\n    namespace: {}\n    labels: {{app: {}}}\n    ips: [{}, \"{}\"]\n",
            p.name,
            p.namespace,
            p.labels["app"],
            p.ipv4,
            p.ipv6.expect("demo pods have IPv6")
        ));
        if p.node == local {
            text.push_str(&format!("    interface: {}\n", p.host_ifname));
        }
    }
    text
}

/// Each call once a second: a request and its answer (TCP), or a
/// datagram and its echo (UDP).
fn traffic_loop(calls: &[(Pod, SocketAddr, bool)], stop: &AtomicBool, outcomes: &Outcomes) {
    let quick = Duration::from_millis(300);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        for (client, server, tcp) in calls {
            let ok = match tcp {
                true => client.tcp_request(*server, b"GET /", quick).is_ok(),
                false => client.udp_request(*server, b"dns?", quick).is_ok(),
            };
            let counter = if ok { &outcomes.ok } else { &outcomes.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
        while started.elapsed() < Duration::from_secs(1) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `lumen-ui` beside this binary, following the relay; stopped on drop.
struct Ui {
    address: SocketAddr,
    child: std::process::Child,
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ui(args: &DemoArgs) -> Result<Ui, String> {
    let exe = crate::ui::binary().map_err(|e| e.to_string())?;
    let child = std::process::Command::new(&exe)
        .args(["--server", &args.relay_address.to_string()])
        .args(["--listen", &args.ui_address.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    Ok(Ui {
        address: args.ui_address,
        child,
    })
}

/// Prints the relay's flows as they arrive, applies the policy on time (on
/// every node), and returns on Ctrl-C, SIGTERM or the end of `--duration`.
fn watch(args: &DemoArgs, sockets: &[PathBuf], stop: &AtomicBool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let start = Instant::now();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let relay = format!("http://{}", args.relay_address);
        let mut client = loop {
            match ObserverClient::connect(relay.clone()).await {
                Ok(c) => break c,
                Err(_) if start.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => bail!("the relay did not start on {}: {e}", args.relay_address),
            }
        };
        let request = GetFlowsRequest {
            follow: true,
            ..Default::default()
        };
        let mut flows = client
            .get_flows(lumen_proto::with_extensions(request))
            .await
            .context("following the relay")?
            .into_inner();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut policy_applied = false;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                r = flows.message() => match r.context("the relay's stream")? {
                    Some(r) => print_response(&r, args.all_events),
                    None => bail!("the relay ended the stream"),
                },
                _ = tick.tick() => {}
            }
            if !policy_applied && start.elapsed() >= args.policy_after {
                for socket in sockets {
                    let documents = vec![lumen_proto::lumen::v1::PolicyDocument {
                        source: "demo-policy.yaml".into(),
                        yaml: POLICY.to_string(),
                    }];
                    match Control::connect(socket).await?.apply_policies(documents).await {
                        Ok(_) => {}
                        Err(ControlError::Refused { message, .. }) => bail!("applying the demo policy: {message}"),
                        Err(e) => return Err(e.into()),
                    }
                }
                println!("\n>>> policies applied: {POLICY_SUMMARY}\n");
                policy_applied = true;
            }
            if args.duration.is_some_and(|d| start.elapsed() >= d) {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        Ok(())
    })
}

/// Drops and node changes (everything with `--all-events`),
/// in `lumen observe`'s compact format, with the node that saw it.
fn print_response(r: &lumen_proto::observer::GetFlowsResponse, all: bool) {
    let interesting = match &r.response_types {
        Some(ResponseTypes::Flow(f)) => all || f.verdict != Verdict::Forwarded as i32,
        Some(ResponseTypes::NodeStatus(s)) => {
            let state = lumen_proto::relay::NodeState::try_from(s.state_change).map_or("UNKNOWN", |s| s.as_str_name());
            println!("[relay] {state}: {}", s.node_names.join(", "));
            false
        }
        _ => true,
    };
    if interesting {
        if let Some(line) = crate::printer::compact(r, &crate::printer::Style::default()) {
            println!("[{}] {line}", r.node_name);
        }
    }
}

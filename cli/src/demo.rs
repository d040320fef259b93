//! `lumen demo`: a real three-node cluster on this machine (network
//! namespaces joined by a fabric, a pod on each node), an observer per node,
//! the relay serving the whole cluster on 127.0.0.1:4245, traffic across
//! nodes every second, and after a few seconds a policy that drops part of
//! it. Flows are printed from the relay's stream as they happen.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lumen_observer::{daemon, ObserverConfig, ObserverHandle};
use lumen_proto::flow::{TraceReason, Verdict};
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
    /// Print every flow, not only new connections and drops.
    #[arg(long)]
    pub all_events: bool,
}

const POLICY: &str = "\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: backend-allow
  namespace: default
spec:
  endpointSelector:
    matchLabels: {app: backend}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: frontend}
      toPorts:
        - ports: [{port: \"80\", protocol: TCP}]
    - toPorts:
        - ports: [{port: \"53\", protocol: UDP}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: backend-deny-dns-from-other
  namespace: default
spec:
  endpointSelector:
    matchLabels: {app: backend}
  ingressDeny:
    - fromEndpoints:
        - matchLabels: {app: other}
      toPorts:
        - ports: [{port: \"53\", protocol: UDP}]
";

struct Outcomes {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// (pod, node) of the demo: one pod per node, so traffic crosses nodes.
const PODS: [(&str, &str, u8); 3] = [("frontend", "node1", 1), ("backend", "node2", 2), ("other", "node3", 3)];

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
    for (_, n, _) in PODS {
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
    for (_, n, _) in PODS {
        tb.add_node(n)?;
    }
    tb.add_fabric().context("joining the nodes")?;
    let nodes = tb.nodes().to_vec();
    let node = |n: &str| nodes.iter().find(|x| x.name == n).expect("demo node").clone();
    let api = |n: &str| SocketAddr::new(node(n).address.expect("joined").ipv4.into(), API_PORT);
    let mut pods = Vec::new();
    for (name, n, i) in PODS {
        let spec = PodSpec::new(name, "default", Ipv4Addr::new(10, 1, 0, i))
            .ipv6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, i.into()))
            .label("app", name);
        pods.push(tb.add_pod(&node(n), spec)?);
    }
    let [frontend, backend, other] = [pods[0].clone(), pods[1].clone(), pods[2].clone()];
    let nodes_file = state_dir.join("nodes.yaml");
    let mut nodes_text = String::from("nodes:\n");
    for (_, n, _) in PODS {
        nodes_text += &format!("  - name: {}\n    address: {}\n", node_name(n), api(n));
    }
    std::fs::write(&nodes_file, nodes_text)?;
    cluster.tb = Some(tb);

    for (i, (_, n, _)) in PODS.iter().enumerate() {
        let dir = state_dir.join(n);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("endpoints.yaml"), endpoint_file(&pods, i))?;
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
        tls: Default::default(),
    });

    let _http = backend.tcp_echo_server(80)?;
    let _alt = backend.tcp_echo_server(8080)?;
    let _dns = backend.udp_echo_server(53)?;

    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "lumen".into());
    println!("Lumen demo: cluster {} with three nodes and a relay", args.node_name);
    for ((pod, n, _), p) in PODS.iter().zip(&pods) {
        println!(
            "  {:<16} {pod:<9} {} (and {})  observer API {}",
            node_name(n),
            p.ipv4,
            p.ipv6.expect("IPv6"),
            api(n)
        );
    }
    println!("  relay            {}", args.relay_address);
    println!("Look at it from another terminal:");
    println!("  {exe} observe -f --verdict DROPPED          # the whole cluster through the relay (hubble observe works too)");
    println!("  {exe} top                                    # a live dashboard: workloads, connections, drops");
    println!("  {exe} list nodes");
    println!("  {exe} status");
    println!("  {exe} policy list --control-socket {}", socket.display());
    println!(
        "  {exe} policy trace --from default/other --to default/backend --port 80/tcp --control-socket {}",
        cluster.observers[1].0
    );
    println!("Traffic every second: frontend->backend:80, frontend->backend:8080, other->backend:80, DNS from frontend and other.");
    println!(
        "Policy applied after {}: backend accepts TCP 80 from frontend and DNS from anyone but other.",
        humantime::format_duration(args.policy_after)
    );
    println!("Ctrl-C stops the demo and removes everything it made.\n");

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Outcomes {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let traffic = std::thread::spawn({
        let (stop, outcomes) = (stop.clone(), outcomes.clone());
        let (frontend, backend, other) = (frontend.clone(), backend.clone(), other.clone());
        move || traffic_loop(&frontend, &backend, &other, &stop, &outcomes)
    });

    let sockets: Vec<PathBuf> = cluster.observers.iter().map(|(s, ..)| PathBuf::from(s)).collect();
    let result = watch(args, &sockets, &stop);
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
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

/// Node `local`'s endpoint file: every pod, its own with its interface.
fn endpoint_file(pods: &[Pod], local: usize) -> String {
    let mut text = String::from("endpoints:\n");
    for (i, p) in pods.iter().enumerate() {
        text.push_str(&format!(
            "  - name: {}\n    namespace: {}\n    labels: {{app: {}}}\n    ips: [{}, \"{}\"]\n",
            p.name,
            p.namespace,
            p.labels["app"],
            p.ipv4,
            p.ipv6.expect("demo pods have IPv6")
        ));
        if i == local {
            text.push_str(&format!("    interface: {}\n", p.host_ifname));
        }
    }
    text
}

fn traffic_loop(frontend: &Pod, backend: &Pod, other: &Pod, stop: &AtomicBool, outcomes: &Outcomes) {
    let be = IpAddr::V4(backend.ipv4);
    let be6 = IpAddr::V6(backend.ipv6.expect("demo pods have IPv6"));
    let quick = Duration::from_millis(300);
    while !stop.load(Ordering::Relaxed) {
        let tries = [
            frontend.tcp_request(SocketAddr::new(be, 80), b"GET /", quick).is_ok(),
            frontend
                .tcp_request(SocketAddr::new(be6, 8080), b"GET /admin", quick)
                .is_ok(),
            other.tcp_request(SocketAddr::new(be, 80), b"GET /", quick).is_ok(),
            frontend.udp_request(SocketAddr::new(be, 53), b"dns?", quick).is_ok(),
            other.udp_request(SocketAddr::new(be6, 53), b"dns?", quick).is_ok(),
        ];
        for ok in tries {
            let counter = if ok { &outcomes.ok } else { &outcomes.failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
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
                println!(
                    "\n>>> policy applied: backend now accepts TCP 80 from frontend and DNS from anyone but other\n"
                );
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

/// New connections, drops and node changes (everything with `--all-events`),
/// in `lumen observe`'s compact format, with the node that saw it.
fn print_response(r: &lumen_proto::observer::GetFlowsResponse, all: bool) {
    let interesting = match &r.response_types {
        Some(ResponseTypes::Flow(f)) => {
            all || f.verdict != Verdict::Forwarded as i32 || f.trace_reason == TraceReason::New as i32
        }
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

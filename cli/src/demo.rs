//! `lumen demo`: a real topology on this machine (a node and three pods in
//! network namespaces), the observer guarding it, traffic every second, and
//! after a few seconds a policy that drops part of that traffic.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lumen_observer::control::{self, Request, Response};
use lumen_observer::{daemon, ObserverConfig, ObserverHandle};
use lumen_testbed::{Pod, PodSpec, Testbed};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. 30s); by default run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Seconds of open traffic before the policy is applied.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub policy_after: Duration,
    /// Node name; the datapath is pinned under /sys/fs/bpf/lumen/<node-name>.
    #[arg(long, default_value = "demo")]
    pub node_name: String,
    /// Print every event, not only new connections, replies' first packets and drops.
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

pub fn run(args: &DemoArgs, socket: &Path) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("lumen demo builds network namespaces and loads eBPF: run it as root (scripts/demo.sh)");
    }
    let state_dir = PathBuf::from("/var/run/lumen").join(&args.node_name);
    let pin_dir = Path::new("/sys/fs/bpf/lumen").join(&args.node_name);
    // A previous demo killed outright leaves its pins; start clean.
    daemon::uninstall(&pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::create_dir_all(&state_dir)?;

    let mut tb = Testbed::new().context("building the demo topology")?;
    let node = tb.add_node("node1")?;
    let pods = [("frontend", 1u8), ("backend", 2), ("other", 3)];
    let mut made = Vec::new();
    for (name, n) in pods {
        let spec = PodSpec::new(name, "default", Ipv4Addr::new(10, 1, 0, n))
            .ipv6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, n.into()))
            .label("app", name);
        made.push(tb.add_pod(&node, spec)?);
    }
    let [frontend, backend, other] = [made[0].clone(), made[1].clone(), made[2].clone()];
    let endpoints = state_dir.join("endpoints.yaml");
    std::fs::write(&endpoints, endpoint_file(&made))?;
    let events = state_dir.join("events.jsonl");

    let mut cfg = ObserverConfig::for_node(&args.node_name);
    cfg.netns = Some(node.netns.clone());
    cfg.endpoints = Some(endpoints.clone());
    cfg.control_socket = socket.to_path_buf();
    cfg.events_output = events.display().to_string();
    let observer = ObserverHandle::spawn(cfg);
    if !observer.wait_ready(Duration::from_secs(20)) {
        return Err(match observer.stop() {
            Err(e) => anyhow::Error::new(e).context("the observer did not start"),
            Ok(_) => anyhow::anyhow!("the observer did not answer within 20 s"),
        });
    }

    let _http = backend.tcp_echo_server(80)?;
    let _alt = backend.tcp_echo_server(8080)?;
    let _dns = backend.udp_echo_server(53)?;

    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "lumen".into());
    println!(
        "Lumen demo: node {} with pods frontend, backend, other (namespace default)",
        args.node_name
    );
    println!("  frontend 10.1.0.1  backend 10.1.0.2  other 10.1.0.3  (and fd00:1::1..3)");
    println!("Look at it from another terminal:");
    println!(
        "  tail -f {}                      # every event as JSON",
        events.display()
    );
    println!("  {exe} endpoint list --control-socket {}", socket.display());
    println!("  bpftool map dump pinned {}/policy", pin_dir.display());
    println!("  {exe} observe -f --verdict DROPPED          # Hubble-style flows (hubble observe works too)");
    println!("  {exe} status");
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

    let result = watch(args, socket, &events, &stop);
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    let stats = observer.stop();
    daemon::uninstall(&pin_dir)?;
    let _ = std::fs::remove_dir_all(&state_dir);
    drop(tb);
    result?;
    let stats = stats?;
    println!(
        "\ndemo finished: {} requests answered, {} refused by policy or unanswered; {} events read from the datapath",
        outcomes.ok.load(Ordering::Relaxed),
        outcomes.failed.load(Ordering::Relaxed),
        stats.received
    );
    Ok(())
}

fn endpoint_file(pods: &[Pod]) -> String {
    let mut text = String::from("endpoints:\n");
    for p in pods {
        text.push_str(&format!(
            "  - name: {}\n    namespace: {}\n    labels: {{app: {}}}\n    interface: {}\n    ips: [{}, \"{}\"]\n",
            p.name,
            p.namespace,
            p.labels["app"],
            p.host_ifname,
            p.ipv4,
            p.ipv6.expect("demo pods have IPv6")
        ));
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

/// Prints events as they arrive, applies the policy on time, and returns on
/// Ctrl-C, SIGTERM or the end of `--duration`.
fn watch(args: &DemoArgs, socket: &Path, events: &Path, stop: &AtomicBool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let start = Instant::now();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut reader = Tail::new(events);
        let mut policy_applied = false;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {}
            }
            for line in reader.lines() {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let interesting = args.all_events
                    || event["kind"] == "lost"
                    || event["verdict"] != "FORWARDED"
                    || event["ct_state"] == "new";
                if interesting {
                    if let Some(text) = crate::format::event_line(&event) {
                        println!("{text}");
                    }
                }
            }
            if !policy_applied && start.elapsed() >= args.policy_after {
                let documents = vec![control::PolicyDocument { source: "demo-policy.yaml".into(), yaml: POLICY.to_string() }];
                let request = Request::ApplyPolicies { documents };
                match control::call(socket, &request).await? {
                    Response::Error { error } => bail!("applying the demo policy: {error}"),
                    _ => println!("\n>>> policy applied: backend now accepts TCP 80 from frontend and DNS from anyone but other\n"),
                }
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

/// Follows a growing file line by line.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Tail {
    fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
        }
    }

    fn lines(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return vec![];
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return vec![];
        }
        let mut out = Vec::new();
        let mut reader = BufReader::new(f);
        let mut buf = String::new();
        while let Ok(n) = reader.read_line(&mut buf) {
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            if buf.ends_with('\n') {
                self.partial.push_str(buf.trim_end());
                out.push(std::mem::take(&mut self.partial));
            } else {
                self.partial.push_str(&buf);
            }
            buf.clear();
        }
        out
    }
}

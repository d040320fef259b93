//! Wiring of the observer's stages: loader → state → reader → output, plus
//! the control socket and conntrack GC. `run` is what the binary, the demo
//! and the tests start.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum;
use lumen_probes::abi;
use tokio::sync::watch;

use crate::counters::{ConntrackGc, CtTimeouts};
use crate::datapath::{Datapath, DatapathConfig, DatapathError};
use crate::endpoint;
use crate::hub::Hub;
use crate::metrics::{MetricsError, MetricsOptions};
use crate::output::JsonLines;
use crate::peer::{self, Peers};
use crate::policies::{PolicyStore, PolicyStoreError};
use crate::reader::{Reader, ReaderStats};
use crate::source::FileError;
use crate::state::{NodeState, StateError};
use crate::store::FlowStore;

/// Event volume, like Cilium's `--monitor-aggregation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Every packet.
    None,
    /// New connections, TCP flag changes, closes and every drop.
    Medium,
    /// Connection open and close, and every drop.
    Max,
}

impl Aggregation {
    pub fn abi(self) -> u32 {
        match self {
            Aggregation::None => abi::AGG_NONE,
            Aggregation::Medium => abi::AGG_MEDIUM,
            Aggregation::Max => abi::AGG_MAX,
        }
    }
}

fn default_node_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "node".to_string()
    }
}

/// Everything the observer can be told. Each flag that takes a value is
/// also a key of the `--config` file and a `LUMEN_*` environment variable
/// of the same name (`--node-name`, `node-name:`, `LUMEN_NODE_NAME`): see
/// [`ObserverConfig::load`].
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "lumen-observer",
    version,
    about = "Lumen node observer: enforces policy on endpoint interfaces and reports every decision"
)]
pub struct ObserverConfig {
    /// Name of this node; its datapath state is pinned under <bpffs-root>/<node-name>.
    #[arg(long, default_value_t = default_node_name())]
    pub node_name: String,
    /// Directory on a BPF filesystem where maps and links are pinned.
    #[arg(long, default_value = "/sys/fs/bpf/lumen")]
    pub bpffs_root: PathBuf,
    /// Directory for runtime state (runtime endpoints, reported losses).
    #[arg(long, default_value = "/var/run/lumen")]
    pub state_dir: PathBuf,
    /// YAML file of endpoints to guard (see README).
    #[arg(long)]
    pub endpoints: Option<PathBuf>,
    /// CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and NetworkPolicy
    /// YAML: a file or a directory of them. `lumen policy apply` adds more.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Policy enforcement: `default` (an endpoint a rule selects is default-deny
    /// in that direction), `always` (every endpoint is), `never`.
    #[arg(long, default_value = "default")]
    pub enable_policy: lumen_policy::compile::Enforcement,
    /// Report what policy would drop with verdict AUDIT and drop nothing.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub policy_audit_mode: bool,
    /// Unix socket of the control API (`lumen endpoint …`, `lumen policy …`).
    #[arg(long, default_value = "/var/run/lumen/control.sock")]
    pub control_socket: PathBuf,
    /// Unix socket of Hubble's Observer gRPC API (`hubble observe`, `lumen observe`).
    #[arg(long, default_value = "/var/run/lumen/observer.sock")]
    pub socket: PathBuf,
    /// Also serve the Observer API on this TCP address (HOST:PORT, e.g. 0.0.0.0:4244).
    #[arg(long)]
    pub listen_address: Option<SocketAddr>,
    /// TLS certificate (PEM) of the TCP API; with --tls-key-file.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM, comma-separated) a client's certificate must
    /// chain to: mutual TLS on the TCP API.
    #[arg(long, value_delimiter = ',', requires = "tls_cert_file")]
    pub tls_client_ca_files: Vec<PathBuf>,
    /// YAML file of the cluster's observers, announced by Hubble's Peer service
    /// so a relay finds them (see README); re-read when it changes. Without it
    /// only this node is announced, and only with a --listen-address.
    #[arg(long)]
    pub nodes_file: Option<PathBuf>,
    /// Flows kept in memory for GetFlows (Hubble keeps 4095).
    #[arg(long, default_value_t = FlowStore::DEFAULT_CAPACITY, value_parser = parse_max_flows)]
    pub max_flows: usize,
    /// Also write every flow and loss as a JSON line (the foundation's record
    /// format): `none` (the default), `-` for stdout, or a file path to append to.
    #[arg(long, default_value = "none")]
    pub events_output: String,
    /// Hubble's flow metrics to serve on /metrics, in Hubble's grammar: names
    /// separated by spaces, each with options `:key=value;key=value`, e.g.
    /// "drop:sourceContext=pod;destinationContext=pod flow tcp flows-to-world:any-drop".
    /// Not with --metrics-config.
    #[arg(long, value_parser = crate::metrics::parse_flag, conflicts_with = "metrics_config")]
    pub metrics: Option<String>,
    /// Hubble's dynamic metrics file (a `metrics:` list of name, contextOptions,
    /// includeFilters, excludeFilters), re-read when it changes: a valid change
    /// applies at once, an invalid one is logged and the previous one stays.
    #[arg(long)]
    pub metrics_config: Option<PathBuf>,
    /// Address of /metrics (HOST:PORT or :PORT). Without it, :9965 once
    /// --metrics or --metrics-config is given, and no server otherwise.
    #[arg(long, value_parser = crate::metrics::parse_listen_address)]
    pub metrics_listen_address: Option<SocketAddr>,
    /// Series each flow metric keeps at most; new label sets beyond are not
    /// added but counted in lumen_metrics_series_refused_total.
    #[arg(long, default_value_t = lumen_metrics::DEFAULT_MAX_SERIES, value_parser = crate::metrics::parse_max_series)]
    pub metrics_max_series: usize,
    /// How long the metric series of a deleted pod stay.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub metrics_grace_period: Duration,
    #[command(flatten)]
    pub export: lumen_export::ExportArgs,
    #[command(flatten)]
    pub otlp: lumen_export::OtlpArgs,
    /// Which packets become events.
    #[arg(long, value_enum, default_value = "medium")]
    pub monitor_aggregation: Aggregation,
    /// Bytes of each packet to copy into its event (0 to 128).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=128))]
    pub capture_bytes: u32,
    /// Size of the kernel ring buffer: a power of two, at least 4096.
    #[arg(long, default_value_t = 4 << 20, value_parser = parse_ring_size)]
    pub ring_buffer_bytes: u32,
    /// Pending bytes after which the datapath wakes the reader early.
    #[arg(long, default_value_t = 64 << 10)]
    pub wakeup_bytes: u64,
    /// Hand traffic between endpoints on this node straight to the receiving
    /// pod (both sides' policy still applies), skipping the host stack.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub local_redirect: bool,
    /// Idle time after which an established TCP connection is forgotten.
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    pub ct_timeout_tcp: Duration,
    /// Idle time after which a closing TCP connection (FIN or RST seen) is forgotten.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub ct_timeout_closing: Duration,
    /// Idle time after which a UDP, ICMP or other flow is forgotten.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub ct_timeout_other: Duration,
    /// How often expired conntrack entries are removed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub ct_gc_interval: Duration,
    /// Network namespace (under /var/run/netns) to run in.
    #[arg(long)]
    pub netns: Option<String>,
    /// Remove this node's pinned datapath (detaching it from every interface) and exit.
    #[arg(long)]
    pub uninstall: bool,
    /// Kernel BTF to require (for tests of the error path).
    #[arg(long, hide = true, default_value = "/sys/kernel/btf/vmlinux")]
    pub btf_path: PathBuf,
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

fn parse_max_flows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a number of flows of at least 1")),
    }
}

impl ObserverConfig {
    /// How the observer's environment variables are named: `LUMEN_<KEY>`.
    pub const SPEC: lumen_config::Spec = lumen_config::Spec {
        env_prefix: "LUMEN_",
        env_aliases: &[],
        actions: &["uninstall"],
    };

    /// The configuration from the command line `args` (program name first)
    /// over the environment `env` and the `--config` file, read with
    /// `read_file`: defaults < file < environment < flags. Reads nothing
    /// else, so tests pass their own.
    pub fn load(
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
        env: &lumen_config::Env,
        read_file: impl FnOnce(&Path) -> std::io::Result<String>,
    ) -> Result<lumen_config::Loaded<ObserverConfig>, lumen_config::Error> {
        lumen_config::load(&Self::SPEC, args, env, read_file)
    }

    /// A configuration with every default, for embedding. Reads neither the
    /// environment nor a file, and cannot fail: any name is taken here and
    /// checked by [`run`].
    pub fn for_node(node_name: &str) -> ObserverConfig {
        let mut cfg = <ObserverConfig as clap::Parser>::try_parse_from(["lumen-observer"])
            .expect("the defaults are valid settings");
        cfg.node_name = node_name.to_string();
        cfg
    }

    /// Defaults for `node_name` with its sockets and state under `dir` and
    /// no JSON-lines output: several observers side by side on one machine
    /// (tests, benchmarks), none touching /var/run/lumen.
    pub fn in_dir(node_name: &str, dir: &Path) -> ObserverConfig {
        let mut cfg = Self::for_node(node_name);
        cfg.control_socket = dir.join("control.sock");
        cfg.socket = dir.join("observer.sock");
        cfg.state_dir = dir.join("state");
        cfg.events_output = "none".into();
        cfg
    }

    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs_root.join(&self.node_name)
    }

    pub fn node_state_dir(&self) -> PathBuf {
        self.state_dir.join(&self.node_name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    #[error("invalid node name {0:?}: use letters, digits, '-', '_' and '.'")]
    NodeName(String),
    #[error(transparent)]
    Endpoints(FileError),
    #[error(transparent)]
    Policy(PolicyStoreError),
    #[error(transparent)]
    Nodes(FileError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{context}")]
    Io { context: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] lumen_rpc::tls::TlsFileError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Export(#[from] lumen_export::OutputsError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ObserverError {
    let context = context.into();
    move |source| ObserverError::Io { context, source }
}

/// Removes a node's pins: programs detach, maps are freed.
pub fn uninstall(pin_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(pin_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Runs the observer until `shutdown` turns true. Input files are checked
/// before the datapath is touched.
pub async fn run(cfg: ObserverConfig, mut shutdown: watch::Receiver<bool>) -> Result<ReaderStats, ObserverError> {
    if !peer::is_node_name(&cfg.node_name) {
        return Err(ObserverError::NodeName(cfg.node_name.clone()));
    }
    let file_endpoints = match &cfg.endpoints {
        Some(path) => endpoint::load_file(path).map_err(ObserverError::Endpoints)?,
        None => Vec::new(),
    };
    let tls = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => Some(lumen_rpc::tls::server_config(cert, key, &cfg.tls_client_ca_files)?),
        _ => None,
    };
    let options = lumen_policy::Options {
        enforcement: cfg.enable_policy,
        audit: cfg.policy_audit_mode,
    };
    let policies = PolicyStore::load(
        cfg.policy.as_deref(),
        cfg.node_state_dir().join("policies.json"),
        options,
    )
    .map_err(ObserverError::Policy)?;
    let metrics = crate::metrics::Prepared::new(&MetricsOptions::of(&cfg))?;
    // Export's configuration too, before anything changes.
    lumen_export::Outputs::check(&cfg.export, &cfg.otlp, &|name| std::env::var(name).ok())?;
    let peers = Peers::new(match &cfg.nodes_file {
        Some(path) => peer::load_file(path).map_err(ObserverError::Nodes)?,
        None => peer::local(&cfg.node_name, cfg.listen_address),
    });
    // Checked before the datapath is touched, so a bad file changes nothing.
    for ep in &file_endpoints {
        if let Some(ifname) = ep
            .interface
            .as_deref()
            .filter(|i| crate::datapath::ifindex(i).is_none())
        {
            return Err(DatapathError::NoInterface {
                ifname: ifname.to_string(),
            }
            .into());
        }
    }
    let pin_dir = cfg.pin_dir();
    let mut datapath = Datapath::load(&DatapathConfig {
        pin_dir: pin_dir.clone(),
        btf_path: cfg.btf_path.clone(),
        ring_buffer_bytes: cfg.ring_buffer_bytes,
        aggregation: cfg.monitor_aggregation.abi(),
        capture_bytes: cfg.capture_bytes,
        wakeup_bytes: cfg.wakeup_bytes,
        local_redirect: cfg.local_redirect,
    })?;
    let ring = datapath.take_events()?;
    let hub = Hub::new(&cfg.node_name, cfg.max_flows);
    let state_dir = cfg.node_state_dir();
    std::fs::create_dir_all(&state_dir).map_err(io_err(format!("cannot create {}", state_dir.display())))?;
    let file_name = cfg
        .endpoints
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut state = NodeState::new(
        datapath,
        file_endpoints,
        file_name,
        state_dir.join("endpoints.json"),
        policies,
        hub.clone(),
    )?;
    // Setting the other nodes' addresses projects the state; without any,
    // it is projected here.
    if !state.set_remote_nodes(remote_nodes(&peers.current(), &cfg.node_name))? {
        state.apply()?;
    }
    let state = Arc::new(Mutex::new(state));

    let out: Option<Box<dyn Write + Send>> = match cfg.events_output.as_str() {
        "-" => Some(Box::new(std::io::stdout())),
        "none" => None,
        path => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io_err(format!("cannot open events output {path}")))?,
        )),
    };
    // The output follows the stream from before the reader's first record.
    let output = out.map(|out| tokio::spawn(JsonLines::new(out, cfg.node_name.clone()).run(hub.follow())));
    // The metrics too count from before the reader's first record.
    let metrics = match metrics {
        Some(m) => {
            let node = crate::metrics::Node {
                pin_dir: pin_dir.clone(),
                policy: state.lock().unwrap_or_else(|e| e.into_inner()).policy_metrics(),
                ring_buffer_bytes: cfg.ring_buffer_bytes,
            };
            Some(m.with_node(node).start(&hub, shutdown.clone()).await?)
        }
        None => None,
    };
    // And the flow export.
    let gather: lumen_export::otlp::Gather = {
        let (hub, registry) = (hub.clone(), metrics.as_ref().map(|m| m.registry().clone()));
        Arc::new(move || crate::metrics::families(registry.as_deref(), &hub, None))
    };
    let export = crate::export::start(&cfg.export, &cfg.otlp, &hub, Some(gather))?;
    let reader = Reader::new(ring, pin_dir.clone(), state_dir.join("lost-reported"), hub.clone())
        .map_err(io_err("cannot poll the ring buffer"))?;
    let reader = tokio::spawn(reader.run(shutdown.clone()));

    let listener = crate::control::bind(&cfg.control_socket)
        .map_err(io_err(format!("cannot listen on {}", cfg.control_socket.display())))?;
    let control = tokio::spawn(crate::control::serve(
        listener,
        state.clone(),
        hub.telemetry_handle(),
        shutdown.clone(),
    ));
    let unix =
        crate::server::bind_unix(&cfg.socket).map_err(io_err(format!("cannot listen on {}", cfg.socket.display())))?;
    let tcp = match cfg.listen_address {
        Some(addr) => Some(
            crate::server::bind_tcp(addr)
                .await
                .map_err(io_err(format!("cannot listen on {addr}")))?,
        ),
        None => None,
    };
    let nodes_watcher = cfg
        .nodes_file
        .clone()
        .map(|path| tokio::spawn(peer::watch_file(peers.clone(), path, shutdown.clone())));
    let remote_watcher = tokio::spawn(follow_remote_nodes(
        peers.subscribe(),
        cfg.node_name.clone(),
        state.clone(),
    ));
    let served = crate::server::serve_tls(hub.clone(), peers, unix, tcp, tls, shutdown.clone());
    let server = tokio::spawn(served);
    tracing::info!(node = %cfg.node_name, pin_dir = %pin_dir.display(), socket = %cfg.control_socket.display(), "observer ready");

    let mut gc_tick = tokio::time::interval(cfg.ct_gc_interval);
    let timeouts = CtTimeouts {
        tcp: cfg.ct_timeout_tcp,
        closing: cfg.ct_timeout_closing,
        other: cfg.ct_timeout_other,
    };
    let gc = Arc::new(Mutex::new(ConntrackGc::new(timeouts)));
    loop {
        tokio::select! {
            _ = gc_tick.tick() => {
                let (pin_dir, gc) = (pin_dir.clone(), gc.clone());
                let pass = move || gc.lock().unwrap_or_else(|e| e.into_inner()).collect(&pin_dir);
                match tokio::task::spawn_blocking(pass).await {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(removed = n, "conntrack gc"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "conntrack gc failed"),
                    _ => {}
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    control.abort();
    remote_watcher.abort();
    if let Some(watcher) = nodes_watcher {
        watcher.abort();
    }
    let _ = std::fs::remove_file(&cfg.control_socket);
    // Streams end on shutdown; a connection that does not close in time is cut.
    let server_abort = server.abort_handle();
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %crate::error_chain(&e), "observer API server failed"),
        Ok(_) => {}
        Err(_) => {
            server_abort.abort();
            tracing::warn!("observer API connections did not close within 2s; cut")
        }
    }
    let _ = std::fs::remove_file(&cfg.socket);
    let stats = reader
        .await
        .map_err(|e| io_err("reader task")(std::io::Error::other(e)));
    // The output ends with what the reader stored, however the reader ended.
    hub.close();
    if let Some(m) = metrics {
        m.stop();
    }
    if let Some(export) = export {
        export.stop().await;
    }
    if let Some(output) = output {
        output
            .await
            .map_err(|e| io_err("output task")(std::io::Error::other(e)))?
            .map_err(io_err("writing events"))?;
    }
    stats?.map_err(io_err("reading the ring buffer"))
}

/// Enters the network namespace `/var/run/netns/<name>` on this thread.
/// Threads spawned afterwards inherit it.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(Path::new("/var/run/netns").join(name))?;
    // SAFETY: setns on a valid namespace fd only changes this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An observer running on its own thread (inside `cfg.netns` if set).
pub struct ObserverHandle {
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<ReaderStats, ObserverError>>>,
    control_socket: PathBuf,
}

impl ObserverHandle {
    pub fn spawn(cfg: ObserverConfig) -> ObserverHandle {
        let (tx, rx) = watch::channel(false);
        let control_socket = cfg.control_socket.clone();
        let thread = std::thread::spawn(move || {
            if let Some(ns) = &cfg.netns {
                enter_netns(ns).map_err(io_err(format!("cannot enter network namespace {ns}")))?;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(io_err("cannot start the runtime"))?;
            rt.block_on(run(cfg, rx))
        });
        ObserverHandle {
            shutdown: tx,
            thread: Some(thread),
            control_socket,
        }
    }

    /// Waits until the observer answers on its control socket, which it
    /// opens once its state is applied. False if it stopped or took longer
    /// than `timeout`.
    pub fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return false;
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if rt.block_on(crate::control::answers(&self.control_socket)) {
                return true;
            }
            if self.is_finished() || std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// True once the observer stopped (for example on a startup error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    pub fn stop(mut self) -> Result<ReaderStats, ObserverError> {
        let _ = self.shutdown.send(true);
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("observer thread panicked")
    }
}

impl Drop for ObserverHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The addresses of the cluster's other nodes.
fn remote_nodes(nodes: &[peer::NodeEntry], own_name: &str) -> std::collections::BTreeSet<std::net::IpAddr> {
    nodes
        .iter()
        .filter(|n| n.name != own_name)
        .map(|n| n.address.ip())
        .collect()
}

/// Keeps the other nodes' addresses in the ipcache as the nodes file changes.
async fn follow_remote_nodes(
    mut nodes: watch::Receiver<Arc<[peer::NodeEntry]>>,
    own_name: String,
    state: Arc<Mutex<NodeState>>,
) {
    while nodes.changed().await.is_ok() {
        let addresses = remote_nodes(&nodes.borrow_and_update(), &own_name);
        let state = state.clone();
        let update = move || {
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_remote_nodes(addresses)
        };
        match tokio::task::spawn_blocking(update).await {
            Ok(Ok(true)) => tracing::info!("remote node addresses updated"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot update remote node addresses"),
            Err(e) => tracing::warn!(error = %e, "remote node update failed"),
        }
    }
}

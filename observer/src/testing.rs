//! An observer on every node of a testbed cluster
//! ([`lumen_testbed::cluster`]), in-process or as `lumen-observer`
//! processes, for tests and benchmarks (feature `testing`). Dropping the
//! [`Cluster`] stops the observers, removes their pinned datapaths, then the
//! files and namespaces, also when a test panics.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use lumen_testbed::cluster::{ClusterSpec, API_PORT};
use lumen_testbed::Process;

use crate::{daemon, ObserverConfig, ObserverHandle};

/// How long an observer may take to answer on its control socket.
const READY: Duration = Duration::from_secs(20);

enum Observer {
    InProcess(ObserverHandle),
    Process(Process),
}

/// A testbed cluster and an observer configuration per node. Derefs to the
/// testbed's [`lumen_testbed::cluster::Cluster`] (pods, files, addresses).
pub struct Cluster {
    observers: BTreeMap<String, Observer>,
    configs: BTreeMap<String, ObserverConfig>,
    net: lumen_testbed::cluster::Cluster,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // In-process observers stop; processes get SIGKILL. Either way their
        // pins stay until removed here.
        self.observers.clear();
        for cfg in self.configs.values() {
            let _ = daemon::uninstall(&cfg.pin_dir());
        }
    }
}

impl Deref for Cluster {
    type Target = lumen_testbed::cluster::Cluster;

    fn deref(&self) -> &Self::Target {
        &self.net
    }
}

impl Cluster {
    /// Builds `spec` (panicking with the reason if it cannot: tests need
    /// root) and configures node `n`'s observer: named
    /// [`lumen_testbed::cluster::Cluster::name`], inside the node's netns,
    /// with its sockets and state in the node's directory, the node's
    /// endpoints and policy files and, with a fabric, the Observer API on it
    /// and the cluster's nodes file. No observer runs yet.
    pub fn new(spec: ClusterSpec) -> Cluster {
        let net = spec.build().expect("testbed cluster (run as root: scripts/test.sh)");
        let configs = net
            .node_names()
            .iter()
            .map(|n| {
                let mut cfg = ObserverConfig::in_dir(&net.name(n), &net.node_dir(n));
                cfg.netns = Some(net.node(n).netns.clone());
                cfg.endpoints = Some(net.endpoints_file(n));
                cfg.policy = Some(net.policy_file(n));
                if net.has_fabric() {
                    cfg.listen_address = Some(net.api(n));
                    cfg.nodes_file = Some(net.nodes_file());
                }
                (n.clone(), cfg)
            })
            .collect();
        Cluster {
            observers: BTreeMap::new(),
            configs,
            net,
        }
    }

    /// Node `n`'s observer configuration.
    pub fn config(&self, n: &str) -> &ObserverConfig {
        &self.configs[n]
    }

    /// Node `n`'s observer configuration, to change before it starts.
    pub fn config_mut(&mut self, n: &str) -> &mut ObserverConfig {
        self.configs.get_mut(n).expect("a node of the cluster")
    }

    /// Where node `n`'s observer pins its datapath.
    pub fn pin_dir(&self, n: &str) -> std::path::PathBuf {
        self.configs[n].pin_dir()
    }

    /// Starts node `n`'s observer in this process and waits until it is
    /// ready.
    pub fn start(&mut self, n: &str) {
        let handle = ObserverHandle::spawn(self.configs[n].clone());
        assert!(handle.wait_ready(READY), "observer {n} did not start");
        self.observers.insert(n.to_string(), Observer::InProcess(handle));
    }

    /// Starts every node's observer in this process, in the spec's order.
    pub fn start_all(&mut self) {
        for n in self.net.node_names().to_vec() {
            self.start(&n);
        }
    }

    /// Stops node `n`'s in-process observer as a shutdown does (its
    /// datapath stays pinned).
    pub fn stop(&mut self, n: &str) {
        match self.observers.remove(n) {
            Some(Observer::InProcess(handle)) => {
                handle.stop().unwrap();
            }
            Some(Observer::Process(_)) => panic!("observer {n} is a process: kill it"),
            None => panic!("observer {n} does not run"),
        }
    }

    /// The command line of `binary` (a `lumen-observer`) with node `n`'s
    /// configuration and `extra` flags, logging warnings to
    /// `<node dir>/observer.log`.
    pub fn observer_command(&self, n: &str, binary: &Path, extra: &[&str]) -> Command {
        let cfg = &self.configs[n];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(n))
            .expect("the observer's log file");
        let mut cmd = Command::new(binary);
        cmd.arg("--node-name")
            .arg(&cfg.node_name)
            .arg("--bpffs-root")
            .arg(&cfg.bpffs_root)
            .arg("--state-dir")
            .arg(&cfg.state_dir)
            .arg("--control-socket")
            .arg(&cfg.control_socket)
            .arg("--socket")
            .arg(&cfg.socket)
            .args(["--events-output", &cfg.events_output]);
        let paths = [
            ("--endpoints", &cfg.endpoints),
            ("--policy", &cfg.policy),
            ("--nodes-file", &cfg.nodes_file),
        ];
        for (flag, path) in paths {
            if let Some(path) = path {
                cmd.arg(flag).arg(path);
            }
        }
        if let Some(address) = cfg.listen_address {
            cmd.args(["--listen-address", &address.to_string()]);
        }
        cmd.args(extra)
            .env("LUMEN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        cmd
    }

    fn log_file(&self, n: &str) -> std::path::PathBuf {
        self.net.node_dir(n).join("observer.log")
    }

    /// Starts node `n`'s observer as a `binary` process inside the node's
    /// netns (see [`Cluster::observer_command`]), without waiting for it.
    pub fn spawn_process(&mut self, n: &str, binary: &Path, extra: &[&str]) {
        let cmd = self.observer_command(n, binary, extra);
        let process = self.net.node(n).spawn(cmd).expect("spawn lumen-observer");
        self.observers.insert(n.to_string(), Observer::Process(process));
    }

    /// Waits until node `n`'s observer answers on its control socket;
    /// panics with its log if it exits first.
    pub fn wait_ready(&mut self, n: &str) {
        let socket = self.configs[n].control_socket.clone();
        let log = self.log_file(n);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + READY;
        loop {
            if rt.block_on(crate::control::answers(&socket)) {
                return;
            }
            match self.observers.get_mut(n) {
                Some(Observer::Process(p)) => {
                    if let Ok(Some(status)) = p.try_wait() {
                        panic!(
                            "lumen-observer on {n} exited with {status}: {}",
                            std::fs::read_to_string(log).unwrap_or_default()
                        );
                    }
                }
                Some(Observer::InProcess(h)) => assert!(!h.is_finished(), "observer {n} stopped"),
                None => panic!("observer {n} does not run"),
            }
            assert!(Instant::now() < deadline, "lumen-observer on {n} did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to node `n`'s observer process, as a crash: the datapath
    /// stays pinned and keeps enforcing.
    pub fn kill(&mut self, n: &str) {
        match self.observers.remove(n) {
            Some(Observer::Process(mut p)) => p.kill().unwrap(),
            Some(Observer::InProcess(_)) => panic!("observer {n} runs in-process: stop it"),
            None => panic!("observer {n} does not run"),
        }
    }
}

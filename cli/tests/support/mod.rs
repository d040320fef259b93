//! Helpers shared by the CLI's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Runs `lumen` with `args`: (exit code, stdout, stderr).
pub fn lumen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lumen"))
        .args(args)
        .env_remove("LUMEN_SERVER")
        .env_remove("LUMEN_CONTROL_SOCKET")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory for one test.
pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lumen-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `lumen-observer` binary of this build (see [`workspace_binary`]).
pub fn observer_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("lumen-observer")).clone()
}

/// The `lumen-ui` binary of this build, beside `lumen` (see [`workspace_binary`]).
pub fn ui_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("lumen-ui")).clone()
}

/// The binary of another package of this build, named as its package. Cargo
/// gives no `CARGO_BIN_EXE_` for it: it lies next to the test executable's
/// `deps/` directory. Cargo is asked to bring it up to date first (a build
/// after `cargo test -p lumen-cli`, or after the package changed), except
/// under `scripts/test.sh`: its `cargo test --workspace` has just built it,
/// with the whole workspace's features, which a `cargo build -p <package>`
/// would rebuild differently.
fn workspace_binary(package: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile.join(package);
    if std::env::var_os("LUMEN_WORKSPACE_BUILT").is_some() && binary.exists() {
        return binary;
    }
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "-p", package, "--bin", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile.file_name().is_some_and(|p| p == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().unwrap();
    assert!(status.success(), "building {package}: {status}");
    assert!(binary.exists(), "cargo built no {}", binary.display());
    binary
}

/// Removes an observer's pinned datapath when dropped, so a failing test
/// leaves nothing in bpffs. Declare it before the observer's handle: the
/// handle stops the observer first.
pub struct Pins(pub PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = lumen_observer::daemon::uninstall(&self.0);
    }
}

/// A node with `frontend`, `backend` and `other` pods (10.0.0.1-3, labelled
/// `app=<name>`, namespace default), guarded by a real observer in-process
/// with its own sockets: the shared cluster helper with one node and no
/// fabric. Everything goes away on drop.
pub struct Live {
    /// The observer's configuration (sockets, node name).
    pub cfg: lumen_observer::ObserverConfig,
    /// The node's directory: its endpoints, policy, sockets and state.
    pub dir: PathBuf,
    cluster: lumen_observer::testing::Cluster,
}

impl Live {
    pub fn start(name: &str, policy: &str) -> Live {
        let spec = ["frontend", "backend", "other"]
            .iter()
            .zip(1..)
            .fold(
                lumen_observer::testing::ClusterSpec::new(&format!("cli-{name}")).without_fabric(),
                |s, (app, i)| s.app_pod(app, "n", std::net::Ipv4Addr::new(10, 0, 0, i)),
            )
            .policy(policy);
        let mut cluster = lumen_observer::testing::Cluster::new(spec);
        cluster.start("n");
        Live {
            cfg: cluster.config("n").clone(),
            dir: cluster.node_dir("n"),
            cluster,
        }
    }

    pub fn pod(&self, name: &str) -> &lumen_testbed::Pod {
        &self.cluster.pods[name]
    }

    pub fn server(&self) -> String {
        format!("unix://{}", self.cfg.socket.display())
    }
}

/// TCP requests to port 80 on each (from, to) pair every 200 ms, each
/// waiting at most `timeout`, until dropped.
pub struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(pairs: Vec<(lumen_testbed::Pod, lumen_testbed::Pod)>, timeout: std::time::Duration) -> Traffic {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    for (from, to) in &pairs {
                        let dst = std::net::SocketAddr::new(to.ipv4.into(), 80);
                        let _ = from.tcp_request(dst, b"hi", timeout);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

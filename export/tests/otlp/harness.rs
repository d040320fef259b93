//! The OTLP test receiver (receiver.py beside this file) as a child
//! process on loopback ports, killed and reaped when dropped.
//!
//! The receiver runs with the Python of the venv that setup.sh makes:
//! `$LUMEN_OTLP_PYTHON` if set, else /opt/lumen-otlp-venv/bin/python.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const DEFAULT_PYTHON: &str = "/opt/lumen-otlp-venv/bin/python";
const READY_WITHIN: Duration = Duration::from_secs(30);

fn python() -> PathBuf {
    let python = std::env::var_os("LUMEN_OTLP_PYTHON").map_or_else(|| PathBuf::from(DEFAULT_PYTHON), PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run export/tests/otlp/setup.sh (as root) to make the OTLP test receiver's venv",
        python.display()
    );
    python
}

/// A running receiver, or one stopped for a while (the ports kept).
pub struct Receiver {
    child: Option<Child>,
    out: PathBuf,
    _dir: tempfile::TempDir,
    pub grpc_port: u16,
    pub http_port: u16,
    /// `--count-only`: lines count records instead of holding requests.
    count_only: bool,
    /// Both ports serve TLS with this certificate and key.
    tls: Option<(PathBuf, PathBuf)>,
}

impl Receiver {
    /// Starts a receiver on free ports.
    pub fn start(refuse: bool) -> Receiver {
        Receiver::start_with(refuse, false)
    }

    /// A receiver that writes how many records each request held (for
    /// benchmarks: it does not convert requests to JSON).
    pub fn start_counting() -> Receiver {
        Receiver::start_with(false, true)
    }

    /// A receiver serving both ports over TLS with `cert` and `key` (PEM).
    pub fn start_tls(cert: &Path, key: &Path) -> Receiver {
        Receiver::start_full(false, false, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(refuse: bool, count_only: bool) -> Receiver {
        Receiver::start_full(refuse, count_only, None)
    }

    fn start_full(refuse: bool, count_only: bool, tls: Option<(PathBuf, PathBuf)>) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let mut receiver = Receiver {
            child: None,
            out,
            _dir: dir,
            grpc_port: 0,
            http_port: 0,
            count_only,
            tls,
        };
        receiver.restart(refuse);
        receiver
    }

    /// Starts the receiver again on its ports (after [`Receiver::stop`]).
    pub fn restart(&mut self, refuse: bool) {
        self.stop();
        // From this crate's tests and from other crates' (the observer's).
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../export/tests/otlp/receiver.py");
        let mut command = Command::new(python());
        command
            .arg(script)
            .arg("--out")
            .arg(&self.out)
            .arg(format!("--grpc-port={}", self.grpc_port))
            .arg(format!("--http-port={}", self.http_port))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if refuse {
            command.arg("--refuse");
        }
        if self.count_only {
            command.arg("--count-only");
        }
        if let Some((cert, key)) = &self.tls {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = command.spawn().expect("cannot start the OTLP test receiver");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(READY_WITHIN)
            .expect("the OTLP test receiver did not say READY");
        let ports: Vec<u16> = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("the OTLP test receiver said {line:?}"))
            .split(' ')
            .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        (self.grpc_port, self.http_port) = (ports[0], ports[1]);
    }

    /// Kills the receiver: the collector is down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.grpc_port)
    }

    pub fn http_endpoint(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme(), self.http_port)
    }

    /// Every request received so far, of `signal` (logs or metrics).
    pub fn requests(&self, signal: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["signal"] == signal)
            .collect()
    }

    /// The log records received so far, each with its request's resource
    /// attributes under "resource" and the request's "headers".
    pub fn log_records(&self) -> Vec<Value> {
        let mut records = Vec::new();
        for request in self.requests("logs") {
            for rl in request["request"]["resourceLogs"].as_array().unwrap() {
                for sl in rl["scopeLogs"].as_array().unwrap() {
                    for r in sl["logRecords"].as_array().unwrap() {
                        let mut r = r.clone();
                        r["resource"] = rl["resource"]["attributes"].clone();
                        r["scope"] = sl["scope"].clone();
                        r["headers"] = request["headers"].clone();
                        r["transport"] = request["transport"].clone();
                        records.push(r);
                    }
                }
            }
        }
        records
    }

    /// Waits until `done` holds of the log records, or panics after `within`.
    pub fn wait_for_logs(&self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let until = Instant::now() + within;
        loop {
            let records = self.log_records();
            if done(&records) {
                return records;
            }
            assert!(
                Instant::now() < until,
                "the receiver has {} log records: {records:#?}",
                records.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `done` holds, or panics with `what` after `within`.
pub fn wait_until(within: Duration, what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

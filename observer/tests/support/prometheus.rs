//! A real Prometheus for tests (Debian's `prometheus` package) and the
//! Grafana dashboards' queries to run against it. Shared by the observer's
//! and the relay's dashboard tests (the relay includes this file by path).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What Grafana puts in place of its variables, as it would for a one-hour
/// dashboard over a 1 s scrape interval (long enough for two samples).
pub const GRAFANA_VARIABLES: &[(&str, &str)] =
    &[("$__rate_interval", "1m"), ("$__interval", "15s"), ("$__range", "1m")];

pub fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every `dashboards/*.json`, by file name, parsed.
pub fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect()
}

/// `(panel title, expr)` of every query target, nested rows included.
pub fn queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a target with an expr");
                out.push((panel["title"].as_str().unwrap_or("").to_string(), expr.to_string()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Whether `expr` reads the relay's metrics (checked by the relay's test;
/// every other query by the observer's).
pub fn reads_relay(expr: &str) -> bool {
    expr.contains("hubble_relay_") || expr.contains("lumen_relay_")
}

/// `(dashboard, panel, expr)` of every query `select` keeps.
pub fn dashboard_queries(select: impl Fn(&str) -> bool) -> Vec<(String, String, String)> {
    dashboards()
        .iter()
        .flat_map(|(name, d)| {
            queries(d)
                .into_iter()
                .map(move |(panel, expr)| (name.clone(), panel, expr))
        })
        .filter(|(_, _, expr)| select(expr))
        .collect()
}

/// The expression as Grafana sends it to Prometheus.
pub fn substitute(expr: &str) -> String {
    GRAFANA_VARIABLES
        .iter()
        .fold(expr.to_string(), |e, (var, value)| e.replace(var, value))
}

/// The labels of every `by (…)` clause in `expr`, but `le`, which a
/// histogram quantile consumes.
pub fn grouping_labels(expr: &str) -> Vec<&str> {
    expr.split("by (")
        .skip(1)
        .flat_map(|rest| rest.split(')').next().unwrap_or("").split(','))
        .map(str::trim)
        .filter(|l| *l != "le")
        .collect()
}

enum Running {
    /// In a testbed node's namespace (the testbed's guard kills it).
    Netns(lumen_testbed::Process),
    Host(Child),
}

/// Prometheus scraping `targets` every second; killed on drop, also when
/// an assertion fails.
pub struct Prometheus {
    running: Running,
    netns: Option<String>,
    listen: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `listen`, in `node`'s namespace if given, and
    /// waits until it is ready. `targets` are `(job, address)`.
    pub fn start(targets: &[(&str, SocketAddr)], listen: SocketAddr, node: Option<&lumen_testbed::Node>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let mut text = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n");
        for (job, address) in targets {
            text.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{address}']\n"
            ));
        }
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new("/usr/bin/prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .args(["--log.level=warn", "--storage.tsdb.retention.time=1h"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        const MISSING: &str = "start /usr/bin/prometheus (scripts/setup.sh installs it)";
        let running = match node {
            Some(node) => Running::Netns(node.spawn(cmd).expect(MISSING)),
            None => Running::Host(cmd.spawn().expect(MISSING)),
        };
        let mut p = Prometheus {
            running,
            netns: node.map(|n| n.netns.clone()),
            listen,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while p.get("/-/ready").map(|(status, _)| status) != Some(200) {
            if let Some(err) = p.exited() {
                panic!("prometheus exited: {err}");
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// Its exit status and standard error, if it has exited.
    fn exited(&mut self) -> Option<String> {
        let mut err = String::new();
        let status = match &mut self.running {
            Running::Netns(p) => {
                let status = p.try_wait().ok()??;
                p.take_stderr()?.read_to_string(&mut err).ok()?;
                status
            }
            Running::Host(c) => {
                let status = c.try_wait().ok()??;
                c.stderr.take()?.read_to_string(&mut err).ok()?;
                status
            }
        };
        Some(format!("{status}: {err}"))
    }

    /// `GET path`: status and body, or `None` if nothing listens yet.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let get = || {
            let mut s = std::net::TcpStream::connect_timeout(&self.listen, Duration::from_secs(1)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // HTTP/1.0: the server closes the connection after the body, and
            // sends it neither chunked nor kept alive.
            write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
            let mut response = String::new();
            s.read_to_string(&mut response).ok()?;
            let (head, body) = response.split_once("\r\n\r\n")?;
            let status = head.split(' ').nth(1)?.parse().ok()?;
            Some((status, body.to_string()))
        };
        match &self.netns {
            Some(netns) => lumen_testbed::in_netns(netns, get).unwrap(),
            None => get(),
        }
    }

    /// `/api/v1/query` at the current time: the parsed answer.
    pub fn query(&self, expr: &str) -> Value {
        let (_, body) = self
            .get(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .expect("prometheus answers");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Runs every query as Grafana would until it returns data (a series
    /// shows once scraped twice, as rate needs two samples), until
    /// `deadline`; what failed, one line each: an error, no data, or a
    /// grouping label no series has (a misspelt label groups everything
    /// into one series without it).
    pub fn failures(&self, queries: &[(String, String, String)], deadline: Instant) -> Vec<String> {
        let mut failures = Vec::new();
        for (dashboard, panel, expr) in queries {
            let sent = substitute(expr);
            let answer = loop {
                let answer = self.query(&sent);
                let has_data = answer["data"]["result"].as_array().is_some_and(|r| !r.is_empty());
                if answer["status"] != "success" || has_data || Instant::now() >= deadline {
                    break answer;
                }
                std::thread::sleep(Duration::from_millis(250));
            };
            let result = answer["data"]["result"].as_array();
            if answer["status"] != "success" {
                failures.push(format!("{dashboard} / {panel}: {sent}: {}", answer["error"]));
            } else if result.is_none_or(Vec::is_empty) {
                failures.push(format!("{dashboard} / {panel}: {sent}: no data"));
            } else {
                let result = result.unwrap();
                for label in grouping_labels(&sent) {
                    if !result
                        .iter()
                        .any(|r| r["metric"][label].as_str().is_some_and(|v| !v.is_empty()))
                    {
                        failures.push(format!("{dashboard} / {panel}: {sent}: no series has a {label} label"));
                    }
                }
            }
        }
        failures
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Running::Host(c) = &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A query string value: everything but RFC 3986's unreserved characters escaped.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

//! The Grafana dashboards in `dashboards/` against a real Prometheus: every
//! PromQL expression in them must parse and return data once Prometheus
//! has scraped an observer that saw known traffic. A dashboard that queries
//! a metric Lumen does not emit, or groups by a label it does not put on
//! that metric, fails here.
//!
//! The end-to-end test needs root and Debian's `prometheus` package: run
//! `scripts/setup.sh`, then `scripts/test.sh`.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const FRONTEND: &[(&str, &str)] = &[("app", "frontend")];
const BACKEND: &[(&str, &str)] = &[("app", "backend")];
const OTHER: &[(&str, &str)] = &[("app", "other")];

/// Ports inside the node's own network namespace, so they are free.
const METRICS_PORT: u16 = 19965;
const PROMETHEUS_PORT: u16 = 19090;

/// Every flow metric, each split by source and destination pod.
const EVERY_FLOW_METRIC: &str = "\
flow:sourceContext=pod;destinationContext=pod \
drop:sourceContext=pod;destinationContext=pod \
tcp:sourceContext=pod;destinationContext=pod \
port-distribution:sourceContext=pod;destinationContext=pod \
icmp:sourceContext=pod;destinationContext=pod \
flows-to-world:any-drop;port;sourceContext=pod;destinationContext=pod \
policy:sourceContext=pod;destinationContext=pod";

/// What Grafana puts in place of its variables, as it would for a one-hour
/// dashboard over a 1 s scrape interval (long enough for two samples).
const GRAFANA_VARIABLES: &[(&str, &str)] = &[("$__rate_interval", "1m"), ("$__interval", "15s"), ("$__range", "1m")];

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every `dashboards/*.json`, by file name, parsed.
fn dashboards() -> Vec<(String, Value)> {
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
fn queries(dashboard: &Value) -> Vec<(String, String)> {
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

/// The expression as Grafana sends it to Prometheus.
fn substitute(expr: &str) -> String {
    GRAFANA_VARIABLES
        .iter()
        .fold(expr.to_string(), |e, (var, value)| e.replace(var, value))
}

/// The labels of every `by (…)` clause in `expr`.
fn grouping_labels(expr: &str) -> Vec<&str> {
    expr.split("by (")
        .skip(1)
        .flat_map(|rest| rest.split(')').next().unwrap_or("").split(','))
        .map(str::trim)
        .collect()
}

/// Every `datasource` reference anywhere in `value`, with its JSON path.
fn datasources(value: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                if k == "datasource" {
                    out.push((here.clone(), v.clone()));
                }
                datasources(v, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                datasources(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_dashboard_takes_its_prometheus_from_a_variable_and_names_no_datasource_uid() {
    let all = dashboards();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "lumen-cluster-overview.json",
            "lumen-health.json",
            "lumen-network.json",
            "lumen-policy-verdicts.json"
        ]
    );
    for (name, d) in &all {
        let variables = d["templating"]["list"].as_array().expect("templating.list");
        let datasource = variables
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(datasource["type"], "datasource", "{name}");
        assert_eq!(datasource["query"], "prometheus", "{name}");
        assert!(
            d.get("__inputs").is_none(),
            "{name}: __inputs ties the import to a datasource"
        );
        assert!(d["uid"].as_str().is_some_and(|u| u == name.trim_end_matches(".json")));

        let mut refs = Vec::new();
        datasources(d, "", &mut refs);
        for (path, ds) in refs {
            // The built-in annotation query is Grafana's own, not Prometheus.
            if ds["type"] == "grafana" {
                continue;
            }
            assert_eq!(ds["type"], "prometheus", "{name}{path}");
            assert_eq!(ds["uid"], "${datasource}", "{name}{path}: a hard-coded datasource");
        }

        let queries = queries(d);
        assert!(!queries.is_empty(), "{name}: no queries");
        for (panel, expr) in queries {
            let sent = substitute(&expr);
            assert!(
                !sent.contains('$'),
                "{name} / {panel}: a variable the test does not know: {expr}"
            );
        }
    }
}

/// Prometheus, started in the node's namespace; killed on drop (the
/// testbed's process guard), also when an assertion fails.
struct Prometheus {
    process: lumen_testbed::Process,
    netns: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(c: &Cluster) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: lumen-observer\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{METRICS_PORT}']\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new("/usr/bin/prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
            .args(["--log.level=warn", "--storage.tsdb.retention.time=1h"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let process = c
            .node
            .spawn(cmd)
            .expect("start /usr/bin/prometheus (scripts/setup.sh installs it)");
        let mut p = Prometheus {
            process,
            netns: c.node.netns.clone(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while p.get("/-/ready").map(|(status, _)| status) != Some(200) {
            if let Ok(Some(status)) = p.process.try_wait() {
                let mut err = String::new();
                p.process.take_stderr().unwrap().read_to_string(&mut err).unwrap();
                panic!("prometheus exited with {status}: {err}");
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// `GET path` from inside the node's namespace: status and body, or
    /// `None` if nothing listens yet.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        lumen_testbed::in_netns(&self.netns, || {
            let addr = SocketAddr::from(([127, 0, 0, 1], PROMETHEUS_PORT));
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // HTTP/1.0: the server closes the connection after the body, and
            // sends it neither chunked nor kept alive.
            write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
            let mut response = String::new();
            s.read_to_string(&mut response).ok()?;
            let (head, body) = response.split_once("\r\n\r\n")?;
            let status = head.split(' ').nth(1)?.parse().ok()?;
            Some((status, body.to_string()))
        })
        .unwrap()
    }

    /// `/api/v1/query` at the current time: the parsed answer.
    fn query(&self, expr: &str) -> Value {
        let (_, body) = self
            .get(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .expect("prometheus answers");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
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

/// Traffic that gives every flow metric data: an allowed connection
/// (frontend → backend:80), a denied one (other → backend:80), a
/// connection to an address outside the cluster (frontend → world) and
/// pings (frontend → other).
fn known_traffic(c: &Cluster) {
    let backend_http = c.addr("backend", false, 80);
    c.pod("frontend")
        .tcp_request(backend_http, b"hello", LONG)
        .expect("frontend reaches backend:80");
    assert!(
        c.pod("other").tcp_connect(backend_http, SHORT).is_err(),
        "ALLOW_HTTP lets other reach the backend"
    );
    c.pod("frontend")
        .tcp_request(c.addr("world", false, 80), b"hello", LONG)
        .expect("frontend reaches the world");
    let ping = c.pod("frontend").ping(c.pod("other").ipv4.into(), 2, LONG).unwrap();
    assert_eq!(ping.received, 2, "{ping:?}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn every_dashboard_query_parses_and_returns_data_from_a_real_prometheus() {
    use lumen_testbed::PodSpec;
    let pod = |name: &str, n: u8, labels: &[(&str, &str)]| {
        labels.iter().fold(
            PodSpec::new(name, "default", std::net::Ipv4Addr::new(10, 0, 0, n)),
            |spec, (k, v)| spec.label(k, v),
        )
    };
    let mut c = cluster_of(vec![
        pod("frontend", 1, FRONTEND),
        pod("backend", 2, BACKEND),
        pod("other", 3, OTHER),
        // Not an endpoint and outside the pod range: reserved:world.
        PodSpec::new("world", "default", std::net::Ipv4Addr::new(198, 51, 100, 10)),
    ]);
    c.unguarded = ["world".to_string()].into();
    c.write_endpoints();
    let listen = format!("127.0.0.1:{METRICS_PORT}");
    c.start_observer(
        ALLOW_HTTP,
        &["--metrics", EVERY_FLOW_METRIC, "--metrics-listen-address", &listen],
    );
    let _servers = [
        c.pod("backend").tcp_echo_server(80).unwrap(),
        c.pod("world").tcp_echo_server(80).unwrap(),
    ];
    known_traffic(&c);

    let started = Instant::now();
    let prometheus = Prometheus::start(&c);
    let all: Vec<(String, String, String)> = dashboards()
        .iter()
        .flat_map(|(name, d)| {
            queries(d)
                .into_iter()
                .map(move |(panel, expr)| (name.clone(), panel, expr))
        })
        .collect();
    // A series shows once Prometheus has scraped it twice (rate needs two
    // samples); every query gets until the deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = Vec::new();
    for (dashboard, panel, expr) in &all {
        let sent = substitute(expr);
        let answer = loop {
            let answer = prometheus.query(&sent);
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
            // A misspelt label groups everything into one series without it.
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
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}\nup: {}",
        failures.len(),
        all.len(),
        failures.join("\n"),
        prometheus.query("up")["data"]
    );
    eprintln!(
        "{} dashboard queries answered with data {:?} after Prometheus started",
        all.len(),
        started.elapsed()
    );
}

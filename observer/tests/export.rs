//! Flow export end to end: the real datapath and `lumen-observer` binary
//! on the testbed write Hubble-style flow log files (static flags and the
//! dynamic `--flowlogs-config` file, changed while running), with exact
//! lines for known traffic and exact counts on `/metrics` and in
//! ServerStatus. Needs root: run `scripts/test.sh`.
//!
//! The traffic is TCP SYNs from a raw socket, one per source port: each is
//! one flow where it leaves the frontend (forwarded) and one where the
//! backend's policy drops it, and nothing else.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const FRONTEND: &[(&str, &str)] = &[("app", "frontend")];
const BACKEND: &[(&str, &str)] = &[("app", "backend")];
const PORT: u16 = 19965;

/// SYNs from the frontend to the backend's port 8080 (denied), source ports
/// `first..first + n`.
fn denied_syns(c: &Cluster, first: u16, n: u16) {
    let backend = c.pod("backend").ipv4;
    for sport in first..first + n {
        send_syn(c.pod("frontend"), backend, sport, 8080);
    }
}

/// The JSON lines of `path` (none if it does not exist yet).
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The lines of `path` whose TCP source port is in `ports`, once there
/// are `n` of them (5 s at most).
fn wait_lines(path: &Path, ports: std::ops::Range<u64>, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<Value> = lines(path)
            .into_iter()
            .filter(|l| {
                l["flow"]["l4"]["TCP"]["source_port"]
                    .as_u64()
                    .is_some_and(|p| ports.contains(&p))
            })
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A line without its `time` (the flow's, checked to be RFC 3339).
fn timeless(mut line: Value) -> Value {
    let time = line["time"].as_str().expect("a time").to_string();
    assert!(chrono_like(&time), "{time}");
    line.as_object_mut().unwrap().remove("time");
    line
}

/// `2026-12-05T18:09:08.123456789Z`.
fn chrono_like(t: &str) -> bool {
    t.len() >= 20 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T' && t.ends_with('Z')
}

const DROPS_ONLY: &str = "\
flowLogs:
  - name: drops
    filePath: FILE
    fieldMask: [verdict, drop_reason_desc, traffic_direction, source.pod_name, destination.pod_name, l4.TCP.source_port, l4.TCP.destination_port]
    includeFilters:
      - verdict: [DROPPED]
";

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn flow_logs_hold_exact_lines_and_follow_their_file_as_it_changes() {
    let mut c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    let all = c.dir.join("flows/all.log");
    let drops = c.dir.join("flows/drops.log");
    let config = c.dir.join("flowlogs.yaml");
    std::fs::write(&config, DROPS_ONLY.replace("FILE", &drops.display().to_string())).unwrap();
    let listen = format!("127.0.0.1:{PORT}");
    c.start_observer(
        ALLOW_HTTP,
        &[
            "--export-file-path",
            all.to_str().unwrap(),
            "--flowlogs-config",
            config.to_str().unwrap(),
            "--metrics-listen-address",
            &listen,
        ],
    );
    denied_syns(&c, 46_000, 3);

    // The static flow log: every flow, whole, as Hubble's exporter writes it.
    let written = wait_lines(&all, 46_000..46_003, 6);
    assert_eq!(written.len(), 6, "{written:#?}");
    let node = c.node_name.as_str();
    for (i, line) in written.iter().enumerate() {
        assert_eq!(line["node_name"], node, "{line}");
        assert_eq!(line["flow"]["node_name"], node, "{line}");
        assert_eq!(line["flow"]["time"], line["time"], "the line's time is the flow's");
        let sport = line["flow"]["l4"]["TCP"]["source_port"].as_u64().unwrap();
        assert_eq!(sport, 46_000 + i as u64 / 2, "in stream order: {line}");
    }
    // Each SYN: forwarded where it leaves the frontend, then dropped where
    // the backend's policy decides.
    let (sent, denied) = (&written[0]["flow"], &written[1]["flow"]);
    assert_eq!(
        (
            &sent["verdict"],
            &sent["traffic_direction"],
            &sent["source"]["pod_name"]
        ),
        (&json!("FORWARDED"), &json!("EGRESS"), &json!("frontend"))
    );
    assert_eq!(denied["verdict"], "DROPPED");
    assert_eq!(denied["drop_reason_desc"], "POLICY_DENIED");
    assert_eq!(denied["trace_observation_point"], "TO_ENDPOINT");
    assert_eq!(denied["traffic_direction"], "INGRESS");
    assert_eq!(
        denied["IP"],
        json!({"source": "10.0.0.1", "destination": "10.0.0.2", "ipVersion": "IPv4"})
    );
    assert_eq!(
        denied["l4"],
        json!({"TCP": {"source_port": 46_000, "destination_port": 8080, "flags": {"SYN": true}}})
    );
    assert_eq!(
        (&denied["source"]["pod_name"], &denied["destination"]["pod_name"]),
        (&json!("frontend"), &json!("backend"))
    );

    // The dynamic one: the drops only, masked.
    let dropped = wait_lines(&drops, 46_000..46_003, 3);
    let dropped: Vec<Value> = dropped.into_iter().map(timeless).collect();
    let expect = |sport: u64| {
        json!({
            "flow": {
                "verdict": "DROPPED",
                "drop_reason_desc": "POLICY_DENIED",
                "traffic_direction": "INGRESS",
                "source": {"pod_name": "frontend"},
                "destination": {"pod_name": "backend"},
                "l4": {"TCP": {"source_port": sport, "destination_port": 8080}}
            },
            "node_name": node
        })
    };
    assert_eq!(dropped, [expect(46_000), expect(46_001), expect(46_002)]);

    // Changed while running: the drop log now keeps forwarded flows, and a
    // third flow log appears; the static one runs on untouched.
    let forwarded = c.dir.join("flows/forwarded.log");
    let verdicts = c.dir.join("flows/verdicts.log");
    std::fs::write(
        &config,
        format!(
            "flowLogs:\n  - name: drops\n    filePath: {}\n    fieldMask: [verdict, l4.TCP.source_port]\n    \
             includeFilters:\n      - verdict: [FORWARDED]\n  - name: verdicts\n    filePath: {}\n    \
             fieldMask: [verdict]\n    includeFilters:\n      - destination_port: [\"8080\"]\n",
            forwarded.display(),
            verdicts.display()
        ),
    )
    .unwrap();
    let reloaded = r#"lumen_flowlogs_config_reloads_total{result="applied"} 2"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !has(reloaded)(&c.scrape(PORT)) {
        assert!(Instant::now() < deadline, "the change was not applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    denied_syns(&c, 46_100, 2);
    let forwarded_lines: Vec<Value> = wait_lines(&forwarded, 46_100..46_102, 2)
        .into_iter()
        .map(timeless)
        .collect();
    let fwd = |sport: u64| json!({"flow": {"verdict": "FORWARDED", "l4": {"TCP": {"source_port": sport}}}, "node_name": node});
    assert_eq!(forwarded_lines, [fwd(46_100), fwd(46_101)]);
    assert_eq!(wait_lines(&all, 46_100..46_102, 4).len(), 4);

    // A change that is not valid changes nothing, and says why in the count.
    std::fs::write(
        &config,
        format!(
            "flowLogs:\n  - name: drops\n    filePath: {0}\n  - name: drops\n    filePath: {0}.2\n",
            forwarded.display()
        ),
    )
    .unwrap();
    let rejected = r#"lumen_flowlogs_config_reloads_total{result="rejected"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !has(rejected)(&c.scrape(PORT)) {
        assert!(Instant::now() < deadline, "the invalid change was not rejected");
        std::thread::sleep(Duration::from_millis(100));
    }
    denied_syns(&c, 46_200, 1);
    assert_eq!(wait_lines(&forwarded, 46_200..46_201, 1).len(), 1, "drops still runs");

    // Every record written, none dropped; the same count in ServerStatus.
    let body = c.scrape(PORT);
    // Port 8080 only: the six flows of the three SYNs sent since it began.
    assert!(
        has(r#"lumen_exporter_exported_total{exporter="verdicts"} 6"#)(&body),
        "{body}"
    );
    assert_eq!(
        series(&body, "lumen_exporter_dropped_total")
            .iter()
            .filter(|l| !l.ends_with(" 0"))
            .count(),
        0,
        "{body}"
    );
    assert!(
        has(r#"lumen_lost_events_total{consumer="exporter",stage="flow_store"} 0"#)(&body),
        "{body}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dropped = rt.block_on(async {
        let channel = lumen_observer::server::connect_unix(&c.grpc_socket()).await.unwrap();
        let response = lumen_proto::observer::observer_client::ObserverClient::new(channel)
            .server_status(lumen_proto::observer::ServerStatusRequest {})
            .await
            .unwrap();
        response
            .metadata()
            .get(lumen_proto::EXPORTER_DROPPED_HEADER)
            .map(|v| v.to_str().unwrap().to_string())
    });
    assert_eq!(
        dropped.as_deref(),
        Some("0"),
        "ServerStatus (lumen status) reports the export's drops"
    );
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn an_invalid_flow_logs_file_stops_the_observer_before_it_changes_anything() {
    let c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    let config = c.dir.join("flowlogs.yaml");
    std::fs::write(
        &config,
        "flowLogs:\n  - name: drops\n    filePath: /tmp/a.log\n  - name: drops\n    filePath: /tmp/b.log\n",
    )
    .unwrap();
    let out = c
        .observer_command(ALLOW_HTTP, &["--flowlogs-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "--flowlogs-config {}: duplicated flowlog name drops",
            config.display()
        )),
        "{err}"
    );
    assert!(!c.pin_dir().exists(), "the datapath was not loaded");
}

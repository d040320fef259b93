//! `lumen status`, `lumen list nodes` and `lumen observe` against a relay in
//! front of a real three-node cluster, each node guarded by its own
//! `lumen-observer` process: the relay answers for the whole cluster in the
//! same formats an observer uses, and when one observer is killed mid-stream
//! a follower is told, keeps receiving the other nodes' flows, and gets the
//! node back when its observer returns. Needs root: run `scripts/test.sh`.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use lumen_observer::identity::{IdentityAllocator, Labels};
use lumen_observer::testing::{self, ClusterSpec};
use lumen_relay::{RelayConfig, RelayHandle};
use serde_json::{json, Value};
use support::{lumen, observer_binary, Traffic};

const MAX_FLOWS: u64 = 1000;

/// Pod `i` (a, b, c) on node `i` (n1, n2, n3), labelled app=<pod>.
const PODS: [(&str, &str, Ipv4Addr); 3] = [
    ("a", "n1", Ipv4Addr::new(10, 3, 0, 1)),
    ("b", "n2", Ipv4Addr::new(10, 3, 0, 2)),
    ("c", "n3", Ipv4Addr::new(10, 3, 0, 3)),
];

/// b takes port 80 from a; c selects itself and admits b only, so a is
/// refused on c's node.
const POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b-in}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: a}}]
      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: c-in}
spec:
  endpointSelector: {matchLabels: {app: c}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: b}}]
      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]
";

/// The shared cluster helper with a `lumen-observer` process per node.
struct Cluster(testing::Cluster);

impl Deref for Cluster {
    type Target = testing::Cluster;

    fn deref(&self) -> &testing::Cluster {
        &self.0
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut testing::Cluster {
        &mut self.0
    }
}

impl Cluster {
    /// Echo servers on port 80 in every pod; the nodes file lists all nodes.
    fn new() -> Cluster {
        let spec = PODS
            .iter()
            .fold(ClusterSpec::new("cli-relay"), |s, (p, n, ip)| s.app_pod(p, n, *ip))
            .policy(POLICY)
            .echo_ports(&[80]);
        Cluster(testing::Cluster::new(spec))
    }

    /// Starts node `n`'s observer process inside the node's netns, without
    /// waiting for it.
    fn spawn(&mut self, n: &str) {
        let max_flows = MAX_FLOWS.to_string();
        self.0
            .spawn_process(n, &observer_binary(), &["--max-flows", &max_flows]);
    }

    fn request(&self, from: &str, to: &str) -> bool {
        self.0.request(from, to, 80)
    }
}

fn identity(app: &str) -> u64 {
    u64::from(IdentityAllocator::default().allocate(&Labels::for_endpoint(
        &BTreeMap::from([("app".to_string(), app.to_string())]),
        "default",
    )))
}

/// `lumen args…`, which must succeed; its stdout.
fn run(args: &[&str]) -> String {
    let (code, out, err) = lumen(args);
    assert_eq!((code, err.as_str()), (0, ""), "lumen {args:?}");
    out
}

/// `lumen observe --last 1000 -o json` against `server`: one line per flow.
fn observe(server: &str) -> Vec<String> {
    let out = run(&["observe", "--server", server, "--last", "1000", "-o", "json"]);
    out.lines().map(str::to_string).collect()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// A connection's first packet (SYN without ACK) as a user reads it: the
/// node that saw it, who to whom (with identities), and what happened.
fn first_packet(f: &Value) -> Option<String> {
    let tcp = &f["l4"]["TCP"];
    if tcp["flags"] != json!({"SYN": true}) {
        return None;
    }
    let end = |side: &str| {
        format!(
            "{}({})",
            f[side]["pod_name"].as_str().unwrap_or("?"),
            f[side]["identity"]
        )
    };
    Some(format!(
        "{} {} -> {}:{} {} {} {}",
        f["node_name"].as_str().unwrap_or("?"),
        end("source"),
        end("destination"),
        tcp["destination_port"],
        f["traffic_direction"].as_str().unwrap_or("?"),
        f["verdict"].as_str().unwrap_or("?"),
        f["drop_reason_desc"].as_str().unwrap_or("-"),
    ))
}

fn first_packets(lines: &[String]) -> Vec<String> {
    let mut all: Vec<String> = lines.iter().filter_map(|l| first_packet(&parse(l))).collect();
    all.sort();
    all
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// `lumen observe --follow -o jsonpb` against the relay (node status events
/// included), read line by line; killed on drop.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<Value>,
    read: Vec<Value>,
    stderr: PathBuf,
}

impl Follow {
    fn start(server: &str, stderr: PathBuf) -> Follow {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lumen"))
            .args(["observe", "--server", server, "--follow", "-o", "jsonpb"])
            .env_remove("LUMEN_SERVER")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(parse(&line)).is_err() {
                    return;
                }
            }
        });
        Follow {
            child,
            lines,
            read: Vec::new(),
            stderr,
        }
    }

    /// Reads until a response satisfies `want` (10 s at most).
    fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.lines.recv_timeout(left).unwrap_or_else(|e| {
                let last: Vec<String> = self.read.iter().rev().take(20).map(Value::to_string).collect();
                panic!(
                    "no {what} ({e}); stderr: {}; last read, newest first:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default(),
                    last.join("\n")
                )
            });
            self.read.push(r.clone());
            if want(&r) {
                return r;
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_is(r: &Value, state: &str, nodes: &[&str]) -> bool {
    r["node_status"]["state_change"] == state && r["node_status"]["node_names"] == json!(nodes)
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn the_cli_reads_a_relay_like_an_observer_and_a_killed_node_comes_back() {
    let mut c = Cluster::new();
    for (_, n, _) in PODS {
        c.spawn(n);
    }
    for (_, n, _) in PODS {
        c.wait_ready(n);
    }
    let (n1, n2, n3) = (c.name("n1"), c.name("n2"), c.name("n3"));
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let n1_api = c.api("n1").to_string();
    let relay = RelayHandle::spawn(RelayConfig::parse_from([
        "lumen-relay",
        "--listen-address",
        &listen,
        "--peer-service",
        &n1_api,
        "--initial-backoff",
        "100ms",
        "--max-backoff",
        "500ms",
        "--dial-timeout",
        "1s",
    ]));
    let relay_server = relay.address.to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, out, _) = lumen(&["status", "--server", &relay_server]);
        if code == 0 && out.contains("Connected Nodes: 3/3\n") {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never had 3 nodes: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // One connection each: a→b allowed, a→c refused by c's node.
    assert!(c.request("a", "b"));
    assert!(!c.request("a", "c"));
    let (a, b, cc) = (identity("a"), identity("b"), identity("c"));
    let expected = [
        format!("{n1} a({a}) -> b({b}):80 EGRESS FORWARDED -"),
        format!("{n1} a({a}) -> c({cc}):80 EGRESS FORWARDED -"),
        format!("{n2} a({a}) -> b({b}):80 INGRESS FORWARDED -"),
        format!("{n3} a({a}) -> c({cc}):80 INGRESS DROPPED POLICY_DENIED"),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    while first_packets(&observe(&relay_server)) != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The connections' last packets (FIN, ACK) settle too.
    std::thread::sleep(Duration::from_millis(300));
    let all = observe(&relay_server);
    assert_eq!(first_packets(&all), expected, "{}", all.join("\n"));
    let times: Vec<SystemTime> = all.iter().map(|l| time(&parse(l)["time"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order across nodes");

    // An observer answers the same query with its own flows only, in the
    // same format: exactly the relay's lines from that node.
    let per_node: BTreeMap<&str, Vec<String>> = PODS
        .iter()
        .map(|(_, n, _)| {
            let name = c.name(n);
            let mine = all
                .iter()
                .filter(|l| parse(l)["node_name"] == name.as_str())
                .cloned()
                .collect();
            (*n, mine)
        })
        .collect();
    assert_eq!(observe(&n1_api), per_node["n1"]);

    // Status sums the nodes; every node is connected.
    let total = all.len() as u64;
    let status = run(&["status", "--server", &relay_server]);
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 5, "{status}");
    assert_eq!(lines[0], format!("Healthcheck (via {relay_server}): Ok"));
    assert_eq!(
        lines[1],
        format!(
            "Current/Max Flows: {total}/3,000 ({:.2}%)",
            total as f64 * 100.0 / (3 * MAX_FLOWS) as f64
        )
    );
    let rate: f64 = lines[2].trim_start_matches("Flows/s: ").parse().unwrap();
    assert!(rate > 0.0 && lines[2] == format!("Flows/s: {rate:.2}"), "{status}");
    assert_eq!(lines[3], "Connected Nodes: 3/3");
    // The nodes' losses, summed: none at this rate.
    assert_eq!(lines[4], "Lost Events: 0 in the kernel ring buffer, 0 by slow clients");

    let table = run(&["list", "nodes", "--server", &relay_server]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows[0],
        ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS", "ADDRESS"],
        "{table}"
    );
    let shown: Vec<[String; 4]> = rows[1..]
        .iter()
        .map(|r| [r[0], r[1], r[4], r[5]].map(str::to_string))
        .collect();
    let want: Vec<[String; 4]> = PODS
        .iter()
        .map(|(_, n, _)| {
            [
                c.name(n),
                "Connected".into(),
                format!("{}/{MAX_FLOWS}", per_node[n].len()),
                c.api(n).to_string(),
            ]
        })
        .collect();
    assert_eq!(shown, want, "{table}");

    // Following through the relay while a→b and b→a go on.
    let mut follow = Follow::start(&relay_server, c.dir.join("follow.stderr"));
    let first = follow.until("a node status", |r| r.get("node_status").is_some());
    assert!(status_is(&first, "NODE_CONNECTED", &[&n1, &n2, &n3]), "{first}");
    // a→b and b→a every 200 ms.
    let (pa, pb) = (c.pods["a"].clone(), c.pods["b"].clone());
    let _traffic = Traffic::start(vec![(pa.clone(), pb.clone()), (pb, pa)], Duration::from_millis(700));
    follow.until("a flow from n2", |r| r["flow"]["node_name"] == n2.as_str());

    // n2's observer dies; its datapath stays pinned. Its stream breaks off
    // (the connection is gone, no gRPC status): the relay says at once that
    // n2 is unavailable, and why.
    c.kill("n2");
    assert!(c.pin_dir("n2").exists());
    let gone = follow.until("n2's status", |r| {
        r["node_status"]["node_names"] == json!([n2.as_str()])
    });
    assert_eq!(gone["node_status"]["state_change"], "NODE_UNAVAILABLE", "{gone}");
    let message = gone["node_status"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with(&format!("{}: connection lost (", c.api("n2"))),
        "{gone}"
    );
    // The stream goes on with the other nodes.
    let from_n1 = follow.until("a connection seen on n1", |r| {
        r["flow"]["node_name"] == n1.as_str() && first_packet(&r["flow"]).is_some()
    });
    let on_n1 = [
        format!("{n1} a({a}) -> b({b}):80 EGRESS FORWARDED -"),
        format!("{n1} b({b}) -> a({a}):80 INGRESS FORWARDED -"),
    ];
    assert!(on_n1.contains(&first_packet(&from_n1["flow"]).unwrap()), "{from_n1}");
    // Status counts n2 out and names it.
    let status = run(&["status", "--server", &relay_server]);
    assert!(
        status.contains(&format!("Connected Nodes: 2/3\nUnavailable Nodes: {n2}\n")),
        "{status}"
    );

    // Back with the same configuration, it takes over its pinned datapath
    // and the follower hears from it again.
    c.spawn("n2");
    c.wait_ready("n2");
    let back = follow.until("n2 connected", |r| r.get("node_status").is_some());
    assert!(status_is(&back, "NODE_CONNECTED", &[&n2]), "{back}");
    let resumed = follow.until("n2's flows", |r| {
        r["flow"]["node_name"] == n2.as_str() && first_packet(&r["flow"]).is_some()
    });
    let want = [
        format!("{n2} a({a}) -> b({b}):80 INGRESS FORWARDED -"),
        format!("{n2} b({b}) -> a({a}):80 EGRESS FORWARDED -"),
    ];
    assert!(want.contains(&first_packet(&resumed["flow"]).unwrap()), "{resumed}");
}

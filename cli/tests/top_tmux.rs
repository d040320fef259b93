//! `lumen top` in a real terminal: tmux runs it against a relay of a
//! three-node testbed cluster with live traffic, keys are sent to it, and
//! what the pane shows is read back: the workloads, the connection a policy
//! drops and that policy, a filter, a drill-down to flows, pause, and the
//! relay going away and coming back.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use lumen_observer::testing::{self, ClusterSpec};
use lumen_relay::{RelayConfig, RelayHandle};

/// Pod `i` (a, b, c) on node `i` (n1, n2, n3), labelled app=<pod>.
const PODS: [(&str, &str, Ipv4Addr); 3] = [
    ("a", "n1", Ipv4Addr::new(10, 4, 0, 1)),
    ("b", "n2", Ipv4Addr::new(10, 4, 0, 2)),
    ("c", "n3", Ipv4Addr::new(10, 4, 0, 3)),
];

/// c admits b only: a's requests to c are dropped on c's node.
const POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: c-in}
spec:
  endpointSelector: {matchLabels: {app: c}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: b}}]
      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]
";

/// A tmux session running one command, killed when dropped.
struct Tmux {
    session: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let session = format!("lumen-top-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "160", "-y", "48", command])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux (scripts/setup.sh installs it)");
        assert!(status.success(), "tmux new-session: {status}");
        Tmux { session }
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Types `text` as it is (no key names, nothing taken for an option).
    fn text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, "-l", "--", text])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows everything in `want`; the screen.
    fn wait_for(&self, what: &str, want: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if want.iter().all(|w| screen.contains(w)) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{what}: never showed {want:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.session])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn relay(listen: &str, peer_service: &str) -> RelayHandle {
    RelayHandle::spawn(RelayConfig::parse_from([
        "lumen-relay",
        "--listen-address",
        listen,
        "--peer-service",
        peer_service,
        "--initial-backoff",
        "100ms",
        "--max-backoff",
        "500ms",
    ]))
}

#[test]
#[ignore = "needs root, a BPF-capable kernel and tmux: run scripts/test.sh"]
fn top_in_a_terminal_shows_the_cluster_follows_the_keys_and_survives_the_relay() {
    let spec = PODS
        .iter()
        .fold(ClusterSpec::new("cli-top"), |s, (p, n, ip)| s.app_pod(p, n, *ip))
        .policy(POLICY)
        .echo_ports(&[80]);
    let mut c = testing::Cluster::new(spec);
    c.start_all();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let n1_api = c.api("n1").to_string();
    let mut relay_handle = Some(relay(&listen, &n1_api));
    // a requests b and c every 200 ms.
    let a = c.pods["a"].clone();
    let traffic = support::Traffic::start(
        vec![(a.clone(), c.pods["b"].clone()), (a, c.pods["c"].clone())],
        Duration::from_millis(300),
    );
    let top = Tmux::start(&format!(
        "env NO_COLOR=1 {} top --server {listen}",
        env!("CARGO_BIN_EXE_lumen")
    ));

    // Workloads: the three apps, the relay and its three nodes.
    let screen = top.wait_for(
        "workloads",
        &[
            "(relay) nodes 3/3",
            "default        a ",
            "default        b ",
            "default        c ",
        ],
    );
    assert!(screen.contains(" 1 Workloads "), "{screen}");

    // Connections: a to c is dropped, a to b forwarded.
    top.keys(&["2"]);
    let screen = top.wait_for(
        "connections",
        &["default/a", "default/c", "80/TCP", "DROPPED", "FORWARDED"],
    );
    let dropped = screen
        .lines()
        .find(|l| l.contains("default/a") && l.contains("default/c"))
        .unwrap_or_else(|| panic!("no a → c row:\n{screen}"));
    assert!(dropped.contains("DROPPED"), "{dropped}");

    // Drops: the reason, and the policy that made c deny by default.
    top.keys(&["3"]);
    top.wait_for(
        "drops",
        &[
            "POLICY_DENIED",
            "CiliumNetworkPolicy default/c-in",
            "destination default/c",
        ],
    );

    // A filter with lumen observe's flags: only drops remain.
    top.keys(&["/"]);
    top.text("--verdict DROPPED");
    top.keys(&["Enter"]);
    top.keys(&["2"]);
    let screen = top.wait_for("filtered", &["filter --verdict DROPPED", "default/c"]);
    let rows: Vec<&str> = screen.lines().filter(|l| l.starts_with("default/")).collect();
    assert!(
        rows.iter().all(|r| r.contains("default/c")),
        "only the dropped connection passes the filter:\n{screen}"
    );

    // A bad filter is refused in the prompt, naming what is wrong.
    top.keys(&["/"]);
    top.text(" --verdict NEVER");
    top.keys(&["Enter"]);
    top.wait_for("bad filter", &["NEVER"]);
    top.keys(&["Escape"]);

    // Drill down into the connection: its flows, dropped, with the breadcrumb.
    top.keys(&["Enter"]);
    let screen = top.wait_for("drill down", &["› default/a → default/c 80/TCP", "DROPPED"]);
    assert!(screen.contains("default/a"), "{screen}");
    top.keys(&["Escape"]);

    // Pause: the header says so and counts what arrives meanwhile.
    top.keys(&["Space"]);
    top.wait_for("paused", &["PAUSED (+"]);
    top.keys(&["Space"]);

    // The relay goes away: the screen says so and keeps what it showed.
    drop(relay_handle.take());
    let screen = top.wait_for("relay gone", &["DISCONNECTED"]);
    assert!(screen.contains("default/c"), "what was shown stays:\n{screen}");
    relay_handle = Some(relay(&listen, &n1_api));
    let deadline = Instant::now() + Duration::from_secs(20);
    while top.screen().contains("DISCONNECTED") {
        assert!(Instant::now() < deadline, "never reconnected:\n{}", top.screen());
        std::thread::sleep(Duration::from_millis(100));
    }

    // --once: one snapshot of a tab, for scripts, as a table and as JSON;
    // the traffic stops first, so that both ends of every SYN are stored.
    drop(traffic);
    std::thread::sleep(Duration::from_millis(500));
    let once = |args: &[&str]| {
        let mut all = vec!["top", "--once", "--server", &listen];
        all.extend_from_slice(args);
        let (code, out, err) = support::lumen(&all);
        assert_eq!((code, err.as_str()), (0, ""), "lumen {all:?}");
        out
    };
    let table = once(&["--tab", "drops", "-o", "table"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0], "BY           WHAT                              COUNT  PER s",
        "{table}"
    );
    assert!(lines[1].starts_with("reason       POLICY_DENIED "), "{table}");
    assert!(
        lines[2].starts_with("policy       CiliumNetworkPolicy default/c-in "),
        "{table}"
    );
    assert!(lines[3].starts_with("destination  default/c "), "{table}");
    let json: serde_json::Value = serde_json::from_str(&once(&["--tab", "connections", "-o", "json"])).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let a_to_c = rows
        .iter()
        .find(|r| r["source"]["name"] == "a" && r["destination"]["name"] == "c")
        .unwrap_or_else(|| panic!("no a → c row: {json}"));
    assert_eq!((&a_to_c["port"], &a_to_c["protocol"]), (&80.into(), &"TCP".into()));
    // Every SYN is seen twice, as Hubble reports it: leaving a (forwarded:
    // a's node has no egress policy) and dropped at c's node.
    assert!(a_to_c["dropped"].as_u64().unwrap() > 0, "{a_to_c}");
    assert_eq!(a_to_c["forwarded"], a_to_c["dropped"], "{a_to_c}");
    assert_eq!(a_to_c["last_verdict"], "DROPPED");
    assert_eq!(a_to_c["drop_reasons"][0]["key"], "POLICY_DENIED", "{a_to_c}");
    assert_eq!(a_to_c["policies"][0]["key"]["name"], "c-in", "{a_to_c}");
    let a_to_b = rows
        .iter()
        .find(|r| r["source"]["name"] == "a" && r["destination"]["name"] == "b")
        .unwrap_or_else(|| panic!("no a → b row: {json}"));
    assert_eq!(
        (&a_to_b["dropped"], &a_to_b["last_verdict"]),
        (&0.into(), &"FORWARDED".into())
    );

    top.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while top.alive() {
        assert!(Instant::now() < deadline, "q did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(relay_handle);
}

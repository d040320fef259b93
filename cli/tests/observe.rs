//! `lumen observe` and `lumen status` as a user runs them: golden output of
//! every format on fixed flows read with `--input-file`, and against a real
//! observer on the testbed.
//!
//! Over 600 lines because the golden outputs are written out in full; the
//! cases share the fixture and the `observe_file` helper.

mod support;

use support::{lumen, temp};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lumen_observer::identity::{IdentityAllocator, Labels};
use lumen_observer::{ObserverConfig, ObserverHandle};
use lumen_testbed::{PodSpec, Testbed};

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flows.jsonl")
        .display()
        .to_string()
}

fn observe_file(extra: &[&str]) -> String {
    let file = fixture();
    let mut args = vec!["observe", "--input-file", file.as_str()];
    args.extend_from_slice(extra);
    let (code, out, err) = lumen(&args);
    assert_eq!(code, 0, "{err}");
    out
}

const COMPACT: &str = "\
Nov 25 01:46:56.162: default/frontend:60060 (ID:2010621) -> default/backend:8080 (ID:10943975) to-endpoint FORWARDED (TCP Flags: SYN)
Nov 25 01:46:57.005: default/frontend:60062 (ID:2010621) -> default/backend:9090 (ID:10943975) Policy denied DROPPED (TCP Flags: SYN)
Nov 25 01:46:58.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(0) 12
Dec  1 09:05:03.000: default/frontend:41000 (ID:2010621) <- default/backend:53 (ID:10943975) from-endpoint FORWARDED (UDP)
Dec  1 09:05:04.250: 1.1.1.1 (world) <> default/backend (ID:10943975) to-endpoint FORWARDED (ICMPv4 EchoRequest)
";

#[test]
fn compact_is_the_default_output() {
    assert_eq!(observe_file(&[]), COMPACT);
    assert_eq!(observe_file(&["-o", "compact"]), COMPACT);
}

#[test]
fn dict_output() {
    assert_eq!(
        observe_file(&["-o", "dict", "--first", "3"]),
        "  TIMESTAMP: Nov 25 01:46:56.162
     SOURCE: default/frontend:60060
DESTINATION: default/backend:8080
       TYPE: to-endpoint
    VERDICT: FORWARDED
    SUMMARY: TCP Flags: SYN
------------
  TIMESTAMP: Nov 25 01:46:57.005
     SOURCE: default/frontend:60062
DESTINATION: default/backend:9090
       TYPE: Policy denied
    VERDICT: DROPPED
    SUMMARY: TCP Flags: SYN
------------
  TIMESTAMP: Nov 25 01:46:58.000
     SOURCE: HUBBLE_RING_BUFFER
       TYPE: EVENTS LOST
    VERDICT: -
    SUMMARY: CPU(0) - 12
"
    );
}

#[test]
fn table_output() {
    assert_eq!(
        observe_file(&["-o", "table"]),
        "\
TIMESTAMP             SOURCE                   DESTINATION              TYPE            VERDICT     SUMMARY
Nov 25 01:46:56.162   default/frontend:60060   default/backend:8080     to-endpoint     FORWARDED   TCP Flags: SYN
Nov 25 01:46:57.005   default/frontend:60062   default/backend:9090     Policy denied   DROPPED     TCP Flags: SYN
Nov 25 01:46:58.000   HUBBLE_RING_BUFFER       -                        EVENTS LOST     -           CPU(0) - 12
Dec  1 09:05:03.000   default/backend:53       default/frontend:41000   from-endpoint   FORWARDED   UDP
Dec  1 09:05:04.250   1.1.1.1                  default/backend          to-endpoint     FORWARDED   ICMPv4 EchoRequest
"
    );
}

#[test]
fn json_and_jsonpb_output() {
    assert_eq!(
        observe_file(&["-o", "json", "--verdict", "DROPPED"]),
        r#"{"time":"2025-11-25T01:46:57.005Z","verdict":"DROPPED","IP":{"source":"10.0.0.1","destination":"10.0.0.2","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":60062,"destination_port":9090,"flags":{"SYN":true}}},"source":{"identity":2010621,"namespace":"default","pod_name":"frontend"},"destination":{"identity":10943975,"namespace":"default","pod_name":"backend"},"Type":"L3_L4","node_name":"node-1","event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","drop_reason_desc":"POLICY_DENIED","is_reply":false}
"#
    );
    assert_eq!(
        observe_file(&["-o", "jsonpb", "--from-ip", "1.1.1.1"]),
        concat!(
            r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"12"},"node_name":"node-1","time":"2025-11-25T01:46:58Z"}"#,
            "\n",
            r#"{"flow":{"time":"2025-12-01T09:05:04.250Z","verdict":"FORWARDED","IP":{"source":"1.1.1.1","destination":"10.0.0.2","ipVersion":"IPv4"},"l4":{"ICMPv4":{"type":8}},"source":{"identity":2},"destination":{"identity":10943975,"namespace":"default","pod_name":"backend"},"Type":"L3_L4","node_name":"node-1","event_type":{"type":4},"traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT"},"node_name":"node-1","time":"2025-12-01T09:05:04.250Z"}"#,
            "\n"
        )
    );
}

#[test]
fn jsonpb_output_reads_back_as_the_same_flows() {
    let dir = std::env::temp_dir().join(format!("lumen-observe-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = observe_file(&["-o", "jsonpb"]);
    assert_eq!(first.lines().count(), 5);
    let file = dir.join("flows.jsonl");
    std::fs::write(&file, &first).unwrap();
    let path = file.to_str().unwrap();
    for (output, expected) in [("jsonpb", first.clone()), ("compact", COMPACT.to_string())] {
        let (code, out, err) = lumen(&["observe", "--input-file", path, "-o", output]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(out, expected, "-o {output}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn input_file_is_filtered_like_the_server_would() {
    let lines: Vec<&str> = COMPACT.lines().collect();
    let pick = |idx: &[usize]| idx.iter().map(|i| format!("{}\n", lines[*i])).collect::<String>();
    // Lost events are not flows and pass every filter, as in a stream.
    assert_eq!(observe_file(&["--not", "--pod", "default/frontend"]), pick(&[2, 4]));
    assert_eq!(
        observe_file(&["--to-port", "8080", "--to-port", "41000"]),
        pick(&[0, 2, 3])
    );
    assert_eq!(observe_file(&["--last", "2"]), pick(&[3, 4]));
    assert_eq!(observe_file(&["--first", "1"]), pick(&[0]));
    assert_eq!(
        observe_file(&["--since", "2025-11-25T01:46:57Z", "--until", "2025-12-01T09:05:04Z"]),
        pick(&[1, 2, 3])
    );
    assert_eq!(
        observe_file(&["--type", "drop", "--tcp-flags", "SYN", "--traffic-direction", "ingress"]),
        pick(&[1, 2])
    );
    // CEL, as the servers evaluate it: expressions of one flag list OR.
    assert_eq!(
        observe_file(&[
            "--cel-expression",
            "_flow.l4.TCP.destination_port == 9090u || _flow.l4.UDP.source_port == 53u",
        ]),
        pick(&[1, 2, 3])
    );
    assert_eq!(
        observe_file(&[
            "--cel-expression",
            "_flow.verdict == Verdict.FORWARDED && !has(_flow.source.pod_name)"
        ]),
        pick(&[2, 4])
    );
}

#[test]
fn print_raw_filters_shows_allow_and_deny_lists() {
    let (code, out, _) = lumen(&[
        "observe",
        "--print-raw-filters",
        "--pod",
        "default/web",
        "--verdict",
        "DROPPED",
        "--not",
        "--to-port",
        "53",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "allowlist:\n- '{\"source_pod\":[\"default/web\"],\"verdict\":[\"DROPPED\"]}'\n- '{\"destination_pod\":[\"default/web\"],\"verdict\":[\"DROPPED\"]}'\ndenylist:\n- '{\"destination_port\":[\"53\"]}'\n"
    );
}

#[test]
fn mistakes_are_explained() {
    let (code, _, err) = lumen(&["observe", "--since", "yesterday"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "error: invalid time \"yesterday\": use RFC 3339 (2025-11-25T01:46:56Z) or a duration ago (5m, 1h30m)\n"
        )
    );
    let (code, _, err) = lumen(&["observe", "--server", "unix:///nonexistent/observer.sock"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "error: cannot reach the observer at unix:///nonexistent/observer.sock (is lumen-observer running? try --server or LUMEN_SERVER): No such file or directory (os error 2)\n"
        )
    );
    let (code, _, err) = lumen(&["status", "--server", "unix:///nonexistent/observer.sock"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: cannot reach the observer at unix:///nonexistent/observer.sock"),
        "{err}"
    );
    let (code, _, err) = lumen(&["observe", "--from-ip", "10.0.0.0/33"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "error: invalid filter: invalid CIDR \"10.0.0.0/33\" in source_ip: prefix length out of range\n"
        )
    );
    let (code, _, err) = lumen(&["observe", "--verdict", "LOST"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(
            "error: invalid value for --verdict: \"LOST\" is not a verdict: use one of FORWARDED, DROPPED,"
        ),
        "{err}"
    );
    let (code, _, err) = lumen(&["observe", "--first", "3", "--last", "3"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("error: the argument '--first <N>' cannot be used with '--last <N>'"),
        "{err}"
    );
    let (code, _, err) = lumen(&["observe", "-o", "yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'yaml' for '--output <OUTPUT>'"), "{err}");
    let dir = std::env::temp_dir().join(format!("lumen-observe-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "\n{\"flow\": 3}\n").unwrap();
    let (code, _, err) = lumen(&["observe", "--input-file", bad.to_str().unwrap()]);
    assert_eq!(
        (code, err),
        (
            1,
            format!(
                "error: {}:2: not a flow or GetFlowsResponse: invalid type: integer `3`, expected a map\n",
                bad.display()
            )
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `2026-11-25T03:20:01.123456789Z` → `Nov 25 03:20:01.123`, independently
/// of the code under test.
fn hubble_time(rfc3339: &str) -> String {
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month: usize = rfc3339[5..7].parse().unwrap();
    let day: u32 = rfc3339[8..10].parse().unwrap();
    let frac = rfc3339[19..].trim_end_matches('Z').trim_start_matches('.');
    let millis = format!("{frac:0<3}");
    format!("{} {day:>2} {}.{}", months[month - 1], &rfc3339[11..19], &millis[..3])
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn observe_and_status_against_a_running_observer() {
    let mut tb = Testbed::new().unwrap();
    let node = tb.add_node("n").unwrap();
    let fe = tb
        .add_pod(
            &node,
            PodSpec::new("frontend", "default", Ipv4Addr::new(10, 0, 0, 1)).label("app", "frontend"),
        )
        .unwrap();
    let be = tb
        .add_pod(
            &node,
            PodSpec::new("backend", "default", Ipv4Addr::new(10, 0, 0, 2)).label("app", "backend"),
        )
        .unwrap();
    let dir = temp("observe");
    let endpoints = dir.join("endpoints.yaml");
    let mut text = String::from("endpoints:\n");
    for p in [&fe, &be] {
        text += &format!(
            "  - name: {}\n    namespace: default\n    labels: {{app: {}}}\n    interface: {}\n    ips: [{}]\n",
            p.name, p.name, p.host_ifname, p.ipv4
        );
    }
    std::fs::write(&endpoints, text).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: allow-http}\nspec:\n  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
    )
    .unwrap();
    let mut cfg = ObserverConfig::in_dir(&format!("{}-obs", tb.prefix()), &dir);
    cfg.netns = Some(node.netns.clone());
    cfg.endpoints = Some(endpoints);
    cfg.policy = Some(policy);
    cfg.max_flows = 1000;
    let _pins = support::Pins(cfg.pin_dir());
    let observer = ObserverHandle::spawn(cfg.clone());
    assert!(observer.wait_ready(Duration::from_secs(20)), "observer did not start");

    let _s80 = be.tcp_echo_server(80).unwrap();
    let _s8080 = be.tcp_echo_server(8080).unwrap();
    let backend = |port| SocketAddr::new(be.ipv4.into(), port);
    assert_eq!(
        fe.tcp_request(backend(80), b"ok", Duration::from_secs(3)).unwrap(),
        b"ok"
    );
    assert!(fe
        .tcp_request(backend(8080), b"no", Duration::from_millis(700))
        .is_err());

    let server = format!("unix://{}", cfg.socket.display());
    let query = |output: &str| {
        let (code, out, err) = lumen(&[
            "observe",
            "--server",
            &server,
            "--last",
            "50",
            "--verdict",
            "DROPPED",
            "-o",
            output,
        ]);
        assert_eq!((code, err.as_str()), (0, ""));
        out
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut jsonpb = query("jsonpb");
    while jsonpb.is_empty() {
        assert!(Instant::now() < deadline, "no drop reached the observer's API");
        std::thread::sleep(Duration::from_millis(100));
        jsonpb = query("jsonpb");
    }
    let id = |app: &str| {
        IdentityAllocator::default().allocate(&Labels::for_endpoint(
            &BTreeMap::from([("app".to_string(), app.to_string())]),
            "default",
        ))
    };
    let (fe_id, be_id) = (u64::from(id("frontend")), u64::from(id("backend")));
    let expected: String = jsonpb
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let flow = &v["flow"];
            let sport = &flow["l4"]["TCP"]["source_port"];
            format!(
                "{}: default/frontend:{sport} (ID:{fe_id}) -> default/backend:8080 (ID:{be_id}) Policy denied DROPPED (TCP Flags: SYN) \
                 [no policy allowed it; selected by CiliumNetworkPolicy default/allow-http]\n",
                hubble_time(flow["time"].as_str().unwrap())
            )
        })
        .collect();
    assert_eq!(query("compact"), expected);

    // Following: a drop after the stream started shows up as a new line.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_lumen"))
        .args([
            "observe",
            "--server",
            &server,
            "-f",
            "--verdict",
            "DROPPED",
            "--to-port",
            "8080",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(fe
        .tcp_request(backend(8080), b"again", Duration::from_millis(700))
        .is_err());
    let line = lines.recv_timeout(Duration::from_secs(5)).expect("a followed drop");
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert!(!expected.contains(&line), "{line} was printed before following");
    let rest = line[21..]
        .strip_prefix("default/frontend:")
        .unwrap_or_else(|| panic!("{line}"));
    let (sport, rest) = rest.split_once(' ').unwrap();
    assert!(sport.parse::<u16>().unwrap() >= 1024, "{line}");
    assert_eq!(
        rest,
        format!(
            "(ID:{fe_id}) -> default/backend:8080 (ID:{be_id}) Policy denied DROPPED (TCP Flags: SYN) \
             [no policy allowed it; selected by CiliumNetworkPolicy default/allow-http]"
        )
    );

    let (code, out, err) = lumen(&["status", "--server", &server]);
    assert_eq!((code, err.as_str()), (0, ""));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0], format!("Healthcheck (via {server}): Ok"));
    let current: u64 = lines[1]
        .trim_start_matches("Current/Max Flows: ")
        .split('/')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(current >= 2, "{out}");
    assert_eq!(
        lines[1],
        format!("Current/Max Flows: {current}/1,000 ({:.2}%)", current as f64 / 10.0)
    );
    let rate: f64 = lines[2].trim_start_matches("Flows/s: ").parse().unwrap();
    assert_eq!(lines[2], format!("Flows/s: {rate:.2}"));
    assert_eq!(lines[3], "Connected Nodes: 1/1");
    assert_eq!(lines[4], "Lost Events: 0 in the kernel ring buffer, 0 by slow clients");

    observer.stop().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every filter flag `hubble observe --help` (v1.19.4) lists, with its short
/// form where it has one.
const HUBBLE_FILTER_FLAGS: &[(&str, Option<char>)] = &[
    ("all-namespaces", Some('A')),
    ("cel-expression", None),
    ("cluster", None),
    ("drop-reason-desc", None),
    ("encrypted", None),
    ("fqdn", None),
    ("from-all-namespaces", None),
    ("from-cluster", None),
    ("from-fqdn", None),
    ("from-identity", None),
    ("from-ip", None),
    ("from-label", None),
    ("from-namespace", None),
    ("from-pod", None),
    ("from-port", None),
    ("from-service", None),
    ("from-workload", None),
    ("http-header", None),
    ("http-method", None),
    ("http-path", None),
    ("http-status", None),
    ("http-url", None),
    ("identity", None),
    ("interface", None),
    ("ip", None),
    ("ip-trace-id", None),
    ("ip-version", None),
    ("ipv4", Some('4')),
    ("ipv6", Some('6')),
    ("label", Some('l')),
    ("namespace", Some('n')),
    ("node-label", None),
    ("node-name", None),
    ("not", None),
    ("pod", None),
    ("port", None),
    ("protocol", None),
    ("service", None),
    ("snat-ip", None),
    ("tcp-flags", None),
    ("to-all-namespaces", None),
    ("to-cluster", None),
    ("to-fqdn", None),
    ("to-identity", None),
    ("to-ip", None),
    ("to-label", None),
    ("to-namespace", None),
    ("to-pod", None),
    ("to-port", None),
    ("to-service", None),
    ("to-workload", None),
    ("trace-id", None),
    ("traffic-direction", None),
    ("type", Some('t')),
    ("unencrypted", None),
    ("uuid", None),
    ("verdict", None),
    ("workload", None),
];

/// The other flags of `hubble observe --help` that `lumen observe` takes:
/// selectors, raw filters, formatting, and the rest. (Not taken: the
/// Kubernetes port-forward, basic-auth, timeout and --tls-allow-insecure
/// server flags, and the global --config and --debug.)
const HUBBLE_OTHER_FLAGS: &[(&str, Option<char>)] = &[
    ("all", None),
    ("first", None),
    ("follow", Some('f')),
    ("last", None),
    ("since", None),
    ("until", None),
    ("allowlist", None),
    ("denylist", None),
    ("output", Some('o')),
    ("print-node-name", None),
    ("print-policy-names", None),
    ("time-format", None),
    ("color", None),
    ("ip-translation", None),
    ("numeric", None),
    ("server", None),
    ("tls", None),
    ("tls-ca-cert-files", None),
    ("tls-client-cert-file", None),
    ("tls-client-key-file", None),
    ("tls-server-name", None),
    ("field-mask", None),
    ("input-file", None),
    ("print-raw-filters", None),
    ("silent-errors", Some('s')),
    ("use-default-field-masks", None),
];

#[test]
fn help_lists_every_flag_of_hubble_observe() {
    let (code, help, err) = lumen(&["observe", "--help"]);
    assert_eq!((code, err.as_str()), (0, ""));
    let mut missing = Vec::new();
    for (name, short) in HUBBLE_FILTER_FLAGS.iter().chain(HUBBLE_OTHER_FLAGS) {
        let long = format!("--{name}");
        let listed = help.lines().any(|line| {
            let line = line.trim_start();
            let flags = line.split("  ").next().unwrap_or("");
            let has_long = flags.split([',', ' ', '[', '<', '=']).any(|word| word == long);
            let has_short = short.is_none_or(|c| flags.starts_with(&format!("-{c}, {long}")));
            has_long && has_short
        });
        if !listed {
            missing.push(long);
        }
    }
    assert!(
        missing.is_empty(),
        "missing from lumen observe --help: {missing:?}\n{help}"
    );
    // Flags about data Lumen's flows do not carry yet say so.
    let lines: Vec<&str> = help.lines().collect();
    for name in [
        "--fqdn",
        "--http-status",
        "--to-service",
        "--from-workload",
        "--cluster",
        "--node-label",
    ] {
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {help}"));
        let entry: Vec<&str> = lines[at..]
            .iter()
            .take_while(|l| !l.trim().is_empty())
            .copied()
            .collect();
        assert!(entry.join(" ").contains("yet: matches nothing"), "{entry:?}");
    }
}

#[test]
fn hubble_filter_flags_build_hubbles_filters() {
    let raw = |args: &[&str]| {
        let mut all = vec!["observe", "--print-raw-filters"];
        all.extend_from_slice(args);
        let (code, out, err) = lumen(&all);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
        out
    };
    assert_eq!(
        raw(&["-t", "trace:to-endpoint", "--type", "policy-verdict:3", "-4", "--drop-reason-desc", "POLICY_DENIED"]),
        "allowlist:\n- '{\"event_type\":[{\"type\":4,\"match_sub_type\":true},{\"type\":5,\"match_sub_type\":true,\"sub_type\":3}],\"ip_version\":[\"IPv4\"],\"drop_reason_desc\":[\"POLICY_DENIED\"]}'\n"
    );
    assert_eq!(
        raw(&["--pod", "web", "--from-namespace", "shop", "--not", "--http-status", "5+"]),
        "allowlist:\n- '{\"source_pod\":[\"shop/web\"]}'\n- '{\"source_pod\":[\"shop/\"],\"destination_pod\":[\"web\"]}'\ndenylist:\n- '{\"http_status_code\":[\"5+\"]}'\n"
    );
    assert_eq!(
        raw(&["--cel-expression", "_flow.verdict == 'DROPPED'", "--denylist", "{\"verdict\":[\"AUDIT\"]}"]),
        "allowlist:\n- '{\"experimental\":{\"cel_expression\":[\"_flow.verdict == ''DROPPED''\"]}}'\ndenylist:\n- '{\"verdict\":[\"AUDIT\"]}'\n"
    );
}

#[test]
fn flag_mistakes_are_explained() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--from-ip", "1.1.1.1", "--namespace", "x"],
            "error: filters --from-ip and --namespace cannot be combined\n",
        ),
        (
            &["--type", "trace:to-moon"],
            "error: invalid value for --type: \"to-moon\" is not a trace observation point: use one of to-endpoint, to-proxy, to-host, to-stack, to-overlay, from-endpoint, from-proxy, from-host, from-stack, from-overlay, from-network, to-network, from-crypto, to-crypto, or a number\n",
        ),
        (
            &["--field-mask", "time"],
            "error: -o compact cannot be used with --field-mask: a custom mask is for -o json or -o jsonpb\n",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["observe", "--input-file", "/dev/null"];
        all.extend_from_slice(args);
        let (code, _, err) = lumen(&all);
        assert!(code != 0, "{args:?}");
        assert!(err.starts_with(expected), "{args:?}: {err}");
    }
    let (code, _, err) = lumen(&["observe", "--time-format", "Kitchen"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(
            "error: invalid value 'Kitchen' for '--time-format <FORMAT>': use one of StampMilli, YearMonthDay,"
        ),
        "{err}"
    );
    let (code, _, err) = lumen(&["observe", "--from-everywhere"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: unexpected argument '--from-everywhere' found"),
        "{err}"
    );
}

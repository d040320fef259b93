//! Every `lumen observe` filter flag against live traffic: each must keep
//! some flows, and only flows it describes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lumen_observer::identity::{IdentityAllocator, Labels};
use serde_json::Value;
use support::{lumen, Live};

const RULES: &str = "\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: backend-in
spec:
  endpointSelector:
    matchLabels: {app: backend}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]
    - toPorts: [{ports: [{port: \"53\", protocol: UDP}]}]
";

fn observe(live: &Live, args: &[&str]) -> Vec<Value> {
    let server = live.server();
    let mut all = vec!["observe", "--server", &server, "--all", "-o", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = lumen(&all);
    assert_eq!(code, 0, "lumen {args:?}: {err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// What every flow a filter flag keeps must satisfy.
type Holds = Box<dyn Fn(&Value) -> bool>;

fn port(f: &Value, side: &str) -> u64 {
    let l4 = &f["l4"];
    ["TCP", "UDP", "SCTP"]
        .iter()
        .find_map(|p| l4[p][side].as_u64())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn every_filter_flag_keeps_exactly_the_flows_it_describes() {
    let live = Live::start("flags", RULES);
    let (fe, be, other) = (
        live.pod("frontend").clone(),
        live.pod("backend").clone(),
        live.pod("other").clone(),
    );
    let _http = be.tcp_echo_server(80).unwrap();
    let _alt = be.tcp_echo_server(8080).unwrap();
    let _dns = be.udp_echo_server(53).unwrap();
    let to = |p: u16| SocketAddr::new(be.ipv4.into(), p);
    let (short, long) = (Duration::from_millis(600), Duration::from_secs(3));
    assert_eq!(fe.tcp_request(to(80), b"ok", long).unwrap(), b"ok");
    std::thread::sleep(Duration::from_millis(300));
    let middle = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(300));
    assert!(fe.tcp_request(to(8080), b"no", short).is_err());
    assert!(other.tcp_request(to(80), b"no", short).is_err());
    assert_eq!(fe.udp_request(to(53), b"q", long).unwrap(), b"q");
    assert_eq!(fe.ping(be.ipv4.into(), 1, short).unwrap().received, 0);
    std::thread::sleep(Duration::from_millis(300));

    let backend_id = IdentityAllocator::default().allocate(&Labels::for_endpoint(&be.labels, "default"));
    let node = live.cfg.node_name.clone();
    let pod = |f: &Value, side: &str| f[side]["pod_name"].as_str().unwrap_or("").to_string();
    let cases: Vec<(Vec<String>, Holds)> = vec![
        (
            vec!["--verdict".into(), "DROPPED".into()],
            Box::new(|f| f["verdict"] == "DROPPED"),
        ),
        (
            vec!["--verdict".into(), "FORWARDED".into()],
            Box::new(|f| f["verdict"] == "FORWARDED"),
        ),
        (
            vec!["--from-pod".into(), "default/other".into()],
            Box::new(move |f| pod(f, "source") == "other"),
        ),
        (
            vec![
                "--to-pod".into(),
                "default/backend".into(),
                "--to-port".into(),
                "8080".into(),
            ],
            Box::new(move |f| pod(f, "destination") == "backend" && port(f, "destination_port") == 8080),
        ),
        (
            vec!["--pod".into(), "default/other".into()],
            Box::new(move |f| pod(f, "source") == "other" || pod(f, "destination") == "other"),
        ),
        (
            vec!["--from-label".into(), "app=frontend".into()],
            Box::new(|f| {
                f["source"]["labels"]
                    .as_array()
                    .is_some_and(|l| l.contains(&Value::from("k8s:app=frontend")))
            }),
        ),
        (
            vec!["--to-identity".into(), backend_id.to_string()],
            Box::new(move |f| f["destination"]["identity"] == backend_id),
        ),
        (
            vec!["--from-ip".into(), "10.0.0.3".into()],
            Box::new(|f| f["IP"]["source"] == "10.0.0.3"),
        ),
        (
            vec!["--protocol".into(), "udp".into()],
            Box::new(|f| f["l4"]["UDP"].is_object()),
        ),
        (
            vec!["--protocol".into(), "icmp".into()],
            Box::new(|f| f["l4"]["ICMPv4"].is_object()),
        ),
        (
            vec!["--port".into(), "53".into()],
            Box::new(|f| port(f, "source_port") == 53 || port(f, "destination_port") == 53),
        ),
        (
            vec!["--drop-reason".into(), "POLICY_DENIED".into()],
            Box::new(|f| f["drop_reason_desc"] == "POLICY_DENIED"),
        ),
        (
            vec!["--traffic-direction".into(), "egress".into()],
            Box::new(|f| f["traffic_direction"] == "EGRESS"),
        ),
        (
            vec!["--tcp-flags".into(), "SYN".into()],
            Box::new(|f| f["l4"]["TCP"]["flags"]["SYN"] == true),
        ),
        (
            vec!["--type".into(), "drop".into()],
            Box::new(|f| f["event_type"]["type"] == 1),
        ),
        (
            vec!["-t".into(), "trace:to-endpoint".into()],
            Box::new(|f| f["event_type"]["type"] == 4 && f["event_type"]["sub_type"].as_u64().unwrap_or(0) == 0),
        ),
        (
            vec!["--interface".into(), be.host_ifname.clone()],
            Box::new({
                let ifname = be.host_ifname.clone();
                move |f| f["interface"]["name"] == ifname.as_str()
            }),
        ),
        (
            vec!["--not".into(), "--verdict".into(), "DROPPED".into()],
            Box::new(|f| f["verdict"] != "DROPPED"),
        ),
        (
            vec!["--since".into(), middle.clone()],
            Box::new({
                let m = middle.clone();
                move |f| f["time"].as_str().unwrap() >= m.as_str()
            }),
        ),
        (
            vec!["--until".into(), middle.clone()],
            Box::new({
                let m = middle.clone();
                move |f| f["time"].as_str().unwrap() <= m.as_str()
            }),
        ),
    ];
    let everything = observe(&live, &[]);
    for (args, holds) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let kept = observe(&live, &args);
        assert!(!kept.is_empty(), "{args:?} kept nothing");
        assert!(
            kept.len() < everything.len(),
            "{args:?} kept everything ({})",
            kept.len()
        );
        for f in &kept {
            assert!(holds(f), "{args:?} kept {f}");
        }
        // Everything the flag describes is kept: nothing that holds is left out.
        let should = everything.iter().filter(|f| holds(f)).count();
        assert_eq!(kept.len(), should, "{args:?}");
    }
    // One node: its name keeps every flow, another name none.
    let named = observe(&live, &["--node-name", &node]);
    assert_eq!(named.len(), everything.len());
    assert!(named.iter().all(|f| f["node_name"] == node.as_str()));
    assert!(observe(&live, &["--node-name", "no-such-node"]).is_empty());
}

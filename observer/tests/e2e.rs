//! End to end: the real datapath in the kernel, real namespaces and traffic,
//! the real `lumen-observer` binary. Needs root: run `scripts/test.sh`.
//!
//! Over 600 lines: every test shares one testbed setup at the top; split
//! by topic when the next one is added.

mod support;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumen_observer::counters;
use lumen_observer::endpoint::EndpointSpec;
use support::*;

const ROOT: &str = "needs root and a BPF-capable kernel: run scripts/test.sh";

const FRONTEND: &[(&str, &str)] = &[("app", "frontend")];
const BACKEND: &[(&str, &str)] = &[("app", "backend")];
const OTHER: &[(&str, &str)] = &[("app", "other")];

fn three_pods() -> Cluster {
    cluster(&[("frontend", FRONTEND), ("backend", BACKEND), ("other", OTHER)])
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn without_policy_ping_tcp_and_udp_pass_and_are_reported() {
    let _ = ROOT;
    let mut c = three_pods();
    c.start_observer("", &[]);
    let fe = c.pod("frontend").clone();
    let be = c.pod("backend").clone();
    let _tcp = be.tcp_echo_server(80).unwrap();
    let _udp = be.udp_echo_server(53).unwrap();

    for v6 in [false, true] {
        let src = c.addr("frontend", v6, 0).ip();
        let dst = c.addr("backend", v6, 0).ip();
        assert_eq!(fe.ping(dst, 2, LONG).unwrap().received, 2, "ping {dst}");
        assert_eq!(
            fe.tcp_request(c.addr("backend", v6, 80), b"hello", LONG).unwrap(),
            b"hello"
        );
        assert_eq!(
            fe.udp_request(c.addr("backend", v6, 53), b"query", LONG).unwrap(),
            b"query"
        );

        let icmp = if v6 { 58 } else { 1 };
        let ping = c.wait_flow(|e| flow_is(e, "INGRESS", src, dst, icmp, 0) && e["ct_state"] == "new");
        assert_eq!(ping["verdict"], "FORWARDED");
        assert_eq!(ping["icmp_type"], if v6 { 128 } else { 8 });

        for (dir, point) in [("EGRESS", "FROM_ENDPOINT"), ("INGRESS", "TO_ENDPOINT")] {
            let syn = c.wait_flow(|e| flow_is(e, dir, src, dst, 6, 80) && e["ct_state"] == "new");
            assert_eq!(syn["verdict"], "FORWARDED");
            assert_eq!(syn["observation_point"], point);
            assert_eq!(syn["tcp_flag_names"], serde_json::json!(["SYN"]));
            assert_eq!(syn["source_identity"], c.identity("frontend"));
            assert_eq!(syn["destination_identity"], c.identity("backend"));
            assert_eq!(syn["source_endpoint"], "default/frontend");
            assert_eq!(syn["destination_endpoint"], "default/backend");
            assert_eq!(syn["ip_version"], if v6 { 6 } else { 4 });
            assert_eq!(syn["rule_id"], 0);

            let udp = c.wait_flow(|e| flow_is(e, dir, src, dst, 17, 53));
            assert_eq!(udp["verdict"], "FORWARDED");
            assert_eq!(udp["ct_state"], "new");
            assert_eq!(udp["is_reply"], false);
        }
        let synack = c.wait_flow(|e| {
            flow_is(e, "EGRESS", dst, src, 6, e["destination_port"].as_u64().unwrap()) && e["source_port"] == 80
        });
        assert_eq!(synack["is_reply"], true);
        assert_eq!(synack["ct_state"], "reply");
        assert_eq!(synack["tcp_flag_names"], serde_json::json!(["SYN", "ACK"]));
        let udp_reply =
            c.wait_flow(|e| e["source_port"] == 53 && e["source"] == dst.to_string() && e["direction"] == "EGRESS");
        assert_eq!(udp_reply["is_reply"], true);
        assert_eq!(udp_reply["verdict"], "FORWARDED");
    }
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn allow_only_tcp_80_from_frontend_to_backend() {
    let mut c = three_pods();
    c.start_observer(ALLOW_HTTP, &[]);
    let be = c.pod("backend").clone();
    let _s80 = be.tcp_echo_server(80).unwrap();
    let _s8080 = be.tcp_echo_server(8080).unwrap();

    for v6 in [false, true] {
        let (fe, other) = (c.pod("frontend").clone(), c.pod("other").clone());
        assert_eq!(fe.tcp_request(c.addr("backend", v6, 80), b"ok", LONG).unwrap(), b"ok");
        assert!(fe.tcp_request(c.addr("backend", v6, 8080), b"no", SHORT).is_err());
        assert!(other.tcp_request(c.addr("backend", v6, 80), b"no", SHORT).is_err());

        let (fe_ip, be_ip) = (c.addr("frontend", v6, 0).ip(), c.addr("backend", v6, 0).ip());
        let other_ip = c.addr("other", v6, 0).ip();
        let allowed = c.wait_flow(|e| flow_is(e, "INGRESS", fe_ip, be_ip, 6, 80) && e["ct_state"] == "new");
        assert_eq!(allowed["verdict"], "FORWARDED");
        assert_eq!(allowed["rule"], "allow-http");
        assert_eq!(
            allowed["rule_id"],
            lumen_policy::compile::rule_id_candidate("CiliumNetworkPolicy/default/allow-http", 2, 0)
        );
        // The reply of the allowed connection passes without a policy lookup.
        let reply =
            c.wait_flow(|e| e["direction"] == "EGRESS" && e["source"] == be_ip.to_string() && e["source_port"] == 80);
        assert_eq!(reply["verdict"], "FORWARDED");
        assert_eq!(reply["ct_state"], "reply");

        let wrong_port = c.wait_flow(|e| flow_is(e, "INGRESS", fe_ip, be_ip, 6, 8080));
        assert_eq!(wrong_port["verdict"], "DROPPED");
        assert_eq!(wrong_port["drop_reason"], 133);
        assert_eq!(wrong_port["drop_reason_desc"], "POLICY_DENIED");
        assert_eq!(wrong_port["observation_point"], "TO_ENDPOINT");
        assert_eq!(wrong_port["source_identity"], c.identity("frontend"));

        let wrong_peer = c.wait_flow(|e| flow_is(e, "INGRESS", other_ip, be_ip, 6, 80));
        assert_eq!(wrong_peer["verdict"], "DROPPED");
        assert_eq!(wrong_peer["drop_reason"], 133);
        assert_eq!(wrong_peer["source_identity"], c.identity("other"));
        // The sender's side is not enforced: its egress event says FORWARDED.
        let sent = c.wait_flow(|e| flow_is(e, "EGRESS", other_ip, be_ip, 6, 80));
        assert_eq!(sent["verdict"], "FORWARDED");
    }
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn explicit_deny_beats_allow() {
    let mut c = three_pods();
    c.start_observer(
        &[
            cnp(
                "allow-frontend",
                "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n",
            ),
            cnp(
                "deny-http",
                "  endpointSelector: {matchLabels: {app: backend}}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
            ),
        ]
        .join("---\n"),
        &[],
    );
    let be = c.pod("backend").clone();
    let _s80 = be.tcp_echo_server(80).unwrap();
    let _s81 = be.tcp_echo_server(81).unwrap();
    let fe = c.pod("frontend").clone();
    for v6 in [false, true] {
        assert_eq!(fe.tcp_request(c.addr("backend", v6, 81), b"ok", LONG).unwrap(), b"ok");
        assert!(fe.tcp_request(c.addr("backend", v6, 80), b"no", SHORT).is_err());
        let (fe_ip, be_ip) = (c.addr("frontend", v6, 0).ip(), c.addr("backend", v6, 0).ip());
        let denied = c.wait_flow(|e| flow_is(e, "INGRESS", fe_ip, be_ip, 6, 80));
        assert_eq!(denied["verdict"], "DROPPED");
        assert_eq!(denied["drop_reason"], 181);
        assert_eq!(denied["drop_reason_desc"], "POLICY_DENY");
        assert_eq!(denied["rule"], "deny-http");
        let allowed = c.wait_flow(|e| flow_is(e, "INGRESS", fe_ip, be_ip, 6, 81) && e["ct_state"] == "new");
        assert_eq!(allowed["verdict"], "FORWARDED");
        assert_eq!(allowed["rule"], "allow-frontend");
    }
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn restart_keeps_connections_and_never_lets_denied_traffic_through() {
    let mut c = three_pods();
    let rules = format!(
        "{ALLOW_HTTP}---\n{}",
        cnp(
            "deny-other",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: other}}]\n"
        )
    );
    c.start_observer(&rules, &[]);
    let be = c.pod("backend").clone();
    let _http = be.tcp_echo_server(80).unwrap();
    let probe_sink = be.udp_echo_server(5353).unwrap();
    let fe = c.pod("frontend").clone();
    let mut conn = fe.tcp_connect(c.addr("backend", false, 80), LONG).unwrap();
    conn.set_read_timeout(Some(LONG)).unwrap();
    let mut echo = |msg: &[u8]| {
        conn.write_all(msg).unwrap();
        let mut buf = vec![0; msg.len()];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(buf, msg);
    };
    echo(b"before");

    // Probe the deny continuously, over both families, through the restart.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let other = c.pod("other").clone();
    let targets = [c.addr("backend", false, 5353), c.addr("backend", true, 5353)];
    let prober = std::thread::spawn({
        let (stop, sent) = (stop.clone(), sent.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                for t in targets {
                    sent.fetch_add(other.udp_send(t, b"probe", 20).unwrap(), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    c.kill_observer();
    std::thread::sleep(Duration::from_millis(300));
    echo(b"while the observer is down");
    c.start_observer(&rules, &[]);
    echo(b"after restart");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();

    assert!(sent.load(Ordering::Relaxed) > 1000, "the probe ran");
    assert_eq!(probe_sink.accepted(), 0, "denied datagrams reached the backend");
    // The new observer names the deciding rule of what it drops.
    let other_ip = c.addr("other", false, 0).ip();
    let be_ip = c.addr("backend", false, 0).ip();
    let dropped = c.wait_flow(|e| flow_is(e, "INGRESS", other_ip, be_ip, 17, 5353));
    assert_eq!(dropped["drop_reason"], 181);
    assert_eq!(dropped["rule"], "deny-other");
}

/// Conntrack entries outlive the observer and carry the policy revision they
/// were decided under. A restarted observer continues past the last revision
/// committed, so an established connection that its policy no longer allows
/// is decided again and dropped, not waved through as decided.
#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn a_restarted_observer_decides_established_connections_again_under_its_policy() {
    let mut c = three_pods();
    c.start_observer(ALLOW_HTTP, &[]);
    let be = c.pod("backend").clone();
    let _http = be.tcp_echo_server(80).unwrap();
    let fe = c.pod("frontend").clone();
    let mut conn = fe.tcp_connect(c.addr("backend", false, 80), LONG).unwrap();
    conn.set_read_timeout(Some(SHORT)).unwrap();
    let mut buf = [0; 6];
    conn.write_all(b"before").unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"before");

    c.kill_observer();
    let only_8080 = cnp(
        "allow-http",
        "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n",
    );
    c.start_observer(&only_8080, &[]);
    conn.write_all(b"after!").unwrap();
    assert!(
        conn.read_exact(&mut buf).is_err(),
        "the connection went on under the previous observer's policy"
    );
    let (fe_ip, be_ip) = (c.addr("frontend", false, 0).ip(), c.addr("backend", false, 0).ip());
    let dropped = c.wait_flow(|e| flow_is(e, "INGRESS", fe_ip, be_ip, 6, 80) && e["drop_reason"] == 133);
    assert_eq!(dropped["drop_reason"], 133);
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn ring_buffer_overflow_is_counted_exactly() {
    let mut c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    c.start_observer("", &["--ring-buffer-bytes", "4096", "--monitor-aggregation", "none"]);
    let fe = c.pod("frontend").clone();
    let sent = fe.udp_send(c.addr("backend", false, 9), b"x", 20_000).unwrap();
    assert_eq!(sent, 20_000);

    // Wait until the reader has caught up with the kernel's counters.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (received, lost_reported, kernel) = loop {
        let kernel = counters::event_counters(&c.pin_dir()).unwrap();
        let events = c.events();
        let received = events.iter().filter(|e| e["kind"] == "flow").count() as u64;
        let lost: u64 = events
            .iter()
            .filter(|e| e["kind"] == "lost")
            .map(|e| e["count"].as_u64().unwrap())
            .sum();
        if (received + kernel.lost == kernel.emitted && lost == kernel.lost) || Instant::now() > deadline {
            break (received, lost, kernel);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        kernel.emitted >= 40_000,
        "two events per datagram at aggregation none: {kernel:?}"
    );
    assert!(kernel.lost > 0, "a 4 KiB ring buffer must overflow: {kernel:?}");
    assert_eq!(received, kernel.emitted - kernel.lost, "{kernel:?}");
    assert_eq!(lost_reported, kernel.lost);
    let lost_event = c.events().into_iter().find(|e| e["kind"] == "lost").unwrap();
    assert_eq!(lost_event["source"], "PERF_EVENT_RING_BUFFER");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn endpoints_can_be_added_and_removed_at_runtime() {
    let mut c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    let late =
        c.tb.add_pod(
            &c.node,
            lumen_testbed::PodSpec::new("late", "default", "10.0.0.9".parse().unwrap()).label("app", "late"),
        )
        .unwrap();
    c.start_observer(ALLOW_HTTP, &[]);
    let be = c.pod("backend").clone();
    let _s = be.tcp_echo_server(80).unwrap();
    // Not an endpoint yet: unknown to the ipcache, so the backend sees world.
    assert!(late.tcp_request(c.addr("backend", false, 80), b"x", SHORT).is_err());
    let world = c.wait_flow(|e| e["source"] == "10.0.0.9" && e["direction"] == "INGRESS");
    assert_eq!(world["source_identity"], 2);
    assert_eq!(world["drop_reason"], 133);

    let spec = EndpointSpec {
        name: "late".into(),
        namespace: "default".into(),
        labels: [("app".to_string(), "frontend".to_string())].into(),
        interface: Some(late.host_ifname.clone()),
        ips: vec!["10.0.0.9".parse().unwrap()],
        ports: vec![],
    };
    let Response::Endpoint { endpoint } = c.call(Request::AddEndpoint { endpoint: spec.clone() }).unwrap() else {
        panic!("add failed")
    };
    assert_eq!(endpoint.spec, spec);
    assert_eq!(endpoint.origin, "runtime");
    // Labelled app=frontend now: allowed, and seen from its own interface too.
    assert_eq!(
        late.tcp_request(c.addr("backend", false, 80), b"x", LONG).unwrap(),
        b"x"
    );
    let own = c.wait_flow(|e| e["source"] == "10.0.0.9" && e["direction"] == "EGRESS");
    assert_eq!(own["source_endpoint"], "default/late");
    assert_eq!(own["endpoint_id"], spec.endpoint_id());

    // A duplicate IP is refused and changes nothing.
    let mut dup = spec.clone();
    dup.name = "dup".into();
    dup.interface = None;
    let Response::Error { error } = c.call(Request::AddEndpoint { endpoint: dup }).unwrap() else {
        panic!()
    };
    assert_eq!(error, "ip 10.0.0.9 of default/dup is already used by another endpoint");
    let Response::Endpoints { endpoints } = c.call(Request::ListEndpoints).unwrap() else {
        panic!()
    };
    let names: Vec<String> = endpoints.iter().map(|e| e.spec.key()).collect();
    assert_eq!(names, vec!["default/backend", "default/frontend", "default/late"]);

    let ok = c
        .call(Request::DeleteEndpoint {
            namespace: "default".into(),
            name: "late".into(),
        })
        .unwrap();
    assert_eq!(ok, Response::Ok);
    assert!(late.tcp_request(c.addr("backend", false, 80), b"x", SHORT).is_err());
    let Response::Error { error } = c
        .call(Request::DeleteEndpoint {
            namespace: "default".into(),
            name: "backend".into(),
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(error.starts_with("endpoint default/backend comes from "), "{error}");
}

fn observer_error(c: &Cluster, rules: &str, extra: &[&str]) -> String {
    let out = c.observer_command(rules, extra).output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn bad_input_and_missing_prerequisites_are_named() {
    let c = cluster(&[("frontend", FRONTEND)]);
    let policy = c.policy_file().display().to_string();
    let err = observer_error(
        &c,
        &cnp(
            "a",
            "  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"70000\"}]}]\n",
        ),
        &[],
    );
    assert!(
        err.contains(&format!(
            "error: invalid policy:\n{policy}:8: document 1 (CiliumNetworkPolicy default/a): spec.ingress[0].toPorts[0].ports[0].port: port 70000 is out of range (0-65535)"
        )),
        "{err}"
    );

    std::fs::write(
        c.endpoints_file(),
        "endpoints:\n  - name: ghost\n    interface: nosuchif0\n    ips: [10.0.0.50]\n",
    )
    .unwrap();
    let err = observer_error(&c, "", &[]);
    assert!(
        err.contains("interface nosuchif0 does not exist in this network namespace"),
        "{err}"
    );
    std::fs::write(
        c.endpoints_file(),
        "endpoints:\n  - name: a\n    ips: [10.0.0.1]\n    bogus: 1\n",
    )
    .unwrap();
    let err = observer_error(&c, "", &[]);
    assert!(
        err.contains(&format!(
            "{}:4:5: endpoints[0]: unknown field `bogus`",
            c.endpoints_file().display()
        )),
        "{err}"
    );

    c.write_endpoints();
    let not_bpffs = c.dir.join("not-bpffs");
    let err = observer_error(&c, "", &["--bpffs-root", not_bpffs.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "no BPF filesystem at {}: mount one with `mount -t bpf bpf /sys/fs/bpf`",
            c.dir.display()
        )),
        "{err}"
    );
    let err = observer_error(&c, "", &["--btf-path", "/nonexistent/vmlinux"]);
    assert!(
        err.contains("the kernel has no BTF (/nonexistent/vmlinux is missing)"),
        "{err}"
    );
    let err = observer_error(&c, "", &["--ring-buffer-bytes", "5000"]);
    assert!(err.contains("5000 is not a power of two of at least 4096"), "{err}");
    assert!(!c.pin_dir().exists(), "nothing was pinned by failed starts");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn non_first_fragments_borrow_ports_from_the_first() {
    let mut c = three_pods();
    c.start_observer(
        ALLOW_HTTP
            .replace("port: \"80\", protocol: TCP", "port: \"5000\", protocol: UDP")
            .as_str(),
        &[],
    );
    let be = c.pod("backend").clone();
    let sink = be.udp_echo_server(5000).unwrap();
    let fe = c.pod("frontend").clone();
    // 3000 bytes over a 1500-byte MTU: one datagram in three fragments.
    let big = vec![7u8; 3000];
    assert_eq!(fe.udp_request(c.addr("backend", false, 5000), &big, LONG).unwrap(), big);
    assert_eq!(sink.accepted(), 1);
    let is_frag =
        |e: &serde_json::Value| e["fragment"] == true && e["direction"] == "INGRESS" && e["destination_port"] == 5000;
    c.wait_flow(is_frag);
    assert!(
        c.flows(is_frag).iter().all(|e| e["verdict"] == "FORWARDED"),
        "{}",
        c.dump()
    );
    let other = c.pod("other").clone();
    assert!(other.udp_request(c.addr("backend", false, 5000), &big, SHORT).is_err());
    assert_eq!(sink.accepted(), 1);
    let other_ip = IpAddr::V4(c.pod("other").ipv4);
    let dropped = c.wait_flow(|e| e["source"] == other_ip.to_string() && e["direction"] == "INGRESS");
    assert_eq!(
        (dropped["verdict"].as_str(), dropped["destination_port"].as_u64()),
        (Some("DROPPED"), Some(5000))
    );
    assert_eq!(dropped["fragment"], true);
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn aggregation_level_switches_at_runtime() {
    use lumen_observer::Aggregation;
    let mut c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    c.start_observer("", &["--monitor-aggregation", "max"]);
    let be = c.pod("backend").clone();
    let _s = be.tcp_echo_server(80).unwrap();
    let fe = c.pod("frontend").clone();
    let (fe_ip, be_ip) = (IpAddr::V4(fe.ipv4), IpAddr::V4(be.ipv4));
    let established =
        |e: &serde_json::Value| flow_is(e, "EGRESS", fe_ip, be_ip, 6, 80) && e["ct_state"] == "established";
    let round = |port_hint: &[u8]| {
        assert_eq!(
            fe.tcp_request(c.addr("backend", false, 80), port_hint, LONG).unwrap(),
            port_hint
        )
    };

    round(b"max");
    let first = c.wait_flow(|e| flow_is(e, "EGRESS", fe_ip, be_ip, 6, 80) && e["ct_state"] == "new");
    let port = first["source_port"].clone();
    // At max only open and close are reported: the FIN, not the ACKs or data.
    c.wait_flow(|e| established(e) && e["source_port"] == port);
    std::thread::sleep(Duration::from_millis(100));
    let flags: Vec<_> = c
        .flows(|e| established(e) && e["source_port"] == port)
        .iter()
        .map(|e| e["tcp_flag_names"].clone())
        .collect();
    assert_eq!(flags, vec![serde_json::json!(["FIN", "ACK"])]);

    assert_eq!(
        c.call(Request::SetAggregation {
            level: Aggregation::None
        })
        .unwrap(),
        Response::Ok
    );
    round(b"none");
    let second = c
        .wait_flow(|e| flow_is(e, "EGRESS", fe_ip, be_ip, 6, 80) && e["ct_state"] == "new" && e["source_port"] != port);
    let port = second["source_port"].clone();
    // Every packet now: the handshake ACK, the data and the FIN at least.
    c.wait_flow(|e| {
        established(e) && e["source_port"] == port && e["tcp_flag_names"] == serde_json::json!(["FIN", "ACK"])
    });
    std::thread::sleep(Duration::from_millis(100));
    let n = c.flows(|e| established(e) && e["source_port"] == port).len();
    assert!(n >= 3, "aggregation none reports every packet, got {n}:\n{}", c.dump());
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn events_carry_the_first_bytes_of_the_packet_when_asked() {
    let mut c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    c.start_observer("", &["--capture-bytes", "64"]);
    let be = c.pod("backend").clone();
    let _udp = be.udp_echo_server(53).unwrap();
    let fe = c.pod("frontend").clone();
    assert_eq!(
        fe.udp_request(c.addr("backend", false, 53), b"capture-me", LONG)
            .unwrap(),
        b"capture-me"
    );
    let (fe_ip, be_ip) = (IpAddr::V4(fe.ipv4), IpAddr::V4(be.ipv4));
    let ev = c.wait_flow(|e| flow_is(e, "EGRESS", fe_ip, be_ip, 17, 53));
    let bytes: Vec<u8> = ev["capture"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    // 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + 10 bytes of payload: shorter than 64.
    assert_eq!(bytes.len(), 52);
    assert_eq!(&bytes[12..14], &[0x08, 0x00], "EtherType IPv4");
    assert_eq!(&bytes[26..30], &fe.ipv4.octets());
    assert_eq!(&bytes[30..34], &be.ipv4.octets());
    assert_eq!(&bytes[36..38], &53u16.to_be_bytes());
    assert_eq!(&bytes[42..], b"capture-me");
}

/// `ip -s -j link show` of the host side of a pod's veth.
fn host_link(c: &Cluster, pod: &str) -> serde_json::Value {
    let p = c.pod(pod);
    let out = std::process::Command::new("ip")
        .args(["-n", &p.node_netns, "-s", "-j", "link", "show", "dev", &p.host_ifname])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

/// Packets the host side of a pod's veth sent towards the pod.
fn host_tx_packets(c: &Cluster, pod: &str) -> u64 {
    host_link(c, pod)["stats64"]["tx"]["packets"].as_u64().unwrap()
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn local_traffic_skips_the_host_stack_and_policy_still_holds() {
    for redirect in [true, false] {
        let mut c = three_pods();
        c.start_observer(ALLOW_HTTP, &["--local-redirect", &redirect.to_string()]);
        let be = c.pod("backend").clone();
        let _s = be.tcp_echo_server(80).unwrap();
        let _s8080 = be.tcp_echo_server(8080).unwrap();
        let fe = c.pod("frontend").clone();
        let mut conn = fe.tcp_connect(c.addr("backend", false, 80), LONG).unwrap();
        conn.set_read_timeout(Some(LONG)).unwrap();
        let mut exchange = |n: usize| {
            for _ in 0..n {
                conn.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                conn.read_exact(&mut b).unwrap();
            }
        };
        exchange(5); // both pods' MACs are learnt by now
        let before = host_tx_packets(&c, "backend");
        exchange(200);
        let sent = host_tx_packets(&c, "backend") - before;
        if redirect {
            assert!(
                sent < 20,
                "with local redirect the requests bypass the backend's host veth: {sent} packets went through it"
            );
        } else {
            assert!(
                sent >= 200,
                "without local redirect every request is routed through the host: {sent}"
            );
        }
        // Either way the receiver's policy holds.
        assert!(fe.tcp_request(c.addr("backend", false, 8080), b"no", SHORT).is_err());
        assert!(c
            .pod("other")
            .tcp_request(c.addr("backend", false, 80), b"no", SHORT)
            .is_err());
        let (fe_ip, be_ip) = (IpAddr::V4(fe.ipv4), IpAddr::V4(be.ipv4));
        let dropped = c.wait_flow(|e| flow_is(e, "INGRESS", fe_ip, be_ip, 6, 8080));
        assert_eq!(
            (dropped["verdict"].as_str(), dropped["drop_reason"].as_u64()),
            (Some("DROPPED"), Some(133))
        );
        assert_eq!(dropped["observation_point"], "TO_ENDPOINT");
        assert_eq!(dropped["ifindex"], host_link(&c, "backend")["ifindex"]);
    }
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn icmp_errors_of_a_connection_pass_as_related_under_default_deny() {
    let mut c = three_pods();
    // The frontend accepts nothing but from `other`: default deny for the rest.
    c.start_observer(
        &cnp(
            "fe-in",
            "  endpointSelector: {matchLabels: {app: frontend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: other}}]\n",
        ),
        &[],
    );
    let fe = c.pod("frontend").clone();
    let be = c.pod("backend").clone();
    // Nothing listens on 9999: the backend answers with port unreachable.
    assert!(fe
        .udp_request(c.addr("backend", false, 9999), b"hello?", SHORT)
        .is_err());
    let (fe_ip, be_ip) = (IpAddr::V4(fe.ipv4), IpAddr::V4(be.ipv4));
    let err =
        c.wait_flow(|e| e["direction"] == "INGRESS" && e["destination"] == fe_ip.to_string() && e["protocol"] == 1);
    assert_eq!(err["source"], be_ip.to_string());
    assert_eq!(
        (err["icmp_type"].as_u64(), err["icmp_code"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(err["ct_state"], "related");
    assert_eq!(err["verdict"], "FORWARDED");
    // A new ICMP message from the backend is not related to anything: dropped.
    assert_eq!(be.ping(fe_ip, 1, SHORT).unwrap().received, 0);
    let ping = c.wait_flow(|e| flow_is(e, "INGRESS", be_ip, fe_ip, 1, 0) && e["icmp_type"] == 8);
    assert_eq!(
        (ping["verdict"].as_str(), ping["drop_reason"].as_u64()),
        (Some("DROPPED"), Some(133))
    );
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn per_cpu_counters_count_every_packet_by_direction_and_verdict() {
    let mut c = three_pods();
    c.start_observer(ALLOW_HTTP, &[]);
    let other = c.pod("other").clone();
    let before = counters::traffic_counters(&c.pin_dir()).unwrap();
    // 50 datagrams of 100 bytes of payload: 14 + 20 + 8 + 100 = 142 bytes each.
    assert_eq!(
        other.udp_send(c.addr("backend", false, 7777), &[0u8; 100], 50).unwrap(),
        50
    );
    std::thread::sleep(Duration::from_millis(200));
    let after = counters::traffic_counters(&c.pin_dir()).unwrap();
    let delta = |dir: u8, verdict: u8| {
        let find =
            |v: &[counters::TrafficCount]| *v.iter().find(|t| t.direction == dir && t.verdict == verdict).unwrap();
        let (a, b) = (find(&after), find(&before));
        (a.packets - b.packets, a.bytes - b.bytes)
    };
    use lumen_probes::abi::{DIR_EGRESS, DIR_INGRESS, VERDICT_DROPPED, VERDICT_FORWARDED};
    assert_eq!(
        delta(DIR_EGRESS, VERDICT_FORWARDED),
        (50, 50 * 142),
        "other's egress is open"
    );
    assert_eq!(
        delta(DIR_INGRESS, VERDICT_DROPPED),
        (50, 50 * 142),
        "backend's ingress drops them all"
    );
    assert_eq!(delta(DIR_INGRESS, VERDICT_FORWARDED), (0, 0));
    let deadline = Instant::now() + Duration::from_secs(5);
    let drops = loop {
        let n = c
            .flows(|e| e["destination_port"] == 7777 && e["verdict"] == "DROPPED")
            .len();
        if n >= 50 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(drops, 50, "every drop is an event");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn idle_conntrack_entries_are_collected_and_the_flow_starts_anew() {
    let mut c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    c.start_observer("", &["--ct-gc-interval", "500ms", "--ct-timeout-other", "2s"]);
    let be = c.pod("backend").clone();
    let _udp = be.udp_echo_server(53).unwrap();
    let fe = c.pod("frontend").clone();
    let udp_entries = |c: &Cluster| {
        counters::conntrack_entries(&c.pin_dir())
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.proto == 17)
            .count()
    };
    let sock = lumen_testbed::in_netns(&fe.netns, || std::net::UdpSocket::bind("0.0.0.0:40053").unwrap()).unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let ask = || {
        sock.send_to(b"q", c.addr("backend", false, 53)).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(sock.recv_from(&mut buf).unwrap().0, 1);
    };
    ask();
    // One entry per endpoint: the frontend's egress and the backend's ingress.
    assert_eq!(udp_entries(&c), 2);
    // Busy flows stay: keep asking for longer than the timeout.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        ask();
    }
    assert_eq!(udp_entries(&c), 2);
    let news = |c: &Cluster| {
        c.flows(|e| e["source_port"] == 40053 && e["ct_state"] == "new" && e["direction"] == "EGRESS")
            .len()
    };
    assert_eq!(news(&c), 1, "one flow so far");
    // Idle for longer than the timeout plus a GC interval: gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while udp_entries(&c) > 0 {
        assert!(Instant::now() < deadline, "idle entries were not collected");
        std::thread::sleep(Duration::from_millis(200));
    }
    ask();
    let deadline = Instant::now() + Duration::from_secs(5);
    while news(&c) < 2 {
        assert!(
            Instant::now() < deadline,
            "the same 5-tuple starts a new flow once forgotten"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends one SCTP packet (common header + an INIT chunk) from inside a pod
/// with a raw socket: the testbed has no SCTP traffic generator.
fn send_sctp(c: &Cluster, from: &str, dst: std::net::Ipv4Addr, sport: u16, dport: u16) {
    let mut pkt = Vec::new();
    pkt.extend_from_slice(&sport.to_be_bytes());
    pkt.extend_from_slice(&dport.to_be_bytes());
    pkt.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // verification tag, checksum
    pkt.extend_from_slice(&[1, 0, 0, 20, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1]); // INIT
    send_raw_ipv4(c.pod(from), 132, dst, &pkt);
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn sctp_is_parsed_and_policed_by_port() {
    let mut c = three_pods();
    c.start_observer(
        &cnp(
            "sctp-5000",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - toPorts: [{ports: [{port: \"5000\", protocol: SCTP}]}]\n",
        ),
        &[],
    );
    let be = c.pod("backend").ipv4;
    send_sctp(&c, "frontend", be, 40_001, 5000);
    send_sctp(&c, "frontend", be, 40_002, 5001);
    let fe = IpAddr::V4(c.pod("frontend").ipv4);
    let allowed = c.wait_flow(|e| flow_is(e, "INGRESS", fe, IpAddr::V4(be), 132, 5000));
    assert_eq!(
        (allowed["verdict"].as_str(), allowed["source_port"].as_u64()),
        (Some("FORWARDED"), Some(40_001))
    );
    assert_eq!(allowed["rule"], "sctp-5000");
    let denied = c.wait_flow(|e| flow_is(e, "INGRESS", fe, IpAddr::V4(be), 132, 5001));
    assert_eq!(
        (denied["verdict"].as_str(), denied["drop_reason"].as_u64()),
        (Some("DROPPED"), Some(133))
    );
}

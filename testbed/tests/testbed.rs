//! Privileged tests: they build real namespaces, so they need root.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lumen_testbed::{in_netns, list_netns, sweep_stale, Error, Pod, PodSpec, Testbed};

const TIMEOUT: Duration = Duration::from_secs(2);

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 0, last)
}

fn v6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x244, 0, 0, 0, 0, 0, last)
}

/// One node with pods "a" (.1) and "b" (.2), both dual stack.
fn two_pods() -> (Testbed, Pod, Pod) {
    let mut tb = Testbed::new().expect("testbed");
    let node = tb.add_node("node1").expect("node");
    let a = tb
        .add_pod(&node, PodSpec::new("a", "default", v4(1)).ipv6(v6(1)).label("app", "a"))
        .expect("pod a");
    let b = tb
        .add_pod(&node, PodSpec::new("b", "default", v4(2)).ipv6(v6(2)))
        .expect("pod b");
    (tb, a, b)
}

/// Netns names as `ip netns list` shows them.
fn ip_netns_list() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Identity (device, inode) of a netns file or `/proc/PID/ns/net`.
fn netns_id(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn assert_gone(prefix: &str) {
    let left: Vec<_> = ip_netns_list().into_iter().filter(|n| n.starts_with(prefix)).collect();
    assert!(left.is_empty(), "netns left behind: {left:?}");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn pods_on_one_node_ping_over_ipv4_and_ipv6() {
    let (_tb, a, b) = two_pods();
    let expected = lumen_testbed::PingResult { sent: 3, received: 3 };
    assert_eq!(a.ping(IpAddr::V4(b.ipv4), 3, TIMEOUT).unwrap(), expected);
    assert_eq!(b.ping(IpAddr::V4(a.ipv4), 3, TIMEOUT).unwrap(), expected);
    assert_eq!(a.ping(IpAddr::V6(v6(2)), 3, TIMEOUT).unwrap(), expected);
    assert_eq!(b.ping(IpAddr::V6(v6(1)), 3, TIMEOUT).unwrap(), expected);
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn ping_to_missing_address_reports_loss() {
    let (_tb, a, _b) = two_pods();
    let result = a.ping(IpAddr::V4(v4(99)), 2, Duration::from_millis(300)).unwrap();
    assert_eq!(result.sent, 2);
    assert_eq!(result.received, 0);
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn tcp_request_echoes_exact_bytes() {
    let (_tb, a, b) = two_pods();
    let server = b.tcp_echo_server(8080).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for ip in b.ips() {
        let reply = a.tcp_request(SocketAddr::new(ip, 8080), &payload, TIMEOUT).unwrap();
        assert_eq!(reply, payload, "echo over {ip}");
    }
    assert_eq!(server.accepted(), 2);
    assert_eq!(server.bytes_received(), 2 * payload.len() as u64);
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn udp_request_echoes() {
    let (_tb, a, b) = two_pods();
    let server = b.udp_echo_server(5353).unwrap();
    for ip in b.ips() {
        let reply = a
            .udp_request(SocketAddr::new(ip, 5353), b"hello lumen", TIMEOUT)
            .unwrap();
        assert_eq!(reply, b"hello lumen", "echo over {ip}");
    }
    assert_eq!(server.accepted(), 2);
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn udp_request_without_server_times_out() {
    let (_tb, a, b) = two_pods();
    let err = a
        .udp_request(SocketAddr::new(IpAddr::V4(b.ipv4), 9), b"x", Duration::from_millis(200))
        .unwrap_err();
    // The port-unreachable ICMP may surface as ECONNREFUSED on some paths;
    // an unconnected socket must just time out.
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn udp_send_and_benchmarks_move_traffic() {
    let (_tb, a, b) = two_pods();
    let udp = b.udp_echo_server(7000).unwrap();
    let sent = a
        .udp_send(SocketAddr::new(IpAddr::V4(b.ipv4), 7000), &[1; 100], 50)
        .unwrap();
    assert_eq!(sent, 50);
    std::thread::sleep(Duration::from_millis(100));
    assert!(udp.accepted() > 0);

    let echo = b.tcp_echo_server(0).unwrap();
    let tps = a
        .tcp_rr(
            SocketAddr::new(IpAddr::V6(v6(2)), echo.port()),
            Duration::from_millis(300),
        )
        .unwrap();
    assert!(tps > 100.0, "tcp_rr: {tps} tps");

    let sink = b.tcp_sink_server(0).unwrap();
    let bps = a
        .tcp_bulk(
            SocketAddr::new(IpAddr::V4(b.ipv4), sink.port()),
            Duration::from_millis(300),
        )
        .unwrap();
    assert!(bps > 1e6, "tcp_bulk: {bps} bit/s");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn pod_and_node_are_configured_as_specified() {
    let root_forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let (tb, a, _b) = two_pods();
    // Sysctls are written from threads inside the netns, never here.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        root_forwarding
    );
    let node = &tb.nodes()[0];
    let read = |ns: &str, key: &'static str| {
        in_netns(ns, || std::fs::read_to_string(format!("/proc/sys/{key}")))
            .unwrap()
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read(&node.netns, "net/ipv4/ip_forward"), "1");
    assert_eq!(read(&node.netns, "net/ipv6/conf/all/forwarding"), "1");
    assert_eq!(read(&node.netns, "net/ipv4/conf/all/rp_filter"), "0");
    assert_eq!(read(&a.netns, "net/ipv6/conf/eth0/accept_ra"), "0");
    assert_eq!(read(&a.netns, "net/ipv6/conf/eth0/autoconf"), "0");
    assert_eq!(read(&a.netns, "net/ipv6/conf/eth0/router_solicitations"), "0");
    assert!(a.host_ifname.len() <= 15);
    assert!(a.host_ifname.starts_with(tb.prefix()));
    assert_eq!(a.labels, BTreeMap::from([("app".into(), "a".into())]));

    // The host side of the veth is in the node netns, not in ours.
    let show = |ns: &str, args: &[&str]| {
        let out = Command::new("ip").args(["-n", ns]).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(show(&node.netns, &["link", "show", &a.host_ifname]).contains("UP"));
    let routes = show(&a.netns, &["route", "show"]);
    assert!(routes.contains("default via 169.254.1.1 dev eth0"), "{routes}");
    let routes6 = show(&a.netns, &["-6", "route", "show"]);
    assert!(routes6.contains("default via fe80::1 dev eth0"), "{routes6}");
    // addrgenmode none: no automatic link-local address on the pod side.
    let addrs6 = show(&a.netns, &["-6", "addr", "show", "dev", "eth0"]);
    assert!(!addrs6.contains("fe80"), "{addrs6}");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn ipv4_only_pod_has_no_ipv6_on_eth0_but_serves_dual_stack() {
    let mut tb = Testbed::new().unwrap();
    let node = tb.add_node("n").unwrap();
    let a = tb.add_pod(&node, PodSpec::new("a", "ns", v4(1))).unwrap();
    let b = tb.add_pod(&node, PodSpec::new("b", "ns", v4(2)).ipv6(v6(2))).unwrap();
    let disabled = in_netns(&a.netns, || {
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/eth0/disable_ipv6")
    })
    .unwrap()
    .unwrap();
    assert_eq!(disabled.trim(), "1");
    let r = a.ping(IpAddr::V4(b.ipv4), 3, TIMEOUT).unwrap();
    assert_eq!((r.sent, r.received), (3, 3));
    // The [::] listener still accepts IPv4 (v4-mapped) connections.
    let _srv = a.tcp_echo_server(9000).unwrap();
    let reply = b
        .tcp_request(SocketAddr::new(IpAddr::V4(a.ipv4), 9000), b"v4", TIMEOUT)
        .unwrap();
    assert_eq!(reply, b"v4");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn drop_removes_every_netns() {
    let (tb, _a, _b) = two_pods();
    let prefix = tb.prefix().to_string();
    let owned = tb.netns_names().to_vec();
    assert_eq!(owned.len(), 3);
    let listed = ip_netns_list();
    for name in &owned {
        assert!(listed.contains(name), "{name} missing from {listed:?}");
    }
    drop(tb);
    assert_gone(&prefix);
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn panic_inside_test_still_cleans_up() {
    let prefix = std::sync::Mutex::new(String::new());
    let outcome = std::panic::catch_unwind(|| {
        let (tb, _a, _b) = two_pods();
        *prefix.lock().unwrap() = tb.prefix().to_string();
        panic!("boom");
    });
    assert!(outcome.is_err());
    let prefix = prefix.into_inner().unwrap();
    assert!(!prefix.is_empty());
    assert_gone(&prefix);
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn parallel_testbeds_do_not_collide() {
    let runs: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                // Same node/pod names and addresses in every testbed.
                let (tb, a, b) = two_pods();
                let r = a.ping(IpAddr::V4(b.ipv4), 3, TIMEOUT).unwrap();
                assert_eq!((r.sent, r.received), (3, 3));
                let _srv = b.tcp_echo_server(80).unwrap();
                let reply = a
                    .tcp_request(SocketAddr::new(IpAddr::V4(b.ipv4), 80), b"hi", TIMEOUT)
                    .unwrap();
                assert_eq!(reply, b"hi");
                (tb.prefix().to_string(), a.host_ifname.clone())
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (prefix, ifname)) in results.iter().enumerate() {
        assert_gone(prefix);
        for (other_prefix, other_ifname) in &results[i + 1..] {
            assert_ne!(prefix, other_prefix);
            assert_ne!(ifname, other_ifname);
        }
    }
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn spawned_processes_run_inside_and_die_with_the_testbed() {
    let (tb, a, _b) = two_pods();
    let mut cmd = Command::new("sleep");
    cmd.arg("600").stdout(Stdio::null());
    let mut sleeper = a.spawn(cmd).unwrap();
    let pod_ns = netns_id(&format!("/var/run/netns/{}", a.netns));
    assert!(pod_ns.is_some());
    assert_eq!(netns_id(&format!("/proc/{}/ns/net", sleeper.pid())), pod_ns);

    let mut ip = Command::new("ip");
    ip.args(["-o", "link", "show"]).stdout(Stdio::piped());
    let mut lister = a.spawn(ip).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut lister.take_stdout().unwrap(), &mut out).unwrap();
    assert!(lister.wait().unwrap().success());
    assert!(out.contains("eth0"), "{out}");

    // The guard outlives the testbed: dropping the testbed kills the child.
    drop(tb);
    let status = sleeper.wait_timeout(TIMEOUT).unwrap().expect("killed");
    assert!(!status.success());
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn process_guard_kills_on_drop() {
    let (tb, _a, _b) = two_pods();
    let node = tb.nodes()[0].clone();
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    let sleeper = node.spawn(cmd).unwrap();
    let pid = sleeper.pid();
    drop(sleeper);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn sweep_stale_removes_netns_of_dead_processes_only() {
    // A pid that just exited: reuse within this test is practically impossible.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("lt{dead:x}s0-sweepnode");
    // Our own pid with a sequence number no testbed here will reach.
    let live = format!("lt{:x}sffe-sweepnode", std::process::id());
    for name in [&stale, &live] {
        let status = Command::new("ip").args(["netns", "add", name]).status().unwrap();
        assert!(status.success());
    }
    // A leftover process inside the stale netns must not survive the sweep.
    let mut leftover = Command::new("ip")
        .args(["netns", "exec", &stale, "sleep", "30"])
        .spawn()
        .unwrap();
    // `ip netns exec` joins the netns only after starting; sweeping earlier
    // would miss it.
    let stale_ns = netns_id(&format!("/var/run/netns/{stale}"));
    let deadline = Instant::now() + TIMEOUT;
    while netns_id(&format!("/proc/{}/ns/net", leftover.id())) != stale_ns {
        assert!(Instant::now() < deadline, "leftover never entered the netns");
        std::thread::sleep(Duration::from_millis(5));
    }
    let deleted = sweep_stale().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let leftover_status = loop {
        if let Some(status) = leftover.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = leftover.kill();
            let _ = leftover.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let listed = list_netns().unwrap();
    let live_survived = listed.contains(&live);
    let _ = Command::new("ip").args(["netns", "delete", &live]).status();
    assert!(deleted >= 1);
    assert!(
        leftover_status.is_some_and(|s| !s.success()),
        "leftover process was not killed"
    );
    assert!(!listed.contains(&stale), "stale netns survived");
    assert!(live_survived, "netns of a live process was swept");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn invalid_input_is_rejected() {
    let mut tb = Testbed::new().unwrap();
    assert!(matches!(tb.add_node("a/b"), Err(Error::Invalid { .. })));
    let node = tb.add_node("n").unwrap();
    assert!(matches!(tb.add_node("n"), Err(Error::Invalid { .. })));
    tb.add_pod(&node, PodSpec::new("p", "ns", v4(1))).unwrap();
    let dup_name = tb.add_pod(&node, PodSpec::new("p", "other", v4(2)));
    assert!(matches!(dup_name, Err(Error::Invalid { .. })));
    let dup_ip = tb.add_pod(&node, PodSpec::new("q", "ns", v4(1)));
    assert!(matches!(dup_ip, Err(Error::Invalid { .. })));
    let gw = tb.add_pod(&node, PodSpec::new("r", "ns", Ipv4Addr::new(169, 254, 1, 1)));
    assert!(matches!(gw, Err(Error::Invalid { .. })));
    assert!(matches!(in_netns("lt-does-not-exist", || ()), Err(Error::Io { .. })));
}

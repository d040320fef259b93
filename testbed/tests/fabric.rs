//! Privileged tests of the fabric: multi-node clusters whose pods and nodes
//! reach each other, and the test process reaching the nodes.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use lumen_testbed::{sweep_stale, Error, Node, NodeAddress, Pod, PodSpec, Testbed, FABRIC_IFNAME};

const TIMEOUT: Duration = Duration::from_secs(2);

fn v4(node: u8, pod: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node, pod)
}

fn v6(node: u16, pod: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x244, node, 0, 0, 0, 0, pod)
}

/// Three nodes with two pods each, built in an order that exercises every
/// path that installs routes: node1 and pod a1 before the fabric, node2 and
/// its pods after it, node3's pods before node1 gets its second pod. Pod c2
/// is IPv4-only, every other pod dual stack.
fn cluster() -> (Testbed, Vec<Pod>) {
    let mut tb = Testbed::new().expect("testbed");
    let n1 = tb.add_node("node1").expect("node1");
    let a1 = tb.add_pod(&n1, spec("a1", 1, 1)).expect("a1");
    tb.add_fabric().expect("fabric");
    let n2 = tb.add_node("node2").expect("node2");
    let b1 = tb.add_pod(&n2, spec("b1", 2, 1)).expect("b1");
    let b2 = tb.add_pod(&n2, spec("b2", 2, 2)).expect("b2");
    let n3 = tb.add_node("node3").expect("node3");
    let c1 = tb.add_pod(&n3, spec("c1", 3, 1)).expect("c1");
    let c2 = tb.add_pod(&n3, PodSpec::new("c2", "default", v4(3, 2))).expect("c2");
    // `n1` predates the fabric; the testbed uses its own, joined copy.
    let a2 = tb.add_pod(&n1, spec("a2", 1, 2)).expect("a2");
    (tb, vec![a1, a2, b1, b2, c1, c2])
}

fn spec(name: &str, node: u8, pod: u8) -> PodSpec {
    PodSpec::new(name, "default", v4(node, pod)).ipv6(v6(node.into(), pod.into()))
}

/// Addresses of `to` that `from` can use: IPv6 only if both have it.
fn reachable_ips(from: &Pod, to: &Pod) -> Vec<IpAddr> {
    to.ips()
        .into_iter()
        .filter(|ip| ip.is_ipv4() || from.ipv6.is_some())
        .collect()
}

/// Pairs of pods on different nodes, in both directions.
fn cross_node_pairs(pods: &[Pod]) -> Vec<(&Pod, &Pod)> {
    let mut pairs = Vec::new();
    for from in pods {
        for to in pods.iter().filter(|to| to.node != from.node) {
            pairs.push((from, to));
        }
    }
    pairs
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .expect("ip link show")
        .status
        .success()
}

fn netns_left(prefix: &str) -> Vec<String> {
    lumen_testbed::list_netns()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect()
}

/// Connects from this process (the init netns) and expects the echo.
fn echo_from_here(dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&dst, TIMEOUT).unwrap_or_else(|e| panic!("connect {dst}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(payload).unwrap();
    let mut reply = vec![0u8; payload.len()];
    stream.read_exact(&mut reply).unwrap();
    reply
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn nodes_get_addresses_in_join_order_in_a_private_subnet() {
    let (tb, _pods) = cluster();
    let fabric = tb.fabric().expect("fabric").clone();
    let [a, b, c, d] = fabric.ipv4_subnet.octets();
    assert_eq!((a, b, d), (192, 168, 0));
    assert!((200..250).contains(&c), "{}", fabric.ipv4_subnet);
    assert_eq!(fabric.root_ipv4, Ipv4Addr::new(192, 168, c, 254));
    assert_eq!(fabric.netns, format!("{}-fabric", tb.prefix()));
    assert_eq!(fabric.root_ifname, format!("{}r", tb.prefix()));
    assert!(tb.netns_names().contains(&fabric.netns));

    let addresses: Vec<(String, Option<NodeAddress>)> =
        tb.nodes().iter().map(|n| (n.name.clone(), n.address)).collect();
    let expect = |index: u8| NodeAddress {
        index,
        ipv4: Ipv4Addr::new(192, 168, c, index),
        ipv6: Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, index.into()),
    };
    assert_eq!(
        addresses,
        vec![
            ("node1".to_string(), Some(expect(1))),
            ("node2".to_string(), Some(expect(2))),
            ("node3".to_string(), Some(expect(3))),
        ]
    );

    let show = |ns: &str, args: &[&str]| {
        let out = Command::new("ip").args(["-n", ns]).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let node2 = &tb.nodes()[1].netns;
    let addrs = show(node2, &["-br", "addr", "show", "dev", FABRIC_IFNAME]);
    assert!(addrs.contains(&format!("192.168.{c}.2/24")), "{addrs}");
    assert!(addrs.contains("fd01::2/64"), "{addrs}");
    // Exactly the link-local we assign, no automatic one.
    assert!(addrs.contains("fe80::2/64"), "{addrs}");
    assert_eq!(addrs.matches("fe80").count(), 1, "{addrs}");
    // Host routes to the other nodes' pods, IPv4-only c2 without a /128.
    let routes = show(node2, &["route", "show"]);
    for (pod, node) in [
        ("10.244.1.1", 1),
        ("10.244.1.2", 1),
        ("10.244.3.1", 3),
        ("10.244.3.2", 3),
    ] {
        let want = format!("{pod} via 192.168.{c}.{node} dev {FABRIC_IFNAME}");
        assert!(routes.contains(&want), "{want} missing from\n{routes}");
    }
    let routes6 = show(node2, &["-6", "route", "show"]);
    for (pod, node) in [("fd00:244:1::1", 1), ("fd00:244:1::2", 1), ("fd00:244:3::1", 3)] {
        let want = format!("{pod} via fd01::{node} dev {FABRIC_IFNAME}");
        assert!(routes6.contains(&want), "{want} missing from\n{routes6}");
    }
    assert!(!routes6.contains("fd00:244:3::2"), "{routes6}");

    // The caller-side veth: IPv4 only, nothing automatic.
    let root = Command::new("ip")
        .args(["-br", "addr", "show", "dev", &fabric.root_ifname])
        .output()
        .unwrap();
    let root = String::from_utf8(root.stdout).unwrap();
    assert!(root.contains(&format!("192.168.{c}.254/24")), "{root}");
    assert!(!root.contains("fe80"), "{root}");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn pods_on_different_nodes_ping_each_other_over_ipv4_and_ipv6() {
    let (_tb, pods) = cluster();
    let pairs = cross_node_pairs(&pods);
    // 6 pods on 3 nodes: each pod has 4 peers on other nodes.
    assert_eq!(pairs.len(), 24);
    std::thread::scope(|scope| {
        for from in &pods {
            let pairs = &pairs;
            scope.spawn(move || {
                for (_, to) in pairs.iter().filter(|(f, _)| f.name == from.name) {
                    for ip in reachable_ips(from, to) {
                        let result = from.ping(ip, 2, TIMEOUT).unwrap();
                        assert_eq!(
                            (result.sent, result.received),
                            (2, 2),
                            "{} -> {} ({ip})",
                            from.name,
                            to.name
                        );
                    }
                }
            });
        }
    });
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn tcp_between_pods_on_different_nodes_echoes_exact_bytes() {
    let (_tb, pods) = cluster();
    let servers: Vec<_> = pods.iter().map(|p| p.tcp_echo_server(7000).unwrap()).collect();
    let pairs = cross_node_pairs(&pods);
    for (from, to) in &pairs {
        for ip in reachable_ips(from, to) {
            let payload = format!("{} -> {} over {ip}", from.name, to.name).repeat(500);
            let reply = from
                .tcp_request(SocketAddr::new(ip, 7000), payload.as_bytes(), TIMEOUT)
                .unwrap();
            assert_eq!(reply, payload.as_bytes(), "{} -> {} ({ip})", from.name, to.name);
        }
    }
    // Every pod's server was reached once per peer address used.
    let accepted: Vec<(String, u64)> = pods
        .iter()
        .zip(&servers)
        .map(|(p, s)| (p.name.clone(), s.accepted()))
        .collect();
    // Peers on other nodes: a*, b*: 3 dual-stack x 2 addresses + c2 x 1 = 7;
    // c1: 4 dual-stack x 2 = 8; c2 (IPv4 only): 4 x 1 = 4.
    let expected: Vec<(String, u64)> = [("a1", 7), ("a2", 7), ("b1", 7), ("b2", 7), ("c1", 8), ("c2", 4)]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
    assert_eq!(accepted, expected);
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn node_servers_on_fabric_addresses_are_reachable_from_here_nodes_and_pods() {
    let (tb, pods) = cluster();
    let nodes: Vec<Node> = tb.nodes().to_vec();
    let servers: Vec<_> = nodes.iter().map(|n| n.tcp_echo_server(4244).unwrap()).collect();
    for node in &nodes {
        let address = node.address.expect("joined");
        let reply = echo_from_here(SocketAddr::new(IpAddr::V4(address.ipv4), 4244), node.name.as_bytes());
        assert_eq!(reply, node.name.as_bytes());
        // A pod on another node, over both families.
        let pod = pods.iter().find(|p| p.node != node.name && p.ipv6.is_some()).unwrap();
        for ip in address.ips() {
            let reply = pod
                .tcp_request(SocketAddr::new(ip, 4244), b"from a pod", TIMEOUT)
                .unwrap();
            assert_eq!(reply, b"from a pod", "{} -> {} ({ip})", pod.name, node.name);
        }
    }
    let accepted: Vec<u64> = servers.iter().map(|s| s.accepted()).collect();
    assert_eq!(accepted, vec![3, 3, 3]);

    // A node reaches another node's address, e.g. a relay on node1.
    let from = nodes[0].netns.clone();
    let to = SocketAddr::new(IpAddr::V4(nodes[2].address.unwrap().ipv4), 4244);
    let reply = lumen_testbed::in_netns(&from, || echo_from_here(to, b"node to node")).unwrap();
    assert_eq!(reply, b"node to node");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn drop_removes_fabric_netns_and_root_veth_also_on_panic() {
    let names = std::sync::Mutex::new((String::new(), String::new()));
    let outcome = std::panic::catch_unwind(|| {
        let (tb, _pods) = cluster();
        let fabric = tb.fabric().unwrap();
        assert!(link_exists(&fabric.root_ifname));
        assert_eq!(netns_left(tb.prefix()).len(), 3 + 6 + 1);
        *names.lock().unwrap() = (tb.prefix().to_string(), fabric.root_ifname.clone());
        panic!("boom");
    });
    assert!(outcome.is_err());
    let (prefix, root_ifname) = names.into_inner().unwrap();
    assert!(!prefix.is_empty());
    assert_eq!(netns_left(&prefix), Vec::<String>::new());
    assert!(!link_exists(&root_ifname), "{root_ifname} left behind");
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn parallel_fabrics_get_distinct_subnets_and_do_not_interfere() {
    let runs: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                // Same names, pod addresses and ports in every testbed.
                let mut tb = Testbed::new().unwrap();
                tb.add_fabric().unwrap();
                let n1 = tb.add_node("n1").unwrap();
                let n2 = tb.add_node("n2").unwrap();
                let a = tb.add_pod(&n1, spec("a", 1, 1)).unwrap();
                let b = tb.add_pod(&n2, spec("b", 2, 1)).unwrap();
                let _srv = n2.tcp_echo_server(4244).unwrap();
                let prefix = tb.prefix().to_string();
                let dst = SocketAddr::new(IpAddr::V4(n2.address.unwrap().ipv4), 4244);
                assert_eq!(echo_from_here(dst, prefix.as_bytes()), prefix.as_bytes());
                let r = a.ping(IpAddr::V6(b.ipv6.unwrap()), 2, TIMEOUT).unwrap();
                assert_eq!((r.sent, r.received), (2, 2));
                let fabric = tb.fabric().unwrap().clone();
                // Keep every testbed alive until all have built their fabric.
                std::thread::sleep(Duration::from_millis(300));
                drop(tb);
                (prefix, fabric)
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (prefix, fabric)) in results.iter().enumerate() {
        assert_eq!(netns_left(prefix), Vec::<String>::new());
        assert!(!link_exists(&fabric.root_ifname));
        for (_, other) in &results[i + 1..] {
            assert_ne!(fabric.ipv4_subnet, other.ipv4_subnet);
            assert_ne!(fabric.root_ifname, other.root_ifname);
        }
    }
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn sweep_removes_fabric_and_root_veth_of_dead_processes() {
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let netns = format!("lt{dead:x}s1-fabric");
    let root = format!("lt{dead:x}s1r");
    let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success(), "{args:?}");
    ip(&["netns", "add", &netns]);
    ip(&[
        "link", "add", &root, "type", "veth", "peer", "name", "root", "netns", &netns,
    ]);
    // Not counted: a sweep in a test process running in parallel may have
    // removed them first.
    sweep_stale().unwrap();
    assert!(!link_exists(&root), "{root} survived the sweep");
    assert!(!lumen_testbed::list_netns().unwrap().contains(&netns));
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn without_a_fabric_nodes_stay_isolated() {
    let mut tb = Testbed::new().unwrap();
    let n1 = tb.add_node("n1").unwrap();
    let n2 = tb.add_node("n2").unwrap();
    // Without a fabric the same pod address on two nodes is fine.
    let a = tb.add_pod(&n1, spec("a", 1, 1)).unwrap();
    tb.add_pod(&n2, spec("same", 1, 1)).unwrap();
    let b = tb.add_pod(&n2, spec("b", 2, 1)).unwrap();
    assert!(tb.fabric().is_none());
    assert!(tb.nodes().iter().all(|n| n.address.is_none()));
    assert_eq!(tb.netns_names().len(), 5);
    let r = a.ping(IpAddr::V4(b.ipv4), 1, Duration::from_millis(300)).unwrap();
    assert_eq!((r.sent, r.received), (1, 0));
}

#[test]
#[ignore = "needs root: run scripts/test.sh"]
fn addresses_that_would_clash_on_the_fabric_are_rejected() {
    let mut tb = Testbed::new().unwrap();
    let n1 = tb.add_node("n1").unwrap();
    let n2 = tb.add_node("n2").unwrap();
    tb.add_pod(&n1, spec("a", 1, 1)).unwrap();
    tb.add_pod(&n2, PodSpec::new("dup", "default", v4(1, 1))).unwrap();
    // Pods on different nodes sharing an address: refused before anything
    // is built.
    let before = tb.netns_names().to_vec();
    assert!(matches!(tb.add_fabric(), Err(Error::Invalid { .. })));
    assert!(tb.fabric().is_none());
    assert_eq!(tb.netns_names(), &before[..]);

    let mut tb = Testbed::new().unwrap();
    let n1 = tb.add_node("n1").unwrap();
    let fabric = tb.add_fabric().unwrap();
    assert!(matches!(tb.add_fabric(), Err(Error::Invalid { .. })));
    let n2 = tb.add_node("n2").unwrap();
    tb.add_pod(&n1, spec("a", 1, 1)).unwrap();
    let dup_v4 = tb.add_pod(&n2, PodSpec::new("b", "default", v4(1, 1)));
    assert!(matches!(dup_v4, Err(Error::Invalid { .. })), "{dup_v4:?}");
    let dup_v6 = tb.add_pod(&n2, PodSpec::new("b", "default", v4(2, 1)).ipv6(v6(1, 1)));
    assert!(matches!(dup_v6, Err(Error::Invalid { .. })), "{dup_v6:?}");
    let [x, y, z, _] = fabric.ipv4_subnet.octets();
    let in_subnet = tb.add_pod(&n2, PodSpec::new("b", "default", Ipv4Addr::new(x, y, z, 9)));
    assert!(matches!(in_subnet, Err(Error::Invalid { .. })), "{in_subnet:?}");
    let in_v6_subnet = tb.add_pod(&n2, spec("b", 2, 1).ipv6("fd01::9".parse().unwrap()));
    assert!(matches!(in_v6_subnet, Err(Error::Invalid { .. })), "{in_v6_subnet:?}");
    // The fabric netns name is taken.
    assert!(matches!(tb.add_node("fabric"), Err(Error::Invalid { .. })));
    // A valid pod still works after the rejections.
    tb.add_pod(&n2, spec("b", 2, 1)).unwrap();
}

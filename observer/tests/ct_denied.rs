//! A connection that a policy change denies stays denied in both directions:
//! every later packet of it is dropped as a packet of that connection (the
//! server's as replies), none is forwarded, and the server is never taken
//! for the client of a new connection. New connections are decided as
//! usual, and once the policy allows again a fresh connection works, also
//! on the very same ports.

mod support;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use lumen_observer::counters;
use lumen_probes::abi;
use lumen_testbed::Pod;
use serde_json::{json, Value};
use support::*;

const FRONTEND: &[(&str, &str)] = &[("app", "frontend")];
const BACKEND: &[(&str, &str)] = &[("app", "backend")];

/// The client's port of the connection that the policy change denies.
const PORT: u16 = 41598;

/// How a policy change comes to deny frontend -> backend:80.
#[derive(Clone, Copy, Debug)]
enum Denial {
    /// The allow is replaced by one for another port: default deny (133).
    NoLongerAllowed,
    /// A deny rule is added beside the allow (181).
    DenyRule,
}

impl Denial {
    fn drop_reason(self) -> u64 {
        match self {
            Denial::NoLongerAllowed => 133,
            Denial::DenyRule => 181,
        }
    }

    /// The rule a drop names, if any.
    fn rule(self) -> Value {
        match self {
            Denial::NoLongerAllowed => Value::Null,
            Denial::DenyRule => json!("deny-frontend"),
        }
    }

    fn apply(self, c: &Cluster) {
        let yaml = match self {
            Denial::NoLongerAllowed => cnp(
                "allow-http",
                "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n",
            ),
            Denial::DenyRule => cnp(
                "deny-frontend",
                "  endpointSelector: {matchLabels: {app: backend}}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n",
            ),
        };
        apply(c, &yaml);
    }

    fn lift(self, c: &Cluster) {
        match self {
            Denial::NoLongerAllowed => apply(c, ALLOW_HTTP),
            Denial::DenyRule => {
                let keys = vec!["CiliumNetworkPolicy/default/deny-frontend".to_string()];
                assert_eq!(c.call(Request::DeletePolicies { keys }).unwrap(), Response::Ok);
            }
        }
    }
}

fn apply(c: &Cluster, yaml: &str) {
    let documents = vec![PolicyDocument {
        source: "ct_denied.yaml".into(),
        yaml: yaml.into(),
    }];
    assert_eq!(c.call(Request::ApplyPolicies { documents }).unwrap(), Response::Ok);
}

/// A TCP connection from `pod`'s port `local` (SO_REUSEADDR, so the port can
/// be taken again once its last connection was reset).
fn connect_from(pod: &Pod, local: u16, dst: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let (local, dst) = (sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local)), sockaddr(dst));
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    lumen_testbed::in_netns(&pod.netns, || {
        // SAFETY: a fresh socket, owned by the TcpStream from here on.
        let stream = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            TcpStream::from_raw_fd(fd)
        };
        let fd = stream.as_raw_fd();
        setsockopt(fd, libc::SO_REUSEADDR, &1 as &libc::c_int)?;
        // connect() waits at most SO_SNDTIMEO.
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(fd, libc::SO_SNDTIMEO, &tv)?;
        // SAFETY: valid sockaddr_in of the length given.
        if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    })
    .expect("enter the pod's netns")
}

fn setsockopt<T>(fd: i32, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: value points at a T of the length given.
    match unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, name, (value as *const T).cast(), len) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Closes with a reset (SO_LINGER 0): the socket is gone at once, so its
/// port can be connected from again.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(stream.as_raw_fd(), libc::SO_LINGER, &linger).unwrap();
}

fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + LONG;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no connection accepted: {e}"),
        }
    }
}

/// `client` and `server` exchange a message each way.
fn exchange(client: &mut TcpStream, server: &mut TcpStream) {
    let mut buf = [0u8; 5];
    client.write_all(b"hello").unwrap();
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    server.write_all(b"world").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"world");
}

/// Nothing arrives on `stream` for [`SHORT`].
fn nothing_arrives(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(SHORT)).unwrap();
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Flows among the events from index `from` on, up to `to` if given.
fn flows_since(c: &Cluster, from: usize, to: Option<usize>) -> Vec<Value> {
    let events = c.events();
    let to = to.unwrap_or(events.len());
    events[from..to]
        .iter()
        .filter(|e| e["kind"] == "flow")
        .cloned()
        .collect()
}

/// The first flow after the first `from` events that matches, waiting up to 5 s.
fn wait_since(c: &Cluster, from: usize, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(e) = flows_since(c, from, None).into_iter().find(&pred) {
            return e;
        }
        assert!(Instant::now() < deadline, "no matching flow among:\n{}", c.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The event count once the observer has written everything so far.
fn settled(c: &Cluster) -> usize {
    let mut n = c.events().len();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = c.events().len();
        if now == n {
            return n;
        }
        n = now;
    }
}

/// `fields` of a flow, as an object to compare whole.
fn pick(e: &Value, fields: &[&str]) -> Value {
    fields.iter().map(|&f| (f.to_string(), e[f].clone())).collect()
}

/// The fields a test can predict, of a flow between frontend:`port` and backend:80.
const SUMMARY: &[&str] = &[
    "direction",
    "source",
    "source_port",
    "destination",
    "destination_port",
    "verdict",
    "drop_reason",
    "ct_state",
    "is_reply",
    "tcp_flag_names",
    "rule",
];

/// The [`SUMMARY`] of a packet from the client (`to_server`) or the server,
/// as the backend sees it: dropped by `denial`, or else allowed by ALLOW_HTTP.
fn expected(to_server: bool, port: u16, ct_state: &str, flags: &[&str], denial: Option<Denial>) -> Value {
    let (fe, be) = ("10.0.0.1", "10.0.0.2");
    let (direction, src, sport, dst, dport) = if to_server {
        ("INGRESS", fe, port, be, 80)
    } else {
        ("EGRESS", be, 80, fe, port)
    };
    let (verdict, drop_reason, rule) = match denial {
        Some(d) => ("DROPPED", d.drop_reason(), d.rule()),
        None => ("FORWARDED", 0, json!("allow-http")),
    };
    json!({
        "direction": direction,
        "source": src,
        "source_port": sport,
        "destination": dst,
        "destination_port": dport,
        "verdict": verdict,
        "drop_reason": drop_reason,
        "ct_state": ct_state,
        "is_reply": !to_server,
        "tcp_flag_names": flags,
        "rule": rule,
    })
}

/// A flow of the connection between frontend:`port` and backend:80.
fn of_conn(e: &Value, port: u16) -> bool {
    let ends = |src: &str, sport: u16, dst: &str, dport: u16| {
        e["source"] == src && e["source_port"] == sport && e["destination"] == dst && e["destination_port"] == dport
    };
    e["protocol"] == 6 && (ends("10.0.0.1", port, "10.0.0.2", 80) || ends("10.0.0.2", 80, "10.0.0.1", port))
}

/// Seen by the backend's datapath: into it, or out of it.
fn at_backend(e: &Value) -> bool {
    (e["direction"] == "INGRESS" && e["destination"] == "10.0.0.2")
        || (e["direction"] == "EGRESS" && e["source"] == "10.0.0.2")
}

/// Every packet of the connection on [`PORT`] among `events`: dropped where
/// the backend's policy applies (the server's as replies), and none of the
/// server's reached the client. Only the client's own egress, where no
/// policy applies, forwarded the client's packets.
fn every_packet_was_dropped(c: &Cluster, case: &str, events: std::ops::Range<usize>, reason: u64) {
    let flows: Vec<Value> = flows_since(c, events.start, Some(events.end))
        .into_iter()
        .filter(|e| of_conn(e, PORT))
        .collect();
    let (server_sent, client_sent): (Vec<&Value>, Vec<&Value>) = flows.iter().partition(|e| e["source"] == "10.0.0.2");
    let fields = ["direction", "verdict", "drop_reason", "is_reply", "ct_state"];
    for e in &server_sent {
        assert_eq!(
            pick(e, &fields),
            json!({"direction": "EGRESS", "verdict": "DROPPED", "drop_reason": reason, "is_reply": true, "ct_state": "reply"}),
            "{case}: a packet from the server: {e}"
        );
    }
    let (at_backend, leaving): (Vec<&Value>, Vec<&Value>) = client_sent.into_iter().partition(|e| at_backend(e));
    for e in &at_backend {
        let state = if e["tcp_flag_names"] == json!(["SYN"]) {
            "new"
        } else {
            "established"
        };
        assert_eq!(
            pick(e, &fields),
            json!({"direction": "INGRESS", "verdict": "DROPPED", "drop_reason": reason, "is_reply": false, "ct_state": state}),
            "{case}: a packet from the client at the backend: {e}"
        );
    }
    for e in &leaving {
        assert_eq!(
            pick(e, &["direction", "source", "verdict", "is_reply"]),
            json!({"direction": "EGRESS", "source": "10.0.0.1", "verdict": "FORWARDED", "is_reply": false}),
            "{case}: a packet of the client leaving it: {e}"
        );
    }
    // Data and reset from the server; data, reset and SYN from the client.
    assert!(
        server_sent.len() >= 2 && at_backend.len() >= 3,
        "{case}: too few packets:\n{}",
        c.dump()
    );
}

fn established_connection_stays_denied(denial: Denial, local_redirect: bool) {
    let mut c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    // Every packet is an event, so a forwarded one cannot go unseen.
    c.start_observer(
        "",
        &[
            "--monitor-aggregation",
            "none",
            "--local-redirect",
            &local_redirect.to_string(),
        ],
    );
    apply(&c, ALLOW_HTTP);
    let (fe, be) = (c.pod("frontend").clone(), c.pod("backend").clone());
    let listener = lumen_testbed::in_netns(&be.netns, || TcpListener::bind("0.0.0.0:80"))
        .unwrap()
        .unwrap();
    let server_addr = SocketAddrV4::new(be.ipv4, 80);
    let reason = denial.drop_reason();
    let case = format!("{denial:?}, local redirect {local_redirect}");

    // An allowed connection, established and used both ways.
    let mut client = connect_from(&fe, PORT, server_addr, LONG).unwrap();
    let mut server = accept(&listener);
    exchange(&mut client, &mut server);
    let before = settled(&c);

    // The policy changes; both ends send on the connection.
    denial.apply(&c);
    client.write_all(b"from client").unwrap();
    server.write_all(b"from server").unwrap();
    assert!(
        nothing_arrives(&mut server),
        "{case}: the client's data reached the server"
    );
    assert!(
        nothing_arrives(&mut client),
        "{case}: the server's data reached the client"
    );
    let first = |to_server: bool| {
        let pred = |e: &Value| of_conn(e, PORT) && at_backend(e) && (e["destination"] == "10.0.0.2") == to_server;
        pick(&wait_since(&c, before, pred), SUMMARY)
    };
    assert_eq!(
        first(true),
        expected(true, PORT, "established", &["PSH", "ACK"], Some(denial)),
        "{case}: the client's data"
    );
    assert_eq!(
        first(false),
        expected(false, PORT, "reply", &["PSH", "ACK"], Some(denial)),
        "{case}: the server's data"
    );

    // The backend keeps the connection's entry as a tombstone that says why;
    // the frontend's own entry (its egress has no policy) still forwards.
    let mut entries: Vec<(u8, u8, u8)> = counters::conntrack_entries(&c.pin_dir())
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.proto == 6 && (k.port_a, k.port_b) == (PORT, 80))
        .map(|(_, v)| (v.verdict, v.drop_reason, v.orig_dir))
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            (abi::VERDICT_FORWARDED, 0, abi::DIR_EGRESS),
            (abi::VERDICT_DROPPED, reason as u8, abi::DIR_INGRESS)
        ],
        "{case}: conntrack entries of the connection"
    );

    // A new connection from another port is dropped as a new connection.
    assert!(connect_from(&fe, PORT + 1, server_addr, SHORT).is_err());
    let syn = wait_since(&c, before, |e| of_conn(e, PORT + 1) && at_backend(e));
    assert_eq!(
        pick(&syn, SUMMARY),
        expected(true, PORT + 1, "new", &["SYN"], Some(denial)),
        "{case}: a new connection"
    );

    // Both ends give up (resets, dropped too); a new connection on the very
    // same ports is decided as a new one, and dropped.
    reset(client);
    reset(server);
    assert!(connect_from(&fe, PORT, server_addr, SHORT).is_err());
    let syn = wait_since(&c, before, |e| {
        of_conn(e, PORT) && at_backend(e) && e["tcp_flag_names"] == json!(["SYN"])
    });
    assert_eq!(
        pick(&syn, SUMMARY),
        expected(true, PORT, "new", &["SYN"], Some(denial)),
        "{case}: a new connection on the same ports"
    );

    let after_change = settled(&c);
    every_packet_was_dropped(&c, &case, before..after_change, reason);

    // The policy allows again: a fresh connection works, from a new port and
    // from the port of the denied connection.
    denial.lift(&c);
    let lifted = settled(&c);
    for port in [PORT + 2, PORT] {
        let mut client = connect_from(&fe, port, server_addr, LONG)
            .unwrap_or_else(|e| panic!("{case}: connect from port {port} once allowed: {e}"));
        let mut server = accept(&listener);
        exchange(&mut client, &mut server);
        let syn = wait_since(&c, lifted, |e| {
            of_conn(e, port) && at_backend(e) && e["tcp_flag_names"] == json!(["SYN"])
        });
        assert_eq!(
            pick(&syn, SUMMARY),
            expected(true, port, "new", &["SYN"], None),
            "{case}: port {port} once allowed"
        );
    }

    // Never, before, during or after the denial, is the server taken for
    // the client of a connection.
    let server_opened = c.flows(|e| of_conn(e, PORT) && e["source"] == "10.0.0.2" && e["is_reply"] == false);
    assert!(server_opened.is_empty(), "{case}: {server_opened:?}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn a_connection_no_longer_allowed_is_dropped_both_ways() {
    for local_redirect in [true, false] {
        established_connection_stays_denied(Denial::NoLongerAllowed, local_redirect);
    }
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn a_connection_a_deny_rule_catches_is_dropped_both_ways() {
    for local_redirect in [true, false] {
        established_connection_stays_denied(Denial::DenyRule, local_redirect);
    }
}

//! Network policy end to end: a conformance table of policy sets and
//! connections run through the real datapath and through `policy trace`
//! (both must give the expected verdict), malformed policies that change
//! nothing, and policy changes under continuous traffic.
//!
//! Over 600 lines: the conformance table is data, written out in full.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lumen_policy::trace::Verdict;
use lumen_testbed::{Pod, PodSpec, ServerGuard};
use support::*;

/// How long a probe waits for an answer; denied probes take this long.
const PROBE: Duration = Duration::from_millis(600);

const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const EXT2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const HOST: Ipv4Addr = lumen_testbed::GATEWAY_V4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    /// Dropped: no policy allowed it (133).
    Denied,
    /// Dropped by a deny rule (181).
    Deny,
    /// Would be dropped, but an audit-mode policy only reports it.
    Audit,
}

/// Four endpoints in two namespaces, two addresses outside the cluster
/// (pods that are not endpoints), and the node itself.
struct Net {
    c: Cluster,
    host: Pod,
    _servers: Vec<ServerGuard>,
}

fn net() -> Net {
    net_with(&[])
}

/// [`net`] with extra observer flags.
fn net_with(flags: &[&str]) -> Net {
    let pod = |name: &str, ns: &str, ip: Ipv4Addr, labels: &[(&str, &str)]| {
        labels
            .iter()
            .fold(PodSpec::new(name, ns, ip), |spec, (k, v)| spec.label(k, v))
    };
    let mut c = cluster_of(vec![
        pod(
            "frontend",
            "default",
            Ipv4Addr::new(10, 0, 0, 1),
            &[("app", "frontend")],
        ),
        pod(
            "backend",
            "default",
            Ipv4Addr::new(10, 0, 0, 2),
            &[("app", "backend"), ("tier", "api")],
        ),
        pod("other", "default", Ipv4Addr::new(10, 0, 0, 3), &[("app", "other")]),
        pod("db", "prod", Ipv4Addr::new(10, 0, 0, 4), &[("app", "db")]),
        pod("ext", "default", EXT, &[]),
        pod("ext2", "default", EXT2, &[]),
    ]);
    c.unguarded = ["ext".to_string(), "ext2".to_string()].into();
    c.named_ports.insert(
        "backend".into(),
        vec![("http".into(), 80, "TCP".into()), ("dns".into(), 53, "UDP".into())],
    );
    c.write_endpoints();
    c.start_observer("", flags);
    // The node itself, as a place to run servers and clients.
    let host = Pod {
        name: "host".into(),
        netns: c.node.netns.clone(),
        ipv4: HOST,
        ipv6: None,
        ..c.pod("frontend").clone()
    };
    let mut servers = Vec::new();
    for p in c.pods.values().chain([&host]) {
        for port in [80, 8080] {
            servers.push(p.tcp_echo_server(port).unwrap());
        }
        for port in [53, 8080] {
            servers.push(p.udp_echo_server(port).unwrap());
        }
    }
    Net {
        c,
        host,
        _servers: servers,
    }
}

impl Net {
    fn pod(&self, name: &str) -> &Pod {
        if name == "host" {
            &self.host
        } else {
            self.c.pod(name)
        }
    }

    /// How `policy trace` names an end: a pod as ns/name, others by IP.
    fn trace_name(&self, name: &str) -> String {
        let p = self.pod(name);
        if name == "host" || self.c.unguarded.contains(name) {
            p.ipv4.to_string()
        } else {
            format!("{}/{}", p.namespace, p.name)
        }
    }

    /// Whether a request gets its answer through the datapath.
    fn reaches(&self, from: &str, to: &str, port: u16, proto: Proto) -> bool {
        let dst = SocketAddr::new(IpAddr::V4(self.pod(to).ipv4), port);
        let src = self.pod(from);
        match proto {
            Proto::Tcp => src.tcp_request(dst, b"probe", PROBE).is_ok(),
            Proto::Udp => src.udp_request(dst, b"probe", PROBE).is_ok(),
        }
    }

    fn apply(&self, yaml: &str) -> Response {
        let documents = vec![PolicyDocument {
            source: "conformance.yaml".into(),
            yaml: yaml.into(),
        }];
        self.c.call(Request::ApplyPolicies { documents }).unwrap()
    }

    /// Deletes every runtime policy.
    fn clear(&self) {
        let Response::Policies { policies } = self.c.call(Request::ListPolicies).unwrap() else {
            panic!("no policy list")
        };
        let keys: Vec<String> = policies
            .iter()
            .map(|p| match p.namespace.as_str() {
                "" => format!("{}/{}", p.kind, p.name),
                ns => format!("{}/{ns}/{}", p.kind, p.name),
            })
            .collect();
        if !keys.is_empty() {
            assert_eq!(self.c.call(Request::DeletePolicies { keys }).unwrap(), Response::Ok);
        }
    }

    fn trace(&self, from: &str, to: &str, port: u16, proto: Proto) -> lumen_policy::trace::Trace {
        let request = Request::TracePolicy {
            from: self.trace_name(from),
            to: self.trace_name(to),
            proto: if proto == Proto::Tcp { 6 } else { 17 },
            port,
        };
        match self.c.call(request).unwrap() {
            Response::Trace { trace } => trace,
            other => panic!("trace {from} -> {to}: {other:?}"),
        }
    }
}

fn cnp(ns: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}---\n")
}

/// The policy sets of the conformance table, by name.
fn policy_sets() -> BTreeMap<&'static str, String> {
    let mut sets = BTreeMap::new();
    sets.insert("none", String::new());
    sets.insert(
        "l3l4-ingress",
        cnp(
            "default",
            "backend-in",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
        ),
    );
    sets.insert(
        "l3-and-named-port",
        cnp(
            "default",
            "backend-in",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: other}}]\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: http}]}]\n",
        ),
    );
    sets.insert(
        "deny-beats-allow",
        cnp(
            "default",
            "backend-in",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEntities: [cluster]\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: other}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
        ),
    );
    sets.insert(
        "egress",
        cnp(
            "default",
            "frontend-out",
            "  endpointSelector: {matchLabels: {app: frontend}}\n  egress:\n    - toEndpoints: [{matchLabels: {app: backend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n    - toCIDR: [198.51.100.0/24]\n      toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n",
        ),
    );
    sets.insert(
        "cidr-set-except",
        cnp(
            "prod",
            "db-in",
            "  endpointSelector: {}\n  ingress:\n    - fromCIDRSet:\n        - cidr: 198.51.100.0/24\n          except: [198.51.100.0/28]\n        - cidr: 203.0.113.0/24\n",
        ),
    );
    sets.insert(
        "entities",
        cnp(
            "default",
            "backend-in",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEntities: [host]\n",
        ) + &cnp(
            "default",
            "other-out",
            "  endpointSelector: {matchLabels: {app: other}}\n  egress:\n    - toEntities: [world]\n",
        ),
    );
    sets.insert(
        "namespaces",
        cnp(
            "prod",
            "db-in",
            "  endpointSelector: {matchLabels: {app: db}}\n  ingress:\n    - fromEndpoints:\n        - {}\n        - matchLabels: {app: frontend, k8s:io.kubernetes.pod.namespace: default}\n",
        ),
    );
    sets.insert(
        "k8s-namespace-selector",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-in, namespace: prod}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}\n          podSelector: {matchLabels: {app: backend}}\n      ports: [{port: 8080, protocol: TCP}]\n".into(),
    );
    sets.insert(
        "k8s-ipblock-egress",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: other-out, namespace: default}\nspec:\n  podSelector: {matchLabels: {app: other}}\n  policyTypes: [Egress]\n  egress:\n    - to: [{ipBlock: {cidr: 203.0.113.0/24}}]\n    - to: [{podSelector: {matchLabels: {app: backend}}}]\n      ports: [{port: 53, protocol: UDP}]\n".into(),
    );
    sets.insert(
        "clusterwide",
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: from-frontend}\nspec:\n  endpointSelector: {}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n".into(),
    );
    sets.insert(
        "no-default-deny",
        cnp(
            "default",
            "backend-in",
            "  endpointSelector: {matchLabels: {app: backend}}\n  enableDefaultDeny: {ingress: false}\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: other}}]\n",
        ),
    );
    sets.insert(
        "port-range-any",
        cnp(
            "default",
            "backend-in",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - toPorts: [{ports: [{port: \"8000\", endPort: 8100, protocol: ANY}]}]\n",
        ),
    );
    sets.insert(
        "match-expressions",
        cnp(
            "default",
            "backend-in",
            "  endpointSelector: {matchExpressions: [{key: tier, operator: In, values: [api]}]}\n  ingress:\n    - fromEndpoints: [{matchExpressions: [{key: app, operator: In, values: [frontend, other]}]}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n    - fromEndpoints: [{matchExpressions: [{key: app, operator: NotIn, values: [frontend]}]}]\n      toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n",
        ),
    );
    sets.insert(
        "audit-annotation",
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: backend-in\n  annotations: {policy.lumen.io/audit-mode: \"true\"}\nspec:\n  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n".into(),
    );
    sets.insert(
        "egress-deny-cidr",
        cnp(
            "default",
            "frontend-out",
            "  endpointSelector: {matchLabels: {app: frontend}}\n  egress:\n    - toEntities: [all]\n  egressDeny:\n    - toCIDR: [198.51.100.10/32]\n",
        ),
    );
    sets.insert(
        "exists-udp",
        cnp(
            "default",
            "backend-in",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchExpressions: [{key: app, operator: Exists}]}]\n      toPorts: [{ports: [{port: dns, protocol: UDP}]}]\n",
        ),
    );
    sets
}

use Expect::{Allow, Audit, Denied, Deny};
use Proto::{Tcp, Udp};

/// (policy set, from, to, port, protocol, expected).
#[rustfmt::skip]
const CASES: &[(&str, &str, &str, u16, Proto, Expect)] = &[
    ("none", "frontend", "backend", 80, Tcp, Allow),
    ("none", "ext", "db", 80, Tcp, Allow),
    ("none", "backend", "ext", 8080, Tcp, Allow),
    ("l3l4-ingress", "frontend", "backend", 80, Tcp, Allow),
    ("l3l4-ingress", "frontend", "backend", 8080, Tcp, Denied),
    ("l3l4-ingress", "other", "backend", 80, Tcp, Denied),
    ("l3l4-ingress", "backend", "frontend", 80, Tcp, Allow),
    ("l3l4-ingress", "frontend", "backend", 53, Udp, Denied),
    ("l3-and-named-port", "other", "backend", 8080, Tcp, Allow),
    ("l3-and-named-port", "other", "backend", 53, Udp, Allow),
    ("l3-and-named-port", "frontend", "backend", 80, Tcp, Allow),
    ("l3-and-named-port", "frontend", "backend", 8080, Tcp, Denied),
    ("deny-beats-allow", "other", "backend", 80, Tcp, Deny),
    ("deny-beats-allow", "other", "backend", 8080, Tcp, Allow),
    ("deny-beats-allow", "frontend", "backend", 80, Tcp, Allow),
    ("deny-beats-allow", "ext", "backend", 80, Tcp, Denied),
    ("egress", "frontend", "backend", 80, Tcp, Allow),
    ("egress", "frontend", "backend", 8080, Tcp, Denied),
    ("egress", "frontend", "other", 80, Tcp, Denied),
    ("egress", "frontend", "ext", 8080, Tcp, Allow),
    ("egress", "frontend", "ext", 80, Tcp, Denied),
    ("egress", "frontend", "ext2", 8080, Tcp, Denied),
    ("egress", "other", "frontend", 80, Tcp, Allow),
    ("cidr-set-except", "ext", "db", 80, Tcp, Denied),
    ("cidr-set-except", "ext2", "db", 80, Tcp, Allow),
    ("cidr-set-except", "frontend", "db", 80, Tcp, Denied),
    ("cidr-set-except", "ext2", "db", 53, Udp, Allow),
    ("entities", "host", "backend", 80, Tcp, Allow),
    ("entities", "frontend", "backend", 80, Tcp, Denied),
    ("entities", "other", "ext", 80, Tcp, Allow),
    ("entities", "other", "frontend", 80, Tcp, Denied),
    ("entities", "other", "host", 80, Tcp, Denied),
    ("namespaces", "frontend", "db", 80, Tcp, Allow),
    ("namespaces", "other", "db", 80, Tcp, Denied),
    ("namespaces", "backend", "db", 8080, Tcp, Denied),
    ("k8s-namespace-selector", "backend", "db", 8080, Tcp, Allow),
    ("k8s-namespace-selector", "backend", "db", 80, Tcp, Denied),
    ("k8s-namespace-selector", "frontend", "db", 8080, Tcp, Denied),
    ("k8s-namespace-selector", "ext", "db", 8080, Tcp, Denied),
    ("k8s-ipblock-egress", "other", "ext2", 80, Tcp, Allow),
    ("k8s-ipblock-egress", "other", "ext", 80, Tcp, Denied),
    ("k8s-ipblock-egress", "other", "backend", 53, Udp, Allow),
    ("k8s-ipblock-egress", "other", "backend", 80, Tcp, Denied),
    ("k8s-ipblock-egress", "other", "frontend", 80, Tcp, Denied),
    ("clusterwide", "frontend", "db", 80, Tcp, Allow),
    ("clusterwide", "frontend", "other", 8080, Tcp, Allow),
    ("clusterwide", "other", "frontend", 80, Tcp, Denied),
    ("clusterwide", "ext", "frontend", 80, Tcp, Denied),
    ("no-default-deny", "other", "backend", 80, Tcp, Deny),
    ("no-default-deny", "frontend", "backend", 80, Tcp, Allow),
    ("no-default-deny", "ext", "backend", 8080, Tcp, Allow),
    ("port-range-any", "frontend", "backend", 8080, Tcp, Allow),
    ("port-range-any", "frontend", "backend", 80, Tcp, Denied),
    ("port-range-any", "ext", "backend", 8080, Tcp, Allow),
    ("port-range-any", "frontend", "backend", 8080, Udp, Allow),
    ("match-expressions", "frontend", "backend", 80, Tcp, Allow),
    ("match-expressions", "other", "backend", 80, Tcp, Allow),
    ("match-expressions", "frontend", "backend", 8080, Tcp, Denied),
    ("match-expressions", "other", "backend", 8080, Tcp, Allow),
    ("match-expressions", "db", "backend", 80, Tcp, Denied),
    ("audit-annotation", "other", "backend", 80, Tcp, Audit),
    ("audit-annotation", "frontend", "backend", 80, Tcp, Allow),
    ("egress-deny-cidr", "frontend", "ext", 80, Tcp, Deny),
    ("egress-deny-cidr", "frontend", "ext2", 80, Tcp, Allow),
    ("egress-deny-cidr", "frontend", "backend", 80, Tcp, Allow),
    ("exists-udp", "frontend", "backend", 53, Udp, Allow),
    ("exists-udp", "frontend", "backend", 80, Tcp, Denied),
    ("exists-udp", "ext", "backend", 53, Udp, Denied),
];

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn conformance_table_through_the_datapath_and_policy_trace() {
    assert!(CASES.len() >= 60);
    let net = net();
    let sets = policy_sets();
    let mut failures = Vec::new();
    let mut current = "";
    for &(set, from, to, port, proto, expect) in CASES {
        if set != current {
            net.clear();
            if !sets[set].is_empty() {
                assert_eq!(net.apply(&sets[set]), Response::Ok, "policy set {set}");
            }
            current = set;
        }
        let case = format!("[{set}] {from} -> {to} {port}/{proto:?}");
        let seen = net.c.events().len();
        let reached = net.reaches(from, to, port, proto);
        if reached != matches!(expect, Allow | Audit) {
            failures.push(format!(
                "{case}: datapath {}, expected {expect:?}",
                if reached { "passed" } else { "dropped" }
            ));
        }
        // The datapath's own verdict on the first packet: drop reason or audit.
        let (src, dst) = (net.pod(from).ipv4.to_string(), net.pod(to).ipv4.to_string());
        let wanted = match expect {
            Allow => None,
            Denied => Some(("DROPPED", 133)),
            Deny => Some(("DROPPED", 181)),
            Audit => Some(("AUDIT", 0)),
        };
        if let Some((verdict, reason)) = wanted {
            let matching = |e: &serde_json::Value| {
                e["kind"] == "flow"
                    && e["source"] == src.as_str()
                    && e["destination"] == dst.as_str()
                    && e["destination_port"] == port
                    && e["verdict"] == verdict
                    && (reason == 0 || e["drop_reason"] == reason)
            };
            // The event may still be on its way from the ring buffer.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            let found = loop {
                let found = net.c.events()[seen..].iter().any(matching);
                if found || std::time::Instant::now() > deadline {
                    break found;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if !found {
                failures.push(format!(
                    "{case}: no {verdict} flow with reason {reason} from the datapath"
                ));
            }
        }
        let t = net.trace(from, to, port, proto);
        let traced = match (
            t.verdict,
            t.egress.iter().chain(&t.ingress).map(|d| d.drop_reason).max(),
        ) {
            (Verdict::Forwarded, _) => Allow,
            (Verdict::Audit, _) => Audit,
            (Verdict::Dropped, Some(181)) => Deny,
            (Verdict::Dropped, _) => Denied,
        };
        if traced != expect {
            failures.push(format!("{case}: trace says {traced:?}, expected {expect:?}: {t:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn enforcement_modes_and_global_audit() {
    let verdict = |net: &Net, from, to, port| {
        let t = net.trace(from, to, port, Tcp);
        (net.reaches(from, to, port, Tcp), t.verdict)
    };
    // always: default-deny everywhere, with no policy at all.
    let net = net_with(&["--enable-policy", "always"]);
    assert_eq!(verdict(&net, "frontend", "backend", 80), (false, Verdict::Dropped));
    assert_eq!(verdict(&net, "ext", "db", 80), (false, Verdict::Dropped));
    drop(net);
    // never: policies are accepted but nothing is enforced.
    let net = net_with(&["--enable-policy", "never"]);
    assert_eq!(net.apply(&policy_sets()["l3l4-ingress"]), Response::Ok);
    assert_eq!(verdict(&net, "other", "backend", 80), (true, Verdict::Forwarded));
    drop(net);
    // Global audit: what policy would drop passes and is reported AUDIT.
    let net = net_with(&["--policy-audit-mode"]);
    assert_eq!(net.apply(&policy_sets()["l3l4-ingress"]), Response::Ok);
    assert_eq!(verdict(&net, "other", "backend", 80), (true, Verdict::Audit));
    assert_eq!(verdict(&net, "frontend", "backend", 80), (true, Verdict::Forwarded));
    let audited = net
        .c
        .wait_flow(|e| e["source"] == "10.0.0.3" && e["destination_port"] == 80 && e["direction"] == "INGRESS");
    assert_eq!(audited["verdict"], "AUDIT");
    let err = net_with_error(&["--enable-policy", "sometimes"]);
    assert!(
        err.contains("unknown enforcement mode \"sometimes\" (default, always, never)"),
        "{err}"
    );
}

/// The error an observer started with `flags` exits with.
fn net_with_error(flags: &[&str]) -> String {
    let c = cluster(&[("solo", &[("app", "solo")])]);
    let out = c.observer_command("", flags).output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One change: a policy created or replaced (YAML), or deleted (its key).
enum Step {
    Apply(String),
    Delete(&'static str),
}

/// Runs `steps` over and over (at least 20 rounds and 3 s) while TCP
/// requests that every state allows (`allowed`: from, to, port) and UDP
/// datagrams that every state denies (`denied`) flow continuously; not one
/// request may fail and not one datagram may arrive.
fn under_traffic(net: &Net, steps: &[Step], allowed: (&str, &str, u16), denied: (&str, &str, u16)) {
    let apply = |step: &Step| match step {
        Step::Apply(yaml) => net.apply(yaml),
        Step::Delete(key) => net
            .c
            .call(Request::DeletePolicies {
                keys: vec![key.to_string()],
            })
            .unwrap(),
    };
    assert_eq!(apply(&steps[0]), Response::Ok);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, probes) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let sink = net.pod(denied.1).udp_echo_server(denied.2).unwrap();
    let requests = std::thread::spawn({
        let (src, stop, ok, failed) = (net.pod(allowed.0).clone(), stop.clone(), ok.clone(), failed.clone());
        let dst = SocketAddr::new(IpAddr::V4(net.pod(allowed.1).ipv4), allowed.2);
        move || {
            while !stop.load(Ordering::Relaxed) {
                match src.tcp_request(dst, b"still allowed", Duration::from_secs(2)) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    let datagrams = std::thread::spawn({
        let (src, stop, probes) = (net.pod(denied.0).clone(), stop.clone(), probes.clone());
        let dst = SocketAddr::new(IpAddr::V4(net.pod(denied.1).ipv4), denied.2);
        move || {
            while !stop.load(Ordering::Relaxed) {
                probes.fetch_add(src.udp_send(dst, b"never", 20).unwrap(), Ordering::Relaxed);
            }
        }
    });
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while rounds < 20 || started.elapsed() < Duration::from_secs(3) {
        for step in steps {
            assert_eq!(apply(step), Response::Ok, "round {rounds}");
        }
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    requests.join().unwrap();
    datagrams.join().unwrap();
    let (ok, probes) = (ok.load(Ordering::Relaxed), probes.load(Ordering::Relaxed));
    assert!(ok > 100 && probes > 1000, "traffic ran: {ok} requests, {probes} probes");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "allowed requests failed during changes"
    );
    assert_eq!(sink.accepted(), 0, "denied datagrams got through during changes");
}

fn backend_in(spec: &str) -> Step {
    Step::Apply(cnp(
        "default",
        "backend-in",
        &format!("  endpointSelector: {{matchLabels: {{app: backend}}}}\n{spec}"),
    ))
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn changes_apply_atomically_under_continuous_traffic() {
    let net = net();
    // Each step is one change; frontend -> backend:80 is allowed in every
    // state the steps go through, other -> backend:5300/udp denied in every one.
    let steps = [
        backend_in("  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"),
        backend_in("  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n    - fromCIDR: [198.51.100.0/24]\n"),
        backend_in("  ingress:\n    - fromEntities: [cluster]\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: other}}]\n      toPorts: [{ports: [{port: \"5300\", protocol: UDP}]}]\n"),
        Step::Apply(cnp("default", "other-out", "  endpointSelector: {matchLabels: {app: other}}\n  egress:\n    - toCIDR: [203.0.113.0/24]\n")),
        backend_in("  enableDefaultDeny: {ingress: false}\n"),
        backend_in("  ingress:\n    - toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"),
        Step::Delete("CiliumNetworkPolicy/default/other-out"),
    ];
    under_traffic(&net, &steps, ("frontend", "backend", 80), ("other", "backend", 5300));
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn cidr_changes_never_flip_the_world_peers_verdict() {
    let net = net();
    // ext (198.51.100.10) reaches the backend on port 80 as the world, then
    // through a CIDR rule (its address gets a CIDR identity), then through a
    // rule with an exception carved out for ext2; port 5300 never. The
    // ipcache gains and loses prefixes along the way.
    let steps = [
        backend_in("  ingress:\n    - fromEntities: [world]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"),
        backend_in("  ingress:\n    - fromCIDR: [198.51.100.0/24]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"),
        backend_in("  ingress:\n    - fromCIDRSet: [{cidr: 0.0.0.0/0, except: [203.0.113.0/24]}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n  ingressDeny:\n    - fromCIDR: [198.51.100.10/32]\n      toPorts: [{ports: [{port: \"5300\", protocol: UDP}]}]\n"),
        backend_in("  ingress:\n    - fromCIDR: [198.51.100.0/25]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"),
    ];
    under_traffic(&net, &steps, ("ext", "backend", 80), ("ext", "backend", 5300));
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn malformed_policies_are_rejected_precisely_and_change_nothing() {
    let net = net();
    let sets = policy_sets();
    assert_eq!(net.apply(&sets["l3l4-ingress"]), Response::Ok);
    let bad: &[(&str, &str)] = &[
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad\nspec: {}\n",
            "conformance.yaml:4: document 1: invalid YAML: did not find expected ',' or '}' at line 4 column 5, while parsing a flow mapping at line 3 column 11",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: [80]}]}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.ingress[0].toPorts[0].ports[0].port: invalid type: sequence, expected a port number or name",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  ingress:\n    - fromEndpoint: [{}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.ingress[0].fromEndpoint: unknown field \"fromEndpoint\", expected one of \"fromEndpoints\", \"fromCIDR\", \"fromCIDRSet\", \"fromEntities\", \"toPorts\", \"fromRequires\", \"fromGroups\", \"fromNodes\", \"icmps\", \"authentication\"",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {matchExpressions: [{key: app, operator: Equals, values: [x]}]}\n  ingress: [{}]\n",
            "conformance.yaml:5: document 1 (CiliumNetworkPolicy default/bad): spec.endpointSelector.matchExpressions[0].operator: unknown operator \"Equals\" (In, NotIn, Exists, DoesNotExist)",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {matchExpressions: [{key: app, operator: In}]}\n  ingress: [{}]\n",
            "conformance.yaml:5: document 1 (CiliumNetworkPolicy default/bad): spec.endpointSelector.matchExpressions[0].values: operator In needs at least one value",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {matchExpressions: [{key: app, operator: Exists, values: [x]}]}\n  ingress: [{}]\n",
            "conformance.yaml:5: document 1 (CiliumNetworkPolicy default/bad): spec.endpointSelector.matchExpressions[0].values: operator Exists takes no values",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  ingress:\n    - fromCIDR: [10.0.0.0/33]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.ingress[0].fromCIDR[0]: \"10.0.0.0/33\" is not a CIDR (address/prefix such as 10.0.0.0/8 or fd00::/64, or one address)",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  egress:\n    - toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.egress[0].toCIDRSet[0].except[0]: \"192.168.0.0/16\" is not inside the cidr 10.0.0.0/8",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"70000\", protocol: TCP}]}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.ingress[0].toPorts[0].ports[0].port: port 70000 is out of range (0-65535)",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"8080\", endPort: 8000, protocol: TCP}]}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.ingress[0].toPorts[0].ports[0].endPort: endPort 8000 is less than port 8080",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"80\", protocol: GRE}]}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.ingress[0].toPorts[0].ports[0].protocol: unknown protocol \"GRE\" (TCP, UDP, SCTP, ANY)",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  egress:\n    - toEntities: [galaxy]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.egress[0].toEntities[0]: unknown entity \"galaxy\" (all, world, host, cluster, remote-node, kube-apiserver, ingress, health, init, unmanaged)",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"80\", protocol: TCP}], rules: {http: [{method: GET}]}}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.ingress[0].toPorts[0].rules: L7 rules are not supported yet",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  egress:\n    - toFQDNs: [{matchName: example.com}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.egress[0].toFQDNs: \"toFQDNs\" is not supported yet",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {matchLabels: {\"bad key!\": x}}\n  ingress: [{}]\n",
            "conformance.yaml:5: document 1 (CiliumNetworkPolicy default/bad): spec.endpointSelector.matchLabels[bad key!]: invalid label key \"bad key!\": the name must be 1-63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: Bad_Name}\nspec:\n  endpointSelector: {}\n  ingress: [{}]\n",
            "conformance.yaml:3: document 1 (CiliumNetworkPolicy default/Bad_Name): metadata.name: invalid name \"Bad_Name\": at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n",
            "conformance.yaml:1: document 1 (CiliumNetworkPolicy default/bad): apiVersion: \"networking.k8s.io/v1\" is not an apiVersion of CiliumNetworkPolicy (expected cilium.io/v2)",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumFirewallRule\nmetadata: {name: bad}\nspec: {}\n",
            "conformance.yaml:2: document 1: kind: unknown kind \"CiliumFirewallRule\" (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy)",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: bad, namespace: default}\nspec:\n  endpointSelector: {}\n  ingress: [{}]\n",
            "conformance.yaml:3: document 1 (CiliumClusterwideNetworkPolicy bad): metadata.namespace: CiliumClusterwideNetworkPolicy is cluster-wide and takes no namespace",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\nspecs:\n  - endpointSelector: {}\n",
            "conformance.yaml:6: document 1 (CiliumNetworkPolicy default/bad): specs: give either spec (one rule) or specs (a list of rules), not both",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad, annotations: {policy.lumen.io/audit-mode: maybe}}\nspec:\n  endpointSelector: {}\n  ingress: [{}]\n",
            "conformance.yaml:3: document 1 (CiliumNetworkPolicy default/bad): metadata.annotations[policy.lumen.io/audit-mode]: invalid value \"maybe\" (true, false)",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad}\nspec:\n  podSelector: {}\n  policyTypes: [Inbound]\n",
            "conformance.yaml:6: document 1 (NetworkPolicy default/bad): spec.policyTypes[0]: unknown policy type \"Inbound\" (Ingress, Egress)",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad}\nspec:\n  podSelector: {}\n  ingress:\n    - from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]\n",
            "conformance.yaml:7: document 1 (NetworkPolicy default/bad): spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n  ingress:\n    - icmps: [{fields: [{type: 8}]}]\n",
            "conformance.yaml:7: document 1 (CiliumNetworkPolicy default/bad): spec.ingress[0].icmps: \"icmps\" is not supported yet",
        ),
        (
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  endpointSelector: {}\n",
            "conformance.yaml:9: document 2 (CiliumNetworkPolicy default/bad): metadata.name: duplicate policy: already defined in conformance.yaml document 1",
        ),
    ];
    assert!(bad.len() >= 20);
    for (yaml, expected) in bad {
        assert_eq!(
            net.apply(yaml),
            Response::Error {
                error: format!("invalid policy:\n{expected}")
            },
            "{yaml}"
        );
        let Response::Policies { policies } = net.c.call(Request::ListPolicies).unwrap() else {
            panic!("no policy list")
        };
        let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["backend-in"], "after {yaml}");
    }
    // The policy in force before still decides.
    assert!(net.reaches("frontend", "backend", 80, Tcp));
    assert!(!net.reaches("frontend", "backend", 8080, Tcp));
    assert!(!net.reaches("other", "backend", 80, Tcp));
}

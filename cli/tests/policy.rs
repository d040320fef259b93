//! `lumen policy` against a running observer: apply, list, trace, delete,
//! and the errors an operator meets.

mod support;

use support::{lumen, Live};

const BACKEND_IN: &str = "\
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
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: other}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other-out}
spec:
  podSelector: {matchLabels: {app: other}}
  policyTypes: [Egress]
";

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn apply_list_trace_and_delete_against_a_running_observer() {
    let live = Live::start("policy", "");
    let sock = live.cfg.control_socket.to_str().unwrap().to_string();
    let file = live.dir.join("backend.yaml");
    std::fs::write(&file, BACKEND_IN).unwrap();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--control-socket", &sock]);
        lumen(&all)
    };

    let (code, out, err) = run(&["policy", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "applied CiliumNetworkPolicy/default/backend-in\napplied NetworkPolicy/default/other-out\n"
        ),
        "{err}"
    );
    let (code, out, _) = run(&["policy", "list"]);
    assert_eq!(code, 0);
    let f = file.display();
    assert_eq!(
        out,
        format!(
            "KIND                 NAMESPACE  NAME        RULES  MODE     ORIGIN   SOURCE\n\
             CiliumNetworkPolicy  default    backend-in  1      enforce  runtime  {f}#1\n\
             NetworkPolicy        default    other-out   1      enforce  runtime  {f}#2\n"
        )
    );

    let trace =
        |from: &str, to: &str, port: &str| run(&["policy", "trace", "--from", from, "--to", to, "--port", port]);
    let (code, out, _) = trace("default/frontend", "default/backend", "80/tcp");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "egress of default/frontend: FORWARDED: no policy selects it in this direction\n\
         ingress of default/backend: FORWARDED: allowed by CiliumNetworkPolicy default/backend-in\n\
         verdict: FORWARDED\n"
    );
    let (_, out, _) = trace("default/frontend", "default/backend", "8080");
    assert_eq!(
        out,
        "egress of default/frontend: FORWARDED: no policy selects it in this direction\n\
         ingress of default/backend: DROPPED (POLICY_DENIED): no policy allowed it; default-deny because selected by CiliumNetworkPolicy default/backend-in\n\
         verdict: DROPPED\n"
    );
    // Labels instead of a pod; the sender's own egress policy decides first.
    let (_, out, _) = trace("app=other", "default/backend", "53/udp");
    assert_eq!(
        out,
        "egress of app=other: DROPPED (POLICY_DENIED): no policy allowed it; default-deny because selected by NetworkPolicy default/other-out\n\
         ingress of default/backend: DROPPED (POLICY_DENY): denied by CiliumNetworkPolicy default/backend-in\n\
         verdict: DROPPED\n"
    );
    // What trace says is what the datapath does.
    let be = live.pod("backend").clone();
    let _s = be.tcp_echo_server(8080).unwrap();
    let dst = std::net::SocketAddr::new(be.ipv4.into(), 8080);
    assert!(live
        .pod("frontend")
        .tcp_request(dst, b"x", std::time::Duration::from_millis(500))
        .is_err());

    let (code, _, err) = trace("default/nobody", "default/backend", "80");
    assert_eq!((code, err.as_str()), (1, "error: no endpoint default/nobody\n"));
    let (code, _, err) = trace("default/frontend", "default/backend", "80/gre");
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown protocol \"gre\" (tcp, udp, sctp, or the port `icmp`)"),
        "{err}"
    );

    let (code, out, _) = run(&["policy", "delete", "backend-in"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "deleted CiliumNetworkPolicy/default/backend-in\n")
    );
    let (code, _, err) = run(&["policy", "delete", "backend-in"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "error: no policy CiliumNetworkPolicy/default/backend-in\n")
    );
    let (code, out, _) = run(&["policy", "delete", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 1, "backend-in is gone already: nothing is deleted");
    assert_eq!(out, "");
    let (code, out, _) = run(&["policy", "delete", "other-out", "--kind", "netpol"]);
    assert_eq!((code, out.as_str()), (0, "deleted NetworkPolicy/default/other-out\n"));
    let (_, out, _) = run(&["policy", "list"]);
    assert_eq!(out, "KIND  NAMESPACE  NAME  RULES  MODE  ORIGIN  SOURCE\n");
    // Now nothing is enforced.
    assert_eq!(
        live.pod("frontend")
            .tcp_request(dst, b"x", std::time::Duration::from_secs(2))
            .unwrap(),
        b"x"
    );
}

//! The `lumen` binary as a user runs it.

mod support;

use support::{lumen, temp};

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use lumen_observer::identity::{IdentityAllocator, Labels};
use lumen_observer::{ObserverConfig, ObserverHandle};
use lumen_testbed::{PodSpec, Testbed};

#[test]
fn policy_validate_names_file_document_field_and_reason() {
    let dir = temp("validate");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web}\nspec:\n  endpointSelector: {}\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  endpointSelector: {}\n  ingress:\n    - fromCIDR: [10.0.0.0/33]\n      toPorts: [{ports: [{port: \"80\", protocol: GRE}]}]\n",
    )
    .unwrap();
    let (code, out, err) = lumen(&["policy", "validate", bad.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, ""));
    let b = bad.display();
    assert_eq!(
        err,
        format!(
            "{b}:13: document 2 (CiliumNetworkPolicy shop/db): spec.ingress[0].fromCIDR[0]: \"10.0.0.0/33\" is not a CIDR (address/prefix such as 10.0.0.0/8 or fd00::/64, or one address)\n\
             {b}:14: document 2 (CiliumNetworkPolicy shop/db): spec.ingress[0].toPorts[0].ports[0].protocol: unknown protocol \"GRE\" (TCP, UDP, SCTP, ANY)\n\
             error: 2 errors in the policies; nothing was applied\n"
        )
    );
    // A directory: every policy file in it.
    let good = dir.join("good");
    std::fs::create_dir(&good).unwrap();
    for name in ["a", "b"] {
        std::fs::write(
            good.join(format!("{name}.yaml")),
            format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  podSelector: {{}}\n"),
        )
        .unwrap();
    }
    let (code, out, _) = lumen(&["policy", "validate", good.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, "2 policies valid\n"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `lumen ui` is the web UI's binary beside `lumen`, every flag its own.
#[test]
fn lumen_ui_runs_the_web_ui_with_its_own_flags() {
    support::ui_binary();
    let (code, out, err) = lumen(&["ui", "--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Serves Lumen's service map and flow explorer to a browser\n"),
        "{out}"
    );
    assert!(out.contains("--auth-token-file <AUTH_TOKEN_FILE>"), "{out}");
    let (code, out, err) = lumen(&["ui", "--ring", "many"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("invalid value 'many' for '--ring <RING>'"), "{err}");
}

#[test]
fn unreachable_observer_and_bad_flags_are_explained() {
    let (code, _, err) = lumen(&["endpoint", "list", "--control-socket", "/nonexistent/lumen.sock"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: cannot reach the observer at /nonexistent/lumen.sock (is lumen-observer running? try --control-socket): No such file or directory (os error 2)\n"
    );
    let (code, _, err) = lumen(&["endpoint", "add", "web", "--ip", "10.0.0.1", "--label", "novalue"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid value 'novalue' for '--label <LABELS>': \"novalue\" is not a label: use key=value"),
        "{err}"
    );
    let (code, _, err) = lumen(&["aggregation", "lots"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'lots' for '<LEVEL>'"), "{err}");
    let (code, _, err) = lumen(&["observe-everything"]);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand 'observe-everything'"), "{err}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn endpoint_commands_against_a_running_observer() {
    let mut tb = Testbed::new().unwrap();
    let node = tb.add_node("n").unwrap();
    let web = tb
        .add_pod(
            &node,
            PodSpec::new("web", "shop", Ipv4Addr::new(10, 0, 0, 1)).label("app", "web"),
        )
        .unwrap();
    let dir = temp("endpoints");
    let socket = dir.join("control.sock");
    let endpoints = dir.join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!("endpoints:\n  - name: web\n    namespace: shop\n    labels: {{app: web}}\n    interface: {}\n    ips: [10.0.0.1]\n", web.host_ifname),
    )
    .unwrap();
    let policy = dir.join("web-in.yaml");
    std::fs::write(
        &policy,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web-in, namespace: shop}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n    - toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
    )
    .unwrap();
    let node_name = format!("{}-cli", tb.prefix());
    let mut cfg = ObserverConfig::in_dir(&node_name, &dir);
    cfg.netns = Some(node.netns.clone());
    cfg.endpoints = Some(endpoints);
    let _pins = support::Pins(cfg.pin_dir());
    let observer = ObserverHandle::spawn(cfg.clone());
    assert!(observer.wait_ready(Duration::from_secs(20)), "observer did not start");
    let sock = socket.to_str().unwrap();

    let (code, out, err) = lumen(&[
        "endpoint",
        "add",
        "db",
        "--namespace",
        "shop",
        "--label",
        "app=db",
        "--ip",
        "10.0.0.7",
        "--control-socket",
        sock,
    ]);
    assert_eq!(code, 0, "{err}");
    let db_id = IdentityAllocator::default().allocate(&Labels::for_endpoint(
        &BTreeMap::from([("app".into(), "db".into())]),
        "shop",
    ));
    let web_id = IdentityAllocator::default().allocate(&Labels::for_endpoint(&web.labels, "shop"));
    let db_ep = lumen_observer::endpoint::EndpointSpec {
        name: "db".into(),
        namespace: "shop".into(),
        labels: BTreeMap::new(),
        interface: None,
        ips: vec![],
        ports: vec![],
    }
    .endpoint_id();
    assert_eq!(out, format!("added shop/db (endpoint {db_ep}, identity {db_id})\n"));

    let (code, out, err) = lumen(&[
        "policy",
        "apply",
        "-f",
        policy.to_str().unwrap(),
        "--control-socket",
        sock,
    ]);
    assert_eq!(
        (code, out.as_str()),
        (0, "applied CiliumNetworkPolicy/shop/web-in\n"),
        "{err}"
    );
    let (code, out, _) = lumen(&["endpoint", "list", "--control-socket", sock]);
    assert_eq!(code, 0);
    let web_ep = lumen_observer::endpoint::EndpointSpec {
        name: "web".into(),
        namespace: "shop".into(),
        labels: BTreeMap::new(),
        interface: None,
        ips: vec![],
        ports: vec![],
    }
    .endpoint_id();
    let expected = [
        [
            "ENDPOINT",
            "ID",
            "IDENTITY",
            "INTERFACE",
            "IPS",
            "INGRESS",
            "EGRESS",
            "LABELS",
        ]
        .map(String::from),
        [
            "shop/web".into(),
            web_ep.to_string(),
            web_id.to_string(),
            web.host_ifname.clone(),
            "10.0.0.1".into(),
            "enforced".into(),
            "open".into(),
            "app=web".into(),
        ],
        [
            "shop/db".into(),
            db_ep.to_string(),
            db_id.to_string(),
            "-".into(),
            "10.0.0.7".into(),
            "open".into(),
            "open".into(),
            "app=db".into(),
        ],
    ];
    let widths: Vec<usize> = (0..8)
        .map(|i| expected.iter().map(|r| r[i].len()).max().unwrap())
        .collect();
    let table: String = expected
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
                + "\n"
        })
        .collect();
    assert_eq!(out, table);

    let (code, out, _) = lumen(&[
        "endpoint",
        "delete",
        "db",
        "--namespace",
        "shop",
        "--control-socket",
        sock,
    ]);
    assert_eq!((code, out.as_str()), (0, "deleted shop/db\n"));
    let (code, _, err) = lumen(&[
        "endpoint",
        "delete",
        "db",
        "--namespace",
        "shop",
        "--control-socket",
        sock,
    ]);
    assert_eq!((code, err.as_str()), (1, "error: no endpoint shop/db\n"));

    observer.stop().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn demo_shows_allowed_and_dropped_traffic_and_cleans_up() {
    let dir = temp("demo");
    let socket = dir.join("demo.sock");
    let node = format!("clidemo{}", std::process::id());
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string()
    };
    let (relay, ui) = (free(), free());
    let (code, out, err) = lumen(&[
        "demo",
        "--duration",
        "8s",
        "--policy-after",
        "3s",
        "--node-name",
        &node,
        "--relay-address",
        &relay,
        "--ui-address",
        &ui,
        "--control-socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let connected: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("[relay] NODE_CONNECTED: "))
        .flat_map(|names| names.split(", "))
        .collect();
    for n in 1..=3 {
        assert!(connected.contains(&format!("{node}-node{n}").as_str()), "{out}");
    }
    // The web UI starts when lumen-ui was built beside lumen.
    let ui_built = std::path::Path::new(env!("CARGO_BIN_EXE_lumen"))
        .with_file_name("lumen-ui")
        .exists();
    let ui_line = format!("  web UI           http://{ui}/  (service map and flows)");
    assert_eq!(out.lines().any(|l| l == ui_line), ui_built, "{out}");
    let before = out.split(">>> policies applied").next().unwrap();
    assert!(
        before.lines().all(|l| !(l.starts_with('[') && l.contains("DROPPED"))),
        "nothing is dropped before the policies:\n{before}"
    );
    let after_policy = out
        .split(">>> policies applied")
        .nth(1)
        .unwrap_or_else(|| panic!("no policy banner:\n{out}"));
    let on = |n: u8| -> Vec<&str> {
        let prefix = format!("[{node}-node{n}] ");
        after_policy.lines().filter(|l| l.starts_with(&prefix)).collect()
    };
    // The mistake: checkout's connections to the database (on node2).
    assert!(
        on(2).iter().any(|l| l.contains("shop/checkout:")
            && l.contains("-> data/db:5432 (ID:")
            && l.ends_with(
                "Policy denied DROPPED (TCP Flags: SYN) [no policy allowed it; selected by CiliumNetworkPolicy data/db-in]"
            )),
        "{out}"
    );
    // The deny: the frontend calling payments directly (on node3).
    assert!(
        on(3).iter().any(|l| l.contains("shop/frontend-2:")
            && l.contains("-> pay/payments:8443 (ID:")
            && l.ends_with(
                "Policy denied by denylist DROPPED (TCP Flags: SYN) [denied by CiliumNetworkPolicy pay/payments-in]"
            )),
        "{out}"
    );
    // Nothing else is dropped: the paths the policies allow stay open.
    // (Connections open when the policies came are cut too, their replies
    // dropped: `<- data/db:5432`.)
    let drops: Vec<&str> = after_policy.lines().filter(|l| l.contains("DROPPED")).collect();
    assert!(
        drops
            .iter()
            .all(|l| (l.contains("shop/checkout:") && l.contains(" data/db:5432 "))
                || (l.contains("shop/frontend-2:") && l.contains(" pay/payments:8443 "))),
        "{drops:#?}"
    );
    assert!(out.contains("\ndemo finished: "), "{out}");
    for n in 1..=3 {
        assert!(!std::path::Path::new("/sys/fs/bpf/lumen")
            .join(format!("{node}-node{n}"))
            .exists());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

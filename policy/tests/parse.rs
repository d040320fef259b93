//! The policy parser as a user meets it: files in, the normalised model or
//! every error (file, document, line, object, field, reason) out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use lumen_policy::model::{
    Direction, Entity, Kind, Operator, Origin, Peer, PeerRule, Policy, Port, PortRule, Protocol, Requirement, Rule,
    Selector, NAMESPACE_LABEL,
};
use lumen_policy::{load_path, parse_str, PolicyError};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn load(path: &Path) -> Vec<Policy> {
    load_path(path).unwrap_or_else(|errors| panic!("{}", render(&errors)))
}

fn render(errors: &[PolicyError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.to_string(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn sel(pairs: &[(&str, &str)], expressions: Vec<Requirement>) -> Selector {
    Selector {
        match_labels: labels(pairs),
        match_expressions: expressions,
    }
}

fn in_ns(ns: &str) -> Requirement {
    req(NAMESPACE_LABEL, Operator::In, &[ns])
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn cidr(s: &str, except: &[&str]) -> Peer {
    Peer::Cidr {
        cidr: net(s),
        except: except.iter().map(|e| net(e)).collect(),
    }
}

fn ports(port: u16, end: u16, protocol: Protocol) -> PortRule {
    PortRule {
        port: Port::Range { port, end },
        protocol,
    }
}

fn peer_rule(peers: Vec<Peer>, ports: Vec<PortRule>) -> PeerRule {
    PeerRule { peers, ports }
}

#[test]
fn cilium_network_policy_with_every_field() {
    let file = data("cnp-every-field.yaml");
    let policies = load(&file);
    let shop = || in_ns("shop");
    let expected = Policy {
        kind: Kind::CiliumNetworkPolicy,
        name: "web-policy".into(),
        namespace: Some("shop".into()),
        audit: true,
        rules: vec![Rule {
            subject: sel(
                &[("app", "web")],
                vec![req("tier", Operator::In, &["frontend", "edge"]), shop()],
            ),
            ingress: Direction {
                selects: true,
                allow: vec![
                    peer_rule(
                        vec![
                            Peer::Endpoints(sel(&[("app", "lb")], vec![shop()])),
                            Peer::Endpoints(sel(&[(NAMESPACE_LABEL, "monitoring"), ("app", "prometheus")], vec![])),
                            Peer::Endpoints(sel(&[], vec![shop()])),
                        ],
                        vec![
                            ports(80, 80, Protocol::Tcp),
                            ports(8000, 8080, Protocol::Any),
                            PortRule {
                                port: Port::Named("http-alt".into()),
                                protocol: Protocol::Udp,
                            },
                        ],
                    ),
                    peer_rule(
                        vec![
                            cidr("192.0.2.0/24", &[]),
                            cidr("2001:db8::1/128", &[]),
                            cidr("10.0.0.0/8", &["10.96.0.0/12"]),
                            Peer::Entity(Entity::World),
                            Peer::Any,
                        ],
                        vec![],
                    ),
                    peer_rule(
                        vec![Peer::Any],
                        vec![
                            ports(443, 443, Protocol::Sctp),
                            PortRule {
                                port: Port::All,
                                protocol: Protocol::Any,
                            },
                        ],
                    ),
                    peer_rule(vec![], vec![]),
                ],
                deny: vec![peer_rule(
                    vec![Peer::Entity(Entity::RemoteNode)],
                    vec![ports(22, 22, Protocol::Any)],
                )],
                default_deny: Some(true),
            },
            egress: Direction {
                selects: true,
                allow: vec![
                    peer_rule(
                        vec![
                            // Reserved identities are in no namespace: not scoped.
                            Peer::Endpoints(sel(&[("reserved:kube-apiserver", "")], vec![])),
                            Peer::Endpoints(sel(
                                &[],
                                vec![
                                    req("app", Operator::NotIn, &["db"]),
                                    req("tier", Operator::Exists, &[]),
                                    req("legacy", Operator::DoesNotExist, &[]),
                                    shop(),
                                ],
                            )),
                        ],
                        vec![PortRule {
                            port: Port::All,
                            protocol: Protocol::Any,
                        }],
                    ),
                    peer_rule(
                        vec![
                            cidr("203.0.113.7/32", &[]),
                            cidr("2001:db8::/32", &["2001:db8:1::/48"]),
                            Peer::Entity(Entity::KubeApiserver),
                            Peer::Entity(Entity::Cluster),
                        ],
                        vec![],
                    ),
                ],
                deny: vec![peer_rule(vec![Peer::Entity(Entity::World)], vec![])],
                default_deny: Some(false),
            },
        }],
        origin: Origin { file, document: 1 },
    };
    assert_eq!(policies, vec![expected]);
}

#[test]
fn clusterwide_policy_with_specs_is_not_scoped() {
    let file = data("ccnp-specs.yaml");
    let expected = Policy {
        kind: Kind::CiliumClusterwideNetworkPolicy,
        name: "cluster-dns".into(),
        namespace: None,
        audit: false,
        rules: vec![
            Rule {
                subject: Selector::all(),
                ingress: Direction::default(),
                egress: Direction {
                    selects: true,
                    allow: vec![peer_rule(
                        vec![
                            Peer::Endpoints(sel(
                                &[(NAMESPACE_LABEL, "kube-system"), ("k8s-app", "kube-dns")],
                                vec![],
                            )),
                            Peer::Endpoints(sel(&[("app", "resolver")], vec![])),
                        ],
                        vec![ports(53, 53, Protocol::Udp)],
                    )],
                    deny: vec![],
                    default_deny: None,
                },
            },
            Rule {
                subject: sel(&[("role", "db")], vec![]),
                ingress: Direction {
                    selects: true,
                    ..Direction::default()
                },
                egress: Direction {
                    selects: false,
                    default_deny: Some(false),
                    ..Direction::default()
                },
            },
        ],
        origin: Origin {
            file: file.clone(),
            document: 1,
        },
    };
    assert_eq!(load(&file), vec![expected]);
}

#[test]
fn kubernetes_network_policy() {
    let file = data("knp.yaml");
    let prefixed = |key: &str| format!("io.cilium.k8s.namespace.labels.{key}");
    let expected = Policy {
        kind: Kind::NetworkPolicy,
        name: "db".into(),
        namespace: Some("prod".into()),
        audit: false,
        rules: vec![Rule {
            subject: sel(&[("app", "db")], vec![in_ns("prod")]),
            ingress: Direction {
                selects: true,
                allow: vec![
                    peer_rule(
                        vec![
                            Peer::Endpoints(sel(&[("app", "api"), (&prefixed("team"), "backend")], vec![])),
                            Peer::Endpoints(sel(&[], vec![req("role", Operator::In, &["admin"]), in_ns("prod")])),
                            Peer::Endpoints(sel(&[], vec![req(&prefixed("env"), Operator::NotIn, &["dev"])])),
                            Peer::Endpoints(Selector::all()),
                            cidr("172.16.0.0/16", &["172.16.1.0/24"]),
                        ],
                        vec![
                            ports(5432, 5432, Protocol::Tcp),
                            PortRule {
                                port: Port::Named("metrics".into()),
                                protocol: Protocol::Tcp,
                            },
                            ports(7000, 7100, Protocol::Udp),
                            PortRule {
                                port: Port::All,
                                protocol: Protocol::Sctp,
                            },
                        ],
                    ),
                    peer_rule(vec![Peer::Any], vec![]),
                ],
                deny: vec![],
                default_deny: None,
            },
            egress: Direction {
                selects: true,
                allow: vec![peer_rule(
                    vec![cidr("10.0.0.0/8", &[])],
                    vec![ports(53, 53, Protocol::Udp)],
                )],
                deny: vec![],
                default_deny: None,
            },
        }],
        origin: Origin {
            file: file.clone(),
            document: 1,
        },
    };
    assert_eq!(load(&file), vec![expected]);
}

#[test]
fn network_policy_types_default_from_the_rules_given() {
    let knp = |spec: &str| {
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\n\
             spec:\n  podSelector: {{}}\n{spec}"
        );
        let policies = parse_str(&text, Path::new("p.yaml")).unwrap_or_else(|e| panic!("{}", render(&e)));
        let rule = &policies[0].rules[0];
        (
            rule.ingress.selects,
            rule.egress.selects,
            rule.ingress.allow.len(),
            rule.egress.allow.len(),
        )
    };
    assert_eq!(knp(""), (true, false, 0, 0));
    assert_eq!(knp("  egress: []\n"), (true, true, 0, 0));
    assert_eq!(knp("  egress: [{}]\n  ingress: [{}]\n"), (true, true, 1, 1));
    // Rules of a direction policyTypes leaves out have no effect.
    assert_eq!(knp("  policyTypes: [Egress]\n  ingress: [{}]\n"), (false, true, 0, 0));
}

#[test]
fn multi_document_file_keeps_document_numbers() {
    let file = data("multi.yaml");
    let got: Vec<(Kind, Option<String>, String, Origin)> = load(&file)
        .into_iter()
        .map(|p| (p.kind, p.namespace, p.name, p.origin))
        .collect();
    let origin = |document| Origin {
        file: file.clone(),
        document,
    };
    assert_eq!(
        got,
        vec![
            (
                Kind::CiliumNetworkPolicy,
                Some("default".into()),
                "allow-web".into(),
                origin(1)
            ),
            (Kind::NetworkPolicy, Some("prod".into()), "deny-all".into(), origin(3)),
            (
                Kind::CiliumClusterwideNetworkPolicy,
                None,
                "allow-web".into(),
                origin(4)
            ),
        ]
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(parse_str(&text, &file).unwrap(), load(&file));
    assert_eq!(parse_str("", &file), Ok(vec![]));
    assert_eq!(parse_str("# nothing\n---\n---\n", &file), Ok(vec![]));
}

/// A directory under the system temp dir, removed when dropped (also when
/// the test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!("lumen-policy-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cnp_named(name: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  endpointSelector: {{}}\n"
    )
}

#[test]
fn directory_reads_policy_files_in_name_order() {
    let dir = TempDir::new("dir");
    let b = dir.write("b.yaml", &format!("{}---\n{}", cnp_named("b1"), cnp_named("b2")));
    let a = dir.write("a.yml", &cnp_named("a"));
    // JSON is YAML too, tab indentation included.
    let json = "{\n\
        \t\"apiVersion\": \"cilium.io/v2\",\n\
        \t\"kind\": \"CiliumClusterwideNetworkPolicy\",\n\
        \t\"metadata\": {\"name\": \"c\"},\n\
        \t\"spec\": {\"endpointSelector\": {}, \"ingress\": [{\"fromEntities\": [\"host\"]}]}\n\
        }\n";
    let c = dir.write("c.json", json);
    dir.write("notes.txt", "not a policy");
    // Not recursive: neither a subdirectory's files nor a directory whose
    // name looks like a policy file are read.
    dir.write("sub/d.yaml", &cnp_named("d"));
    dir.write("e.yaml/f.yaml", &cnp_named("f"));
    let got: Vec<(String, Origin)> = load(&dir.0).into_iter().map(|p| (p.name, p.origin)).collect();
    let origin = |file: &PathBuf, document| Origin {
        file: file.clone(),
        document,
    };
    assert_eq!(
        got,
        vec![
            ("a".into(), origin(&a, 1)),
            ("b1".into(), origin(&b, 1)),
            ("b2".into(), origin(&b, 2)),
            ("c".into(), origin(&c, 1)),
        ]
    );
}

#[test]
fn duplicates_across_files_and_unreadable_paths() {
    let dir = TempDir::new("dup");
    let first = dir.write("1.yaml", &cnp_named("web"));
    let second = dir.write("2.yaml", &format!("# again\n{}", cnp_named("web")));
    let errors = load_path(&dir.0).unwrap_err();
    assert_eq!(
        errors,
        vec![PolicyError {
            file: second,
            document: 1,
            line: Some(5),
            object: Some("CiliumNetworkPolicy default/web".into()),
            field: "metadata.name".into(),
            reason: format!("duplicate policy: already defined in {} document 1", first.display()),
        }]
    );
    let missing = dir.0.join("missing.yaml");
    let errors = load_path(&missing).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].file.as_path(), errors[0].document, errors[0].line),
        (missing.as_path(), 0, None)
    );
    assert!(errors[0].reason.starts_with("cannot read: "), "{}", errors[0].reason);
}

/// A case of `tests/data/malformed.yaml`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "first")]
    document: usize,
    field: String,
    reason: String,
    text: String,
}

fn first() -> usize {
    1
}

#[test]
fn malformed_policies_name_document_field_and_reason() {
    let table = std::fs::read_to_string(data("malformed.yaml")).unwrap();
    let cases: Vec<Case> = serde_yaml_ng::from_str(&table).unwrap();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut failures = String::new();
    for case in &cases {
        let errors = match parse_str(&case.text, Path::new("case.yaml")) {
            Ok(policies) => {
                failures += &format!("{}: accepted as {policies:?}\n", case.name);
                continue;
            }
            Err(errors) => errors,
        };
        let expected = (
            Path::new("case.yaml"),
            case.document,
            case.field.as_str(),
            case.reason.as_str(),
        );
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.file.as_path(), e.document, e.field.as_str(), e.reason.as_str()))
            .collect();
        if got != [expected] {
            failures += &format!(
                "{}: expected one error: document {}: {}: {}\n  got:\n{}",
                case.name,
                case.document,
                case.field,
                case.reason,
                render(&errors)
            );
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn every_error_of_a_file_is_reported_with_its_line() {
    let text = "\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web
  namespace: shop
spec:
  endpointSelector: {}
  ingress:
    - fromCIDR: [10.0.0.0/33]
      fromEntities: [galaxy]
      toPorts:
        - ports:
            - port: \"70000\"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db}
spec:
  podSelectors: {}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: fine}
spec: {endpointSelector: {}}
---
apiVersion: v1
kind: ConfigMap
";
    let errors = parse_str(text, Path::new("p/all.yaml")).unwrap_err();
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let web = |line: usize, rest: &str| {
        format!("p/all.yaml:{line}: document 1 (CiliumNetworkPolicy shop/web): spec.ingress[0].{rest}")
    };
    assert_eq!(
        got,
        vec![
            web(
                9,
                "fromCIDR[0]: \"10.0.0.0/33\" is not a CIDR (address/prefix such as 10.0.0.0/8 or fd00::/64, or \
                 one address)"
            ),
            web(
                10,
                "fromEntities[0]: unknown entity \"galaxy\" (all, world, host, cluster, remote-node, \
                 kube-apiserver, ingress, health, init, unmanaged)"
            ),
            web(13, "toPorts[0].ports[0].port: port 70000 is out of range (0-65535)"),
            "p/all.yaml:19: document 2 (NetworkPolicy default/db): spec.podSelectors: unknown field \"podSelectors\", \
             expected one of \"podSelector\", \"policyTypes\", \"ingress\", \"egress\""
                .to_string(),
            "p/all.yaml:27: document 4: kind: unknown kind \"ConfigMap\" (CiliumNetworkPolicy, \
             CiliumClusterwideNetworkPolicy, NetworkPolicy)"
                .to_string(),
        ]
    );
    assert_eq!(
        errors[0],
        PolicyError {
            file: PathBuf::from("p/all.yaml"),
            document: 1,
            line: Some(9),
            object: Some("CiliumNetworkPolicy shop/web".into()),
            field: "spec.ingress[0].fromCIDR[0]".into(),
            reason: "\"10.0.0.0/33\" is not a CIDR (address/prefix such as 10.0.0.0/8 or fd00::/64, or one address)"
                .into(),
        }
    );
}

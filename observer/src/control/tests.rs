//! The control service over a Unix socket, on a node state without a
//! kernel: the answers, and for each kind of failure the status code and
//! the exact text `lumen` prints.

use std::path::PathBuf;

use lumen_policy::compile::RuleMeta;
use lumen_policy::trace::{Decision, Verdict};
use lumen_proto::lumen::v1::control_client::ControlClient;
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::Code;

use super::*;
use crate::endpoint::check_set;

/// Endpoints and policies as lists, with the node's rules for them.
#[derive(Default)]
struct FakeNode {
    file_endpoints: Vec<EndpointSpec>,
    runtime_endpoints: Vec<EndpointSpec>,
    file_policies: Vec<String>,
    runtime_policies: Vec<String>,
    aggregation: Option<crate::Aggregation>,
}

fn view(spec: &EndpointSpec, origin: &str) -> EndpointView {
    EndpointView {
        spec: spec.clone(),
        endpoint_id: spec.endpoint_id(),
        identity: 1000,
        origin: origin.into(),
        enforce_ingress: true,
        enforce_egress: false,
    }
}

fn trace_answer() -> Trace {
    let backend_in = RuleMeta {
        name: "backend-in".into(),
        namespace: "default".into(),
        kind: "CiliumNetworkPolicy".into(),
        match_type: 0,
    };
    Trace {
        egress: None,
        ingress: Some(Decision {
            verdict: Verdict::Dropped,
            drop_reason: 133,
            by: None,
            selected_by: vec![backend_in],
            enforced: true,
        }),
        verdict: Verdict::Dropped,
    }
}

impl NodeControl for FakeNode {
    fn endpoints(&mut self) -> Vec<EndpointView> {
        let file = self.file_endpoints.iter().map(|e| view(e, "file"));
        file.chain(self.runtime_endpoints.iter().map(|e| view(e, "runtime")))
            .collect()
    }
    fn add_endpoint(&mut self, spec: EndpointSpec) -> Result<EndpointView, StateError> {
        let mut all: Vec<EndpointSpec> = self
            .file_endpoints
            .iter()
            .chain(&self.runtime_endpoints)
            .cloned()
            .collect();
        all.push(spec.clone());
        check_set(&all).map_err(|(_, e)| StateError::Endpoints(e))?;
        self.runtime_endpoints.push(spec.clone());
        Ok(view(&spec, "runtime"))
    }
    fn delete_endpoint(&mut self, namespace: &str, name: &str) -> Result<(), StateError> {
        let key = format!("{namespace}/{name}");
        if self.file_endpoints.iter().any(|e| e.key() == key) {
            let file = "endpoints.yaml".into();
            return Err(StateError::FromFile { key, file });
        }
        let before = self.runtime_endpoints.len();
        self.runtime_endpoints.retain(|e| e.key() != key);
        if self.runtime_endpoints.len() == before {
            return Err(StateError::NotFound { key });
        }
        Ok(())
    }
    fn apply_policies(&mut self, policies: Vec<lumen_policy::Policy>) -> Result<(), StateError> {
        for p in &policies {
            if self.file_policies.contains(&p.key()) {
                let file = "policies.yaml".into();
                return Err(PolicyStoreError::FromFile { key: p.key(), file }.into());
            }
        }
        self.runtime_policies
            .extend(policies.iter().map(lumen_policy::Policy::key));
        Ok(())
    }
    fn delete_policies(&mut self, keys: &[String]) -> Result<(), StateError> {
        for key in keys {
            if !self.runtime_policies.contains(key) {
                return Err(PolicyStoreError::NotFound { key: key.clone() }.into());
            }
        }
        self.runtime_policies.retain(|k| !keys.contains(k));
        Ok(())
    }
    fn list_policies(&self) -> Vec<PolicyView> {
        let view = |key: &String, origin: &str| {
            let r = convert::policy_ref_of_key(key);
            PolicyView {
                kind: r.kind,
                namespace: r.namespace,
                name: r.name,
                origin: origin.into(),
                source: "policies.yaml".into(),
                document: 1,
                rules: 1,
                audit: false,
            }
        };
        let file = self.file_policies.iter().map(|k| view(k, "file"));
        file.chain(self.runtime_policies.iter().map(|k| view(k, "runtime")))
            .collect()
    }
    fn trace(&mut self, from: &str, to: &str, _proto: u8, _port: u16) -> Result<Trace, StateError> {
        for end in [from, to] {
            if end != "default/frontend" && end != "default/backend" {
                return Err(StateError::NotFound { key: end.into() });
            }
        }
        Ok(trace_answer())
    }
    fn set_aggregation(&mut self, level: crate::Aggregation) -> Result<(), StateError> {
        self.aggregation = Some(level);
        Ok(())
    }
}

fn spec(name: &str, ip: &str) -> pb::EndpointSpec {
    pb::EndpointSpec {
        name: name.into(),
        namespace: "default".into(),
        labels: [("app".to_string(), name.to_string())].into(),
        ips: vec![ip.into()],
        interface: None,
        ports: vec![pb::NamedPort {
            name: "http".into(),
            port: 8080,
            protocol: "TCP".into(),
        }],
    }
}

struct Served {
    dir: PathBuf,
    state: Arc<Mutex<FakeNode>>,
    telemetry: Arc<crate::telemetry::Telemetry>,
    stop: watch::Sender<bool>,
    client: ControlClient<Channel>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn serve_fake(name: &str) -> Served {
    let dir = std::env::temp_dir().join(format!("lumen-control-{}-{name}", std::process::id()));
    let socket = dir.join("control.sock");
    let web = EndpointSpec::try_from(spec("web", "10.0.0.1")).unwrap();
    let state = Arc::new(Mutex::new(FakeNode {
        file_endpoints: vec![web],
        file_policies: vec!["CiliumNetworkPolicy/default/from-file".into()],
        ..FakeNode::default()
    }));
    let (stop, shutdown) = watch::channel(false);
    let telemetry = Arc::new(crate::telemetry::Telemetry::default());
    tokio::spawn(serve(
        bind(&socket).unwrap(),
        state.clone(),
        telemetry.clone(),
        shutdown,
    ));
    assert!(answers(&socket).await);
    let client = ControlClient::new(crate::server::connect_unix(&socket).await.unwrap());
    Served {
        dir,
        state,
        telemetry,
        stop,
        client,
    }
}

fn status<T: std::fmt::Debug>(r: Result<tonic::Response<T>, Status>) -> (Code, String) {
    let s = r.unwrap_err();
    (s.code(), s.message().to_string())
}

fn documents(source: &str, yaml: &str) -> Vec<pb::PolicyDocument> {
    vec![pb::PolicyDocument {
        source: source.into(),
        yaml: yaml.into(),
    }]
}

const NETPOL: &str =
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec:\n  podSelector: {}\n";
const FROM_FILE: &str =
    "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: from-file}\nspec:\n  endpointSelector: {}\n";
const BAD_NETPOL: &str =
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad}\nspec:\n  podSelector: {}\n  policyTypes: [Inbound]\n";

#[tokio::test]
async fn endpoints_are_added_listed_and_deleted_with_precise_errors() {
    let mut s = serve_fake("endpoints").await;
    let c = &mut s.client;

    let added = c
        .add_endpoint(pb::AddEndpointRequest {
            endpoint: Some(spec("db", "10.0.0.7")),
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    let db = EndpointSpec::try_from(spec("db", "10.0.0.7")).unwrap();
    assert_eq!(EndpointView::try_from(added).unwrap(), view(&db, "runtime"));
    let listed = c
        .list_endpoints(pb::ListEndpointsRequest {})
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<(String, pb::Origin)> = listed
        .endpoints
        .iter()
        .map(|e| {
            (
                format!(
                    "{}/{}",
                    e.spec.as_ref().unwrap().namespace,
                    e.spec.as_ref().unwrap().name
                ),
                e.origin(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("default/web".to_string(), pb::Origin::File),
            ("default/db".to_string(), pb::Origin::Runtime)
        ]
    );

    let add = |name: &str, ip: &str| pb::AddEndpointRequest {
        endpoint: Some(spec(name, ip)),
    };
    assert_eq!(
        status(c.add_endpoint(add("dup", "10.0.0.7")).await),
        (
            Code::AlreadyExists,
            "ip 10.0.0.7 of default/dup is already used by another endpoint".into()
        )
    );
    assert_eq!(
        status(c.add_endpoint(add("db", "10.0.0.8")).await),
        (Code::AlreadyExists, "endpoint default/db is declared twice".into())
    );
    assert_eq!(
        status(c.add_endpoint(add("Bad_Name", "10.0.0.9")).await),
        (
            Code::InvalidArgument,
            "endpoint name \"Bad_Name\" is not a DNS label (a-z, 0-9, '-', at most 63)".into()
        )
    );
    assert_eq!(
        status(c.add_endpoint(add("odd", "10.0.0.300")).await),
        (
            Code::InvalidArgument,
            "\"10.0.0.300\" of default/odd is not an IP address".into()
        )
    );
    assert_eq!(
        status(c.add_endpoint(pb::AddEndpointRequest { endpoint: None }).await),
        (Code::InvalidArgument, "the request has no endpoint".into())
    );

    let delete = |name: &str| pb::DeleteEndpointRequest {
        namespace: "default".into(),
        name: name.into(),
    };
    c.delete_endpoint(delete("db")).await.unwrap();
    assert_eq!(
        status(c.delete_endpoint(delete("db")).await),
        (Code::NotFound, "no endpoint default/db".into())
    );
    assert_eq!(
        status(c.delete_endpoint(delete("web")).await),
        (
            Code::FailedPrecondition,
            "endpoint default/web comes from endpoints.yaml: edit that file instead".into()
        )
    );
    assert_eq!(s.state.lock().unwrap().runtime_endpoints, []);
    // Each refusal above is counted under its method.
    let failed = &s.telemetry.control_failed;
    assert_eq!(
        (
            failed.get("add_endpoint"),
            failed.get("delete_endpoint"),
            failed.get("list_endpoints")
        ),
        (5, 2, 0)
    );
}

#[tokio::test]
async fn policies_are_validated_applied_listed_and_deleted_with_precise_errors() {
    let mut s = serve_fake("policies").await;
    let c = &mut s.client;
    let web = pb::PolicyRef {
        kind: "NetworkPolicy".into(),
        namespace: "default".into(),
        name: "web".into(),
    };

    let valid = c
        .validate_policies(pb::ValidatePoliciesRequest {
            documents: documents("web.yaml", NETPOL),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(valid.policies, vec![web.clone()]);
    let invalid = "invalid policy:\nbad.yaml:6: document 1 (NetworkPolicy default/bad): spec.policyTypes[0]: unknown policy type \"Inbound\" (Ingress, Egress)";
    assert_eq!(
        status(
            c.validate_policies(pb::ValidatePoliciesRequest {
                documents: documents("bad.yaml", BAD_NETPOL),
            })
            .await
        ),
        (Code::InvalidArgument, invalid.into())
    );
    assert_eq!(
        status(
            c.apply_policies(pb::ApplyPoliciesRequest {
                documents: documents("bad.yaml", BAD_NETPOL),
            })
            .await
        ),
        (Code::InvalidArgument, invalid.into())
    );
    assert_eq!(
        status(
            c.apply_policies(pb::ApplyPoliciesRequest {
                documents: documents("mine.yaml", FROM_FILE),
            })
            .await
        ),
        (
            Code::FailedPrecondition,
            "CiliumNetworkPolicy/default/from-file comes from policies.yaml: edit that file instead".into()
        )
    );

    let applied = c
        .apply_policies(pb::ApplyPoliciesRequest {
            documents: documents("web.yaml", NETPOL),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.applied, vec![web.clone()]);
    let listed = c.list_policies(pb::ListPoliciesRequest {}).await.unwrap().into_inner();
    let views: Vec<PolicyView> = listed.policies.into_iter().map(Into::into).collect();
    assert_eq!(
        views
            .iter()
            .map(|v| (v.name.as_str(), v.origin.as_str()))
            .collect::<Vec<_>>(),
        [("from-file", "file"), ("web", "runtime")]
    );

    let nope = pb::PolicyRef {
        kind: "CiliumNetworkPolicy".into(),
        namespace: "default".into(),
        name: "nope".into(),
    };
    assert_eq!(
        status(
            c.delete_policies(pb::DeletePoliciesRequest {
                policies: vec![web.clone(), nope],
            })
            .await
        ),
        (Code::NotFound, "no policy CiliumNetworkPolicy/default/nope".into())
    );
    c.delete_policies(pb::DeletePoliciesRequest { policies: vec![web] })
        .await
        .unwrap();
    assert_eq!(s.state.lock().unwrap().runtime_policies, Vec::<String>::new());
}

/// A status message travels in a header: a long list of errors is cut to
/// its first lines so that it still arrives, saying how many are left out.
#[tokio::test]
async fn a_long_list_of_policy_errors_arrives_cut() {
    let mut s = serve_fake("many").await;
    let documents = (0..400)
        .map(|i| pb::PolicyDocument {
            source: format!("bad{i:03}.yaml"),
            yaml: BAD_NETPOL.into(),
        })
        .collect();
    let (code, message) = status(s.client.apply_policies(pb::ApplyPoliciesRequest { documents }).await);
    assert_eq!(code, Code::InvalidArgument);
    let lines: Vec<&str> = message.lines().collect();
    let error = |i: usize| {
        format!("bad{i:03}.yaml:6: document 1 (NetworkPolicy default/bad): spec.policyTypes[0]: unknown policy type \"Inbound\" (Ingress, Egress)")
    };
    // An error takes 149 bytes on the wire (its spaces and quotes escaped),
    // its newline 3: after "invalid policy:", 53 fit in 8 KiB less 32.
    let shown = 53;
    assert_eq!(lines.len(), 1 + shown + 1);
    assert_eq!(lines[0], "invalid policy:");
    assert_eq!(lines[1..=shown], (0..shown).map(error).collect::<Vec<_>>());
    assert_eq!(lines[shown + 1], format!("... and {} more", 400 - shown));
}

#[tokio::test]
async fn trace_and_aggregation_answer_typed_and_refuse_bad_input() {
    let mut s = serve_fake("trace").await;
    let c = &mut s.client;
    let request = |from: &str, protocol: u32, port: u32| pb::TracePolicyRequest {
        from: from.into(),
        to: "default/backend".into(),
        protocol,
        port,
    };
    let answer = c
        .trace_policy(request("default/frontend", 6, 80))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.verdict(), pb::TraceVerdict::Dropped);
    assert_eq!(convert::trace_of(answer).unwrap(), trace_answer());
    assert_eq!(
        status(c.trace_policy(request("default/nobody", 6, 80)).await),
        (Code::NotFound, "no endpoint default/nobody".into())
    );
    assert_eq!(
        status(c.trace_policy(request("default/frontend", 6, 70000)).await),
        (
            Code::InvalidArgument,
            "port 70000 is not a number from 1 to 65535".into()
        )
    );
    assert_eq!(
        status(c.trace_policy(request("default/frontend", 256, 80)).await),
        (
            Code::InvalidArgument,
            "protocol 256 is not an IP protocol number (0-255)".into()
        )
    );

    let level = |l: pb::AggregationLevel| pb::SetAggregationRequest { level: l.into() };
    c.set_aggregation(level(pb::AggregationLevel::Medium)).await.unwrap();
    assert_eq!(s.state.lock().unwrap().aggregation, Some(crate::Aggregation::Medium));
    assert_eq!(
        status(c.set_aggregation(level(pb::AggregationLevel::Unspecified)).await),
        (
            Code::InvalidArgument,
            "unknown aggregation level 0 (none, medium, max)".into()
        )
    );
}

#[test]
fn every_state_error_has_its_code() {
    let cases: Vec<(StateError, Code, &str)> = vec![
        (
            StateError::Invalid {
                reason: "\"x\" in \"x\" is not key=value".into(),
            },
            Code::InvalidArgument,
            "\"x\" in \"x\" is not key=value",
        ),
        (
            crate::datapath::DatapathError::NoInterface { ifname: "lxc9".into() }.into(),
            Code::InvalidArgument,
            "interface lxc9 does not exist in this network namespace; create it or fix the endpoint's `interface`",
        ),
        (
            StateError::Persist {
                path: "/run/endpoints.json".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
            Code::Internal,
            "cannot save runtime endpoints to /run/endpoints.json: permission denied",
        ),
        (
            PolicyStoreError::Corrupt {
                path: "/run/policies.json".into(),
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            }
            .into(),
            Code::DataLoss,
            "runtime policies in /run/policies.json are unreadable: expected value at line 1 column 1",
        ),
    ];
    for (e, code, text) in cases {
        let s = Status::from(ControlError::from(e));
        assert_eq!((s.code(), s.message()), (code, text));
    }
}

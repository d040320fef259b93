//! The observer's control API: JSON lines over a Unix socket, one request
//! and one response per line. `lumen endpoint …` and `lumen rules apply`
//! speak it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::daemon::Aggregation;
use crate::endpoint::EndpointSpec;
use crate::policies::PolicyView;
use crate::state::{EndpointView, NodeState, StateError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    AddEndpoint {
        endpoint: EndpointSpec,
    },
    DeleteEndpoint {
        namespace: String,
        name: String,
    },
    ListEndpoints,
    /// Creates or replaces the policies the YAML documents define, all or
    /// none (`source` names a document's file in errors).
    ApplyPolicies {
        documents: Vec<PolicyDocument>,
    },
    /// Deletes policies by key (`Kind/namespace/name`, `Kind/name`).
    DeletePolicies {
        keys: Vec<String>,
    },
    ListPolicies,
    /// The verdict for a new connection, computed without traffic.
    TracePolicy {
        from: String,
        to: String,
        /// IP protocol number.
        proto: u8,
        port: u16,
    },
    /// Changes which packets become events, at once.
    SetAggregation {
        level: Aggregation,
    },
}

/// One file's text as the CLI read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    pub source: String,
    pub yaml: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    Ok,
    Endpoint { endpoint: EndpointView },
    Endpoints { endpoints: Vec<EndpointView> },
    Policies { policies: Vec<PolicyView> },
    Trace { trace: lumen_policy::trace::Trace },
    Error { error: String },
}

/// Parses every document; the policies of all, or every error of all.
pub fn parse_documents(
    documents: &[PolicyDocument],
) -> Result<Vec<lumen_policy::Policy>, Vec<lumen_policy::PolicyError>> {
    let mut policies: Vec<lumen_policy::Policy> = Vec::new();
    // Where each key was first defined, to name it when it comes again.
    let mut seen: std::collections::HashMap<String, (PathBuf, usize)> = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for d in documents {
        match lumen_policy::parse_str(&d.yaml, Path::new(&d.source)) {
            Ok(ps) => {
                for p in ps {
                    match seen.entry(p.key()) {
                        std::collections::hash_map::Entry::Occupied(first) => {
                            let (file, document) = first.get();
                            let name = match &p.namespace {
                                Some(ns) => format!("{ns}/{}", p.name),
                                None => p.name.clone(),
                            };
                            errors.push(lumen_policy::PolicyError {
                                file: p.origin.file.clone(),
                                document: p.origin.document,
                                line: None,
                                object: Some(format!("{} {name}", p.kind)),
                                field: "metadata.name".into(),
                                reason: format!("also defined in {} document {document}", file.display()),
                            });
                        }
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert((p.origin.file.clone(), p.origin.document));
                            policies.push(p);
                        }
                    }
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

fn handle(state: &Mutex<NodeState>, line: &str) -> Response {
    let request: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            return Response::Error {
                error: format!("malformed request: {e}"),
            }
        }
    };
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let result = match request {
        Request::AddEndpoint { endpoint } => state
            .add_endpoint(endpoint)
            .map(|endpoint| Response::Endpoint { endpoint }),
        Request::DeleteEndpoint { namespace, name } => state.delete_endpoint(&namespace, &name).map(|_| Response::Ok),
        Request::ListEndpoints => Ok(Response::Endpoints {
            endpoints: state.endpoints(),
        }),
        Request::ApplyPolicies { documents } => match parse_documents(&documents) {
            Ok(policies) => state.apply_policies(policies).map(|_| Response::Ok),
            Err(errors) => Err(StateError::from(crate::policies::PolicyStoreError::Invalid { errors })),
        },
        Request::DeletePolicies { keys } => state.delete_policies(&keys).map(|_| Response::Ok),
        Request::ListPolicies => Ok(Response::Policies {
            policies: state.list_policies(),
        }),
        Request::TracePolicy { from, to, proto, port } => state
            .trace(&from, &to, proto, port)
            .map(|trace| Response::Trace { trace }),
        Request::SetAggregation { level } => state.set_aggregation(level.abi()).map(|_| Response::Ok),
    };
    result.unwrap_or_else(|e| Response::Error {
        error: crate::error_chain(&e),
    })
}

/// Serves the control socket until `shutdown`.
pub async fn serve(listener: UnixListener, state: Arc<Mutex<NodeState>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let state = state.clone();
                let response = tokio::task::spawn_blocking(move || handle(&state, &line))
                    .await
                    .unwrap_or_else(|e| Response::Error {
                        error: format!("internal error: {e}"),
                    });
                let mut bytes = serde_json::to_vec(&response).expect("response serializes");
                bytes.push(b'\n');
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Binds the socket, replacing a stale one left by a dead observer.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the observer at {} (is lumen-observer running? try --control-socket)", path.display())]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("observer connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("observer sent an unreadable response: {0}")]
    Protocol(#[from] serde_json::Error),
    #[error("observer closed the connection without answering")]
    Closed,
}

/// One request, one response.
pub async fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(path).await.map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    let line = BufReader::new(read)
        .lines()
        .next_line()
        .await?
        .ok_or(ClientError::Closed)?;
    Ok(serde_json::from_str(&line)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_defined_in_two_files_names_both() {
        let doc = |source: &str| {
            PolicyDocument {
            source: source.into(),
            yaml: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web}\nspec:\n  endpointSelector: {}\n".into(),
        }
        };
        let errors = parse_documents(&[doc("a.yaml"), doc("b.yaml")]).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["b.yaml: document 1 (CiliumNetworkPolicy default/web): metadata.name: also defined in a.yaml document 1"]
        );
        assert_eq!(parse_documents(&[doc("a.yaml")]).unwrap().len(), 1);
    }

    #[test]
    fn wire_format_is_stable() {
        let r = Request::DeleteEndpoint {
            namespace: "default".into(),
            name: "a".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"delete-endpoint","namespace":"default","name":"a"}"#
        );
        assert_eq!(serde_json::to_string(&Response::Ok).unwrap(), r#"{"result":"ok"}"#);
        let e: Result<Request, _> = serde_json::from_str(r#"{"op":"reboot"}"#);
        assert!(e.unwrap_err().to_string().contains("unknown variant `reboot`"));
    }
}

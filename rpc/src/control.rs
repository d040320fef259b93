//! Client of the observer's control API, `lumen.v1.Control`, on its Unix
//! socket (`--control-socket`). Nothing here knows a front end's flags or
//! how it prints.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use lumen_proto::lumen::v1 as pb;
use lumen_proto::lumen::v1::control_client::ControlClient;
use lumen_proto::tonic::transport::{Channel, Endpoint, Uri};
use lumen_proto::tonic::{self, Code};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the observer at {} (is lumen-observer running? try --control-socket)", path.display())]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("observer connection failed")]
    Transport(#[from] tonic::transport::Error),
    /// The observer refused the request; its message is what users read
    /// (with file, line, field and reason for policy documents).
    #[error("{message}")]
    Refused { code: Code, message: String },
    #[error("the observer's answer has no {field}")]
    Incomplete { field: &'static str },
}

impl From<tonic::Status> for ControlError {
    fn from(status: tonic::Status) -> ControlError {
        ControlError::Refused {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// A connection to one observer's control API.
pub struct Control {
    client: ControlClient<Channel>,
}

impl Control {
    /// Connects to the socket at `path`; an error says why it cannot.
    pub async fn connect(path: &Path) -> Result<Control, ControlError> {
        let first = UnixStream::connect(path)
            .await
            .map_err(|source| ControlError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        // The first connection is the one just made, so that an absent
        // observer is reported with its socket; a reconnect dials again.
        let first = Arc::new(Mutex::new(Some(first)));
        let path = path.to_path_buf();
        let channel = Endpoint::from_static("http://lumen-observer")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let (first, path) = (first.clone(), path.clone());
                async move {
                    let ready = first.lock().unwrap_or_else(|e| e.into_inner()).take();
                    let stream = match ready {
                        Some(stream) => stream,
                        None => UnixStream::connect(path).await?,
                    };
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await?;
        Ok(Control {
            client: ControlClient::new(channel),
        })
    }

    pub async fn list_endpoints(&mut self) -> Result<Vec<pb::Endpoint>, ControlError> {
        let answer = self.client.list_endpoints(pb::ListEndpointsRequest {}).await?;
        Ok(answer.into_inner().endpoints)
    }

    pub async fn add_endpoint(&mut self, endpoint: pb::EndpointSpec) -> Result<pb::Endpoint, ControlError> {
        let request = pb::AddEndpointRequest {
            endpoint: Some(endpoint),
        };
        let answer = self.client.add_endpoint(request).await?.into_inner();
        answer.endpoint.ok_or(ControlError::Incomplete { field: "endpoint" })
    }

    pub async fn delete_endpoint(&mut self, namespace: &str, name: &str) -> Result<(), ControlError> {
        let request = pb::DeleteEndpointRequest {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.client.delete_endpoint(request).await?;
        Ok(())
    }

    /// Creates or replaces the documents' policies, all or none.
    pub async fn apply_policies(
        &mut self,
        documents: Vec<pb::PolicyDocument>,
    ) -> Result<Vec<pb::PolicyRef>, ControlError> {
        let request = pb::ApplyPoliciesRequest { documents };
        Ok(self.client.apply_policies(request).await?.into_inner().applied)
    }

    /// Deletes runtime policies, all or none.
    pub async fn delete_policies(&mut self, policies: Vec<pb::PolicyRef>) -> Result<(), ControlError> {
        self.client
            .delete_policies(pb::DeletePoliciesRequest { policies })
            .await?;
        Ok(())
    }

    pub async fn list_policies(&mut self) -> Result<Vec<pb::Policy>, ControlError> {
        let answer = self.client.list_policies(pb::ListPoliciesRequest {}).await?;
        Ok(answer.into_inner().policies)
    }

    /// The verdict for a new connection to `port` over IP protocol `protocol`.
    pub async fn trace_policy(
        &mut self,
        from: &str,
        to: &str,
        protocol: u8,
        port: u16,
    ) -> Result<pb::TracePolicyResponse, ControlError> {
        let request = pb::TracePolicyRequest {
            from: from.to_string(),
            to: to.to_string(),
            protocol: protocol.into(),
            port: port.into(),
        };
        Ok(self.client.trace_policy(request).await?.into_inner())
    }

    pub async fn set_aggregation(&mut self, level: pb::AggregationLevel) -> Result<(), ControlError> {
        let request = pb::SetAggregationRequest { level: level.into() };
        self.client.set_aggregation(request).await?;
        Ok(())
    }
}

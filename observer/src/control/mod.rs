//! The observer's control API: the `lumen.v1.Control` gRPC service on the
//! control socket (`--control-socket`). `lumen endpoint …`, `lumen policy
//! …` and `lumen aggregation` speak it.
//!
//! The service works on any [`NodeControl`], so that its requests, answers
//! and error statuses are tested without a kernel; the observer serves it
//! over its [`NodeState`].

use std::path::Path;
use std::sync::{Arc, Mutex};

use lumen_policy::trace::Trace;
use lumen_proto::lumen::v1 as pb;
use lumen_proto::lumen::v1::control_server::{Control, ControlServer};
use lumen_proto::tonic::{self, Request, Response, Status};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

use crate::endpoint::EndpointSpec;
use crate::policies::{PolicyStoreError, PolicyView};
use crate::state::{EndpointView, NodeState, StateError};
use crate::telemetry::{ControlRequestFailed, Telemetry};
use lumen_rpc::telemetry::InternalEvent;

pub mod convert;
mod error;
#[cfg(test)]
mod tests;

pub use error::ControlError;

/// What the control API changes and reads: the node's endpoints, policies
/// and datapath settings.
pub trait NodeControl: Send + 'static {
    fn endpoints(&mut self) -> Vec<EndpointView>;
    fn add_endpoint(&mut self, spec: EndpointSpec) -> Result<EndpointView, StateError>;
    fn delete_endpoint(&mut self, namespace: &str, name: &str) -> Result<(), StateError>;
    fn apply_policies(&mut self, policies: Vec<lumen_policy::Policy>) -> Result<(), StateError>;
    fn delete_policies(&mut self, keys: &[String]) -> Result<(), StateError>;
    fn list_policies(&self) -> Vec<PolicyView>;
    fn trace(&mut self, from: &str, to: &str, proto: u8, port: u16) -> Result<Trace, StateError>;
    fn set_aggregation(&mut self, level: crate::Aggregation) -> Result<(), StateError>;
}

impl NodeControl for NodeState {
    fn endpoints(&mut self) -> Vec<EndpointView> {
        NodeState::endpoints(self)
    }
    fn add_endpoint(&mut self, spec: EndpointSpec) -> Result<EndpointView, StateError> {
        NodeState::add_endpoint(self, spec)
    }
    fn delete_endpoint(&mut self, namespace: &str, name: &str) -> Result<(), StateError> {
        NodeState::delete_endpoint(self, namespace, name)
    }
    fn apply_policies(&mut self, policies: Vec<lumen_policy::Policy>) -> Result<(), StateError> {
        NodeState::apply_policies(self, policies)
    }
    fn delete_policies(&mut self, keys: &[String]) -> Result<(), StateError> {
        NodeState::delete_policies(self, keys)
    }
    fn list_policies(&self) -> Vec<PolicyView> {
        NodeState::list_policies(self)
    }
    fn trace(&mut self, from: &str, to: &str, proto: u8, port: u16) -> Result<Trace, StateError> {
        NodeState::trace(self, from, to, proto, port)
    }
    fn set_aggregation(&mut self, level: crate::Aggregation) -> Result<(), StateError> {
        NodeState::set_aggregation(self, level.abi())
    }
}

/// The `lumen.v1.Control` service over a node's state.
pub struct ControlService<S> {
    state: Arc<Mutex<S>>,
    telemetry: Arc<Telemetry>,
}

impl<S: NodeControl> ControlService<S> {
    /// Failed requests are counted in `telemetry`.
    pub fn new(state: Arc<Mutex<S>>, telemetry: Arc<Telemetry>) -> ControlService<S> {
        ControlService { state, telemetry }
    }

    /// The answer of `method`; an error is counted and logged.
    async fn counted<T>(
        &self,
        method: &'static str,
        answer: impl std::future::Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        let answer = answer.await;
        if let Err(status) = &answer {
            ControlRequestFailed { method, status }.emit(&self.telemetry);
        }
        answer
    }

    /// Runs `f` on the state off the async threads: changes write BPF maps
    /// and files.
    async fn with_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<T, ControlError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let state = self.state.clone();
        let answer = tokio::task::spawn_blocking(move || f(&mut state.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(ControlError::from)??;
        Ok(Response::new(answer))
    }
}

/// Parses the documents of a request: the policies, or every error at once.
fn parse(documents: Vec<pb::PolicyDocument>) -> Result<Vec<lumen_policy::Policy>, ControlError> {
    lumen_policy::parse_documents(&convert::documents(documents))
        .map_err(|errors| StateError::from(PolicyStoreError::Invalid { errors }).into())
}

#[tonic::async_trait]
impl<S: NodeControl> Control for ControlService<S> {
    async fn list_endpoints(
        &self,
        _: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        self.counted("list_endpoints", async move {
            self.with_state(|s| {
                Ok(pb::ListEndpointsResponse {
                    endpoints: s.endpoints().into_iter().map(Into::into).collect(),
                })
            })
            .await
        })
        .await
    }

    async fn add_endpoint(
        &self,
        request: Request<pb::AddEndpointRequest>,
    ) -> Result<Response<pb::AddEndpointResponse>, Status> {
        self.counted("add_endpoint", async move {
            let spec = request
                .into_inner()
                .endpoint
                .ok_or(ControlError::Missing { field: "endpoint" })?;
            let spec = EndpointSpec::try_from(spec)?;
            self.with_state(move |s| {
                let endpoint = s.add_endpoint(spec)?;
                Ok(pb::AddEndpointResponse {
                    endpoint: Some(endpoint.into()),
                })
            })
            .await
        })
        .await
    }

    async fn delete_endpoint(
        &self,
        request: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::DeleteEndpointResponse>, Status> {
        self.counted("delete_endpoint", async move {
            let r = request.into_inner();
            self.with_state(move |s| {
                s.delete_endpoint(&r.namespace, &r.name)?;
                Ok(pb::DeleteEndpointResponse {})
            })
            .await
        })
        .await
    }

    async fn validate_policies(
        &self,
        request: Request<pb::ValidatePoliciesRequest>,
    ) -> Result<Response<pb::ValidatePoliciesResponse>, Status> {
        self.counted("validate_policies", async move {
            let policies = parse(request.into_inner().documents)?;
            Ok(Response::new(pb::ValidatePoliciesResponse {
                policies: policies.iter().map(convert::policy_ref).collect(),
            }))
        })
        .await
    }

    async fn apply_policies(
        &self,
        request: Request<pb::ApplyPoliciesRequest>,
    ) -> Result<Response<pb::ApplyPoliciesResponse>, Status> {
        self.counted("apply_policies", async move {
            let policies = parse(request.into_inner().documents)?;
            self.with_state(move |s| {
                let applied = policies.iter().map(convert::policy_ref).collect();
                s.apply_policies(policies)?;
                Ok(pb::ApplyPoliciesResponse { applied })
            })
            .await
        })
        .await
    }

    async fn delete_policies(
        &self,
        request: Request<pb::DeletePoliciesRequest>,
    ) -> Result<Response<pb::DeletePoliciesResponse>, Status> {
        self.counted("delete_policies", async move {
            let keys: Vec<String> = request.into_inner().policies.iter().map(convert::policy_key).collect();
            self.with_state(move |s| {
                s.delete_policies(&keys)?;
                Ok(pb::DeletePoliciesResponse {})
            })
            .await
        })
        .await
    }

    async fn list_policies(
        &self,
        _: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        self.counted("list_policies", async move {
            self.with_state(|s| {
                Ok(pb::ListPoliciesResponse {
                    policies: s.list_policies().into_iter().map(Into::into).collect(),
                })
            })
            .await
        })
        .await
    }

    async fn trace_policy(
        &self,
        request: Request<pb::TracePolicyRequest>,
    ) -> Result<Response<pb::TracePolicyResponse>, Status> {
        self.counted("trace_policy", async move {
            let r = request.into_inner();
            let proto = u8::try_from(r.protocol).map_err(|_| ControlError::BadProtocol { protocol: r.protocol })?;
            let port = u16::try_from(r.port).map_err(|_| ControlError::BadPort { port: r.port })?;
            self.with_state(move |s| Ok(convert::trace(s.trace(&r.from, &r.to, proto, port)?)))
                .await
        })
        .await
    }

    async fn set_aggregation(
        &self,
        request: Request<pb::SetAggregationRequest>,
    ) -> Result<Response<pb::SetAggregationResponse>, Status> {
        self.counted("set_aggregation", async move {
            let level = convert::aggregation(request.into_inner().level)?;
            self.with_state(move |s| {
                s.set_aggregation(level)?;
                Ok(pb::SetAggregationResponse {})
            })
            .await
        })
        .await
    }
}

/// Serves the control API on `listener` until `shutdown`.
pub async fn serve<S: NodeControl>(
    listener: UnixListener,
    state: Arc<Mutex<S>>,
    telemetry: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let served = tonic::transport::Server::builder()
        .add_service(ControlServer::new(ControlService::new(state, telemetry)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop)
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %crate::error_chain(&e), "control API server failed");
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

/// Whether an observer answers on the control socket at `path`.
pub async fn answers(path: &Path) -> bool {
    let Ok(channel) = crate::server::connect_unix(path).await else {
        return false;
    };
    let mut client = pb::control_client::ControlClient::new(channel);
    client.list_endpoints(pb::ListEndpointsRequest {}).await.is_ok()
}

//! The control API as the tests drive it: one request, one answer, with a
//! refusal as [`Response::Error`] carrying the status message (what `lumen`
//! prints), over the observer's `lumen.v1.Control` gRPC service.

// Each test and bench binary uses a part of it.
#![allow(dead_code)]

use std::path::Path;

use lumen_observer::control::convert;
use lumen_observer::endpoint::EndpointSpec;
use lumen_observer::policies::PolicyView;
use lumen_observer::state::EndpointView;
use lumen_observer::Aggregation;
use lumen_proto::lumen::v1 as pb;
use lumen_proto::lumen::v1::control_client::ControlClient;
use lumen_proto::tonic;

#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    AddEndpoint {
        endpoint: EndpointSpec,
    },
    DeleteEndpoint {
        namespace: String,
        name: String,
    },
    ListEndpoints,
    ApplyPolicies {
        documents: Vec<PolicyDocument>,
    },
    /// Policies by key (`Kind/namespace/name`, `Kind/name`).
    DeletePolicies {
        keys: Vec<String>,
    },
    ListPolicies,
    TracePolicy {
        from: String,
        to: String,
        proto: u8,
        port: u16,
    },
    SetAggregation {
        level: Aggregation,
    },
}

/// One file's text as the CLI reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    pub source: String,
    pub yaml: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Ok,
    Endpoint {
        endpoint: EndpointView,
    },
    Endpoints {
        endpoints: Vec<EndpointView>,
    },
    Policies {
        policies: Vec<PolicyView>,
    },
    Trace {
        trace: lumen_policy::trace::Trace,
    },
    /// The observer refused: the status message.
    Error {
        error: String,
    },
}

/// Sends `request` to the control socket at `socket`. `Err` only when the
/// observer cannot be reached.
pub async fn call(socket: &Path, request: Request) -> Result<Response, tonic::transport::Error> {
    let mut c = ControlClient::new(lumen_observer::server::connect_unix(socket).await?);
    let answer = match request {
        Request::AddEndpoint { endpoint } => c
            .add_endpoint(pb::AddEndpointRequest {
                endpoint: Some(endpoint.into()),
            })
            .await
            .map(|r| Response::Endpoint {
                endpoint: r.into_inner().endpoint.unwrap().try_into().unwrap(),
            }),
        Request::DeleteEndpoint { namespace, name } => c
            .delete_endpoint(pb::DeleteEndpointRequest { namespace, name })
            .await
            .map(|_| Response::Ok),
        Request::ListEndpoints => c
            .list_endpoints(pb::ListEndpointsRequest {})
            .await
            .map(|r| Response::Endpoints {
                endpoints: r
                    .into_inner()
                    .endpoints
                    .into_iter()
                    .map(|e| e.try_into().unwrap())
                    .collect(),
            }),
        Request::ApplyPolicies { documents } => {
            let documents = documents
                .into_iter()
                .map(|d| pb::PolicyDocument {
                    source: d.source,
                    yaml: d.yaml,
                })
                .collect();
            c.apply_policies(pb::ApplyPoliciesRequest { documents })
                .await
                .map(|_| Response::Ok)
        }
        Request::DeletePolicies { keys } => {
            let policies = keys.iter().map(|k| convert::policy_ref_of_key(k)).collect();
            c.delete_policies(pb::DeletePoliciesRequest { policies })
                .await
                .map(|_| Response::Ok)
        }
        Request::ListPolicies => c
            .list_policies(pb::ListPoliciesRequest {})
            .await
            .map(|r| Response::Policies {
                policies: r.into_inner().policies.into_iter().map(Into::into).collect(),
            }),
        Request::TracePolicy { from, to, proto, port } => c
            .trace_policy(pb::TracePolicyRequest {
                from,
                to,
                protocol: proto.into(),
                port: port.into(),
            })
            .await
            .map(|r| Response::Trace {
                trace: convert::trace_of(r.into_inner()).unwrap(),
            }),
        Request::SetAggregation { level } => c
            .set_aggregation(pb::SetAggregationRequest {
                level: convert::aggregation_level(level).into(),
            })
            .await
            .map(|_| Response::Ok),
    };
    Ok(answer.unwrap_or_else(|status| Response::Error {
        error: status.message().to_string(),
    }))
}

//! What Hubble's own CLI gets from Lumen. The requests `hubble observe`
//! (v1.19) sends for its output formats are replayed as bytes against a
//! node's observer and against the relay of a real three-node cluster, and
//! every answer must be readable by a client that knows only Hubble's
//! published API: no `lumen.v1.FlowExtension` it cannot resolve, the fields
//! its default mask names and nothing else, the summaries Hubble prints.
//! Lumen's own clients still get the extension when they ask. Needs root:
//! run `scripts/test.sh`.

mod support;

use std::net::SocketAddr;

use lumen_proto::flow::flow_filter::Experimental;
use lumen_proto::flow::{layer4::Protocol, DropReason, Flow, FlowFilter, TrafficDirection, Verdict};
use lumen_proto::lumen::v1::FlowExtension;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use lumen_proto::prost::bytes::{Buf, BufMut};
use lumen_proto::prost::Message;
use lumen_proto::prost_types::FileDescriptorSet;
use lumen_proto::tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use lumen_proto::tonic::codegen::http::uri::PathAndQuery;
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::{Code, Request, Status, Streaming};
use prost_reflect::{DescriptorPool, DynamicMessage};
use support::*;

/// The field mask `hubble observe` sends with its compact, dict and table
/// outputs (`--use-default-field-masks`, on by default), in its order.
const HUBBLE_DEFAULT_MASK: [&str; 20] = [
    "time",
    "verdict",
    "ethernet",
    "IP",
    "l4",
    "source.identity",
    "source.namespace",
    "source.pod_name",
    "destination.identity",
    "destination.namespace",
    "destination.pod_name",
    "Type",
    "node_name",
    "l7",
    "event_type",
    "source_service",
    "destination_service",
    "is_reply",
    "Summary",
    "ip_trace_id",
];

/// `GetFlowsRequest` as hubble's Go client encodes it: fields in number
/// order, `number` (1) = 20 unless following, `follow` (3), then the
/// default mask as `field_mask` (10) of `FieldMask.paths` (1).
fn hubble_request(follow: bool, mask: bool) -> Vec<u8> {
    let mut bytes = match follow {
        false => vec![0x08, 20],
        true => vec![0x18, 0x01],
    };
    if mask {
        let mut paths = Vec::new();
        for p in HUBBLE_DEFAULT_MASK {
            paths.extend_from_slice(&[0x0a, p.len() as u8]);
            paths.extend_from_slice(p.as_bytes());
        }
        // 254 bytes of paths: a two-byte length.
        bytes.extend_from_slice(&[0x52, 0xfe, 0x01]);
        bytes.extend_from_slice(&paths);
    }
    bytes
}

#[test]
fn the_replayed_requests_are_what_hubble_means() {
    let compact = hubble_request(false, true);
    assert_eq!(compact.len(), 259);
    assert_eq!(&compact[..9], &[0x08, 20, 0x52, 0xfe, 0x01, 0x0a, 4, b't', b'i']);
    let decoded = GetFlowsRequest::decode(compact.as_slice()).unwrap();
    assert_eq!(decoded.number, 20);
    assert_eq!(decoded.field_mask.unwrap().paths, HUBBLE_DEFAULT_MASK);
    let follow = GetFlowsRequest::decode(hubble_request(true, true).as_slice()).unwrap();
    assert!(follow.follow && follow.number == 0 && follow.field_mask.is_some());
    let json = GetFlowsRequest::decode(hubble_request(false, false).as_slice()).unwrap();
    assert_eq!(
        json,
        GetFlowsRequest {
            number: 20,
            ..Default::default()
        }
    );
}

/// Sends a request that is already encoded; decodes the answers.
#[derive(Clone, Copy, Default)]
struct ReplayCodec;

impl Codec for ReplayCodec {
    type Encode = Vec<u8>;
    type Decode = GetFlowsResponse;
    type Encoder = ReplayCodec;
    type Decoder = ReplayCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ReplayCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ReplayCodec
    }
}

impl Encoder for ReplayCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ReplayCodec {
    type Item = GetFlowsResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<GetFlowsResponse>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        GetFlowsResponse::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

async fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn replay(address: SocketAddr, request: Vec<u8>) -> Streaming<GetFlowsResponse> {
    let mut grpc = lumen_proto::tonic::client::Grpc::new(channel(address).await);
    grpc.ready().await.unwrap();
    grpc.server_streaming(
        Request::new(request),
        PathAndQuery::from_static("/observer.Observer/GetFlows"),
        ReplayCodec,
    )
    .await
    .unwrap()
    .into_inner()
}

async fn all(mut stream: Streaming<GetFlowsResponse>) -> Vec<GetFlowsResponse> {
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        out.push(r);
    }
    out
}

/// Only Hubble's packages, as a Hubble client knows them.
fn hubble_pool() -> DescriptorPool {
    let mut set = FileDescriptorSet::decode(lumen_proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file.retain(|f| f.package() != "lumen.v1");
    DescriptorPool::from_file_descriptor_set(set).unwrap()
}

/// The response in protobuf JSON, as `hubble observe -o jsonpb` prints it:
/// an `Any` of a type the client does not know is an error, as in Go.
fn hubble_json(pool: &DescriptorPool, response: &GetFlowsResponse) -> Result<String, String> {
    let desc = pool.get_message_by_name("observer.GetFlowsResponse").unwrap();
    let dynamic = DynamicMessage::decode(desc, response.encode_to_vec().as_slice()).map_err(|e| e.to_string())?;
    serde_json::to_string(&dynamic).map_err(|e| e.to_string())
}

fn flows(responses: &[GetFlowsResponse]) -> Vec<&Flow> {
    responses
        .iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f),
            _ => None,
        })
        .collect()
}

fn dport(f: &Flow) -> u32 {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => t.destination_port,
        _ => 0,
    }
}

/// The default-deny drop of a's SYN to b:8080 at b's endpoint.
fn the_drop<'a>(flows: &[&'a Flow]) -> &'a Flow {
    flows
        .iter()
        .copied()
        .find(|f| f.verdict == Verdict::Dropped as i32 && dport(f) == 8080)
        .unwrap_or_else(|| panic!("no drop to b:8080 in {} flows", flows.len()))
}

/// What Hubble's default mask leaves of a flow Lumen's datapath produced:
/// the masked fields, each as the full flow has it.
fn assert_masked(masked: &Flow) {
    let source = masked.source.as_ref().unwrap();
    assert_eq!((source.namespace.as_str(), source.pod_name.as_str()), ("default", "a"));
    assert_eq!(source.identity, identity("a"));
    assert!(source.labels.is_empty() && source.workloads.is_empty(), "{source:?}");
    let destination = masked.destination.as_ref().unwrap();
    assert_eq!(destination.pod_name, "b");
    assert_eq!(destination.identity, identity("b"));
    assert!(masked.time.is_some() && masked.event_type.is_some() && masked.is_reply == Some(false));
    assert!(masked.ip.as_ref().is_some_and(|ip| ip.destination == "10.1.0.2"));
    assert!(!masked.node_name.is_empty());
    #[allow(deprecated)]
    let summary = masked.summary.as_str();
    assert_eq!(summary, "TCP Flags: SYN");
    // Outside the mask.
    assert_eq!(masked.drop_reason_desc, 0);
    assert_eq!(masked.traffic_direction, 0);
    assert!(masked.emitter.is_none() && masked.interface.is_none() && masked.uuid.is_empty());
    assert!(masked.extensions.is_none());
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn hubbles_cli_requests_get_the_published_api_from_observer_and_relay() {
    let mut c = Cluster::new();
    for n in ["n1", "n2", "n3"] {
        c.start(n);
    }
    let relay = c.relay();
    c.write_nodes(&["n1", "n2", "n3"]);
    let pool = hubble_pool();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = connect(relay.address).await;
        connected_nodes(&mut client, 3).await;

        // A follower with hubble's default request, opened before the drop.
        let mut follow = replay(relay.address, hubble_request(true, true)).await;
        assert!(c.request("a", "b", 80), "b accepts a on 80");
        assert!(!c.request("a", "b", 8080), "b drops a on 8080: default deny");
        let followed = until(&mut follow, "the drop through a hubble follower", |r| {
            flow(r).is_some_and(|f| f.verdict == Verdict::Dropped as i32 && dport(f) == 8080)
        })
        .await;
        assert_masked(flow(&followed).unwrap());
        hubble_json(&pool, &followed).expect("a hubble client reads the followed drop");

        for (server, address) in [("relay", relay.address), ("observer of n2", api(&c.tb, "n2"))] {
            // compact, dict, table: the last 20 with the default mask.
            let answer = all(replay(address, hubble_request(false, true)).await).await;
            let masked = flows(&answer);
            assert!(!masked.is_empty() && masked.len() <= 20, "{server}: {} flows", masked.len());
            assert_masked(the_drop(&masked));
            for f in &masked {
                assert!(f.extensions.is_none(), "{server}: an extension went to a hubble client");
                #[allow(deprecated)]
                let summary = f.summary.as_str();
                assert!(summary.starts_with("TCP Flags: "), "{server}: {summary:?}");
            }

            // json, jsonpb: the last 20, whole; every one readable without
            // Lumen's types, drops with their reason.
            let answer = all(replay(address, hubble_request(false, false)).await).await;
            for r in &answer {
                hubble_json(&pool, r).unwrap_or_else(|e| panic!("{server}: hubble cannot read {r:?}: {e}"));
            }
            let whole = flows(&answer);
            let drop = the_drop(&whole);
            assert_eq!(drop.drop_reason_desc, DropReason::PolicyDenied as i32);
            assert_eq!(drop.traffic_direction, TrafficDirection::Ingress as i32);
            assert!(drop.extensions.is_none(), "{server}");
            let emitter = drop.emitter.as_ref().unwrap();
            assert_eq!(
                (emitter.name.as_str(), emitter.version.as_str()),
                ("Lumen", env!("CARGO_PKG_VERSION"))
            );
            let drop_response = GetFlowsResponse {
                response_types: Some(ResponseTypes::Flow(drop.clone())),
                ..Default::default()
            };
            let json = hubble_json(&pool, &drop_response).unwrap();
            assert!(json.contains("\"emitter\":{\"name\":\"Lumen\""), "{json}");

            // Lumen's clients ask, and get the policies behind the default deny.
            let asked = |request: GetFlowsRequest, header: bool| async move {
                let mut c = lumen_proto::observer::observer_client::ObserverClient::new(channel(address).await);
                let request = match header {
                    true => lumen_proto::with_extensions(request),
                    false => Request::new(request),
                };
                all(c.get_flows(request).await.unwrap().into_inner()).await
            };
            let last = GetFlowsRequest {
                number: 20,
                ..Default::default()
            };
            let with_header = asked(last.clone(), true).await;
            let ext = the_drop(&flows(&with_header))
                .extensions
                .as_ref()
                .map(|a| FlowExtension::from_any(a).unwrap().unwrap())
                .unwrap_or_else(|| panic!("{server}: no extension for a client that asked"));
            assert_eq!(ext.selected_by.len(), 1, "{server}: {ext:?}");
            assert_eq!(ext.selected_by[0].name, "b-in");
            // The control: such a flow is what a hubble client cannot read.
            let err = with_header.iter().find_map(|r| hubble_json(&pool, r).err());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("lumen.v1.FlowExtension")),
                "{server}: {err:?}"
            );
            // An explicit mask naming `extensions` asks too; one without it does not.
            let mask = |paths: &[&str]| GetFlowsRequest {
                field_mask: Some(lumen_proto::prost_types::FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
                ..last.clone()
            };
            let named = asked(mask(&["verdict", "l4", "extensions"]), false).await;
            assert!(the_drop(&flows(&named)).extensions.is_some(), "{server}");
            let unnamed = asked(mask(&["verdict", "l4"]), true).await;
            assert!(the_drop(&flows(&unnamed)).extensions.is_none(), "{server}");

            // CEL filters, as `hubble observe --cel-expression` sends them.
            let cel = |expression: &str| GetFlowsRequest {
                number: 100,
                whitelist: vec![FlowFilter {
                    experimental: Some(Experimental {
                        cel_expression: vec![expression.to_string()],
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let chosen = asked(
                cel("_flow.verdict == Verdict.DROPPED && _flow.destination.pod_name == 'b' || _flow.l4.UDP.destination_port == 53u"),
                false,
            )
            .await;
            let chosen = flows(&chosen);
            assert!(!chosen.is_empty(), "{server}");
            assert!(
                chosen.iter().all(|f| f.verdict == Verdict::Dropped as i32 && dport(f) == 8080),
                "{server}: {chosen:?}"
            );
            let mut c = lumen_proto::observer::observer_client::ObserverClient::new(channel(address).await);
            let refused = c.get_flows(cel("_flow.verdict == \"DROPPED\"")).await.unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument, "{server}");
            assert_eq!(
                refused.message(),
                "invalid filter: invalid CEL expression \"_flow.verdict == \\\"DROPPED\\\"\" at 1:15: \
                 found no matching overload for '_==_' applied to '(int, string)'",
                "{server}"
            );
        }
    });
}

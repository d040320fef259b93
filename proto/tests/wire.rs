//! Wire-compatibility tests for the Hubble API transcription.
//!
//! Expected bytes are written by hand from the published field numbers:
//! a key is the varint of `(field_number << 3) | wire_type`, with wire types
//! 0 = varint and 2 = length-delimited. Field numbers and enum values checked
//! here were read from the published Cilium API v1 definitions (api/v1/flow,
//! observer, peer, relay); see proto/README.md.
//!
//! Over 600 lines because the expected bytes and field tables are written
//! out by hand, on purpose.

use lumen_proto::flow::{
    self, layer4, DropReason, Endpoint, EventType, Flow, FlowFilter, FlowType, Ip, IpVersion, Layer4, LostEvent,
    LostEventSource, TcpFlags, TraceObservationPoint, TrafficDirection, Verdict,
};
use lumen_proto::lumen::v1::FlowExtension;
use lumen_proto::observer::{self, get_flows_response, GetFlowsRequest, GetFlowsResponse};
use lumen_proto::prost::Message;
use lumen_proto::prost_types::{
    field_descriptor_proto::Type as FieldType, DescriptorProto, FieldMask, FileDescriptorSet, Timestamp,
};
use lumen_proto::{peer, relay, FILE_DESCRIPTOR_SET, HEALTH_SERVICE_NAME};

fn sample_flow() -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 123,
        }),
        verdict: Verdict::Dropped as i32,
        drop_reason_desc: DropReason::PolicyDenied as i32,
        ip: Some(Ip {
            source: "10.0.0.1".into(),
            destination: "10.0.0.2".into(),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
                source_port: 43210,
                destination_port: 80,
                flags: Some(TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(Endpoint {
            id: 42,
            identity: 12345,
            namespace: "default".into(),
            labels: vec!["k8s:app=web".into()],
            pod_name: "web-0".into(),
            ..Default::default()
        }),
        node_name: "node-1".into(),
        traffic_direction: TrafficDirection::Ingress as i32,
        // Present-but-false must still be on the wire (empty BoolValue).
        is_reply: Some(false),
        ..Default::default()
    }
}

#[rustfmt::skip]
const SAMPLE_FLOW_BYTES: &[u8] = &[
    // 1 time (1<<3|2), Timestamp{seconds: 1 (1<<3|0), nanos: 2 (2<<3|0)}
    0x0a, 0x08,
        0x08, 0x80, 0xe2, 0xcf, 0xaa, 0x06, // seconds = 1_700_000_000
        0x10, 0x7b,                         // nanos = 123
    // 2 verdict (2<<3|0) = DROPPED (2)
    0x10, 0x02,
    // 5 IP (5<<3|2)
    0x2a, 0x16,
        0x0a, 0x08, b'1', b'0', b'.', b'0', b'.', b'0', b'.', b'1', // 1 source
        0x12, 0x08, b'1', b'0', b'.', b'0', b'.', b'0', b'.', b'2', // 2 destination
        0x18, 0x01,                                                 // 3 ipVersion = IPv4
    // 6 l4 (6<<3|2) -> Layer4.TCP (1<<3|2)
    0x32, 0x0c,
        0x0a, 0x0a,
            0x08, 0xca, 0xd1, 0x02, // 1 source_port = 43210
            0x10, 0x50,             // 2 destination_port = 80
            0x1a, 0x02, 0x10, 0x01, // 3 flags (3<<3|2): TCPFlags.SYN (2<<3|0) = true
    // 8 source (8<<3|2): Endpoint
    0x42, 0x22,
        0x08, 0x2a,       // 1 ID = 42
        0x10, 0xb9, 0x60, // 2 identity = 12345
        0x1a, 0x07, b'd', b'e', b'f', b'a', b'u', b'l', b't', // 3 namespace
        0x22, 0x0b, b'k', b'8', b's', b':', b'a', b'p', b'p', b'=', b'w', b'e', b'b', // 4 labels
        0x2a, 0x05, b'w', b'e', b'b', b'-', b'0', // 5 pod_name
    // 11 node_name (11<<3|2 = 0x5a)
    0x5a, 0x06, b'n', b'o', b'd', b'e', b'-', b'1',
    // 22 traffic_direction (22<<3|0 = 176) = INGRESS (1)
    0xb0, 0x01, 0x01,
    // 25 drop_reason_desc (25<<3|0 = 200) = POLICY_DENIED (133)
    0xc8, 0x01, 0x85, 0x01,
    // 26 is_reply (26<<3|2 = 210): BoolValue{value: false} is an empty message
    0xd2, 0x01, 0x00,
];

#[test]
fn flow_encodes_to_published_field_numbers() {
    let flow = sample_flow();
    assert_eq!(flow.encode_to_vec(), SAMPLE_FLOW_BYTES);
    assert_eq!(Flow::decode(SAMPLE_FLOW_BYTES).unwrap(), flow);
}

#[test]
fn lumen_extension_travels_in_flow_extensions_150000() {
    let ext = FlowExtension {
        rule_id: 7,
        rule_name: "r".into(),
        ct_state: String::new(),
        local_redirect: true,
        selected_by: vec![],
    };
    let flow = Flow {
        extensions: Some(ext.to_any()),
        ..Default::default()
    };
    let type_url = b"type.googleapis.com/lumen.v1.FlowExtension";
    assert_eq!(type_url.len(), 42);
    let mut expected = vec![
        0x82, 0x9f, 0x49, // 150000 extensions (150000<<3|2 = 1_200_002)
        0x35, // Any length = 2 + 42 + 2 + 7 = 53
        0x0a, 0x2a, // Any.type_url (1<<3|2), 42 bytes
    ];
    expected.extend_from_slice(type_url);
    expected.extend_from_slice(&[
        0x12, 0x07, // Any.value (2<<3|2), 7 bytes of FlowExtension:
        0x08, 0x07, // 1 rule_id = 7
        0x12, 0x01, b'r', // 2 rule_name = "r"
        0x20, 0x01, // 4 local_redirect = true
    ]);
    assert_eq!(flow.encode_to_vec(), expected);

    let back = Flow::decode(expected.as_slice()).unwrap();
    let any = back.extensions.as_ref().unwrap();
    assert_eq!(FlowExtension::from_any(any).unwrap().unwrap(), ext);
    let other = lumen_proto::prost_types::Any {
        type_url: "type.googleapis.com/other.Thing".into(),
        value: vec![],
    };
    assert!(FlowExtension::from_any(&other).is_none());
}

#[test]
fn enum_values_match_published_api() {
    assert_eq!(Verdict::Forwarded as i32, 1);
    assert_eq!(Verdict::Dropped as i32, 2);
    assert_eq!(Verdict::Audit as i32, 4);
    assert_eq!(Verdict::Translated as i32, 7);
    assert_eq!(Verdict::Dropped.as_str_name(), "DROPPED");

    assert_eq!(DropReason::PolicyDenied as i32, 133);
    assert_eq!(DropReason::PolicyDeny as i32, 181);
    assert_eq!(DropReason::NoTunnelOrEncapsulationEndpoint as i32, 160);
    assert_eq!(DropReason::AuthRequired as i32, 189);
    assert_eq!(DropReason::DropPuntProxy as i32, 205);
    assert_eq!(DropReason::PolicyDenied.as_str_name(), "POLICY_DENIED");

    assert_eq!(TraceObservationPoint::ToEndpoint as i32, 101);
    assert_eq!(TraceObservationPoint::FromNetwork as i32, 10);
    assert_eq!(TraceObservationPoint::ToCrypto as i32, 13);
    assert_eq!(LostEventSource::PerfEventRingBuffer as i32, 1);
    assert_eq!(LostEventSource::HubbleRingBuffer as i32, 3);
    assert_eq!(EventType::RecordLost as i32, 2);
    assert_eq!(EventType::EventSample as i32, 9);
    assert_eq!(FlowType::L3L4 as i32, 1);
    assert_eq!(FlowType::Sock as i32, 3);
    assert_eq!(TrafficDirection::Egress as i32, 2);
    assert_eq!(flow::AuthType::Spire as i32, 1);
    #[allow(deprecated)]
    let encrypt_overlay = flow::TraceReason::EncryptOverlay;
    assert_eq!(encrypt_overlay as i32, 8);
    assert_eq!(flow::DebugCapturePoint::DbgCaptureDelivery as i32, 4);
    assert_eq!(flow::AgentEventType::AgentStarted as i32, 2);
    assert_eq!(flow::AgentEventType::IpcacheDeleted as i32, 10);
    assert_eq!(flow::SocketTranslationPoint::SockXlatePointPostDirectionRev as i32, 4);
    assert_eq!(flow::DebugEventType::DbgSkipPolicy as i32, 66);
    assert_eq!(flow::L7FlowType::Sample as i32, 3);
    assert_eq!(flow::tunnel::Protocol::Geneve as i32, 2);
    assert_eq!(relay::NodeState::NodeConnected as i32, 1);
    assert_eq!(relay::NodeState::NodeError as i32, 4);
    assert_eq!(peer::ChangeNotificationType::PeerAdded as i32, 1);
    assert_eq!(peer::ChangeNotificationType::PeerUpdated as i32, 3);
}

#[test]
fn get_flows_request_bytes_and_round_trip() {
    // number=20, follow=true, whitelist=[{verdict: [DROPPED]}]
    let small = GetFlowsRequest {
        number: 20,
        follow: true,
        whitelist: vec![FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }],
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x08, 0x14,       // 1 number = 20
        0x18, 0x01,       // 3 follow = true
        0x32, 0x03,       // 6 whitelist (6<<3|2)
            0x2a, 0x01, 0x02, // FlowFilter 5 verdict, packed (5<<3|2): [DROPPED]
    ];
    assert_eq!(small.encode_to_vec(), expected);

    let full = GetFlowsRequest {
        number: 100,
        first: true,
        follow: false,
        whitelist: vec![FlowFilter {
            source_pod: vec!["default/web".into()],
            verdict: vec![Verdict::Dropped as i32, Verdict::Audit as i32],
            drop_reason_desc: vec![DropReason::PolicyDenied as i32],
            node_name: vec!["node-*".into()],
            tcp_flags: vec![TcpFlags {
                syn: true,
                ..Default::default()
            }],
            experimental: Some(flow::flow_filter::Experimental {
                cel_expression: vec!["_flow.verdict == 2".into()],
            }),
            ..Default::default()
        }],
        blacklist: vec![FlowFilter {
            destination_port: vec!["53".into()],
            ..Default::default()
        }],
        since: Some(Timestamp { seconds: 10, nanos: 0 }),
        field_mask: Some(FieldMask {
            paths: vec!["source.pod_name".into(), "verdict".into()],
        }),
        experimental: Some(observer::get_flows_request::Experimental {}),
        ..Default::default()
    };
    let bytes = full.encode_to_vec();
    assert_eq!(GetFlowsRequest::decode(bytes.as_slice()).unwrap(), full);
    // Top-level field_mask is field 10 (10<<3|2 = 0x52); experimental is 999 (0xba 0x3e).
    assert!(bytes.windows(2).any(|w| w == [0x52, 0x1a]));
    assert!(bytes.ends_with(&[0xba, 0x3e, 0x00]));
}

#[test]
fn get_flows_response_with_lost_event_decodes() {
    #[rustfmt::skip]
    let bytes: &[u8] = &[
        // 3 lost_events (3<<3|2)
        0x1a, 0x08,
            0x08, 0x01,             // 1 source = PERF_EVENT_RING_BUFFER
            0x10, 0x07,             // 2 num_events_lost = 7
            0x1a, 0x02, 0x08, 0x03, // 3 cpu: Int32Value{value: 3}
        // 1000 node_name (1000<<3|2 = 8002)
        0xc2, 0x3e, 0x06, b'n', b'o', b'd', b'e', b'-', b'1',
        // 1001 time (1001<<3|2 = 8010): Timestamp{seconds: 1}
        0xca, 0x3e, 0x02, 0x08, 0x01,
    ];
    let resp = GetFlowsResponse::decode(bytes).unwrap();
    assert_eq!(resp.node_name, "node-1");
    assert_eq!(resp.time, Some(Timestamp { seconds: 1, nanos: 0 }));
    match resp.response_types {
        Some(get_flows_response::ResponseTypes::LostEvents(LostEvent {
            source,
            num_events_lost,
            cpu,
            ..
        })) => {
            assert_eq!(source, LostEventSource::PerfEventRingBuffer as i32);
            assert_eq!(num_events_lost, 7);
            assert_eq!(cpu, Some(3));
        }
        other => panic!("expected lost_events, got {other:?}"),
    }
    assert_eq!(resp.encode_to_vec(), bytes);
}

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

fn message<'a>(fds: &'a FileDescriptorSet, package: &str, path: &str) -> &'a DescriptorProto {
    let mut parts = path.split('.');
    let top = parts.next().unwrap();
    let mut msg = fds
        .file
        .iter()
        .filter(|f| f.package() == package)
        .flat_map(|f| f.message_type.iter())
        .find(|m| m.name() == top)
        .unwrap_or_else(|| panic!("no message {package}.{top}"));
    for part in parts {
        msg = msg
            .nested_type
            .iter()
            .find(|m| m.name() == part)
            .unwrap_or_else(|| panic!("no {path}"));
    }
    msg
}

fn field_number(fds: &FileDescriptorSet, package: &str, path: &str, field: &str) -> i32 {
    message(fds, package, path)
        .field
        .iter()
        .find(|f| f.name() == field)
        .unwrap_or_else(|| panic!("no field {package}.{path}.{field}"))
        .number()
}

#[test]
fn grpc_method_paths_from_descriptor() {
    let fds = descriptor_set();
    let mut paths = Vec::new();
    // Hubble's services; Lumen's own are checked in control_service_is_lumen_only.
    for file in fds.file.iter().filter(|f| f.package() != "lumen.v1") {
        for svc in &file.service {
            for m in &svc.method {
                paths.push((
                    format!("/{}.{}/{}", file.package(), svc.name(), m.name()),
                    m.server_streaming(),
                    m.client_streaming(),
                ));
            }
        }
    }
    let expected = [
        ("/observer.Observer/GetFlows", true),
        ("/observer.Observer/GetAgentEvents", true),
        ("/observer.Observer/GetDebugEvents", true),
        ("/observer.Observer/GetNodes", false),
        ("/observer.Observer/GetNamespaces", false),
        ("/observer.Observer/ServerStatus", false),
        ("/peer.Peer/Notify", true),
    ];
    assert_eq!(paths.len(), expected.len(), "{paths:?}");
    for (path, streaming) in expected {
        let found = paths
            .iter()
            .find(|(p, _, _)| p == path)
            .unwrap_or_else(|| panic!("missing {path}"));
        assert_eq!(found.1, streaming, "{path} server streaming");
        assert!(!found.2, "{path} must not be client streaming");
    }

    use lumen_proto::tonic::server::NamedService;
    struct Never;
    assert_eq!(
        <observer::observer_server::ObserverServer<Never> as NamedService>::NAME,
        "observer.Observer"
    );
    assert_eq!(
        <peer::peer_server::PeerServer<Never> as NamedService>::NAME,
        "peer.Peer"
    );
    assert_eq!(HEALTH_SERVICE_NAME, "hubble.server.Observer");
}

#[test]
fn field_numbers_from_descriptor() {
    let fds = descriptor_set();
    let checks: &[(&str, &str, &str, i32)] = &[
        ("flow", "Flow", "time", 1),
        ("flow", "Flow", "IP", 5),
        ("flow", "Flow", "Type", 10),
        ("flow", "Flow", "policy_match_type", 23),
        ("flow", "Flow", "drop_reason_desc", 25),
        ("flow", "Flow", "is_reply", 26),
        ("flow", "Flow", "uuid", 34),
        ("flow", "Flow", "tunnel", 39),
        ("flow", "Flow", "egress_allowed_by", 21001),
        ("flow", "Flow", "ingress_allowed_by", 21002),
        ("flow", "Flow", "egress_denied_by", 21004),
        ("flow", "Flow", "ingress_denied_by", 21005),
        ("flow", "Flow", "policy_log", 21006),
        ("flow", "Flow", "Summary", 100000),
        ("flow", "Flow", "extensions", 150000),
        ("flow", "Endpoint", "cluster_name", 7),
        ("flow", "IP", "source_xlated", 5),
        ("flow", "Layer7", "dns", 100),
        ("flow", "Layer7", "kafka", 102),
        ("flow", "FlowFilter", "node_name", 24),
        ("flow", "FlowFilter", "uuid", 29),
        ("flow", "FlowFilter", "source_ip_xlated", 34),
        ("flow", "FlowFilter", "destination_cluster_name", 38),
        ("flow", "FlowFilter", "experimental", 999),
        ("flow", "FlowFilter.Experimental", "cel_expression", 1),
        ("flow", "LostEvent", "cpu", 3),
        ("flow", "AgentEvent", "ipcache_update", 105),
        ("flow", "DebugEvent", "cpu", 8),
        ("observer", "ServerStatusResponse", "version", 8),
        ("observer", "ServerStatusResponse", "flows_rate", 9),
        ("observer", "GetNamespacesResponse", "namespaces", 1),
        ("observer", "Namespace", "namespace", 2),
        ("observer", "GetFlowsRequest", "first", 9),
        ("observer", "GetFlowsRequest", "field_mask", 10),
        ("observer", "GetFlowsRequest", "experimental", 999),
        ("observer", "GetFlowsRequest", "extensions", 150000),
        ("observer", "GetFlowsResponse", "lost_events", 3),
        ("observer", "GetFlowsResponse", "node_name", 1000),
        ("observer", "GetFlowsResponse", "time", 1001),
        ("observer", "Node", "seen_flows", 9),
        ("observer", "ExportEvent", "debug_event", 5),
        ("relay", "NodeStatusEvent", "message", 3),
        ("peer", "ChangeNotification", "tls", 4),
        ("lumen.v1", "FlowExtension", "local_redirect", 4),
    ];
    for &(pkg, msg, field, num) in checks {
        assert_eq!(field_number(&fds, pkg, msg, field), num, "{pkg}.{msg}.{field}");
    }
    let rate = message(&fds, "observer", "ServerStatusResponse")
        .field
        .iter()
        .find(|f| f.name() == "flows_rate");
    assert_eq!(rate.unwrap().r#type(), FieldType::Double);

    // Field 1 of GetFlowsRequest.Experimental is reserved (its old field_mask
    // moved to the top-level field 10); nothing may reuse it.
    let exp = message(&fds, "observer", "GetFlowsRequest.Experimental");
    assert!(exp.field.is_empty());
    assert!(exp.reserved_range.iter().any(|r| r.start() == 1));
}

/// Exact (name, number) set of Flow and FlowFilter, so an accidental
/// addition, removal or renumbering in our transcription fails loudly.
#[test]
fn flow_and_filter_field_sets_are_exact() {
    let fds = descriptor_set();
    let sorted = |msg: &str| {
        let mut v: Vec<(String, i32)> = message(&fds, "flow", msg)
            .field
            .iter()
            .map(|f| (f.name().to_string(), f.number()))
            .collect();
        v.sort_by_key(|(_, n)| *n);
        v
    };
    let own = |list: &[(&str, i32)]| list.iter().map(|(n, i)| (n.to_string(), *i)).collect::<Vec<_>>();

    #[rustfmt::skip]
    let flow_fields = own(&[
        ("time", 1), ("verdict", 2), ("drop_reason", 3), ("ethernet", 4), ("IP", 5), ("l4", 6),
        ("source", 8), ("destination", 9), ("Type", 10), ("node_name", 11), ("source_names", 13),
        ("destination_names", 14), ("l7", 15), ("reply", 16), ("event_type", 19), ("source_service", 20),
        ("destination_service", 21), ("traffic_direction", 22), ("policy_match_type", 23),
        ("trace_observation_point", 24), ("drop_reason_desc", 25), ("is_reply", 26), ("debug_capture_point", 27),
        ("interface", 28), ("proxy_port", 29), ("trace_context", 30), ("sock_xlate_point", 31),
        ("socket_cookie", 32), ("cgroup_id", 33), ("uuid", 34), ("auth_type", 35), ("trace_reason", 36),
        ("node_labels", 37), ("file", 38), ("tunnel", 39), ("ip_trace_id", 40), ("emitter", 41),
        ("egress_allowed_by", 21001), ("ingress_allowed_by", 21002), ("egress_denied_by", 21004),
        ("ingress_denied_by", 21005), ("policy_log", 21006), ("aggregate", 21007), ("Summary", 100000),
        ("extensions", 150000),
    ]);
    assert_eq!(sorted("Flow"), flow_fields);

    #[rustfmt::skip]
    let filter_fields = own(&[
        ("source_ip", 1), ("source_pod", 2), ("destination_ip", 3), ("destination_pod", 4), ("verdict", 5),
        ("event_type", 6), ("source_fqdn", 7), ("destination_fqdn", 8), ("http_status_code", 9),
        ("source_label", 10), ("destination_label", 11), ("protocol", 12), ("source_port", 13),
        ("destination_port", 14), ("reply", 15), ("source_service", 16), ("destination_service", 17),
        ("dns_query", 18), ("source_identity", 19), ("destination_identity", 20), ("http_method", 21),
        ("http_path", 22), ("tcp_flags", 23), ("node_name", 24), ("ip_version", 25), ("source_workload", 26),
        ("destination_workload", 27), ("trace_id", 28), ("uuid", 29), ("traffic_direction", 30),
        ("http_url", 31), ("http_header", 32), ("drop_reason_desc", 33), ("source_ip_xlated", 34),
        ("interface", 35), ("node_labels", 36), ("source_cluster_name", 37), ("destination_cluster_name", 38),
        ("ip_trace_id", 39), ("encrypted", 40), ("experimental", 999),
    ]);
    assert_eq!(sorted("FlowFilter"), filter_fields);
}

/// Lumen's package only holds Lumen types; it may use Hubble's (flow.Policy),
/// but no Hubble package depends on it.
#[test]
fn lumen_package_is_separate() {
    let fds = descriptor_set();
    let lumen = fds.file.iter().find(|f| f.package() == "lumen.v1").unwrap();
    assert_eq!(lumen.name(), "lumen/v1/lumen.proto");
    assert_eq!(lumen.dependency, ["flow/flow.proto"]);
    let names: Vec<_> = lumen.message_type.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["FlowExtension"]);
    let hubble = ["flow", "observer", "peer", "relay"];
    for f in fds.file.iter().filter(|f| hubble.contains(&f.package())) {
        assert!(
            !f.dependency.iter().any(|d| d.starts_with("lumen/")),
            "{} imports lumen",
            f.name()
        );
    }
}

mod loopback {
    //! The generated server and client talk over a real HTTP/2 connection on
    //! 127.0.0.1, together with the standard health service.

    use super::*;
    use lumen_proto::tonic::{self, codegen::tokio_stream, Request, Response, Status};
    use lumen_proto::tonic_health::pb::{health_check_response, health_client::HealthClient, HealthCheckRequest};
    use lumen_proto::tonic_health::ServingStatus;
    use observer::{
        observer_client::ObserverClient,
        observer_server::{Observer, ObserverServer},
    };

    struct Fake;

    type Stream<T> = tokio_stream::Iter<std::vec::IntoIter<Result<T, Status>>>;

    #[tonic::async_trait]
    impl Observer for Fake {
        type GetFlowsStream = Stream<GetFlowsResponse>;
        type GetAgentEventsStream = Stream<observer::GetAgentEventsResponse>;
        type GetDebugEventsStream = Stream<observer::GetDebugEventsResponse>;

        async fn get_flows(&self, req: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
            let req = req.into_inner();
            let mut items = vec![Ok(GetFlowsResponse {
                response_types: Some(get_flows_response::ResponseTypes::LostEvents(LostEvent {
                    source: LostEventSource::HubbleRingBuffer as i32,
                    num_events_lost: 3,
                    ..Default::default()
                })),
                node_name: "node-1".into(),
                time: None,
            })];
            for _ in 0..req.number {
                items.push(Ok(GetFlowsResponse {
                    response_types: Some(get_flows_response::ResponseTypes::Flow(sample_flow())),
                    node_name: "node-1".into(),
                    time: sample_flow().time,
                }));
            }
            Ok(Response::new(tokio_stream::iter(items)))
        }

        async fn get_agent_events(
            &self,
            _: Request<observer::GetAgentEventsRequest>,
        ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
            Err(Status::unimplemented("agent events"))
        }

        async fn get_debug_events(
            &self,
            _: Request<observer::GetDebugEventsRequest>,
        ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
            Err(Status::unimplemented("debug events"))
        }

        async fn get_nodes(
            &self,
            _: Request<observer::GetNodesRequest>,
        ) -> Result<Response<observer::GetNodesResponse>, Status> {
            Ok(Response::new(observer::GetNodesResponse {
                nodes: vec![observer::Node {
                    name: "node-1".into(),
                    state: relay::NodeState::NodeConnected as i32,
                    ..Default::default()
                }],
            }))
        }

        async fn get_namespaces(
            &self,
            _: Request<observer::GetNamespacesRequest>,
        ) -> Result<Response<observer::GetNamespacesResponse>, Status> {
            Ok(Response::new(observer::GetNamespacesResponse {
                namespaces: vec![observer::Namespace {
                    cluster: "default".into(),
                    namespace: "kube-system".into(),
                }],
            }))
        }

        async fn server_status(
            &self,
            _: Request<observer::ServerStatusRequest>,
        ) -> Result<Response<observer::ServerStatusResponse>, Status> {
            Ok(Response::new(observer::ServerStatusResponse {
                num_flows: 10,
                max_flows: 4096,
                seen_flows: 12,
                uptime_ns: 5,
                flows_rate: 1.5,
                version: "lumen-test".into(),
                ..Default::default()
            }))
        }
    }

    #[tokio::test]
    async fn observer_and_health_over_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, health) = lumen_proto::tonic_health::server::health_reporter();
        reporter
            .set_service_status(HEALTH_SERVICE_NAME, ServingStatus::Serving)
            .await;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .add_service(ObserverServer::new(Fake))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                }),
        );

        let endpoint = format!("http://{addr}");
        let mut client = ObserverClient::connect(endpoint.clone()).await.unwrap();

        let status = client
            .server_status(observer::ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!((status.num_flows, status.max_flows, status.seen_flows), (10, 4096, 12));
        assert_eq!(status.flows_rate, 1.5);

        let ns = client
            .get_namespaces(observer::GetNamespacesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ns.namespaces[0].namespace, "kube-system");
        let nodes = client
            .get_nodes(observer::GetNodesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(nodes.nodes[0].state, relay::NodeState::NodeConnected as i32);

        let mut stream = client
            .get_flows(GetFlowsRequest {
                number: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(item) = stream.message().await.unwrap() {
            got.push(item);
        }
        assert_eq!(got.len(), 3);
        assert!(matches!(
            got[0].response_types,
            Some(get_flows_response::ResponseTypes::LostEvents(_))
        ));
        assert_eq!(
            got[1].response_types,
            Some(get_flows_response::ResponseTypes::Flow(sample_flow()))
        );

        let err = client
            .get_agent_events(observer::GetAgentEventsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);

        let channel = tonic::transport::Channel::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health_client = HealthClient::new(channel);
        let resp = health_client
            .check(HealthCheckRequest {
                service: HEALTH_SERVICE_NAME.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.status, health_check_response::ServingStatus::Serving as i32);

        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}

/// The control API is Lumen's own: in `lumen.v1`, importing nothing, every
/// method unary.
#[test]
fn control_service_is_lumen_only() {
    let fds = descriptor_set();
    let control = fds.file.iter().find(|f| f.name() == "lumen/v1/control.proto").unwrap();
    assert_eq!(control.package(), "lumen.v1");
    assert!(control.dependency.is_empty(), "{:?}", control.dependency);
    assert_eq!(control.service.len(), 1);
    let methods: Vec<(&str, bool, bool)> = control.service[0]
        .method
        .iter()
        .map(|m| (m.name(), m.client_streaming(), m.server_streaming()))
        .collect();
    let unary = |name| (name, false, false);
    assert_eq!(
        methods,
        [
            unary("ListEndpoints"),
            unary("AddEndpoint"),
            unary("DeleteEndpoint"),
            unary("ValidatePolicies"),
            unary("ApplyPolicies"),
            unary("DeletePolicies"),
            unary("ListPolicies"),
            unary("TracePolicy"),
            unary("SetAggregation"),
        ]
    );
    use lumen_proto::tonic::server::NamedService;
    struct Never;
    assert_eq!(
        <lumen_proto::lumen::v1::control_server::ControlServer<Never> as NamedService>::NAME,
        "lumen.v1.Control"
    );
}

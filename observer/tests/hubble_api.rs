//! End to end over Hubble's Observer gRPC API: the real `lumen-observer`
//! binary, real traffic, the generated tonic client on the Unix socket.
//! Needs root: run `scripts/test.sh`.
//!
//! One file over 600 lines: each test builds its own testbed and observer,
//! and they share the helpers at the top; split by topic once it grows.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use lumen_proto::flow::{layer4::Protocol, DropReason, Flow, FlowFilter, LostEventSource, TrafficDirection, Verdict};
use lumen_proto::observer::{
    get_flows_response::ResponseTypes, observer_client::ObserverClient, GetAgentEventsRequest, GetFlowsRequest,
    GetFlowsResponse, GetNamespacesRequest, GetNodesRequest, ServerStatusRequest,
};
use lumen_proto::tonic::transport::{Channel, Endpoint, Uri};
use lumen_proto::tonic::{Code, Streaming};
use lumen_proto::tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use lumen_proto::{relay, HEALTH_SERVICE_NAME};
use support::*;

async fn connect(path: PathBuf) -> Channel {
    lumen_observer::server::connect_unix(&path)
        .await
        .expect("connect to the observer socket")
}

async fn flows(client: &mut ObserverClient<Channel>, req: GetFlowsRequest) -> Vec<(String, Flow)> {
    let mut stream = client
        .get_flows(lumen_proto::with_extensions(req))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        match r.response_types {
            Some(ResponseTypes::Flow(f)) => {
                assert_eq!(r.time, f.time, "response time is the flow's time");
                out.push((r.node_name, f));
            }
            other => panic!("unexpected response {other:?}"),
        }
    }
    out
}

/// Opens a stream of every new flow.
async fn follow(client: &mut ObserverClient<Channel>) -> Streaming<GetFlowsResponse> {
    let req = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    client.get_flows(req).await.unwrap().into_inner()
}

/// Reads a follow stream until `done(flows, lost)`, counting the flows and
/// the losses it reports (each from `source`); fails after 15 s.
async fn tally(
    stream: &mut Streaming<GetFlowsResponse>,
    source: LostEventSource,
    done: impl Fn(u64, u64) -> bool,
) -> (u64, u64) {
    let (mut flows, mut lost) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done(flows, lost) {
        assert!(Instant::now() < deadline, "{flows} flows and {lost} lost so far");
        match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
            Ok(Ok(Some(r))) => match r.response_types {
                Some(ResponseTypes::Flow(_)) => flows += 1,
                Some(ResponseTypes::LostEvents(l)) => {
                    assert_eq!(l.source, source as i32);
                    lost += l.num_events_lost;
                }
                other => panic!("unexpected response {other:?}"),
            },
            Ok(other) => panic!("stream ended: {other:?}"),
            Err(_) => {}
        }
    }
    (flows, lost)
}

fn dport(f: &Flow) -> u32 {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => t.destination_port,
        _ => 0,
    }
}

/// The first packet of a connection: SYN without ACK.
fn syn_only(f: &Flow) -> bool {
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => t.flags.is_some_and(|f| f.syn && !f.ack),
        _ => false,
    }
}

fn ingress_to(f: &Flow, port: u32) -> bool {
    f.traffic_direction == TrafficDirection::Ingress as i32
        && dport(f) == port
        && f.source.as_ref().is_some_and(|s| s.pod_name == "frontend")
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn get_flows_serves_enriched_flows_filters_and_follows() {
    let mut c = cluster(&[("frontend", &[("app", "frontend")]), ("backend", &[("app", "backend")])]);
    c.start_observer(ALLOW_HTTP, &["--max-flows", "1000"]);
    let be = c.pod("backend").clone();
    let fe = c.pod("frontend").clone();
    let _s80 = be.tcp_echo_server(80).unwrap();
    let _s8080 = be.tcp_echo_server(8080).unwrap();
    assert_eq!(
        fe.tcp_request(c.addr("backend", false, 80), b"ok", LONG).unwrap(),
        b"ok"
    );
    assert!(fe.tcp_request(c.addr("backend", false, 8080), b"no", SHORT).is_err());
    // Once the JSON output has it, the store has it too (same batch).
    c.wait_flow(|e| e["destination_port"] == 8080 && e["verdict"] == "DROPPED");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = connect(c.grpc_socket()).await;
        let mut client = ObserverClient::new(channel.clone());

        let all = flows(
            &mut client,
            GetFlowsRequest {
                number: 1000,
                ..Default::default()
            },
        )
        .await;
        assert!(all
            .iter()
            .all(|(node, f)| *node == c.node_name && f.node_name == c.node_name));
        let (_, denied) = all
            .iter()
            .find(|(_, f)| ingress_to(f, 8080))
            .expect("the dropped SYN to 8080");
        assert_eq!(denied.verdict, Verdict::Dropped as i32);
        assert_eq!(denied.drop_reason_desc, DropReason::PolicyDenied as i32);
        let (src, dst) = (denied.source.as_ref().unwrap(), denied.destination.as_ref().unwrap());
        assert_eq!(
            (src.pod_name.as_str(), src.namespace.as_str(), u64::from(src.identity)),
            ("frontend", "default", c.identity("frontend"))
        );
        assert_eq!(
            (dst.pod_name.as_str(), dst.namespace.as_str(), u64::from(dst.identity)),
            ("backend", "default", c.identity("backend"))
        );
        assert!(src.labels.contains(&"k8s:app=frontend".to_string()), "{:?}", src.labels);
        let ip = denied.ip.as_ref().unwrap();
        assert_eq!((ip.source.as_str(), ip.destination.as_str()), ("10.0.0.1", "10.0.0.2"));
        let Some(Protocol::Tcp(tcp)) = denied.l4.as_ref().unwrap().protocol else {
            panic!("TCP flow expected")
        };
        assert_eq!(tcp.destination_port, 8080);
        assert!(tcp.source_port >= 1024, "ephemeral source port {}", tcp.source_port);
        assert!(tcp.flags.unwrap().syn);
        assert!(denied.ingress_denied_by.is_empty(), "a default deny names no rule");

        let (_, allowed) = all
            .iter()
            .find(|(_, f)| ingress_to(f, 80) && syn_only(f))
            .expect("the allowed SYN to 80");
        assert_eq!(allowed.verdict, Verdict::Forwarded as i32);
        assert_eq!(allowed.ingress_allowed_by.len(), 1);
        assert_eq!(allowed.ingress_allowed_by[0].name, "allow-http");

        // Last N: the newest N, oldest first.
        let last2 = flows(
            &mut client,
            GetFlowsRequest {
                number: 2,
                ..Default::default()
            },
        )
        .await;
        let uuids = |v: &[(String, Flow)]| v.iter().map(|(_, f)| f.uuid.clone()).collect::<Vec<_>>();
        assert_eq!(uuids(&last2), uuids(&all[all.len() - 2..]));

        let drops = flows(
            &mut client,
            GetFlowsRequest {
                number: 1000,
                whitelist: vec![FlowFilter {
                    verdict: vec![Verdict::Dropped as i32],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await;
        let expected: Vec<_> = all
            .iter()
            .filter(|(_, f)| f.verdict == Verdict::Dropped as i32)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(
            drops.iter().map(|(_, f)| &f.uuid).collect::<Vec<_>>(),
            expected.iter().map(|(_, f)| &f.uuid).collect::<Vec<_>>()
        );

        let err = client
            .get_flows(GetFlowsRequest {
                first: true,
                follow: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::InvalidArgument, "first cannot be specified with follow")
        );

        // Follow: a new connection shows up within a second.
        let mut stream = client
            .get_flows(GetFlowsRequest {
                follow: true,
                whitelist: vec![FlowFilter {
                    destination_port: vec!["80".into()],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let (fe2, addr) = (fe.clone(), c.addr("backend", false, 80));
        let sent = Instant::now();
        let request = tokio::task::spawn_blocking(move || fe2.tcp_request(addr, b"again", LONG).unwrap());
        let seen = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let r = stream.message().await.unwrap().expect("stream open");
                if let Some(ResponseTypes::Flow(f)) = r.response_types {
                    if ingress_to(&f, 80) {
                        return f;
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no followed flow within 1 s of the request ({:?} ago)", sent.elapsed()));
        assert_eq!(seen.verdict, Verdict::Forwarded as i32);
        assert_eq!(request.await.unwrap(), b"again");
        drop(stream);

        let status = client.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
        assert_eq!(status.max_flows, 1000);
        assert!(
            status.num_flows > 0 && status.seen_flows >= status.num_flows,
            "{status:?}"
        );
        assert!(status.num_flows as usize >= all.len(), "{status:?}");
        assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            (status.num_connected_nodes, status.num_unavailable_nodes),
            (Some(1), Some(0))
        );
        assert!(status.uptime_ns > 0 && status.flows_rate > 0.0, "{status:?}");

        let nodes = client.get_nodes(GetNodesRequest {}).await.unwrap().into_inner().nodes;
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name, c.node_name);
        assert_eq!(nodes[0].state, relay::NodeState::NodeConnected as i32);
        assert_eq!(nodes[0].max_flows, 1000);

        let namespaces = client
            .get_namespaces(GetNamespacesRequest {})
            .await
            .unwrap()
            .into_inner()
            .namespaces;
        assert_eq!(
            namespaces.iter().map(|n| n.namespace.as_str()).collect::<Vec<_>>(),
            ["default"]
        );

        let err = client
            .get_agent_events(GetAgentEventsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);

        let health = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: HEALTH_SERVICE_NAME.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32);
    });
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn a_follower_is_told_exactly_what_the_kernel_ring_buffer_lost() {
    let mut c = cluster(&[("frontend", &[("app", "frontend")]), ("backend", &[("app", "backend")])]);
    c.start_observer("", &["--ring-buffer-bytes", "4096", "--monitor-aggregation", "none"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fe = c.pod("frontend").clone();
    let target = c.addr("backend", false, 9);
    let pin_dir = c.pin_dir();
    let socket = c.grpc_socket();
    let (flows, lost, kernel, replayed, replay_lost) = rt.block_on(async move {
        let mut client = ObserverClient::new(connect(socket).await);
        let mut stream = follow(&mut client).await;
        let sent = tokio::task::spawn_blocking(move || fe.udp_send(target, b"x", 20_000).unwrap());
        assert_eq!(sent.await.unwrap(), 20_000);
        // Read the stream until the losses it reported add up to the kernel's count.
        let (flows, lost) = tally(&mut stream, LostEventSource::PerfEventRingBuffer, |_, lost| {
            let k = lumen_observer::counters::event_counters(&pin_dir).unwrap();
            k.lost > 0 && lost == k.lost
        })
        .await;
        let kernel = lumen_observer::counters::event_counters(&pin_dir).unwrap();
        // A replay of everything stored (no follow) carries the same losses.
        let seen = |s: lumen_proto::observer::ServerStatusResponse| s.seen_flows;
        while seen(client.server_status(ServerStatusRequest {}).await.unwrap().into_inner())
            < kernel.emitted - kernel.lost
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let req = GetFlowsRequest {
            number: 1_000_000,
            ..Default::default()
        };
        let mut replay = client.get_flows(req).await.unwrap().into_inner();
        let (mut replayed, mut replay_lost) = (0u64, 0u64);
        while let Some(r) = replay.message().await.unwrap() {
            match r.response_types {
                Some(ResponseTypes::Flow(_)) => replayed += 1,
                Some(ResponseTypes::LostEvents(l)) => {
                    assert_eq!(l.source, LostEventSource::PerfEventRingBuffer as i32);
                    replay_lost += l.num_events_lost;
                }
                other => panic!("unexpected response {other:?}"),
            }
        }
        (flows, lost, kernel, replayed, replay_lost)
    });
    assert!(kernel.lost > 0, "a 4 KiB ring buffer must overflow");
    assert_eq!(
        lost, kernel.lost,
        "every kernel loss reaches the follower, counted exactly"
    );
    assert!(flows > 0 && flows <= kernel.emitted - kernel.lost);
    assert_eq!(
        (replayed, replay_lost),
        (kernel.emitted - kernel.lost, kernel.lost),
        "a replay holds every stored flow and every kernel loss"
    );
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn a_slow_follower_is_told_exactly_what_it_missed_and_blocks_nobody() {
    let mut c = cluster(&[("frontend", &[("app", "frontend")]), ("backend", &[("app", "backend")])]);
    c.start_observer("", &["--max-flows", "200", "--monitor-aggregation", "none"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fe = c.pod("frontend").clone();
    let target = c.addr("backend", false, 9);
    let socket = c.grpc_socket();
    rt.block_on(async move {
        let mut client = ObserverClient::new(connect(socket).await);
        let seen = |s: lumen_proto::observer::ServerStatusResponse| s.seen_flows;
        let before = seen(client.server_status(ServerStatusRequest {}).await.unwrap().into_inner());
        let mut slow = follow(&mut client).await;
        // 3,000 datagrams, two events each, into a store of 200, while the
        // slow follower reads nothing.
        let sent = tokio::task::spawn_blocking(move || fe.udp_send(target, b"x", 3_000).unwrap());
        assert_eq!(sent.await.unwrap(), 3_000);
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Another client is served meanwhile: the slow one blocks nobody.
        let status = client.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
        let stored = status.seen_flows - before;
        assert!(stored >= 6_000, "{stored} flows stored");
        assert_eq!(status.num_flows, 200);
        let last = flows(
            &mut client,
            GetFlowsRequest {
                number: 10,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(last.len(), 10);

        let (got, lost) = tally(&mut slow, LostEventSource::HubbleRingBuffer, |got, lost| {
            got + lost >= stored
        })
        .await;
        assert_eq!(
            got + lost,
            stored,
            "every flow is either delivered or reported lost, exactly"
        );
        assert!(lost > 0, "a follower that reads nothing falls behind a 200-flow store");
        // ServerStatus counts what clients missed (in Lumen's response metadata).
        let status = client.server_status(ServerStatusRequest {}).await.unwrap();
        let meta = |k: &str| {
            status
                .metadata()
                .get(k)
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(meta(lumen_observer::server::LOST_CLIENT_HEADER), lost);
        assert_eq!(meta(lumen_observer::server::LOST_KERNEL_HEADER), 0);
    });
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn a_field_mask_sends_only_the_named_fields() {
    let mut c = cluster(&[("frontend", &[("app", "frontend")]), ("backend", &[("app", "backend")])]);
    c.start_observer(ALLOW_HTTP, &[]);
    let be = c.pod("backend").clone();
    let _s = be.tcp_echo_server(8080).unwrap();
    assert!(c
        .pod("frontend")
        .tcp_request(c.addr("backend", false, 8080), b"no", SHORT)
        .is_err());
    c.wait_flow(|e| e["destination_port"] == 8080 && e["verdict"] == "DROPPED");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = ObserverClient::new(connect(c.grpc_socket()).await);
        let mask = |paths: &[&str]| {
            Some(lumen_proto::prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            })
        };
        let drops = FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        };
        let req = GetFlowsRequest {
            number: 1,
            whitelist: vec![drops.clone()],
            field_mask: mask(&["verdict", "source.pod_name"]),
            ..Default::default()
        };
        let mut stream = client.get_flows(req).await.unwrap().into_inner();
        let mut got = Vec::new();
        while let Some(r) = stream.message().await.unwrap() {
            assert!(r.time.is_some(), "the response keeps its time");
            if let Some(ResponseTypes::Flow(f)) = r.response_types {
                got.push((r.node_name, f));
            }
        }
        assert_eq!(got.len(), 1);
        let want = Flow {
            verdict: Verdict::Dropped as i32,
            source: Some(lumen_proto::flow::Endpoint {
                pod_name: "frontend".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(got[0].1, want);
        assert_eq!(got[0].0, c.node_name, "the response still names the node");

        let bad = GetFlowsRequest {
            field_mask: mask(&["source.podname"]),
            ..Default::default()
        };
        let status = client.get_flows(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "field_mask path \"source.podname\": flow.Endpoint has no field \"podname\""
        );
    });
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn the_api_is_also_served_over_tcp_when_asked() {
    let mut c = cluster(&[("frontend", &[("app", "frontend")])]);
    c.start_observer("", &["--listen-address", "127.0.0.1:4244", "--max-flows", "777"]);
    let netns = c.node.netns.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // 127.0.0.1 of the node's namespace: connect from inside it.
        let channel = Endpoint::try_from("http://127.0.0.1:4244")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let netns = netns.clone();
                async move {
                    let std = lumen_testbed::in_netns(&netns, || std::net::TcpStream::connect("127.0.0.1:4244"))
                        .map_err(std::io::Error::other)??;
                    std.set_nonblocking(true)?;
                    Ok::<_, std::io::Error>(TokioIo::new(tokio::net::TcpStream::from_std(std)?))
                }
            }))
            .await
            .expect("connect over TCP inside the node");
        let status = ObserverClient::new(channel.clone())
            .server_status(ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.max_flows, 777);
        let health = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: HEALTH_SERVICE_NAME.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32);
    });
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn flows_say_which_policy_decided_and_why_a_default_deny_dropped() {
    let mut c = cluster(&[
        ("frontend", &[("app", "frontend")]),
        ("backend", &[("app", "backend")]),
        ("other", &[("app", "other")]),
    ]);
    let policies = [
        cnp(
            "backend-in",
            "  endpointSelector: {matchLabels: {app: backend}}\n  ingress:\n    - fromEndpoints: [{matchLabels: {app: frontend}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n  ingressDeny:\n    - fromEndpoints: [{matchLabels: {app: other}}]\n",
        ),
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: frontend-out}\nspec:\n  endpointSelector: {matchLabels: {app: frontend}}\n  egress:\n    - toEntities: [cluster]\n".to_string(),
    ];
    c.start_observer(&policies.join("---\n"), &[]);
    let be = c.pod("backend").clone();
    let _s80 = be.tcp_echo_server(80).unwrap();
    let _s8080 = be.tcp_echo_server(8080).unwrap();
    let (fe, other) = (c.pod("frontend").clone(), c.pod("other").clone());
    assert_eq!(
        fe.tcp_request(c.addr("backend", false, 80), b"ok", LONG).unwrap(),
        b"ok"
    );
    assert!(fe.tcp_request(c.addr("backend", false, 8080), b"no", SHORT).is_err());
    assert!(other.tcp_request(c.addr("backend", false, 80), b"no", SHORT).is_err());
    c.wait_flow(|e| e["source"] == "10.0.0.3" && e["verdict"] == "DROPPED");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = rt.block_on(async {
        let mut client = ObserverClient::new(connect(c.grpc_socket()).await);
        flows(
            &mut client,
            GetFlowsRequest {
                number: 1000,
                ..Default::default()
            },
        )
        .await
    });
    let policy = |name: &str, namespace: &str, kind: &str| lumen_proto::flow::Policy {
        name: name.into(),
        namespace: namespace.into(),
        kind: kind.into(),
        ..Default::default()
    };
    let first_syn = |from: &str, dir: TrafficDirection, port: u32| {
        all.iter()
            .map(|(_, f)| f)
            .find(|f| {
                f.traffic_direction == dir as i32
                    && dport(f) == port
                    && syn_only(f)
                    && f.source.as_ref().is_some_and(|s| s.pod_name == from)
            })
            .unwrap_or_else(|| panic!("no {dir:?} SYN from {from} to port {port}"))
    };
    let backend_in = policy("backend-in", "default", "CiliumNetworkPolicy");

    // Allowed on both sides: each side names its policy and how it matched.
    let out = first_syn("frontend", TrafficDirection::Egress, 80);
    assert_eq!(
        out.egress_allowed_by,
        [policy("frontend-out", "", "CiliumClusterwideNetworkPolicy")]
    );
    assert_eq!(out.policy_match_type, 1, "L3 only");
    let inn = first_syn("frontend", TrafficDirection::Ingress, 80);
    assert_eq!(inn.ingress_allowed_by, std::slice::from_ref(&backend_in));
    assert_eq!(inn.policy_match_type, 2, "L3 and L4");

    // A deny rule: the flow names it.
    let denied = first_syn("other", TrafficDirection::Ingress, 80);
    assert_eq!(
        (denied.verdict, denied.drop_reason_desc),
        (Verdict::Dropped as i32, DropReason::PolicyDeny as i32)
    );
    assert_eq!(denied.ingress_denied_by, std::slice::from_ref(&backend_in));

    // Default deny: no rule decided; the extension says which policies
    // made the backend default-deny.
    let dropped = first_syn("frontend", TrafficDirection::Ingress, 8080);
    assert_eq!(dropped.drop_reason_desc, DropReason::PolicyDenied as i32);
    assert!(dropped.ingress_denied_by.is_empty() && dropped.ingress_allowed_by.is_empty());
    let ext = lumen_proto::lumen::v1::FlowExtension::from_any(dropped.extensions.as_ref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(ext.selected_by, [backend_in]);
}

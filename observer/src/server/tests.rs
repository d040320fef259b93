//! The server's tests: planning against a store, streams with their loss
//! notices, request errors, and the prefilter against the full filters.

use std::sync::Arc;

use lumen_flow::Cidr;
use lumen_probes::abi;
use lumen_proto::flow::{FlowFilter, LostEventSource, Verdict};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsRequest, GetFlowsResponse};
use lumen_proto::prost_types;
use lumen_proto::tonic::{self, Status};
use lumen_rpc::raw::RawFlowsResponse;
use tokio::sync::{mpsc, watch};

use super::query::{Admit, Query};
use super::service::Unbatched;
use super::stream::{stream_flows, Tx};
use crate::hub::Hub;
use crate::parser::{self, EndpointMeta, Snapshot};
use crate::store::{FlowStore, StoredFlow};
use tokio_stream::StreamExt;

/// A store of flows with timestamps 10, 20, … ns; odd ports are drops.
fn store(n: u16, capacity: usize) -> FlowStore {
    let mut s = FlowStore::new(capacity);
    for p in 1..=n {
        let ev = abi::Event {
            timestamp_ns: u64::from(p) * 10,
            dport: p,
            verdict: if p % 2 == 1 {
                abi::VERDICT_DROPPED
            } else {
                abi::VERDICT_FORWARDED
            },
            ..Default::default()
        };
        s.push(ev, 0);
    }
    s
}

fn request(number: u64, first: bool, follow: bool) -> GetFlowsRequest {
    GetFlowsRequest {
        number,
        first,
        follow,
        ..Default::default()
    }
}

fn ts(ns: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: 0,
        nanos: ns as i32,
    })
}

/// What a non-following client gets: the same steps as `stream_flows`
/// without the channel.
fn select(s: &FlowStore, req: &GetFlowsRequest, only_drops: bool) -> Vec<u16> {
    let q = Query::new(req, true).unwrap();
    let matches = |f: &StoredFlow| !only_drops || f.event.verdict == abi::VERDICT_DROPPED;
    let start = q.start(s.last(s.len()).into_iter().rev(), s.oldest(), s.next_seq(), matches);
    let mut out = Vec::new();
    for f in s.read(start, usize::MAX).flows {
        match q.admit(out.len() as u64, &f, || matches(&f)) {
            Admit::End => break,
            Admit::Skip => {}
            Admit::Send => out.push(f.event.dport),
        }
    }
    out
}

#[test]
fn last_n_is_the_newest_n_sent_oldest_first() {
    let s = store(10, 6);
    assert_eq!(select(&s, &request(3, false, false), false), [8, 9, 10]);
    // Zero without follow means every flow held.
    assert_eq!(select(&s, &request(0, false, false), false), [5, 6, 7, 8, 9, 10]);
    assert_eq!(select(&s, &request(50, false, false), false), [5, 6, 7, 8, 9, 10]);
}

#[test]
fn first_n_starts_at_the_oldest_flow_held() {
    let s = store(10, 6);
    assert_eq!(select(&s, &request(2, true, false), false), [5, 6]);
}

#[test]
fn last_n_counts_only_matching_flows() {
    let s = store(10, 10);
    assert_eq!(select(&s, &request(2, false, false), true), [7, 9]);
    assert_eq!(select(&s, &request(2, true, false), true), [1, 3]);
}

#[test]
fn since_takes_precedence_over_number_and_until_ends_the_stream() {
    let s = store(10, 10);
    let mut req = request(0, false, false);
    req.since = ts(45);
    assert_eq!(select(&s, &req, false), [5, 6, 7, 8, 9, 10]);
    req.number = 2;
    assert_eq!(select(&s, &req, false), [5, 6]);
    req.number = 0;
    req.until = ts(70);
    assert_eq!(select(&s, &req, false), [5, 6, 7]);
    let mut req = request(3, true, false);
    req.until = ts(20);
    assert_eq!(select(&s, &req, false), [1, 2]);
}

#[test]
fn follow_without_number_starts_at_the_next_flow() {
    let s = store(10, 10);
    let q = Query::new(&request(0, false, true), true).unwrap();
    assert_eq!(
        q.start(s.last(10).into_iter().rev(), s.oldest(), s.next_seq(), |_| true),
        10
    );
    let q = Query::new(&request(2, false, true), true).unwrap();
    assert_eq!(
        q.start(s.last(10).into_iter().rev(), s.oldest(), s.next_seq(), |_| true),
        8
    );
}

fn port_or_lost(r: GetFlowsResponse) -> (i32, u64) {
    match r.response_types.unwrap() {
        ResponseTypes::Flow(f) => match f.l4.and_then(|l| l.protocol) {
            Some(lumen_proto::flow::layer4::Protocol::Tcp(t)) => (0, u64::from(t.destination_port)),
            other => panic!("unexpected l4 {other:?}"),
        },
        ResponseTypes::LostEvents(l) => (l.source, l.num_events_lost),
        ResponseTypes::NodeStatus(n) => panic!("unexpected node status {n:?}"),
    }
}

fn tcp(port: u16) -> abi::Event {
    abi::Event {
        family: 4,
        proto: 6,
        dport: port,
        ..Default::default()
    }
}

/// A stream's channel as the server serves it: responses written as bytes,
/// sent in batches and read one by one.
fn encoded(hub: &Hub, capacity: usize) -> (Tx, Unbatched) {
    let (tx, rx) = mpsc::channel(capacity);
    let encoder = Box::new(parser::Encoder::new(hub.instance()));
    (Tx::Encoded(tx, encoder, Vec::new()), Unbatched::new(rx))
}

fn decoded(r: Result<RawFlowsResponse, Status>) -> GetFlowsResponse {
    r.unwrap().decode().unwrap()
}

// A current-thread runtime: the stream task runs only when the test yields.
#[tokio::test(flavor = "current_thread")]
async fn a_follower_the_store_laps_is_told_exactly_what_it_missed() {
    let hub = Hub::new("n1", 4);
    hub.push([tcp(1), tcp(2)]);
    let (tx, mut rx) = encoded(&hub, 1);
    let (_stop, shutdown) = watch::channel(false);
    let q = Query::new(&request(2, false, true), true).unwrap();
    tokio::spawn(stream_flows(q.subscribe(&hub), q, tx, shutdown));
    // The task sends flow 1, then waits for room for flow 2.
    tokio::task::yield_now().await;
    hub.push((3..=12).map(tcp));
    let mut got = Vec::new();
    for _ in 0..7 {
        got.push(port_or_lost(decoded(rx.next().await.unwrap())));
    }
    let hubble = LostEventSource::HubbleRingBuffer as i32;
    assert_eq!(got, [(0, 1), (0, 2), (hubble, 6), (0, 9), (0, 10), (0, 11), (0, 12)]);
    assert_eq!((hub.telemetry().lost_store.get(), hub.status().client_lost), (6, 6));
}

#[tokio::test(flavor = "current_thread")]
async fn kernel_losses_reach_followers_and_shutdown_ends_the_stream() {
    let hub = Hub::new("n1", 4);
    let (tx, mut rx) = encoded(&hub, 8);
    let (stop, shutdown) = watch::channel(false);
    let q = Query::new(&request(0, false, true), true).unwrap();
    tokio::spawn(stream_flows(q.subscribe(&hub), q, tx, shutdown));
    tokio::task::yield_now().await;
    let open = || hub.telemetry().flow_streams.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(open(), 1, "the stream counts as open");
    hub.kernel_lost(5);
    let r = decoded(rx.next().await.unwrap());
    assert_eq!(r.node_name, "n1");
    assert_eq!(port_or_lost(r), (LostEventSource::PerfEventRingBuffer as i32, 5));
    hub.push([tcp(80)]);
    assert_eq!(port_or_lost(decoded(rx.next().await.unwrap())), (0, 80));
    stop.send_replace(true);
    assert!(rx.next().await.is_none());
    assert_eq!(open(), 0, "and no longer once it ended");
}

#[tokio::test(flavor = "current_thread")]
async fn kernel_losses_reach_replays_in_stream_order() {
    let hub = Hub::new("n1", 4);
    hub.push([tcp(1)]);
    hub.kernel_lost(3);
    hub.push([tcp(2)]);
    hub.kernel_lost(2);
    let replay = |number| {
        let hub = hub.clone();
        async move {
            let (tx, mut rx) = encoded(&hub, 16);
            let (_stop, shutdown) = watch::channel(false);
            let q = Query::new(&request(number, false, false), true).unwrap();
            stream_flows(q.subscribe(&hub), q, tx, shutdown).await;
            let mut got = Vec::new();
            while let Some(r) = rx.next().await {
                got.push(port_or_lost(decoded(r)));
            }
            got
        }
    };
    let perf = LostEventSource::PerfEventRingBuffer as i32;
    assert_eq!(replay(10).await, [(0, 1), (perf, 3), (0, 2), (perf, 2)]);
    // `--last 1` starts at flow 2: the loss before it is not in the window.
    assert_eq!(replay(1).await, [(0, 2), (perf, 2)]);
}

#[test]
fn invalid_requests_are_invalid_arguments_naming_the_problem() {
    let err = |req: &GetFlowsRequest| Status::from(Query::new(req, true).err().unwrap());
    let e = err(&request(5, true, true));
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(e.message(), "first cannot be specified with follow");

    let mut req = request(5, false, false);
    req.whitelist = vec![FlowFilter {
        source_ip: vec!["10.0.0.300".into()],
        ..Default::default()
    }];
    let e = err(&req);
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("invalid filter: "), "{}", e.message());
    assert!(e.message().contains("10.0.0.300"), "{}", e.message());

    let mut req = request(5, false, false);
    req.since = Some(prost_types::Timestamp { seconds: 1, nanos: -1 });
    assert_eq!(err(&req).message(), "invalid since timestamp: 1s -1ns");

    let mut req = request(5, false, false);
    req.whitelist = vec![FlowFilter {
        verdict: vec![Verdict::Dropped as i32],
        ..Default::default()
    }];
    assert!(Query::new(&req, true).is_ok());
}

#[test]
fn the_prefilter_never_rejects_what_the_filters_accept() {
    let hub = Hub::new("n", 64);
    let mut events = Vec::new();
    for i in 0..48u32 {
        let mut ev = abi::Event {
            family: 4,
            proto: [6, 17, 1][(i % 3) as usize],
            direction: [abi::DIR_INGRESS, abi::DIR_EGRESS][(i % 2) as usize],
            // Every fourth a reply, whose connection goes the other way.
            ct_state: [abi::CT_NEW, abi::CT_REPLY][usize::from(i % 4 == 3)],
            flags: if i % 4 == 3 { abi::EVF_IS_REPLY } else { 0 },
            verdict: [abi::VERDICT_FORWARDED, abi::VERDICT_DROPPED, abi::VERDICT_AUDIT][(i % 3) as usize],
            drop_reason: if i % 3 == 1 { [133, 181][(i % 2) as usize] } else { 0 },
            sport: 40_000 + (i % 4) as u16,
            dport: [80, 8080, 53][(i % 3) as usize],
            src_identity: 300 + i % 2,
            dst_identity: 400 + i % 3,
            ..Default::default()
        };
        ev.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        events.push(ev);
    }
    // Who is who: 10.0.0.1 and 10.0.0.2 are pods, 10.0.0.3 is outside.
    let pod = |name: &str| {
        Arc::new(EndpointMeta {
            pod_name: name.into(),
            namespace: "default".into(),
            labels: vec![
                format!("k8s:app={name}"),
                "k8s:io.kubernetes.pod.namespace=default".into(),
            ],
            ..Default::default()
        })
    };
    let mut snapshot = Snapshot::default();
    snapshot.endpoints.insert("10.0.0.1".parse().unwrap(), pod("client"));
    snapshot.endpoints.insert("10.0.0.2".parse().unwrap(), pod("server"));
    hub.publish(snapshot);
    // 16 forwarded flows to port 443 between the outside (world) and the pods.
    for i in 0..16u8 {
        let mut ev = abi::Event {
            family: 4,
            proto: 6,
            verdict: abi::VERDICT_FORWARDED,
            dport: 443,
            src_identity: if i % 2 == 0 { 2 } else { 400 },
            dst_identity: if i % 2 == 0 { 300 } else { 2 },
            ..Default::default()
        };
        let (s, d) = if i % 2 == 0 { (3, 1) } else { (2, 3) };
        ev.saddr[..4].copy_from_slice(&[10, 0, 0, s]);
        ev.daddr[..4].copy_from_slice(&[10, 0, 0, d]);
        events.push(ev);
    }
    hub.push(events);
    // Pod, namespace and label fields are answered exactly on the record.
    let endpoint_filters = [
        vec![FlowFilter {
            source_pod: vec!["default/client".into()],
            ..Default::default()
        }],
        vec![FlowFilter {
            destination_pod: vec!["cli".into()],
            ..Default::default()
        }],
        vec![FlowFilter {
            source_pod: vec!["default/".into()],
            destination_label: vec!["reserved:world".into()],
            ..Default::default()
        }],
        vec![
            FlowFilter {
                source_label: vec!["k8s:app=server".into()],
                ..Default::default()
            },
            FlowFilter {
                source_label: vec!["reserved:world".into()],
                destination_pod: vec!["default/client".into()],
                ..Default::default()
            },
        ],
        vec![FlowFilter {
            destination_pod: vec!["default/server".into()],
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }],
    ];
    let expected = [48, 8, 8, 16, 16];
    for (whitelist, expected) in endpoint_filters.iter().zip(expected) {
        let q = Query::new(
            &GetFlowsRequest {
                whitelist: whitelist.clone(),
                ..Default::default()
            },
            true,
        )
        .unwrap();
        let held = hub.held(64);
        let full: Vec<_> = held.iter().map(|f| q.filters.matches(&hub.to_flow(f))).collect();
        let pre: Vec<_> = held.iter().map(|f| q.prefilter.may_match(&hub, f)).collect();
        assert_eq!(pre, full, "{whitelist:?}");
        assert_eq!(full.iter().filter(|m| **m).count(), expected, "{whitelist:?}");
    }
    let filters = [
        vec![FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            destination_port: vec!["8080".into()],
            ..Default::default()
        }],
        vec![FlowFilter {
            drop_reason_desc: vec![181],
            ..Default::default()
        }],
        vec![FlowFilter {
            traffic_direction: vec![1],
            ..Default::default()
        }],
        vec![
            FlowFilter {
                source_port: vec!["40001".into()],
                traffic_direction: vec![2],
                ..Default::default()
            },
            FlowFilter {
                destination_identity: vec![402],
                ..Default::default()
            },
        ],
        vec![FlowFilter {
            destination_port: vec!["80".into(), "53".into()],
            verdict: vec![1, 4],
            ..Default::default()
        }],
        vec![FlowFilter {
            source_ip: vec!["10.0.0.1".into()],
            verdict: vec![Verdict::Audit as i32],
            ..Default::default()
        }],
        vec![FlowFilter {
            destination_ip: vec!["10.0.0.0/30".into(), "fd00::/8".into()],
            ..Default::default()
        }],
        vec![FlowFilter {
            source_ip: vec!["10.0.0.0/8".into()],
            destination_ip: vec!["10.0.0.2".into()],
            ..Default::default()
        }],
    ];
    // Addresses: inside and outside a prefix, and across families.
    let mut v4 = [0u8; 16];
    v4[..4].copy_from_slice(&[10, 0, 0, 2]);
    let n = |s: &str| Cidr::of_filter_value(s).unwrap();
    let in_net = |net: &Cidr, family: u8, addr: &[u8; 16]| net.contains(parser::ip_of(family, addr));
    assert!(in_net(&n("10.0.0.0/30"), 4, &v4));
    assert!(!in_net(&n("10.0.0.4/30"), 4, &v4));
    assert!(in_net(&n("10.0.0.2"), 4, &v4));
    assert!(!in_net(&n("fd00::/8"), 4, &v4));
    assert!(Cidr::of_filter_value("pod-a").is_none(), "unparseable: no prefiltering");
    for whitelist in filters {
        let q = Query::new(
            &GetFlowsRequest {
                whitelist: whitelist.clone(),
                ..Default::default()
            },
            true,
        )
        .unwrap();
        let held = hub.held(64);
        let (mut full, mut pre) = (0, 0);
        for f in &held {
            let matched = q.filters.matches(&hub.to_flow(f));
            let passed = q.prefilter.may_match(&hub, f);
            assert!(
                !matched || passed,
                "{whitelist:?} rejected a matching flow: {:?}",
                f.event
            );
            full += usize::from(matched);
            pre += usize::from(passed);
        }
        assert!(
            full > 0 && pre >= full,
            "{whitelist:?}: {full} matched, {pre} passed the prefilter"
        );
    }
    // A selective filter: the prefilter spares building most flows.
    let q = Query::new(
        &GetFlowsRequest {
            whitelist: vec![FlowFilter {
                verdict: vec![2],
                destination_port: vec!["8080".into()],
                ..Default::default()
            }],
            ..Default::default()
        },
        true,
    )
    .unwrap();
    let passed = hub.held(64).iter().filter(|f| q.prefilter.may_match(&hub, f)).count();
    assert_eq!(passed, 16);
}

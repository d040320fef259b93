//! Streaming one client's answer: its subscription to the hub read in
//! batches, each flow admitted by the query, built, masked and sent on the
//! client's bounded channel. A slow client falls behind in the store, never
//! blocks the reader, and is told what it missed with a `LostEvent`.

use std::time::SystemTime;

use lumen_proto::flow::{Flow, LostEvent, LostEventSource};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::prost_types;
use lumen_proto::tonic::Status;
use tokio::sync::{mpsc, watch};

use super::query::{Admit, Query};
use crate::hub::{Notice, Subscription};

pub(super) type Tx = mpsc::Sender<Result<GetFlowsResponse, Status>>;

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

fn lost(node_name: &str, source: LostEventSource, count: u64) -> GetFlowsResponse {
    GetFlowsResponse {
        response_types: Some(ResponseTypes::LostEvents(LostEvent {
            source: source as i32,
            num_events_lost: count,
            ..Default::default()
        })),
        node_name: node_name.to_string(),
        time: Some(now()),
    }
}

fn flow_response(mut flow: Flow, q: &Query) -> GetFlowsResponse {
    if !q.extensions {
        flow.extensions = None;
    }
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(match &q.mask {
            Some(m) => m.apply(&flow),
            None => flow,
        })),
    }
}

/// Streams one client's flows from `sub` until done, the client leaves or
/// shutdown. Kernel losses come in stream order, before the first flow after them.
pub(super) async fn stream_flows(mut sub: Subscription, q: Query, tx: Tx, mut shutdown: watch::Receiver<bool>) {
    let node = sub.hub().node_name().to_string();
    let mut sent = 0;
    let mut notices = Vec::new();
    loop {
        notices.clear();
        let more = tokio::select! {
            more = sub.next(&mut notices) => more,
            _ = tx.closed() => return,
            _ = shutdown.changed() => return,
        };
        if !more {
            return;
        }
        for notice in &notices {
            let response = match notice {
                Notice::Missed(n) => {
                    sub.hub().client_lost(*n);
                    lost(&node, LostEventSource::HubbleRingBuffer, *n)
                }
                Notice::KernelLost(n) => lost(&node, LostEventSource::PerfEventRingBuffer, *n),
                Notice::Flow(f) => {
                    let mut built = None;
                    let admit = q.admit(sent, f, || {
                        q.prefilter.may_match(sub.hub(), f) && q.filters.matches(built.insert(sub.build(f)))
                    });
                    match admit {
                        Admit::End => return,
                        Admit::Skip => continue,
                        Admit::Send => {
                            sent += 1;
                            flow_response(built.unwrap_or_else(|| sub.build(f)), &q)
                        }
                    }
                }
            };
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
        }
    }
}

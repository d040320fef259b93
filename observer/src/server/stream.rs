//! Streaming one client's answer: its subscription to the hub read in
//! batches, each flow admitted by the query, built (or written straight as
//! its encoded response), masked and sent on the client's bounded channel.
//! A slow client falls behind in the store, never blocks the reader, and is
//! told what it missed with a `LostEvent`.

use std::sync::Arc;
use std::time::SystemTime;

use lumen_proto::flow::{Flow, LostEvent, LostEventSource};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::prost_types;
use lumen_proto::tonic::Status;
use lumen_rpc::raw::RawFlowsResponse;
use tokio::sync::{mpsc, watch};

use super::query::{Admit, Query};
use crate::hub::{Notice, Subscription};
use crate::parser::Encoder;
use crate::store::StoredFlow;

/// Where one client's responses go: built messages for the typed service,
/// or their bytes, written once and passed through as they are. Encoded
/// responses travel in batches (one per read of the subscription, at most
/// [`BATCH`]): one channel send per batch rather than per flow.
pub(super) enum Tx {
    Typed(mpsc::Sender<Result<GetFlowsResponse, Status>>),
    Encoded(mpsc::Sender<Vec<RawFlowsResponse>>, Box<Encoder>, Vec<RawFlowsResponse>),
}

/// The most encoded responses sent as one batch.
pub(super) const BATCH: usize = 256;

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

impl Tx {
    async fn closed(&self) {
        match self {
            Tx::Typed(tx) => tx.closed().await,
            Tx::Encoded(tx, ..) => tx.closed().await,
        }
    }

    /// A response the server made itself (a loss notice).
    fn made(&self, response: GetFlowsResponse) -> Response {
        match self {
            Tx::Typed(_) => Response::Typed(Box::new(response)),
            Tx::Encoded(..) => Response::Encoded(RawFlowsResponse::encode(&response)),
        }
    }

    /// The response carrying the flow of `f`, already built if a filter
    /// needed it. Without a field mask an encoded stream writes it from the
    /// stored record.
    fn flow(&mut self, sub: &Subscription, f: &StoredFlow, built: Option<Arc<Flow>>, q: &Query) -> Response {
        match self {
            Tx::Encoded(_, encoder, _) if q.mask.is_none() => {
                Response::Encoded(encoder.response(f, &sub.snapshot(f), q.extensions))
            }
            _ => self.made(flow_response(
                built.map_or_else(|| sub.build(f), Arc::unwrap_or_clone),
                q,
            )),
        }
    }

    /// Sends `response`, or adds it to the batch; false once the client left.
    async fn send(&mut self, response: Response) -> bool {
        match (&mut *self, response) {
            (Tx::Typed(tx), Response::Typed(r)) => tx.send(Ok(*r)).await.is_ok(),
            (Tx::Encoded(_, _, batch), Response::Encoded(r)) => {
                batch.push(r);
                batch.len() < BATCH || self.flush().await
            }
            _ => unreachable!("responses are made for their channel"),
        }
    }

    /// Sends the batch so far; false once the client left.
    async fn flush(&mut self) -> bool {
        match self {
            Tx::Encoded(tx, _, batch) if !batch.is_empty() => {
                let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
                tx.send(full).await.is_ok()
            }
            _ => true,
        }
    }
}

/// Counts a `GetFlows` stream as open for as long as it lives.
struct OpenStream(std::sync::Arc<crate::telemetry::Telemetry>);

impl OpenStream {
    fn new(telemetry: std::sync::Arc<crate::telemetry::Telemetry>) -> OpenStream {
        telemetry
            .flow_streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenStream(telemetry)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.flow_streams.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

enum Response {
    Typed(Box<GetFlowsResponse>),
    Encoded(RawFlowsResponse),
}

/// Streams one client's flows from `sub` until done, the client leaves or
/// shutdown. Kernel losses come in stream order, before the first flow after them.
pub(super) async fn stream_flows(mut sub: Subscription, q: Query, mut tx: Tx, mut shutdown: watch::Receiver<bool>) {
    let _open = OpenStream::new(sub.hub().telemetry_handle());
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
                    tx.made(lost(&node, LostEventSource::HubbleRingBuffer, *n))
                }
                Notice::KernelLost(n) => tx.made(lost(&node, LostEventSource::PerfEventRingBuffer, *n)),
                Notice::Flow(f) => {
                    let mut built = None;
                    let admit = q.admit(sent, f, || {
                        q.prefilter.may_match(sub.hub(), f)
                            && (q.filters.is_empty() || q.filters.matches(built.insert(sub.flow(f))))
                    });
                    match admit {
                        Admit::End => {
                            tx.flush().await;
                            return;
                        }
                        Admit::Skip => continue,
                        Admit::Send => {
                            sent += 1;
                            tx.flow(&sub, f, built, &q)
                        }
                    }
                }
            };
            if !tx.send(response).await {
                return;
            }
        }
        if !tx.flush().await {
            return;
        }
    }
}

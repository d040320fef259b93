//! A follower across a server that goes away and comes back, over a real
//! Unix socket: every flow once, in order, and the break said in the stream.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lumen_proto::flow::Flow;
use lumen_proto::observer::observer_server::{Observer, ObserverServer};
use lumen_proto::observer::*;
use lumen_proto::prost_types::Timestamp;
use lumen_proto::tonic::{self, Request, Response, Status};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};

use super::*;

/// Flows `(uuid, second)`, in time order; two share a second.
type Log = Arc<Mutex<Vec<(String, i64)>>>;

/// The log, and whether the server is up: its streams end when it goes.
struct Server(Log, Arc<AtomicBool>);

fn response(uuid: &str, second: i64) -> GetFlowsResponse {
    let time = Timestamp {
        seconds: second,
        nanos: 0,
    };
    GetFlowsResponse {
        time: Some(time),
        node_name: "n1".into(),
        response_types: Some(ResponseTypes::Flow(Flow {
            time: Some(time),
            uuid: uuid.into(),
            ..Default::default()
        })),
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl Observer for Server {
    type GetFlowsStream = Stream<GetFlowsResponse>;
    type GetAgentEventsStream = Stream<GetAgentEventsResponse>;
    type GetDebugEventsStream = Stream<GetDebugEventsResponse>;

    /// Follows from `since` (inclusive), or from now on.
    async fn get_flows(&self, req: Request<GetFlowsRequest>) -> Result<Response<Self::GetFlowsStream>, Status> {
        let since = req.get_ref().since.map(|t| t.seconds);
        let (log, up) = (self.0.clone(), self.1.clone());
        let mut next = match since {
            Some(s) => log
                .lock()
                .unwrap()
                .iter()
                .position(|(_, t)| *t >= s)
                .unwrap_or(usize::MAX),
            None => log.lock().unwrap().len(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while up.load(Ordering::SeqCst) {
                let item = log.lock().unwrap().get(next).cloned();
                match item {
                    Some((uuid, t)) => {
                        if tx.send(Ok(response(&uuid, t))).await.is_err() {
                            return;
                        }
                        next += 1;
                    }
                    None if next == usize::MAX => next = log.lock().unwrap().len(),
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_agent_events(
        &self,
        _: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("agent events"))
    }

    async fn get_debug_events(
        &self,
        _: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        Err(Status::unimplemented("debug events"))
    }

    async fn get_nodes(&self, _: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        Err(Status::unimplemented("nodes"))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Err(Status::unimplemented("namespaces"))
    }

    async fn server_status(&self, _: Request<ServerStatusRequest>) -> Result<Response<ServerStatusResponse>, Status> {
        Err(Status::unimplemented("status"))
    }
}

/// Serves `log` on `socket` until `stop` is called.
struct Serving {
    up: Arc<AtomicBool>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    fn start(socket: &Path, log: Log) -> Serving {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server(log, up.clone());
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(ObserverServer::new(server))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Serving { up, stop, task }
    }

    /// Ends every stream and stops serving.
    async fn stop(self) {
        self.up.store(false, Ordering::SeqCst);
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn connector(socket: PathBuf) -> Connector {
    Box::new(move || {
        let socket = socket.clone();
        Box::pin(async move { crate::connect_unix(&socket).await.map_err(|e| crate::error_chain(&e)) })
    })
}

async fn next_flow(f: &mut Follow, events: &mut Vec<String>) -> String {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), f.next())
            .await
            .expect("an event within 10 s");
        match event {
            FollowEvent::Response(r) => match r.response_types {
                Some(ResponseTypes::Flow(flow)) => return flow.uuid,
                other => panic!("unexpected {other:?}"),
            },
            FollowEvent::Connected => events.push("connected".into()),
            FollowEvent::Disconnected { .. } => events.push("disconnected".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumes_after_the_server_returns_without_gaps_or_repeats() {
    let dir = tempfile::Builder::new().prefix("lumen-rpc-follow-").tempdir().unwrap();
    let socket = dir.path().join("observer.sock");
    let log: Log = Arc::new(Mutex::new(
        [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 4)]
            .iter()
            .map(|(u, t)| (u.to_string(), *t))
            .collect(),
    ));
    let server = Serving::start(&socket, log.clone());
    let request = GetFlowsRequest {
        since: Some(Timestamp { seconds: 0, nanos: 0 }),
        ..Default::default()
    };
    let mut follow = Follow::new(
        connector(socket.clone()),
        request,
        false,
        Backoff::new(Duration::from_millis(20), Duration::from_millis(100)),
    );
    let mut events = Vec::new();
    let mut seen = vec![next_flow(&mut follow, &mut events).await];
    // The rest as they arrive, taken without waiting.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 5 {
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        match follow.ready() {
            Some(FollowEvent::Response(r)) => match r.response_types {
                Some(ResponseTypes::Flow(flow)) => seen.push(flow.uuid),
                other => panic!("unexpected {other:?}"),
            },
            Some(other) => panic!("unexpected {other:?}"),
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    // The server goes away; two flows arrive meanwhile, one at the time
    // of the last two the follower saw.
    server.stop().await;
    log.lock().unwrap().extend([("f".to_string(), 4), ("g".to_string(), 5)]);
    let event = tokio::time::timeout(Duration::from_secs(10), follow.next())
        .await
        .unwrap();
    assert!(matches!(event, FollowEvent::Disconnected { .. }), "{event:?}");
    // Waiting to try again is left to `next`.
    assert!(follow.ready().is_none());
    // It tries again while the server is down, then the server is back.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let server = Serving::start(&socket, log.clone());
    for _ in 0..2 {
        seen.push(next_flow(&mut follow, &mut events).await);
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e", "f", "g"]);
    assert_eq!(events.first().map(String::as_str), Some("connected"));
    assert_eq!(events.last().map(String::as_str), Some("connected"));
    assert!(events.len() >= 2, "{events:?}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn backoff_doubles_up_to_its_maximum_with_a_quarter_of_jitter() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
    let waits: Vec<u128> = (0..5).map(|_| b.next_wait().as_millis()).collect();
    for (wait, base) in waits.iter().zip([100, 200, 400, 500, 500]) {
        assert!((base..base + base / 4).contains(wait), "{waits:?}");
    }
    b.reset();
    assert!((100..125).contains(&b.next_wait().as_millis()));
}

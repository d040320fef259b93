//! The floor for any relay on this machine: the nodes' encoded answers, as
//! gRPC frames them, moved from 8 TCP connections to one by a minimal
//! forwarder on one thread (tokio, no HTTP/2, no gRPC, no merge: bytes in,
//! bytes out). The relay's cost is quoted as a ratio to it, which holds
//! from one machine to the next where nanoseconds do not.

use std::time::Instant;

use lumen_rpc::raw::RawFlowsResponse;
use prost::bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::numbers::median;
use crate::threads::{pin, tid};
use crate::{row, NODES};

pub struct Baseline {
    flows: usize,
    ns_per_flow: Vec<f64>,
    flows_per_s: Vec<f64>,
}

/// CPU time of the calling thread, user and kernel.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One node's answer as it travels in an HTTP/2 body: each response behind
/// gRPC's 5-byte prefix.
fn framed(answer: &[RawFlowsResponse]) -> Bytes {
    let mut out = BytesMut::new();
    for r in answer {
        out.extend_from_slice(&[0]);
        out.extend_from_slice(&(r.bytes().len() as u32).to_be_bytes());
        out.extend_from_slice(r.bytes());
    }
    out.freeze()
}

/// The forwarder: takes the client's connection, then the nodes', and
/// copies everything the nodes send to the client until they are done.
/// Returns its thread's CPU time.
async fn forwarder(nodes: TcpListener, client: TcpListener) -> u64 {
    let (mut out, _) = client.accept().await.unwrap();
    let start = thread_cpu_ns();
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    for _ in 0..NODES {
        let (mut node, _) = nodes.accept().await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(256 << 10);
            while node.read_buf(&mut buf).await.unwrap() > 0 {
                if buf.len() >= 64 << 10 {
                    tx.send(buf.split().freeze()).await.unwrap();
                    buf.reserve(256 << 10);
                }
            }
            if !buf.is_empty() {
                tx.send(buf.freeze()).await.unwrap();
            }
        });
    }
    drop(tx);
    while let Some(chunk) = rx.recv().await {
        out.write_all(&chunk).await.unwrap();
    }
    out.shutdown().await.unwrap();
    thread_cpu_ns() - start
}

pub async fn forward(answers: &[Vec<RawFlowsResponse>], runs: usize) -> Baseline {
    let streams: Vec<Bytes> = answers.iter().map(|a| framed(a)).collect();
    let total: usize = streams.iter().map(Bytes::len).sum();
    let flows = answers.iter().map(Vec::len).sum();
    let mut b = Baseline {
        flows,
        ns_per_flow: Vec::new(),
        flows_per_s: Vec::new(),
    };
    for _ in 0..runs {
        let (addresses_tx, addresses) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            pin(tid(), 1);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let nodes = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addresses_tx
                    .send((nodes.local_addr().unwrap(), client.local_addr().unwrap()))
                    .unwrap();
                forwarder(nodes, client).await
            })
        });
        let (nodes, client) = addresses.recv().unwrap();
        let mut reader = TcpStream::connect(client).await.unwrap();
        let start = Instant::now();
        for s in &streams {
            let mut node = TcpStream::connect(nodes).await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                node.write_all(&s).await.unwrap();
                node.shutdown().await.unwrap();
            });
        }
        let mut buf = vec![0u8; 256 << 10];
        let mut received = 0;
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            received += n;
        }
        let wall = start.elapsed().as_secs_f64();
        assert_eq!(received, total, "the forwarder passes every byte on");
        let cpu = thread.join().unwrap();
        b.ns_per_flow.push(cpu as f64 / flows as f64);
        b.flows_per_s.push(flows as f64 / wall);
    }
    b
}

impl Baseline {
    pub fn ns_per_flow(&self) -> f64 {
        median(&self.ns_per_flow)
    }

    pub fn rows(&self, relay_history_ns: Option<f64>, relay_follow_ns: Option<f64>) -> String {
        let ns = self.ns_per_flow();
        let ratio = |relay: Option<f64>| relay.map_or("—".to_string(), |r| format!("{:.1}×", r / ns));
        row(
            &format!(
                "baseline: the same {} flows as gRPC frames them, forwarded from 8 TCP connections to one by a minimal forwarder on one thread (no HTTP/2, gRPC or merge), CPU time per flow → one-core ceiling; the relay's CPU time per flow as a multiple of it (query of stored flows / follow, saturated)",
                crate::numbers::count(self.flows)
            ),
            &format!(
                "{ns:.0} ns → {:.0} k flows/s ({:.0} k/s wall clock); relay {} / {}",
                1e6 / ns,
                median(&self.flows_per_s) / 1e3,
                ratio(relay_history_ns),
                ratio(relay_follow_ns)
            ),
            "",
        )
    }
}

//! (2) The merge stage alone, on this thread: no gRPC, HTTP/2 or sockets.

use std::time::Instant;

use lumen_relay::merge::{Merge, SortBuffer};
use lumen_rpc::raw::RawFlowsResponse;
use prost::bytes::Bytes;

use crate::numbers::{count, median, verdict};
use crate::{row, ARRIVAL_CHUNK, BUDGET_FLOWS_PER_S, NODES, STAGE_PER_NODE, STAGE_RUNS};

#[derive(Default)]
pub struct Stage {
    encoded_bytes_per_flow: f64,
    parse_ns: Vec<f64>,
    sort_buffer_ns: Vec<f64>,
    merge_ns: Vec<f64>,
    write_ns: Vec<f64>,
}

pub fn merge_stage(answers: &[Vec<RawFlowsResponse>]) -> Stage {
    let answers: Vec<&[RawFlowsResponse]> = answers.iter().map(|a| &a[..STAGE_PER_NODE]).collect();
    // Arrival order: each node's stream in chunks, the nodes taking turns.
    let (mut wire, mut arrivals): (Vec<Bytes>, Vec<(usize, usize)>) = (Vec::new(), Vec::new());
    for chunk in 0..STAGE_PER_NODE.div_ceil(ARRIVAL_CHUNK) {
        for (node, a) in answers.iter().enumerate() {
            let part = &a[chunk * ARRIVAL_CHUNK..((chunk + 1) * ARRIVAL_CHUNK).min(a.len())];
            wire.extend(part.iter().map(|r| Bytes::copy_from_slice(r.bytes())));
            arrivals.push((node, part.len()));
        }
    }
    let n = wire.len();
    let mut stage = Stage {
        encoded_bytes_per_flow: wire.iter().map(Bytes::len).sum::<usize>() as f64 / n as f64,
        ..Default::default()
    };
    let per_flow = |t: Instant| t.elapsed().as_nanos() as f64 / n as f64;
    let defaults = lumen_relay::server::MergeOptions::default();
    for _ in 0..STAGE_RUNS {
        // What the relay's decoder does with each message: read its time.
        let t = Instant::now();
        let mut parsed = Vec::with_capacity(n);
        for bytes in &wire {
            parsed.push(RawFlowsResponse::parse(bytes.clone()).unwrap());
        }
        stage.parse_ns.push(per_flow(t));

        // The history path: the k-way merge, fed a chunk per node at a time.
        let mut merge = Merge::new(NODES);
        let mut merged = Vec::with_capacity(n);
        let t = Instant::now();
        let mut next = parsed.iter();
        for &(node, len) in &arrivals {
            merge.push(node, next.by_ref().take(len).cloned());
            while let Some(r) = merge.pop() {
                merged.push(r);
            }
        }
        (0..NODES).for_each(|k| merge.finish(k));
        while let Some(r) = merge.pop() {
            merged.push(r);
        }
        stage.merge_ns.push(per_flow(t));
        assert_eq!(merged.len(), n);
        assert!(merged.windows(2).all(|w| w[0].time_ns() <= w[1].time_ns()));
        drop(merged);

        // The follow path: the sort window at its defaults, read as the relay
        // does when responses keep coming (it is full; each push lets one go).
        let mut buffer = SortBuffer::new(defaults.capacity, defaults.window);
        let mut out = Vec::with_capacity(n);
        let sources: Vec<usize> = arrivals
            .iter()
            .flat_map(|&(node, len)| std::iter::repeat_n(node, len))
            .collect();
        let t = Instant::now();
        for (i, (r, &node)) in parsed.into_iter().zip(&sources).enumerate() {
            let now = Instant::now();
            out.extend(buffer.push(node, r, now));
            if i % 256 == 0 {
                buffer.ready(now, &mut out);
            }
        }
        out.extend(buffer.drain());
        stage.sort_buffer_ns.push(per_flow(t));
        assert_eq!(out.len(), n);
        assert!(out.windows(2).all(|w| w[0].time_ns() <= w[1].time_ns()));

        // Writing for the client: the bytes copied into the send buffer.
        let mut buf = Vec::with_capacity(256 * 1024);
        let t = Instant::now();
        for r in out {
            if buf.len() > 128 * 1024 {
                buf.clear();
            }
            buf.extend_from_slice(r.bytes());
        }
        stage.write_ns.push(per_flow(t));
    }
    stage
}

impl Stage {
    pub fn rows(&self) -> String {
        let (parse, sb, merge, write) = (
            median(&self.parse_ns),
            median(&self.sort_buffer_ns),
            median(&self.merge_ns),
            median(&self.write_ns),
        );
        [
            row(
                &format!(
                    "merge stage alone, one thread, {} flows ({:.0} B each on the wire), per flow: reading the time / `SortBuffer` push+ready (follow) / k-way `Merge` (history) / copying out",
                    count(NODES * STAGE_PER_NODE),
                    self.encoded_bytes_per_flow,
                ),
                &format!("{parse:.0} ns / {sb:.0} ns / {merge:.0} ns / {write:.0} ns (medians of {STAGE_RUNS})"),
                "",
            ),
            row(
                "→ the merge's single-core ceiling, follow path (no gRPC, HTTP/2 or sockets)",
                &format!("{:.0} k flows/s", 1e6 / (parse + sb + write)),
                &format!("≥ 1,000 k/s: {}", verdict(1e9 / (parse + sb + write) >= BUDGET_FLOWS_PER_S)),
            ),
        ]
        .concat()
    }
}

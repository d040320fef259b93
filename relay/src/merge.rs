//! The time-ordered merge of many nodes' streams: a bounded sort window.
//!
//! Responses wait in a min-heap ordered by their time. One leaves when it
//! has waited `window` since it arrived (by then, responses with earlier
//! times from slower nodes have had the chance to arrive), or at once when
//! the heap holds `capacity` responses (the oldest by time leaves). Within
//! the window, output is in time order whatever order nodes deliver in.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use lumen_proto::observer::GetFlowsResponse;

/// Nanoseconds since the epoch of a response (0 if it has no time).
pub fn time_ns(r: &GetFlowsResponse) -> i128 {
    r.time
        .as_ref()
        .map_or(0, |t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
}

struct Held {
    time_ns: i128,
    /// Arrival order: equal times leave in the order they came.
    seq: u64,
    arrived: Instant,
    /// Boxed: the heap moves entries around, a flow is over a kilobyte.
    response: Box<GetFlowsResponse>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.time_ns, self.seq) == (other.time_ns, other.seq)
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time_ns, self.seq).cmp(&(other.time_ns, other.seq))
    }
}

pub struct SortBuffer {
    heap: BinaryHeap<Reverse<Held>>,
    capacity: usize,
    window: Duration,
    seq: u64,
}

impl SortBuffer {
    pub fn new(capacity: usize, window: Duration) -> SortBuffer {
        assert!(capacity > 0, "a sort buffer holds at least one response");
        SortBuffer {
            heap: BinaryHeap::with_capacity(capacity.min(1 << 16)),
            capacity,
            window,
            seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Adds a response; when the buffer is over capacity, the oldest by
    /// time comes back to be sent now.
    pub fn push(&mut self, response: impl Into<Box<GetFlowsResponse>>, now: Instant) -> Option<GetFlowsResponse> {
        let response = response.into();
        self.seq += 1;
        self.heap.push(Reverse(Held {
            time_ns: time_ns(&response),
            seq: self.seq,
            arrived: now,
            response,
        }));
        (self.heap.len() > self.capacity).then(|| self.pop().expect("not empty"))
    }

    fn pop(&mut self) -> Option<GetFlowsResponse> {
        self.heap.pop().map(|Reverse(h)| *h.response)
    }

    /// Responses whose time has come, oldest first: the earliest by time
    /// leaves once it has waited the window, and so on.
    pub fn ready(&mut self, now: Instant) -> Vec<GetFlowsResponse> {
        let mut out = Vec::new();
        while self
            .heap
            .peek()
            .is_some_and(|Reverse(h)| now.saturating_duration_since(h.arrived) >= self.window)
        {
            out.extend(self.pop());
        }
        out
    }

    /// When the earliest held response will be ready (None when empty).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(h)| h.arrived + self.window)
    }

    /// Everything, oldest first.
    pub fn drain(&mut self) -> Vec<GetFlowsResponse> {
        let mut out = Vec::with_capacity(self.heap.len());
        while let Some(r) = self.pop() {
            out.push(r);
        }
        out
    }
}

/// Sorts complete answers of a non-follow query by time and keeps what the
/// request asked for: the newest `number` (or the oldest, with `first`);
/// 0 keeps everything.
pub fn select(responses: Vec<GetFlowsResponse>, number: u64, first: bool) -> Vec<GetFlowsResponse> {
    // Sort (time, position) keys, then move each response once.
    let mut keys: Vec<(i128, usize)> = responses.iter().enumerate().map(|(i, r)| (time_ns(r), i)).collect();
    keys.sort_unstable();
    let mut slots: Vec<Option<GetFlowsResponse>> = responses.into_iter().map(Some).collect();
    let mut responses: Vec<GetFlowsResponse> = keys.into_iter().filter_map(|(_, i)| slots[i].take()).collect();
    let n = usize::try_from(number).unwrap_or(usize::MAX);
    if number == 0 || responses.len() <= n {
        return responses;
    }
    if first {
        responses.truncate(n);
        responses
    } else {
        responses.split_off(responses.len() - n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::prost_types::Timestamp;

    fn at(ns: i64, node: &str) -> GetFlowsResponse {
        GetFlowsResponse {
            time: Some(Timestamp {
                seconds: ns / 1_000_000_000,
                nanos: (ns % 1_000_000_000) as i32,
            }),
            node_name: node.into(),
            response_types: None,
        }
    }

    fn times(rs: &[GetFlowsResponse]) -> Vec<(i128, &str)> {
        rs.iter().map(|r| (time_ns(r), r.node_name.as_str())).collect()
    }

    #[test]
    fn responses_leave_in_time_order_once_they_waited_the_window() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = SortBuffer::new(100, Duration::from_millis(50));
        // Node b is 30 ms behind node a: its earlier flows arrive later.
        assert!(b.push(at(1_000, "a"), ms(0)).is_none());
        assert!(b.push(at(3_000, "a"), ms(10)).is_none());
        assert!(b.push(at(500, "b"), ms(30)).is_none());
        assert!(b.push(at(2_000, "b"), ms(40)).is_none());
        assert!(b.ready(ms(49)).is_empty(), "nothing has waited 50 ms");
        // At 50 ms a@1000 has waited, but b@500 (arrived at 30) is earlier
        // in time and has not: nothing may leave before it.
        assert!(b.ready(ms(50)).is_empty());
        assert_eq!(b.next_deadline(), Some(ms(80)));
        assert_eq!(times(&b.ready(ms(80))), [(500, "b"), (1_000, "a")]);
        assert_eq!(times(&b.ready(ms(90))), [(2_000, "b"), (3_000, "a")]);
        assert!(b.is_empty());
        b.push(at(9_000, "a"), ms(100));
        assert_eq!(times(&b.drain()), [(9_000, "a")]);
    }

    #[test]
    fn a_full_buffer_lets_the_oldest_go_at_once() {
        let now = Instant::now();
        let mut b = SortBuffer::new(2, Duration::from_secs(60));
        assert!(b.push(at(20, "a"), now).is_none());
        assert!(b.push(at(10, "b"), now).is_none());
        assert_eq!(b.push(at(30, "c"), now).map(|r| time_ns(&r)), Some(10));
        assert_eq!(
            b.push(at(5, "d"), now).map(|r| time_ns(&r)),
            Some(5),
            "late, but still in order"
        );
        assert_eq!(times(&b.drain()), [(20, "a"), (30, "c")]);
    }

    #[test]
    fn equal_times_keep_their_arrival_order() {
        let now = Instant::now();
        let mut b = SortBuffer::new(10, Duration::ZERO);
        for node in ["x", "y", "z"] {
            b.push(at(7, node), now);
        }
        assert_eq!(times(&b.ready(now)), [(7, "x"), (7, "y"), (7, "z")]);
    }

    #[test]
    fn complete_answers_keep_the_newest_or_the_oldest() {
        let all = || vec![at(3, "a"), at(1, "b"), at(2, "a"), at(4, "b")];
        assert_eq!(times(&select(all(), 2, false)), [(3, "a"), (4, "b")]);
        assert_eq!(times(&select(all(), 2, true)), [(1, "b"), (2, "a")]);
        assert_eq!(select(all(), 0, false).len(), 4);
        assert_eq!(select(all(), 9, false).len(), 4);
    }
}

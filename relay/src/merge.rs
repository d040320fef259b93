//! The time-ordered merge of many nodes' streams.
//!
//! Two shapes, both with bounded memory:
//!
//! * [`SortBuffer`] (follow): responses wait, ordered by their time. One
//!   leaves when it has waited `window` since it arrived (by then, responses
//!   with earlier times from slower nodes have had the chance to arrive), or
//!   at once when the buffer holds `capacity` responses (the oldest by time
//!   leaves). Within the window, output is in time order whatever order
//!   nodes deliver in.
//! * [`Merge`] (history): each node answers a non-follow query oldest first
//!   and then ends, so the next response overall is the earliest of the
//!   nodes' next ones. It is known once every node still answering has one
//!   waiting: a k-way merge, exact, holding one batch per node.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use lumen_rpc::raw::RawFlowsResponse;

/// A held response and its order: by time (clamped to what an i64 holds,
/// until the year 2262: anything beyond is no real flow's time), then by
/// arrival, so that equal times leave in the order they came.
struct Held {
    time_ns: i64,
    seq: u64,
    arrived: Instant,
    response: RawFlowsResponse,
}

impl Held {
    fn key(&self) -> (i64, u64) {
        (self.time_ns, self.seq)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Where a held response waits.
#[derive(Clone, Copy)]
enum Place {
    /// At the front of its source's queue.
    Front(usize),
    /// Among the strays.
    Stray,
}

/// Each node sends its flows in time order (near enough: see `strays`), so
/// they wait in one queue per node, in order, and the earliest overall is
/// the earliest of the queues' fronts: a heap of a few nodes, not of
/// thousands of responses, and queues that are read and written in
/// sequence. A full buffer's every push lets one go, so this is the follow
/// path's cost per flow.
pub struct SortBuffer {
    /// Per source, responses in (time, arrival) order.
    queues: Vec<VecDeque<Held>>,
    /// (time, seq, source) of every non-empty queue's front.
    fronts: BinaryHeap<Reverse<(i64, u64, usize)>>,
    /// Responses earlier than the last one their source sent: one heap for
    /// all of them (a node's clock stepping back, events from several CPUs
    /// crossing by nanoseconds).
    strays: BinaryHeap<Reverse<Held>>,
    len: usize,
    capacity: usize,
    window: Duration,
    seq: u64,
    /// The latest time let go so far, and how many left after it.
    last_out: i64,
    late: u64,
}

impl SortBuffer {
    pub fn new(capacity: usize, window: Duration) -> SortBuffer {
        assert!(capacity > 0, "a sort buffer holds at least one response");
        SortBuffer {
            queues: Vec::new(),
            fronts: BinaryHeap::new(),
            strays: BinaryHeap::new(),
            len: 0,
            capacity,
            window,
            seq: 0,
            last_out: i64::MIN,
            late: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Responses let go with a time earlier than one let go before them:
    /// they came after the window (or a full buffer) had passed their time.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Adds a response from `source` (a small number naming the node it
    /// came from); when the buffer is over capacity, the oldest by time
    /// comes back to be sent now.
    pub fn push(&mut self, source: usize, response: RawFlowsResponse, now: Instant) -> Option<RawFlowsResponse> {
        self.seq += 1;
        let held = Held {
            time_ns: response.time_ns().clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            seq: self.seq,
            arrived: now,
            response,
        };
        if self.queues.len() <= source {
            self.queues.resize_with(source + 1, VecDeque::new);
        }
        let queue = &mut self.queues[source];
        match queue.back() {
            Some(last) if last.time_ns > held.time_ns => self.strays.push(Reverse(held)),
            Some(_) => queue.push_back(held),
            None => {
                self.fronts.push(Reverse((held.time_ns, held.seq, source)));
                queue.push_back(held);
            }
        }
        self.len += 1;
        (self.len > self.capacity).then(|| self.pop().expect("not empty"))
    }

    /// Where the earliest response is, and the response.
    fn earliest(&self) -> Option<(Place, &Held)> {
        let front = self.fronts.peek().map(|Reverse((_, _, source))| {
            let held = self.queues[*source].front().expect("a queue in `fronts` is not empty");
            (Place::Front(*source), held)
        });
        let stray = self.strays.peek().map(|Reverse(h)| (Place::Stray, h));
        match (front, stray) {
            (Some(f), Some(s)) => Some(if s.1 < f.1 { s } else { f }),
            (f, s) => f.or(s),
        }
    }

    fn take(&mut self, place: Place) -> RawFlowsResponse {
        self.len -= 1;
        let held = match place {
            Place::Stray => self.strays.pop().expect("a stray").0,
            Place::Front(source) => {
                self.fronts.pop();
                let queue = &mut self.queues[source];
                let held = queue.pop_front().expect("a front");
                if let Some(next) = queue.front() {
                    self.fronts.push(Reverse((next.time_ns, next.seq, source)));
                }
                held
            }
        };
        if held.time_ns < self.last_out {
            self.late += 1;
        } else {
            self.last_out = held.time_ns;
        }
        held.response
    }

    fn pop(&mut self) -> Option<RawFlowsResponse> {
        let (place, _) = self.earliest()?;
        Some(self.take(place))
    }

    /// Responses whose time has come, oldest first, onto `out`: the
    /// earliest by time leaves once it has waited the window, and so on.
    pub fn ready(&mut self, now: Instant, out: &mut Vec<RawFlowsResponse>) {
        while let Some((place, held)) = self.earliest() {
            if now.saturating_duration_since(held.arrived) < self.window {
                return;
            }
            out.push(self.take(place));
        }
    }

    /// When the earliest held response will be ready (None when empty).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest().map(|(_, h)| h.arrived + self.window)
    }

    /// Everything, oldest first.
    pub fn drain(&mut self) -> Vec<RawFlowsResponse> {
        let mut out = Vec::with_capacity(self.len);
        while let Some(r) = self.pop() {
            out.push(r);
        }
        out
    }
}

/// The k-way merge of complete, individually ordered answers. Sources are
/// numbered `0..n`; each is open until [`Merge::finish`].
pub struct Merge {
    queues: Vec<VecDeque<RawFlowsResponse>>,
    open: Vec<bool>,
    /// Open sources with nothing waiting: while any, nothing can leave.
    starving: usize,
    /// (time of its next response, source) for every source with one waiting.
    heads: BinaryHeap<Reverse<(i128, usize)>>,
}

impl Merge {
    pub fn new(sources: usize) -> Merge {
        Merge {
            queues: (0..sources).map(|_| VecDeque::new()).collect(),
            open: vec![true; sources],
            starving: sources,
            heads: BinaryHeap::with_capacity(sources),
        }
    }

    /// A source's next responses, in its order.
    pub fn push(&mut self, source: usize, batch: impl IntoIterator<Item = RawFlowsResponse>) {
        let queue = &mut self.queues[source];
        let was_empty = queue.is_empty();
        queue.extend(batch);
        if let (true, Some(front)) = (was_empty, queue.front()) {
            self.heads.push(Reverse((front.time_ns(), source)));
            if self.open[source] {
                self.starving -= 1;
            }
        }
    }

    /// The source has said everything.
    pub fn finish(&mut self, source: usize) {
        if std::mem::replace(&mut self.open[source], false) && self.queues[source].is_empty() {
            self.starving -= 1;
        }
    }

    /// A source that must say more before anything else can leave (None
    /// when every open source has a response waiting).
    pub fn waiting_on(&self) -> Option<usize> {
        (0..self.queues.len()).find(|&s| self.open[s] && self.queues[s].is_empty())
    }

    /// Every source finished and everything taken.
    pub fn is_done(&self) -> bool {
        self.heads.is_empty() && self.starving == 0
    }

    /// The earliest response overall, when it is known.
    pub fn pop(&mut self) -> Option<RawFlowsResponse> {
        if self.starving > 0 {
            return None;
        }
        let Reverse((_, source)) = self.heads.pop()?;
        let queue = &mut self.queues[source];
        let response = queue.pop_front().expect("a head has a response");
        match queue.front() {
            Some(next) => self.heads.push(Reverse((next.time_ns(), source))),
            None if self.open[source] => self.starving += 1,
            None => {}
        }
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::observer::GetFlowsResponse;
    use lumen_proto::prost_types::Timestamp;

    fn at(ns: i64, node: &str) -> RawFlowsResponse {
        RawFlowsResponse::encode(&GetFlowsResponse {
            time: Some(Timestamp {
                seconds: ns / 1_000_000_000,
                nanos: (ns % 1_000_000_000) as i32,
            }),
            node_name: node.into(),
            response_types: None,
        })
    }

    fn times(rs: &[RawFlowsResponse]) -> Vec<(i128, String)> {
        rs.iter()
            .map(|r| (r.time_ns(), r.decode().unwrap().node_name))
            .collect()
    }

    fn expect(pairs: &[(i128, &str)]) -> Vec<(i128, String)> {
        pairs.iter().map(|(t, n)| (*t, n.to_string())).collect()
    }

    /// The source number of a node named by one letter.
    fn src(node: &str) -> usize {
        usize::from(node.as_bytes()[0] - b'a')
    }

    fn ready(b: &mut SortBuffer, now: Instant) -> Vec<RawFlowsResponse> {
        let mut out = Vec::new();
        b.ready(now, &mut out);
        out
    }

    #[test]
    fn responses_leave_in_time_order_once_they_waited_the_window() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = SortBuffer::new(100, Duration::from_millis(50));
        // Node b is 30 ms behind node a: its earlier flows arrive later.
        assert!(b.push(src("a"), at(1_000, "a"), ms(0)).is_none());
        assert!(b.push(src("a"), at(3_000, "a"), ms(10)).is_none());
        assert!(b.push(src("b"), at(500, "b"), ms(30)).is_none());
        assert!(b.push(src("b"), at(2_000, "b"), ms(40)).is_none());
        assert!(ready(&mut b, ms(49)).is_empty(), "nothing has waited 50 ms");
        // At 50 ms a@1000 has waited, but b@500 (arrived at 30) is earlier
        // in time and has not: nothing may leave before it.
        assert!(ready(&mut b, ms(50)).is_empty());
        assert_eq!(b.next_deadline(), Some(ms(80)));
        assert_eq!(times(&ready(&mut b, ms(80))), expect(&[(500, "b"), (1_000, "a")]));
        assert_eq!(times(&ready(&mut b, ms(90))), expect(&[(2_000, "b"), (3_000, "a")]));
        assert!(b.is_empty());
        b.push(src("a"), at(9_000, "a"), ms(100));
        assert_eq!(times(&b.drain()), expect(&[(9_000, "a")]));
    }

    #[test]
    fn a_full_buffer_lets_the_oldest_go_at_once() {
        let now = Instant::now();
        let mut b = SortBuffer::new(2, Duration::from_secs(60));
        assert!(b.push(src("a"), at(20, "a"), now).is_none());
        assert!(b.push(src("b"), at(10, "b"), now).is_none());
        assert_eq!(b.push(src("c"), at(30, "c"), now).map(|r| r.time_ns()), Some(10));
        assert_eq!(
            b.push(src("d"), at(5, "d"), now).map(|r| r.time_ns()),
            Some(5),
            "late, but still in order"
        );
        assert_eq!(times(&b.drain()), expect(&[(20, "a"), (30, "c")]));
    }

    #[test]
    fn a_response_let_go_after_a_later_one_is_counted_late() {
        let now = Instant::now();
        let mut b = SortBuffer::new(1, Duration::from_secs(60));
        assert!(b.push(src("a"), at(20, "a"), now).is_none());
        assert_eq!(b.push(src("a"), at(30, "a"), now).map(|r| r.time_ns()), Some(20));
        assert_eq!(b.late(), 0, "in order so far");
        // b@10 comes after a@20 has gone: the full buffer lets it go next.
        assert_eq!(b.push(src("b"), at(10, "b"), now).map(|r| r.time_ns()), Some(10));
        assert_eq!(b.push(src("b"), at(15, "b"), now).map(|r| r.time_ns()), Some(15));
        assert_eq!(b.late(), 2);
        assert_eq!(times(&b.drain()), expect(&[(30, "a")]));
        assert_eq!(b.late(), 2, "30 is after 20: in order again");
    }

    #[test]
    fn equal_times_keep_their_arrival_order() {
        let now = Instant::now();
        let mut b = SortBuffer::new(10, Duration::ZERO);
        for node in ["x", "y", "z"] {
            b.push(src(node), at(7, node), now);
        }
        assert_eq!(times(&ready(&mut b, now)), expect(&[(7, "x"), (7, "y"), (7, "z")]));
    }

    #[test]
    fn a_node_out_of_its_own_order_still_leaves_in_time_order() {
        let now = Instant::now();
        let mut b = SortBuffer::new(100, Duration::ZERO);
        for (ns, node) in [(100, "a"), (300, "a"), (200, "a"), (250, "b"), (400, "a"), (150, "a")] {
            assert!(b.push(src(node), at(ns, node), now).is_none());
        }
        assert_eq!(b.len(), 6);
        assert_eq!(
            times(&ready(&mut b, now)),
            expect(&[(100, "a"), (150, "a"), (200, "a"), (250, "b"), (300, "a"), (400, "a")])
        );
    }

    /// A tiny pseudo-random generator: the same sequence on every run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn a_full_buffer_gives_what_one_sorted_list_of_everything_held_would() {
        let now = Instant::now();
        let mut rng = Lcg(7);
        let mut b = SortBuffer::new(50, Duration::from_secs(60));
        // The model: every held (time, arrival), the least leaves first.
        let mut model: Vec<(i64, u64)> = Vec::new();
        let mut clocks = [0i64; 4];
        for seq in 1..=20_000u64 {
            let node = rng.below(4) as usize;
            // Mostly forward, sometimes a step back (a stray), equal times too.
            clocks[node] += rng.below(30) as i64 - 3;
            let t = clocks[node];
            model.push((t, seq));
            let left = b.push(node, at(t, "n"), now).map(|r| r.time_ns());
            let expected = (model.len() > 50).then(|| {
                let i = (0..model.len()).min_by_key(|&i| model[i]).unwrap();
                i128::from(model.remove(i).0)
            });
            assert_eq!(left, expected, "push {seq}");
        }
        model.sort();
        let rest: Vec<i128> = b.drain().iter().map(RawFlowsResponse::time_ns).collect();
        assert_eq!(rest, model.iter().map(|&(t, _)| i128::from(t)).collect::<Vec<_>>());
        assert!(b.is_empty());
    }

    fn drain(m: &mut Merge) -> Vec<(i128, String)> {
        let mut out = Vec::new();
        while let Some(r) = m.pop() {
            out.push(r);
        }
        times(&out)
    }

    #[test]
    fn the_merge_waits_for_every_open_source_and_then_takes_the_earliest() {
        let mut m = Merge::new(3);
        m.push(0, [at(1, "a"), at(4, "a")]);
        m.push(2, [at(3, "c")]);
        assert_eq!(m.waiting_on(), Some(1), "b has said nothing yet");
        assert!(m.pop().is_none());
        m.push(1, [at(2, "b")]);
        assert_eq!(drain(&mut m), expect(&[(1, "a"), (2, "b")]));
        // b has nothing waiting again: its next may be earlier than a@4.
        assert_eq!(m.waiting_on(), Some(1));
        m.finish(1);
        assert_eq!(drain(&mut m), expect(&[(3, "c")]));
        assert_eq!(m.waiting_on(), Some(2));
        m.push(2, [at(5, "c")]);
        m.finish(2);
        assert_eq!(drain(&mut m), expect(&[(4, "a")]));
        assert_eq!(m.waiting_on(), Some(0));
        m.finish(0);
        assert!(!m.is_done(), "c@5 is still waiting");
        assert_eq!(drain(&mut m), expect(&[(5, "c")]));
        assert!(m.is_done());
        assert_eq!(m.waiting_on(), None);
    }

    #[test]
    fn a_source_that_says_nothing_at_all_holds_nothing_up_once_finished() {
        let mut m = Merge::new(2);
        m.push(1, [at(9, "b")]);
        m.finish(0);
        m.finish(1);
        assert_eq!(drain(&mut m), expect(&[(9, "b")]));
        assert!(m.is_done());
    }
}

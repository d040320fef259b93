//! The flow store: a bounded ring of recent flows, compact in memory.
//!
//! A stored flow is the datapath's record as it arrived (fixed size, no heap)
//! plus the id of the enrichment snapshot (endpoint names, labels, rule names)
//! that was current when it arrived; the Hubble `Flow` is built from both when
//! a client reads it. Readers hold a cursor (a sequence number); a reader the
//! writer has lapped learns exactly how many flows it missed.

use lumen_probes::abi;

/// One flow as stored: 104 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredFlow {
    /// Position in the node's stream since the observer started.
    pub seq: u64,
    /// The datapath record; `timestamp_ns` already converted to wall-clock
    /// nanoseconds since the Unix epoch.
    pub event: abi::Event,
    /// Enrichment snapshot in force when the flow arrived.
    pub names: u32,
}

/// What a reader got: flows in order, and how many it missed before them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub lost: u64,
    pub flows: Vec<StoredFlow>,
    /// Where to continue reading.
    pub next: u64,
}

#[derive(Debug)]
pub struct FlowStore {
    ring: Vec<StoredFlow>,
    /// Packet bytes captured with each flow (`--capture-bytes`), by ring
    /// slot; empty until a flow comes with some, so memory is spent on
    /// them only when capture is on.
    captures: Vec<Box<[u8]>>,
    capacity: usize,
    /// Sequence number the next flow gets; also the count of flows seen.
    next_seq: u64,
}

impl FlowStore {
    /// Hubble keeps 4,095 flows; Lumen's default is 65,535.
    pub const DEFAULT_CAPACITY: usize = 65_535;

    pub fn new(capacity: usize) -> FlowStore {
        assert!(capacity > 0, "a flow store holds at least one flow");
        FlowStore {
            ring: Vec::with_capacity(capacity),
            captures: Vec::new(),
            capacity,
            next_seq: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Flows currently held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Flows ever stored (Hubble's `seen_flows`).
    pub fn seen(&self) -> u64 {
        self.next_seq
    }

    /// Flows overwritten before anyone could have read them all.
    pub fn overwritten(&self) -> u64 {
        self.next_seq - self.ring.len() as u64
    }

    /// Sequence number of the oldest flow held.
    pub fn oldest(&self) -> u64 {
        self.overwritten()
    }

    /// Sequence number the next flow will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Adds a flow, overwriting the oldest when full; returns its sequence number.
    pub fn push(&mut self, event: abi::Event, names: u32) -> u64 {
        self.push_captured(event, names, Box::default())
    }

    /// [`FlowStore::push`], with the packet bytes captured with the flow.
    pub fn push_captured(&mut self, event: abi::Event, names: u32, capture: Box<[u8]>) -> u64 {
        let seq = self.next_seq;
        let flow = StoredFlow { seq, event, names };
        let slot = (seq % self.capacity as u64) as usize;
        if self.ring.len() < self.capacity {
            self.ring.push(flow);
        } else {
            self.ring[slot] = flow;
        }
        if !capture.is_empty() && self.captures.is_empty() {
            self.captures.resize_with(self.capacity, Box::default);
        }
        if !self.captures.is_empty() {
            self.captures[slot] = capture;
        }
        self.next_seq += 1;
        seq
    }

    /// The packet bytes captured with flow `seq` (empty if none or gone).
    pub fn capture(&self, seq: u64) -> &[u8] {
        match self.get(seq) {
            Some(_) if !self.captures.is_empty() => &self.captures[(seq % self.capacity as u64) as usize],
            _ => &[],
        }
    }

    pub fn get(&self, seq: u64) -> Option<&StoredFlow> {
        if seq < self.oldest() || seq >= self.next_seq {
            return None;
        }
        Some(&self.ring[(seq % self.capacity as u64) as usize])
    }

    /// Up to `max` flows from `cursor` on. A cursor the writer has lapped
    /// resumes at the oldest flow held, with `lost` saying how many it missed.
    pub fn read(&self, cursor: u64, max: usize) -> Batch {
        let mut flows = Vec::new();
        let (lost, next) = self.visit(cursor, max, |f| flows.push(*f));
        Batch { lost, flows, next }
    }

    /// [`FlowStore::read`] handing each flow to `each` in place, without a
    /// copy: how many were missed, and where to continue.
    pub fn visit(&self, cursor: u64, max: usize, each: impl FnMut(&StoredFlow)) -> (u64, u64) {
        let start = cursor.max(self.oldest());
        let end = self.next_seq.min(start.saturating_add(max as u64));
        if end > start {
            let n = (end - start) as usize;
            let first = (start % self.capacity as u64) as usize;
            // Held flows are in slots from `first` on, wrapping once at the end.
            let to_end = (self.ring.len() - first).min(n);
            let (a, b) = (&self.ring[first..first + to_end], &self.ring[..n - to_end]);
            a.iter().chain(b).for_each(each);
        }
        (start - cursor.min(start), end.max(start))
    }

    /// The newest `n` flows held, oldest first (for `--last N`).
    pub fn last(&self, n: usize) -> Vec<StoredFlow> {
        let start = self.next_seq.saturating_sub(n as u64).max(self.oldest());
        (start..self.next_seq).filter_map(|s| self.get(s).copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(port: u16) -> abi::Event {
        abi::Event {
            dport: port,
            ..Default::default()
        }
    }

    fn ports(flows: &[StoredFlow]) -> Vec<u16> {
        flows.iter().map(|f| f.event.dport).collect()
    }

    #[test]
    fn a_stored_flow_fits_the_memory_budget() {
        // DESIGN.md: at most 256 bytes per stored flow.
        assert_eq!(std::mem::size_of::<StoredFlow>(), 104);
    }

    #[test]
    fn keeps_the_newest_flows_and_counts_the_rest() {
        let mut s = FlowStore::new(3);
        for p in 1..=5 {
            s.push(ev(p), 0);
        }
        assert_eq!((s.len(), s.seen(), s.overwritten(), s.oldest()), (3, 5, 2, 2));
        assert_eq!(ports(&s.last(10)), vec![3, 4, 5]);
        assert_eq!(ports(&s.last(2)), vec![4, 5]);
        assert_eq!(s.get(1), None);
        assert_eq!(s.get(4).unwrap().event.dport, 5);
        assert_eq!(s.get(5), None);
    }

    #[test]
    fn a_lapped_reader_learns_exactly_what_it_missed() {
        let mut s = FlowStore::new(4);
        for p in 1..=3 {
            s.push(ev(p), 0);
        }
        let b = s.read(0, 2);
        assert_eq!((b.lost, ports(&b.flows), b.next), (0, vec![1, 2], 2));
        for p in 4..=9 {
            s.push(ev(p), 0);
        }
        // Flows 3..=5 (seq 2..=4) were overwritten before this reader got them.
        let b = s.read(b.next, 100);
        assert_eq!((b.lost, ports(&b.flows), b.next), (3, vec![6, 7, 8, 9], 9));
        let b = s.read(b.next, 100);
        assert_eq!((b.lost, b.flows.len(), b.next), (0, 0, 9));
    }
}

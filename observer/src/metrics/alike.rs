//! Counting stored records without building a flow for each: records that
//! differ only in what no metric reads (time, source port, length, the
//! captured bytes) count in the same series, so the metrics build one flow
//! per shape of record and remember where it counted
//! ([`lumen_metrics::Registry::process_alike`]). A filter that tests the
//! source port keeps it in the shape; one that may test anything (a CEL
//! expression) or the uuid makes every flow be built and counted alone.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::sync::Arc;

use lumen_metrics::{Alike, Counts, Reads, Registry};
use lumen_probes::abi;
use lumen_proto::flow::Flow;

use crate::hub::{Notice, Subscription};
use crate::store::StoredFlow;

const WORDS: usize = size_of::<abi::Event>() / 8;

// Read as words below: a record has no bytes the words would not cover,
// and none that are padding the compiler inserted (every field is listed
// in `abi::Event`, the padding too).
const _: () = assert!(size_of::<abi::Event>() == WORDS * 8);
const _: () = assert!(offset_of!(abi::Event, pad3) + 4 == size_of::<abi::Event>());
// The first word is the time and the last the capture length and padding,
// which no metric reads: a shape keeps the words between.
const _: () = assert!(offset_of!(abi::Event, timestamp_ns) == 0 && offset_of!(abi::Event, ifindex) == 8);
const _: () = assert!(offset_of!(abi::Event, cap_len) == (WORDS - 1) * 8);
const KEPT: usize = WORDS - 2;

/// A record less the bytes no metric reads, and the enrichment snapshot it
/// is named with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// The record's words 1 to WORDS - 2, masked.
    words: [u64; KEPT],
    names: u32,
}

/// Which bits of a record's words 1 to WORDS - 2 make its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mask([u64; KEPT]);

impl Mask {
    fn new(reads: Reads) -> Mask {
        let mut bytes = [0xffu8; WORDS * 8];
        let mut clear = |offset: usize, len: usize| bytes[offset..offset + len].fill(0);
        clear(offset_of!(abi::Event, timestamp_ns), 8);
        clear(offset_of!(abi::Event, pkt_len), 4);
        if !reads.source_port {
            clear(offset_of!(abi::Event, sport), 2);
        }
        clear(offset_of!(abi::Event, pad), 1);
        clear(offset_of!(abi::Event, cap_len), 2);
        clear(offset_of!(abi::Event, pad2), 2);
        clear(offset_of!(abi::Event, pad3), 4);
        let mut words = [0u64; KEPT];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8).skip(1)) {
            *w = u64::from_ne_bytes(chunk.try_into().expect("chunks of 8"));
        }
        Mask(words)
    }
}

/// A record's words 1 to WORDS - 2.
fn words(f: &StoredFlow) -> [u64; KEPT] {
    // SAFETY: `abi::Event` is `repr(C)` plain data of WORDS * 8 bytes with
    // no implicit padding (asserted above), so every byte is initialized;
    // the read is unaligned-safe and ends a word before the record does.
    unsafe { std::ptr::read_unaligned((&f.event as *const abi::Event).cast::<u64>().add(1).cast()) }
}

impl Shape {
    fn of(f: &StoredFlow, mask: &Mask) -> Shape {
        let mut words = words(f);
        for (w, m) in words.iter_mut().zip(mask.0) {
            *w &= m;
        }
        Shape { words, names: f.names }
    }

    /// Whether `f` has this shape: word by word, without a branch.
    #[inline]
    fn fits(&self, f: &StoredFlow, mask: &Mask) -> bool {
        let words = words(f);
        let mut diff = u64::from(self.names ^ f.names);
        for ((w, m), s) in words.iter().zip(mask.0).zip(self.words) {
            diff |= (w & m) ^ s;
        }
        diff == 0
    }

    /// A record of this shape (time, source port and length zero where
    /// masked), to build the flow the metrics look at.
    fn record(&self) -> StoredFlow {
        let mut words = [0u64; WORDS];
        words[1..WORDS - 1].copy_from_slice(&self.words);
        StoredFlow {
            seq: 0,
            // SAFETY: every bit pattern is a valid `abi::Event` (plain
            // integers and byte arrays), and the sizes are equal.
            event: unsafe { std::ptr::read_unaligned(words.as_ptr().cast()) },
            names: self.names,
        }
    }
}

/// The metrics' reader of the hub's stream, with what it keeps between
/// batches.
#[derive(Debug, Default)]
pub struct FlowCounter {
    memo: Alike<Shape>,
    /// This batch's records by shape, in order of first arrival, and the
    /// bytes of their packets.
    groups: Vec<(Shape, Counts)>,
    index: HashMap<Shape, usize, foldhash::fast::RandomState>,
    /// The group of the last record grouped.
    last: usize,
    /// For flows built one by one, when they cannot be counted alike.
    notices: Vec<Notice>,
    flows: Vec<(Arc<Flow>, Option<u64>)>,
}

impl FlowCounter {
    /// Reads and counts the next flows of `sub` (waiting while there are
    /// none), and counts the flows it missed as lost to the metrics. How
    /// many flows it read; `None` once the subscription is over.
    pub async fn next(&mut self, sub: &mut Subscription, registry: &Registry) -> Option<usize> {
        let reads = registry.reads();
        // Without flow metrics (an empty config file) no flow is built.
        let counting = !registry.is_empty();
        if reads.per_flow && counting {
            return self.next_one_by_one(sub, registry).await;
        }
        let mask = Mask::new(reads);
        let mut read = 0;
        let missed = sub
            .next_in_place(|f| {
                read += 1;
                if counting {
                    self.group(f, &mask);
                }
            })
            .await?;
        if missed > 0 {
            sub.hub().metrics_lost(missed);
        }
        if !self.groups.is_empty() {
            registry.process_alike(&mut self.memo, self.groups.drain(..), |shape| {
                sub.build(&shape.record())
            });
            self.index.clear();
        }
        self.last = 0;
        Some(read)
    }

    /// Shapes whose series are remembered.
    pub fn shapes(&self) -> usize {
        self.memo.len()
    }

    #[inline]
    fn group(&mut self, f: &StoredFlow, mask: &Mask) {
        // Records of one connection often come in a row.
        let bytes = u64::from(f.event.pkt_len);
        if let Some((last, counts)) = self.groups.get_mut(self.last) {
            if last.fits(f, mask) {
                counts.flows += 1;
                counts.bytes += bytes;
                return;
            }
        }
        let shape = Shape::of(f, mask);
        self.last = match self.index.get(&shape) {
            Some(&i) => i,
            None => {
                self.index.insert(shape, self.groups.len());
                self.groups.push((shape, Counts::default()));
                self.groups.len() - 1
            }
        };
        let counts = &mut self.groups[self.last].1;
        counts.flows += 1;
        counts.bytes += bytes;
    }

    /// Every flow built (shared with the hub's other consumers) and counted.
    async fn next_one_by_one(&mut self, sub: &mut Subscription, registry: &Registry) -> Option<usize> {
        if !sub.next(&mut self.notices).await {
            return None;
        }
        let mut read = 0;
        for n in self.notices.drain(..) {
            match n {
                Notice::Flow(f) => {
                    read += 1;
                    self.flows.push((sub.flow(&f), Some(u64::from(f.event.pkt_len))));
                }
                // Kernel losses are counted where they happen (the hub).
                Notice::KernelLost(_) => {}
                Notice::Missed(count) => sub.hub().metrics_lost(count),
            }
        }
        registry.process_sized(self.flows.iter().map(|(f, bytes)| (&**f, *bytes)));
        self.flows.clear();
        Some(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_differing_in_what_no_metric_reads_have_one_shape() {
        let record = |time: u64, sport: u16, len: u32| StoredFlow {
            seq: time,
            event: abi::Event {
                timestamp_ns: time,
                sport,
                dport: 80,
                pkt_len: len,
                cap_len: 4,
                proto: 6,
                ..Default::default()
            },
            names: 3,
        };
        let mask = Mask::new(Reads::default());
        let (a, b) = (record(1, 40_000, 60), record(2, 40_001, 1500));
        assert_eq!(Shape::of(&a, &mask), Shape::of(&b, &mask));
        let back = Shape::of(&a, &mask).record().event;
        assert_eq!((back.dport, back.proto, back.sport, back.timestamp_ns), (80, 6, 0, 0));
        // The destination port, the snapshot and, when a filter reads it,
        // the source port tell records apart.
        let mut other = a;
        other.event.dport = 81;
        assert_ne!(Shape::of(&a, &mask), Shape::of(&other, &mask));
        other = a;
        other.names = 4;
        assert_ne!(Shape::of(&a, &mask), Shape::of(&other, &mask));
        let with_sport = Mask::new(Reads {
            source_port: true,
            per_flow: false,
        });
        assert_ne!(Shape::of(&a, &with_sport), Shape::of(&b, &with_sport));
        assert_eq!(Shape::of(&a, &with_sport).record().event.sport, 40_000);
    }
}

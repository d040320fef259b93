//! Flows built from stored records, shared by every consumer that needs a
//! whole `Flow` (a follower's filter, the metrics, each exporter): a record
//! is built once however many of them read it, as long as they read it
//! while it is recent. The cache holds the last [`SLOTS`] built flows by
//! sequence number; consumers that follow the stream live read within
//! that distance of each other, and a reader far behind builds its own copy
//! rather than pinning old flows in memory.

use std::sync::{Arc, Mutex};

use lumen_proto::flow::Flow;

/// Built flows kept; a power of two (slot = sequence number modulo it).
pub const SLOTS: usize = 4096;

/// A built flow and the sequence number of its record.
type Slot = Option<(u64, Arc<Flow>)>;

#[derive(Debug)]
pub struct BuiltFlows {
    slots: Mutex<Vec<Slot>>,
}

impl Default for BuiltFlows {
    fn default() -> BuiltFlows {
        BuiltFlows {
            slots: Mutex::new(vec![None; SLOTS]),
        }
    }
}

impl BuiltFlows {
    /// The flow of record `seq`, built by `build` unless a consumer built
    /// it already; `newest` is the newest record stored. A record older than
    /// the cache's reach is built and not kept: a replay of history must not
    /// push out what the live consumers share. `build` runs outside the lock.
    pub fn get_or_build(&self, seq: u64, newest: u64, build: impl FnOnce() -> Flow) -> Arc<Flow> {
        if seq + (SLOTS as u64) <= newest {
            return Arc::new(build());
        }
        let slot = (seq % SLOTS as u64) as usize;
        if let Some((s, flow)) = &self.slots.lock().unwrap_or_else(|e| e.into_inner())[slot] {
            if *s == seq {
                return flow.clone();
            }
        }
        let flow = Arc::new(build());
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let evicted = match &slots[slot] {
            // Another consumer built it meanwhile: share that one.
            Some((s, other)) if *s == seq => return other.clone(),
            // Keep the newer of two records that share a slot.
            Some((s, _)) if *s > seq => return flow,
            _ => slots[slot].replace((seq, flow.clone())),
        };
        drop(slots);
        // The flow pushed out is freed outside the lock.
        drop(evicted);
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(uuid: &str) -> Flow {
        Flow {
            uuid: uuid.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_is_built_once_for_every_reader_while_it_is_recent() {
        let cache = BuiltFlows::default();
        let mut builds = 0;
        let a = cache.get_or_build(7, 7, || {
            builds += 1;
            flow("a")
        });
        let b = cache.get_or_build(7, 7, || {
            builds += 1;
            flow("other")
        });
        assert_eq!(builds, 1);
        assert!(Arc::ptr_eq(&a, &b));
        // A record SLOTS later takes the slot; a late reader of the old one
        // builds its own copy, which does not evict the newer record.
        let newer = cache.get_or_build(7 + SLOTS as u64, 7 + SLOTS as u64, || flow("newer"));
        let late = cache.get_or_build(7, 7 + SLOTS as u64 - 1, || flow("late"));
        assert_eq!(late.uuid, "late");
        let again = cache.get_or_build(7 + SLOTS as u64, 7 + SLOTS as u64, || flow("rebuilt"));
        assert!(Arc::ptr_eq(&newer, &again));
        // History beyond the cache's reach is built for the reader alone.
        let old = cache.get_or_build(5, 5 + SLOTS as u64, || flow("old"));
        assert_eq!(Arc::strong_count(&old), 1);
    }
}

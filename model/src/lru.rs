//! The bounded containers every table is made of.
//!
//! [`Lru`] is a map of fixed capacity that evicts its least recently
//! touched entry and counts the eviction; [`RecentSet`] and [`TopCounts`]
//! are the capped sets inside one entry. Nothing here grows past its
//! capacity, whatever the input.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use foldhash::fast::RandomState;

const NIL: usize = usize::MAX;

struct Slot<K, V> {
    key: K,
    value: V,
    newer: usize,
    older: usize,
}

/// A map of at most `capacity` entries; when full, inserting evicts the
/// entry touched longest ago.
///
/// Recency is the order of [`Lru::touch`] calls, which for a time-ordered
/// stream of flows is the order of last sight. Entries live in a slab whose
/// slots are reused, linked newest to oldest, so touching and evicting are
/// O(1) and the slab never outgrows the capacity. The index hashes with
/// foldhash, seeded at random per process (keys are names and IPs from the
/// network, and SipHash was a tenth of the time a flow took to fold).
pub(crate) struct Lru<K, V> {
    index: HashMap<K, usize, RandomState>,
    slots: Vec<Slot<K, V>>,
    newest: usize,
    oldest: usize,
    capacity: usize,
    evicted: u64,
}

impl<K: Hash + Eq, V> Lru<K, V> {
    /// A map of `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Lru {
            index: HashMap::default(),
            slots: Vec::new(),
            newest: NIL,
            oldest: NIL,
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    /// The entry of `key`, made newest; created by `make` if absent. The key
    /// is copied only when the entry is created.
    pub(crate) fn touch<Q>(&mut self, key: &Q, make: impl FnOnce() -> V) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let i = match self.index.get(key) {
            Some(&i) => {
                self.unlink(i);
                i
            }
            None if self.slots.len() < self.capacity => {
                if self.slots.len() == self.slots.capacity() {
                    // Doubling, but never past the capacity.
                    let more = self.slots.len().max(8).min(self.capacity - self.slots.len());
                    self.slots.reserve_exact(more);
                }
                self.slots.push(Slot {
                    key: key.to_owned(),
                    value: make(),
                    newer: NIL,
                    older: NIL,
                });
                self.index.insert(key.to_owned(), self.slots.len() - 1);
                self.slots.len() - 1
            }
            None => {
                let i = self.oldest;
                self.unlink(i);
                self.index.remove::<K>(&self.slots[i].key);
                self.evicted += 1;
                self.slots[i].key = key.to_owned();
                self.slots[i].value = make();
                self.index.insert(key.to_owned(), i);
                i
            }
        };
        self.push_newest(i);
        &mut self.slots[i].value
    }

    /// The entry of `key`, without changing its recency.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.get(key).map(|&i| &self.slots[i].value)
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().map(|s| (&s.key, &s.value))
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries evicted to make room since the map was made (or cleared).
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Empties the map and its eviction count.
    pub(crate) fn clear(&mut self) {
        *self = Lru::new(self.capacity);
    }

    fn unlink(&mut self, i: usize) {
        let (newer, older) = (self.slots[i].newer, self.slots[i].older);
        match newer {
            NIL => self.newest = older,
            n => self.slots[n].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o].newer = newer,
        }
    }

    fn push_newest(&mut self, i: usize) {
        self.slots[i].newer = NIL;
        self.slots[i].older = self.newest;
        match self.newest {
            NIL => self.oldest = i,
            n => self.slots[n].newer = i,
        }
        self.newest = i;
    }
}

/// The `capacity` most recently seen distinct values, newest first, and
/// how many were pushed out: pods come and go, the recent ones matter.
#[derive(Clone, Debug)]
pub(crate) struct RecentSet {
    values: Vec<String>,
    capacity: usize,
    evicted: u64,
}

impl RecentSet {
    pub(crate) fn new(capacity: usize) -> Self {
        RecentSet {
            values: Vec::new(),
            capacity,
            evicted: 0,
        }
    }

    pub(crate) fn insert(&mut self, value: &str) {
        match self.values.iter().position(|v| v == value) {
            Some(i) => self.values[..=i].rotate_right(1),
            None if self.capacity == 0 => self.evicted += 1,
            None => {
                if self.values.len() == self.capacity {
                    self.values.pop();
                    self.evicted += 1;
                }
                self.values.insert(0, value.to_string());
            }
        }
    }

    /// The values kept, sorted.
    pub(crate) fn sorted(&self) -> Vec<String> {
        let mut v = self.values.clone();
        v.sort();
        v
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// Counts of the first `capacity` distinct keys, and the sum of the counts
/// of the keys that did not fit (`other`): a drop reason or policy never
/// disappears from the totals, it is at worst lumped.
#[derive(Clone, Debug)]
pub(crate) struct TopCounts<K> {
    counts: Vec<(K, u64)>,
    capacity: usize,
    other: u64,
}

impl<K: Clone + Ord> TopCounts<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        TopCounts {
            counts: Vec::new(),
            capacity,
            other: 0,
        }
    }

    /// Counts one for the key `is` recognises, making it with `make` if new.
    pub(crate) fn add(&mut self, is: impl Fn(&K) -> bool, make: impl FnOnce() -> K) {
        match self.counts.iter().position(|(k, _)| is(k)) {
            Some(i) => self.counts[i].1 += 1,
            None if self.counts.len() < self.capacity => self.counts.push((make(), 1)),
            None => self.other += 1,
        }
    }

    /// The kept counts, largest first (ties by key).
    pub(crate) fn sorted(&self) -> Vec<(K, u64)> {
        let mut v = self.counts.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    pub(crate) fn other(&self) -> u64 {
        self.other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<V>(lru: &Lru<u32, V>) -> Vec<u32> {
        let mut k: Vec<_> = lru.iter().map(|(k, _)| *k).collect();
        k.sort();
        k
    }

    #[test]
    fn a_full_map_evicts_the_least_recently_touched_entry() {
        let mut lru = Lru::new(3);
        for k in [1, 2, 3] {
            *lru.touch(&k, || 0) += 1;
        }
        *lru.touch(&1, || 0) += 1;
        *lru.touch(&4, || 0) += 1;
        assert_eq!((keys(&lru), lru.evicted()), (vec![1, 3, 4], 1));
        assert_eq!(lru.get(&1), Some(&2));
        *lru.touch(&5, || 0) += 1;
        *lru.touch(&6, || 0) += 1;
        assert_eq!((keys(&lru), lru.evicted(), lru.len()), (vec![4, 5, 6], 3, 3));
        lru.clear();
        assert_eq!((lru.len(), lru.evicted(), lru.capacity()), (0, 0, 3));
    }

    #[test]
    fn a_map_of_one_keeps_the_newest() {
        let mut lru = Lru::new(0);
        lru.touch(&1, || "a");
        lru.touch(&2, || "b");
        assert_eq!((keys(&lru), lru.evicted()), (vec![2], 1));
    }

    #[test]
    fn recent_sets_keep_the_newest_values_and_count_the_rest() {
        let mut s = RecentSet::new(2);
        for v in ["a", "b", "a", "c", "c"] {
            s.insert(v);
        }
        assert_eq!((s.sorted(), s.evicted()), (vec!["a".to_string(), "c".to_string()], 1));
    }

    #[test]
    fn top_counts_lump_what_does_not_fit() {
        let mut t = TopCounts::new(2);
        for k in ["x", "y", "y", "z", "z", "z"] {
            t.add(|c: &&str| *c == k, || k);
        }
        assert_eq!((t.sorted(), t.other()), (vec![("y", 2), ("x", 1)], 3));
    }
}

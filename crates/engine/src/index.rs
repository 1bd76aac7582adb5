//! The order-id index: order id → slot of the live order, or "finished".
//!
//! Client order ids are usually dense and increasing, and cancels target recent orders. With a
//! million remembered ids, a hash map makes nearly every lookup a cache miss (profiling showed
//! that miss at ~40 % of engine time). So ids are kept in two places:
//!
//! - a **dense window**: a `Vec<u32>` indexed by `id - base`, 4 bytes per id, extended whenever
//!   a new id lies at most [`MAX_GAP`] past its end. Recent ids sit together at its end, so
//!   their entries stay in cache;
//! - a **sparse map** (FxHash) for every id that does not fit the window (old ids below it,
//!   ids far above it, random ids). The gap bound caps the window's waste at `4 × MAX_GAP`
//!   bytes per id, whatever ids clients choose.

use crate::types::OrderId;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Marker for an id that was accepted and whose order is now finished.
pub(crate) const FINISHED: u32 = u32::MAX;
/// Marker for an id in the window that was never used.
const EMPTY: u32 = u32::MAX - 1;
/// Largest jump past the window's end that still extends it.
pub(crate) const MAX_GAP: u64 = 64;

/// Every order id the engine has accepted, with the slot of the live ones.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct OrderIndex {
    base: OrderId,
    dense: Vec<u32>,
    sparse: FxHashMap<OrderId, u32>,
}

impl OrderIndex {
    #[inline]
    fn window(&self, id: OrderId) -> Option<usize> {
        let offset = id.wrapping_sub(self.base);
        (id >= self.base && offset < self.dense.len() as u64).then_some(offset as usize)
    }

    /// The slot (or [`FINISHED`]) recorded for `id`.
    #[inline]
    pub fn get(&self, id: OrderId) -> Option<u32> {
        match self.window(id) {
            Some(i) => match self.dense[i] {
                EMPTY => None,
                v => Some(v),
            },
            None => self.sparse.get(&id).copied(),
        }
    }

    #[inline]
    pub fn contains(&self, id: OrderId) -> bool {
        self.get(id).is_some()
    }

    /// Records `slot` (or [`FINISHED`]) for `id`.
    #[inline]
    pub fn set(&mut self, id: OrderId, slot: u32) {
        debug_assert!(slot != EMPTY);
        if let Some(i) = self.window(id) {
            self.dense[i] = slot;
            return;
        }
        if self.dense.is_empty() && self.sparse.is_empty() {
            self.base = id;
        }
        let end = self.base.wrapping_add(self.dense.len() as u64);
        if id >= end && id - end <= MAX_GAP && id >= self.base {
            // Extend the window, moving any skipped ids that were stored in the map.
            for skipped in end..id {
                let v = match self.sparse.is_empty() {
                    true => EMPTY,
                    false => self.sparse.remove(&skipped).unwrap_or(EMPTY),
                };
                self.dense.push(v);
            }
            if !self.sparse.is_empty() {
                self.sparse.remove(&id);
            }
            self.dense.push(slot);
        } else {
            self.sparse.insert(id, slot);
        }
    }

    /// Number of ids recorded.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.dense.iter().filter(|&&v| v != EMPTY).count() + self.sparse.len()
    }

    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        let buckets = (self.sparse.capacity() * 8 / 7).next_power_of_two();
        self.dense.capacity() * 4 + buckets * (std::mem::size_of::<(OrderId, u32)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_ids_use_the_window_and_others_the_map() {
        let mut idx = OrderIndex::default();
        for id in 1000..2000u64 {
            assert!(!idx.contains(id));
            idx.set(id, (id % 7) as u32);
        }
        assert!(idx.sparse.is_empty());
        assert_eq!(idx.dense.len(), 1000);
        // A small gap extends the window; the skipped ids stay unknown.
        idx.set(2010, 1);
        assert_eq!(idx.dense.len(), 1011);
        assert_eq!(idx.get(2005), None);
        assert_eq!(idx.get(2010), Some(1));
        // Far, old and extreme ids go to the map.
        for id in [u64::MAX, 0, 999, 1 << 40] {
            idx.set(id, 3);
            assert_eq!(idx.get(id), Some(3));
        }
        assert_eq!(idx.sparse.len(), 4);
        idx.set(1500, FINISHED);
        assert_eq!(idx.get(1500), Some(FINISHED));
        assert_eq!(idx.len(), 1005);
        // An id in the map is never shadowed by a later window extension.
        let mut idx = OrderIndex::default();
        idx.set(10, 1);
        idx.set(100, 2); // beyond the gap: sparse
        for id in 11..=100u64 {
            if id != 100 {
                idx.set(id, 5);
            }
        }
        assert_eq!(idx.get(100), Some(2));
        idx.set(100, 9);
        assert_eq!(idx.get(100), Some(9));
        // Extending the window past 100 migrates it out of the map.
        idx.set(102, 4);
        assert_eq!(idx.get(100), Some(9));
        assert_eq!(idx.get(101), None);
        assert_eq!(idx.get(102), Some(4));
        assert!(idx.sparse.is_empty());
        assert_eq!(idx.len(), 92);
    }

    #[test]
    fn waste_is_bounded_for_spread_out_ids() {
        let mut idx = OrderIndex::default();
        for k in 0..10_000u64 {
            idx.set(k * 1_000_003, 1);
        }
        assert!(idx.dense.len() <= 1, "far-apart ids do not grow the window");
        assert_eq!(idx.len(), 10_000);
    }
}

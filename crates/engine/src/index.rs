//! The order-id index: order id → slot of the live order, or "recently finished".
//!
//! **Duplicate-id policy.** A new order is refused as `duplicate_order_id` when its id belongs to
//! a live (resting) order, or to one of the last `window` orders that finished (filled,
//! cancelled, expired), counted in the order their final `OrderUpdate` events were emitted. Older
//! ids are forgotten and may be used again. So the index holds at most
//! `live orders + window` ids, whatever the history; `window` is [`crate::EngineConfig`]'s
//! `finished_ids_window`.
//!
//! **Layout, for speed.** Client order ids are usually dense and increasing, and cancels target
//! recent orders. With a hash map over hundreds of thousands of ids nearly every lookup is a cache
//! miss (profiling once showed it at ~40 % of engine time), so ids live in two places:
//!
//! - a **dense window**: a ring of `u32` indexed by `id - base`, 4 bytes per id, extended whenever
//!   a new id lies at most [`MAX_GAP`] past its end — or further, up to [`MAX_CREDIT`], while the
//!   window has **credit**: every id recorded in it earns [`MAX_GAP`] entries, a longer jump
//!   spends its length. So ids that arrive out of order within blocks (clients, gateways or
//!   sessions handing out ranges) stay in the window, while the window's growth stays within
//!   [`MAX_GAP`] entries per recorded id on average, whatever the ids. It is trimmed at its front
//!   as ids are forgotten. When it grows past [`OrderIndex::dense_cap`] (a long-lived order pins its front),
//!   the oldest entries move to the map, so the window stays bounded too;
//! - a **sparse map** (FxHash) for every id that does not fit the window (old ids below it, ids
//!   far above it, random ids).
//!
//! Lookups never iterate the map, and the serialized form lists ids in a canonical order, so the
//! same commands give the same events and the same snapshot bytes.

use crate::types::OrderId;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::VecDeque;

/// Marker for an id whose order finished and which is still remembered.
pub(crate) const FINISHED: u32 = u32::MAX;
/// Marker for an id in the window that is not recorded.
const EMPTY: u32 = u32::MAX - 1;
/// Largest jump past the window's end that still extends it.
pub(crate) const MAX_GAP: u64 = 64;
/// Dense-window entries always allowed on top of twice the finished window.
const DENSE_SLACK: usize = 1 << 16;
/// Most credit (window entries) the dense window can save up for jumps longer than [`MAX_GAP`].
pub(crate) const MAX_CREDIT: u64 = 1 << 17;

/// Live order ids with their slots, plus a bounded window of recently finished ids.
#[derive(Clone, Debug, Default)]
pub(crate) struct OrderIndex {
    /// How many finished ids are remembered.
    window: usize,
    /// Finished ids still remembered, oldest first (`len() <= window`).
    finished: VecDeque<OrderId>,
    base: OrderId,
    dense: VecDeque<u32>,
    /// Entries the window may still grow by for jumps longer than [`MAX_GAP`].
    credit: u64,
    sparse: FxHashMap<OrderId, u32>,
    /// No key in `sparse` is above this (an upper bound: not lowered by removals), so extending
    /// the window past it needs no look-ups to move ids out of the map.
    sparse_max: OrderId,
}

impl OrderIndex {
    /// An empty index remembering the last `window` finished ids.
    pub fn new(window: usize) -> Self {
        OrderIndex {
            window,
            credit: MAX_CREDIT,
            ..Default::default()
        }
    }

    #[inline]
    fn position(&self, id: OrderId) -> Option<usize> {
        let offset = id.wrapping_sub(self.base);
        (id >= self.base && offset < self.dense.len() as u64).then_some(offset as usize)
    }

    /// The slot (or [`FINISHED`]) recorded for `id`.
    #[inline]
    pub fn get(&self, id: OrderId) -> Option<u32> {
        match self.position(id) {
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

    /// Most dense-window entries kept before the oldest move to the map.
    fn dense_cap(&self) -> usize {
        2 * self.window + DENSE_SLACK
    }

    /// Records `slot` for `id` (a live order; or [`FINISHED`] for an order that was just accepted
    /// and is not resting yet — call [`OrderIndex::finish`] when it is done).
    #[inline]
    pub fn set(&mut self, id: OrderId, slot: u32) {
        debug_assert!(slot != EMPTY);
        if let Some(i) = self.position(id) {
            if self.dense[i] == EMPTY {
                // A newly recorded id earns credit for longer jumps.
                self.credit = (self.credit + MAX_GAP).min(MAX_CREDIT);
            }
            self.dense[i] = slot;
            return;
        }
        if self.dense.is_empty() {
            // Restart the window at this id (anything recorded lives in the map).
            self.base = id;
            self.remove_from_map(id);
            self.dense.push_back(slot);
            return;
        }
        let end = self.base.wrapping_add(self.dense.len() as u64);
        let gap = id.wrapping_sub(end);
        if id >= end && id >= self.base && (gap <= MAX_GAP || gap <= self.credit) {
            // Extend the window, moving any skipped ids that were stored in the map.
            if self.sparse_max >= end && !self.sparse.is_empty() {
                for skipped in end..id {
                    let v = self.sparse.remove(&skipped).unwrap_or(EMPTY);
                    self.dense.push_back(v);
                }
                self.sparse.remove(&id);
            } else {
                self.dense.resize(self.dense.len() + gap as usize, EMPTY);
            }
            self.credit = (self.credit.saturating_sub(gap) + MAX_GAP).min(MAX_CREDIT);
            self.dense.push_back(slot);
            if self.dense.len() > self.dense_cap() {
                self.spill_front();
            }
        } else {
            self.insert_into_map(id, slot);
        }
    }

    #[inline]
    fn insert_into_map(&mut self, id: OrderId, slot: u32) {
        self.sparse_max = self.sparse_max.max(id);
        self.sparse.insert(id, slot);
    }

    #[inline]
    fn remove_from_map(&mut self, id: OrderId) {
        if id <= self.sparse_max && !self.sparse.is_empty() {
            self.sparse.remove(&id);
        }
    }

    /// Moves the window's oldest entries to the map until it is within its cap.
    #[cold]
    fn spill_front(&mut self) {
        let keep = self.dense_cap() / 2;
        while self.dense.len() > keep {
            let v = self.dense.pop_front().expect("non-empty");
            if v != EMPTY {
                let id = self.base;
                self.insert_into_map(id, v);
            }
            self.base += 1;
        }
        self.trim_front();
    }

    /// Drops forgotten ids from the window's front.
    #[inline]
    fn trim_front(&mut self) {
        while self.dense.front() == Some(&EMPTY) {
            self.dense.pop_front();
            self.base += 1;
        }
    }

    /// Marks `id` finished: it stays a duplicate for the next `window` finished orders.
    #[inline]
    pub fn finish(&mut self, id: OrderId) {
        if self.window == 0 {
            self.forget(id);
            return;
        }
        self.set(id, FINISHED);
        if self.finished.len() == self.window {
            let oldest = self.finished.pop_front().expect("window > 0");
            self.forget(oldest);
        }
        self.finished.push_back(id);
    }

    /// Removes `id`.
    #[inline]
    fn forget(&mut self, id: OrderId) {
        match self.position(id) {
            Some(0) => {
                self.dense[0] = EMPTY;
                self.trim_front();
            }
            Some(i) => self.dense[i] = EMPTY,
            None => self.remove_from_map(id),
        }
    }

    /// Number of ids recorded (live and remembered finished).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.dense.iter().filter(|&&v| v != EMPTY).count() + self.sparse.len()
    }

    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        let buckets = (self.sparse.capacity() * 8 / 7).next_power_of_two();
        self.dense.capacity() * 4
            + self.finished.capacity() * 8
            + buckets * (std::mem::size_of::<(OrderId, u32)>() + 1)
    }
}

/// The serialized index: what it means, not how it is laid out.
#[derive(Serialize, Deserialize)]
struct IndexState {
    window: usize,
    /// Finished ids still remembered, oldest first.
    finished: Vec<OrderId>,
    /// Live orders `(id, slot)`, by id.
    live: Vec<(OrderId, u32)>,
}

impl Serialize for OrderIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let dense = self
            .dense
            .iter()
            .enumerate()
            .map(|(i, &v)| (self.base + i as u64, v));
        let mut live: Vec<(OrderId, u32)> = dense
            .chain(self.sparse.iter().map(|(&id, &v)| (id, v)))
            .filter(|&(_, v)| v != EMPTY && v != FINISHED)
            .collect();
        live.sort_unstable();
        IndexState {
            window: self.window,
            finished: self.finished.iter().copied().collect(),
            live,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for OrderIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let state = IndexState::deserialize(deserializer)?;
        if state.finished.len() > state.window {
            return Err(serde::de::Error::custom(
                "more finished ids than the window holds",
            ));
        }
        let mut index = OrderIndex::new(state.window);
        for (id, slot) in state.live {
            index.set(id, slot);
        }
        for &id in &state.finished {
            index.set(id, FINISHED);
        }
        index.finished = state.finished.into();
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_ids_use_the_window_and_others_the_map() {
        let mut idx = OrderIndex::new(10_000);
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
        idx.finish(1500);
        assert_eq!(idx.get(1500), Some(FINISHED));
        assert_eq!(idx.len(), 1005);
        // An id in the map is never shadowed by a later window extension.
        let mut idx = OrderIndex::new(10);
        idx.credit = 0; // no credit: a jump longer than MAX_GAP goes to the map
        idx.set(10, 1);
        idx.set(100, 2); // beyond the gap: sparse
        assert!(!idx.sparse.is_empty());
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

    /// Ids permuted within blocks use the window, not the map, once past the first block; a long
    /// jump spends credit and, without enough of it, goes to the map.
    #[test]
    fn block_shuffled_ids_stay_in_the_window_and_jumps_spend_credit() {
        let block = 1u64 << 16;
        let mut idx = OrderIndex::new(100_000);
        for n in 0..6 * block {
            let id = (n & !(block - 1)) | (n.wrapping_mul(40_503) & (block - 1));
            idx.set(id, FINISHED);
            idx.finish(id);
            if n >= 2 * block {
                assert!(idx.position(id).is_some(), "id {id} in the window");
            }
        }
        // The first block's ids below the first one went to the map; none since.
        assert!(idx.sparse.len() <= block as usize, "{}", idx.sparse.len());
        assert!(idx.dense.len() <= idx.dense_cap());
        // Credit: a long jump is allowed while there is credit for it, and spends it.
        let mut idx = OrderIndex::new(100_000);
        idx.set(0, 1);
        assert_eq!(idx.credit, MAX_CREDIT);
        idx.set(MAX_CREDIT, 2); // a jump of MAX_CREDIT - 1 entries
        assert_eq!(idx.dense.len() as u64, MAX_CREDIT + 1);
        assert!(idx.credit < 2 * MAX_GAP);
        let far = 2 * MAX_CREDIT;
        idx.set(far, 3); // no credit left: the map
        assert_eq!(idx.sparse.get(&far), Some(&3));
        assert_eq!(idx.dense.len() as u64, MAX_CREDIT + 1);
        // Recording ids earns credit again (MAX_GAP each, up to MAX_CREDIT).
        for id in 1..MAX_CREDIT {
            idx.set(id, 4);
        }
        assert_eq!(idx.credit, MAX_CREDIT);
        // ... and extending past an id in the map moves it into the window.
        idx.set(far + 1, 5);
        assert!(idx.sparse.is_empty());
        assert_eq!(idx.get(far), Some(3));
        assert_eq!(idx.get(far - 1), None);
        assert_eq!(idx.get(far + 1), Some(5));
    }

    /// Ids far apart (a stride of 1 000) cannot make the window grow by more than `MAX_GAP`
    /// entries per recorded id on average (plus the initial credit), and it stays capped.
    #[test]
    fn strided_ids_do_not_inflate_the_window() {
        let mut idx = OrderIndex::new(1_000);
        let mut grown = 0u64;
        for n in 0..50_000u64 {
            let (id, end, was_empty) = (
                n * 1_000,
                idx.base + idx.dense.len() as u64,
                idx.dense.is_empty(),
            );
            idx.set(id, FINISHED);
            if !was_empty && idx.position(id).is_some() {
                grown += id - end; // EMPTY entries added for the skipped ids
            }
            idx.finish(id);
            assert!(
                grown <= MAX_CREDIT + 2 * MAX_GAP * (n + 1),
                "step {n}: {grown}"
            );
            assert!(idx.dense.len() <= idx.dense_cap());
        }
        assert_eq!(idx.len(), 1_000);
    }

    /// Random mixes of dense, block-shuffled, strided, random and reused ids, checked against a
    /// plain model of the duplicate-id policy after every step.
    #[test]
    fn matches_a_model_for_mixed_id_patterns() {
        use std::collections::HashMap;
        let window = 300;
        let mut idx = OrderIndex::new(window);
        let mut model: HashMap<OrderId, u32> = HashMap::new();
        let mut finished: VecDeque<OrderId> = VecDeque::new();
        let mut live: Vec<OrderId> = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut next = 1_000u64;
        let mut issued: Vec<OrderId> = Vec::new();
        for step in 0..80_000u32 {
            let r = rnd();
            let pattern = (step / 5_000) % 4;
            if live.len() > 400 || (r % 3 == 0 && !live.is_empty()) {
                // Finish a live order.
                let id = live.swap_remove((r >> 8) as usize % live.len());
                idx.finish(id);
                model.insert(id, FINISHED);
                finished.push_back(id);
                if finished.len() > window {
                    let old = finished.pop_front().unwrap();
                    model.remove(&old);
                }
            } else {
                let id = match (pattern, r % 16) {
                    (_, 0) if !issued.is_empty() => issued[(r >> 8) as usize % issued.len()],
                    (0, _) => {
                        next += 1 + (r >> 60);
                        next
                    }
                    (1, _) => {
                        next += 1;
                        (next & !0xfff) | (next.wrapping_mul(40_503) & 0xfff)
                    }
                    (2, _) => {
                        next += 1_000;
                        next
                    }
                    _ => rnd(),
                };
                if model.contains_key(&id) {
                    assert!(idx.contains(id), "step {step}: {id} is a duplicate");
                    continue;
                }
                assert!(!idx.contains(id), "step {step}: {id} is free");
                // As the engine does: accepted (FINISHED), then resting with a slot.
                idx.set(id, FINISHED);
                let slot = step % 1_000;
                idx.set(id, slot);
                model.insert(id, slot);
                live.push(id);
                issued.push(id);
            }
            if step % 101 == 0 {
                for &id in issued.iter().rev().take(500) {
                    assert_eq!(idx.get(id), model.get(&id).copied(), "step {step}: {id}");
                }
                assert_eq!(idx.len(), model.len());
                assert!(idx.dense.len() <= idx.dense_cap());
            }
        }
    }

    #[test]
    fn finished_ids_are_remembered_for_the_window_then_forgotten() {
        for (window, ids) in [
            (3usize, (1..=20u64).collect::<Vec<_>>()),
            (3, (1..=20u64).map(|k| k * 1_000_003).collect()),
            (0, (1..=20u64).collect()),
        ] {
            let mut idx = OrderIndex::new(window);
            for (n, &id) in ids.iter().enumerate() {
                idx.set(id, FINISHED);
                idx.finish(id);
                // The last `window` finished ids are known, the ones before forgotten.
                for (k, &old) in ids[..=n].iter().enumerate() {
                    let remembered = n - k < window;
                    assert_eq!(idx.contains(old), remembered, "window {window}, id {old}");
                }
                assert!(idx.len() <= window);
            }
            // A forgotten id can be used again, and is then live.
            idx.set(ids[0], 7);
            assert_eq!(idx.get(ids[0]), Some(7));
        }
    }

    #[test]
    fn memory_follows_live_orders_and_the_window_not_history() {
        // 300 k dense ids, 1 000 live at a time, window 5 000: the index stays small.
        let window = 5_000;
        let mut idx = OrderIndex::new(window);
        let mut peak = 0;
        for id in 0..300_000u64 {
            idx.set(id, (id % 1000) as u32);
            if id >= 1000 {
                idx.finish(id - 1000);
            }
            peak = peak.max(idx.len());
        }
        assert_eq!(peak, 1000 + window);
        assert!(idx.dense.len() <= idx.dense_cap());
        // One order that never finishes does not pin the window: it moves to the map.
        let mut idx = OrderIndex::new(window);
        idx.set(0, 42);
        for id in 1..300_000u64 {
            idx.set(id, 1);
            idx.finish(id);
        }
        assert_eq!(idx.get(0), Some(42));
        assert!(idx.dense.len() <= idx.dense_cap(), "{}", idx.dense.len());
        assert_eq!(idx.len(), 1 + window);
        // Random ids: the map holds only live and remembered ids.
        let mut idx = OrderIndex::new(window);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            idx.set(x, FINISHED);
            idx.finish(x);
        }
        assert_eq!(idx.len(), window);
        assert!(idx.heap_bytes() < 1 << 20, "{}", idx.heap_bytes());
    }

    #[test]
    fn serialized_form_is_canonical_and_round_trips() {
        let mut a = OrderIndex::new(4);
        for id in [5u64, 6, 7, 900, 8, 1 << 50] {
            a.set(id, id as u32 % 100);
        }
        for id in [6u64, 900, 8] {
            a.finish(id);
        }
        let bytes = serde_json::to_string(&a).unwrap();
        let b: OrderIndex = serde_json::from_str(&bytes).unwrap();
        assert_eq!(serde_json::to_string(&b).unwrap(), bytes);
        for id in [5u64, 6, 7, 8, 900, 1 << 50, 4, 9] {
            assert_eq!(a.get(id), b.get(id), "id {id}");
        }
        assert_eq!(
            bytes,
            r#"{"window":4,"finished":[6,900,8],"live":[[5,5],[7,7],[1125899906842624,0]]}"#
        );
    }
}

//! The order book's data structures, chosen for speed:
//!
//! - [`Slab`]: every resting order lives in one `Vec` of 64-byte slots addressed by a `u32`
//!   index, with a free list, so no allocation happens per order once warmed up.
//! - [`Level`]: a price level is an intrusive doubly linked FIFO of slot indices (head/tail) plus
//!   its aggregate quantity and order count, so cancel is O(1) once the level is found.
//! - [`Ladder`]: one side of one book, a `Vec<Level>` sorted so the **best level is last**. Orders
//!   cluster near the touch, so inserting or removing a level shifts only a few elements, and
//!   finding a price scans a few levels from the end before falling back to binary search. Levels
//!   are keyed by `key = price` for bids and `key = -price` for asks, so "better" is always "larger
//!   key" and one code path serves both sides.
//!
//! This module has no matching logic; see [`crate::engine`].

use crate::event::{Depth, DepthLevel, DepthSide};
use crate::types::{InstrumentId, Lots, OrderId, Side, Ticks, TraderId};
use serde::{Deserialize, Serialize};

/// "No slot" marker for links.
pub(crate) const NIL: u32 = u32::MAX;

/// A resting order. Exactly one cache line.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[repr(align(64))]
pub(crate) struct Slot {
    pub id: OrderId,
    pub trader: TraderId,
    pub price: Ticks,
    pub leaves: Lots,
    pub filled: Lots,
    pub prev: u32,
    pub next: u32,
    pub instrument: InstrumentId,
    pub side: Side,
    pub post_only: bool,
}

/// Arena of order slots with a LIFO free list (recently freed slots are cache-hot).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slab {
    pub fn alloc(&mut self, slot: Slot) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub fn release(&mut self, i: u32) {
        self.free.push(i);
    }

    #[inline]
    pub fn get(&self, i: u32) -> &Slot {
        &self.slots[i as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, i: u32) -> &mut Slot {
        &mut self.slots[i as usize]
    }

    /// Number of live (allocated) slots.
    pub fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Heap bytes reserved by the slab.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>() + self.free.capacity() * 4
    }
}

/// One price level: FIFO of orders at one price.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Level {
    /// `price` for bids, `-price` for asks: larger is better on both sides.
    pub key: i64,
    pub qty: Lots,
    pub count: u32,
    pub head: u32,
    pub tail: u32,
}

#[inline]
pub(crate) fn key_of(side: Side, price: Ticks) -> i64 {
    match side {
        Side::Buy => price,
        Side::Sell => -price,
    }
}

#[inline]
pub(crate) fn price_of(side: Side, key: i64) -> Ticks {
    match side {
        Side::Buy => key,
        Side::Sell => -key,
    }
}

/// One side of a book: levels sorted by ascending key, best level last.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Ladder {
    pub levels: Vec<Level>,
}

/// How many levels from the end to scan linearly before binary searching.
const LINEAR_SCAN: usize = 8;

impl Ladder {
    /// `Ok(index)` of the level with `key`, or `Err(index)` where it would be inserted.
    #[inline]
    pub fn locate(&self, key: i64) -> Result<usize, usize> {
        let levels = &self.levels;
        let mut i = levels.len();
        let stop = i.saturating_sub(LINEAR_SCAN);
        while i > stop {
            let k = levels[i - 1].key;
            if k == key {
                return Ok(i - 1);
            }
            if k < key {
                return Err(i);
            }
            i -= 1;
        }
        levels[..i].binary_search_by_key(&key, |l| l.key)
    }

    /// Distance of level `index` from the best level (0 = best).
    #[inline]
    pub fn rank(&self, index: usize) -> usize {
        self.levels.len() - 1 - index
    }

    /// Appends slot `i` (quantity `qty`) at the back of the level with `key`, creating the level
    /// if needed. Returns the level's rank.
    pub fn push_back(&mut self, slab: &mut Slab, key: i64, i: u32, qty: Lots) -> usize {
        let index = match self.locate(key) {
            Ok(index) => {
                let level = &mut self.levels[index];
                let tail = level.tail;
                slab.get_mut(tail).next = i;
                let s = slab.get_mut(i);
                s.prev = tail;
                s.next = NIL;
                level.tail = i;
                level.qty += qty;
                level.count += 1;
                index
            }
            Err(index) => {
                let s = slab.get_mut(i);
                s.prev = NIL;
                s.next = NIL;
                self.levels.insert(
                    index,
                    Level {
                        key,
                        qty,
                        count: 1,
                        head: i,
                        tail: i,
                    },
                );
                index
            }
        };
        self.rank(index)
    }

    /// Unlinks slot `i` (open quantity `qty`) from the level at `index`, removing the level when
    /// it becomes empty. Returns the level's rank before any removal.
    pub fn unlink(&mut self, slab: &mut Slab, index: usize, i: u32, qty: Lots) -> usize {
        let rank = self.rank(index);
        let (prev, next) = {
            let s = slab.get(i);
            (s.prev, s.next)
        };
        let level = &mut self.levels[index];
        if prev == NIL {
            level.head = next;
        } else {
            slab.get_mut(prev).next = next;
        }
        if next == NIL {
            level.tail = prev;
        } else {
            slab.get_mut(next).prev = prev;
        }
        level.qty -= qty;
        level.count -= 1;
        if level.count == 0 {
            self.levels.remove(index);
        }
        rank
    }

    /// Fills `out` with up to `n` levels, best first.
    pub fn depth_into(&self, side: Side, n: usize, out: &mut DepthSide) {
        for level in self.levels.iter().rev().take(n) {
            out.push(DepthLevel {
                price: price_of(side, level.key),
                quantity: level.qty,
                orders: level.count,
            });
        }
    }

    /// Heap bytes reserved by the ladder.
    pub fn heap_bytes(&self) -> usize {
        self.levels.capacity() * std::mem::size_of::<Level>()
    }
}

/// Both sides of one instrument's book, plus depth-change tracking.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Book {
    pub bids: Ladder,
    pub asks: Ladder,
    /// Top-N changed since the last depth emission.
    pub dirty: bool,
    /// The last emitted top-N (initially empty), to suppress updates that changed nothing.
    pub last_depth: Depth,
}

impl Book {
    #[inline]
    pub fn side(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    #[inline]
    pub fn side_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Best price on `side`, if any.
    pub fn best(&self, side: Side) -> Option<Ticks> {
        self.side(side).levels.last().map(|l| price_of(side, l.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }

    #[test]
    fn ladder_locate_finds_and_orders_keys() {
        let mut ladder = Ladder::default();
        let mut slab = Slab::default();
        let t = TraderId::new("t").unwrap();
        // Insert 20 levels in scrambled order; the ladder must end up sorted.
        for k in [
            5i64, 1, 19, 7, 3, 11, 13, 0, 2, 4, 6, 8, 9, 10, 12, 14, 15, 16, 17, 18,
        ] {
            let i = slab.alloc(Slot {
                id: k as u64,
                trader: t,
                price: k,
                leaves: 1,
                filled: 0,
                prev: NIL,
                next: NIL,
                instrument: InstrumentId(0),
                side: Side::Buy,
                post_only: false,
            });
            ladder.push_back(&mut slab, k, i, 1);
        }
        let keys: Vec<i64> = ladder.levels.iter().map(|l| l.key).collect();
        assert_eq!(keys, (0..20).collect::<Vec<_>>());
        for k in 0..20 {
            assert_eq!(ladder.locate(k), Ok(k as usize));
        }
        assert_eq!(ladder.locate(-1), Err(0));
        assert_eq!(ladder.locate(100), Err(20));
    }
}

//! The order book's data structures, chosen for speed:
//!
//! - [`Slab`]: every resting order lives in one `Vec` of 64-byte slots addressed by a `u32`
//!   index, with a free list, so no allocation happens per order once warmed up.
//! - [`Level`]: a price level is an intrusive doubly linked FIFO of slot indices (head/tail) plus
//!   its aggregate quantity and order count, so cancel is O(1) once the level is found.
//! - [`Ladder`]: one side of one book in two tiers: a short sorted `Vec<Level>` of the best
//!   levels (**best last**; orders cluster near the touch, so inserting or removing a level there
//!   shifts only a few elements, and finding a price scans a few levels from the end) and an
//!   ordered map for every deeper level, so a deep insert is O(log n). Levels are keyed by
//!   `key = price` for bids and `key = -price` for asks, so "better" is always "larger key" and
//!   one code path serves both sides.
//!
//! This module has no matching logic; see [`crate::engine`].

use crate::event::{Depth, DepthLevel, DepthSide, DepthUpdate};
use crate::types::{InstrumentId, Lots, OrderId, Side, Ticks, TraderId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// Where a level sits in a [`Ladder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    /// Index into the near tier.
    Near(usize),
    /// A level of the far tier, by key.
    Far(i64),
}

/// One side of a book, in two tiers so that every operation is O(log n) in the number of levels,
/// while the levels that matter stay in one small contiguous array:
///
/// - `near`: the best levels, sorted by ascending key with the **best last**, at most
///   [`NEAR_MAX`] of them. Orders cluster near the touch, so almost every insert, cancel and
///   match happens here, shifting a few elements of a cache-resident array;
/// - `far`: every worse level, in an ordered map. Its keys are all below `near`'s, so a deep
///   insert costs O(log n) instead of shifting every better level.
///
/// When `near` overflows, its worse half moves to `far`; when `far` is not empty, `near` keeps at
/// least [`NEAR_MIN`] (> [`crate::MAX_DEPTH_LEVELS`]) levels, refilled from `far`'s best. So the
/// published depth always comes from `near`. Serialized as one sorted list of levels (canonical,
/// whatever the split).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Level>", into = "Vec<Level>")]
pub(crate) struct Ladder {
    near: Vec<Level>,
    far: BTreeMap<i64, Level>,
}

/// Most levels in the near tier.
pub(crate) const NEAR_MAX: usize = 64;
/// Fewest levels in the near tier while the far tier has any.
pub(crate) const NEAR_MIN: usize = 16;
const _: () = assert!(NEAR_MIN > crate::event::MAX_DEPTH_LEVELS && NEAR_MIN * 2 <= NEAR_MAX);

/// How many levels from the end to scan linearly before binary searching.
const LINEAR_SCAN: usize = 8;

impl From<Vec<Level>> for Ladder {
    fn from(mut levels: Vec<Level>) -> Self {
        levels.sort_unstable_by_key(|l| l.key);
        let split = levels.len().saturating_sub(NEAR_MAX / 2);
        let near = levels.split_off(split);
        let far = levels.into_iter().map(|l| (l.key, l)).collect();
        Ladder { near, far }
    }
}

impl From<Ladder> for Vec<Level> {
    fn from(ladder: Ladder) -> Self {
        let mut levels: Vec<Level> = ladder.far.into_values().collect();
        levels.extend(ladder.near);
        levels
    }
}

impl Ladder {
    /// Number of levels.
    pub fn len(&self) -> usize {
        self.near.len() + self.far.len()
    }

    /// `Ok(index)` of the near level with `key`, or `Err(index)` where it would be inserted.
    #[inline]
    fn locate_near(&self, key: i64) -> Result<usize, usize> {
        let levels = &self.near;
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

    /// `true` when a level with `key` belongs to the far tier.
    #[inline]
    fn is_far(&self, key: i64) -> bool {
        !self.far.is_empty() && key < self.near[0].key
    }

    /// Where the level with `key` is, if it exists.
    #[inline]
    pub fn locate(&self, key: i64) -> Option<Loc> {
        if self.is_far(key) {
            self.far.contains_key(&key).then_some(Loc::Far(key))
        } else {
            self.locate_near(key).ok().map(Loc::Near)
        }
    }

    #[inline]
    pub fn level_mut(&mut self, loc: Loc) -> &mut Level {
        match loc {
            Loc::Near(i) => &mut self.near[i],
            Loc::Far(key) => self.far.get_mut(&key).expect("located far level"),
        }
    }

    /// Distance of the level at `loc` from the best level (0 = best). Far levels report the
    /// near tier's length, a lower bound that is already deeper than any published depth.
    #[inline]
    pub fn rank(&self, loc: Loc) -> usize {
        match loc {
            Loc::Near(i) => self.near.len() - 1 - i,
            Loc::Far(_) => self.near.len(),
        }
    }

    /// The best level.
    #[inline]
    pub fn best(&self) -> Option<&Level> {
        self.near.last()
    }

    /// The best level, mutably.
    #[inline]
    pub fn best_mut(&mut self) -> Option<&mut Level> {
        self.near.last_mut()
    }

    /// Removes the best level (it must be empty of orders).
    #[inline]
    pub fn pop_best(&mut self) {
        self.near.pop();
        self.refill();
    }

    /// All levels, best first.
    pub fn iter_best_first(&self) -> impl Iterator<Item = &Level> {
        self.near.iter().rev().chain(self.far.values().rev())
    }

    /// Keeps at least [`NEAR_MIN`] levels near while any are far.
    #[inline]
    fn refill(&mut self) {
        if self.near.len() < NEAR_MIN && !self.far.is_empty() {
            self.refill_slow();
        }
    }

    #[cold]
    fn refill_slow(&mut self) {
        let mut moved = Vec::with_capacity(NEAR_MAX / 2);
        while moved.len() < NEAR_MAX / 2 {
            match self.far.pop_last() {
                Some((_, level)) => moved.push(level),
                None => break,
            }
        }
        moved.reverse();
        moved.append(&mut self.near);
        self.near = moved;
    }

    /// Moves the worse half of the near tier to the far tier.
    #[cold]
    fn spill(&mut self) {
        let keep = self.near.len() - NEAR_MAX / 2;
        for level in self.near.drain(..keep) {
            self.far.insert(level.key, level);
        }
    }

    /// Appends slot `i` (quantity `qty`) at the back of the level with `key`, creating the level
    /// if needed. Returns the level's rank.
    pub fn push_back(&mut self, slab: &mut Slab, key: i64, i: u32, qty: Lots) -> usize {
        if let Some(loc) = self.locate(key) {
            let rank = self.rank(loc);
            let level = self.level_mut(loc);
            let tail = level.tail;
            level.tail = i;
            level.qty += qty;
            level.count += 1;
            slab.get_mut(tail).next = i;
            let s = slab.get_mut(i);
            s.prev = tail;
            s.next = NIL;
            return rank;
        }
        let s = slab.get_mut(i);
        s.prev = NIL;
        s.next = NIL;
        let level = Level {
            key,
            qty,
            count: 1,
            head: i,
            tail: i,
        };
        if self.is_far(key) {
            self.far.insert(key, level);
            return self.near.len();
        }
        let index = self.locate_near(key).expect_err("level is new");
        self.near.insert(index, level);
        let rank = self.near.len() - 1 - index;
        if self.near.len() > NEAR_MAX {
            self.spill();
        }
        rank
    }

    /// Unlinks slot `i` (open quantity `qty`) from the level at `loc`, removing the level when
    /// it becomes empty. Returns the level's rank before any removal.
    pub fn unlink(&mut self, slab: &mut Slab, loc: Loc, i: u32, qty: Lots) -> usize {
        let rank = self.rank(loc);
        let (prev, next) = {
            let s = slab.get(i);
            (s.prev, s.next)
        };
        let level = self.level_mut(loc);
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
            match loc {
                Loc::Near(index) => {
                    self.near.remove(index);
                    self.refill();
                }
                Loc::Far(key) => {
                    self.far.remove(&key);
                }
            }
        }
        rank
    }

    /// Fills `out` with up to `n` levels, best first.
    pub fn depth_into(&self, side: Side, n: usize, out: &mut DepthSide) {
        for level in self.iter_best_first().take(n) {
            out.push(DepthLevel {
                price: price_of(side, level.key),
                quantity: level.qty,
                orders: level.count,
            });
        }
    }

    /// Brings `side` (this ladder's last published top `n`) up to date; returns whether it
    /// changed. The top `n <= MAX_DEPTH_LEVELS` levels are always in the near tier (it keeps at
    /// least `NEAR_MIN > MAX_DEPTH_LEVELS` levels while the far tier has any), so this reads one
    /// short slice from its end.
    #[inline]
    pub fn refresh_depth(&self, side: Side, n: usize, out: &mut DepthSide) -> bool {
        debug_assert!(n <= crate::event::MAX_DEPTH_LEVELS);
        let top = &self.near[self.near.len().saturating_sub(n)..];
        out.refresh(top.iter().rev().map(|level| DepthLevel {
            price: price_of(side, level.key),
            quantity: level.qty,
            orders: level.count,
        }))
    }

    /// Heap bytes reserved by the ladder (the map's nodes estimated at 1.5× their entries).
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(i64, Level)>();
        self.near.capacity() * std::mem::size_of::<Level>() + self.far.len() * entry * 3 / 2
    }
}

/// Both sides of one instrument's book, plus depth-change tracking.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Book {
    pub bids: Ladder,
    pub asks: Ladder,
    /// Top-N changed since the last depth emission.
    pub dirty: bool,
    /// The last emitted top-N (initially empty), to suppress updates that changed nothing. Kept
    /// as a whole [`DepthUpdate`] (its `seq` and `instrument` are set when it is emitted) so that
    /// emitting it is one copy straight into the output. Serialized as just its depth.
    #[serde(rename = "last_depth", with = "depth_only")]
    pub last: DepthUpdate,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            bids: Ladder::default(),
            asks: Ladder::default(),
            dirty: false,
            last: DepthUpdate {
                seq: 0,
                instrument: InstrumentId(0),
                depth: Depth::default(),
            },
        }
    }
}

/// Serializes [`Book::last`] as its [`Depth`] alone (the snapshot layout of a plain `Depth`).
mod depth_only {
    use crate::event::{Depth, DepthUpdate};
    use crate::types::InstrumentId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(last: &DepthUpdate, serializer: S) -> Result<S::Ok, S::Error> {
        last.depth.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DepthUpdate, D::Error> {
        Ok(DepthUpdate {
            seq: 0,
            instrument: InstrumentId(0),
            depth: Depth::deserialize(deserializer)?,
        })
    }
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
        self.side(side).best().map(|l| price_of(side, l.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }

    /// An unlinked buy slot of one lot.
    fn buy(id: u64, price: i64) -> Slot {
        Slot {
            id,
            trader: TraderId::new("t").unwrap(),
            price,
            leaves: 1,
            filled: 0,
            prev: NIL,
            next: NIL,
            instrument: InstrumentId(0),
            side: Side::Buy,
            post_only: false,
        }
    }

    #[test]
    fn ladder_locate_finds_and_orders_keys() {
        let mut ladder = Ladder::default();
        let mut slab = Slab::default();
        // Insert 20 levels in scrambled order; the ladder must end up sorted.
        for k in [
            5i64, 1, 19, 7, 3, 11, 13, 0, 2, 4, 6, 8, 9, 10, 12, 14, 15, 16, 17, 18,
        ] {
            let i = slab.alloc(buy(k as u64, k));
            ladder.push_back(&mut slab, k, i, 1);
        }
        let keys: Vec<i64> = ladder.iter_best_first().map(|l| l.key).collect();
        assert_eq!(keys, (0..20).rev().collect::<Vec<_>>());
        for k in 0..20 {
            assert_eq!(ladder.locate(k), Some(Loc::Near(k as usize)));
        }
        assert_eq!(ladder.locate(-1), None);
        assert_eq!(ladder.locate(100), None);
    }

    /// Random inserts and removals over thousands of prices, checked after every step against a
    /// plain ordered map: same levels in the same order, tiers consistent, ranks right.
    #[test]
    fn two_tier_ladder_matches_an_ordered_map() {
        use std::collections::BTreeMap;
        let mut slab = Slab::default();
        let mut ladder = Ladder::default();
        // key -> slots resting there, oldest first
        let mut model: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let (mut spilled, mut refilled) = (false, false);
        for step in 0..20_000 {
            // Alternate building phases with draining phases that eat the best levels (sweeps),
            // so the near tier runs low and is refilled from the far one.
            let draining = (step / 2_000) % 2 == 1;
            let insert = model.is_empty() || rnd(100) < if draining { 20 } else { 55 };
            if insert {
                // Mostly near the top of the current range, sometimes anywhere.
                let key = if rnd(4) == 0 {
                    rnd(5_000) as i64
                } else {
                    4_900 + rnd(100) as i64
                };
                let i = slab.alloc(buy(step, key));
                let rank = ladder.push_back(&mut slab, key, i, 1);
                let expected = model.range(key + 1..).count();
                if expected < NEAR_MIN {
                    assert_eq!(rank, expected, "rank of {key}");
                } else {
                    assert!(rank >= NEAR_MIN.min(expected));
                }
                model.entry(key).or_default().push(i);
            } else {
                // Remove the best order (matching) or a random one (cancel).
                let key = if draining || rnd(3) == 0 {
                    *model.keys().next_back().unwrap()
                } else {
                    let n = rnd(model.len() as u64) as usize;
                    *model.keys().nth(n).unwrap()
                };
                let slots = model.get_mut(&key).unwrap();
                let i = slots.remove(rnd(slots.len() as u64) as usize);
                if slots.is_empty() {
                    model.remove(&key);
                }
                let loc = ladder.locate(key).expect("level exists");
                let far_before = ladder.far.len();
                ladder.unlink(&mut slab, loc, i, 1);
                refilled |= ladder.far.len() < far_before && matches!(loc, Loc::Near(_));
                slab.release(i);
            }
            spilled |= !ladder.far.is_empty();
            assert!(ladder.near.len() <= NEAR_MAX);
            if !ladder.far.is_empty() {
                assert!(ladder.near.len() >= NEAR_MIN);
                assert!(ladder.far.keys().next_back().unwrap() < &ladder.near[0].key);
            }
            let got: Vec<(i64, u64, u32)> = ladder
                .iter_best_first()
                .map(|l| (l.key, l.qty, l.count))
                .collect();
            let want: Vec<(i64, u64, u32)> = model
                .iter()
                .rev()
                .map(|(&k, v)| (k, v.len() as u64, v.len() as u32))
                .collect();
            assert_eq!(got, want, "step {step}");
        }
        assert!(spilled, "the far tier was used");
        assert!(refilled, "the near tier was refilled");
        // The serialized form is one sorted list, whatever the split.
        let json = serde_json::to_string(&ladder).unwrap();
        let back: Ladder = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}

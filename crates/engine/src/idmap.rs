//! [`IdMap`]: an open-addressing hash map from order id (`u64`) to a `u32`, built so that a
//! lookup, insert or removal touches **one cache line** in the common case (a general-purpose
//! map such as hashbrown reads a control-byte group and then the entry: two lines, two cache
//! misses once the map outgrows the caches).
//!
//! Layout: a `Vec` of 64-byte buckets, each holding [`WAYS`] entries (keys and values in two small
//! arrays) plus an **overflow count**: how many entries whose home bucket is this one or an
//! earlier one were stored further on because this bucket was full. A key lives in its home
//! bucket (chosen by a multiplicative hash, mapped onto any bucket count by a 128-bit multiply) or,
//! when that is full, in the next buckets in order (linear probing by bucket). A search stops at
//! the first bucket whose overflow count is zero, so absent keys are cheap too, and removal
//! just vacates the entry and decrements the counts along its probe path: no tombstones, no
//! rehashing to clean up, whatever the churn.
//!
//! Memory: 64 bytes per 5 entries (12.8 bytes per entry) at a load factor of at most 5/8, so
//! 20.5–31 bytes per stored id (the table grows by 1.5× and never shrinks, like `HashMap`).
//! Iteration order is the table's and must not be used for anything observable.

/// Entries per bucket (5 × 8-byte keys + 5 × 4-byte values + a 4-byte count = 64 bytes).
pub(crate) const WAYS: usize = 5;

/// Value marking an unused entry; never stored.
pub(crate) const VACANT: u32 = u32::MAX - 1;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; WAYS],
    vals: [u32; WAYS],
    /// Entries that probed past this bucket (their home is this bucket or an earlier one).
    overflow: u32,
}

const EMPTY_BUCKET: Bucket = Bucket {
    keys: [0; WAYS],
    vals: [VACANT; WAYS],
    overflow: 0,
};

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// Fewest buckets once anything is stored.
const MIN_BUCKETS: usize = 4;

/// Open-addressing `u64 → u32` map; see the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdMap {
    buckets: Vec<Bucket>,
    len: usize,
}

#[inline]
fn hash(key: u64) -> u64 {
    // Fold the high half in so that keys differing only in high bits spread too, then one
    // multiplication by an odd constant (the 128-bit range reduction uses the product's high
    // bits, which depend on every bit of the folded key).
    (key ^ (key >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl IdMap {
    /// Number of entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries the table holds before it grows.
    fn capacity(&self) -> usize {
        self.buckets.len() * WAYS * 5 / 8
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        ((hash(key) as u128 * self.buckets.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// (bucket, way) of `key`.
    #[inline]
    fn find(&self, key: u64) -> Option<(usize, usize)> {
        if self.buckets.is_empty() {
            return None;
        }
        let home = self.home(key);
        let mut b = home;
        loop {
            let bucket = &self.buckets[b];
            for w in 0..WAYS {
                if bucket.keys[w] == key && bucket.vals[w] != VACANT {
                    return Some((b, w));
                }
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = self.next(b);
            if b == home {
                // Every bucket is passed by some probe path (possible, if unlikely, after
                // removals): the whole table has been searched.
                return None;
            }
        }
    }

    /// The value stored for `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        self.find(key).map(|(b, w)| self.buckets[b].vals[w])
    }

    /// Stores `val` for `key` (replacing any previous value). `val` must not be [`VACANT`].
    #[inline]
    pub fn insert(&mut self, key: u64, val: u32) {
        debug_assert!(val != VACANT);
        if let Some((b, w)) = self.find(key) {
            self.buckets[b].vals[w] = val;
            return;
        }
        if self.len >= self.capacity() {
            self.grow();
        }
        self.place(key, val);
        self.len += 1;
    }

    /// Puts a key known to be absent into the first free entry on its probe path.
    #[inline]
    fn place(&mut self, key: u64, val: u32) {
        let mut b = self.home(key);
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(w) = bucket.vals.iter().position(|&v| v == VACANT) {
                bucket.keys[w] = key;
                bucket.vals[w] = val;
                return;
            }
            bucket.overflow += 1;
            b = self.next(b);
        }
    }

    /// Removes `key`, returning its value.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        let (b, w) = self.find(key)?;
        let val = std::mem::replace(&mut self.buckets[b].vals[w], VACANT);
        self.len -= 1;
        // Undo the overflow counts the key left along its probe path.
        let mut p = self.home(key);
        while p != b {
            self.buckets[p].overflow -= 1;
            p = self.next(p);
        }
        Some(val)
    }

    #[cold]
    fn grow(&mut self) {
        let n = (self.buckets.len() * 3 / 2).max(MIN_BUCKETS);
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY_BUCKET; n]);
        for bucket in &old {
            for w in 0..WAYS {
                if bucket.vals[w] != VACANT {
                    self.place(bucket.keys[w], bucket.vals[w]);
                }
            }
        }
    }

    /// All entries, in table order (not meaningful: sort before using it for anything visible).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buckets.iter().flat_map(|bucket| {
            (0..WAYS)
                .filter(|&w| bucket.vals[w] != VACANT)
                .map(|w| (bucket.keys[w], bucket.vals[w]))
        })
    }

    /// Heap bytes reserved.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every bucket's overflow count equals the number of entries whose probe path passes it.
    fn check_invariants(map: &IdMap) {
        let n = map.buckets.len();
        let mut expected = vec![0u32; n];
        let mut len = 0;
        for (b, bucket) in map.buckets.iter().enumerate() {
            for w in 0..WAYS {
                if bucket.vals[w] == VACANT {
                    continue;
                }
                len += 1;
                let mut p = map.home(bucket.keys[w]);
                while p != b {
                    expected[p] += 1;
                    p = (p + 1) % n;
                }
            }
        }
        assert_eq!(len, map.len);
        let got: Vec<u32> = map.buckets.iter().map(|b| b.overflow).collect();
        assert_eq!(got, expected);
        assert!(map.len <= map.capacity() || map.buckets.is_empty());
    }

    #[test]
    fn empty_map() {
        let mut map = IdMap::default();
        assert_eq!(map.get(0), None);
        assert_eq!(map.get(u64::MAX), None);
        assert_eq!(map.remove(7), None);
        assert!(map.is_empty());
        assert_eq!(map.iter().count(), 0);
        assert_eq!(map.heap_bytes(), 0);
    }

    #[test]
    fn insert_overwrite_remove_and_extreme_keys() {
        let mut map = IdMap::default();
        // Key 0 is also the filler of vacant entries: it must still be found only when stored.
        for key in [0u64, u64::MAX, 1, 1 << 63, 1 << 32] {
            assert_eq!(map.get(key), None);
            map.insert(key, 11);
            assert_eq!(map.get(key), Some(11));
        }
        map.insert(0, u32::MAX); // the index's FINISHED marker is a valid value
        assert_eq!(map.get(0), Some(u32::MAX));
        assert_eq!(map.len(), 5);
        assert_eq!(map.remove(0), Some(u32::MAX));
        assert_eq!(map.get(0), None);
        assert_eq!(map.remove(0), None);
        assert_eq!(map.len(), 4);
        check_invariants(&map);
    }

    /// Keys that all hash to one bucket overflow into the following buckets; removing them in
    /// any order keeps the rest findable and the counts exact.
    #[test]
    fn collisions_overflow_and_removal() {
        let mut map = IdMap::default();
        map.insert(1, 1);
        map.grow(); // a few buckets, no more growth below
        map.grow();
        map.grow();
        let n = map.buckets.len();
        let target = map.home(12_345);
        let colliding: Vec<u64> = (0..u64::MAX)
            .filter(|&k| k != 1 && map.home(k) == target)
            .take(3 * WAYS + 2)
            .collect();
        assert!(colliding.len() < map.capacity() - 1);
        for (v, &k) in colliding.iter().enumerate() {
            map.insert(k, v as u32);
        }
        assert_eq!(map.buckets.len(), n, "no growth");
        assert!(map.buckets[target].overflow > WAYS as u32);
        check_invariants(&map);
        // A key hashing to the same bucket but absent is not found (walks the overflow).
        let absent = (colliding.last().unwrap() + 1..)
            .find(|&k| map.home(k) == target)
            .unwrap();
        assert_eq!(map.get(absent), None);
        for (v, &k) in colliding.iter().enumerate().step_by(2) {
            assert_eq!(map.remove(k), Some(v as u32));
            check_invariants(&map);
        }
        for (v, &k) in colliding.iter().enumerate() {
            let want = (v % 2 == 1).then_some(v as u32);
            assert_eq!(map.get(k), want);
        }
        // Freed entries in the home bucket are reused.
        map.insert(absent, 99);
        assert_eq!(map.get(absent), Some(99));
        check_invariants(&map);
        for &k in colliding.iter().skip(1).step_by(2) {
            map.remove(k);
        }
        map.remove(absent);
        map.remove(1);
        assert!(map.is_empty());
        assert!(map.buckets.iter().all(|b| b.overflow == 0));
    }

    /// Random inserts, overwrites and removals (dense, clustered and random keys), checked
    /// against `HashMap` throughout, with growth from empty.
    #[test]
    fn matches_a_hash_map_under_churn() {
        let mut map = IdMap::default();
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut keys: Vec<u64> = Vec::new();
        let mut peak = 0;
        for step in 0..60_000u32 {
            let r = rnd();
            let grow_phase = (step / 10_000) % 2 == 0;
            if keys.is_empty() || r % 10 < if grow_phase { 7 } else { 3 } {
                let key = match r % 3 {
                    0 => step as u64,                 // dense
                    1 => (r >> 8) % 4096 * (1 << 40), // high bits only
                    _ => rnd(),                       // random
                };
                map.insert(key, step);
                if model.insert(key, step).is_none() {
                    keys.push(key);
                }
            } else {
                let key = keys.swap_remove((r >> 4) as usize % keys.len());
                assert_eq!(map.remove(key), model.remove(&key));
            }
            if step % 997 == 0 {
                check_invariants(&map);
                let probe = rnd();
                assert_eq!(map.get(probe), model.get(&probe).copied());
            }
            assert_eq!(map.len(), model.len());
            peak = peak.max(model.len());
        }
        check_invariants(&map);
        for (&k, &v) in &model {
            assert_eq!(map.get(k), Some(v));
        }
        let mut all: Vec<(u64, u32)> = map.iter().collect();
        all.sort_unstable();
        let mut want: Vec<(u64, u32)> = model.into_iter().collect();
        want.sort_unstable();
        assert_eq!(all, want);
        // Memory follows the peak number of entries (growth by 1.5× at a load of 5/8).
        assert!(
            map.capacity() <= peak * 3 / 2 + MIN_BUCKETS * WAYS,
            "{}",
            map.capacity()
        );
        assert!(map.heap_bytes() <= (peak * 3 / 2 * 8 / 5 / WAYS + MIN_BUCKETS + 1) * 64);
    }
}

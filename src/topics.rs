//! Topic names, message keys, header names and the partitioner: everything two jobs must agree
//! on to talk through Kafka.
//!
//! | topic | key | value | written by |
//! |---|---|---|---|
//! | `orders` | instrument | [`crate::schema::OrderMessage`] (JSON) | order generator, API |
//! | `trades` | instrument | [`crate::schema::TradeMessage`] | match maker |
//! | `order-events` | trader | [`crate::schema::OrderEventMessage`] | match maker |
//! | `book` | instrument | [`crate::schema::BookMessage`] (top-5, conflated) | match maker |
//! | `rejects` | instrument (if known) | [`crate::schema::RejectMessage`] | every job |
//! | `analytics` | instrument / trader | analytics (issue 4) | SMA and profit calculators |

/// Names of the topics, with an optional common prefix (e.g. `replay.` for a side-by-side
/// replay into separate topics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    pub orders: String,
    pub trades: String,
    pub order_events: String,
    pub book: String,
    pub rejects: String,
    pub analytics: String,
}

impl Topics {
    /// The standard names, each preceded by `prefix` (usually empty).
    pub fn with_prefix(prefix: &str) -> Self {
        Topics {
            orders: format!("{prefix}orders"),
            trades: format!("{prefix}trades"),
            order_events: format!("{prefix}order-events"),
            book: format!("{prefix}book"),
            rejects: format!("{prefix}rejects"),
            analytics: format!("{prefix}analytics"),
        }
    }

    /// All topics, in a fixed order.
    pub fn all(&self) -> [&str; 6] {
        [
            &self.orders,
            &self.trades,
            &self.order_events,
            &self.book,
            &self.rejects,
            &self.analytics,
        ]
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics::with_prefix("")
    }
}

/// Header: partition of the input message an output was derived from.
pub const HDR_SRC_PARTITION: &str = "kx-src-partition";
/// Header: offset of the input message an output was derived from.
pub const HDR_SRC_OFFSET: &str = "kx-src-offset";
/// Header: output sequence number, per job, input partition and output topic.
pub const HDR_SEQ: &str = "kx-seq";
/// Header: the job that produced an output (several jobs share `analytics` and `rejects`).
pub const HDR_JOB: &str = "kx-job";

/// Kafka's default (Java client) partitioner: murmur2 of the key, positive, modulo the count.
/// librdkafka calls this `murmur2_random`; using it everywhere keeps instrument → partition the
/// same for every client.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// MurmurHash2 as used by Kafka (seed 0x9747b28c).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_reference_values() {
        // Values from Kafka's own partitioner tests (Utils.murmur2).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        for n in 1..16 {
            for key in ["TCS", "INFY", "RELIANCE", ""] {
                let p = partition_for(key.as_bytes(), n);
                assert!((0..n).contains(&p));
                assert_eq!(p, partition_for(key.as_bytes(), n));
            }
        }
        let t = Topics::with_prefix("replay.");
        assert_eq!(t.order_events, "replay.order-events");
    }
}

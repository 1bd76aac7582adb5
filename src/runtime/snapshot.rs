//! State snapshots on a compacted changelog topic, so recovery replays only the input after the
//! latest snapshot instead of all history.
//!
//! Each stateful job has one changelog topic (`<job>-snapshots`, beside its outputs: under the
//! output prefix; its partition `p % n` holds the snapshots of input partition `p`). Snapshots
//! belong to a consumer group — a fresh group starts from fresh state and replays the input from
//! the start, as a backfill should. A snapshot is:
//! - the job's state bytes ([`super::job::Job::save`]), lz4-compressed and cut into chunks of at
//!   most [`CHUNK_BYTES`] (so any broker's default 1 MB message limit holds), keyed
//!   `"<group>:<p>/<id>/<i>"`;
//! - then a [`Manifest`] keyed `"<group>:<p>"`: the input offset the state covers (the next one
//!   to process), the output sequence numbers and output positions at that point, a fingerprint
//!   of what must not change under the state, and the chunks' count, size and checksum.
//!
//! Compaction keeps the newest manifest per partition; each new snapshot deletes (tombstones) the
//! chunks of the one it replaces. Under transactions the chunks and the manifest commit together
//! with the outputs and input offsets of the same batch; without, the producer is flushed before
//! a snapshot is taken, so everything it counts as published is on the broker.

use super::kafka::{read_range, watermarks, Reader};
use anyhow::{anyhow, bail, Context as _};
use rdkafka::message::Message;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Version of the snapshot envelope (manifest and chunking).
pub const FORMAT: u32 = 1;
/// Largest chunk payload.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// Everything about a snapshot except the state bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub job: String,
    /// Consumer group and input partition whose state it is.
    pub group: String,
    pub partition: i32,
    /// Unique per snapshot (its chunks carry it in their keys).
    pub id: u64,
    /// The next input offset to process: the state reflects every input below it.
    pub input_offset: i64,
    /// Event time of the last input processed.
    pub last_ts: i64,
    pub fingerprint: u64,
    /// What the fingerprint was computed from, for the refusal message.
    pub fingerprint_of: String,
    /// Output topics (sequence space), and the next sequence number of each.
    pub outputs: Vec<String>,
    pub next_seq: Vec<u64>,
    /// Per output topic and partition: an offset at or below every output published after this
    /// snapshot (where a scan for the last published outputs may start).
    pub positions: Vec<Vec<i64>>,
    pub chunks: u32,
    /// Compressed size and FNV-1a checksum of the state bytes.
    pub bytes: u64,
    pub checksum: u64,
    pub created_ms: i64,
}

/// Serializes a job's state with the snapshot codec (bincode).
pub fn to_bytes<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    bincode::serialize(value).context("serializing state")
}

/// Deserializes what [`to_bytes`] wrote.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    bincode::deserialize(bytes).context("deserializing state")
}

/// FNV-1a, 64 bits: a stable hash (the same in every build and process).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fingerprint of a job's state: its name, the snapshot format and what the job says its
/// state depends on.
pub fn fingerprint(job: &str, depends_on: &str) -> u64 {
    fnv1a(format!("{FORMAT}\n{job}\n{depends_on}").as_bytes())
}

/// The changelog topic of `job` under `prefix` (topic prefix + output prefix).
pub fn changelog_topic(prefix: &str, job: &str) -> String {
    format!("{prefix}{job}-snapshots")
}

/// Key of the manifest of group `group`'s snapshots of input partition `partition`.
pub fn manifest_key(group: &str, partition: i32) -> String {
    format!("{group}:{partition}")
}

/// Key of chunk `i` of snapshot `id`.
pub fn chunk_key(group: &str, partition: i32, id: u64, i: u32) -> String {
    format!("{group}:{partition}/{id}/{i}")
}

/// A snapshot ready to be written: its manifest and compressed chunks.
pub struct Prepared {
    pub manifest: Manifest,
    pub compressed: Vec<u8>,
}

impl Prepared {
    /// Compresses `state` and fills in the manifest's chunk fields.
    pub fn new(mut manifest: Manifest, state: &[u8]) -> Self {
        let compressed = lz4_flex::compress_prepend_size(state);
        manifest.format = FORMAT;
        manifest.chunks = compressed.chunks(CHUNK_BYTES).len().max(1) as u32;
        manifest.bytes = compressed.len() as u64;
        manifest.checksum = fnv1a(&compressed);
        Prepared {
            manifest,
            compressed,
        }
    }

    /// `(key, payload)` of every chunk, then of the manifest.
    pub fn records(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let m = &self.manifest;
        let mut out: Vec<(String, Vec<u8>)> = if self.compressed.is_empty() {
            vec![(chunk_key(&m.group, m.partition, m.id, 0), Vec::new())]
        } else {
            self.compressed
                .chunks(CHUNK_BYTES)
                .enumerate()
                .map(|(i, c)| (chunk_key(&m.group, m.partition, m.id, i as u32), c.to_vec()))
                .collect()
        };
        out.push((manifest_key(&m.group, m.partition), to_bytes(m)?));
        Ok(out)
    }
}

/// A snapshot read back.
#[derive(Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    /// The decompressed state bytes.
    pub state: Vec<u8>,
}

/// Reads group `group`'s newest snapshot of input partition `partition` from partition `q` of
/// the changelog `topic`: the last manifest with its key, then its chunks (all before it).
/// `Ok(None)` when there is none.
pub fn load_latest(
    reader: &Reader,
    topic: &str,
    q: i32,
    group: &str,
    partition: i32,
) -> anyhow::Result<Option<Loaded>> {
    let (low, high) = watermarks(reader, topic, q)?;
    let key = manifest_key(group, partition);
    // Backwards in growing windows: the manifest is usually within the last few records.
    let mut manifest: Option<(i64, Manifest)> = None;
    let mut end = high;
    let mut window = 16;
    while end > low && manifest.is_none() {
        let start = (end - window).max(low);
        read_range(reader, topic, q, start, end, |m| {
            if m.key() == Some(key.as_bytes()) {
                if let Some(payload) = m.payload() {
                    match from_bytes::<Manifest>(payload) {
                        Ok(man) => manifest = Some((m.offset(), man)),
                        Err(e) => tracing::warn!(
                            topic,
                            q,
                            offset = m.offset(),
                            "unreadable snapshot manifest: {e:#}"
                        ),
                    }
                }
            }
        })?;
        end = start;
        window *= 4;
    }
    let Some((at, manifest)) = manifest else {
        return Ok(None);
    };
    // Its chunks, backwards from the manifest.
    let prefix = format!("{key}/{}/", manifest.id);
    let mut chunks: Vec<Option<Vec<u8>>> = vec![None; manifest.chunks as usize];
    let mut missing = chunks.len();
    let mut end = at;
    let mut window = (manifest.chunks as i64).max(1) * 2;
    while end > low && missing > 0 {
        let start = (end - window).max(low);
        read_range(reader, topic, q, start, end, |m| {
            let Some(k) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            let Some(i) = k
                .strip_prefix(&prefix)
                .and_then(|i| i.parse::<usize>().ok())
            else {
                return;
            };
            if let Some(slot) = chunks.get_mut(i) {
                if slot.is_none() {
                    missing -= 1;
                }
                *slot = Some(m.payload().unwrap_or(&[]).to_vec());
            }
        })?;
        end = start;
        window *= 4;
    }
    if missing > 0 {
        bail!(
            "snapshot {} of partition {partition} on {topic}/{q} (offset {at}) lacks {missing} of its {} chunks",
            manifest.id,
            manifest.chunks
        );
    }
    let compressed: Vec<u8> = chunks.into_iter().flatten().flatten().collect();
    if compressed.len() as u64 != manifest.bytes || fnv1a(&compressed) != manifest.checksum {
        bail!(
            "snapshot {} of partition {partition} on {topic}/{q} is corrupt (size or checksum)",
            manifest.id
        );
    }
    let state = lz4_flex::decompress_size_prepended(&compressed)
        .map_err(|e| anyhow!("decompressing snapshot {}: {e}", manifest.id))?;
    Ok(Some(Loaded { manifest, state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(partition: i32, id: u64) -> Manifest {
        Manifest {
            format: 0,
            job: "j".into(),
            group: "g".into(),
            partition,
            id,
            input_offset: 42,
            last_ts: 7,
            fingerprint: fingerprint("j", "x"),
            fingerprint_of: "x".into(),
            outputs: vec!["trades".into()],
            next_seq: vec![5],
            positions: vec![vec![3, 4]],
            chunks: 0,
            bytes: 0,
            checksum: 0,
            created_ms: 1,
        }
    }

    #[test]
    fn large_states_are_chunked_below_the_message_limit_and_named_by_snapshot() {
        // Incompressible bytes, 2.5 chunks' worth.
        let state: Vec<u8> = (0..(CHUNK_BYTES * 5 / 2) as u64)
            .map(|i| (fnv1a(&i.to_le_bytes()) >> 7) as u8)
            .collect();
        let p = Prepared::new(manifest(3, 99), &state);
        let records = p.records().unwrap();
        assert_eq!(p.manifest.chunks as usize + 1, records.len());
        assert!(p.manifest.chunks >= 3);
        assert!(records.iter().all(|(_, v)| v.len() <= CHUNK_BYTES));
        assert_eq!(records[0].0, "g:3/99/0");
        assert_eq!(records.last().unwrap().0, "g:3");
        let back: Manifest = from_bytes(&records.last().unwrap().1).unwrap();
        assert_eq!(back, p.manifest);
        assert_eq!(back.format, FORMAT);
        let joined: Vec<u8> = records[..records.len() - 1]
            .iter()
            .flat_map(|(_, v)| v.clone())
            .collect();
        assert_eq!(fnv1a(&joined), back.checksum);
        assert_eq!(lz4_flex::decompress_size_prepended(&joined).unwrap(), state);
    }

    #[test]
    fn fingerprints_are_stable_and_sensitive() {
        assert_eq!(fingerprint("a", "b"), fingerprint("a", "b"));
        assert_ne!(fingerprint("a", "b"), fingerprint("a", "c"));
        assert_ne!(fingerprint("a", "b"), fingerprint("b", "b"));
        // FNV-1a's published test vector.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

//! The gateway's journal: batches of [`Record`]s appended to one file, each framed as
//! `length (u32 LE) ‖ CRC-32 (u32 LE) ‖ bincode`. A batch is written with one `write` and, with
//! `sync`, made durable (`fdatasync`) before anything it accounts for leaves the process; a batch
//! torn by a crash fails its CRC and is cut off on the next open (it was never acted on).
//!
//! Opening replays the journal into a [`State`] and rewrites it as one snapshot record
//! (compaction), so a restart reads the live state, not the history; a journal that grows past
//! `compact_bytes` while running is compacted the same way.

use super::state::{Record, State};
use anyhow::Context as _;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

const FILE: &str = "journal";
/// Largest batch accepted when reading (a corrupt length is not an allocation).
const MAX_BATCH: usize = 1 << 30;

/// The open journal.
pub struct Store {
    path: PathBuf,
    file: File,
    len: u64,
    sync: bool,
    compact_bytes: u64,
    resend_window: usize,
}

/// What opening found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opened {
    pub batches: usize,
    pub records: usize,
    /// Bytes of a torn last batch cut off.
    pub truncated: u64,
}

fn frame(records: &[Record], out: &mut Vec<u8>) -> anyhow::Result<()> {
    let body = bincode::serialize(records).context("encoding journal records")?;
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Replays `bytes`: the state, the batches read, and where the valid part ends.
fn replay(bytes: &[u8], resend_window: usize) -> (State, usize, usize, usize) {
    let (mut state, mut at, mut batches, mut records) = (State::default(), 0usize, 0, 0);
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        if len > MAX_BATCH || bytes.len() - at - 8 < len {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        let Ok(batch) = bincode::deserialize::<Vec<Record>>(body) else {
            break;
        };
        for r in &batch {
            state.apply(r, resend_window);
        }
        records += batch.len();
        batches += 1;
        at += 8 + len;
    }
    (state, at, batches, records)
}

impl Store {
    /// Opens (or creates) the journal in `dir`, replays it and compacts it.
    pub fn open(
        dir: &Path,
        sync: bool,
        compact_bytes: u64,
        resend_window: usize,
    ) -> anyhow::Result<(Store, State, Opened)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(FILE);
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .with_context(|| format!("reading {}", path.display()))?;
        }
        let (state, valid, batches, records) = replay(&bytes, resend_window);
        let opened = Opened {
            batches,
            records,
            truncated: (bytes.len() - valid) as u64,
        };
        if opened.truncated > 0 {
            tracing::warn!(
                bytes = opened.truncated,
                "the journal's last batch was torn (a crash while writing it); cut off"
            );
        }
        let mut store = Store {
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            len: 0,
            sync,
            compact_bytes,
            resend_window,
        };
        store.compact(&state)?;
        Ok((store, state, opened))
    }

    /// Rewrites the journal as one snapshot of `state` (write, sync, rename).
    pub fn compact(&mut self, state: &State) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("new");
        let mut buf = Vec::new();
        frame(&[Record::Snapshot(Box::new(state.clone()))], &mut buf)?;
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = buf.len() as u64;
        Ok(())
    }

    /// Appends one batch (durably with `sync`); compacts when the journal has grown past its
    /// bound (`state` is the state after the batch).
    pub fn append(&mut self, records: &[Record], state: &State) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(256);
        frame(records, &mut buf)?;
        self.file
            .write_all(&buf)
            .context("appending to the journal")?;
        if self.sync {
            self.file.sync_data().context("syncing the journal")?;
        }
        self.len += buf.len() as u64;
        if self.len > self.compact_bytes {
            self.compact(state)?;
        }
        Ok(())
    }

    /// Bytes in the journal now.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn resend_window(&self) -> usize {
        self.resend_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(session: &str, next: u64) -> Record {
        Record::InSeq {
            session: session.into(),
            next,
        }
    }

    #[test]
    fn reopening_rebuilds_the_state_and_cuts_a_torn_batch() {
        let dir = std::env::temp_dir().join(format!("kappa-fix-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut store, mut state, opened) = Store::open(&dir, false, 1 << 20, 10).unwrap();
        assert_eq!(
            opened,
            Opened {
                batches: 0,
                records: 0,
                truncated: 0
            }
        );
        for n in 2..=5 {
            let r = [rec("T1", n), rec("T2", n * 10)];
            for x in &r {
                state.apply(x, 10);
            }
            store.append(&r, &state).unwrap();
        }
        drop(store);
        // A torn batch at the end: half of a frame.
        let mut half = Vec::new();
        frame(&[rec("T1", 99)], &mut half).unwrap();
        let path = dir.join(FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&half[..half.len() / 2]).unwrap();
        drop(f);
        let (store, again, opened) = Store::open(&dir, false, 1 << 20, 10).unwrap();
        assert_eq!(again, state);
        assert_eq!(again.sessions["T1"].next_in, 5);
        assert_eq!(again.sessions["T2"].next_in, 50);
        assert_eq!(opened.batches, 5, "the snapshot and four batches");
        assert!(opened.truncated > 0);
        // Compacted: one snapshot batch.
        let (_, _, opened) = Store::open(&dir, false, 1 << 20, 10).unwrap();
        assert_eq!(
            (opened.batches, opened.records, opened.truncated),
            (1, 1, 0)
        );
        drop(store);
        // A flipped byte inside the last batch stops the replay there.
        let mut s2 = Store::open(&dir, false, 1 << 20, 10).unwrap();
        s2.1.apply(&rec("T1", 7), 10);
        s2.0.append(&[rec("T1", 7)], &s2.1).unwrap();
        drop(s2);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, st, opened) = Store::open(&dir, false, 1 << 20, 10).unwrap();
        assert_eq!(
            st.sessions["T1"].next_in, 5,
            "the corrupt batch was not applied"
        );
        assert!(opened.truncated > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn growing_past_the_bound_compacts() {
        let dir = std::env::temp_dir().join(format!("kappa-fix-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut store, mut state, _) = Store::open(&dir, false, 4096, 10).unwrap();
        for n in 0..2_000 {
            let r = [rec("T1", n)];
            state.apply(&r[0], 10);
            store.append(&r, &state).unwrap();
            assert!(store.len() <= 4096 + 64, "{}", store.len());
        }
        drop(store);
        let (_, again, _) = Store::open(&dir, false, 4096, 10).unwrap();
        assert_eq!(again.sessions["T1"].next_in, 1_999);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

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
/// Largest batch (the frame's length is a u32).
const MAX_BATCH: usize = u32::MAX as usize;

/// The open journal.
pub struct Store {
    /// Held (locked) while the store is open.
    _lock: File,
    path: PathBuf,
    file: File,
    len: u64,
    /// Bytes of the snapshot the journal starts with (growth past it is what compaction bounds).
    snapshot_len: u64,
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
    anyhow::ensure!(
        body.len() <= MAX_BATCH,
        "a journal batch of {} bytes",
        body.len()
    );
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// The batch `[Record::Snapshot(state)]` framed, serialized from a reference: compaction does not
/// copy the state (bincode writes a one-element sequence, the variant's index and the state —
/// the same bytes, tested).
fn frame_snapshot(state: &State, out: &mut Vec<u8>) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    enum RecordRef<'a> {
        Snapshot(&'a State),
    }
    let body =
        bincode::serialize(&[RecordRef::Snapshot(state)][..]).context("encoding a snapshot")?;
    anyhow::ensure!(
        body.len() <= MAX_BATCH,
        "a snapshot of {} bytes",
        body.len()
    );
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Replays `bytes`: the state, where the valid part ends, the batches and records read. Only
/// the last batch may be bad — cut short, or failing its CRC with nothing after it (a crash
/// while writing it: it was never acted on). A bad batch with data after it is damage, not a
/// crash: an error, so the gateway refuses to start rather than resume from an older state
/// (sequence numbers going back, open orders forgotten).
fn replay(bytes: &[u8], resend_window: usize) -> anyhow::Result<(State, usize, usize, usize)> {
    let (mut state, mut at, mut batches, mut records) = (State::default(), 0usize, 0, 0);
    while at < bytes.len() {
        if bytes.len() - at < 8 {
            break; // a torn header
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        if bytes.len() - at - 8 < len {
            break; // a torn body
        }
        let end = at + 8 + len;
        let body = &bytes[at + 8..end];
        let bad = if crc32fast::hash(body) != crc {
            Some("fails its CRC".to_string())
        } else {
            match bincode::deserialize::<Vec<Record>>(body) {
                Ok(batch) => {
                    records += batch.len();
                    for r in batch {
                        match r {
                            // Moved, not copied: the state is the largest thing held at start.
                            Record::Snapshot(s) => state = *s,
                            r => state.apply(&r, resend_window),
                        }
                    }
                    None
                }
                Err(e) => Some(format!("does not decode ({e})")),
            }
        };
        if let Some(why) = bad {
            if end == bytes.len() {
                break; // the last batch, torn
            }
            anyhow::bail!(
                "the journal is damaged: the batch at byte {at} {why} and {} bytes follow it; \
                 refusing to start from an older state (restore the volume, or move the journal \
                 away to start the sessions afresh)",
                bytes.len() - end
            );
        }
        batches += 1;
        at = end;
    }
    Ok((state, at, batches, records))
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
        // One writer: a second gateway on the same journal (a replacement pod started while the
        // old one still runs) refuses to start instead of interleaving batches.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another fix-gateway holds the journal in {} (its lock file is locked)",
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).context("locking the journal");
            }
        }
        let path = dir.join(FILE);
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .with_context(|| format!("reading {}", path.display()))?;
        }
        let (state, valid, batches, records) = replay(&bytes, resend_window)
            .with_context(|| format!("replaying {}", path.display()))?;
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
            _lock: lock,
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            len: 0,
            snapshot_len: 0,
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
        frame_snapshot(state, &mut buf)?;
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = buf.len() as u64;
        self.snapshot_len = self.len;
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
        if self.len - self.snapshot_len > self.compact_bytes {
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
        drop(store);
        // Compacted: one snapshot batch.
        let (store, _, opened) = Store::open(&dir, false, 1 << 20, 10).unwrap();
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
        let (mut store, st, opened) = Store::open(&dir, false, 1 << 20, 10).unwrap();
        assert_eq!(
            st.sessions["T1"].next_in, 5,
            "the torn last batch was not applied"
        );
        assert!(opened.truncated > 0);
        // Damage before the end (a batch follows): refused, and the file left as it was.
        let mut st = st;
        for n in [6, 7] {
            st.apply(&rec("T1", n), 10);
            store.append(&[rec("T1", n)], &st).unwrap();
        }
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        let mut last = Vec::new();
        frame(&[rec("T1", 7)], &mut last).unwrap();
        let middle = bytes.len() - last.len() - 10; // inside the batch before the last

        bytes[middle] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = format!(
            "{:#}",
            Store::open(&dir, false, 1 << 20, 10)
                .err()
                .expect("refused")
        );
        assert!(err.contains("damaged"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing overwritten");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_snapshot_from_a_reference_is_the_snapshot_record() {
        let mut state = State::default();
        state.apply(&rec("T1", 42), 10);
        state.cursor.insert(3, 99);
        let (mut by_ref, mut owned) = (Vec::new(), Vec::new());
        frame_snapshot(&state, &mut by_ref).unwrap();
        frame(&[Record::Snapshot(Box::new(state))], &mut owned).unwrap();
        assert_eq!(by_ref, owned);
    }

    #[test]
    fn a_second_gateway_on_the_same_journal_refuses_to_start() {
        let dir = std::env::temp_dir().join(format!("kappa-fix-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = Store::open(&dir, false, 1 << 20, 10).unwrap();
        let second = Store::open(&dir, false, 1 << 20, 10);
        let err = format!("{:#}", second.err().expect("refused"));
        assert!(err.contains("another fix-gateway"), "{err}");
        drop(first);
        assert!(
            Store::open(&dir, false, 1 << 20, 10).is_ok(),
            "free again once closed"
        );
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
            assert!(
                store.len() <= store.snapshot_len + 4096 + 64,
                "{}",
                store.len()
            );
        }
        drop(store);
        let (_, again, _) = Store::open(&dir, false, 4096, 10).unwrap();
        assert_eq!(again.sessions["T1"].next_in, 1_999);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

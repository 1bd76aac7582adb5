//! Trader credentials for order entry: API keys, stored hashed.
//!
//! A key is `kx_` followed by 64 hex digits (256 random bits from the OS CSPRNG), shown once when
//! it is made (`kappa keys add`). The server keeps only `SHA-256(key)`, in a text file (a
//! Kubernetes Secret mounted into market-view), one credential per line:
//!
//! ```text
//! # trader   hash                                                                     expiry (optional)
//! T0001      sha256:3b5d5c3712955042212316173ccf37be800ca5efc9d7d4c0d8a2d5ed1a3f6b9e  expires=2027-01-01T00:00:00Z
//! ```
//!
//! Why keys and not JWTs: the exchange has no token issuer to trust, and a key revoked by deleting
//! its line is gone at the next reload, where a JWT lives until it expires. Why a plain SHA-256 and
//! not a password hash: a key has 256 bits of entropy, so nothing is gained by slowing down a
//! guess, and every request can be checked in a microsecond. The hash of a presented key is looked
//! up in a map; the map's timing reveals nothing about any stored key's preimage.
//!
//! The trader a request acts for is the credential's, never the body's.

use chrono::{DateTime, Utc};
use rand::Rng as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

/// Prefix of every key (so a leaked key is recognisable by secret scanners).
pub const KEY_PREFIX: &str = "kx_";

/// One trader's credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub trader: String,
    /// After this instant the key is refused (`expired_credential`).
    pub expires: Option<DateTime<Utc>>,
}

/// Why a request is not authenticated (each is answered 401 with its own code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A key nobody holds (or a malformed header).
    Invalid,
    /// A known key past its expiry.
    Expired,
}

impl AuthError {
    /// The stable error code.
    pub fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "unauthenticated",
            AuthError::Invalid => "invalid_credential",
            AuthError::Expired => "expired_credential",
        }
    }

    /// What the client is told.
    pub fn detail(self) -> &'static str {
        match self {
            AuthError::Missing => {
                "order entry, orders and P&L need a trader's API key: Authorization: Bearer kx_…"
            }
            AuthError::Invalid => "this API key is not valid",
            AuthError::Expired => "this API key has expired; ask for a new one",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random key.
pub fn new_key() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{KEY_PREFIX}{}", hex(&bytes))
}

/// The key file line for `key` held by `trader`.
pub fn key_line(trader: &str, key: &str, expires: Option<DateTime<Utc>>) -> String {
    let mut line = format!("{trader} sha256:{}", hex(&digest(key)));
    if let Some(e) = expires {
        line.push_str(&format!(
            " expires={}",
            e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    line
}

/// Makes a key for `trader`; appends its line to `file` (created readable by its owner only)
/// when given. Returns the key and the line.
pub fn add_key(
    file: Option<&Path>,
    trader: &str,
    expires: Option<DateTime<Utc>>,
) -> anyhow::Result<(String, String)> {
    use anyhow::Context as _;
    use std::io::Write as _;
    check_trader(trader).map_err(anyhow::Error::msg)?;
    let key = new_key();
    let line = key_line(trader, &key, expires);
    if let Some(path) = file {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))?;
        // The whole file must still load (no duplicate, no bad line before this one).
        std::fs::read_to_string(path)
            .map_err(anyhow::Error::from)
            .and_then(|t| KeyStore::parse(&t))
            .with_context(|| format!("checking {}", path.display()))?;
    }
    Ok((key, line))
}

/// Checks a trader name as the order parser does (1–16 printable ASCII characters, no spaces).
pub fn check_trader(trader: &str) -> Result<(), String> {
    kappa_engine::FixedStr::new(trader)
        .map(|_| ())
        .map_err(|e| format!("trader {trader:?}: {e}"))
}

/// The credentials of a key file.
#[derive(Clone, Debug, Default)]
pub struct KeyStore {
    keys: HashMap<[u8; 32], Credential>,
}

impl KeyStore {
    /// Parses a key file; any bad line refuses the whole file, naming the line (never a key).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("line {}", n + 1);
            let mut words = line.split_whitespace();
            let (Some(trader), Some(hash)) = (words.next(), words.next()) else {
                anyhow::bail!("{}: expected `TRADER sha256:HEX [expires=RFC3339]`", at());
            };
            check_trader(trader).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
            let hash = hash
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64)
                .and_then(|h| {
                    let mut out = [0u8; 32];
                    for (i, byte) in out.iter_mut().enumerate() {
                        *byte = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
                    }
                    Some(out)
                })
                .ok_or_else(|| anyhow::anyhow!("{}: the hash must be sha256:<64 hex>", at()))?;
            let mut expires = None;
            for w in words {
                let Some(t) = w.strip_prefix("expires=") else {
                    anyhow::bail!("{}: unknown field {w:?}", at());
                };
                let t = DateTime::parse_from_rfc3339(t)
                    .map_err(|e| anyhow::anyhow!("{}: expires={t:?}: {e}", at()))?;
                expires = Some(t.with_timezone(&Utc));
            }
            let credential = Credential {
                trader: trader.to_string(),
                expires,
            };
            if keys.insert(hash, credential).is_some() {
                anyhow::bail!("{}: the same key is listed twice", at());
            }
        }
        Ok(KeyStore { keys })
    }

    /// A store holding one key (the demo's).
    pub fn single(trader: &str, key: &str) -> Self {
        let credential = Credential {
            trader: trader.to_string(),
            expires: None,
        };
        KeyStore {
            keys: HashMap::from([(digest(key), credential)]),
        }
    }

    /// Number of credentials.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The credential of `key` at `now`.
    pub fn check(&self, key: &str, now: DateTime<Utc>) -> Result<&Credential, AuthError> {
        let c = self.keys.get(&digest(key)).ok_or(AuthError::Invalid)?;
        match c.expires {
            Some(e) if e <= now => Err(AuthError::Expired),
            _ => Ok(c),
        }
    }
}

/// The key from an `Authorization` header value (`Bearer <key>`).
pub fn bearer(header: Option<&[u8]>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Invalid)?;
    let (scheme, key) = value.trim().split_once(' ').ok_or(AuthError::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Invalid);
    }
    Ok(key.trim())
}

/// The server's credentials: a key file re-read when it changes (a Secret update rotates or
/// revokes keys without a restart), or a fixed store.
pub struct Keys {
    path: Option<PathBuf>,
    inner: RwLock<Loaded>,
}

struct Loaded {
    store: KeyStore,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// How often the key file's modification time is looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

impl Keys {
    /// Loads `path` (refusing to start on a bad file).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let (store, modified) = Self::read(path)?;
        Ok(Keys {
            path: Some(path.to_path_buf()),
            inner: RwLock::new(Loaded {
                store,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// A fixed store (no file).
    pub fn fixed(store: KeyStore) -> Self {
        Keys {
            path: None,
            inner: RwLock::new(Loaded {
                store,
                modified: None,
                checked: Instant::now(),
            }),
        }
    }

    /// No credentials: order entry refused to everyone.
    pub fn none() -> Self {
        Self::fixed(KeyStore::default())
    }

    fn read(path: &Path) -> anyhow::Result<(KeyStore, Option<SystemTime>)> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the API key file {}", path.display()))?;
        let store = KeyStore::parse(&text)
            .with_context(|| format!("in the API key file {}", path.display()))?;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok((store, modified))
    }

    /// Re-reads the file if it changed (at most every 2 s); a bad new file keeps the old keys.
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        {
            let l = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if l.checked.elapsed() < RELOAD_CHECK {
                return;
            }
        }
        let mut l = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if l.checked.elapsed() < RELOAD_CHECK {
            return;
        }
        l.checked = Instant::now();
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified == l.modified {
            return;
        }
        match Self::read(path) {
            Ok((store, modified)) => {
                tracing::info!(target: "audit", event = "api_keys_reloaded", credentials = store.len());
                l.store = store;
                l.modified = modified;
            }
            Err(e) => {
                l.modified = modified;
                tracing::error!(target: "audit", event = "api_keys_reload_failed", error = %format!("{e:#}"), "keeping the previous keys");
            }
        }
    }

    /// Number of credentials now.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .store
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The trader holding `key` now.
    pub fn authenticate(&self, key: &str, now: DateTime<Utc>) -> Result<Credential, AuthError> {
        self.refresh();
        let l = self.inner.read().unwrap_or_else(|e| e.into_inner());
        l.store.check(key, now).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_key_authenticates_its_trader_until_it_expires() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == 67, "{a}");
        let file = format!(
            "# comment\n\n{}\n  {}  \n",
            key_line("ALICE", &a, None),
            key_line("BOB", &b, Some(at("2027-01-01T00:00:00Z")))
        );
        let store = KeyStore::parse(&file).unwrap();
        assert_eq!(store.len(), 2);
        let now = at("2026-11-26T12:00:00Z");
        assert_eq!(store.check(&a, now).unwrap().trader, "ALICE");
        assert_eq!(store.check(&b, now).unwrap().trader, "BOB");
        assert_eq!(
            store.check(&b, at("2027-01-01T00:00:00Z")),
            Err(AuthError::Expired)
        );
        assert_eq!(store.check(&new_key(), now), Err(AuthError::Invalid));
        // A key differing in one character is another key.
        let mut forged = a.clone();
        forged.replace_range(10..11, if &a[10..11] == "0" { "1" } else { "0" });
        assert_eq!(store.check(&forged, now), Err(AuthError::Invalid));
        // The file holds no key, only hashes.
        assert!(!file.contains(&a[3..]) && !file.contains(&b[3..]));
    }

    #[test]
    fn bad_key_files_are_refused_naming_the_line() {
        let k = key_line("ALICE", &new_key(), None);
        for (text, needle) in [
            ("ALICE".to_string(), "line 1"),
            ("ALICE sha256:abc".to_string(), "64 hex"),
            (format!("# x\n{k}\nhas\tspace sha256:zz"), "line 3"),
            (format!("{k}\n{k}"), "twice"),
            (format!("{k} expires=tomorrow"), "expires"),
            (format!("{k} role=admin"), "unknown field"),
            (k.replacen("ALICE", "A_NAME_LONGER_THAN_16", 1), "trader"),
        ] {
            let e = format!("{:#}", KeyStore::parse(&text).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_required() {
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert_eq!(bearer(Some(b"Bearer kx_1")), Ok("kx_1"));
        assert_eq!(bearer(Some(b"bearer  kx_1 ")), Ok("kx_1"));
        assert_eq!(bearer(Some(b"Basic a2V5")), Err(AuthError::Invalid));
        assert_eq!(bearer(Some(b"kx_1")), Err(AuthError::Invalid));
        assert_eq!(bearer(Some(b"Bearer \xff")), Err(AuthError::Invalid));
    }

    #[test]
    fn a_changed_key_file_is_reloaded_and_a_bad_one_keeps_the_old_keys() {
        let dir = std::env::temp_dir().join(format!("kappa-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        let (a, b) = (new_key(), new_key());
        std::fs::write(&path, key_line("ALICE", &a, None)).unwrap();
        let keys = Keys::from_file(&path).unwrap();
        let now = Utc::now();
        assert_eq!(keys.authenticate(&a, now).unwrap().trader, "ALICE");
        // Revoke ALICE, add BOB; the modification time must differ from the first write's.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, key_line("BOB", &b, None)).unwrap();
        let force = |keys: &Keys| {
            keys.inner.write().unwrap().checked = Instant::now() - RELOAD_CHECK;
        };
        force(&keys);
        assert_eq!(keys.authenticate(&a, now), Err(AuthError::Invalid));
        assert_eq!(keys.authenticate(&b, now).unwrap().trader, "BOB");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "garbage").unwrap();
        force(&keys);
        assert_eq!(keys.authenticate(&b, now).unwrap().trader, "BOB");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The token store: one JSON file that holds, per token, its id, its
//! integration and the SHA-256 of the token, never the token itself.
//!
//! ```json
//! {"version": 1, "tokens": [{"id": "3f9a1c07d2", "integration": "n8n",
//!   "sha256": "…64 hex…", "created": "2025-06-01T10:00:00Z", "expires": null,
//!   "revoked": null, "last_used": null, "grace_until": null, "replaced_by": null}]}
//! ```
//!
//! Every change (create, revoke, rotate, the daemon's `last_used` flush)
//! takes an exclusive `flock` on `<store>.lock`, rereads the file, and
//! replaces it atomically: a temporary file in the same directory with mode
//! 0600, `fsync`, `rename`, then `fsync` of the directory. A crash leaves the
//! old or the new file, never a mix.

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use crate::state_file;

use super::format;
use crate::identity::Fingerprint;
use crate::secret::Secret;

/// Largest store file read: about 40 000 tokens, far above any real site.
pub const MAX_STORE_BYTES: u64 = 16 * 1024 * 1024;

/// The store file's format version.
const STORE_VERSION: u32 = 1;

/// Random bytes in a token id, printed as hex.
const ID_BYTES: usize = 5;

/// An error from reading or changing the token store. No variant carries a
/// token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("failed to {action} the token store {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the token store {} is larger than {MAX_STORE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("the token store {} is invalid: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "the token store {} is writable by group or others (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the token store {} is owned by uid {uid}, expected root or the user running odoogate", path.display())]
    Owner { path: PathBuf, uid: u32 },
    #[error("no token with id {0:?}; `odoogate token list` shows the ids")]
    NotFound(String),
    #[error("token {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
    #[error("time out of range: {0}")]
    Time(String),
}

/// The result of checking a presented token. `integration` names the
/// integration the store issued a known token for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// A known, active token. `fingerprint` is the hex SHA-256 of the token.
    Valid { integration: String, fingerprint: String },
    /// Past its expiry, or past the grace deadline after a rotation.
    Expired { integration: String },
    Revoked { integration: String },
    /// Well formed, but not in the store.
    Unknown,
    /// Not a token: wrong prefix, length, characters or checksum.
    Malformed,
}

/// The lifecycle state of a token at a given time, for `token list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    Active,
    /// Replaced by a rotation and still valid until its grace deadline.
    Rotating,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Rotating => "rotating",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// One token in the store file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Short printable id (10 hex characters) that names the token in the
    /// CLI and in logs; unrelated to the token's value.
    pub id: String,
    pub integration: String,
    /// Lowercase hex SHA-256 of the token text.
    pub sha256: String,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    pub revoked: Option<Timestamp>,
    /// Last successful verification, as flushed by the daemon. It may lag
    /// behind by the daemon's flush interval.
    pub last_used: Option<Timestamp>,
    /// After `token rotate`: the old token stays valid until this time.
    pub grace_until: Option<Timestamp>,
    /// After `token rotate`: the id of the token that replaced this one.
    pub replaced_by: Option<String>,
}

impl TokenRecord {
    /// Returns the state of the token at `now`.
    pub fn state(&self, now: Timestamp) -> TokenState {
        if self.revoked.is_some() {
            return TokenState::Revoked;
        }
        let deadlines = [self.expires, self.grace_until];
        if deadlines.iter().flatten().any(|deadline| *deadline <= now) {
            return TokenState::Expired;
        }
        if self.grace_until.is_some() {
            return TokenState::Rotating;
        }
        TokenState::Active
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// A loaded token with its parsed digest and in-memory use time.
#[derive(Debug)]
struct Entry {
    record: TokenRecord,
    digest: Fingerprint,
    /// Unix seconds of the last successful verification, 0 for never.
    last_used: AtomicI64,
}

/// Identifies the file a store was loaded from, to notice changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

/// The tokens of every integration, loaded from the store file.
///
/// Verification takes `&self`: `last_used` is kept in atomics and written
/// back by [`TokenStore::flush_last_used`], which the daemon calls rarely.
/// Tokens created or revoked by the CLI take effect in a running daemon
/// when it loads the store again ([`TokenStore::is_stale`] tells when).
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    entries: Vec<Entry>,
    stamp: Option<FileStamp>,
    dirty: AtomicBool,
}

impl TokenStore {
    /// Loads the store at `path`. A missing file is an empty store, since
    /// no token was created yet; every presented token is then unknown.
    pub fn load(path: &Path) -> Result<TokenStore, TokenError> {
        let (file, stamp) = read_store(path)?;
        let entries = file
            .tokens
            .into_iter()
            .map(|record| {
                let digest = digest_of(path, &record)?;
                let last_used = record.last_used.map_or(0, |time| time.as_second());
                Ok(Entry { record, digest, last_used: AtomicI64::new(last_used) })
            })
            .collect::<Result<_, TokenError>>()?;
        Ok(TokenStore { path: path.to_owned(), entries, stamp, dirty: AtomicBool::new(false) })
    }

    /// Tells whether `s` claims to be a token, by its `odg_` prefix. A value
    /// with the prefix that does not verify is an invalid token, never a
    /// password.
    pub fn looks_like_token(s: &str) -> bool {
        format::has_prefix(s)
    }

    /// Checks a presented token at `now` and, when it is valid, records
    /// the use in memory.
    ///
    /// The SHA-256 of the presented text is compared with every stored
    /// digest in constant time, without stopping at a match, so the time
    /// taken does not depend on which stored token is closest. Only text
    /// that matches no digest has its format checked, to tell a mistyped
    /// or cut token from an unknown one. Decoding the base62 digits and
    /// the checksum cost about 2 % of a proxied call's instructions. A
    /// digest match authenticates the text whatever its format, so a
    /// record added to the store by hand for text without the format
    /// verifies, as one for a real token would.
    pub fn verify(&self, presented: &str, now: SystemTime) -> TokenCheck {
        let digest = Fingerprint::of(&Secret::new(presented));
        let mut found = None;
        for (index, entry) in self.entries.iter().enumerate() {
            if entry.digest.ct_eq(&digest) {
                found = Some(index);
            }
        }
        let Some(entry) = found.map(|index| &self.entries[index]) else {
            return match format::parse(presented) {
                Ok(_) => TokenCheck::Unknown,
                Err(_) => TokenCheck::Malformed,
            };
        };

        let integration = entry.record.integration.clone();
        let Ok(now) = Timestamp::try_from(now) else {
            return TokenCheck::Expired { integration };
        };
        match entry.record.state(now) {
            TokenState::Revoked => TokenCheck::Revoked { integration },
            TokenState::Expired => TokenCheck::Expired { integration },
            TokenState::Active | TokenState::Rotating => {
                entry.last_used.fetch_max(now.as_second(), Ordering::Relaxed);
                self.dirty.store(true, Ordering::Relaxed);
                TokenCheck::Valid { integration, fingerprint: digest.to_hex() }
            }
        }
    }

    /// Returns the state at `now` of the token whose SHA-256 is `digest`,
    /// `None` when the store has no such token. A web session that a token
    /// logged in lasts only while its token is active or rotating.
    pub fn state_of(&self, digest: &Fingerprint, now: SystemTime) -> Option<TokenState> {
        let now = Timestamp::try_from(now).ok()?;
        let entry = self.entries.iter().find(|entry| entry.digest.ct_eq(digest))?;
        Some(entry.record.state(now))
    }

    /// Tells whether the token whose SHA-256 is `digest` may be used at
    /// `now`: it is in the store, active or rotating.
    pub fn is_usable(&self, digest: &Fingerprint, now: SystemTime) -> bool {
        matches!(self.state_of(digest, now), Some(TokenState::Active | TokenState::Rotating))
    }

    /// Returns the store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the tokens, in the order they were created.
    pub fn records(&self) -> impl Iterator<Item = &TokenRecord> {
        self.entries.iter().map(|entry| &entry.record)
    }

    /// Returns the time of the last use seen by this process or flushed
    /// before, whichever is later.
    pub fn last_used(&self, id: &str) -> Option<Timestamp> {
        let entry = self.entries.iter().find(|entry| entry.record.id == id)?;
        let seconds = entry.last_used.load(Ordering::Relaxed);
        (seconds > 0).then(|| Timestamp::from_second(seconds).ok()).flatten()
    }

    /// Tells whether the file changed (or appeared, or disappeared) since
    /// this store was loaded, so that the caller can load it again.
    pub fn is_stale(&self) -> bool {
        file_stamp(&self.path).ok().flatten() != self.stamp
    }

    /// Writes the in-memory `last_used` times back to the file, keeping
    /// every other change made since the load. Does nothing when no token
    /// was used since the last flush.
    pub fn flush_last_used(&self) -> Result<(), TokenError> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        // A store removed while the daemon runs stays removed: last-used
        // times alone are not worth a new, empty store and its directory.
        if !self.path.exists() {
            return Ok(());
        }
        let result = update(&self.path, |file| {
            for record in &mut file.tokens {
                if let Some(used) = self.last_used(&record.id).filter(|_| self.holds(record)) {
                    record.last_used = record.last_used.max(Some(used));
                }
            }
            Ok(())
        });
        if result.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        result
    }

    fn holds(&self, record: &TokenRecord) -> bool {
        self.entries.iter().any(|entry| entry.record.id == record.id && entry.record.sha256 == record.sha256)
    }

    /// Creates a token for `integration`, valid until `expires` if set.
    /// Returns its record and the token, which the caller shows once.
    pub fn create(
        path: &Path,
        integration: &str,
        expires: Option<Duration>,
        now: SystemTime,
    ) -> Result<(TokenRecord, Secret), TokenError> {
        let now = timestamp(now)?;
        update(path, |file| {
            let (record, token) = new_record(file, integration, now, expires)?;
            file.tokens.push(record.clone());
            Ok((record, token))
        })
    }

    /// Revokes the token `id` at `now`.
    pub fn revoke(path: &Path, id: &str, now: SystemTime) -> Result<TokenRecord, TokenError> {
        let now = timestamp(now)?;
        update(path, |file| {
            let record = find_mut(file, id)?;
            if record.revoked.is_some() {
                return Err(TokenError::AlreadyRevoked(id.to_owned()));
            }
            record.revoked = Some(now);
            Ok(record.clone())
        })
    }

    /// Creates a new token for the integration of token `id`, with the same
    /// lifetime, and keeps the old one valid for `grace`. Returns the old
    /// record, the new record and the new token.
    pub fn rotate(
        path: &Path,
        id: &str,
        grace: Duration,
        now: SystemTime,
    ) -> Result<(TokenRecord, TokenRecord, Secret), TokenError> {
        let now = timestamp(now)?;
        let grace_until = add(now, grace)?;
        update(path, |file| {
            let old = find_mut(file, id)?.clone();
            if old.state(now) == TokenState::Revoked {
                return Err(TokenError::AlreadyRevoked(id.to_owned()));
            }
            let lifetime = old
                .expires
                .map(|expires| expires.duration_since(old.created).unsigned_abs())
                .filter(|lifetime| !lifetime.is_zero());
            let (new, token) = new_record(file, &old.integration, now, lifetime)?;

            let old = find_mut(file, id)?;
            old.grace_until = Some(old.grace_until.map_or(grace_until, |earlier| earlier.min(grace_until)));
            old.replaced_by = Some(new.id.clone());
            let old = old.clone();
            file.tokens.push(new.clone());
            Ok((old, new, token))
        })
    }
}

// === file access ===

/// Reads and checks the store file; a missing file is an empty store.
fn read_store(path: &Path) -> Result<(StoreFile, Option<FileStamp>), TokenError> {
    let io_error = |action| move |source| TokenError::Io { action, path: path.to_owned(), source };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok((StoreFile { version: STORE_VERSION, tokens: Vec::new() }, None));
        }
        Err(error) => return Err(io_error("open")(error)),
    };
    let metadata = file.metadata().map_err(io_error("inspect"))?;
    check_permissions(path, &metadata)?;

    let mut text = Vec::new();
    file.take(MAX_STORE_BYTES + 1).read_to_end(&mut text).map_err(io_error("read"))?;
    if text.len() as u64 > MAX_STORE_BYTES {
        return Err(TokenError::TooLarge { path: path.to_owned() });
    }
    let store: StoreFile = serde_json::from_slice(&text).map_err(|error| invalid(path, error.to_string()))?;
    check_contents(path, &store)?;
    Ok((store, Some(stamp_of(&metadata))))
}

/// Rejects a store that others could write to, since anyone who can add a
/// digest can mint a token.
fn check_permissions(path: &Path, metadata: &fs::Metadata) -> Result<(), TokenError> {
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(TokenError::Permissions { path: path.to_owned(), mode });
    }
    let uid = metadata.uid();
    if uid != 0 && uid != nix::unistd::geteuid().as_raw() {
        return Err(TokenError::Owner { path: path.to_owned(), uid });
    }
    Ok(())
}

fn check_contents(path: &Path, store: &StoreFile) -> Result<(), TokenError> {
    if store.version != STORE_VERSION {
        return Err(invalid(path, format!("expected version {STORE_VERSION}, found {}", store.version)));
    }
    let mut ids = std::collections::HashSet::new();
    for record in &store.tokens {
        if !ids.insert(record.id.as_str()) {
            return Err(invalid(path, format!("token id {:?} appears twice", record.id)));
        }
        if record.integration.is_empty() {
            return Err(invalid(path, format!("token {} has an empty integration", record.id)));
        }
    }
    Ok(())
}

fn digest_of(path: &Path, record: &TokenRecord) -> Result<Fingerprint, TokenError> {
    Fingerprint::from_hex(&record.sha256)
        .map_err(|error| invalid(path, format!("token {} has an invalid sha256: {error}", record.id)))
}

fn invalid(path: &Path, detail: String) -> TokenError {
    TokenError::Invalid { path: path.to_owned(), detail }
}

fn file_stamp(path: &Path) -> io::Result<Option<FileStamp>> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(Some(stamp_of(&metadata))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn stamp_of(metadata: &fs::Metadata) -> FileStamp {
    FileStamp { inode: metadata.ino(), len: metadata.len(), modified: metadata.modified().ok() }
}

/// Runs `change` on the current file contents under the store's lock and
/// writes the result atomically. Nothing is written when `change` fails.
fn update<T>(path: &Path, change: impl FnOnce(&mut StoreFile) -> Result<T, TokenError>) -> Result<T, TokenError> {
    let directory = parent_of(path);
    create_private_dir(path, directory)?;
    let _lock = lock(path)?;
    let (mut file, _) = read_store(path)?;
    let result = change(&mut file)?;
    write_atomically(path, directory, &file)?;
    Ok(result)
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn create_private_dir(path: &Path, directory: &Path) -> Result<(), TokenError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .map_err(|source| TokenError::Io { action: "create the directory of", path: path.to_owned(), source })
}

/// Takes an exclusive lock on `<store>.lock`, released when dropped.
fn lock(path: &Path) -> Result<Flock<File>, TokenError> {
    state_file::lock(path).map_err(|error| TokenError::Io { action: error.action, path: path.to_owned(), source: error.source })
}

fn write_atomically(path: &Path, directory: &Path, store: &StoreFile) -> Result<(), TokenError> {
    let mut text = serde_json::to_vec_pretty(store).expect("the store serializes to JSON");
    text.push(b'\n');
    state_file::write_atomically(path, directory, &text)
        .map_err(|error| TokenError::Io { action: error.action, path: path.to_owned(), source: error.source })
}

// === records ===

fn new_record(
    file: &StoreFile,
    integration: &str,
    now: Timestamp,
    lifetime: Option<Duration>,
) -> Result<(TokenRecord, Secret), TokenError> {
    let token = format::generate().map_err(TokenError::Random)?;
    let id = loop {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
        let id = hex::encode(bytes);
        if file.tokens.iter().all(|record| record.id != id) {
            break id;
        }
    };
    let record = TokenRecord {
        id,
        integration: integration.to_owned(),
        sha256: Fingerprint::of(&token).to_hex(),
        created: now,
        expires: lifetime.map(|lifetime| add(now, lifetime)).transpose()?,
        revoked: None,
        last_used: None,
        grace_until: None,
        replaced_by: None,
    };
    Ok((record, token))
}

fn find_mut<'f>(file: &'f mut StoreFile, id: &str) -> Result<&'f mut TokenRecord, TokenError> {
    file.tokens.iter_mut().find(|record| record.id == id).ok_or_else(|| TokenError::NotFound(id.to_owned()))
}

fn timestamp(time: SystemTime) -> Result<Timestamp, TokenError> {
    Timestamp::try_from(time).map_err(|error| TokenError::Time(error.to_string()))
}

fn add(time: Timestamp, duration: Duration) -> Result<Timestamp, TokenError> {
    time.checked_add(duration).map_err(|error| TokenError::Time(error.to_string()))
}

#[cfg(test)]
mod tests;

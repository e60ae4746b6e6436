//! The grant state file: `{"version": 1, "grants": [...]}`, default
//! `/var/lib/odoogate/grants.json`.
//!
//! Every change takes an exclusive `flock` on `<file>.lock`, rereads the
//! file, drops expired grants and replaces the file atomically: a temporary
//! file in the same directory with mode 0600, `fsync`, `rename`, then
//! `fsync` of the directory. A crash leaves the old or the new file. The
//! daemon rereads the file when its size, inode or modification time
//! changes ([`GrantFile::refresh`]).

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use crate::state_file;

use super::{Grant, Grants};

/// Default path of the grant file.
pub const DEFAULT_GRANT_FILE: &str = "/var/lib/odoogate/grants.json";

/// Largest grant file read, far above any real one.
pub const MAX_GRANT_FILE_BYTES: u64 = 1024 * 1024;

/// Most grants kept at once, so the file stays bounded.
pub const MAX_GRANTS: usize = 1000;

/// Maximum grant duration. A grant is a temporary exception, so a
/// permanent one belongs in the configuration.
pub const MAX_GRANT_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Maximum length of a `--reason` text, in characters.
pub const MAX_REASON_CHARS: usize = 500;

const FILE_VERSION: u32 = 1;

/// An error from reading or changing the grant file.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("invalid grant file {path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("no grant with id {id:?} in {path}")]
    NotFound { path: PathBuf, id: String },
    #[error("invalid grant: {0}")]
    Request(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFileContents {
    version: u32,
    grants: Vec<Grant>,
}

/// The grant `odoogate grant` requests.
#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub integration: String,
    pub rule: Option<usize>,
    pub duration: Duration,
    pub reason: Option<String>,
}

/// Reads the grants in `path`. A missing file means no grants.
pub fn load(path: &Path) -> Result<Grants, GrantError> {
    read(path).map(|contents| Grants::new(contents.grants))
}

/// Adds a grant and returns it. The caller checks that the integration and
/// rule exist in the configuration.
pub fn add(path: &Path, request: GrantRequest, now: SystemTime) -> Result<Grant, GrantError> {
    if request.duration.is_zero() || request.duration > MAX_GRANT_DURATION {
        let max_days = MAX_GRANT_DURATION.as_secs() / 86_400;
        return Err(GrantError::Request(format!("expected a duration from 1 s to {max_days} days")));
    }
    if request.reason.as_ref().is_some_and(|reason| reason.chars().count() > MAX_REASON_CHARS) {
        return Err(GrantError::Request(format!("the reason is longer than {MAX_REASON_CHARS} characters")));
    }
    let created = Timestamp::try_from(now).map_err(|error| GrantError::Request(error.to_string()))?;
    let created = Timestamp::from_second(created.as_second()).map_err(|error| GrantError::Request(error.to_string()))?;
    let span = jiff::SignedDuration::try_from(request.duration).map_err(|error| GrantError::Request(error.to_string()))?;
    let expires = created.checked_add(span).map_err(|error| GrantError::Request(error.to_string()))?;

    update(path, now, |contents| {
        if contents.grants.len() >= MAX_GRANTS {
            return Err(GrantError::Request(format!("{MAX_GRANTS} grants are active; revoke some first")));
        }
        let grant = Grant {
            id: new_id(path)?,
            integration: request.integration,
            rule: request.rule,
            created,
            expires,
            reason: request.reason,
        };
        contents.grants.push(grant.clone());
        Ok(grant)
    })
}

/// Removes the grant `id` and returns it.
pub fn revoke(path: &Path, id: &str, now: SystemTime) -> Result<Grant, GrantError> {
    update(path, now, |contents| {
        let position = contents.grants.iter().position(|grant| grant.id == id);
        let position = position.ok_or_else(|| GrantError::NotFound { path: path.to_owned(), id: id.to_owned() })?;
        Ok(contents.grants.remove(position))
    })
}

/// The daemon's view of the grant file, reread when the file changes.
#[derive(Debug)]
pub struct GrantFile {
    path: PathBuf,
    stamp: Option<FileStamp>,
    grants: Grants,
}

impl GrantFile {
    /// Reads the grant file at `path`.
    pub fn open(path: &Path) -> Result<Self, GrantError> {
        let mut file = Self { path: path.to_owned(), stamp: None, grants: Grants::default() };
        file.reload()?;
        Ok(file)
    }

    /// Rereads the file when it changed since the last read. On an error
    /// the grants read before stay in force.
    pub fn refresh(&mut self) -> Result<(), GrantError> {
        let stamp = file_stamp(&self.path)?;
        if stamp == self.stamp {
            return Ok(());
        }
        self.reload()
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    fn reload(&mut self) -> Result<(), GrantError> {
        let stamp = file_stamp(&self.path)?;
        self.grants = load(&self.path)?;
        self.stamp = stamp;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn file_stamp(path: &Path) -> Result<Option<FileStamp>, GrantError> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(Some(FileStamp {
            inode: metadata.ino(),
            len: metadata.len(),
            modified: metadata.modified().ok(),
        })),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(GrantError::Io { action: "read the metadata of", path: path.to_owned(), source }),
    }
}

fn read(path: &Path) -> Result<GrantFileContents, GrantError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(GrantFileContents { version: FILE_VERSION, grants: Vec::new() });
        }
        Err(source) => return Err(GrantError::Io { action: "open", path: path.to_owned(), source }),
    };
    let mut text = String::new();
    file.take(MAX_GRANT_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| GrantError::Io { action: "read", path: path.to_owned(), source })?;
    let invalid = |detail: String| GrantError::Invalid { path: path.to_owned(), detail };
    if text.len() as u64 > MAX_GRANT_FILE_BYTES {
        return Err(invalid(format!("larger than {MAX_GRANT_FILE_BYTES} bytes")));
    }
    let contents: GrantFileContents = serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    if contents.version != FILE_VERSION {
        return Err(invalid(format!("expected version {FILE_VERSION}, found {}", contents.version)));
    }
    Ok(contents)
}

/// Runs `change` under the file's lock on its current contents, without
/// expired grants, and writes the result atomically. Nothing is written
/// when `change` fails.
fn update<T>(
    path: &Path,
    now: SystemTime,
    change: impl FnOnce(&mut GrantFileContents) -> Result<T, GrantError>,
) -> Result<T, GrantError> {
    let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .map_err(|source| GrantError::Io { action: "create the directory of", path: path.to_owned(), source })?;
    let _lock = lock(path)?;

    let mut contents = read(path)?;
    if let Ok(now) = Timestamp::try_from(now) {
        contents.grants.retain(|grant| grant.expires > now);
    }
    let result = change(&mut contents)?;
    write_atomically(path, directory, &contents)?;
    Ok(result)
}

/// Takes an exclusive lock on `<file>.lock`, released when dropped.
fn lock(path: &Path) -> Result<Flock<File>, GrantError> {
    state_file::lock(path).map_err(|error| GrantError::Io { action: error.action, path: path.to_owned(), source: error.source })
}

fn write_atomically(path: &Path, directory: &Path, contents: &GrantFileContents) -> Result<(), GrantError> {
    let mut text = serde_json::to_vec_pretty(contents).map_err(|error| GrantError::Request(error.to_string()))?;
    text.push(b'\n');
    state_file::write_atomically(path, directory, &text)
        .map_err(|error| GrantError::Io { action: error.action, path: path.to_owned(), source: error.source })
}

fn new_id(path: &Path) -> Result<String, GrantError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| GrantError::Io {
        action: "get random bytes for a grant id in",
        path: path.to_owned(),
        source: io::Error::other(error.to_string()),
    })?;
    Ok(format!("g-{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("odoogate-grant-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn request(integration: &str, rule: Option<usize>, secs: u64) -> GrantRequest {
        GrantRequest { integration: integration.to_owned(), rule, duration: Duration::from_secs(secs), reason: None }
    }

    #[test]
    fn grant_persists_and_revokes() {
        let dir = temp_dir("persist");
        let path = dir.join("grants.json");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

        let grant = add(&path, request("erp", Some(1), 7200), now).unwrap();
        assert!(grant.id.starts_with("g-"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let grants = load(&path).unwrap();
        assert_eq!(grants.active("erp", Some(1), now).map(|g| g.id.as_str()), Some(grant.id.as_str()));
        assert!(grants.active("erp", None, now).is_none());
        assert!(grants.active("erp", Some(1), now + Duration::from_secs(7200)).is_none());

        revoke(&path, &grant.id, now).unwrap();
        assert!(load(&path).unwrap().active("erp", Some(1), now).is_none());
        assert!(matches!(revoke(&path, &grant.id, now), Err(GrantError::NotFound { .. })));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn expired_grants_are_dropped_on_change() {
        let dir = temp_dir("expire");
        let path = dir.join("grants.json");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

        add(&path, request("erp", None, 60), now).unwrap();
        add(&path, request("crm", None, 60), now + Duration::from_secs(120)).unwrap();
        let names: Vec<String> = load(&path).unwrap().iter().map(|g| g.integration.clone()).collect();
        assert_eq!(names, vec!["crm"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn grant_file_refresh_sees_changes() {
        let dir = temp_dir("refresh");
        let path = dir.join("grants.json");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

        let mut file = GrantFile::open(&path).unwrap();
        assert_eq!(file.grants().iter().count(), 0);
        add(&path, request("erp", None, 60), now).unwrap();
        file.refresh().unwrap();
        assert_eq!(file.grants().iter().count(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn invalid_durations_are_rejected() {
        let dir = temp_dir("duration");
        let path = dir.join("grants.json");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(matches!(add(&path, request("erp", None, 0), now), Err(GrantError::Request(_))));
        assert!(matches!(add(&path, request("erp", None, 31 * 86_400), now), Err(GrantError::Request(_))));
    }
}

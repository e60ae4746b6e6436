//! The file that keeps web session bindings across restarts
//! (`policy.sessions_file`), so that a session an integration opened stays
//! its session after odoogate restarts, as it does in Odoo.
//!
//! One JSON object per line, appended as bindings change:
//! `{"bind":"<sha256 hex>","integration":"erp","at":1733300000}` and
//! `{"unbind":"<sha256 hex>"}`. A session that a scoped token logged in
//! also has `"token":"<sha256 hex of the token>"`. `at` is the login or a
//! later use of the session: a session in use gets a new `bind` line now
//! and then, which replaces the earlier one. Only the SHA-256 of a session
//! id is written, never the id. At start the lines are replayed, bindings
//! unused for Odoo's session lifetime are dropped, and the file is
//! rewritten with the bindings left. A running daemon also rewrites it
//! when it has grown long.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Fingerprint;
use crate::state_file;

/// A binding read back from the file.
#[derive(Debug, PartialEq, Eq)]
pub struct SavedBinding {
    pub key: [u8; 32],
    pub integration: String,
    /// The scoped token that logged the session in, if one did.
    pub token: Option<Fingerprint>,
    /// The login, or the last use the file records.
    pub last_used: SystemTime,
}

/// A failure to read or write the sessions file.
#[derive(Debug, thiserror::Error)]
pub enum SessionFileError {
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Bind {
        bind: String,
        integration: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        at: u64,
    },
    Unbind {
        unbind: String,
    },
}

/// The open file, appended to on each change.
#[derive(Debug)]
pub struct SessionLog {
    path: PathBuf,
    file: File,
    /// Lines in the file.
    lines: usize,
    /// While a compacted file is being written, the lines appended since
    /// its bindings were taken, which the compacted file needs too.
    since_snapshot: Option<Vec<u8>>,
}

/// The compacted text of a sessions file, taken under the session table's
/// lock and written without it ([`Compaction::write`]): a full table
/// makes a file of up to about 18 MB, which calls must not wait for.
#[derive(Debug)]
pub struct Compaction {
    path: PathBuf,
    text: Vec<u8>,
    lines: usize,
}

/// A compacted file on disk, opened for appending.
#[derive(Debug)]
pub struct Compacted {
    file: File,
    lines: usize,
}

impl SessionLog {
    /// Reads the bindings in `path` made at or after `cutoff`, in the order
    /// they were made, rewrites the file with only those, and opens it for
    /// appending. A missing file is an empty one. Returns the bindings and
    /// how many lines could not be read.
    pub fn open(path: &Path, cutoff: SystemTime) -> Result<(Self, Vec<SavedBinding>, usize), SessionFileError> {
        let failed = |action| move |source| SessionFileError::Io { action, path: path.to_owned(), source };
        let (bindings, unreadable) = match File::open(path) {
            Ok(file) => replay(BufReader::new(file), cutoff).map_err(failed("read"))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(error) => return Err(failed("open")(error)),
        };

        let directory = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(directory).map_err(failed("create the directory of"))?;
        let (text, lines) = compacted_text(&bindings);
        let file = write_compacted(path, &text).map_err(|error| SessionFileError::Io {
            action: error.action,
            path: path.to_owned(),
            source: error.source,
        })?;
        Ok((Self { path: path.to_owned(), file, lines, since_snapshot: None }, bindings, unreadable))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines in the file, those replaced or removed by later ones included.
    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn bind(&mut self, key: &[u8; 32], integration: &str, token: Option<&Fingerprint>, at: SystemTime) -> io::Result<()> {
        self.append(&bind_line(key, integration, token, at))
    }

    pub fn unbind(&mut self, key: &[u8; 32]) -> io::Result<()> {
        self.append(&line_bytes(&Line::Unbind { unbind: hex::encode(key) }))
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        self.lines += 1;
        if let Some(since_snapshot) = &mut self.since_snapshot {
            since_snapshot.extend_from_slice(line);
        }
        self.file.write_all(line)
    }

    /// Takes the text of a compacted file with one line per binding, unless
    /// a compaction is already under way. Lines appended from now on also
    /// go to the compacted file when [`SessionLog::finish_compaction`] puts
    /// it in place.
    pub fn start_compaction(&mut self, bindings: impl IntoIterator<Item = SavedBinding>) -> Option<Compaction> {
        if self.since_snapshot.is_some() {
            return None;
        }
        let (text, lines) = compacted_text(bindings);
        self.since_snapshot = Some(Vec::new());
        Some(Compaction { path: self.path.clone(), text, lines })
    }

    /// Appends to the compacted file from now on, after the lines appended
    /// while it was written. A failed compaction leaves the file as it was:
    /// the rename is the last step, so the old file still contains every line.
    pub fn finish_compaction(&mut self, written: io::Result<Compacted>) -> io::Result<()> {
        let since_snapshot = self.since_snapshot.take().unwrap_or_default();
        let Compacted { mut file, lines } = written?;
        file.write_all(&since_snapshot)?;
        self.lines = lines + since_snapshot.iter().filter(|&&byte| byte == b'\n').count();
        self.file = file;
        Ok(())
    }
}

impl Compaction {
    /// Writes the compacted file in place of the sessions file, atomically,
    /// and opens it for appending.
    pub fn write(self) -> io::Result<Compacted> {
        let file = write_compacted(&self.path, &self.text).map_err(|error| error.source)?;
        Ok(Compacted { file, lines: self.lines })
    }
}

/// Writes `text` to `path` atomically and opens the new file for
/// appending.
fn write_compacted(path: &Path, text: &[u8]) -> Result<File, state_file::StateFileError> {
    let directory = path.parent().unwrap_or(Path::new("/"));
    state_file::write_atomically(path, directory, text)?;
    let file =
        OpenOptions::new().append(true).mode(0o600).open(path).map_err(|source| state_file::StateFileError { action: "open", source })?;
    Ok(file)
}

/// Returns the text of a file with one line per binding, and its line
/// count.
fn compacted_text<B: Borrow<SavedBinding>>(bindings: impl IntoIterator<Item = B>) -> (Vec<u8>, usize) {
    let mut text = Vec::new();
    let mut lines = 0;
    for binding in bindings {
        let binding = binding.borrow();
        text.extend_from_slice(&bind_line(&binding.key, &binding.integration, binding.token.as_ref(), binding.last_used));
        lines += 1;
    }
    (text, lines)
}

fn bind_line(key: &[u8; 32], integration: &str, token: Option<&Fingerprint>, at: SystemTime) -> Vec<u8> {
    let at = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let token = token.map(Fingerprint::to_hex);
    line_bytes(&Line::Bind { bind: hex::encode(key), integration: integration.to_owned(), token, at })
}

/// Serializes one line of the file, newline included.
fn line_bytes(line: &Line) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(line).expect("strings and numbers always serialize");
    bytes.push(b'\n');
    bytes
}

/// Replays the lines of a session file: later lines replace or remove
/// earlier bindings of the same key. Returns the bindings in the order of
/// their last lines, so the least recently saved comes first.
fn replay(reader: impl io::BufRead, cutoff: SystemTime) -> io::Result<(Vec<SavedBinding>, usize)> {
    // Each key's binding with the number of the line that made it. A map,
    // because the file contains a line per hour of use of each binding, and a
    // search through the bindings for each line takes quadratic time.
    let mut bindings: HashMap<[u8; 32], (usize, SavedBinding)> = HashMap::new();
    let mut unreadable = 0;
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line).ok().and_then(parse_line) {
            Some(Parsed::Bind(binding)) => {
                bindings.insert(binding.key, (number, binding));
            }
            Some(Parsed::Unbind(key)) => {
                bindings.remove(&key);
            }
            None => unreadable += 1,
        }
    }
    let mut kept: Vec<(usize, SavedBinding)> = bindings.into_values().filter(|(_, binding)| binding.last_used >= cutoff).collect();
    kept.sort_unstable_by_key(|(number, _)| *number);
    Ok((kept.into_iter().map(|(_, binding)| binding).collect(), unreadable))
}

enum Parsed {
    Bind(SavedBinding),
    Unbind([u8; 32]),
}

fn parse_line(line: Line) -> Option<Parsed> {
    let key = |text: &str| -> Option<[u8; 32]> { hex::decode(text).ok()?.try_into().ok() };
    match line {
        Line::Bind { bind, integration, token, at } => Some(Parsed::Bind(SavedBinding {
            key: key(&bind)?,
            integration,
            token: match token {
                Some(text) => Some(Fingerprint::from_hex(&text).ok()?),
                None => None,
            },
            // A time that `SystemTime` cannot represent makes the line unreadable.
            last_used: SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(at))?,
        })),
        Line::Unbind { unbind } => key(&unbind).map(Parsed::Unbind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn replay_applies_lines_in_order() {
        let a = hex::encode([1u8; 32]);
        let b = hex::encode([2u8; 32]);
        let c = hex::encode([3u8; 32]);
        let text = format!(
            "{{\"bind\":\"{a}\",\"integration\":\"erp\",\"at\":100}}\n\
             {{\"bind\":\"{b}\",\"integration\":\"n8n\",\"at\":200}}\n\
             not json\n\
             {{\"bind\":\"{c}\",\"integration\":\"old\",\"at\":10}}\n\
             {{\"unbind\":\"{b}\"}}\n\
             {{\"bind\":\"{a}\",\"integration\":\"stats\",\"at\":300}}\n\
             {{\"bind\":\"abc\",\"integration\":\"short\",\"at\":300}}\n"
        );
        let (bindings, unreadable) = replay(text.as_bytes(), at(50)).unwrap();
        assert_eq!(bindings, [SavedBinding { key: [1u8; 32], integration: "stats".to_owned(), token: None, last_used: at(300) }]);
        assert_eq!(unreadable, 2);
    }

    /// A file as a busy daemon leaves it between compactions: each session
    /// bound, then used in reverse order, with some logouts. Replay keeps
    /// the last line of each key, in the order of those lines.
    #[test]
    fn long_file_replays_last_lines() {
        const SESSIONS: u32 = 4_000;
        let key = |index: u32| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&index.to_be_bytes());
            key
        };
        let mut text = Vec::new();
        for index in 0..SESSIONS {
            text.extend_from_slice(&bind_line(&key(index), "erp", None, at(100)));
        }
        for index in (0..SESSIONS).rev() {
            match index % 4 {
                0 => text.extend_from_slice(&line_bytes(&Line::Unbind { unbind: hex::encode(key(index)) })),
                _ => text.extend_from_slice(&bind_line(&key(index), "erp", None, at(200 + u64::from(index)))),
            }
        }

        let (bindings, unreadable) = replay(&text[..], at(0)).unwrap();
        assert_eq!(unreadable, 0);
        let expected: Vec<SavedBinding> = (0..SESSIONS)
            .rev()
            .filter(|index| index % 4 != 0)
            .map(|index| SavedBinding {
                key: key(index),
                integration: "erp".to_owned(),
                token: None,
                last_used: at(200 + u64::from(index)),
            })
            .collect();
        assert_eq!(bindings.len(), expected.len());
        assert!(bindings == expected, "bindings differ from the last lines of their keys");
    }

    #[test]
    fn token_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("odoogate-session-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sessions.json");
        let token = Fingerprint::of(&crate::secret::Secret::new("odg_example"));

        let (mut log, _, _) = SessionLog::open(&path, at(0)).unwrap();
        log.bind(&[7u8; 32], "erp", Some(&token), at(100)).unwrap();
        drop(log);
        let (_, bindings, unreadable) = SessionLog::open(&path, at(0)).unwrap();
        assert_eq!(bindings, [SavedBinding { key: [7u8; 32], integration: "erp".to_owned(), token: Some(token), last_used: at(100) }]);
        assert_eq!(unreadable, 0);

        // A token that is not 64 hex digits makes the line unreadable.
        let a = hex::encode([1u8; 32]);
        let text = format!("{{\"bind\":\"{a}\",\"integration\":\"erp\",\"token\":\"xyz\",\"at\":100}}\n");
        assert_eq!(replay(text.as_bytes(), at(0)).unwrap(), (Vec::new(), 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_compacts_and_appends() {
        let dir = std::env::temp_dir().join(format!("odoogate-session-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sessions.json");

        let (mut log, bindings, _) = SessionLog::open(&path, at(0)).unwrap();
        assert!(bindings.is_empty());
        log.bind(&[7u8; 32], "erp", None, at(100)).unwrap();
        log.bind(&[8u8; 32], "n8n", None, at(100)).unwrap();
        log.unbind(&[8u8; 32]).unwrap();
        drop(log);

        let (_, bindings, unreadable) = SessionLog::open(&path, at(0)).unwrap();
        assert_eq!(bindings, [SavedBinding { key: [7u8; 32], integration: "erp".to_owned(), token: None, last_used: at(100) }]);
        assert_eq!(unreadable, 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1, "the reopened file is compacted");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_read_across_versions() {
        // The line shape before bindings kept a token.
        #[derive(Debug, Deserialize)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum OldLine {
            Bind { bind: String, integration: String, at: u64 },
            Unbind { unbind: String },
        }
        let token = Fingerprint::of(&crate::secret::Secret::new("odg_example"));
        let new = bind_line(&[3u8; 32], "erp", Some(&token), at(100));
        let old: OldLine = serde_json::from_slice(&new).unwrap();
        assert!(matches!(old, OldLine::Bind { ref integration, at: 100, .. } if integration == "erp"), "{old:?}");

        // An old line, a new one and one with an explicit null token.
        let a = hex::encode([1u8; 32]);
        let b = hex::encode([2u8; 32]);
        let old_line = format!("{{\"bind\":\"{a}\",\"integration\":\"old\",\"at\":100}}\n");
        let null_line = format!("{{\"bind\":\"{b}\",\"integration\":\"nul\",\"token\":null,\"at\":100}}\n");
        let text = format!("{old_line}{}{null_line}", String::from_utf8(new).unwrap());
        let (bindings, unreadable) = replay(text.as_bytes(), at(0)).unwrap();
        assert_eq!(unreadable, 0);
        let tokens: Vec<_> = bindings.iter().map(|binding| (binding.integration.as_str(), binding.token)).collect();
        assert_eq!(tokens, [("old", None), ("erp", Some(token)), ("nul", None)]);
    }
}

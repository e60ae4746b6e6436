//! Reads audit records back for `odoogate audit`.
//!
//! Records come from `journalctl -o json` or from a file of JSON lines that
//! [`super::jsonl`] wrote. Both have one journal entry object per line, so
//! one parser reads both. journalctl writes a value that is not valid UTF-8,
//! or that contains control characters other than tab and newline, as an
//! array of byte values. It writes `null` for a value it left out (one over
//! 4096 bytes, unless run with `--all`). A field that occurs several times in
//! one entry becomes an array of such values.
//!
//! NOTE: entries are matched by `SYSLOG_IDENTIFIER=odoogate`, which any local
//! process may set. The journal's trusted fields (`_EXE`, `_SYSTEMD_UNIT`,
//! `_UID`), kept in [`AuditEntry::fields`], show which process wrote an entry.

mod query;
mod table;

pub use query::{AuditQuery, normalize_since};
pub use table::{print_json, print_table};

use super::journald::SYSLOG_IDENTIFIER;
use query::EntryFilter;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maximum bytes of one JSON line. An odoogate entry has about 30 fields of
/// at most 1 MiB each, and journalctl spells a binary byte in up to four
/// characters, so real entries stay far below this.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Maximum bytes of journalctl's standard error kept for an error message.
const MAX_STDERR_BYTES: u64 = 8 << 10;

/// One audit record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// When journald received the record, or when the JSON lines sink
    /// encoded it.
    pub timestamp: SystemTime,
    /// Every field of the entry, journal metadata (`__CURSOR`, `_PID`, …)
    /// included. Binary values are decoded as UTF-8, invalid bytes replaced.
    pub fields: BTreeMap<String, String>,
}

impl AuditEntry {
    /// Returns the value of field `name`, if the entry has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// An error reading audit records.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error(
        "journalctl was not found ({source}); install systemd's journalctl, or read a JSON lines audit file with --file"
    )]
    JournalctlMissing { source: io::Error },
    #[error("failed to run journalctl: {source}")]
    JournalctlSpawn { source: io::Error },
    #[error(
        "journalctl failed ({status}): {stderr}; check the --since value and the journal directory, \
         and that this user may read the journal (root or the systemd-journal group)"
    )]
    JournalctlFailed { status: ExitStatus, stderr: String },
    #[error("failed to open the audit file {}: {source}", path.display())]
    OpenFile { path: PathBuf, source: io::Error },
    #[error("failed to read {origin}: {source}")]
    Read { origin: String, source: io::Error },
    #[error("{origin} line {line} is longer than {max} bytes", max = MAX_LINE_BYTES)]
    LineTooLong { origin: String, line: usize },
    #[error("{origin} line {line}: invalid audit entry: {source}")]
    InvalidEntry {
        origin: String,
        line: usize,
        source: EntryError,
    },
    #[error(
        "invalid --since value {value:?}: expected a shorthand such as 30m, 2h or 7d, \"N minutes ago\", \
         or a local date and time such as 2026-12-01 or \"2026-12-01 08:30:00\" ({reason})"
    )]
    InvalidSince { value: String, reason: String },
}

/// The reason a line is not a journal entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("not a JSON object")]
    NotObject,
    #[error("missing __REALTIME_TIMESTAMP")]
    MissingTimestamp,
    #[error("__REALTIME_TIMESTAMP is not a count of microseconds")]
    InvalidTimestamp,
    #[error("field {0} is neither a string, an array of bytes, an array of values nor null")]
    InvalidValue(String),
}

/// Reads the audit records that `query` selects, oldest first.
///
/// NOTE: all matching entries are kept in memory, so narrow a large journal
/// with `since` and the filters.
pub fn read(query: &AuditQuery) -> Result<Vec<AuditEntry>, ReaderError> {
    match &query.file {
        Some(path) => read_file(query, path),
        None => read_journal(query, Command::new("journalctl")),
    }
}

fn read_file(query: &AuditQuery, path: &Path) -> Result<Vec<AuditEntry>, ReaderError> {
    let file = File::open(path).map_err(|source| ReaderError::OpenFile {
        path: path.to_owned(),
        source,
    })?;
    let filter =
        EntryFilter::for_file(query, jiff::Timestamp::now(), &jiff::tz::TimeZone::system())?;
    let mut entries = parse_lines(
        BufReader::new(file),
        &path.display().to_string(),
        &filter,
        MAX_LINE_BYTES,
    )?;
    // Lines are timestamped when they are encoded, on the thread that made
    // the record, so records of different threads can reach the file out
    // of order. The sort is stable, so entries with equal times keep the
    // file's order.
    entries.sort_by_key(|entry| entry.timestamp);
    Ok(entries)
}

/// Runs `journalctl`, a command for journalctl, with the arguments for
/// `query` and parses its output.
fn read_journal(
    query: &AuditQuery,
    mut journalctl: Command,
) -> Result<Vec<AuditEntry>, ReaderError> {
    let mut child = journalctl
        .args(query::journalctl_args(query))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ReaderError::JournalctlMissing { source },
            _ => ReaderError::JournalctlSpawn { source },
        })?;

    let stderr = child.stderr.take().map(|stderr| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.take(MAX_STDERR_BYTES).read_to_end(&mut text);
            String::from_utf8_lossy(&text).trim().to_owned()
        })
    });

    let stdout = child.stdout.take().expect("stdout is piped");
    let filter = EntryFilter::for_journal(query);
    let parsed = parse_lines(
        BufReader::new(stdout),
        "journalctl output",
        &filter,
        MAX_LINE_BYTES,
    );
    let status = finish(&mut child, parsed.is_err())?;
    let stderr = stderr
        .and_then(|thread| thread.join().ok())
        .unwrap_or_default();

    // A parse error comes first, because journalctl's status then only
    // reflects the kill that abandoned its output.
    let entries = parsed?;
    if !status.success() {
        return Err(ReaderError::JournalctlFailed { status, stderr });
    }
    Ok(entries)
}

/// Waits for journalctl, killing it first if its output was abandoned.
fn finish(child: &mut Child, abandoned: bool) -> Result<ExitStatus, ReaderError> {
    if abandoned {
        let _ = child.kill();
    }
    child
        .wait()
        .map_err(|source| ReaderError::JournalctlSpawn { source })
}

/// Parses journal entry lines from `input`, keeping those `filter` selects.
fn parse_lines(
    mut input: impl BufRead,
    origin: &str,
    filter: &EntryFilter,
    max_line: usize,
) -> Result<Vec<AuditEntry>, ReaderError> {
    let mut entries = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;

    loop {
        line += 1;
        buf.clear();
        let read = (&mut input)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut buf);
        if read.map_err(|source| ReaderError::Read {
            origin: origin.to_owned(),
            source,
        })? == 0
        {
            return Ok(entries);
        }

        let terminated = buf.last() == Some(&b'\n');
        if terminated {
            buf.pop();
        }
        if buf.len() > max_line {
            return Err(ReaderError::LineTooLong {
                origin: origin.to_owned(),
                line,
            });
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }

        let entry = match parse_entry(&buf) {
            Ok(entry) => entry,
            // A file the daemon is appending to may end in a line that is
            // still being written. That line is left out, like the records
            // written after the read.
            Err(EntryError::NotJson(_)) if !terminated => return Ok(entries),
            Err(source) => {
                return Err(ReaderError::InvalidEntry {
                    origin: origin.to_owned(),
                    line,
                    source,
                });
            }
        };
        if filter.matches(&entry) {
            entries.push(entry);
        }
    }
}

/// Parses one `journalctl -o json` object.
fn parse_entry(line: &[u8]) -> Result<AuditEntry, EntryError> {
    let Value::Object(object) = serde_json::from_slice(line).map_err(EntryError::NotJson)? else {
        return Err(EntryError::NotObject);
    };

    let mut fields = BTreeMap::new();
    for (name, value) in object {
        let Some(text) =
            field_value(&value).ok_or_else(|| EntryError::InvalidValue(name.clone()))?
        else {
            continue;
        };
        fields.insert(name, text);
    }

    let timestamp = fields
        .get("__REALTIME_TIMESTAMP")
        .ok_or(EntryError::MissingTimestamp)?;
    let micros: u64 = timestamp
        .parse()
        .map_err(|_| EntryError::InvalidTimestamp)?;
    Ok(AuditEntry {
        timestamp: UNIX_EPOCH + Duration::from_micros(micros),
        fields,
    })
}

/// Decodes one field value: `Some(Some(text))` for a value, `Some(None)` for
/// a value journalctl left out (`null`), `None` for a value of no known shape.
/// Of a field that occurs several times the first value is kept.
fn field_value(value: &Value) -> Option<Option<String>> {
    match value {
        Value::String(text) => Some(Some(text.clone())),
        Value::Null => Some(None),
        Value::Array(items) => match byte_array(items) {
            Some(bytes) => Some(Some(String::from_utf8_lossy(&bytes).into_owned())),
            None => items.first().map_or(Some(None), field_value),
        },
        _ => None,
    }
}

/// Returns the bytes of an array of numbers 0 to 255, `None` for any other
/// array. An empty array is an empty value.
fn byte_array(items: &[Value]) -> Option<Vec<u8>> {
    items
        .iter()
        .map(|item| item.as_u64().and_then(|byte| u8::try_from(byte).ok()))
        .collect()
}

/// Tells whether an entry was written by odoogate.
fn is_odoogate_entry(entry: &AuditEntry) -> bool {
    entry.field("SYSLOG_IDENTIFIER") == Some(SYSLOG_IDENTIFIER)
}

#[cfg(test)]
mod tests;

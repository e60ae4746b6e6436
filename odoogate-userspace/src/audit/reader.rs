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
//! A file may also contain the daemon's own log lines: with
//! `audit.output = "stderr"`, or `"auto"` without journald, the records go
//! to stderr between them. Lines of a file that are not journal entries are
//! therefore counted and skipped.
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

/// The audit records read for a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRead {
    /// The selected records, oldest first.
    pub entries: Vec<AuditEntry>,
    /// Non-empty lines of a file that are not audit records, such as the
    /// daemon's own log lines. Always 0 for the journal.
    pub skipped_lines: usize,
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
        "{origin} contains no audit record: {} a JSON object with journal fields \
         (__REALTIME_TIMESTAMP, SYSLOG_IDENTIFIER, ODOOGATE_EVENT); pass the daemon's audit.file, \
         or the file its stderr goes to, which gets audit records from the first call on",
        which_lines_are_not(*skipped_lines)
    )]
    NoAuditRecord { origin: String, skipped_lines: usize },
    #[error(
        "invalid --since value {value:?}: expected a shorthand such as 30m, 2h or 7d, \"N minutes ago\", \
         or a local date and time such as 2026-12-01 or \"2026-12-01 08:30:00\" ({reason})"
    )]
    InvalidSince { value: String, reason: String },
}

/// Returns the start of [`ReaderError::NoAuditRecord`]'s reason for a file
/// of `lines` non-empty lines.
fn which_lines_are_not(lines: usize) -> String {
    match lines {
        1 => "its only non-empty line is not".to_owned(),
        lines => format!("none of its {lines} non-empty lines is"),
    }
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
/// A file whose non-empty lines are all other than audit records is an
/// error, [`ReaderError::NoAuditRecord`]. An empty file is not.
///
/// NOTE: all matching entries are kept in memory, so narrow a large journal
/// with `since` and the filters.
pub fn read(query: &AuditQuery) -> Result<AuditRead, ReaderError> {
    match &query.file {
        Some(path) => read_file(query, path),
        None => read_journal(query, Command::new("journalctl")).map(|parsed| AuditRead {
            entries: parsed.entries,
            skipped_lines: 0,
        }),
    }
}

/// The lines that a source of audit records may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineKinds {
    /// journalctl's output, where every line must be a journal entry.
    JournalEntries,
    /// A file that may also contain log lines, text or JSON, between the
    /// journal entries.
    MixedWithLogLines,
}

/// The lines parsed from one source.
#[derive(Debug, Default)]
struct ParsedLines {
    /// The entries that the filter selected.
    entries: Vec<AuditEntry>,
    /// Lines that are journal entries, selected or not.
    entry_lines: usize,
    /// Non-empty lines that are not journal entries.
    skipped_lines: usize,
}

fn read_file(query: &AuditQuery, path: &Path) -> Result<AuditRead, ReaderError> {
    let file = File::open(path).map_err(|source| ReaderError::OpenFile {
        path: path.to_owned(),
        source,
    })?;
    let filter =
        EntryFilter::for_file(query, jiff::Timestamp::now(), &jiff::tz::TimeZone::system())?;
    let origin = path.display().to_string();
    let parsed = parse_lines(
        BufReader::new(file),
        &origin,
        &filter,
        MAX_LINE_BYTES,
        LineKinds::MixedWithLogLines,
    )?;
    if parsed.entry_lines == 0 && parsed.skipped_lines > 0 {
        return Err(ReaderError::NoAuditRecord {
            origin,
            skipped_lines: parsed.skipped_lines,
        });
    }
    let mut entries = parsed.entries;
    // Lines are timestamped when they are encoded, on the thread that made
    // the record, so records of different threads can reach the file out
    // of order. The sort is stable, so entries with equal times keep the
    // file's order.
    entries.sort_by_key(|entry| entry.timestamp);
    Ok(AuditRead {
        entries,
        skipped_lines: parsed.skipped_lines,
    })
}

/// Runs `journalctl`, a command for journalctl, with the arguments for
/// `query` and parses its output.
fn read_journal(query: &AuditQuery, mut journalctl: Command) -> Result<ParsedLines, ReaderError> {
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
        LineKinds::JournalEntries,
    );
    let status = finish(&mut child, parsed.is_err())?;
    let stderr = stderr
        .and_then(|thread| thread.join().ok())
        .unwrap_or_default();

    // A parse error comes first, because journalctl's status then only
    // reflects the kill that abandoned its output.
    let parsed = parsed?;
    if !status.success() {
        return Err(ReaderError::JournalctlFailed { status, stderr });
    }
    Ok(parsed)
}

/// The directories where journalctl looks for the system's journal files
/// when it is given no `--directory`: sd-journal's search paths in systemd
/// 252 (`/var/log/journal` for persistent storage, `/run/log/journal` for
/// volatile storage).
pub const JOURNAL_DIRECTORIES: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// Tells whether `directory` or one of its subdirectories (journald keeps
/// the files of each machine id in its own) contains a journal file, named
/// `*.journal`, or `*.journal~` when journald found it corrupt or unclean.
/// A directory that cannot be listed counts as having none.
///
/// journalctl with `--output=json` never reports that it found no journal
/// files (it turns on `--quiet` for that output), so `odoogate audit` looks
/// for them itself.
pub fn has_journal_files(directory: &Path) -> bool {
    let Ok(children) = std::fs::read_dir(directory) else {
        return false;
    };
    children.flatten().any(|child| {
        let path = child.path();
        if child.file_type().is_ok_and(|kind| kind.is_dir()) {
            std::fs::read_dir(&path).is_ok_and(|files| files.flatten().any(|file| is_journal_file(&file.path())))
        } else {
            is_journal_file(&path)
        }
    })
}

fn is_journal_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with(".journal") || name.ends_with(".journal~"))
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
/// With [`LineKinds::MixedWithLogLines`], lines that are not journal
/// entries are counted and skipped (see [`parse_file_line`]).
fn parse_lines(
    mut input: impl BufRead,
    origin: &str,
    filter: &EntryFilter,
    max_line: usize,
    kinds: LineKinds,
) -> Result<ParsedLines, ReaderError> {
    let mut parsed = ParsedLines::default();
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
            return Ok(parsed);
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

        let result = match kinds {
            LineKinds::JournalEntries => parse_entry(&buf).map(Some),
            LineKinds::MixedWithLogLines => parse_file_line(&buf),
        };
        let entry = match result {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                parsed.skipped_lines += 1;
                continue;
            }
            // A file the daemon is appending to may end in a line that is
            // still being written. That line is left out, like the records
            // written after the read.
            Err(EntryError::NotJson(_)) if !terminated => return Ok(parsed),
            Err(source) => {
                return Err(ReaderError::InvalidEntry {
                    origin: origin.to_owned(),
                    line,
                    source,
                });
            }
        };
        parsed.entry_lines += 1;
        if filter.matches(&entry) {
            parsed.entries.push(entry);
        }
    }
}

/// Parses one line of a file that may also contain log lines. Returns
/// `None` for a line that is not a journal entry: text that does not start
/// with `{`, JSON that is not an object, and an object without a journal
/// field name among its keys. tracing-subscriber's JSON log lines are such
/// objects, with `timestamp`, `level`, `fields` and `target`. An object with
/// a journal field name must be a valid entry, and so must a line that is
/// not JSON but starts with one, as every line of the JSON lines sink does.
fn parse_file_line(line: &[u8]) -> Result<Option<AuditEntry>, EntryError> {
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(object)) if object.keys().any(|name| is_journal_field_name(name)) => {
            entry_of_object(object).map(Some)
        }
        Ok(_) => Ok(None),
        Err(error) if first_key_is_journal_field(line) => Err(EntryError::NotJson(error)),
        Err(_) => Ok(None),
    }
}

/// Tells whether `name` has the form of a journal field name: uppercase
/// ASCII letters, digits and underscores, with at least one letter.
fn is_journal_field_name(name: &str) -> bool {
    name.bytes().any(|byte| byte.is_ascii_uppercase())
        && name.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
}

/// Tells whether `line`, which need not be valid JSON, starts with `{` and
/// a key that is a journal field name.
fn first_key_is_journal_field(line: &[u8]) -> bool {
    let Some(rest) = line.trim_ascii_start().strip_prefix(b"{") else {
        return false;
    };
    let Some(rest) = rest.trim_ascii_start().strip_prefix(b"\"") else {
        return false;
    };
    let Some(end) = rest.iter().position(|&byte| byte == b'"') else {
        return false;
    };
    std::str::from_utf8(&rest[..end]).is_ok_and(is_journal_field_name)
}

/// Parses one `journalctl -o json` object.
fn parse_entry(line: &[u8]) -> Result<AuditEntry, EntryError> {
    let Value::Object(object) = serde_json::from_slice(line).map_err(EntryError::NotJson)? else {
        return Err(EntryError::NotObject);
    };
    entry_of_object(object)
}

/// Reads the fields and the timestamp of one journal entry object.
fn entry_of_object(object: serde_json::Map<String, Value>) -> Result<AuditEntry, EntryError> {
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

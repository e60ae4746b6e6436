//! The selection of `odoogate audit`: the query, its journalctl arguments,
//! and the filter applied to each entry read.

use super::{AuditEntry, ReaderError, is_odoogate_entry};
use crate::audit::journald::SYSLOG_IDENTIFIER;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, civil};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::SystemTime;

/// The records `odoogate audit` selects. `None` selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The oldest time to show, in any form `journalctl --since` takes
    /// ("1h ago", "2026-12-01", "today"), or a shorthand such as `30m`,
    /// `2h` or `7d` (see [`normalize_since`]).
    pub since: Option<String>,
    /// Exact `ODOOGATE_INTEGRATION`.
    pub integration: Option<String>,
    /// Exact `ODOOGATE_DECISION` (`allow`, `deny`, `would_deny`).
    pub decision: Option<String>,
    /// `ODOOGATE_MODEL`, exact or a glob where `*` matches any run of
    /// characters and `?` one character.
    pub model: Option<String>,
    /// A JSON lines audit file to read instead of the journal.
    pub file: Option<PathBuf>,
    /// A journal directory to read instead of the system journal
    /// (`journalctl -D`).
    pub journal_directory: Option<PathBuf>,
}

/// Turns a shorthand `N` followed by `s`, `m`, `h`, `d` or `w` into
/// `N seconds ago`, `N minutes ago` and so on, and returns any other value
/// as it is. The long form is unambiguous for journalctl, where a bare `7d`
/// is not a timestamp.
pub fn normalize_since(value: &str) -> String {
    let value = value.trim();
    match parse_shorthand(value) {
        Some((amount, unit)) => format!("{amount} {unit} ago"),
        None => value.to_owned(),
    }
}

fn parse_shorthand(value: &str) -> Option<(u64, &'static str)> {
    let suffix = value.chars().last()?;
    let unit = match suffix {
        's' => "seconds",
        'm' => "minutes",
        'h' => "hours",
        'd' => "days",
        'w' => "weeks",
        _ => return None,
    };
    let digits = &value[..value.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, unit))
}

/// Returns the journalctl arguments that select `query`'s records. Exact
/// filters become journal matches, so journalctl skips other entries itself.
pub(super) fn journalctl_args(query: &AuditQuery) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--output=json", "--no-pager", "--all", "--quiet"]
        .map(OsString::from)
        .into();

    if let Some(directory) = &query.journal_directory {
        args.push("--directory".into());
        args.push(directory.into());
    }
    if let Some(since) = &query.since {
        args.push(format!("--since={}", normalize_since(since)).into());
    }

    args.push(format!("SYSLOG_IDENTIFIER={SYSLOG_IDENTIFIER}").into());
    // Unidentified calls carry no ODOOGATE_INTEGRATION field, so that
    // filter is applied after reading.
    if let Some(integration) = query.integration.as_ref().filter(|name| *name != UNIDENTIFIED) {
        args.push(format!("ODOOGATE_INTEGRATION={integration}").into());
    }
    if let Some(decision) = &query.decision {
        args.push(format!("ODOOGATE_DECISION={decision}").into());
    }
    if let Some(model) = query.model.as_ref().filter(|model| !is_glob(model)) {
        args.push(format!("ODOOGATE_MODEL={model}").into());
    }
    args
}

/// The conditions an entry must meet to be shown.
#[derive(Debug)]
pub(super) struct EntryFilter {
    integration: Option<String>,
    decision: Option<String>,
    model: Option<String>,
    since: Option<SystemTime>,
}

// === impl EntryFilter ===

impl EntryFilter {
    /// Filters journalctl's output, where journalctl already applied `since`.
    pub(super) fn for_journal(query: &AuditQuery) -> Self {
        Self::with_since(query, None)
    }

    /// Filters a JSON lines file, resolving `since` against `now` in `tz`.
    pub(super) fn for_file(
        query: &AuditQuery,
        now: Timestamp,
        tz: &TimeZone,
    ) -> Result<Self, ReaderError> {
        let since = query
            .since
            .as_deref()
            .map(|value| since_cutoff(value, now, tz))
            .transpose()?;
        Ok(Self::with_since(query, since.map(SystemTime::from)))
    }

    fn with_since(query: &AuditQuery, since: Option<SystemTime>) -> Self {
        Self {
            integration: query.integration.clone(),
            decision: query.decision.clone(),
            model: query.model.clone(),
            since,
        }
    }

    pub(super) fn matches(&self, entry: &AuditEntry) -> bool {
        let Self {
            integration,
            decision,
            model,
            since,
        } = self;
        is_odoogate_entry(entry)
            && since.is_none_or(|since| entry.timestamp >= since)
            && integration_matches(integration, entry.field("ODOOGATE_INTEGRATION"))
            && equals(decision, entry.field("ODOOGATE_DECISION"))
            && model.as_deref().is_none_or(|pattern| {
                entry
                    .field("ODOOGATE_MODEL")
                    .is_some_and(|m| glob_match(pattern, m))
            })
    }
}

/// The `--integration` value that selects calls no integration matched.
///
/// NOTE: an integration that is itself named `unidentified` cannot be
/// selected by name; the config does not reserve the name yet.
pub const UNIDENTIFIED: &str = "unidentified";

fn integration_matches(expected: &Option<String>, actual: Option<&str>) -> bool {
    match expected.as_deref() {
        Some(UNIDENTIFIED) => actual.is_none(),
        _ => equals(expected, actual),
    }
}

fn equals(expected: &Option<String>, actual: Option<&str>) -> bool {
    expected
        .as_deref()
        .is_none_or(|expected| actual == Some(expected))
}

/// Resolves a `--since` value for a file, where journalctl cannot: a
/// shorthand or `N unit ago`, `now`, `today`, `yesterday`, an RFC 3339
/// timestamp, or a local date with an optional time.
pub(super) fn since_cutoff(
    value: &str,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<Timestamp, ReaderError> {
    let normalized = normalize_since(value);
    let invalid = |reason: String| ReaderError::InvalidSince {
        value: value.to_owned(),
        reason,
    };
    let today = || {
        now.to_zoned(tz.clone())
            .start_of_day()
            .map_err(|e| invalid(e.to_string()))
    };

    match normalized.as_str() {
        "now" => return Ok(now),
        "today" => return today().map(|start| start.timestamp()),
        "yesterday" => {
            let start = today()?.yesterday().and_then(|day| day.start_of_day());
            return start
                .map(|start| start.timestamp())
                .map_err(|e| invalid(e.to_string()));
        }
        _ => {}
    }

    if let Ok(span) = normalized.parse::<Span>() {
        if !span.is_negative() {
            return Err(invalid(
                "a time span needs \"ago\" to be in the past, as in \"1 hour ago\"".to_owned(),
            ));
        }
        return now
            .to_zoned(tz.clone())
            .checked_add(span)
            .map(|z| z.timestamp())
            .map_err(|e| invalid(e.to_string()));
    }
    if let Ok(timestamp) = normalized.parse::<Timestamp>() {
        return Ok(timestamp);
    }
    match normalized.parse::<civil::DateTime>() {
        Ok(local) => local
            .to_zoned(tz.clone())
            .map(|z| z.timestamp())
            .map_err(|e| invalid(e.to_string())),
        Err(error) => Err(invalid(error.to_string())),
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Matches `text` against `pattern`, where `*` matches any run of characters
/// (none included) and `?` exactly one.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and the text position it was tried at, to retry with
    // the star taking one more character when a later match fails.
    let mut backtrack: Option<(usize, usize)> = None;

    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, tried)) => {
                    p = star + 1;
                    t = tried + 1;
                    backtrack = Some((star, tried + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

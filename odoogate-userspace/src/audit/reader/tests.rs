use super::query::{EntryFilter, glob_match, journalctl_args, since_cutoff};
use super::table::write_table;
use super::*;
use crate::audit::jsonl::JsonLinesSink;
use crate::audit::{AuditEvent, AuditRecord, AuditSink as _, Decision, Identity};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan as _};

/// journalctl's output for one denied call, as systemd 252 prints it.
const DENY_LINE: &str = r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1780000000123456","__MONOTONIC_TIMESTAMP":"42","_PID":"812","_EXE":"/usr/bin/odoogate","PRIORITY":"4","SYSLOG_IDENTIFIER":"odoogate","MESSAGE":"deny website-form crm.lead.unlink via xmlrpc: no rule allows unlink","ODOOGATE_EVENT":"call","ODOOGATE_DECISION":"deny","ODOOGATE_INTEGRATION":"website-form","ODOOGATE_IDENTITY":"api_key","ODOOGATE_PROTOCOL":"xmlrpc","ODOOGATE_MODEL":"crm.lead","ODOOGATE_METHOD":"unlink","ODOOGATE_OUTCOME":"fault:3","ODOOGATE_LATENCY_US":"1840","ODOOGATE_SRC_IP":"10.0.0.7","ODOOGATE_SRC_PORT":"53412"}"#;

fn parse_all(text: &str, filter: &EntryFilter) -> Result<Vec<AuditEntry>, ReaderError> {
    parse_lines(text.as_bytes(), "test input", filter, MAX_LINE_BYTES, LineKinds::JournalEntries).map(|parsed| parsed.entries)
}

fn no_filter() -> EntryFilter {
    EntryFilter::for_journal(&AuditQuery::default())
}

fn entry(fields: &[(&str, &str)]) -> AuditEntry {
    let mut line = serde_json::Map::new();
    line.insert("__REALTIME_TIMESTAMP".into(), "1780000000000000".into());
    line.insert("SYSLOG_IDENTIFIER".into(), "odoogate".into());
    for (name, value) in fields {
        line.insert((*name).into(), (*value).into());
    }
    parse_entry(serde_json::Value::Object(line).to_string().as_bytes()).unwrap()
}

// === parsing ===

#[test]
fn parses_journalctl_entry() {
    let entries = parse_all(DENY_LINE, &no_filter()).unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(
        entry.timestamp,
        UNIX_EPOCH + Duration::from_micros(1_780_000_000_123_456)
    );
    assert_eq!(entry.field("ODOOGATE_MODEL"), Some("crm.lead"));
    assert_eq!(entry.field("_EXE"), Some("/usr/bin/odoogate"));
    assert_eq!(entry.field("ODOOGATE_RULE"), None);
}

#[test]
fn byte_array_value_is_decoded() {
    let line = r#"{"__REALTIME_TIMESTAMP":"1","SYSLOG_IDENTIFIER":"odoogate","ODOOGATE_REASON":[108,105,110,101,10,116,119,111]}"#;
    let entry = parse_entry(line.as_bytes()).unwrap();
    assert_eq!(entry.field("ODOOGATE_REASON"), Some("line\ntwo"));
}

#[test]
fn invalid_utf8_bytes_are_replaced() {
    let line = r#"{"__REALTIME_TIMESTAMP":"1","ODOOGATE_PATH":[47,255,120]}"#;
    let entry = parse_entry(line.as_bytes()).unwrap();
    assert_eq!(entry.field("ODOOGATE_PATH"), Some("/\u{FFFD}x"));
}

#[test]
fn null_value_is_left_out() {
    let line = r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":null,"ODOOGATE_EVENT":"call"}"#;
    let entry = parse_entry(line.as_bytes()).unwrap();
    assert_eq!(entry.field("MESSAGE"), None);
    assert_eq!(entry.field("ODOOGATE_EVENT"), Some("call"));
}

#[test]
fn repeated_field_keeps_first_value() {
    let line =
        r#"{"__REALTIME_TIMESTAMP":"1","A":["first","second"],"B":[[104,105],[120]],"C":[]}"#;
    let entry = parse_entry(line.as_bytes()).unwrap();
    assert_eq!(entry.field("A"), Some("first"));
    assert_eq!(entry.field("B"), Some("hi"));
    assert_eq!(
        entry.field("C"),
        Some(""),
        "an empty array is an empty binary value"
    );
}

#[test]
fn number_value_is_invalid() {
    let line = r#"{"__REALTIME_TIMESTAMP":"1","ODOOGATE_UID":7}"#;
    let error = parse_entry(line.as_bytes()).unwrap_err();
    assert!(matches!(error, EntryError::InvalidValue(name) if name == "ODOOGATE_UID"));
}

#[test]
fn missing_timestamp_is_invalid() {
    let error = parse_entry(br#"{"MESSAGE":"x"}"#).unwrap_err();
    assert!(matches!(error, EntryError::MissingTimestamp));
    let error = parse_entry(br#"{"__REALTIME_TIMESTAMP":"yesterday"}"#).unwrap_err();
    assert!(matches!(error, EntryError::InvalidTimestamp));
}

#[test]
fn invalid_line_names_its_number() {
    let text = format!("{DENY_LINE}\n\n[1,2]\n");
    let error = parse_all(&text, &no_filter()).unwrap_err();
    assert!(
        matches!(
            error,
            ReaderError::InvalidEntry {
                line: 3,
                source: EntryError::NotObject,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("test input line 3"), "{error}");
}

#[test]
fn partial_last_line_is_skipped() {
    let partial = &DENY_LINE[..DENY_LINE.len() / 2];
    let entries = parse_all(&format!("{DENY_LINE}\n{partial}"), &no_filter()).unwrap();
    assert_eq!(entries.len(), 1);

    let entries = parse_all(&format!("{DENY_LINE}\n{DENY_LINE}"), &no_filter()).unwrap();
    assert_eq!(entries.len(), 2, "a complete last line without a newline is read");

    let error = parse_all(&format!("{partial}\n{DENY_LINE}\n"), &no_filter()).unwrap_err();
    assert!(matches!(error, ReaderError::InvalidEntry { line: 1, .. }), "{error}");
}

#[test]
fn overlong_line_is_rejected() {
    let text = format!("{DENY_LINE}\n{DENY_LINE}\n");
    let error = parse_lines(
        text.as_bytes(),
        "test input",
        &no_filter(),
        DENY_LINE.len() - 1,
        LineKinds::JournalEntries,
    )
    .unwrap_err();
    assert!(
        matches!(error, ReaderError::LineTooLong { line: 1, .. }),
        "{error}"
    );

    let parsed = parse_lines(text.as_bytes(), "test input", &no_filter(), DENY_LINE.len(), LineKinds::JournalEntries).unwrap();
    assert_eq!(parsed.entries.len(), 2, "a line of exactly the limit is read");
}

#[test]
fn other_identifiers_are_skipped() {
    let other = r#"{"__REALTIME_TIMESTAMP":"1","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"x"}"#;
    let entries = parse_all(&format!("{other}\n{DENY_LINE}\n"), &no_filter()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].field("SYSLOG_IDENTIFIER"), Some("odoogate"));
}

// === filters ===

#[test]
fn filters_apply_to_entries() {
    let allow = entry(&[
        ("ODOOGATE_DECISION", "allow"),
        ("ODOOGATE_INTEGRATION", "n8n"),
        ("ODOOGATE_MODEL", "res.partner"),
    ]);
    let deny = entry(&[
        ("ODOOGATE_DECISION", "deny"),
        ("ODOOGATE_INTEGRATION", "n8n"),
        ("ODOOGATE_MODEL", "crm.lead"),
    ]);
    let error = entry(&[("ODOOGATE_EVENT", "decode_error")]);

    let filter = |query: AuditQuery| EntryFilter::for_journal(&query);
    let by_decision = filter(AuditQuery {
        decision: Some("deny".into()),
        ..Default::default()
    });
    assert!(!by_decision.matches(&allow));
    assert!(by_decision.matches(&deny));
    assert!(!by_decision.matches(&error));

    let by_integration = filter(AuditQuery {
        integration: Some("n8n".into()),
        ..Default::default()
    });
    assert!(by_integration.matches(&allow));
    assert!(!by_integration.matches(&error));

    let unidentified_call = entry(&[("ODOOGATE_EVENT", "call"), ("ODOOGATE_DECISION", "would_deny")]);
    let unidentified = filter(AuditQuery {
        integration: Some("unidentified".into()),
        ..Default::default()
    });
    assert!(unidentified.matches(&unidentified_call));
    assert!(!unidentified.matches(&allow));

    let by_model = filter(AuditQuery {
        model: Some("res.*".into()),
        ..Default::default()
    });
    assert!(by_model.matches(&allow));
    assert!(!by_model.matches(&deny));

    let by_exact_model = filter(AuditQuery {
        model: Some("crm.lead".into()),
        ..Default::default()
    });
    assert!(by_exact_model.matches(&deny));
    assert!(!by_exact_model.matches(&allow));
}

#[test]
fn glob_matches_stars_and_marks() {
    assert!(glob_match("res.*", "res.partner"));
    assert!(glob_match("*.line", "sale.order.line"));
    assert!(glob_match("sale.*.line", "sale.order.line"));
    assert!(glob_match("*", ""));
    assert!(glob_match("crm.lea?", "crm.lead"));
    assert!(glob_match("a*b*c", "aXbYbZc"));
    assert!(!glob_match("res.*", "crm.lead"));
    assert!(!glob_match("crm.lea?", "crm.leads"));
    assert!(!glob_match("a*b*c", "aXbYbZ"));
    assert!(!glob_match("crm.lead", "crm.lead.tag"));
}

// === since ===

#[test]
fn since_shorthand_becomes_ago() {
    assert_eq!(normalize_since("7d"), "7 days ago");
    assert_eq!(normalize_since("2h"), "2 hours ago");
    assert_eq!(normalize_since(" 30m "), "30 minutes ago");
    assert_eq!(normalize_since("45s"), "45 seconds ago");
    assert_eq!(normalize_since("2w"), "2 weeks ago");
    assert_eq!(normalize_since("1h ago"), "1h ago");
    assert_eq!(normalize_since("2026-12-01"), "2026-12-01");
    assert_eq!(normalize_since("d"), "d");
    assert_eq!(normalize_since("-5m"), "-5m");
}

fn cutoff(value: &str, now: Timestamp) -> Result<Timestamp, ReaderError> {
    since_cutoff(value, now, &TimeZone::UTC)
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[test]
fn file_since_resolves_relative_times() {
    let now = at("2026-12-10T12:00:00Z");
    assert_eq!(cutoff("2h", now).unwrap(), now - 2.hours());
    assert_eq!(cutoff("30 minutes ago", now).unwrap(), now - 30.minutes());
    assert_eq!(cutoff("7d", now).unwrap(), at("2026-12-03T12:00:00Z"));
    assert_eq!(cutoff("now", now).unwrap(), now);
    assert_eq!(cutoff("today", now).unwrap(), at("2026-12-10T00:00:00Z"));
    assert_eq!(
        cutoff("yesterday", now).unwrap(),
        at("2026-12-09T00:00:00Z")
    );
}

#[test]
fn file_since_resolves_absolute_times() {
    let now = at("2026-12-10T12:00:00Z");
    assert_eq!(
        cutoff("2026-12-01", now).unwrap(),
        at("2026-12-01T00:00:00Z")
    );
    assert_eq!(
        cutoff("2026-12-01 08:30:00", now).unwrap(),
        at("2026-12-01T08:30:00Z")
    );
    assert_eq!(
        cutoff("2026-12-01T08:30:00+02:00", now).unwrap(),
        at("2026-12-01T06:30:00Z")
    );

    let berlin = TimeZone::get("Europe/Berlin");
    if let Ok(berlin) = berlin {
        assert_eq!(
            since_cutoff("2026-12-01 08:30", now, &berlin).unwrap(),
            at("2026-12-01T07:30:00Z"),
            "local dates use the time zone"
        );
    }
}

#[test]
fn file_filter_drops_older_entries() {
    let query = AuditQuery {
        since: Some("1h".into()),
        ..Default::default()
    };
    let now = at("2026-12-10T12:00:00Z");
    let filter = EntryFilter::for_file(&query, now, &TimeZone::UTC).unwrap();
    let at_time = |time: Timestamp| AuditEntry {
        timestamp: SystemTime::from(time),
        ..entry(&[])
    };
    assert!(filter.matches(&at_time(now - 30.minutes())));
    assert!(filter.matches(&at_time(now - 1.hour())));
    assert!(!filter.matches(&at_time(now - 61.minutes())));
}

#[test]
fn file_since_rejects_bad_values() {
    let now = Timestamp::UNIX_EPOCH + 1000.hours();
    for value in ["in two hours", "2h30", "3 days", "1hour"] {
        let error = cutoff(value, now).unwrap_err();
        assert!(
            matches!(&error, ReaderError::InvalidSince { value: v, .. } if v == value),
            "{error}"
        );
        let prefix = format!("invalid --since value {value:?}: expected a shorthand such as 30m, 2h or 7d");
        assert!(error.to_string().starts_with(&prefix), "{error}");
    }
}

// === journalctl ===

#[test]
fn journalctl_args_match_exact_filters() {
    let query = AuditQuery {
        since: Some("2h".into()),
        integration: Some("n8n".into()),
        decision: Some("deny".into()),
        model: Some("crm.lead".into()),
        journal_directory: Some("/var/log/journal/x".into()),
        file: None,
    };
    let args: Vec<String> = journalctl_args(&query)
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "--output=json",
            "--no-pager",
            "--all",
            "--quiet",
            "--directory",
            "/var/log/journal/x",
            "--since=2 hours ago",
            "SYSLOG_IDENTIFIER=odoogate",
            "ODOOGATE_INTEGRATION=n8n",
            "ODOOGATE_DECISION=deny",
            "ODOOGATE_MODEL=crm.lead",
        ]
    );

    let glob = AuditQuery {
        model: Some("crm.*".into()),
        ..Default::default()
    };
    let args = journalctl_args(&glob);
    assert!(
        !args
            .iter()
            .any(|a| a.to_string_lossy().starts_with("ODOOGATE_MODEL")),
        "a glob is filtered after reading"
    );
}

#[test]
fn missing_journalctl_is_typed() {
    let missing = Command::new("/nonexistent/bin/journalctl");
    let error = read_journal(&AuditQuery::default(), missing).unwrap_err();
    assert!(
        matches!(error, ReaderError::JournalctlMissing { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("--file"), "{error}");
}

fn journalctl_installed() -> bool {
    Command::new("journalctl")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn journalctl_failure_keeps_stderr() {
    if !journalctl_installed() {
        eprintln!("skipped: journalctl is not installed");
        return;
    }
    let query = AuditQuery {
        journal_directory: Some("/nonexistent/odoogate-journal".into()),
        ..Default::default()
    };
    let error = read(&query).unwrap_err();
    let ReaderError::JournalctlFailed { status, stderr } = &error else {
        panic!("expected JournalctlFailed, got {error}");
    };
    assert!(!status.success());
    assert!(stderr.contains("/nonexistent/odoogate-journal"), "{stderr}");
}

#[test]
fn empty_journal_directory_reads_nothing() {
    if !journalctl_installed() {
        eprintln!("skipped: journalctl is not installed");
        return;
    }
    let directory =
        std::env::temp_dir().join(format!("odoogate-empty-journal-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let result = read(&AuditQuery {
        journal_directory: Some(directory.clone()),
        ..Default::default()
    });
    std::fs::remove_dir_all(&directory).unwrap();
    assert_eq!(result.unwrap(), AuditRead::default());
}

// === files ===

#[test]
fn reads_back_json_lines_file() {
    let path = std::env::temp_dir().join(format!("odoogate-reader-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);

    let mut record = AuditRecord::new(
        AuditEvent::Call,
        "deny n8n crm.lead.unlink via json2: no rule allows unlink",
    );
    record.decision = Some(Decision::Deny);
    record.integration = Some("n8n".into());
    record.identity = Some(Identity::ApiKey);
    record.model = Some("crm.lead".into());
    record.method = Some("unlink".into());
    record.reason = Some("no rule allows unlink\nrule n8n.read covers read only".into());
    let mut other = AuditRecord::new(AuditEvent::Call, "allow web res.partner.read via web");
    other.integration = Some("web".into());
    {
        let mut sink = JsonLinesSink::append_to(&path).unwrap();
        sink.write(&record);
        sink.write(&other);
    }

    let query = AuditQuery {
        file: Some(path.clone()),
        integration: Some("n8n".into()),
        since: Some("1h".into()),
        ..Default::default()
    };
    let entries = read(&query);
    std::fs::remove_file(&path).unwrap();
    let entries = entries.unwrap().entries;

    assert_eq!(entries.len(), 1);
    for (name, value) in record.fields() {
        assert_eq!(entries[0].field(name), Some(value.as_ref()), "{name}");
    }
    assert_eq!(entries[0].field("MESSAGE"), Some(record.message.as_str()));
}

/// A JSON line carries the time its record was encoded, and records
/// encoded on different threads can reach the file in another order, so a
/// file's lines are not always oldest first.
#[test]
fn file_entries_oldest_first() {
    let path = std::env::temp_dir().join(format!("odoogate-reader-order-{}.jsonl", std::process::id()));
    let lines = [
        r#"{"__REALTIME_TIMESTAMP":"1780000000000300","SYSLOG_IDENTIFIER":"odoogate","MESSAGE":"third"}"#,
        r#"{"__REALTIME_TIMESTAMP":"1780000000000100","SYSLOG_IDENTIFIER":"odoogate","MESSAGE":"first"}"#,
        r#"{"__REALTIME_TIMESTAMP":"1780000000000200","SYSLOG_IDENTIFIER":"odoogate","MESSAGE":"second"}"#,
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let entries = read(&AuditQuery { file: Some(path.clone()), ..Default::default() });
    std::fs::remove_file(&path).unwrap();
    let messages: Vec<_> = entries.unwrap().entries.iter().map(|entry| entry.field("MESSAGE").unwrap().to_owned()).collect();

    assert_eq!(messages, ["first", "second", "third"]);
}

fn parse_file_text(text: &str) -> Result<ParsedLines, ReaderError> {
    parse_lines(text.as_bytes(), "daemon.err", &no_filter(), MAX_LINE_BYTES, LineKinds::MixedWithLogLines)
}

/// A writer that the test reads back after tracing wrote to it.
#[derive(Clone, Default)]
struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Returns the daemon's log lines for two events, formatted by
/// tracing-subscriber as `--log-format json` (or `text`) formats them.
fn daemon_log_lines(json: bool) -> String {
    let buffer = SharedBuffer::default();
    let writer = buffer.clone();
    let builder = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false);
    let log = || {
        tracing::info!("No journald found: writing audit records to stderr as JSON lines");
        tracing::info!(signal = "SIGTERM", config = "/etc/odoogate/odoogate.toml", "Stopping");
    };
    if json {
        tracing::subscriber::with_default(builder.json().finish(), log);
    } else {
        tracing::subscriber::with_default(builder.finish(), log);
    }
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    text
}

#[test]
fn log_lines_between_records_are_skipped() {
    for json in [false, true] {
        let log = daemon_log_lines(json);
        let text = format!("{log}{DENY_LINE}\nthread 'main' panicked at src/main.rs:1:1:\n42\n\n{DENY_LINE}\n{log}");
        let parsed = parse_file_text(&text).unwrap();
        assert_eq!(parsed.entries.len(), 2, "json log lines: {json}");
        assert_eq!(parsed.entry_lines, 2, "json log lines: {json}");
        assert_eq!(parsed.skipped_lines, 6, "json log lines: {json}");
    }
}

#[test]
fn journal_entries_reject_log_lines() {
    let log = daemon_log_lines(true);
    let error = parse_all(&format!("{DENY_LINE}\n{log}"), &no_filter()).unwrap_err();
    assert!(matches!(error, ReaderError::InvalidEntry { line: 2, .. }), "journalctl output holds entries only: {error}");
}

/// A line that is meant as an audit record (a journal field name among its
/// keys, or first in a line that is not JSON) must be valid, even among log
/// lines.
#[test]
fn invalid_record_among_log_lines_fails() {
    let log = daemon_log_lines(false);
    let cases = [
        (r#"{"__REALTIME_TIMESTAMP":"yesterday","SYSLOG_IDENTIFIER":"odoogate"}"#, "__REALTIME_TIMESTAMP is not a count"),
        (r#"{"SYSLOG_IDENTIFIER":"odoogate","ODOOGATE_EVENT":"call"}"#, "missing __REALTIME_TIMESTAMP"),
        (r#"{"__REALTIME_TIMESTAMP":"1","ODOOGATE_UID":7}"#, "field ODOOGATE_UID is neither"),
        (r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"cut"#, "not JSON"),
        (r#" { "ODOOGATE_EVENT": "call", }"#, "not JSON"),
    ];
    for (line, reason) in cases {
        let error = parse_file_text(&format!("{log}{line}\n{DENY_LINE}\n")).unwrap_err();
        assert!(matches!(error, ReaderError::InvalidEntry { line: 3, .. }), "{line}: {error}");
        assert!(error.to_string().contains(reason), "{line}: {error}");
    }
}

#[test]
fn unfinished_last_record_after_log_lines() {
    let log = daemon_log_lines(true);
    let partial = &DENY_LINE[..DENY_LINE.len() / 2];
    let parsed = parse_file_text(&format!("{DENY_LINE}\n{log}{partial}")).unwrap();
    assert_eq!(parsed.entries.len(), 1);
    assert_eq!(parsed.skipped_lines, 2);
}

#[test]
fn journal_field_names() {
    for name in ["__REALTIME_TIMESTAMP", "MESSAGE", "ODOOGATE_EVENT", "_PID", "X2"] {
        assert!(is_journal_field_name(name), "{name}");
    }
    for name in ["", "_", "__", "42", "timestamp", "fields", "threadName", "Message", "ODOOGATE-EVENT"] {
        assert!(!is_journal_field_name(name), "{name}");
    }
    assert!(first_key_is_journal_field(br#"  {  "__CURSOR":"s=1"#));
    assert!(!first_key_is_journal_field(br#"{"timestamp":"2026-05-01T10:00:00Z","level":"INFO""#));
    assert!(!first_key_is_journal_field(br#"{"MESSAGE"#), "an unterminated key");
    assert!(!first_key_is_journal_field(b"MESSAGE"));
}

/// Writes `text` to a new file and reads it as `odoogate audit --file` does.
fn read_file_text(name: &str, text: &str) -> Result<AuditRead, ReaderError> {
    let path = std::env::temp_dir().join(format!("odoogate-reader-{name}-{}.log", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let read = read(&AuditQuery { file: Some(path.clone()), ..Default::default() });
    std::fs::remove_file(&path).unwrap();
    read
}

#[test]
fn read_counts_skipped_lines() {
    let log = daemon_log_lines(true);
    let read = read_file_text("mixed", &format!("{log}{DENY_LINE}\n")).unwrap();
    assert_eq!(read.entries.len(), 1);
    assert_eq!(read.skipped_lines, 2);
}

#[test]
fn file_of_log_lines_only_is_rejected() {
    let log = daemon_log_lines(false);
    let error = read_file_text("log-only", &format!("{log}\n{log}")).unwrap_err();
    assert!(matches!(error, ReaderError::NoAuditRecord { skipped_lines: 4, .. }), "{error}");
    assert!(error.to_string().contains("contains no audit record: none of its 4 non-empty lines is a JSON object"), "{error}");

    let error = read_file_text("one-log-line", "plain text\n\n").unwrap_err();
    assert!(error.to_string().contains("contains no audit record: its only non-empty line is not a JSON object"), "{error}");
}

#[test]
fn empty_file_reads_nothing() {
    assert_eq!(read_file_text("empty", "").unwrap(), AuditRead::default());
    assert_eq!(read_file_text("blank", "\n \n").unwrap(), AuditRead::default());
}

/// A file with records that the filters all leave out still has records,
/// so it is no error.
#[test]
fn filtered_out_records_are_no_error() {
    let query_file = |name: &str| {
        let path = std::env::temp_dir().join(format!("odoogate-reader-{name}-{}.log", std::process::id()));
        std::fs::write(&path, format!("{}{DENY_LINE}\n", daemon_log_lines(false))).unwrap();
        let read = read(&AuditQuery { file: Some(path.clone()), integration: Some("nobody".into()), ..Default::default() });
        std::fs::remove_file(&path).unwrap();
        read
    };
    let read = query_file("filtered").unwrap();
    assert_eq!(read.entries, Vec::new());
    assert_eq!(read.skipped_lines, 2);
}

#[test]
fn journal_files_are_found() {
    let directory = std::env::temp_dir().join(format!("odoogate-journal-files-{}", std::process::id()));
    let machine = directory.join("0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&machine).unwrap();
    std::fs::write(directory.join("notes.txt"), "").unwrap();
    let empty = has_journal_files(&directory);
    std::fs::write(machine.join("system.journal"), "").unwrap();
    let in_machine_directory = has_journal_files(&directory);
    std::fs::remove_file(machine.join("system.journal")).unwrap();
    std::fs::write(directory.join("user-1000@0005f-0001.journal~"), "").unwrap();
    let unclean_at_top = has_journal_files(&directory);
    std::fs::remove_dir_all(&directory).unwrap();

    assert!(!empty, "a directory without *.journal files");
    assert!(in_machine_directory, "a file in a machine id directory");
    assert!(unclean_at_top, "a *.journal~ file in the directory itself");
    assert!(!has_journal_files(&directory), "a missing directory");
}

#[test]
fn missing_file_is_typed() {
    let query = AuditQuery {
        file: Some("/nonexistent/audit.jsonl".into()),
        ..Default::default()
    };
    let error = read(&query).unwrap_err();
    assert!(matches!(error, ReaderError::OpenFile { .. }), "{error}");
    assert!(error.to_string().contains("/nonexistent/audit.jsonl"));
}

// === printing ===

/// A call that Odoo never responded to has no outcome: the table shows the
/// status odoogate gave the client instead of a dash.
#[test]
fn table_shows_status_without_outcome() {
    let entries = vec![entry(&[
        ("ODOOGATE_EVENT", "call"),
        ("ODOOGATE_DECISION", "allow"),
        ("ODOOGATE_HTTP_STATUS", "502"),
        ("ODOOGATE_REASON", "(no response: Odoo is unreachable)"),
    ])];

    let mut out = Vec::new();
    write_table(&entries, &mut out, &TimeZone::UTC).unwrap();
    let text = String::from_utf8(out).unwrap();

    assert!(text.lines().nth(1).unwrap().split_whitespace().any(|cell| cell == "http:502"), "{text}");
}

#[test]
fn table_shows_one_row_per_entry() {
    let mut entries = parse_all(DENY_LINE, &no_filter()).unwrap();
    entries.push(entry(&[
        ("ODOOGATE_EVENT", "decode_error"),
        ("ODOOGATE_ERROR_CODE", "invalid_xml"),
        ("ODOOGATE_COUNT", "12"),
        ("ODOOGATE_PATH", "/xmlrpc/2/object"),
        ("ODOOGATE_COMM", "python3"),
        ("ODOOGATE_PID", "4242"),
    ]));

    let mut out = Vec::new();
    write_table(&entries, &mut out, &TimeZone::UTC).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    assert_eq!(lines.len(), 3);
    for header in [
        "TIME",
        "DECISION",
        "INTEGRATION",
        "MODEL.METHOD",
        "OUTCOME",
        "LATENCY",
        "SOURCE",
    ] {
        assert!(lines[0].contains(header), "{header} in {}", lines[0]);
    }
    let deny: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        deny,
        [
            "2026-05-28",
            "20:26:40",
            "deny",
            "website-form",
            "api_key",
            "xmlrpc",
            "crm.lead.unlink",
            "fault:3",
            "1.8ms",
            "10.0.0.7:53412"
        ]
    );
    let error: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        error[2..],
        [
            "decode_error",
            "-",
            "-",
            "-",
            "/xmlrpc/2/object",
            "invalid_xml",
            "×12",
            "-",
            "python3[4242]"
        ]
    );
    assert_eq!(
        lines[1].find("deny"),
        lines[2].find("decode_error"),
        "columns are aligned"
    );
}

#[test]
fn table_escapes_control_characters() {
    let entries = vec![entry(&[
        ("ODOOGATE_MODEL", "res.partner\u{1b}[2J\r\u{202e}"),
        ("ODOOGATE_METHOD", "read"),
    ])];
    let mut out = Vec::new();
    write_table(&entries, &mut out, &TimeZone::UTC).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{202e}'),
        "{text:?}"
    );
    assert!(
        text.contains(r"res.partner\u{1b}[2J\r\u{202e}.read"),
        "{text}"
    );
}

#[test]
fn table_cuts_long_cells() {
    let long_model = "x".repeat(200);
    let entries = vec![entry(&[("ODOOGATE_MODEL", &long_model)])];
    let mut out = Vec::new();
    write_table(&entries, &mut out, &TimeZone::UTC).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(&format!("{}…", "x".repeat(47))), "{text}");
    assert!(!text.contains(&"x".repeat(48)));
}

#[test]
fn json_output_round_trips() {
    let entries = parse_all(&format!("{DENY_LINE}\n{DENY_LINE}\n"), &no_filter()).unwrap();
    let mut out = Vec::new();
    print_json(&entries, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 2);
    let again = parse_all(&text, &no_filter()).unwrap();
    assert_eq!(again, entries);
}

#[test]
fn journalctl_parse_error_wins_over_kill() {
    // A shell replaces journalctl, ignoring journalctl's arguments. It prints
    // a line that is not an entry and then keeps writing, so the reader
    // abandons and kills it.
    let mut fake = Command::new("sh");
    fake.args(["-c", "echo 'not json'; exec yes '{}'", "sh"]);

    let error = read_journal(&AuditQuery::default(), fake).unwrap_err();
    assert!(
        matches!(
            error,
            ReaderError::InvalidEntry {
                line: 1,
                source: EntryError::NotJson(_),
                ..
            }
        ),
        "{error}"
    );
}

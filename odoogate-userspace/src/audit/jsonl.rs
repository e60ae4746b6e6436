//! Writes audit records as JSON lines, for hosts without journald.
//!
//! Each line is one object shaped like an entry of `journalctl -o json`:
//! `__REALTIME_TIMESTAMP` (microseconds since the Unix epoch, as a string),
//! `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER` and the `ODOOGATE_*` fields, all
//! values strings. So `odoogate audit --file` reads these lines with the same
//! code that reads journalctl's output.

use super::journald::{MAX_FIELD_VALUE_BYTES, bounded_text, for_each_entry_field};
use super::ratelimit::FailureReportThrottle;
use super::record::{FieldValue, MAX_AUDIT_RECORD_IDS};
use super::{AuditRecord, AuditSink, Encoder};
use crate::json_text::{push_escaped, push_string};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Permissions of a newly created audit file: audit records name the
/// integrations and what they touched, so only the owner and group read them.
const AUDIT_FILE_MODE: u32 = 0o640;

/// An error opening an audit file.
#[derive(Debug, thiserror::Error)]
#[error("failed to open the audit file {} for appending: {source}; check that its directory exists and is writable", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// An [`AuditSink`] that writes one JSON object per line to `W`.
///
/// Each line is written with one `write_all` and flushed, so with a file
/// opened for appending a line from this sink is never interleaved with
/// another writer's. A failed write is counted (see
/// [`JsonLinesSink::failures`]) and reported through `tracing` at most once a
/// minute.
#[derive(Debug)]
pub struct JsonLinesSink<W> {
    writer: W,
    failures: u64,
    throttle: FailureReportThrottle,
}

// === impl JsonLinesSink ===

impl<W: Write + Send> JsonLinesSink<W> {
    pub fn new(writer: W) -> Self {
        Self {
            writer,
            failures: 0,
            throttle: FailureReportThrottle::default(),
        }
    }

    /// Returns the number of records that could not be written.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Returns the writer, for example to read back a test buffer.
    pub fn into_inner(self) -> W {
        self.writer
    }

    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        self.writer.write_all(lines)?;
        self.writer.flush()
    }

    fn count_failures(&mut self, records: usize, error: &io::Error) {
        self.failures += records as u64;
        if let Some(unreported) = self.throttle.failures(records as u64, Instant::now()) {
            tracing::warn!(
                error = %error,
                failed_records = unreported,
                total_failed_records = self.failures,
                "Failed to write audit records as JSON lines",
            );
        }
    }
}

impl JsonLinesSink<io::Stderr> {
    /// Creates a sink that writes to standard error.
    pub fn stderr() -> Self {
        Self::new(io::stderr())
    }
}

impl JsonLinesSink<File> {
    /// Opens `path` for appending, creating it with mode 0640 if missing.
    pub fn append_to(path: &Path) -> Result<Self, OpenError> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(AUDIT_FILE_MODE)
            .open(path)
            .map(Self::new)
            .map_err(|source| OpenError {
                path: path.to_owned(),
                source,
            })
    }
}

impl<W: Write + Send> AuditSink for JsonLinesSink<W> {
    fn write(&mut self, record: &AuditRecord) {
        self.write_batch(std::slice::from_ref(record));
    }

    /// Writes the records' lines with one `write_all`, so that a batch costs
    /// one system call and stays whole in a file opened for appending.
    fn write_batch(&mut self, records: &[AuditRecord]) {
        let now = SystemTime::now();
        let mut lines = String::new();
        for record in records {
            push_line(&mut lines, record, now);
        }
        if let Err(error) = self.write_lines(lines.as_bytes()) {
            self.count_failures(records.len(), &error);
        }
    }

    fn encoder(&self) -> Option<Arc<dyn Encoder>> {
        Some(Arc::new(JsonLinesEncoder))
    }

    /// Writes the lines with one `write_all`, as [`AuditSink::write_batch`]
    /// does.
    fn write_encoded(&mut self, entries: &[Vec<u8>]) {
        let result = match entries {
            [line] => self.write_lines(line),
            _ => self.write_lines(&entries.concat()),
        };
        if let Err(error) = result {
            self.count_failures(entries.len(), &error);
        }
    }
}

/// Encodes records as the lines of [`JsonLinesSink`], each with the time it
/// was encoded, which is when its call ended, as `__REALTIME_TIMESTAMP`.
struct JsonLinesEncoder;

impl Encoder for JsonLinesEncoder {
    fn encode(&self, record: &AuditRecord) -> Vec<u8> {
        encode_line(record, SystemTime::now()).into_bytes()
    }
}

/// Encodes `record`, written at `realtime`, as one JSON object and a newline.
/// Keys keep journald's order: the timestamp, then the fields as
/// [`super::journald::entry_fields`] lists them.
pub fn encode_line(record: &AuditRecord, realtime: SystemTime) -> String {
    let mut line = String::new();
    push_line(&mut line, record, realtime);
    line
}

/// Appends the line of `record` to `out`, as [`encode_line`] returns it.
/// Numbers and IPv4 addresses are written straight into the line, without
/// `fmt` or a `String` of their own.
fn push_line(out: &mut String, record: &AuditRecord, realtime: SystemTime) {
    out.reserve(512 + record.message.len());
    out.push('{');
    out.push_str("\"__REALTIME_TIMESTAMP\":");
    push_quoted(out, |out| push_decimal(out, realtime_micros(realtime)));
    for_each_entry_field(record, |name, value| {
        // Field names are journald names (uppercase letters, digits and
        // `_`), which JSON needs no escapes for.
        debug_assert!(name.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_'));
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        match value {
            FieldValue::Unsigned(number) => push_quoted(out, |out| push_decimal(out, number)),
            FieldValue::Signed(number) => push_quoted(out, |out| {
                if number < 0 {
                    out.push('-');
                }
                push_decimal(out, number.unsigned_abs());
            }),
            FieldValue::Ip(IpAddr::V4(address)) => push_quoted(out, |out| {
                for (index, octet) in address.octets().into_iter().enumerate() {
                    if index > 0 {
                        out.push('.');
                    }
                    push_decimal(out, octet);
                }
            }),
            // Ids and names are written straight into the line, without
            // the `String` that `bounded_text` would build, unless the
            // names are long enough to be cut.
            FieldValue::RecordIds(ids, total) => push_quoted(out, |out| push_record_ids(out, ids, total)),
            FieldValue::Names(names) if joined_len(names) <= MAX_FIELD_VALUE_BYTES => push_quoted(out, |out| {
                for (index, name) in names.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    push_escaped(out, name);
                }
            }),
            other => push_string(out, &bounded_text(other)),
        }
    });
    out.push_str("}\n");
}

/// Returns the length of `names` joined with commas.
fn joined_len(names: &[String]) -> usize {
    names.iter().map(String::len).sum::<usize>() + names.len().saturating_sub(1)
}

/// Appends the text of [`FieldValue::RecordIds`]: at most
/// [`MAX_AUDIT_RECORD_IDS`] ids, well below [`MAX_FIELD_VALUE_BYTES`], and
/// no character that JSON escapes.
fn push_record_ids(out: &mut String, ids: &[i64], total: Option<usize>) {
    const _: () = assert!(MAX_AUDIT_RECORD_IDS * 24 + 64 < MAX_FIELD_VALUE_BYTES);
    let listed = &ids[..ids.len().min(MAX_AUDIT_RECORD_IDS)];
    for (index, &id) in listed.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_decimal(out, id);
    }
    let total = total.unwrap_or(ids.len()).max(ids.len());
    if total > listed.len() {
        out.push_str(",…(+");
        push_decimal(out, total - listed.len());
        out.push(')');
    }
}

fn push_quoted(out: &mut String, write: impl FnOnce(&mut String)) {
    out.push('"');
    write(out);
    out.push('"');
}

/// Appends the decimal digits of `number`.
fn push_decimal(out: &mut String, number: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(number));
}


/// Returns microseconds since the Unix epoch, 0 for a clock set before it.
fn realtime_micros(realtime: SystemTime) -> u128 {
    realtime
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::journald::entry_fields;
    use crate::audit::{AuditEvent, Decision, Identity};
    use serde_json::{Map, Value};
    use std::time::Duration;

    fn allow_record() -> AuditRecord {
        let mut record = AuditRecord::new(AuditEvent::Call, "allow n8n res.partner.read via json2");
        record.decision = Some(Decision::Allow);
        record.integration = Some("n8n".to_owned());
        record.identity = Some(Identity::ApiKey);
        record.protocol = Some("json2");
        record.model = Some("res.partner".to_owned());
        record.method = Some("read".to_owned());
        record.record_ids = vec![7, 8];
        record.latency_us = Some(1250);
        record.key_fingerprint = Some("ab".repeat(32));
        record
    }

    fn parse(line: &str) -> Map<String, Value> {
        match serde_json::from_str(line).unwrap() {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn line_has_journal_fields() {
        let realtime = UNIX_EPOCH + Duration::from_micros(1_780_000_000_123_456);
        let line = encode_line(&allow_record(), realtime);
        assert!(line.ends_with("}\n"));
        assert_eq!(line.matches('\n').count(), 1, "one line per record");

        let object = parse(&line);
        assert_eq!(object["__REALTIME_TIMESTAMP"], "1780000000123456");
        assert_eq!(object["MESSAGE"], "allow n8n res.partner.read via json2");
        assert_eq!(object["PRIORITY"], "6");
        assert_eq!(object["SYSLOG_IDENTIFIER"], "odoogate");
        assert_eq!(object["ODOOGATE_DECISION"], "allow");
        assert_eq!(object["ODOOGATE_RECORD_IDS"], "7,8");
        assert_eq!(object["ODOOGATE_LATENCY_US"], "1250");
    }

    #[test]
    fn line_has_every_record_field() {
        let record = allow_record();
        let object = parse(&encode_line(&record, SystemTime::now()));
        for (name, value) in record.fields() {
            assert_eq!(object[name], value.as_ref(), "{name}");
        }
        assert_eq!(object.len(), record.fields().len() + 4);
    }

    #[test]
    fn numbers_and_addresses_match_display() {
        let mut record = allow_record();
        record.uid = Some(i64::MIN);
        record.src_port = Some(0);
        record.pid = Some(u32::MAX);
        record.conn_id = Some(u64::MAX);
        record.http_status = Some(200);
        record.count = Some(10);
        record.record_ids = vec![-1, 0, i64::MAX];
        record.fields = vec!["name".to_owned(), "a\"b".to_owned()];
        for address in ["0.0.0.0", "192.0.2.255", "10.20.3.4", "2001:db8::1", "::ffff:192.0.2.1"] {
            record.src_ip = Some(address.parse().unwrap());
            let object = parse(&encode_line(&record, SystemTime::now()));
            for (name, value) in entry_fields(&record) {
                assert_eq!(object[name], value.as_ref(), "{name} with {address}");
            }
        }
    }

    /// Encodes a line from [`entry_fields`], escaped by serde_json, as the
    /// writer did before it visited the fields.
    fn line_from_entry_fields(record: &AuditRecord, realtime: SystemTime) -> String {
        let mut line = format!("{{\"__REALTIME_TIMESTAMP\":\"{}\"", realtime_micros(realtime));
        for (name, value) in entry_fields(record) {
            line.push(',');
            line.push_str(&serde_json::to_string(name).unwrap());
            line.push(':');
            line.push_str(&serde_json::to_string(value.as_ref()).unwrap());
        }
        line.push_str("}\n");
        line
    }

    #[test]
    fn line_matches_entry_fields() {
        let realtime = UNIX_EPOCH + Duration::from_micros(1_780_000_000_123_456);
        let mut records = Vec::new();
        let mut record = allow_record();
        record.message = "a\"b\\c\u{0}\u{1f}\u{7f}\t\r\n\u{8}\u{c} é \u{2028} 😀 ".repeat(3);
        record.uid = Some(-42);
        record.src_ip = Some("2001:db8::1".parse().unwrap());
        record.src_port = Some(65535);
        record.record_ids = (0..60).collect();
        record.record_count = Some(1000);
        record.fields = vec!["name".to_owned(), "a\"b".to_owned(), "c\\d".to_owned(), "\n".to_owned(), String::new()];
        records.push(record.clone());

        // A field list whose joined text is exactly the bound, one byte
        // over it, and over it with escapes in every name.
        let name = "x".repeat(1023);
        let count = MAX_FIELD_VALUE_BYTES / 1024;
        record.fields = vec![name.clone(); count];
        assert_eq!(joined_len(&record.fields), MAX_FIELD_VALUE_BYTES - 1);
        record.fields.last_mut().unwrap().push('y');
        assert_eq!(joined_len(&record.fields), MAX_FIELD_VALUE_BYTES);
        records.push(record.clone());
        record.fields.last_mut().unwrap().push('z');
        records.push(record.clone());
        record.fields = vec![format!("\"{}\u{1}", "é".repeat(300)); count];
        records.push(record.clone());

        // A message over the bound, cut inside a multi-byte character.
        record.fields = vec![];
        record.message = format!("a{}", "é".repeat(MAX_FIELD_VALUE_BYTES));
        records.push(record);

        for record in &records {
            assert!(encode_line(record, realtime) == line_from_entry_fields(record, realtime), "{:.200}", record.message);
        }
    }

    /// Record ids and field names at the edges of what `push_record_ids`
    /// and the names' bound handle give the line that `entry_fields` gives.
    #[test]
    fn ids_and_names_match_entry_fields() {
        let realtime = UNIX_EPOCH + Duration::from_micros(1_780_000_000_123_456);
        let fifty: Vec<i64> = (0..50).collect();
        let sixty: Vec<i64> = (0..60).map(|id| i64::MAX - id).collect();
        let id_cases: [(Vec<i64>, Option<usize>); 14] = [
            (vec![i64::MIN], None),
            (vec![i64::MAX, i64::MIN, 0, -1], None),
            (vec![i64::MIN; 60], None),
            (fifty.clone(), None),
            (fifty.clone(), Some(50)),
            (fifty.clone(), Some(51)),
            (fifty.clone(), Some(3)),
            ((0..51).collect(), None),
            (sixty.clone(), Some(10)),
            (sixty.clone(), Some(60)),
            (sixty.clone(), Some(usize::MAX)),
            (vec![7], Some(0)),
            (vec![7], Some(1000)),
            (Vec::new(), Some(5)),
        ];
        let mut record = allow_record();
        for (ids, count) in id_cases {
            record.record_ids = ids;
            record.record_count = count;
            let line = encode_line(&record, realtime);
            assert_eq!(line, line_from_entry_fields(&record, realtime), "ids {:?} count {count:?}", record.record_ids);
            assert_eq!(parse(&line).contains_key("ODOOGATE_RECORD_IDS"), !record.record_ids.is_empty());
        }

        let controls: String = (0u8..0x20).map(char::from).collect();
        let name_cases: Vec<Vec<String>> = vec![
            vec![],
            vec![String::new()],
            vec![String::new(), String::new()],
            vec![controls.clone()],
            controls.chars().map(String::from).collect(),
            vec!["\\\"".to_owned(), "\"\"".to_owned(), ",".to_owned()],
            vec!["\u{7f}\u{80}\u{2028}\u{2029}".to_owned(), "\u{fdd0}\u{fffe}\u{ffff}\u{10ffff}".to_owned()],
            vec!["é".repeat(10), "日本".to_owned(), "😀".to_owned(), "\u{feff}".to_owned()],
            // Joined at the bound, and one byte over it, with a two-byte
            // character where the cut falls.
            vec!["é".repeat(MAX_FIELD_VALUE_BYTES / 2)],
            vec![format!("x{}", "é".repeat(MAX_FIELD_VALUE_BYTES / 2))],
            // Escapes double the written length but not the bounded one.
            vec!["\"".repeat(MAX_FIELD_VALUE_BYTES - 2), "\\".to_owned()],
            vec!["\"".repeat(MAX_FIELD_VALUE_BYTES - 2), "\\\u{1}".to_owned()],
            // Many empty names: the commas alone reach the bound.
            vec![String::new(); MAX_FIELD_VALUE_BYTES + 1],
            vec![String::new(); MAX_FIELD_VALUE_BYTES + 2],
        ];
        for names in name_cases {
            let joined = names.join(",").len();
            record.fields = names;
            let line = encode_line(&record, realtime);
            assert!(line == line_from_entry_fields(&record, realtime), "names of {} bytes joined: {:.200}", joined, line);
            let object = parse(&line);
            assert_eq!(object.contains_key("ODOOGATE_FIELDS"), !record.fields.is_empty());
            if let Some(written) = object.get("ODOOGATE_FIELDS") {
                let written = written.as_str().unwrap();
                assert!(written.len() <= MAX_FIELD_VALUE_BYTES, "{joined}");
                let cut = written.ends_with(crate::audit::journald::TRUNCATION_MARK);
                assert_eq!(cut, joined > MAX_FIELD_VALUE_BYTES, "{joined}");
                if !cut {
                    assert_eq!(written, record.fields.join(","));
                }
            }
        }
    }

    #[test]
    fn long_field_list_is_cut() {
        let mut record = allow_record();
        record.fields = vec!["x".repeat(1000); 2000];
        let object = parse(&encode_line(&record, SystemTime::now()));
        let written = object["ODOOGATE_FIELDS"].as_str().unwrap();
        assert!(written.ends_with(crate::audit::journald::TRUNCATION_MARK));
        assert_eq!(written.len(), MAX_FIELD_VALUE_BYTES);
    }

    #[test]
    fn keys_keep_journal_order() {
        let line = encode_line(&allow_record(), SystemTime::now());
        let timestamp = line.find("__REALTIME_TIMESTAMP").unwrap();
        let message = line.find("\"MESSAGE\"").unwrap();
        let event = line.find("ODOOGATE_EVENT").unwrap();
        assert!(timestamp < message && message < event, "{line}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut record = allow_record();
        record.reason = Some("line one\nline two\u{1b}[31m\"quoted\"".to_owned());
        let line = encode_line(&record, SystemTime::now());
        assert_eq!(line.matches('\n').count(), 1);
        assert!(!line.contains('\u{1b}'));
        assert_eq!(
            parse(&line)["ODOOGATE_REASON"],
            "line one\nline two\u{1b}[31m\"quoted\""
        );
    }

    #[test]
    fn sink_appends_lines_to_writer() {
        let mut sink = JsonLinesSink::new(Vec::new());
        sink.write(&allow_record());
        sink.write(&AuditRecord::new(
            AuditEvent::CaptureLoss,
            "3 ring buffer records lost",
        ));
        assert_eq!(sink.failures(), 0);

        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(parse(lines[1])["ODOOGATE_EVENT"], "capture_loss");
        assert_eq!(parse(lines[1])["PRIORITY"], "4");
    }

    /// Lines encoded ahead of the write are the lines that `write` writes,
    /// with the time of their encoding.
    #[test]
    fn encoded_lines_match_written_lines() {
        let records = [allow_record(), AuditRecord::new(AuditEvent::CaptureLoss, "3 ring buffer records lost")];
        let mut written = JsonLinesSink::new(Vec::new());
        written.write_batch(&records);
        let mut encoded = JsonLinesSink::new(Vec::new());
        let encoder = encoded.encoder().expect("JSON lines are bytes");
        let before = realtime_micros(SystemTime::now());
        let entries: Vec<Vec<u8>> = records.iter().map(|record| encoder.encode(record)).collect();
        let after = realtime_micros(SystemTime::now());
        encoded.write_encoded(&entries);
        assert_eq!(encoded.failures(), 0);

        let written = String::from_utf8(written.into_inner()).unwrap();
        let encoded = String::from_utf8(encoded.into_inner()).unwrap();
        assert_eq!(encoded.lines().count(), 2);
        for (written, encoded) in written.lines().zip(encoded.lines()) {
            let (mut written, mut encoded) = (parse(written), parse(encoded));
            let timestamp: u128 = encoded.remove("__REALTIME_TIMESTAMP").unwrap().as_str().unwrap().parse().unwrap();
            assert!((before..=after).contains(&timestamp), "{timestamp} not in {before}..={after}");
            written.remove("__REALTIME_TIMESTAMP");
            assert_eq!(written, encoded);
        }
    }

    /// A writer that always fails, standing in for a full disk.
    struct FullDisk;

    impl Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn failed_writes_are_counted() {
        let mut sink = JsonLinesSink::new(FullDisk);
        sink.write(&allow_record());
        sink.write(&allow_record());
        assert_eq!(sink.failures(), 2);
    }

    #[test]
    fn append_to_keeps_existing_lines() {
        let path = std::env::temp_dir().join(format!("odoogate-jsonl-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);

        JsonLinesSink::append_to(&path)
            .unwrap()
            .write(&allow_record());
        JsonLinesSink::append_to(&path)
            .unwrap()
            .write(&allow_record());
        let text = std::fs::read_to_string(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        std::fs::remove_file(&path).unwrap();

        assert_eq!(text.lines().count(), 2);
        let mode = std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777;
        assert_eq!(
            mode & !AUDIT_FILE_MODE,
            0,
            "mode {mode:o} grants more than 0640"
        );
    }

    #[test]
    fn append_to_missing_directory_fails() {
        let error =
            JsonLinesSink::append_to(Path::new("/nonexistent/odoogate/audit.jsonl")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("/nonexistent/odoogate/audit.jsonl")
        );
    }

    #[test]
    fn escapes_match_serde_json() {
        let mut texts: Vec<String> = (0u8..128).map(|byte| format!("a{}b", char::from(byte))).collect();
        texts.extend(["", "plain", "\"quoted\" \\ path", "caf\u{e9} \u{1f600} \u{2028}", "\u{7f}\n\n"].map(str::to_owned));
        for text in texts {
            let mut line = String::new();
            push_string(&mut line, &text);
            assert_eq!(line, serde_json::to_string(&text).unwrap(), "{text:?}");
        }
    }
}

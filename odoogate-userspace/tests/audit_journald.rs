//! Writes audit records to a real systemd-journald and reads them back with
//! journalctl.
//!
//! The test needs root. It re-executes itself under `unshare --mount
//! --propagation private`, and in that private mount namespace it mounts
//! tmpfs on `/run` and `/var/log` and starts its own journald. So the host's
//! journal is neither read nor written.

use nix::mount::{MsFlags, mount};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, geteuid};
use odoogate::audit::journald::{JournaldSink, SOCKET_PATH, encode_entry};
use odoogate::audit::reader::{self, AuditEntry, AuditQuery};
use odoogate::audit::{AuditEvent, AuditRecord, AuditSink as _, Decision, Identity};
use odoogate::secret::Secret;
use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// Set in the re-executed test process that runs inside the namespace.
const CHILD_ENV: &str = "ODOOGATE_TEST_JOURNALD_CHILD";

/// How long to wait for journald to start or to store the records. Only a
/// bound on a hang, never an assertion on speed.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// The API key whose fingerprint the call record carries. Its value must
/// never reach the journal.
const API_KEY: &str = "5f0e3c9a1b7d4e2f8a6c0b9d3e1f7a5c2b8d4e6f";

#[test]
fn journald_round_trip() {
    if std::env::var_os(CHILD_ENV).is_some() {
        run_in_namespace();
        return;
    }
    if !geteuid().is_root() {
        eprintln!("skipped: needs root to mount a private /run and start journald");
        return;
    }
    if !Path::new(JOURNALD).exists() {
        eprintln!("skipped: {JOURNALD} is not installed");
        return;
    }

    let test_binary = std::env::current_exe().expect("path of the test binary");
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(test_binary)
        .args([
            "--exact",
            "journald_round_trip",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .expect("failed to run unshare; is util-linux installed?");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "namespaced test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "namespaced test did not run:\n{stdout}\n{stderr}"
    );
}

/// Runs the test body, as root in a private mount namespace.
fn run_in_namespace() {
    mount_tmpfs("/run");
    mount_tmpfs("/var/log");
    std::fs::create_dir_all("/run/systemd/journal").unwrap();

    let mut journald = Journald::start();
    let records = records();
    write_records(&records);

    let entries = wait_for_entries(records.len());
    assert_records_stored(&records, &entries);
    assert_raw_encodings();
    assert_no_secret(&entries);
    assert_filters_select(&records);

    journald.stop();
}

fn mount_tmpfs(target: &str) {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .unwrap_or_else(|error| panic!("failed to mount tmpfs on {target}: {error}"));
}

/// A journald started by the test, killed on drop if the test fails.
struct Journald {
    child: Option<Child>,
}

impl Journald {
    fn start() -> Self {
        let log = File::create("/run/journald-test.log").unwrap();
        let child = Command::new(JOURNALD)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("failed to start systemd-journald");
        let journald = Self { child: Some(child) };

        let deadline = Instant::now() + WAIT_LIMIT;
        while !JournaldSink::available() {
            assert!(
                Instant::now() < deadline,
                "journald did not create {SOCKET_PATH}:\n{}",
                Self::log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        journald
    }

    fn log() -> String {
        std::fs::read_to_string("/run/journald-test.log").unwrap_or_default()
    }

    fn stop(&mut self) {
        let mut child = self.child.take().expect("journald is running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "journald exited with {status}:\n{}",
            Self::log()
        );
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Builds a denied call with every field set and a multi-line reason, an
/// error record, and a record whose entry is too large for one datagram.
fn records() -> Vec<AuditRecord> {
    let mut call = AuditRecord::new(
        AuditEvent::Call,
        "deny website-form crm.lead.unlink via xmlrpc: no rule allows unlink",
    );
    call.decision = Some(Decision::Deny);
    call.integration = Some("website-form".to_owned());
    call.identity = Some(Identity::ApiKey);
    call.protocol = Some("xmlrpc");
    call.db = Some("prod".to_owned());
    call.uid = Some(2);
    call.login = Some("integration@example.com".to_owned());
    call.model = Some("crm.lead".to_owned());
    call.method = Some("unlink".to_owned());
    call.record_ids = vec![11, 12, 13];
    call.record_count = Some(3);
    call.fields = vec!["name".to_owned(), "email_from".to_owned()];
    call.rule = Some("website-form.create-leads".to_owned());
    call.reason = Some("no rule allows unlink\nwebsite-form may only create crm.lead".to_owned());
    call.src_ip = Some("10.0.0.7".parse().unwrap());
    call.src_port = Some(53412);
    call.cgroup = Some("/system.slice/website.service".to_owned());
    call.pid = Some(4242);
    call.comm = Some("python3\u{1b}".to_owned());
    call.conn_id = Some(1);
    call.outcome = Some("http:403".to_owned());
    call.http_status = Some(403);
    call.latency_us = Some(1840);
    call.key_fingerprint = Some(Secret::new(API_KEY).sha256_hex());
    call.error_code = Some("none".to_owned());
    call.count = Some(1);
    call.path = Some("/xmlrpc/2/object".to_owned());

    let mut error = AuditRecord::new(
        AuditEvent::DecodeError,
        "decode_error on /jsonrpc: invalid_json",
    );
    error.error_code = Some("invalid_json".to_owned());
    error.count = Some(7);
    error.conn_id = Some(2);
    error.path = Some("/jsonrpc".to_owned());

    let mut large = AuditRecord::new(
        AuditEvent::FramingAnomaly,
        "framing_anomaly with a large path",
    );
    large.error_code = Some("long_path".to_owned());
    large.conn_id = Some(3);
    large.path = Some(format!("/web/{}", "a".repeat(300 * 1024)));

    vec![call, error, large]
}

fn write_records(records: &[AuditRecord]) {
    let large = encode_entry(&records[2]);
    let probe = UnixDatagram::unbound().unwrap();
    probe.connect(SOCKET_PATH).unwrap();
    let direct = probe
        .send(&large)
        .expect_err("the large entry must not fit in one datagram");
    assert_eq!(direct.raw_os_error(), Some(libc::EMSGSIZE), "{direct}");

    let mut sink = JournaldSink::open().unwrap();
    for record in records {
        sink.write(record);
    }
    assert_eq!(sink.failures(), 0);
}

/// Reads odoogate's entries until `expected` are stored.
fn wait_for_entries(expected: usize) -> Vec<AuditEntry> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let entries =
            reader::read(&AuditQuery::default()).expect("journalctl reads the private journal").entries;
        if entries.len() >= expected {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "journald stored {} of {expected} records:\n{}",
            entries.len(),
            Journald::log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_records_stored(records: &[AuditRecord], entries: &[AuditEntry]) {
    assert_eq!(entries.len(), records.len());
    for record in records {
        let conn_id = record.conn_id.unwrap().to_string();
        let entry = entries
            .iter()
            .find(|entry| entry.field("ODOOGATE_CONN_ID") == Some(conn_id.as_str()))
            .unwrap_or_else(|| panic!("no entry for conn_id {conn_id}"));

        assert_eq!(entry.field("MESSAGE"), Some(record.message.as_str()));
        assert_eq!(
            entry.field("PRIORITY"),
            Some(record.priority().to_string().as_str())
        );
        assert_eq!(entry.field("SYSLOG_IDENTIFIER"), Some("odoogate"));
        assert_eq!(entry.field("_TRANSPORT"), Some("journal"));
        for (name, value) in record.fields() {
            assert_eq!(
                entry.field(name),
                Some(value.as_ref()),
                "field {name} of conn_id {conn_id}"
            );
        }
    }
}

/// Checks that journalctl's output took the shapes the reader decodes: the
/// value with an escape character as an array of bytes, and the large value
/// as a string because the reader passes `--all`.
fn assert_raw_encodings() {
    let output = Command::new("journalctl")
        .args([
            "--output=json",
            "--all",
            "--no-pager",
            "SYSLOG_IDENTIFIER=odoogate",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains(r#""ODOOGATE_COMM":[112,121,116,104,111,110,51,27]"#),
        "{text:.2000}"
    );
    assert!(
        text.contains(r#""ODOOGATE_PATH":"/web/aaaa"#),
        "{text:.2000}"
    );
}

fn assert_no_secret(entries: &[AuditEntry]) {
    for entry in entries {
        for (name, value) in &entry.fields {
            assert!(
                !value.contains(API_KEY),
                "field {name} contains the API key"
            );
        }
    }
    let call = entries
        .iter()
        .find(|entry| entry.field("ODOOGATE_EVENT") == Some("call"))
        .unwrap();
    assert_eq!(
        call.field("ODOOGATE_KEY_FINGERPRINT"),
        Some(Secret::new(API_KEY).sha256_hex().as_str())
    );
}

fn assert_filters_select(records: &[AuditRecord]) {
    let deny = AuditQuery {
        decision: Some("deny".to_owned()),
        ..Default::default()
    };
    let entries = reader::read(&deny).unwrap().entries;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].field("MESSAGE"),
        Some(records[0].message.as_str())
    );

    let model = AuditQuery {
        model: Some("crm.*".to_owned()),
        integration: Some("website-form".to_owned()),
        ..Default::default()
    };
    assert_eq!(reader::read(&model).unwrap().entries.len(), 1);

    let recent = AuditQuery {
        since: Some("1h".to_owned()),
        ..Default::default()
    };
    assert_eq!(reader::read(&recent).unwrap().entries.len(), records.len());

    let none = AuditQuery {
        integration: Some("n8n".to_owned()),
        ..Default::default()
    };
    assert!(reader::read(&none).unwrap().entries.is_empty());
}

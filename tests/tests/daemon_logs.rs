//! The daemon's own messages (not audit records). When stderr is a journald
//! stream that `$JOURNAL_STREAM` names, as systemd sets up for a unit, they
//! go to journald natively, with their fields and priority. The error that
//! ends the daemon is then one entry at priority 3 (err). With stderr
//! anywhere else they are text or JSON lines. The journald test needs root
//! for the private journald.

mod common;
mod netns_host;

use common::{Journal, Record};
use netns_host::{Host, binary};
use odoogate::demo::lab::{self, Placement};
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const LISTEN: &str = "127.0.0.1:18070";

/// Opens a stream to journald's stdout socket, as systemd does for a
/// unit's stderr, and returns it with its `$JOURNAL_STREAM` value.
fn journal_stream(journal: &Journal) -> anyhow::Result<(UnixStream, String)> {
    // mount_ns() is /proc/PID/ns/mnt of journald; its root is /proc/PID/root.
    let process = journal.mount_ns().parent().and_then(Path::parent).map(Path::to_path_buf).expect("/proc/PID");
    let mut stream = UnixStream::connect(process.join("root/run/systemd/journal/stdout"))?;
    // Identifier, unit, priority, level prefix, and forwarding to syslog,
    // kmsg and the console (systemd-journald.service(8), "stream").
    stream.write_all(b"odoogate\n\n6\n0\n0\n0\n0\n")?;
    stream.shutdown(std::net::Shutdown::Read)?;
    let metadata = std::fs::File::from(OwnedFd::from(stream.try_clone()?)).metadata()?;
    Ok((stream, format!("{}:{}", metadata.dev(), metadata.ino())))
}

/// Runs `odoogate run --config CONFIG` in the host's namespace and the
/// journal's mount namespace, with stdout and stderr on a journald stream.
fn spawn_on_journal(host: &Host, journal: &Journal, config: &Path) -> anyhow::Result<std::process::Child> {
    let (stream, journal_stream) = journal_stream(journal)?;
    let mut command = Command::new(binary());
    command
        .args(["run", "--config"])
        .arg(config)
        .env("JOURNAL_STREAM", journal_stream)
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(stream.try_clone()?)))
        .stderr(Stdio::from(OwnedFd::from(stream)));
    let placement = Placement { netns: Some(host.netns.path()), mount_ns: Some(journal.mount_ns()), cgroup: None };
    lab::place(&mut command, &placement)?;
    Ok(command.spawn()?)
}

/// Waits for the daemon's entry whose MESSAGE starts with `message`.
fn wait_for_entry(journal: &Journal, message: &str) -> anyhow::Result<Record> {
    let mut found = None;
    let waited = lab::wait_for(message, Duration::from_secs(20), || {
        found = journal
            .records()
            .unwrap_or_default()
            .into_iter()
            .find(|entry| entry.get("MESSAGE").is_some_and(|text| text.starts_with(message)));
        found.is_some()
    });
    waited.map_err(|error| anyhow::anyhow!("{error:#}; the journal holds: {:#?}", journal.records().unwrap_or_default()))?;
    Ok(found.expect("wait_for returned after an entry was found"))
}

fn field<'a>(entry: &'a Record, name: &str) -> &'a str {
    entry.get(name).map(String::as_str).unwrap_or_default()
}

/// Writes an observe-mode configuration that fails the startup checks with
/// two missing interfaces, one failure a line.
fn failing_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("failing.toml");
    std::fs::write(
        &path,
        "[odoo]\nports = [18069]\ninterfaces = [\"ogmissing0\", \"ogmissing1\"]\n\n[policy]\nmode = \"observe\"\nunidentified = \"allow\"\n",
    )?;
    Ok(path)
}

#[test]
fn logs_go_to_journald_as_fields() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let host = Host::start("logs")?;
    let journal = Journal::start(&host.workdir)?;
    let sections = format!(
        "[policy]\nmode = \"enforce\"\nunidentified = \"allow\"\n\n[proxy]\nlisten = \"{LISTEN}\"\n\n[tokens]\nstore = \"{}\"",
        host.workdir.join("tokens.json").display()
    );
    let config = host.write_config(&sections)?;
    let mut daemon = spawn_on_journal(&host, &journal, &config)?;

    let started = wait_for_entry(&journal, "Proxying Odoo traffic in listen mode")?;
    assert_eq!(field(&started, "_TRANSPORT"), "journal", "{started:?}");
    assert_eq!(field(&started, "PRIORITY"), "5", "tracing's INFO is notice: {started:?}");
    assert_eq!(field(&started, "LISTEN"), LISTEN, "{started:?}");
    assert_eq!(field(&started, "MODE"), "enforce", "{started:?}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM)?;
    assert!(daemon.wait()?.success(), "odoogate run did not exit cleanly on SIGTERM");
    let stopping = wait_for_entry(&journal, "Stopping")?;
    assert_eq!(field(&stopping, "SIGNAL"), "SIGTERM", "{stopping:?}");

    let mut failing = spawn_on_journal(&host, &journal, &failing_config(&host.workdir)?)?;
    assert!(!failing.wait()?.success(), "odoogate run started with missing interfaces");
    let fatal = wait_for_entry(&journal, "2 startup check(s) failed")?;
    assert_eq!(field(&fatal, "PRIORITY"), "3", "{fatal:?}");
    assert_eq!(field(&fatal, "_TRANSPORT"), "journal", "{fatal:?}");
    let message = field(&fatal, "MESSAGE");
    assert!(message.contains("ogmissing0"), "one entry for the whole error: {message}");
    assert!(message.contains("ogmissing1"), "one entry for the whole error: {message}");

    let records = journal.records()?;
    let plain: Vec<&Record> = records.iter().filter(|entry| field(entry, "_TRANSPORT") == "stdout").collect();
    assert!(plain.is_empty(), "plain lines reached the journal stream: {plain:?}");
    Ok(())
}

/// Runs `odoogate ARGS run` on the failing configuration with stderr on a
/// pipe and `$JOURNAL_STREAM` set, as in a child of a unit whose stderr
/// was redirected, and returns stderr.
fn stderr_of_failing_run(global_args: &[&str]) -> anyhow::Result<String> {
    let label = if global_args.is_empty() { "text".to_owned() } else { global_args.join("-").trim_start_matches('-').to_owned() };
    let dir = std::env::temp_dir().join(format!("odoogate-logs-stderr-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let output = Command::new(binary())
        .args(global_args)
        .args(["run", "--config"])
        .arg(failing_config(&dir)?)
        .env("JOURNAL_STREAM", "1:1")
        .output()?;
    assert!(!output.status.success(), "odoogate run started with missing interfaces");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(String::from_utf8(output.stderr)?)
}

#[test]
fn fatal_error_is_text_on_stderr() -> anyhow::Result<()> {
    let stderr = stderr_of_failing_run(&[])?;
    assert!(stderr.starts_with("odoogate: "), "{stderr}");
    assert!(stderr.contains("startup check(s) failed:\n  - "), "{stderr}");
    Ok(())
}

#[test]
fn fatal_error_is_json_with_log_format_json() -> anyhow::Result<()> {
    let stderr = stderr_of_failing_run(&["--log-format", "json"])?;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}")))
        .collect();
    let fatal = lines.last().expect("at least one line");
    assert_eq!(fatal["level"], "ERROR", "{fatal}");
    let message = fatal["fields"]["message"].as_str().expect("a message field");
    assert!(message.contains("ogmissing0"), "{message}");
    assert!(message.contains("ogmissing1"), "{message}");
    Ok(())
}

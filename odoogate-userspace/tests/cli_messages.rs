//! Error messages and notes of the `odoogate` CLI, from the real binary:
//! reaching the daemon's control socket, reading audit records, and
//! starting the enforce-mode proxy on a taken port. Needs no root and no
//! upstream: the proxy connects to Odoo only when a call arrives.

mod support;

use support::{Guard, free_port, temp_dir, wait_until};

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Writes an enforce-mode configuration in listen mode to `dir/name`, with
/// its control socket, audit file and token store in `dir`.
fn write_config(dir: &Path, name: &str, listen_port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
[odoo]
ports = [{upstream}]
interfaces = ["lo"]

[policy]
mode = "enforce"
unidentified = "deny"
grants_file = "{dir}/grants.json"

[proxy]
listen = "127.0.0.1:{listen_port}"

[audit]
output = "file"
file = "{dir}/audit.jsonl"

[tokens]
store = "{dir}/no-tokens.json"

[control]
socket = "{dir}/control.sock"
"#,
        upstream = free_port(),
        dir = dir.display(),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn odoogate(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_odoogate")).args(args).current_dir(dir).output().expect("odoogate runs")
}

/// Starts `odoogate run --config odoogate.toml` in `dir`, with its log on
/// `log`, and returns the guard that ends it.
fn start_daemon(dir: &Path, log: Stdio) -> Guard {
    let daemon = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .args(["run", "--config", "odoogate.toml"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("odoogate starts");
    Guard(daemon)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn status_without_daemon_suggests_options() {
    let dir = temp_dir("cli-no-daemon");
    write_config(&dir, "odoogate.toml", free_port());
    let output = odoogate(&["status", "--config", "odoogate.toml"], &dir);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.contains(&format!("no odoogate daemon listens on {}", dir.join("control.sock").display())), "{error}");
    assert!(error.contains("control.socket of odoogate.toml"), "{error}");
    assert!(error.contains("--config FILE"), "{error}");
    assert!(error.contains("--socket PATH"), "{error}");
}

#[test]
fn stale_socket_says_no_daemon_answers() {
    let dir = temp_dir("cli-stale");
    let socket = dir.join("control.sock");
    // A listener dropped without removing its file, as a killed daemon leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let output = odoogate(&["status", "--socket", socket.to_str().unwrap()], &dir);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.contains(&format!("no odoogate daemon answers on the control socket {}", socket.display())), "{error}");
    assert!(!error.contains("does not exist"), "{error}");
}

#[test]
fn invalid_config_is_named_with_socket_option() {
    // The command falls back to the default socket, so a daemon running
    // there on this host would respond instead.
    if Path::new(odoogate::control::DEFAULT_SOCKET).exists() {
        eprintln!("skipped: {} exists", odoogate::control::DEFAULT_SOCKET);
        return;
    }
    let dir = temp_dir("cli-typo");
    let config = write_config(&dir, "odoogate.toml", free_port());
    let text = std::fs::read_to_string(&config).unwrap().replace("unidentified", "unidentifed");
    std::fs::write(&config, text).unwrap();

    let output = odoogate(&["status", "--config", "odoogate.toml"], &dir);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.contains("odoogate.toml:8:1: policy.unidentifed: unknown field `unidentifed`"), "{error}");
    assert!(error.contains("--socket PATH"), "{error}");

    let output = odoogate(&["status", "--config", "missing.toml"], &dir);
    let error = stderr(&output);
    assert!(error.contains("failed to read the configuration missing.toml"), "{error}");
    assert_eq!(error.matches("No such file or directory").count(), 1, "{error}");
}

#[test]
fn status_shows_absolute_config_path() {
    let dir = temp_dir("cli-absolute");
    let listen_port = free_port();
    write_config(&dir, "odoogate.toml", listen_port);
    let _daemon = start_daemon(&dir, Stdio::null());
    let socket = dir.join("control.sock");
    wait_until("the control socket", || socket.exists());

    let output = odoogate(&["status", "--socket", socket.to_str().unwrap()], &dir);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains(&format!("config: {}\n", dir.join("odoogate.toml").display())), "{printed}");
    // A listen-mode daemon without [guard]: the guard is off and nothing
    // is steered.
    assert!(printed.contains("guard:\n  on: false\n"), "{printed}");
    assert!(!printed.contains("steering:"), "{printed}");

    let output = odoogate(&["status", "--json", "--socket", socket.to_str().unwrap()], &dir);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status --json prints JSON");
    assert_eq!(status["guard"], serde_json::json!({ "on": false }));
}

/// `check` prints where an enforce-mode daemon would listen, forward and
/// write, and fails on service credentials that `run` would stop on.
#[test]
fn check_shows_proxy_and_checks_credentials() {
    let dir = temp_dir("cli-check");
    let listen_port = free_port();
    let config = write_config(&dir, "odoogate.toml", listen_port);

    let output = odoogate(&["check", "--config", "odoogate.toml"], &dir);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(printed.contains(&format!("proxy: listen 127.0.0.1:{listen_port}, upstream 127.0.0.1:")), "{printed}");
    assert!(printed.contains(&format!("audit: file {}\n", dir.join("audit.jsonl").display())), "{printed}");
    assert!(printed.contains("scoped tokens: off"), "{printed}");
    assert!(printed.contains("guard: off (no [guard] section)\n"), "{printed}");

    let credentials = dir.join("credentials.toml");
    std::fs::write(&credentials, "default = \"0123456789abcdef\"\n").unwrap();
    std::fs::set_permissions(&credentials, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("[tokens]\n", &format!("[tokens]\ncredentials_file = \"{}\"\n", credentials.display()));
    std::fs::write(&config, text).unwrap();

    let output = odoogate(&["check", "--config", "odoogate.toml"], &dir);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.contains("the credentials file"), "{error}");
    assert!(error.contains("`odoogate run` would stop at start"), "{error}");
}

/// `token revoke` notifies the running daemon, which rejects the token from
/// the next call on, not only at its next check of the store.
#[test]
fn revoke_reaches_running_daemon() {
    use std::io::{Read as _, Write as _};

    let dir = temp_dir("cli-revoke");
    let listen_port = free_port();
    let credentials = dir.join("credentials.toml");
    std::fs::write(&credentials, "default = \"0123456789abcdef0123456789abcdef01234567\"\n").unwrap();
    std::fs::set_permissions(&credentials, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        "[odoo]\nports = [{upstream}]\ninterfaces = [\"lo\"]\n\n[policy]\nmode = \"enforce\"\nunidentified = \"deny\"\n\
         grants_file = \"{dir}/grants.json\"\n\n[proxy]\nlisten = \"127.0.0.1:{listen_port}\"\n\n[audit]\noutput = \"file\"\n\
         file = \"{dir}/audit.jsonl\"\n\n[tokens]\nstore = \"{dir}/tokens.json\"\ncredentials_file = \"{credentials}\"\n\n\
         [control]\nsocket = \"{dir}/control.sock\"\n\n[[integration]]\nname = \"assistant\"\nmatch = {{ token = true }}\n\
         allow = [{{ models = [\"res.partner\"], methods = [\"search\"] }}]\n",
        upstream = free_port(),
        dir = dir.display(),
        credentials = credentials.display(),
    );
    std::fs::write(dir.join("odoogate.toml"), text).unwrap();
    let created = odoogate(&["token", "create", "assistant", "--config", "odoogate.toml"], &dir);
    assert!(created.status.success(), "{}", stderr(&created));
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let id = std::fs::read_to_string(dir.join("tokens.json")).unwrap();
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id["tokens"][0]["id"].as_str().expect("the store lists the token").to_owned();

    let _daemon = start_daemon(&dir, Stdio::null());
    let socket = dir.join("control.sock");
    wait_until("the control socket", || socket.exists());

    let revoked = odoogate(&["token", "revoke", &id, "--config", "odoogate.toml"], &dir);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(stderr(&revoked).contains("the running daemon loads the change before its next call"), "{}", stderr(&revoked));

    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>execute_kw</methodName><params>\
         <param><value><string>odoo19</string></value></param><param><value><int>2</int></value></param>\
         <param><value><string>{token}</string></value></param><param><value><string>res.partner</string></value></param>\
         <param><value><string>search</string></value></param><param><value><array><data/></array></value></param>\
         </params></methodCall>"
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", listen_port)).unwrap();
    write!(stream, "POST /xmlrpc/2/object HTTP/1.1\r\nHost: odoo\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "odoogate answers the fault itself: {response}");
    assert!(response.contains("<int>3</int>"), "AccessDenied, not a call forwarded to the missing Odoo: {response}");
}

/// Odoo is not listening at `proxy.upstream` (the configuration's free
/// port): the daemon still starts, and its log shows why calls will fail.
#[test]
fn unreachable_upstream_is_logged_at_start() {
    let dir = temp_dir("cli-unreachable");
    write_config(&dir, "odoogate.toml", free_port());
    let log = dir.join("daemon.log");
    let _daemon = start_daemon(&dir, Stdio::from(std::fs::File::create(&log).unwrap()));

    let warned = || std::fs::read_to_string(&log).unwrap_or_default().contains("Odoo does not accept connections at proxy.upstream");
    wait_until("the warning about proxy.upstream", warned);
}

#[test]
fn proxy_listen_in_use_names_next_step() {
    let dir = temp_dir("cli-listen-in-use");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    write_config(&dir, "odoogate.toml", port);

    let output = odoogate(&["run", "--config", "odoogate.toml"], &dir);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.contains(&format!("failed to listen on 127.0.0.1:{port} (proxy.listen)")), "{error}");
    assert!(error.contains(&format!("ss -ltnp 'sport = :{port}'")), "{error}");
    drop(holder);
}

/// Returns one audit line in the form the JSON lines sink writes.
fn audit_line(integration: &str) -> String {
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
    serde_json::json!({
        "__REALTIME_TIMESTAMP": micros.to_string(),
        "SYSLOG_IDENTIFIER": "odoogate",
        "ODOOGATE_EVENT": "call",
        "ODOOGATE_DECISION": "allow",
        "ODOOGATE_INTEGRATION": integration,
        "ODOOGATE_MODEL": "res.partner",
        "ODOOGATE_METHOD": "read",
    })
    .to_string()
}

#[test]
fn audit_config_reads_audit_file() {
    let dir = temp_dir("cli-audit-config");
    write_config(&dir, "odoogate.toml", free_port());
    std::fs::write(dir.join("audit.jsonl"), format!("{}\n", audit_line("crm"))).unwrap();

    let output = odoogate(&["audit", "--config", "odoogate.toml", "--json"], &dir);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("\"ODOOGATE_INTEGRATION\":\"crm\""), "{printed}");
    assert_eq!(stderr(&output), "");

    let output = odoogate(&["audit", "--config", "odoogate.toml", "--integration", "shop"], &dir);
    let note = stderr(&output);
    assert!(output.status.success(), "{note}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1, "only the table header");
    let expected = format!("no audit record matched the filters in {} (audit.file of odoogate.toml)\n", dir.join("audit.jsonl").display());
    assert_eq!(note, expected);
}

#[test]
fn missing_audit_file_prints_cause_once() {
    let dir = temp_dir("cli-audit-missing");
    let output = odoogate(&["audit", "--file", "nope.jsonl"], &dir);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert_eq!(error, "odoogate: failed to open the audit file nope.jsonl: No such file or directory (os error 2)\n");
}

/// `check` prints a configuration error as `run` does, `odoogate: ` first.
/// `run` names the configuration by its absolute path, which it keeps for
/// reloads and `status`.
#[test]
fn check_error_matches_run() {
    let dir = temp_dir("cli-check-error");
    let config = "[odoo]\nports = [8069, 8069]\ninterfaces = [\"lo\"]\n\n[policy]\nmode = \"observe\"\nunidentified = \"allow\"\n";
    std::fs::write(dir.join("dup.toml"), config).unwrap();
    let problem = "dup.toml:2:16: odoo.ports[1]: port 8069 is listed twice\n";

    let check = odoogate(&["check", "--config", "dup.toml"], &dir);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert_eq!(stderr(&check), format!("odoogate: {problem}"));

    let run = odoogate(&["run", "--config", "dup.toml"], &dir);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert_eq!(stderr(&run), format!("odoogate: {}/{problem}", dir.display()));
}

/// A short-lived command whose stdout reader has gone, as in `odoogate
/// check | head -1`, ends on SIGPIPE like other Unix tools, without a panic
/// message. The pipe's read end is closed before the command starts, so its
/// first write fails.
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt as _;

    let dir = temp_dir("cli-closed-stdout");
    write_config(&dir, "odoogate.toml", free_port());
    std::fs::write(dir.join("audit.jsonl"), format!("{}\n", audit_line("crm"))).unwrap();

    for args in [&["check", "--config", "odoogate.toml"][..], &["audit", "--config", "odoogate.toml"], &["--help"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_odoogate"))
            .args(args)
            .current_dir(&dir)
            .stdout(writer)
            .output()
            .expect("odoogate runs");
        let error = stderr(&output);
        assert!(!error.contains("panicked"), "{args:?}: {error}");
        assert!(!error.contains("Broken pipe"), "{args:?}: {error}");
        if args != ["--help"] {
            assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?} {error}", output.status);
        }
    }
}

/// Sets `audit.output` of the configuration that [`write_config`] wrote,
/// without its `audit.file`.
fn set_audit_output(config: &Path, output: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let file = format!("file = \"{}\"\n", config.with_file_name("audit.jsonl").display());
    assert!(text.contains(&file), "{text}");
    let text = text.replace(&file, "").replace("output = \"file\"", &format!("output = \"{output}\""));
    std::fs::write(config, text).unwrap();
}

/// Writes an XML-RPC call with a key that no integration has to the proxy
/// on `port`, which denies it itself, and returns the response.
fn call_unidentified(port: u16) -> String {
    use std::io::{Read as _, Write as _};

    let body = "<?xml version=\"1.0\"?><methodCall><methodName>execute_kw</methodName><params>\
                <param><value><string>odoo19</string></value></param><param><value><int>2</int></value></param>\
                <param><value><string>no-such-key</string></value></param><param><value><string>res.partner</string></value></param>\
                <param><value><string>search</string></value></param><param><value><array><data/></array></value></param>\
                </params></methodCall>";
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "POST /xmlrpc/2/object HTTP/1.1\r\nHost: odoo\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// With `audit.output = "stderr"` the daemon's stderr contains its log
/// lines and the audit records. `audit --file` reads the records and skips the
/// log lines, in both log formats, and the daemon logs the stop signal as
/// a plain value.
#[test]
fn audit_reads_daemon_stderr() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    for format in ["text", "json"] {
        let dir = temp_dir(&format!("cli-audit-stderr-{format}"));
        let listen_port = free_port();
        let config = write_config(&dir, "odoogate.toml", listen_port);
        set_audit_output(&config, "stderr");

        let log = dir.join("daemon.err");
        let daemon = Command::new(env!("CARGO_BIN_EXE_odoogate"))
            .args(["run", "--config", "odoogate.toml", "--log-format", format])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("odoogate starts");
        let mut daemon = Guard(daemon);
        wait_until("the control socket", || dir.join("control.sock").exists());
        let response = call_unidentified(listen_port);
        assert!(response.contains("<fault>"), "the proxy denies the call itself: {response}");
        kill(Pid::from_raw(daemon.0.id() as i32), Signal::SIGTERM).unwrap();
        assert!(daemon.0.wait().unwrap().success());

        let written = std::fs::read_to_string(&log).unwrap();
        let stop = match format {
            "text" => "signal=SIGTERM",
            _ => "\"signal\":\"SIGTERM\"",
        };
        assert!(written.contains(stop), "{written}");
        let log_lines = written.lines().filter(|line| !line.contains("\"ODOOGATE_EVENT\"")).count();
        assert!(log_lines >= 2, "{written}");

        let output = odoogate(&["audit", "--file", "daemon.err", "--json"], &dir);
        let note = stderr(&output);
        assert!(output.status.success(), "{note}\n{written}");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert_eq!(printed.lines().count(), 1, "{printed}");
        assert!(printed.contains("\"ODOOGATE_DECISION\":\"deny\""), "{printed}");
        assert_eq!(note, format!("skipped {log_lines} lines of daemon.err that are not audit records, such as the daemon's log lines\n"));
    }
}

/// A file with log lines only, as the daemon's stderr before its first
/// call, is named as such instead of failing on its first line.
#[test]
fn audit_file_without_records_says_so() {
    let dir = temp_dir("cli-audit-no-records");
    let log = "2026-05-01T10:00:00.000000Z  INFO odoogate::cli::run: Stopping signal=SIGTERM\n\
               {\"timestamp\":\"2026-05-01T10:00:00.000000Z\",\"level\":\"INFO\",\"fields\":{\"message\":\"Stopping\",\"signal\":\"SIGTERM\"},\"target\":\"odoogate::cli::run\"}\n";
    std::fs::write(dir.join("daemon.err"), log).unwrap();

    let output = odoogate(&["audit", "--file", "daemon.err"], &dir);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.starts_with("odoogate: daemon.err contains no audit record: none of its 2 non-empty lines"), "{error}");
    assert_eq!(output.stdout, b"");
}

/// Without journald and journal files, `audit` prints that, and where a
/// daemon with `audit.output = "auto"` wrote its records.
#[test]
fn audit_without_journald_points_to_stderr() {
    let journal_files = ["/var/log/journal", "/run/log/journal"]
        .iter()
        .any(|directory| std::fs::read_dir(directory).is_ok_and(|mut children| children.next().is_some()));
    if Path::new("/run/systemd/journal/socket").exists() || journal_files {
        eprintln!("skipped: this host has journald or journal files");
        return;
    }
    let dir = temp_dir("cli-audit-no-journald");
    let config = write_config(&dir, "odoogate.toml", free_port());
    set_audit_output(&config, "auto");

    let output = odoogate(&["audit", "--config", "odoogate.toml"], &dir);
    let note = stderr(&output);
    assert!(output.status.success(), "{note}");
    assert!(note.starts_with("no audit records found: there are no journal files in /var/log/journal or /run/log/journal, and journald is not running on this host"), "{note}");
    assert!(note.contains("with audit.output = \"auto\" in odoogate.toml and no journald, the daemon writes its audit records to its stderr"), "{note}");
    assert!(note.contains("`odoogate audit --file FILE`"), "{note}");
}

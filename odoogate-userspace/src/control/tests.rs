use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;

use crate::scratch::ScratchDir;

use super::*;
use crate::config;

const BASE: &str = r#"
[odoo]
ports = [8069]
interfaces = ["lo"]

[policy]
mode = "observe"
unidentified = "deny"
"#;

fn scratch(name: &str) -> ScratchDir {
    ScratchDir::new(&format!("control-{name}"))
}

fn write_config(path: &Path, rules: &str) {
    let text = format!("{BASE}\n[[integration]]\nname = \"crm\"\nmatch = {{ ip = [\"10.0.0.1/32\"] }}\nallow = [{rules}]\n");
    std::fs::write(path, text).unwrap();
}

fn handle(path: &Path) -> Arc<ConfigHandle> {
    let config = config::load(path).unwrap();
    Arc::new(ConfigHandle::new(path, Arc::new(config), SystemTime::now()))
}

fn server(socket: &Path, handle: &Arc<ConfigHandle>) -> ControlServer {
    let handle = handle.clone();
    let handler: Handler = Arc::new(move |request| match request {
        ControlRequest::Status => json!({ "ok": true, "rules": handle.current().integrations[0].rules.len() }),
        ControlRequest::Reload => reload_response(&handle),
        ControlRequest::GrantsChanged => json!({ "ok": true, "reread": "grants" }),
        ControlRequest::TokensChanged => json!({ "ok": true, "reread": "tokens" }),
    });
    ControlServer::start(socket, handler).unwrap()
}

#[test]
fn reload_swaps_valid_config() {
    let dir = scratch("swap");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let handle = handle(&path);
    let socket = dir.join("run/control.sock");
    let _server = server(&socket, &handle);

    let before = handle.current();
    assert_eq!(send(&socket, ControlRequest::Status).unwrap(), json!({ "ok": true, "rules": 1 }));

    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }, { models = ["res.partner"], methods = ["read"] }"#);
    assert_eq!(send(&socket, ControlRequest::Reload).unwrap(), json!({ "ok": true, "needs_restart": [] }));
    assert_eq!(send(&socket, ControlRequest::Status).unwrap(), json!({ "ok": true, "rules": 2 }));
    // A call that took the old configuration keeps it.
    assert_eq!(before.integrations[0].rules.len(), 1);
}

#[test]
fn grants_changed_reaches_handler() {
    let dir = scratch("grants");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let socket = dir.join("run/control.sock");
    let _server = server(&socket, &handle(&path));

    let response = send(&socket, ControlRequest::GrantsChanged).unwrap();
    assert_eq!(response, json!({ "ok": true, "reread": "grants" }));
}

#[test]
fn tokens_changed_reaches_handler() {
    let dir = scratch("tokens");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let socket = dir.join("run/control.sock");
    let _server = server(&socket, &handle(&path));

    let response = send(&socket, ControlRequest::TokensChanged).unwrap();
    assert_eq!(response, json!({ "ok": true, "reread": "tokens" }));
}

#[test]
fn reload_keeps_old_config_when_invalid() {
    let dir = scratch("invalid");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let handle = handle(&path);
    let socket = dir.join("control.sock");
    let _server = server(&socket, &handle);

    std::fs::write(&path, "[odoo]\nports = \"not a list\"\n").unwrap();
    let response = send(&socket, ControlRequest::Reload).unwrap();
    assert_eq!(response["ok"], false);
    let error = response["error"].as_str().unwrap();
    assert!(error.contains("odoo.ports"), "{error}");
    assert_eq!(handle.current().integrations[0].rules.len(), 1);
}

#[test]
fn reload_reports_restart_settings() {
    let dir = scratch("restart");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let handle = handle(&path);

    let text = std::fs::read_to_string(&path).unwrap().replace("ports = [8069]", "ports = [8070]").replace("\"observe\"", "\"enforce\"");
    std::fs::write(&path, text).unwrap();
    let report = handle.reload().unwrap();
    // The default proxy.upstream follows the first Odoo port, so it changed too.
    assert_eq!(report.needs_restart, [RestartSetting::Ports, RestartSetting::Mode, RestartSetting::ProxyUpstream]);
    assert_eq!(handle.current().odoo.ports, [8069]);
    assert_eq!(handle.current().policy.mode, config::Mode::Observe);
}

#[test]
fn socket_is_private_and_removed_on_drop() {
    let dir = scratch("mode");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let handle = handle(&path);
    let socket = dir.join("control.sock");

    let server = server(&socket, &handle);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(server);
    assert!(!socket.exists());
}

#[test]
fn stops_when_socket_file_was_replaced() {
    let dir = scratch("replaced");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let handle = handle(&path);
    let socket = dir.join("control.sock");

    // Another process removed the file and bound its own socket there:
    // stopping must neither wait for a connection nor remove that file.
    let server = server(&socket, &handle);
    std::fs::remove_file(&socket).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(server);
        let _ = done.send(());
    });
    assert!(stopped.recv_timeout(std::time::Duration::from_secs(10)).is_ok(), "the server stopped");
    assert!(socket.exists(), "the other socket stays");
    drop(other);
}

#[test]
fn send_without_socket_file_is_not_running() {
    let dir = scratch("absent");
    let error = send(&dir.join("control.sock"), ControlRequest::Status).unwrap_err();
    assert!(matches!(error, ControlError::NotRunning { .. }), "{error}");
    assert!(error.to_string().contains("the socket file does not exist"), "{error}");
}

#[test]
fn send_to_stale_socket_says_no_listener() {
    let dir = scratch("stale");
    let socket = dir.join("control.sock");
    // Dropping a listener leaves its file, as a killed daemon does.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let error = send(&socket, ControlRequest::Status).unwrap_err();
    assert!(matches!(error, ControlError::NoListener { .. }), "{error}");
    assert!(error.to_string().contains("no odoogate daemon answers"), "{error}");
}

#[test]
fn invalid_request_gets_error_response() {
    let dir = scratch("bad");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let handle = handle(&path);
    let socket = dir.join("control.sock");
    let _server = server(&socket, &handle);

    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    std::io::Write::write_all(&mut stream, b"{\"command\": \"shutdown\"}\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line).unwrap();
    let response: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(response["ok"], false);
    assert!(response["error"].as_str().unwrap().starts_with("invalid request"), "{response}");
}

#[test]
fn reload_keeps_control_socket() {
    let dir = scratch("socket");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let handle = handle(&path);
    let before = handle.current().control.socket.clone();

    let text = std::fs::read_to_string(&path).unwrap() + "\n[control]\nsocket = \"/run/elsewhere.sock\"\n";
    std::fs::write(&path, text).unwrap();
    let report = handle.reload().unwrap();
    assert_eq!(report.needs_restart, [RestartSetting::ControlSocket]);
    assert_eq!(handle.current().control.socket, before);
}

#[test]
fn reload_keeps_start_time_settings() {
    let dir = scratch("start-time");
    let path = dir.join("odoogate.toml");
    write_config(&path, r#"{ models = ["crm.lead"], methods = ["read"] }"#);
    let handle = handle(&path);
    let before = handle.current();

    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "[policy]\n",
        "[policy]\nsessions_file = \"/var/lib/elsewhere/sessions.json\"\nsession_lifetime_secs = 3600\n",
        1,
    ) + "\n[capture]\nmax_flows = 10\n\n[audit]\noutput = \"file\"\nfile = \"/var/log/elsewhere.jsonl\"\n\
           \n[steering]\npin_dir = \"/sys/fs/bpf/elsewhere\"\n\n[metrics]\nlisten = \"127.0.0.1:9100\"\n\
           \n[tokens]\nstore = \"/var/lib/elsewhere/tokens.json\"\n";
    std::fs::write(&path, text).unwrap();
    let report = handle.reload().unwrap();
    let expected = [
        RestartSetting::Capture,
        RestartSetting::SessionsFile,
        RestartSetting::TokenStore,
        RestartSetting::AuditOutput,
        RestartSetting::AuditFile,
        RestartSetting::Steering,
        RestartSetting::Metrics,
    ];
    assert_eq!(report.needs_restart, expected);
    let current = handle.current();
    assert_eq!(current.capture, before.capture);
    assert_eq!(current.audit, before.audit);
    assert_eq!(current.steering, before.steering);
    assert_eq!(current.metrics, before.metrics);
    assert_eq!(current.policy.sessions_file, before.policy.sessions_file);
    assert_eq!(current.tokens.store, before.tokens.store);
    assert_eq!(current.policy.session_lifetime, std::time::Duration::from_secs(3600), "applies without a restart");
}

/// Returns whether SIGPIPE is pending for this thread (or the process).
fn sigpipe_pending() -> bool {
    let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the set it is given, which is then read.
    let pending = unsafe {
        assert_eq!(libc::sigpending(pending.as_mut_ptr()), 0);
        pending.assume_init()
    };
    // SAFETY: `pending` is an initialized set.
    unsafe { libc::sigismember(&pending, libc::SIGPIPE) == 1 }
}

/// `send` writes with std's `UnixStream::write_all`, which std documents as
/// using MSG_NOSIGNAL. A command that restored SIGPIPE's default action
/// would otherwise end, without a message, on a SIGPIPE from a daemon that
/// closed the connection. With SIGPIPE blocked in this thread the signal
/// stays pending instead of being ignored, so the test can check whether a
/// write raised it.
#[test]
fn write_to_closed_peer_raises_no_sigpipe() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};

    let mut sigpipe = SigSet::empty();
    sigpipe.add(Signal::SIGPIPE);
    let old_mask = sigpipe.thread_swap_mask(SigmaskHow::SIG_BLOCK).unwrap();
    assert!(!sigpipe_pending(), "SIGPIPE was pending before the test");

    let (client, daemon) = UnixStream::pair().unwrap();
    drop(daemon);
    let error = (&client).write_all(b"{\"command\":\"status\"}\n").unwrap_err();
    let raised_by_write_all = sigpipe_pending();

    // A plain write(2) does raise it, which shows that the check can fail.
    // SAFETY: the buffer is valid for its length.
    let written = unsafe { libc::write(client.as_raw_fd(), b"{}\n".as_ptr().cast(), 3) };
    let plain = io::Error::last_os_error();
    assert_eq!(written, -1);
    let raised_by_write = sigpipe_pending();
    if raised_by_write || raised_by_write_all {
        sigpipe.wait().unwrap();
    }
    old_mask.thread_set_mask().unwrap();

    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe, "{error}");
    assert!(!raised_by_write_all, "UnixStream::write_all raised SIGPIPE");
    assert_eq!(plain.kind(), io::ErrorKind::BrokenPipe, "{plain}");
    assert!(raised_by_write, "a plain write raised no SIGPIPE, so the test cannot see one");
}

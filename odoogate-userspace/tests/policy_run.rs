//! `odoogate run` in enforce mode with `proxy.listen`, without root:
//! rate limits, grants, field limits, live reload and status, driven
//! through the real binary, the Odoo-like upstream and the CLI. Needs
//! python3.

mod support;

use support::{Guard, fingerprint, free_port, start_upstream, temp_dir, wait_until};

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value as Json, json};

const READER_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";
const NIGHTLY_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

/// Sends one HTTP request and returns the status, the head and the body.
fn exchange(port: u16, path: &str, extra_headers: &str, content_type: &str, body: &str) -> (u16, String, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: odoo\r\nContent-Type: {content_type}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    (status, head.to_owned(), body.to_owned())
}

fn json2(port: u16, key: &str, model: &str, method: &str, body: Json) -> (u16, String, Json) {
    let headers = format!("Authorization: bearer {key}\r\nX-Odoo-Database: odoo19\r\n");
    let (status, head, body) = exchange(port, &format!("/json/2/{model}/{method}"), &headers, "application/json", &body.to_string());
    (status, head, serde_json::from_str(&body).unwrap_or(Json::Null))
}

/// Calls `execute_kw` over XML-RPC and returns the response body.
fn xmlrpc(port: u16, key: &str, model: &str, method: &str, args_xml: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>execute_kw</methodName><params>\
         <param><value><string>odoo19</string></value></param>\
         <param><value><int>2</int></value></param>\
         <param><value><string>{key}</string></value></param>\
         <param><value><string>{model}</string></value></param>\
         <param><value><string>{method}</string></value></param>\
         <param><value>{args_xml}</value></param>\
         </params></methodCall>"
    );
    exchange(port, "/xmlrpc/2/object", "", "text/xml", &body).2
}

const EMPTY_DOMAIN: &str = "<array><data><value><array><data></data></array></value></data></array>";

fn config_text(upstream_port: u16, listen_port: u16, dir: &Path, reader_methods: &str) -> String {
    format!(
        r#"
[odoo]
ports = [{upstream_port}]
interfaces = ["lo"]

[policy]
mode = "enforce"
unidentified = "deny"
grants_file = "{grants}"

[proxy]
listen = "127.0.0.1:{listen_port}"

[audit]
output = "file"
file = "{audit}"

[tokens]
store = "{tokens}"

[control]
socket = "{socket}"

[[integration]]
name = "reader"
match = {{ api_key_sha256 = ["{reader}"] }}
allow = [
  {{ models = ["res.partner"], methods = ["search"], rate = "1/h", burst = 2 }},
  {{ models = ["res.partner"], methods = ["write"], fields = ["name"] }},
  {{ models = ["res.partner"], methods = {reader_methods} }},
  {{ models = ["res.partner"], methods = ["search_read"], read_fields = ["id", "name"], narrow_reads = true }},
]

[[integration]]
name = "nightly"
enabled = false
match = {{ api_key_sha256 = ["{nightly}"] }}
allow = [{{ models = ["res.partner"], methods = ["search_count"] }}]
"#,
        grants = dir.join("grants.json").display(),
        audit = dir.join("audit.jsonl").display(),
        tokens = dir.join("no-tokens.json").display(),
        socket = dir.join("control.sock").display(),
        reader = fingerprint(READER_KEY),
        nightly = fingerprint(NIGHTLY_KEY),
    )
}

/// Runs the odoogate CLI and returns its output.
fn odoogate(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_odoogate")).args(args).arg("--config").arg(config).output().expect("odoogate runs")
}

fn odoogate_socket(args: &[&str], socket: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_odoogate")).args(args).arg("--socket").arg(socket).output().expect("odoogate runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hangup(daemon: &Child) {
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

fn nightly_count(port: u16) -> (u16, Json) {
    let (status, _, body) = json2(port, NIGHTLY_KEY, "res.partner", "search_count", json!({"domain": []}));
    (status, body)
}

fn reader_read(port: u16) -> String {
    xmlrpc(port, READER_KEY, "res.partner", "read", "<array><data><value><array><data><value><int>1</int></value></data></array></value></data></array>")
}

#[test]
fn run_applies_limits_grants_and_reloads() {
    let dir = temp_dir("policy-run");
    let upstream_port = free_port();
    let _upstream = start_upstream(&dir, upstream_port, &["--api-key", READER_KEY, "--api-key", NIGHTLY_KEY]);
    let listen_port = free_port();
    let config = dir.join("odoogate.toml");
    let socket = dir.join("control.sock");
    std::fs::write(&config, config_text(upstream_port, listen_port, &dir, r#"["fields_get"]"#)).unwrap();

    let daemon = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("odoogate starts");
    let mut daemon = Guard(daemon);
    wait_until("the proxy", || TcpStream::connect(("127.0.0.1", listen_port)).is_ok());
    wait_until("the control socket", || socket.exists());

    // Rate limit: a burst of 2 for JSON-2 and XML-RPC together.
    let (status, _, body) = json2(listen_port, READER_KEY, "res.partner", "search", json!({"domain": []}));
    assert_eq!(status, 200, "{body}");
    let allowed = xmlrpc(listen_port, READER_KEY, "res.partner", "search", EMPTY_DOMAIN);
    assert!(!allowed.contains("<fault>"), "{allowed}");
    let (status, head, body) = json2(listen_port, READER_KEY, "res.partner", "search", json!({"domain": []}));
    assert_eq!(status, 429, "{body}");
    assert!(head.contains("\r\nRetry-After: 3600"), "{head}");
    assert_eq!(body["name"], "werkzeug.exceptions.TooManyRequests");
    assert!(body["message"].as_str().unwrap().contains("rate limit reader.allow[0].rate = 1/h, burst 2"), "{body}");
    let limited = xmlrpc(listen_port, READER_KEY, "res.partner", "search", EMPTY_DOMAIN);
    assert!(limited.contains("<fault>"), "{limited}");
    assert!(limited.contains("<int>4</int>"), "{limited}");
    assert!(limited.contains("rate limit reader.allow[0].rate"), "{limited}");

    // Field limit: a write of a field outside `fields` is refused, naming it.
    let write_args = "<array><data><value><array><data><value><int>1</int></value></data></array></value>\
                      <value><struct><member><name>email</name><value><string>x@example.com</string></value></member></struct></value></data></array>";
    let refused = xmlrpc(listen_port, READER_KEY, "res.partner", "write", write_args);
    assert!(refused.contains("<fault>"), "{refused}");
    assert!(refused.contains("field email is not in fields"), "{refused}");

    // Read limit with narrow_reads: the read goes through with only the
    // allowed fields.
    let (status, _, body) = json2(listen_port, READER_KEY, "res.partner", "search_read", json!({"domain": [], "fields": ["name", "email"]}));
    assert_eq!(status, 200, "{body}");
    let rows = body.as_array().expect("a list of records");
    assert!(!rows.is_empty(), "{body}");
    for row in rows {
        assert!(row.get("name").is_some(), "{body}");
        assert!(row.get("email").is_none(), "{body}");
    }

    // A disabled integration passes only under a grant.
    let (status, body) = nightly_count(listen_port);
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("disabled"), "{body}");
    let granted = odoogate(&["grant", "nightly", "--for", "1h", "--reason", "monthly import"], &config);
    assert!(granted.status.success(), "{}", text(&granted.stderr));
    let grant_id = text(&granted.stdout).trim().to_owned();
    assert!(grant_id.starts_with("g-"), "{grant_id}");
    let (status, body) = nightly_count(listen_port);
    assert_eq!(status, 200, "{body}");

    let status_output = odoogate_socket(&["status"], &socket);
    assert!(status_output.status.success(), "{}", text(&status_output.stderr));
    let shown = text(&status_output.stdout);
    assert!(shown.contains("mode: enforce"), "{shown}");
    assert!(shown.contains(&grant_id), "{shown}");
    assert!(shown.contains("  nightly:\n    allow: 1\n    deny: 1\n"), "{shown}");
    assert!(shown.contains("  reader:\n    allow: 3\n    deny: 3\n"), "{shown}");
    assert!(shown.contains("limit: reader.allow[0].rate = 1/h, burst 2"), "{shown}");

    let revoked = odoogate(&["revoke-grant", &grant_id], &config);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let (status, body) = nightly_count(listen_port);
    assert_eq!(status, 403, "{body}");

    // SIGHUP with a changed rule changes the decision.
    assert!(reader_read(listen_port).contains("<fault>"));
    std::fs::write(&config, config_text(upstream_port, listen_port, &dir, r#"["fields_get", "read"]"#)).unwrap();
    hangup(&daemon.0);
    wait_until("the reloaded rule", || !reader_read(listen_port).contains("<fault>"));

    // An invalid configuration keeps the old policy.
    std::fs::write(&config, "[odoo]\nports = [\n").unwrap();
    hangup(&daemon.0);
    let reload = odoogate_socket(&["reload"], &socket);
    assert!(!reload.status.success());
    let error = text(&reload.stderr);
    assert!(error.contains("kept its old configuration"), "{error}");
    assert!(error.contains("odoogate.toml"), "{error}");
    let read = reader_read(listen_port);
    assert!(!read.contains("<fault>"), "{read}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = daemon.0.wait().unwrap();
    let mut stderr = String::new();
    daemon.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(exit.success(), "exit status {exit}: {stderr}");
    assert!(!socket.exists(), "the control socket is removed at stop");

    let records: Vec<Json> = std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let granted: Vec<&Json> = records.iter().filter(|record| record["ODOOGATE_GRANT"] == grant_id.as_str()).collect();
    assert_eq!(granted.len(), 1, "{records:?}");
    assert_eq!(granted[0]["ODOOGATE_DECISION"], "allow");
    assert_eq!(granted[0]["ODOOGATE_INTEGRATION"], "nightly");
    let narrowed: Vec<&Json> = records.iter().filter(|record| record["ODOOGATE_METHOD"] == "search_read").collect();
    assert_eq!(narrowed.len(), 1, "{records:?}");
    assert_eq!(narrowed[0]["ODOOGATE_DECISION"], "allow");
    assert_eq!(narrowed[0]["ODOOGATE_FIELDS"], "name");
    let reason = narrowed[0]["ODOOGATE_REASON"].as_str().unwrap();
    assert!(reason.contains("with the read narrowed to fields name"), "{reason}");
}

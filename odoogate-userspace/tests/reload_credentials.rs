//! `odoogate run` in enforce mode with `proxy.listen`, without root: a
//! configuration reload reads the service credentials again, and a
//! credentials file that cannot be read keeps the old ones and fails the
//! reload. Needs python3.

mod support;

use support::{Guard, free_port, start_upstream, temp_dir, wait_until};

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use odoogate::token::TokenStore;
use serde_json::Value as Json;

const FIRST_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";
const SECOND_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

fn sha_prefix(text: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()))[..12].to_owned()
}

/// Calls `search_count` over JSON-RPC with `token` in place of the API key
/// and returns the response body.
fn count_with_token(port: u16, token: &str) -> Json {
    let body = serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object",
        "method": "execute_kw", "args": ["odoo19", 2, token, "res.partner", "search_count", [[]]]}})
    .to_string();
    let request = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("a complete response");
    serde_json::from_str(body).unwrap_or(Json::Null)
}

fn assert_counted(response: &Json) {
    assert!(response["result"].is_u64(), "{response}");
}

fn write_credentials(path: &Path, key: &str) {
    std::fs::write(path, format!("default = \"{key}\"\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn config_text(upstream_port: u16, listen_port: u16, dir: &Path) -> String {
    format!(
        r#"
[odoo]
ports = [{upstream_port}]
interfaces = ["lo"]

[policy]
mode = "enforce"
unidentified = "deny"

[proxy]
listen = "127.0.0.1:{listen_port}"

[audit]
output = "file"
file = "{audit}"

[tokens]
store = "{store}"
credentials_file = "{credentials}"

[control]
socket = "{socket}"

[[integration]]
name = "counter"
match = {{ token = true }}
allow = [{{ models = ["res.partner"], methods = ["search_count"] }}]
"#,
        audit = dir.join("audit.jsonl").display(),
        store = dir.join("tokens.json").display(),
        credentials = dir.join("credentials.toml").display(),
        socket = dir.join("control.sock").display(),
    )
}

/// The credential prefixes of the calls the upstream received, in order.
fn forwarded_credentials(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<Json>(line).unwrap())
        .filter(|entry| entry["params"]["model_method"] == "search_count")
        .map(|entry| entry["params"]["credential_sha256_prefix"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn reload(socket: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_odoogate")).args(["reload", "--socket"]).arg(socket).output().expect("odoogate runs")
}

#[test]
fn reload_reads_credentials_again() {
    let dir = temp_dir("reload-credentials");
    let upstream_port = free_port();
    let listen_port = free_port();
    let log = dir.join("requests.jsonl");
    let log_arg = log.display().to_string();
    let _upstream = start_upstream(&dir, upstream_port, &["--api-key", FIRST_KEY, "--api-key", SECOND_KEY, "--request-log", &log_arg]);

    let credentials = dir.join("credentials.toml");
    write_credentials(&credentials, FIRST_KEY);
    let (_, token) = TokenStore::create(&dir.join("tokens.json"), "counter", None, SystemTime::now()).unwrap();
    let config = dir.join("odoogate.toml");
    std::fs::write(&config, config_text(upstream_port, listen_port, &dir)).unwrap();
    let socket = dir.join("control.sock");
    let daemon = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .expect("odoogate starts");
    let _daemon = Guard(daemon);
    wait_until("the proxy", || TcpStream::connect(("127.0.0.1", listen_port)).is_ok());
    wait_until("the control socket", || socket.exists());

    assert_counted(&count_with_token(listen_port, token.expose()));

    write_credentials(&credentials, SECOND_KEY);
    let reloaded = reload(&socket);
    assert!(reloaded.status.success(), "{}", String::from_utf8_lossy(&reloaded.stderr));
    assert_counted(&count_with_token(listen_port, token.expose()));

    std::fs::remove_file(&credentials).unwrap();
    let failed = reload(&socket);
    assert!(!failed.status.success());
    let error = String::from_utf8_lossy(&failed.stderr);
    assert!(error.contains("failed to read the credentials file"), "{error}");
    assert!(error.contains("stay in use"), "{error}");
    assert_counted(&count_with_token(listen_port, token.expose()));

    let forwarded = forwarded_credentials(&log);
    let expected = [sha_prefix(FIRST_KEY), sha_prefix(SECOND_KEY), sha_prefix(SECOND_KEY)];
    assert_eq!(forwarded, expected);
}

//! `odoogate run` in enforce mode with `proxy.listen`: the daemon starts
//! without root or eBPF, proxies to the Odoo-like upstream, writes its
//! audit records as JSON lines, and stops cleanly on SIGTERM. Needs python3.

mod support;

use support::{Guard, fingerprint, free_port, start_upstream, temp_dir, wait_for_port};

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

const API_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";

fn call(port: u16, method: &str) -> Json {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "method": "call", "id": 1,
        "params": {"service": "object", "method": "execute_kw", "args": ["odoo19", 2, API_KEY, "res.partner", method, [[]], {}]},
    })
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
    serde_json::from_str(response.split("\r\n\r\n").nth(1).expect("a body")).unwrap()
}

#[test]
fn run_enforces_in_listen_mode() {
    let dir = temp_dir("proxy-run");
    let upstream_port = free_port();
    let _upstream = start_upstream(&dir, upstream_port, &["--api-key", API_KEY]);

    let listen_port = free_port();
    let audit = dir.join("audit.jsonl");
    let fingerprint = fingerprint(API_KEY);
    let config = dir.join("odoogate.toml");
    std::fs::write(
        &config,
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
file = "{}"

[tokens]
store = "{}"

[[integration]]
name = "reader"
match = {{ api_key_sha256 = ["{fingerprint}"] }}
allow = [{{ models = ["res.partner"], methods = ["search"] }}]
"#,
            audit.display(),
            dir.join("no-tokens.json").display()
        ),
    )
    .unwrap();

    let daemon = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("odoogate starts");
    let mut daemon = Guard(daemon);
    wait_for_port(listen_port);

    assert!(call(listen_port, "search").get("result").is_some(), "allowed call answered by Odoo");
    let denied = call(listen_port, "unlink");
    assert_eq!(denied["error"]["data"]["name"], "odoo.exceptions.AccessError");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = daemon.0.wait().unwrap();
    let mut stderr = String::new();
    daemon.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "exit status {status}: {stderr}");

    let records: Vec<Json> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let decisions: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["ODOOGATE_EVENT"] == "call")
        .map(|r| (r["ODOOGATE_METHOD"].as_str().unwrap(), r["ODOOGATE_DECISION"].as_str().unwrap()))
        .collect();
    assert_eq!(decisions, [("search", "allow"), ("unlink", "deny")], "{records:?}");
}

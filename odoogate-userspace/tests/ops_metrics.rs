//! `[metrics] listen`: the enforce-mode daemon in listen mode (no root, no
//! eBPF) serves Prometheus metrics that count the calls it proxied. Needs
//! python3.

mod support;

use support::{Guard, fingerprint, free_port, start_upstream, temp_dir, wait_for_port, wait_until};

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

/// Returns the body of `GET /metrics` on `port`.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    response.split("\r\n\r\n").nth(1).expect("a body").to_owned()
}

/// Returns the value of the sample line that starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.parse().unwrap())
}

#[test]
fn metrics_count_proxied_calls() {
    let dir = temp_dir("ops-metrics");
    let upstream_port = free_port();
    let _upstream = start_upstream(&dir, upstream_port, &["--api-key", API_KEY]);

    let listen_port = free_port();
    let metrics_port = free_port();
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

[metrics]
listen = "127.0.0.1:{metrics_port}"

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
            dir.join("audit.jsonl").display(),
            dir.join("no-tokens.json").display()
        ),
    )
    .unwrap();

    let daemon = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .expect("odoogate starts");
    let _daemon = Guard(daemon);
    wait_for_port(listen_port);
    wait_for_port(metrics_port);

    let before = scrape(metrics_port);
    assert_eq!(sample(&before, "odoogate_calls_total"), None, "no call yet: {before}");

    assert!(call(listen_port, "search").get("result").is_some(), "allowed call answered by Odoo");
    assert!(call(listen_port, "search").get("result").is_some(), "allowed call answered by Odoo");
    assert!(call(listen_port, "unlink").get("error").is_some(), "denied call answered with an error");

    let allowed = r#"odoogate_calls_total{integration="reader",protocol="jsonrpc",decision="allow"}"#;
    let denied = r#"odoogate_calls_total{integration="reader",protocol="jsonrpc",decision="deny"}"#;
    // The metrics count records as the audit writer thread writes them,
    // shortly after each response is sent.
    wait_until("the three calls counted", || {
        let text = scrape(metrics_port);
        sample(&text, allowed).unwrap_or(0.0) + sample(&text, denied).unwrap_or(0.0) >= 3.0
    });
    let after = scrape(metrics_port);
    assert_eq!(sample(&after, allowed), Some(2.0), "{after}");
    assert_eq!(sample(&after, denied), Some(1.0), "{after}");
    let forwarded = sample(&after, r#"odoogate_call_duration_seconds_count{protocol="jsonrpc"}"#);
    assert!(forwarded.is_some_and(|count| count >= 2.0), "the forwarded calls have a latency: {after}");
    assert!(after.ends_with("# EOF\n"), "{after}");
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `odoogate run` in enforce mode with `proxy.listen`, without root:
//! XML-RPC reads under `narrow_reads` reach the Odoo-like upstream with
//! only the allowed fields, and the client gets only those. Needs python3.

mod support;

use support::{Guard, fingerprint, free_port, read_lines, start_upstream, temp_dir, wait_until};

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

const READER_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";

/// Sends `execute_kw` with `params` after the credential to `path` and
/// returns the response body.
fn execute_kw(port: u16, path: &str, params: &[&str]) -> String {
    let params: String = params.iter().map(|param| format!("<param><value>{param}</value></param>")).collect();
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>execute_kw</methodName><params>\
         <param><value><string>odoo19</string></value></param>\
         <param><value><int>2</int></value></param>\
         <param><value><string>{READER_KEY}</string></value></param>\
         {params}</params></methodCall>"
    );
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: odoo\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("a complete response");
    body.to_owned()
}

fn fields_array(fields: &[&str]) -> String {
    let items: String = fields.iter().map(|field| format!("<value><string>{field}</string></value>")).collect();
    format!("<array><data>{items}</data></array>")
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

[control]
socket = "{socket}"

[[integration]]
name = "reader"
match = {{ api_key_sha256 = ["{reader}"] }}
allow = [
  {{ models = ["res.partner"], methods = ["read", "search_read"], read_fields = ["name"], narrow_reads = true }},
]
"#,
        audit = dir.join("audit.jsonl").display(),
        socket = dir.join("control.sock").display(),
        reader = fingerprint(READER_KEY),
    )
}

#[test]
fn xmlrpc_reads_are_narrowed() {
    let dir = temp_dir("policy-xmlrpc");
    let upstream_port = free_port();
    let log = dir.join("requests.jsonl").display().to_string();
    let _upstream = start_upstream(&dir, upstream_port, &["--api-key", READER_KEY, "--request-log", &log]);
    let listen_port = free_port();
    let config = dir.join("odoogate.toml");
    std::fs::write(&config, config_text(upstream_port, listen_port, &dir)).unwrap();
    let daemon = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .expect("odoogate starts");
    let _daemon = Guard(daemon);
    wait_until("the proxy", || TcpStream::connect(("127.0.0.1", listen_port)).is_ok());

    // `read` with the field list positional, over /xmlrpc/2.
    let ids = "<array><data><value><int>3</int></value></data></array>";
    let args = format!("<array><data><value>{ids}</value><value>{}</value></data></array>", fields_array(&["name", "email"]));
    let read = execute_kw(listen_port, "/xmlrpc/2/object", &["<string>res.partner</string>", "<string>read</string>", &args]);
    assert!(!read.contains("<fault>"), "{read}");
    assert!(read.contains("<name>name</name>"), "{read}");
    assert!(!read.contains("<name>email</name>"), "{read}");

    // `search_read` with the field list in kwargs, over legacy /xmlrpc.
    let domain = "<array><data><value><array><data></data></array></value></data></array>";
    let kwargs = format!("<struct><member><name>fields</name><value>{}</value></member></struct>", fields_array(&["email", "name", "phone"]));
    let search_read =
        execute_kw(listen_port, "/xmlrpc/object", &["<string>res.partner</string>", "<string>search_read</string>", domain, &kwargs]);
    assert!(!search_read.contains("<fault>"), "{search_read}");
    assert!(search_read.contains("<name>name</name>"), "{search_read}");
    assert!(!search_read.contains("<name>email</name>"), "{search_read}");
    assert!(!search_read.contains("<name>phone</name>"), "{search_read}");

    let requests = read_lines(&dir.join("requests.jsonl"));
    let reads: Vec<&Json> = requests.iter().filter(|entry| entry["service"] == "object").collect();
    assert_eq!(reads.len(), 2, "{requests:?}");
    for entry in reads {
        assert_eq!(entry["params"]["fields"], serde_json::json!(["name"]), "{entry}");
    }

    // The daemon writes records on a thread of its own, shortly after each
    // response is sent.
    let is_narrowed = |record: &&Json| record["ODOOGATE_FIELDS"] == "name";
    wait_until("the two call records", || read_lines(&dir.join("audit.jsonl")).iter().filter(is_narrowed).count() >= 2);
    let records = read_lines(&dir.join("audit.jsonl"));
    let narrowed: Vec<&Json> = records.iter().filter(is_narrowed).collect();
    assert_eq!(narrowed.len(), 2, "{records:?}");
    for record in narrowed {
        assert_eq!(record["ODOOGATE_DECISION"], "allow", "{record}");
        let reason = record["ODOOGATE_REASON"].as_str().unwrap();
        assert!(reason.contains("with the read narrowed to fields name"), "{reason}");
    }
}

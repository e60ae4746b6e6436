//! `odoogate run` in enforce mode with `proxy.listen`, without root:
//! XML-RPC reads under `narrow_reads` reach the Odoo-like upstream with
//! only the allowed fields, and the client gets only those. Needs python3.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

const READER_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

fn fingerprint(key: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()))
}

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

fn start_upstream(dir: &Path, port: u16) -> Guard {
    let script = odoogate::upstream::write_script(dir).unwrap();
    let upstream = Command::new("python3")
        .arg(&script)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--api-key", READER_KEY, "--request-log"])
        .arg(dir.join("requests.jsonl"))
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 starts");
    wait_until("the upstream", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    Guard(upstream)
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("odoogate-policy-xmlrpc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_lines(path: &Path) -> Vec<Json> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn xmlrpc_reads_are_narrowed() {
    let dir = temp_dir();
    let upstream_port = free_port();
    let _upstream = start_upstream(&dir, upstream_port);
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

    let records = read_lines(&dir.join("audit.jsonl"));
    let narrowed: Vec<&Json> = records.iter().filter(|record| record["ODOOGATE_FIELDS"] == "name").collect();
    assert_eq!(narrowed.len(), 2, "{records:?}");
    for record in narrowed {
        assert_eq!(record["ODOOGATE_DECISION"], "allow", "{record}");
        let reason = record["ODOOGATE_REASON"].as_str().unwrap();
        assert!(reason.contains("with the read narrowed to fields name"), "{reason}");
    }
}

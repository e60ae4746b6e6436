//! Helpers shared by the integration tests that run the `odoogate` binary
//! and the Odoo-like upstream without root.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use odoogate::scratch::ScratchDir;

/// A child process killed on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `ready` every 25 ms and panics, naming `what`, after 10 s.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

/// Waits until something accepts connections on loopback `port`.
pub fn wait_for_port(port: u16) {
    wait_until(&format!("a listener on port {port}"), || TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// Returns the lowercase hex SHA-256 of `key`, as `api_key_sha256` takes it.
pub fn fingerprint(key: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()))
}

/// Returns an empty directory named after `name` and this process, removed
/// when dropped.
pub fn temp_dir(name: &str) -> ScratchDir {
    ScratchDir::new(name)
}

/// Starts the Odoo-like upstream on 127.0.0.1:`port` with `args` (API
/// keys, a request log), its script written into `dir`, and waits until it
/// accepts connections.
pub fn start_upstream(dir: &Path, port: u16, args: &[&str]) -> Guard {
    let script = odoogate::upstream::write_script(dir).unwrap();
    let upstream = Command::new("python3")
        .arg(&script)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 starts");
    let guard = Guard(upstream);
    wait_for_port(port);
    guard
}

/// Reads the complete lines of a JSON lines file, an empty list when it
/// does not exist yet. A line still being written is left for a later read.
pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n').filter_map(|line| line.strip_suffix('\n')).map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Starts the Odoo-like upstream on a port the system chooses, with `args`
/// and its script written into `dir`, and returns it with that port. Tests
/// of one binary run in parallel, and a port from [`free_port`] may be
/// taken by another test's upstream before this one binds it.
pub fn start_upstream_on_any_port(dir: &Path, args: &[&str]) -> (Guard, u16) {
    let script = odoogate::upstream::write_script(dir).unwrap();
    let ready = dir.join("upstream.port");
    let _ = std::fs::remove_file(&ready);
    let upstream = Command::new("python3")
        .arg(&script)
        .args(["--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 starts");
    let guard = Guard(upstream);
    let port = || std::fs::read_to_string(&ready).ok()?.trim().parse::<u16>().ok();
    wait_until("the upstream's port file", || port().is_some());
    (guard, port().unwrap_or_default())
}

/// The Odoo-like upstream with its request log, stopped on drop.
pub struct Upstream {
    _process: Guard,
    pub port: u16,
    pub log: PathBuf,
}

impl Upstream {
    /// Starts the upstream for database `odoo19` with `api_key`, logging
    /// every received call to `dir/requests.jsonl`.
    pub fn start(dir: &Path, api_key: &str) -> Upstream {
        let log = dir.join("requests.jsonl");
        let log_arg = log.display().to_string();
        let (process, port) = start_upstream_on_any_port(dir, &["--db", "odoo19", "--api-key", api_key, "--request-log", &log_arg]);
        Upstream { _process: process, port, log }
    }

    /// Returns the calls the upstream received, one JSON object each.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        read_lines(&self.log)
    }
}

/// An audit sink that keeps the records the proxy or pipeline writes.
#[derive(Clone, Default)]
pub struct Records(pub std::sync::Arc<std::sync::Mutex<Vec<odoogate::audit::AuditRecord>>>);

impl odoogate::audit::AuditSink for Records {
    fn write(&mut self, record: &odoogate::audit::AuditRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

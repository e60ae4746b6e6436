//! Loads the real eBPF programs and checks what they capture.
//!
//! Root only: each test skips with a message otherwise. Each test creates its
//! own network namespace and enters it on the test thread with setns, which
//! keeps the cgroup v2 mount visible (`ip netns exec` would hide it). Guards
//! remove the namespace and any cgroup a test made, even when an assertion
//! fails.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::sched::{CloneFlags, setns};
use odoogate::capture::cgroup::{self, CgroupResolver};
use odoogate::capture::ebpf::{Capture, CaptureOptions};
use odoogate::capture::{CaptureEvent, FlowOrigin, Segment};
use sha2::{Digest as _, Sha256};

/// Upper bound on waiting for the capture to deliver what a test expects; a
/// test that hits it fails instead of hanging. It is no timing assertion.
const DELIVERY_BOUND: Duration = Duration::from_secs(120);

const RING_BUFFER_BYTES: u32 = 64 << 20;

/// Returns true (after printing why) when the test cannot run here, and
/// sends the daemon's log (filtered by RUST_LOG) to the test output.
fn skip_unless_root(test: &str) -> bool {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("skipping {test}: loading eBPF programs needs root");
    true
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(status.success(), "{program} {args:?} failed with {status}");
}

/// A network namespace that the current thread has entered; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn enter(tag: &str) -> Self {
        let name = format!("odoogate-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &name]);
        let netns = Self { name };
        let file =
            File::open(format!("/run/netns/{}", netns.name)).expect("open the network namespace");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into the test network namespace");
        run("ip", &["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("failed to delete network namespace {}", self.name);
        }
    }
}

/// A cgroup made under the cgroup v2 mount; removed on drop.
struct TestCgroup {
    path: PathBuf,
    relative: String,
}

impl TestCgroup {
    fn create(tag: &str) -> Self {
        let root = cgroup::find_cgroup2_mount().expect("a cgroup v2 mount");
        let relative = format!("odoogate-{tag}-{}", std::process::id());
        let path = root.join(&relative);
        let _ = fs::remove_dir(&path);
        fs::create_dir(&path).expect("create the test cgroup");
        Self { path, relative }
    }

    fn add_process(&self, pid: u32) {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .expect("move the process into the test cgroup");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir(&self.path) {
            eprintln!("failed to remove cgroup {}: {error}", self.path.display());
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64), so a misplaced segment
/// changes the digest, which a periodic pattern could hide.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads an HTTP/1.1 message head and returns its Content-Length.
fn read_head(reader: &mut impl BufRead) -> usize {
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header line");
        if line == "\r\n" || line.is_empty() {
            return content_length;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = value.trim().parse().expect("a numeric Content-Length");
        }
    }
}

/// Serves `count` connections: reads one POST, responds with a body of the
/// same length, then closes.
fn spawn_server(listener: TcpListener, count: usize) -> JoinHandle<()> {
    thread::spawn(move || {
        for index in 0..count {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let len = read_head(&mut reader);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).expect("read the request body");
            let mut stream = stream;
            stream
                .write_all(&response_bytes(len, index as u64))
                .expect("write the response");
        }
    })
}

fn request_bytes(body_len: usize, seed: u64) -> Vec<u8> {
    let mut request =
        format!("POST /upload HTTP/1.1\r\nHost: odoo\r\nContent-Length: {body_len}\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(&pattern(body_len, seed));
    request
}

fn response_bytes(body_len: usize, seed: u64) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
    response.extend_from_slice(&pattern(body_len, !seed));
    response
}

/// Drains capture events on a thread until the capture stops, counting FIN
/// segments so the test can tell when every flow has ended.
fn spawn_collector(
    events: Receiver<CaptureEvent>,
    fins: Arc<AtomicUsize>,
) -> JoinHandle<Vec<Segment>> {
    thread::spawn(move || {
        let mut segments = Vec::new();
        for event in events {
            if let CaptureEvent::Segment(segment) = event {
                if segment.flags.fin() {
                    fins.fetch_add(1, Ordering::Relaxed);
                }
                segments.push(segment);
            }
        }
        segments
    })
}

/// Reassembles one direction by sequence number: the stream starts after the
/// SYN, duplicates and overlaps are trimmed, and a gap fails the test.
fn reassemble(segments: &[&Segment]) -> Vec<u8> {
    let syn = segments
        .iter()
        .find(|segment| segment.flags.syn())
        .expect("a SYN in this direction");
    let first = syn.seq.wrapping_add(1);
    let mut by_offset: BTreeMap<u32, Bytes> = BTreeMap::new();
    for segment in segments
        .iter()
        .filter(|segment| !segment.payload.is_empty())
    {
        let offset = segment.seq.wrapping_sub(first);
        let slot = by_offset.entry(offset).or_default();
        if segment.payload.len() > slot.len() {
            *slot = segment.payload.clone();
        }
    }
    let mut stream = Vec::new();
    for (offset, payload) in by_offset {
        let offset = offset as usize;
        assert!(
            offset <= stream.len(),
            "gap in the capture: {} bytes missing at {}",
            offset - stream.len(),
            stream.len()
        );
        let end = offset + payload.len();
        if end > stream.len() {
            stream.extend_from_slice(&payload[stream.len() - offset..]);
        }
    }
    stream
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DELIVERY_BOUND,
            "gave up waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn payloads_reassemble_exactly() {
    if skip_unless_root("payloads_reassemble_exactly") {
        return;
    }
    let _netns = Netns::enter("payloads");
    check_payloads("127.0.0.1:8069", &[1_000, 100_000, 1_000_000, 20_000_000]);
}

#[test]
fn ipv6_payloads_reassemble_exactly() {
    if skip_unless_root("ipv6_payloads_reassemble_exactly") {
        return;
    }
    let _netns = Netns::enter("payloads6");
    check_payloads("[::1]:8069", &[1_000, 100_000, 1_000_000]);
}

/// Sends one POST per body size to a server on `address` inside the current
/// network namespace, and checks that the capture on `lo` reassembles to
/// exactly the bytes of each direction.
fn check_payloads(address: &str, body_sizes: &[usize]) {
    let listener = TcpListener::bind(address).expect("bind the test server");
    let server_addr = listener.local_addr().unwrap();
    let server = spawn_server(listener, body_sizes.len());

    let (sender, receiver) = mpsc::sync_channel(4096);
    let options = CaptureOptions {
        interfaces: vec!["lo".to_owned()],
        ports: vec![server_addr.port()],
        ring_buffer_bytes: RING_BUFFER_BYTES,
        cgroup_root: None,
        cgroup_programs: false,
        connect_guard: None,
        ignore_own_connects: false,
    };
    let capture = Capture::start(&options, sender).expect("start the capture");
    assert_eq!(capture.attachments(), vec!["tc ingress on lo".to_owned()]);
    let fins = Arc::new(AtomicUsize::new(0));
    let collector = spawn_collector(receiver, fins.clone());

    // Client address -> digests of what the client sent and received.
    let mut expected: HashMap<SocketAddr, (String, String)> = HashMap::new();
    for (index, &size) in body_sizes.iter().enumerate() {
        let mut client = TcpStream::connect(server_addr).expect("connect to the test server");
        let request = request_bytes(size, index as u64 + 1);
        client.write_all(&request).expect("send the request");
        let mut response = Vec::new();
        client
            .read_to_end(&mut response)
            .expect("read the response");
        assert_eq!(
            response,
            response_bytes(size, index as u64),
            "the server answered wrongly"
        );
        expected.insert(
            client.local_addr().unwrap(),
            (sha256(&request), sha256(&response)),
        );
    }
    server.join().expect("the test server panicked");

    let flows = body_sizes.len();
    wait_until("a FIN in each direction of every flow", || {
        fins.load(Ordering::Relaxed) >= 2 * flows
    });
    let stats = capture.stats();
    drop(capture);
    let segments = collector.join().expect("the collector panicked");

    assert_eq!(stats.ring_full, 0, "records lost to a full ring: {stats:?}");
    assert_eq!(stats.truncated, 0, "payloads truncated: {stats:?}");
    assert_eq!(stats.load_errors, 0, "payload copies failed: {stats:?}");
    assert_eq!(stats.malformed_records, 0, "malformed records: {stats:?}");
    assert_eq!(
        stats.records, stats.packets,
        "packets without records: {stats:?}"
    );
    assert!(
        segments
            .iter()
            .all(|segment| segment.payload.len() == segment.wire_len as usize)
    );

    for (client, (request_digest, response_digest)) in &expected {
        let upstream: Vec<&Segment> = segments
            .iter()
            .filter(|s| s.src == *client && s.dst == server_addr)
            .collect();
        let downstream: Vec<&Segment> = segments
            .iter()
            .filter(|s| s.src == server_addr && s.dst == *client)
            .collect();
        let sent = reassemble(&upstream);
        let received = reassemble(&downstream);
        assert_eq!(
            &sha256(&sent),
            request_digest,
            "client {client}: {} request bytes captured",
            sent.len()
        );
        assert_eq!(
            &sha256(&received),
            response_digest,
            "client {client}: {} response bytes captured",
            received.len()
        );
    }
}

#[test]
fn flow_origin_names_cgroup_and_process() {
    if skip_unless_root("flow_origin_names_cgroup_and_process") {
        return;
    }
    if Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipping flow_origin_names_cgroup_and_process: curl is not installed");
        return;
    }
    let _netns = Netns::enter("origin");
    // The cgroup programs see the whole host, so use a port that other
    // tests on this host are unlikely to use.
    let port = 20_000 + (std::process::id() % 10_000) as u16;
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the test server");
    let server_addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        read_head(&mut reader);
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .expect("write the response");
    });

    let (sender, receiver) = mpsc::sync_channel(4096);
    let options = CaptureOptions {
        interfaces: vec!["lo".to_owned()],
        ports: vec![port],
        ring_buffer_bytes: 1 << 20,
        cgroup_root: None,
        cgroup_programs: true,
        connect_guard: None,
        ignore_own_connects: false,
    };
    let capture = Capture::start(&options, sender).expect("start the capture");
    assert_eq!(
        capture.attachments().len(),
        4,
        "attachments: {:?}",
        capture.attachments()
    );

    let test_cgroup = TestCgroup::create("origin");
    // The shell waits for a line on stdin, so it can be moved into the
    // cgroup before curl (which replaces it, keeping the pid) connects.
    let script =
        format!("read -r _; exec curl -s -o /dev/null --max-time 20 http://{server_addr}/");
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn curl");
    test_cgroup.add_process(child.id());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .expect("release the client");
    let status = child.wait().expect("wait for curl");
    assert!(status.success(), "curl failed: {status}");
    server.join().expect("the test server panicked");

    let origin = receive_origin(&receiver, server_addr);
    let stats = capture.stats();
    drop(capture);

    let expected_id = cgroup::cgroup_id(&test_cgroup.path).unwrap();
    assert_eq!(origin.cgroup_id, expected_id);
    let mut resolver = CgroupResolver::discover().expect("a cgroup v2 mount");
    assert_eq!(
        resolver.path(origin.cgroup_id).as_deref(),
        Some(test_cgroup.relative.as_str())
    );
    assert_eq!(origin.pid, Some(child.id()));
    assert_eq!(origin.comm.as_deref(), Some("curl"));
    assert_eq!(origin.uid, Some(0));
    assert_eq!(origin.client.ip(), server_addr.ip());
    assert!(stats.origins >= 1, "no origin counted: {stats:?}");
    assert!(stats.connects >= 1, "no connect counted: {stats:?}");
}

#[test]
fn own_connects_get_no_origin() {
    if skip_unless_root("own_connects_get_no_origin") {
        return;
    }
    if Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_err() {
        eprintln!("skipping own_connects_get_no_origin: curl is not installed");
        return;
    }
    let _netns = Netns::enter("own");
    let port = 30_000 + (std::process::id() % 10_000) as u16;
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the test server");
    let server_addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            read_head(&mut reader);
            stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").expect("write the response");
        }
    });

    let (sender, receiver) = mpsc::sync_channel(4096);
    let options = CaptureOptions {
        interfaces: Vec::new(),
        ports: vec![port],
        ring_buffer_bytes: 1 << 20,
        cgroup_root: None,
        cgroup_programs: true,
        connect_guard: None,
        ignore_own_connects: true,
    };
    let capture = Capture::start(&options, sender).expect("start the capture");

    // This process connects first, then curl. Records arrive in order, so
    // an origin for this process's connect would come before curl's.
    let mut own = TcpStream::connect(server_addr).expect("connect from this process");
    let own_client = own.local_addr().unwrap();
    own.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send the request");
    let mut response = [0u8; 64];
    let _ = own.read(&mut response).expect("read the response");
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "20", &format!("http://{server_addr}/")])
        .status()
        .expect("run curl");
    assert!(status.success(), "curl failed: {status}");
    server.join().expect("the test server panicked");

    let origin = receive_origin(&receiver, server_addr);
    drop(capture);
    assert_ne!(origin.client, own_client, "this process's own connect got an origin");
    assert_eq!(origin.comm.as_deref(), Some("curl"));
}

/// Returns the first flow origin for `server`, skipping other events.
fn receive_origin(receiver: &Receiver<CaptureEvent>, server: SocketAddr) -> FlowOrigin {
    let start = Instant::now();
    loop {
        let remaining = DELIVERY_BOUND
            .checked_sub(start.elapsed())
            .expect("gave up waiting for the flow origin");
        match receiver.recv_timeout(remaining) {
            Ok(CaptureEvent::Origin(origin)) if origin.server == server => return origin,
            Ok(_) => {}
            Err(error) => panic!("no flow origin for {server}: {error}"),
        }
    }
}

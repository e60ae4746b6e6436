//! Overload end to end: `odoogate run` at its configured limits, in
//! namespaces made by the test, with the Odoo-like upstream and a private
//! journald. Each test drives one overload and then checks four things.
//! The daemon still runs and serves. What it dropped is counted (`odoogate
//! status`) and recorded (audit records). In enforce mode, no call reached
//! Odoo undecided (the upstream's request log). Its memory stayed under a
//! bound derived from the configured limits.
//!
//! Memory is read from /proc/PID/status (VmHWM, the peak resident set).
//! Each bound is the daemon's resident set after start plus what the
//! configured limits let it hold, plus a fixed allowance for the
//! allocator and decoders; each test states its own.

mod common;

use common::{API_KEY, Record, Site, SiteMode, assert_field, calls, find};

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use nix::sched::{CloneFlags, setns};
use odoogate::demo::lab;
use serde_json::Value as Json;

const MIB: u64 = 1024 * 1024;

/// Allowance for the allocator's own overhead, thread stacks touched under
/// load and the decoders' temporary copies, on top of what the limits let
/// the daemon hold.
const ALLOWANCE: u64 = 48 * MIB;

/// Memory one open connection of the proxy may hold besides its request.
const IDLE_CONNECTION_BYTES: u64 = 64 * 1024;

/// Upper bound on waiting for something the test expects; hitting it
/// fails the test. It is no timing assertion.
const WAIT_BOUND: Duration = Duration::from_secs(30);

/// Every client of these tests calls from 127.0.0.1 on the Odoo host.
const LOCAL_INTEGRATION: &str = r#"[[integration]]
name = "local"
match = { ip = ["127.0.0.1/32"] }
allow = [{ models = ["res.partner"], methods = ["search_count", "create"] }]
"#;

// === helpers ===

/// The daemon's resident set now and at its peak, in bytes.
#[derive(Clone, Copy, Debug)]
struct Memory {
    rss: u64,
    hwm: u64,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the daemon's /proc status");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
        let kib: u64 = line.split_whitespace().nth(1).and_then(|value| value.parse().ok()).expect("a size in kB");
        kib * 1024
    };
    Memory { rss: field("VmRSS:"), hwm: field("VmHWM:") }
}

/// Asserts that the daemon's peak and current resident sets stay under
/// `bound`, naming `what` and the numbers on failure.
fn assert_memory_under(pid: u32, bound: u64, what: &str) {
    let now = memory(pid);
    eprintln!("{what}: VmRSS {} KiB, VmHWM {} KiB, bound {} KiB", now.rss / 1024, now.hwm / 1024, bound / 1024);
    assert!(now.hwm <= bound, "{what}: peak resident set {} KiB above the bound {} KiB", now.hwm / 1024, bound / 1024);
    assert!(now.rss <= bound, "{what}: resident set {} KiB above the bound {} KiB", now.rss / 1024, bound / 1024);
}

/// Runs `work` on a thread that entered the network namespace at `netns`,
/// so its sockets reach the site's 127.0.0.1.
fn in_netns<T: Send>(netns: PathBuf, work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let file = std::fs::File::open(&netns).expect("open the odoo namespace");
                setns(&file, CloneFlags::CLONE_NEWNET).expect("enter the odoo namespace");
                work()
            })
            .join()
            .expect("the client thread panicked")
    })
}

fn jsonrpc_body(method: &str, args: Json) -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "method": "call", "id": 1,
        "params": {"service": "object", "method": "execute_kw", "args": ["odoo19", 2, API_KEY, "res.partner", method, args, {}]},
    })
    .to_string()
}

fn post(body: &str) -> String {
    format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `request` on a new connection to 127.0.0.1:`port` and returns the
/// whole response.
fn exchange(port: u16, request: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(WAIT_BOUND))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Makes a `search_count` call and returns the response.
fn search_count(port: u16) -> String {
    exchange(port, post(&jsonrpc_body("search_count", serde_json::json!([[]]))).as_bytes()).expect("a search_count exchange")
}

/// Asserts that a `search_count` response carries a result from Odoo.
fn assert_answered(response: &str) {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json: Json = serde_json::from_str(body).unwrap_or(Json::Null);
    assert!(json.get("result").is_some(), "expected Odoo's result, got {response:?}");
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

/// Returns the records of `event` with `code`.
fn events<'a>(records: &'a [Record], event: &str, code: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.get("ODOOGATE_EVENT").map(String::as_str) == Some(event))
        .filter(|r| r.get("ODOOGATE_ERROR_CODE").map(String::as_str) == Some(code))
        .collect()
}

/// Sums `ODOOGATE_COUNT` over `records` (1 for a record without it).
fn total_count(records: &[&Record]) -> u64 {
    records.iter().map(|r| r.get("ODOOGATE_COUNT").and_then(|count| count.parse().ok()).unwrap_or(1)).sum()
}

/// Returns the upstream's entries for model calls of `method`.
fn upstream_calls(site: &Site, method: &str) -> usize {
    site.upstream_requests().iter().filter(|entry| entry["params"]["model_method"] == method || entry["method"] == method).count()
}

/// Raises this process's soft open-file limit to at least `minimum`.
fn raise_open_files(minimum: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= minimum {
        return Ok(());
    }
    let hard = hard.max(minimum);
    setrlimit(Resource::RLIMIT_NOFILE, minimum, hard).context("raise RLIMIT_NOFILE for the test's connections")
}

// === observe mode ===

#[test]
fn ring_buffer_overflow_is_counted() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    // A 64 KiB ring cannot take a full-size segment on lo (64 KiB of
    // payload plus the record header), so each large call loses packets,
    // while a small call's records fit.
    let sections = "[capture]\nring_buffer_bytes = 65536\nmax_body_bytes = 1048576\nmax_flow_buffer_bytes = 1048576\nmax_flows = 64\n";
    let mut site = Site::start_with_sections(SiteMode::Observe, "ring", LOCAL_INTEGRATION, "deny", sections)?;
    let pid = site.daemon_pid();
    let start = memory(pid);
    let port = site.port;

    let burst = in_netns(site.odoo.path(), move || {
        std::thread::scope(|scope| {
            let clients: Vec<_> = (0..8)
                .map(|index| {
                    scope.spawn(move || {
                        let name = format!("{index}").repeat(2 * MIB as usize);
                        let body = jsonrpc_body("create", serde_json::json!([{ "name": name }]));
                        exchange(port, post(&body).as_bytes())
                    })
                })
                .collect();
            clients.into_iter().map(|client| client.join().expect("a burst client panicked")).collect::<Vec<_>>()
        })
    });
    for response in &burst {
        assert_answered(response.as_ref().expect("observe mode leaves the burst untouched"));
    }

    lab::wait_for("the ring buffer loss in the status", WAIT_BOUND, || {
        site.status().is_ok_and(|status| status["capture_stats"]["ring_buffer_full"].as_u64().unwrap_or(0) > 0)
    })?;
    assert!(site.daemon_is_running(), "the daemon survives the ring buffer overflow");

    // Up to 8 flows, each holding at most max_body_bytes of a body and
    // max_flow_buffer_bytes of out-of-order bytes per direction, plus the
    // ring itself.
    let bound = start.rss + 8 * 2 * (MIB + MIB) + 65536 + ALLOWANCE;
    assert_memory_under(pid, bound, "after the burst");

    let later: Vec<String> = in_netns(site.odoo.path(), move || (0..3).map(|_| search_count(port)).collect());
    for response in &later {
        assert_answered(response);
    }
    let records = site.stop_and_read(3)?;

    let losses = events(&records, "capture_loss", "ring_buffer_full");
    assert!(!losses.is_empty(), "a capture_loss record says packets were lost: {records:?}");
    assert!(total_count(&losses) > 0, "the loss record counts the lost packets: {losses:?}");
    assert!(losses[0]["MESSAGE"].contains("ring buffer was full"), "{:?}", losses[0]);
    let counted = find(&records, Some("res.partner"), "search_count");
    assert_eq!(counted.len(), 3, "the calls after the burst are recorded: {:?}", calls(&records));
    for record in &counted {
        assert_field(record, "ODOOGATE_DECISION", "allow");
        assert_field(record, "ODOOGATE_OUTCOME", "ok");
    }
    Ok(())
}

#[test]
fn full_flow_table_evicts_and_recovers() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let sections = "[capture]\nmax_flows = 4\nmax_body_bytes = 1048576\nmax_flow_buffer_bytes = 1048576\n";
    let mut site = Site::start_with_sections(SiteMode::Observe, "flows", LOCAL_INTEGRATION, "deny", sections)?;
    let pid = site.daemon_pid();
    let start = memory(pid);
    let port = site.port;

    // Twelve connections at once, each with half a request, in a table of
    // four: the eight least recently active are dropped.
    let idle = in_netns(site.odoo.path(), move || -> std::io::Result<Vec<TcpStream>> {
        let mut streams = Vec::new();
        for _ in 0..12 {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.write_all(b"POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\n")?;
            streams.push(stream);
        }
        Ok(streams)
    })?;
    lab::wait_for("eight flows evicted in the status", WAIT_BOUND, || {
        site.status().is_ok_and(|status| status["overload"]["flows_evicted"].as_u64().unwrap_or(0) >= 8)
    })?;
    for stream in &idle {
        stream.shutdown(Shutdown::Both)?;
    }
    drop(idle);
    assert!(site.daemon_is_running(), "the daemon survives a full flow table");

    let later: Vec<String> = in_netns(site.odoo.path(), move || (0..3).map(|_| search_count(port)).collect());
    for response in &later {
        assert_answered(response);
    }
    // Four flows, each holding at most max_body_bytes and
    // max_flow_buffer_bytes per direction.
    assert_memory_under(pid, start.rss + 4 * 2 * (MIB + MIB) + ALLOWANCE, "after the flow table filled");
    let records = site.stop_and_read(3)?;

    let evictions = events(&records, "capture_loss", "flow_table_full");
    assert!(total_count(&evictions) >= 8, "each dropped flow is recorded: {evictions:?}");
    assert_field(evictions[0], "ODOOGATE_SRC_IP", "127.0.0.1");
    assert!(evictions[0]["MESSAGE"].contains("capture.max_flows"), "{:?}", evictions[0]);
    let counted = find(&records, Some("res.partner"), "search_count");
    assert_eq!(counted.len(), 3, "calls after the eviction are recorded: {:?}", calls(&records));
    for record in &counted {
        assert_field(record, "ODOOGATE_DECISION", "allow");
        assert_field(record, "ODOOGATE_OUTCOME", "ok");
    }
    Ok(())
}

#[test]
fn body_over_capture_limit_is_truncated() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let sections = "[capture]\nmax_body_bytes = 65536\nmax_flow_buffer_bytes = 1048576\nmax_flows = 64\n";
    let mut site = Site::start_with_sections(SiteMode::Observe, "truncated", LOCAL_INTEGRATION, "deny", sections)?;
    let pid = site.daemon_pid();
    let start = memory(pid);
    let port = site.port;

    let responses: Vec<String> = in_netns(site.odoo.path(), move || {
        let name = "x".repeat(300_000);
        let large = exchange(port, post(&jsonrpc_body("create", serde_json::json!([{ "name": name }]))).as_bytes());
        vec![large.expect("the large call"), search_count(port)]
    });
    for response in &responses {
        assert_answered(response);
    }
    // One flow keeps at most max_body_bytes of the body.
    assert_memory_under(pid, start.rss + 2 * (64 * 1024 + MIB) + ALLOWANCE, "after the large body");
    let records = site.stop_and_read(2)?;

    // The cut body cannot be decoded, so the call is recorded as
    // undecodable, which can never be allowed.
    let undecodable: Vec<&Record> = calls(&records).into_iter().filter(|r| r.contains_key("ODOOGATE_ERROR_CODE")).collect();
    assert_eq!(undecodable.len(), 1, "one call record for the large body: {:?}", calls(&records));
    assert_field(undecodable[0], "ODOOGATE_ERROR_CODE", "truncated");
    assert_field(undecodable[0], "ODOOGATE_DECISION", "would_deny");
    assert_field(undecodable[0], "ODOOGATE_INTEGRATION", "local");
    let errors = events(&records, "decode_error", "truncated");
    assert_eq!(errors.len(), 1, "one decode_error record: {records:?}");
    let counted = find(&records, Some("res.partner"), "search_count");
    assert_eq!(counted.len(), 1, "the call after it is decoded: {:?}", calls(&records));
    assert_field(counted[0], "ODOOGATE_DECISION", "allow");
    Ok(())
}

// === enforce mode ===

#[test]
fn slow_clients_cut_while_others_served() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let sections = "[proxy]\nrequest_timeout_secs = 4\nmax_request_bytes = 1048576\n";
    let mut site = Site::start_with_sections(SiteMode::Enforce { guard: None }, "slow", LOCAL_INTEGRATION, "deny", sections)?;
    let pid = site.daemon_pid();
    let start = memory(pid);
    let port = site.port;

    let (head_response, body_response, served, answered_meanwhile) = in_netns(site.odoo.path(), move || {
        // A head sent a byte at a time, never complete.
        let mut slow_head = TcpStream::connect(("127.0.0.1", port)).expect("connect the slow head");
        // A complete head whose body never ends.
        let mut slow_body = TcpStream::connect(("127.0.0.1", port)).expect("connect the slow body");
        let body = jsonrpc_body("search_count", serde_json::json!([[]]));
        let head = format!("POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
        slow_body.write_all(head.as_bytes()).expect("send the head");
        slow_body.write_all(&body.as_bytes()[..body.len() / 2]).expect("send half the body");

        let request = post(&body);
        let mut served = Vec::new();
        for byte in request.as_bytes()[..24].iter() {
            slow_head.write_all(&[*byte]).expect("send one byte of the head");
            served.push(search_count(port));
        }
        // Neither slow client has an answer while the others were served.
        let answered_meanwhile = [&slow_head, &slow_body].iter().any(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let peeked = stream.peek(&mut byte);
            stream.set_nonblocking(false).unwrap();
            !matches!(peeked, Err(ref error) if error.kind() == ErrorKind::WouldBlock)
        });

        let read_all = |mut stream: TcpStream| {
            stream.set_read_timeout(Some(WAIT_BOUND)).unwrap();
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response);
            String::from_utf8_lossy(&response).into_owned()
        };
        (read_all(slow_head), read_all(slow_body), served, answered_meanwhile)
    });

    assert!(!answered_meanwhile, "the slow clients were answered before the timeout");
    for response in &served {
        assert_answered(response);
    }
    assert!(status_line(&head_response).starts_with("HTTP/1.1 408"), "the slow head is cut: {head_response:?}");
    assert!(status_line(&body_response).starts_with("HTTP/1.1 408"), "the endless body is cut: {body_response:?}");
    assert_eq!(upstream_calls(&site, "search_count"), served.len(), "only the complete calls reached Odoo");
    assert!(site.daemon_is_running(), "the daemon survives slow clients");
    assert_memory_under(pid, start.rss + ALLOWANCE, "after the slow clients");

    let records = site.stop_and_read(served.len())?;
    assert_eq!(find(&records, Some("res.partner"), "search_count").len(), served.len(), "one record per served call");
    Ok(())
}

#[test]
fn body_over_request_limit_gets_413() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let sections = "[proxy]\nmax_request_bytes = 65536\n";
    let mut site = Site::start_with_sections(SiteMode::Enforce { guard: None }, "huge", LOCAL_INTEGRATION, "deny", sections)?;
    let pid = site.daemon_pid();
    let start = memory(pid);
    let port = site.port;

    let (declared, chunked, after) = in_netns(site.odoo.path(), move || {
        let name = "x".repeat(200_000);
        let body = jsonrpc_body("create", serde_json::json!([{ "name": name }]));
        let declared = exchange(port, post(&body).as_bytes()).expect("the declared-length exchange");

        // No length up front: the limit is hit while the chunks arrive.
        let mut request = b"POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for piece in body.as_bytes().chunks(16 * 1024) {
            request.extend(format!("{:x}\r\n", piece.len()).into_bytes());
            request.extend(piece);
            request.extend(b"\r\n");
        }
        request.extend(b"0\r\n\r\n");
        // odoogate answers and closes before the client has sent it all.
        let chunked = exchange(port, &request).unwrap_or_else(|error| format!("connection failed: {error}"));
        (declared, chunked, search_count(port))
    });

    assert!(status_line(&declared).starts_with("HTTP/1.1 413"), "{declared:?}");
    assert!(
        status_line(&chunked).starts_with("HTTP/1.1 413") || chunked.starts_with("connection failed"),
        "a chunked body over the limit is refused: {chunked:?}"
    );
    assert_answered(&after);
    assert_eq!(upstream_calls(&site, "create"), 0, "no oversized call reached Odoo");
    assert_eq!(upstream_calls(&site, "search_count"), 1, "the call after them did");
    // One connection holds at most max_request_bytes of body.
    assert_memory_under(pid, start.rss + 2 * 65536 + ALLOWANCE, "after the oversized bodies");

    let records = site.stop_and_read(1)?;
    let oversized = events(&records, "decode_error", "truncated");
    assert!(!oversized.is_empty(), "the oversized body is recorded: {records:?}");
    assert_field(oversized[0], "ODOOGATE_SRC_IP", "127.0.0.1");
    Ok(())
}

#[test]
fn many_connections_capped_and_served() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    const LIMIT: usize = 1000;
    const IDLE: usize = 3000;
    const EXTRA: usize = 50;
    raise_open_files(2 * (IDLE + LIMIT + EXTRA) as u64 + 256)?;
    let sections = format!("[proxy]\nmax_connections = {LIMIT}\nmax_request_bytes = 65536\n");
    let mut site = Site::start_with_sections(SiteMode::Enforce { guard: None }, "conns", LOCAL_INTEGRATION, "deny", &sections)?;
    let pid = site.daemon_pid();
    let start = memory(pid);
    let port = site.port;
    let odoo = site.odoo.path();

    // Thousands of idle connections: past the limit, each new one takes
    // the slot of the longest-idle one, and calls are still served.
    let (idle, served) = in_netns(odoo.clone(), move || -> std::io::Result<(Vec<TcpStream>, String)> {
        let mut idle = Vec::with_capacity(IDLE);
        for _ in 0..IDLE {
            idle.push(TcpStream::connect(("127.0.0.1", port))?);
        }
        Ok((idle, search_count(port)))
    })?;
    assert_answered(&served);
    let status = site.status()?;
    assert!(
        status["overload"]["connections_open"].as_u64().is_some_and(|open| open <= LIMIT as u64),
        "open connections stay within proxy.max_connections: {}",
        status["overload"]
    );
    assert!(
        status["overload"]["idle_connections_closed"].as_u64().is_some_and(|closed| closed >= (IDLE - LIMIT) as u64),
        "idle connections made room: {}",
        status["overload"]
    );
    // Each open connection holds its task, socket registration and session
    // state, but no read buffer while idle: about 26 KiB each in a release
    // build (measured with this test), bounded here by 64 KiB.
    assert_memory_under(pid, start.rss + LIMIT as u64 * IDLE_CONNECTION_BYTES + ALLOWANCE, "with thousands of idle connections");
    drop(idle);
    lab::wait_for("the idle connections to close", WAIT_BOUND, || {
        site.status().is_ok_and(|status| status["overload"]["connections_open"] == 0)
    })?;

    // Connections that each started a request are not idle, so past the
    // limit a new connection is refused with 503.
    let busy = in_netns(odoo.clone(), move || -> std::io::Result<Vec<TcpStream>> {
        let mut busy = Vec::with_capacity(LIMIT);
        for _ in 0..LIMIT {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.write_all(b"POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\n")?;
            busy.push(stream);
        }
        Ok(busy)
    })?;
    lab::wait_for("every busy connection admitted", WAIT_BOUND, || {
        site.status().is_ok_and(|status| status["overload"]["connections_open"] == LIMIT)
    })?;
    // The sessions read their first bytes as soon as they start, which
    // marks them busy; give the runtime a moment to run them all.
    std::thread::sleep(Duration::from_millis(500));
    let refused: Vec<String> = in_netns(odoo.clone(), move || {
        (0..EXTRA).map(|_| exchange(port, b"").unwrap_or_else(|error| format!("connection failed: {error}"))).collect()
    });
    for response in &refused {
        assert!(status_line(response).starts_with("HTTP/1.1 503"), "a connection past the limit gets 503: {response:?}");
    }
    let status = site.status()?;
    assert_eq!(status["overload"]["connections_refused"], EXTRA, "refusals are counted: {}", status["overload"]);
    assert!(site.daemon_is_running(), "the daemon survives the connection flood");

    // Once the busy clients give up, calls are served again.
    drop(busy);
    lab::wait_for("the busy connections to end", WAIT_BOUND, || {
        site.status().is_ok_and(|status| status["overload"]["connections_open"] == 0)
    })?;
    let after = in_netns(odoo, move || search_count(port));
    assert_answered(&after);
    assert_eq!(upstream_calls(&site, "search_count"), 2, "only the two complete calls reached Odoo");
    // Each busy connection may also hold a request of up to
    // max_request_bytes.
    assert_memory_under(pid, start.rss + LIMIT as u64 * (IDLE_CONNECTION_BYTES + 65536) + ALLOWANCE, "after the connection flood");

    let records = site.stop_and_read(2)?;
    let log = site.daemon_log();
    let refusals = events(&records, "connection_refused", "max_connections");
    assert_eq!(total_count(&refusals), EXTRA as u64, "each refused connection is recorded: {refusals:?}");
    assert!(refusals[0]["MESSAGE"].contains("proxy.max_connections"), "{:?}", refusals[0]);
    assert!(log.contains("Refused connections"), "the refusals are logged:\n{log}");
    Ok(())
}

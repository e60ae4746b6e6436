//! Memory: the daemon's resident set idle, with 10,000 idle client
//! connections open (enforce mode), and with 1,000 flows in the middle of a
//! request body being reassembled (observe mode).

use anyhow::Context as _;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::lab::{self, DaemonMode, Lab};
use crate::report::{Machine, mib};
use crate::{Case, Settings};

/// Idle connections opened first: fewer than the default
/// `proxy.max_connections` (1,024), so the daemon keeps all of them open.
const FEW_IDLE_CONNECTIONS: usize = 1_000;
const IDLE_CONNECTIONS: usize = 10_000;
const PARTIAL_FLOWS: usize = 1_000;
/// The `Content-Length` each partial request announces.
const PARTIAL_BODY_BYTES: usize = 1024 * 1024;
/// The part of that body each partial request sends.
const PARTIAL_SENT_BYTES: usize = 64 * 1024;
/// Consecutive failed connects after which opening idle connections stops.
const MAX_CONSECUTIVE_FAILURES: usize = 20;
/// How long the daemon gets to take in a change before its RSS is read.
const SETTLE: Duration = Duration::from_secs(3);

struct Row {
    mode: &'static str,
    state: &'static str,
    /// Client connections (enforce) or partial flows (observe) open.
    open: usize,
    memory: lab::Resident,
    sockets: usize,
}

impl Row {
    fn read(mode: &'static str, state: &'static str, open: usize, pid: u32) -> anyhow::Result<Self> {
        Ok(Self { mode, state, open, memory: lab::resident(pid)?, sockets: lab::socket_count(pid) })
    }
}

pub fn run(lab: &Lab, cases: &[Case], _settings: &Settings) -> anyhow::Result<String> {
    let machine = Machine::read();
    let case = cases.first().context("no benchmark case")?;
    let _upstream = lab.start_upstream(&case.response, false)?;
    let mut rows = Vec::new();
    let upstream = SocketAddr::from(([127, 0, 0, 1], lab::UPSTREAM_PORT));

    eprintln!("bench: memory, enforce mode");
    let (config, _) = lab.write_config("memory-enforce", DaemonMode::Steered)?;
    let daemon = lab.start_odoogate(&config, DaemonMode::Steered)?;
    let pid = daemon.pid();
    std::thread::sleep(SETTLE);
    rows.push(Row::read("enforce", "idle", 0, pid)?);
    let mut connections = open_idle(upstream, FEW_IDLE_CONNECTIONS);
    std::thread::sleep(SETTLE);
    rows.push(Row::read("enforce", FEW_IDLE_STATE, connections.len(), pid)?);
    connections.extend(open_idle(upstream, IDLE_CONNECTIONS - connections.len()));
    std::thread::sleep(SETTLE);
    rows.push(Row::read("enforce", IDLE_STATE, connections.len(), pid)?);
    drop(connections);
    std::thread::sleep(SETTLE);
    rows.push(Row::read("enforce", "after those closed", 0, pid)?);
    lab.stop_steered(daemon)?;

    eprintln!("bench: memory, observe mode");
    let (config, _) = lab.write_config("memory-observe", DaemonMode::Observe)?;
    let mut daemon = lab.start_odoogate(&config, DaemonMode::Observe)?;
    let pid = daemon.pid();
    std::thread::sleep(SETTLE);
    rows.push(Row::read("observe", "idle", 0, pid)?);
    let flows = open_partial(upstream, PARTIAL_FLOWS)?;
    std::thread::sleep(SETTLE);
    rows.push(Row::read("observe", PARTIAL_STATE, flows.len(), pid)?);
    drop(flows);
    std::thread::sleep(SETTLE);
    rows.push(Row::read("observe", "after those closed", 0, pid)?);
    daemon.stop(Duration::from_secs(15))?;

    report(&rows, &machine, lab.open_file_limit)
}

const FEW_IDLE_STATE: &str = "1,000 idle client connections";
const IDLE_STATE: &str = "10,000 idle client connections";
const PARTIAL_STATE: &str = "1,000 flows, each 64 KiB into a 1 MiB request body";

/// Opens up to `count` connections that send nothing. Stops early after
/// [`MAX_CONSECUTIVE_FAILURES`] failed connects in a row, and returns the
/// open connections.
fn open_idle(address: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut connections = Vec::with_capacity(count);
    let mut failures = 0;
    while connections.len() < count {
        match TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
            Ok(stream) => {
                connections.push(stream);
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                if failures >= MAX_CONSECUTIVE_FAILURES {
                    eprintln!("bench: stopped opening connections after {} ({error})", connections.len());
                    return connections;
                }
            }
        }
    }
    connections
}

/// Opens `count` connections, each sending a request head that announces a
/// [`PARTIAL_BODY_BYTES`] body and then only [`PARTIAL_SENT_BYTES`] of it.
fn open_partial(address: SocketAddr, count: usize) -> anyhow::Result<Vec<TcpStream>> {
    let head = format!(
        "POST /xmlrpc/2/object HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: text/xml\r\nContent-Length: {PARTIAL_BODY_BYTES}\r\n\r\n",
        address.port()
    );
    let mut body = b"<?xml version='1.0'?>\n<methodCall>\n<methodName>execute_kw</methodName>\n<params>\n".to_vec();
    body.resize(PARTIAL_SENT_BYTES, b' ');
    let mut flows = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        flows.push(stream);
    }
    Ok(flows)
}

fn report(rows: &[Row], machine: &Machine, open_file_limit: u64) -> anyhow::Result<String> {
    let mut text = String::new();
    writeln!(text, "# Memory\n")?;
    writeln!(
        text,
        "VmRSS of `odoogate run` from /proc/PID/status, {} s after each change. Enforce mode runs with sk_lookup \
         steering and its clients connect and send nothing. In observe mode each flow sends a request head that \
         announces a {} KiB body and then {} KiB of it, so the daemon holds every flow's partial body \
         while it waits for the rest. `connections open` counts the client side's established connections. \
         It includes those the daemon has closed since, because at `proxy.max_connections` the daemon closes \
         its longest-idle connection to make room for a new one. Opening stops after \
         {MAX_CONSECUTIVE_FAILURES} failed connects in a row, each with a 2 s timeout. `daemon sockets` counts \
         the daemon's open sockets: the client connections it has accepted in enforce mode, plus its own \
         listeners and control socket. Anonymous memory is the heap. File and shared memory includes the eBPF \
         ring buffer and maps the daemon has mapped.\n",
        SETTLE.as_secs(),
        PARTIAL_BODY_BYTES / 1024,
        PARTIAL_SENT_BYTES / 1024,
    )?;
    writeln!(text, "| mode | state | connections open | VmRSS MiB | anonymous MiB | file and shared MiB | daemon sockets |")?;
    writeln!(text, "|---|---|---:|---:|---:|---:|---:|")?;
    for row in rows {
        writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.mode,
            row.state,
            row.open,
            mib(row.memory.total),
            mib(row.memory.anonymous),
            mib(row.memory.mapped),
            row.sockets
        )?;
    }
    writeln!(text, "\n## How this was measured\n")?;
    write!(text, "{}", machine.describe("cargo xtask bench memory"))?;
    writeln!(
        text,
        "- The connections come from the benchmark process itself, in the benchmark's network namespace, with \
         RLIMIT_NOFILE raised to {} for it and the daemon (the hard limit here). odoogate: release build, \
         `RUST_LOG=info`, audit records to a file.\n",
        open_file_limit,
    )?;
    Ok(text)
}

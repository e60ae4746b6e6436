//! Observe mode: the daemon's CPU time per 1,000 calls/s, whether every call
//! got its audit record at 1,000 and 5,000 calls/s, and the client's latency
//! with and without odoogate watching.

use anyhow::Context as _;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::lab::{self, DaemonMode, Lab};
use crate::load::{self, Load, Outcome, Request};
use crate::report::{Machine, signed_us, us};
use crate::{Case, Settings};

const RATES: [u32; 2] = [1000, 5000];

/// Returns the paced load for a target `rate`: 10 % more connections than
/// the 10 ms pause alone needs, because each call's latency stretches its
/// connection's cycle and the rate reached falls short of the target.
fn paced(rate: u32) -> Load {
    Load::Paced { rate: rate + rate / 10 }
}

struct Measured {
    case: &'static str,
    rate: u32,
    baseline: Outcome,
    observed: Outcome,
    cpu_seconds: f64,
    recorded: u64,
    capture_events: u64,
    ring_buffer_full: u64,
    payload_truncated: u64,
}

impl Measured {
    /// Share of one core the daemon used per 1,000 calls/s.
    fn cpu_per_thousand(&self) -> f64 {
        let load = self.cpu_seconds / self.observed.seconds;
        load / (self.observed.rate() / 1000.0)
    }

    fn lost(&self) -> u64 {
        self.observed.requests.saturating_sub(self.recorded)
    }
}

pub fn run(lab: &Lab, cases: &[Case], settings: &Settings) -> anyhow::Result<String> {
    let machine = Machine::read();
    let mut measured = Vec::new();
    for case in cases {
        eprintln!("bench: observe, {}", case.name);
        let _upstream = lab.start_upstream(&case.response, false)?;
        let request = Request::from_capture(case.name, &case.request, "bench-password")?;

        let mut baselines = Vec::new();
        for rate in RATES {
            eprintln!("bench: observe, {}, {rate} calls/s without odoogate", case.name);
            load::run(&lab.workdir, &request, lab::UPSTREAM_PORT, Load::Max { connections: 8 }, Duration::from_secs(2))?;
            baselines.push(load::run(&lab.workdir, &request, lab::UPSTREAM_PORT, paced(rate), settings.duration)?);
        }

        let (config, _) = lab.write_config("observe", DaemonMode::Observe)?;
        let mut daemon = lab.start_odoogate(&config, DaemonMode::Observe)?;
        let audit = config.with_file_name("audit.jsonl");
        for (rate, baseline) in RATES.into_iter().zip(baselines) {
            eprintln!("bench: observe, {}, {rate} calls/s with odoogate", case.name);
            let before = AuditCounts::read(&audit);
            let status_before = capture_stats(lab, &config)?;
            let cpu_before = lab::cpu_seconds(daemon.pid())?;
            let observed = load::run(&lab.workdir, &request, lab::UPSTREAM_PORT, paced(rate), settings.duration)?;
            let cpu_seconds = lab::cpu_seconds(daemon.pid())? - cpu_before;
            let after = AuditCounts::settled(&audit, before.calls + observed.requests);
            let status_after = capture_stats(lab, &config)?;
            measured.push(Measured {
                case: case.name,
                rate,
                baseline,
                observed,
                cpu_seconds,
                recorded: after.calls - before.calls,
                capture_events: after.capture_events - before.capture_events,
                ring_buffer_full: status_after.0 - status_before.0,
                payload_truncated: status_after.1 - status_before.1,
            });
        }
        daemon.stop(Duration::from_secs(15))?;
    }
    report(&measured, &machine, settings)
}

/// `ring_buffer_full` and `payload_truncated` from `odoogate status --json`.
fn capture_stats(lab: &Lab, config: &Path) -> anyhow::Result<(u64, u64)> {
    let status = lab.status(config)?;
    let stats = &status["capture_stats"];
    let number = |key: &str| stats[key].as_u64().with_context(|| format!("odoogate status has no capture_stats.{key}: {status}"));
    Ok((number("ring_buffer_full")?, number("payload_truncated")?))
}

/// Record counts of the audit file.
#[derive(Clone, Copy, Default)]
struct AuditCounts {
    calls: u64,
    /// `capture_gap` and `capture_loss` records.
    capture_events: u64,
}

impl AuditCounts {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut counts = Self::default();
        for line in text.lines() {
            if line.contains("\"ODOOGATE_EVENT\":\"call\"") {
                counts.calls += 1;
            } else if line.contains("\"ODOOGATE_EVENT\":\"capture_gap\"") || line.contains("\"ODOOGATE_EVENT\":\"capture_loss\"") {
                counts.capture_events += 1;
            }
        }
        counts
    }

    /// Reads the counts once the daemon has written `expected_calls` call
    /// records, or once the count has not changed for a second. The daemon
    /// writes its records shortly after the calls, and a lost call never
    /// gets one, so waiting longer would not change the count.
    fn settled(path: &Path, expected_calls: u64) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = Self::read(path);
        let mut unchanged_since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let counts = Self::read(path);
            if counts.calls >= expected_calls || Instant::now() >= deadline {
                return counts;
            }
            if counts.calls != last.calls {
                unchanged_since = Instant::now();
            } else if unchanged_since.elapsed() >= Duration::from_secs(1) {
                return counts;
            }
            last = counts;
        }
    }
}

fn report(measured: &[Measured], machine: &Machine, settings: &Settings) -> anyhow::Result<String> {
    let mut text = String::new();
    writeln!(text, "# Observe mode\n")?;
    writeln!(
        text,
        "`odoogate run` in observe mode captures `lo` of the benchmark's network namespace while wrk sends one \
         captured XML-RPC call (`search_read` or `create`, as in the enforce tables) at a paced rate, over kept-alive \
         connections, straight to the fast upstream. The daemon's CPU time is utime + stime from /proc/PID/stat \
         over the run. A call is lost when wrk completed it but the audit file has no call record for it; \
         `capture events` counts the `capture_gap` and `capture_loss` records, and the ring-buffer and truncation \
         counters come from `odoogate status --json`.\n"
    )?;
    writeln!(text, "Targets: no lost call at 5,000 calls/s, and client latency within noise of no odoogate at all.\n")?;
    writeln!(
        text,
        "| call | calls/s | CPU, % of a core | CPU per 1,000 calls/s | completed | recorded | lost | capture events | ring buffer full | truncated |"
    )?;
    writeln!(text, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in measured {
        writeln!(
            text,
            "| {} | {:.0} | {:.1} | {:.1} % | {} | {} | {} | {} | {} | {} |",
            row.case,
            row.observed.rate(),
            100.0 * row.cpu_seconds / row.observed.seconds,
            100.0 * row.cpu_per_thousand(),
            row.observed.requests,
            row.recorded,
            row.lost(),
            row.capture_events,
            row.ring_buffer_full,
            row.payload_truncated,
        )?;
    }

    writeln!(text, "\n## Client latency with and without odoogate\n")?;
    writeln!(text, "| call | target calls/s | p50 µs without | p50 µs with | p99 µs without | p99 µs with | p50 change | p99 change |")?;
    writeln!(text, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in measured {
        writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.case,
            row.rate,
            us(row.baseline.p50_us),
            us(row.observed.p50_us),
            us(row.baseline.p99_us),
            us(row.observed.p99_us),
            signed_us(row.observed.p50_us - row.baseline.p50_us),
            signed_us(row.observed.p99_us - row.baseline.p99_us),
        )?;
    }

    writeln!(text, "\n## How this was measured\n")?;
    write!(text, "{}", machine.describe("cargo xtask bench observe"))?;
    writeln!(
        text,
        "- wrk {}: each connection waits 10 ms after every response (11 connections for a target of 1,000 calls/s, \
         55 for 5,000), for {} s per run; the runs without odoogate come first, after a 2 s warm-up.\n\
         - odoogate: release build, `RUST_LOG=info`, audit records to a file. wrk, the upstream and the daemon \
         share the machine's {} cores, so the daemon's CPU time also slows the client and the upstream.\n",
        settings.wrk_version,
        settings.duration.as_secs(),
        machine.cores,
    )?;
    Ok(text)
}

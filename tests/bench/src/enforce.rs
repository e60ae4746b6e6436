//! Enforce mode: latency of one call at a time, latency at a paced rate
//! and the maximum rate through odoogate (listen mode and sk_lookup
//! steering), against a direct connection to the upstream and nginx
//! `proxy_pass` to the same upstream.

use anyhow::{Context as _, bail};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::instructions;
use crate::lab::{self, CpuTime, DaemonMode, Lab};
use crate::load::{self, Load, Outcome, Request};
use crate::report::{Machine, signed_us, us};
use crate::{Case, Settings};

/// Target of the paced runs, in calls/s.
const PACED_RATE: u32 = 1000;
/// Connections of the maximum-rate runs, one request in flight each.
const MAX_CONNECTIONS: u32 = 32;

/// Targets set for enforce mode: odoogate adds at most this much latency to
/// the direct connection, in microseconds.
const P50_ADDED_TARGET_US: f64 = 100.0;
const P99_ADDED_TARGET_US: f64 = 500.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Direct,
    Nginx,
    OdoogateListen,
    OdoogateSteered,
}

impl Route {
    const ALL: [Route; 4] = [Route::Direct, Route::Nginx, Route::OdoogateListen, Route::OdoogateSteered];

    fn label(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Nginx => "nginx proxy_pass",
            Route::OdoogateListen => "odoogate, listen mode",
            Route::OdoogateSteered => "odoogate, sk_lookup steering",
        }
    }
}

/// Whether the upstream keeps connections open between calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    /// Keep-alive, so nginx reuses its upstream connections.
    KeepAlive,
    /// One response per connection, as Odoo 19's server behaves.
    ClosesAfterResponse,
}

impl Upstream {
    const ALL: [Upstream; 2] = [Upstream::KeepAlive, Upstream::ClosesAfterResponse];

    fn label(self) -> &'static str {
        match self {
            Upstream::KeepAlive => "keep-alive",
            Upstream::ClosesAfterResponse => "closes",
        }
    }
}

struct Measured {
    upstream: Upstream,
    case: &'static str,
    body_bytes: usize,
    path: Route,
    runs: Runs,
}

/// The runs of one path, one per load.
struct Runs {
    /// One connection that sends the next call as soon as the response to
    /// the last one has arrived.
    single: Run,
    paced: Run,
    max: Run,
}

/// One wrk run and the CPU time the proxy used during it.
struct Run {
    load: Outcome,
    /// CPU time of the proxy's processes; `None` for the direct path.
    proxy_cpu: Option<CpuTime>,
}

impl Run {
    /// Returns the proxy's CPU time per call as `total (user + system)`, in
    /// microseconds, or nothing for the direct path.
    fn cpu_cell(&self) -> String {
        let per_call = |seconds: f64| us(seconds * 1e6 / self.load.requests as f64);
        self.proxy_cpu
            .map_or_else(String::new, |cpu| format!("{} ({} + {})", per_call(cpu.total()), per_call(cpu.user), per_call(cpu.system)))
    }
}

/// Instructions per call of one case, listen mode, kept-alive upstream.
struct Counted {
    case: &'static str,
    instructions: u64,
}

pub fn run(lab: &Lab, cases: &[Case], settings: &Settings) -> anyhow::Result<String> {
    let machine = Machine::read();
    let mut measured = Vec::new();
    let mut counted = Vec::new();
    for (upstream, case) in Upstream::ALL.into_iter().flat_map(|upstream| cases.iter().map(move |case| (upstream, case))) {
        eprintln!("bench: enforce, {} upstream, {}", upstream.label(), case.name);
        let _upstream = lab.start_upstream(&case.response, upstream == Upstream::ClosesAfterResponse)?;
        let (steered_config, steered_token) = lab.write_config("enforce-steered", DaemonMode::Steered)?;
        let (listen_config, listen_token) = lab.write_config("enforce-listen", DaemonMode::Listen)?;
        let steered_request = Request::from_capture(case.name, &case.request, steered_token.as_deref().context("no token")?)?;
        let listen_request = Request::from_capture(case.name, &case.request, listen_token.as_deref().context("no token")?)?;

        for path in Route::ALL {
            eprintln!("bench: enforce, {} upstream, {}, {}", upstream.label(), case.name, path.label());
            let runs = match path {
                Route::Direct => measure(lab, &steered_request, lab::UPSTREAM_PORT, None, settings)?,
                Route::Nginx => {
                    let nginx = lab.start_nginx()?;
                    measure(lab, &steered_request, lab::NGINX_PORT, Some(nginx.pid()), settings)?
                }
                Route::OdoogateListen => {
                    let mut daemon = lab.start_odoogate(&listen_config, DaemonMode::Listen)?;
                    let result = measure(lab, &listen_request, lab::LISTEN_PORT, Some(daemon.pid()), settings)?;
                    daemon.stop(Duration::from_secs(15))?;
                    check_allowed(&listen_config, &result)?;
                    result
                }
                Route::OdoogateSteered => {
                    let daemon = lab.start_odoogate(&steered_config, DaemonMode::Steered)?;
                    let result = measure(lab, &steered_request, lab::UPSTREAM_PORT, Some(daemon.pid()), settings)?;
                    lab.stop_steered(daemon)?;
                    check_allowed(&steered_config, &result)?;
                    result
                }
            };
            measured.push(Measured { upstream, case: case.name, body_bytes: steered_request.body.len(), path, runs });
        }
        if upstream == Upstream::KeepAlive {
            counted.push(count(lab, case.name, &listen_config, &listen_request)?);
        }
    }
    report(&measured, &counted, &machine, settings)
}

/// Counts only the instructions per call of each case (listen mode,
/// kept-alive upstream) and returns them as a Markdown table.
pub fn count_instructions(lab: &Lab, cases: &[Case]) -> anyhow::Result<String> {
    let mut text = String::from("| call | body bytes | instructions per call |\n|---|---:|---:|\n");
    for case in cases {
        let _upstream = lab.start_upstream(&case.response, false)?;
        let (config, token) = lab.write_config("enforce-listen", DaemonMode::Listen)?;
        let request = Request::from_capture(case.name, &case.request, token.as_deref().context("no token")?)?;
        let counted = count(lab, case.name, &config, &request)?;
        writeln!(text, "| {} | {} | {} |", counted.case, request.body.len(), counted.instructions)?;
    }
    Ok(text)
}

/// Counts the instructions per call of `request` through the listen-mode
/// daemon of `config`, and checks that it allowed every call.
fn count(lab: &Lab, case: &'static str, config: &Path, request: &Request) -> anyhow::Result<Counted> {
    eprintln!("bench: enforce, instructions per call under callgrind, {case}");
    let instructions = instructions::per_call(lab, config, request)?;
    let (_, denied) = decisions(config);
    if denied > 0 {
        bail!("odoogate denied {denied} benchmark calls; see {}", config.with_file_name("odoogate-callgrind.log").display());
    }
    Ok(Counted { case, instructions })
}

/// Runs a short warm-up, then the single-connection, paced and
/// maximum-rate runs, and reads the CPU time of `proxy` (with its child
/// processes) around each.
fn measure(lab: &Lab, request: &Request, port: u16, proxy: Option<u32>, settings: &Settings) -> anyhow::Result<Runs> {
    load::run(&lab.workdir, request, port, Load::Max { connections: 8 }, Duration::from_secs(2))?;
    let mut runs = Vec::new();
    for load in [Load::Max { connections: 1 }, Load::Paced { rate: PACED_RATE }, Load::Max { connections: MAX_CONNECTIONS }] {
        let cpu_before = proxy.map(lab::process_tree_cpu_time).transpose()?;
        let outcome = load::run(&lab.workdir, request, port, load, settings.duration)?;
        let cpu_after = proxy.map(lab::process_tree_cpu_time).transpose()?;
        if outcome.errors > 0 {
            bail!("wrk counted {} failed requests on port {port}", outcome.errors);
        }
        let proxy_cpu = cpu_before.zip(cpu_after).map(|(before, after)| after - before);
        runs.push(Run { load: outcome, proxy_cpu });
    }
    let max = runs.pop().context("no maximum-rate run")?;
    let paced = runs.pop().context("no paced run")?;
    let single = runs.pop().context("no single-connection run")?;
    Ok(Runs { single, paced, max })
}

/// Checks that odoogate allowed and recorded every call of the runs, so the
/// numbers are those of forwarded calls and not of denials.
fn check_allowed(config: &Path, runs: &Runs) -> anyhow::Result<()> {
    let (allowed, denied) = decisions(config);
    if denied > 0 {
        bail!("odoogate denied {denied} benchmark calls; see {}", config.with_file_name("odoogate.log").display());
    }
    // The warm-up's calls are recorded too, and calls still in flight when
    // wrk stops are recorded but not counted by wrk.
    let completed = runs.single.load.requests + runs.paced.load.requests + runs.max.load.requests;
    if allowed < completed {
        bail!("odoogate recorded {allowed} allowed calls, but wrk completed {completed}");
    }
    Ok(())
}

/// Returns how many calls the audit file of `config` records as allowed
/// and as denied.
fn decisions(config: &Path) -> (u64, u64) {
    let audit = std::fs::read_to_string(config.with_file_name("audit.jsonl")).unwrap_or_default();
    let count = |decision: &str| {
        let field = format!("\"ODOOGATE_DECISION\":\"{decision}\"");
        audit.lines().filter(|line| line.contains(&field)).count() as u64
    };
    (count("allow"), count("deny"))
}

impl Measured {
    /// Tells whether `other` sent the same call to the same kind of upstream.
    fn same_run(&self, other: &Measured) -> bool {
        self.upstream == other.upstream && self.case == other.case
    }
}

fn body_bytes(measured: &[Measured], case: &str) -> usize {
    measured.iter().find(|m| m.case == case).map_or(0, |m| m.body_bytes)
}

/// Writes the latency table of the run that `run` picks from each path's
/// runs, with what each proxy adds to the direct path's p50 and p99.
fn latency_table(text: &mut String, measured: &[Measured], run: impl Fn(&Runs) -> &Run) -> anyhow::Result<()> {
    writeln!(
        text,
        "| upstream | call | path | calls/s | p50 µs | p90 µs | p99 µs | max µs | p50 added µs | p99 added µs | target met | proxy CPU µs per call (user + system) |"
    )?;
    writeln!(text, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")?;
    for row in measured {
        let direct = measured.iter().find(|m| m.same_run(row) && m.path == Route::Direct).context("no direct run")?;
        let (this, direct) = (run(&row.runs), run(&direct.runs));
        let added_p50 = this.load.p50_us - direct.load.p50_us;
        let added_p99 = this.load.p99_us - direct.load.p99_us;
        let (added_p50_cell, added_p99_cell, met) = if row.path == Route::Direct {
            ("".to_owned(), "".to_owned(), "")
        } else {
            let met = added_p50 <= P50_ADDED_TARGET_US && added_p99 <= P99_ADDED_TARGET_US;
            let met = match (row.path, met) {
                (Route::Nginx, _) => "",
                (_, true) => "yes",
                (_, false) => "no",
            };
            (signed_us(added_p50), signed_us(added_p99), met)
        };
        writeln!(
            text,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.upstream.label(),
            row.case,
            row.path.label(),
            this.load.rate(),
            us(this.load.p50_us),
            us(this.load.p90_us),
            us(this.load.p99_us),
            us(this.load.max_us),
            added_p50_cell,
            added_p99_cell,
            met,
            this.cpu_cell(),
        )?;
    }
    Ok(())
}

fn report(measured: &[Measured], counted: &[Counted], machine: &Machine, settings: &Settings) -> anyhow::Result<String> {
    let mut text = String::new();
    writeln!(text, "# Enforce mode\n")?;
    writeln!(
        text,
        "Latency and throughput of one XML-RPC call from the captures: `search_read` (`xmlrpc_stdlib/003`, a \
         {}-byte body) or `create` (`xmlrpc_stdlib/006`, {} bytes), with a scoped token in the password slot. \
         wrk sends it over kept-alive connections to a fast Rust upstream that responds with the captured Odoo 19 \
         response. The upstream either keeps its connections open (`keep-alive`) or closes each after one \
         response (`closes`), as Odoo 19's werkzeug server does. wrk reaches the upstream directly, through nginx \
         `proxy_pass` (with upstream keep-alive), or through `odoogate run` in enforce mode. odoogate decodes \
         the call, checks the token, decides, swaps the token for the service credential and writes an audit \
         record to a JSON Lines file. It keeps idle upstream connections for the next call when the upstream's \
         response allows it (HTTP/1.1 without `Connection: close`, a framed body), so with the `closes` \
         upstream every call opens a new connection.\n",
        body_bytes(measured, "search_read"),
        body_bytes(measured, "create"),
    )?;
    writeln!(
        text,
        "Targets: p50 added at most {P50_ADDED_TARGET_US:.0} µs and p99 added at most {P99_ADDED_TARGET_US:.0} µs, \
         checked in both latency tables, and a maximum rate at least nginx's.\n"
    )?;

    writeln!(text, "## Latency of one call at a time\n")?;
    writeln!(
        text,
        "One connection sends the next call as soon as the response to the last one has arrived, so no call \
         waits for another: the latency a single integration sees, and what each path adds to one call.\n"
    )?;
    latency_table(&mut text, measured, |runs| &runs.single)?;

    writeln!(text, "\n## Latency at about {PACED_RATE} calls/s\n")?;
    writeln!(
        text,
        "{} connections each send a call, wait 10 ms after its response, and send the next, so calls from \
         different connections overlap at random, and most calls wake processes that were asleep.\n",
        PACED_RATE / 100
    )?;
    latency_table(&mut text, measured, |runs| &runs.paced)?;

    writeln!(text, "\n## Maximum rate, {MAX_CONNECTIONS} connections\n")?;
    writeln!(
        text,
        "| upstream | call | path | calls/s | p50 µs | p99 µs | of nginx's rate | target met | proxy CPU µs per call (user + system) |"
    )?;
    writeln!(text, "|---|---|---|---:|---:|---:|---:|---|---:|")?;
    for row in measured {
        let nginx = measured.iter().find(|m| m.same_run(row) && m.path == Route::Nginx).context("no nginx run")?;
        let share = row.runs.max.load.rate() / nginx.runs.max.load.rate();
        let met = match row.path {
            Route::OdoogateListen | Route::OdoogateSteered => {
                if share >= 1.0 {
                    "yes"
                } else {
                    "no"
                }
            }
            _ => "",
        };
        writeln!(
            text,
            "| {} | {} | {} | {:.0} | {} | {} | {:.2}x | {} | {} |",
            row.upstream.label(),
            row.case,
            row.path.label(),
            row.runs.max.load.rate(),
            us(row.runs.max.load.p50_us),
            us(row.runs.max.load.p99_us),
            share,
            met,
            row.runs.max.cpu_cell(),
        )?;
    }

    writeln!(text, "\n## Instructions per call\n")?;
    writeln!(
        text,
        "User-space instructions of `odoogate run` in listen mode per call, with the keep-alive upstream, counted \
         with valgrind's callgrind. Unlike the rates above they do not depend on the machine's load. The daemon \
         runs twice under callgrind, for {} and for {} calls sent one after the other on one connection, and the \
         difference is divided by {}, which leaves out start-up. The count covers the proxy's worker threads and \
         the audit writer, not the kernel's work in system calls.\n",
        instructions::FEW_CALLS,
        instructions::FEW_CALLS + instructions::MEASURED_CALLS,
        instructions::MEASURED_CALLS,
    )?;
    writeln!(text, "| call | body bytes | instructions per call |")?;
    writeln!(text, "|---|---:|---:|")?;
    for row in counted {
        writeln!(text, "| {} | {} | {} |", row.case, body_bytes(measured, row.case), row.instructions)?;
    }

    writeln!(text, "\n## How this was measured\n")?;
    write!(text, "{}", machine.describe("cargo xtask bench enforce"))?;
    writeln!(
        text,
        "- Everything runs in one network namespace made by the benchmark, on its loopback, so wrk, the upstream \
         and the proxy share the machine's {} cores; the maximum rates are those of this whole set-up, not of the \
         proxy alone.\n\
         - wrk {}: the one-call-at-a-time runs use 1 connection on 1 thread, the paced runs {} connections that \
         each wait 10 ms after every response, and the maximum-rate runs {MAX_CONNECTIONS} connections on 2 \
         threads. Each run lasts {} s, after a 2 s warm-up on the same path. \
         Latency is wrk's, from writing the request to reading the whole response.\n\
         - Proxy CPU per call: utime + stime from /proc/PID/stat of the proxy's processes (nginx's master and \
         workers, or the daemon) over the run, divided by the calls wrk completed, and in parentheses its user \
         and system parts. It does not count the kernel's work in softirq context that is charged to other \
         processes, but it depends much less on the other load on the machine than the rates and latencies do.\n\
         - nginx {}: `worker_processes auto`, `proxy_http_version 1.1` and `keepalive 64` to the upstream, no access log.\n\
         - odoogate: release build, `RUST_LOG=info`, audit records to a file; every call was checked to be \
         recorded as allowed.\n",
        machine.cores,
        settings.wrk_version,
        PACED_RATE / 100,
        settings.duration.as_secs(),
        settings.nginx_version,
    )?;
    Ok(text)
}

//! `cargo xtask bench`: decoder throughput of odoogate against Python's own
//! decoders on the same bytes, written to `docs/benchmarks.md`.
//!
//! The criterion bench `odoogate-userspace/benches/decode.rs` writes the
//! bodies it decodes and a manifest, `benches/python_decode.py` times
//! `xmlrpc.client.loads` and `json.loads` on them, and this module joins
//! the two into one table.

use anyhow::{Context as _, Result, bail};
use serde_json::Value as Json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bench_instructions::{self, PassInstructions};
use crate::run_command;

/// Targets set by the product owner: odoogate's decoding must be this many
/// times faster than Python's.
const XMLRPC_TARGET_RATIO: f64 = 20.0;
const JSON_TARGET_RATIO: f64 = 5.0;

/// One row of the table.
struct Row {
    surface: String,
    case: String,
    python_decoder: String,
    bytes: u64,
    calls: u64,
    odoogate_seconds: f64,
    python_seconds: f64,
    /// Per pass, when counted.
    instructions: Option<PassInstructions>,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.python_seconds / self.odoogate_seconds
    }

    fn target_ratio(&self) -> f64 {
        if self.python_decoder == "xmlrpc" { XMLRPC_TARGET_RATIO } else { JSON_TARGET_RATIO }
    }
}

/// Runs both sides and writes `docs/benchmarks.md`.
pub fn run(root: &Path) -> Result<()> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let inputs = target_dir.join("odoogate-bench/inputs");
    let criterion_home = target_dir.join("criterion");

    let bench_command = "cargo bench -p odoogate-userspace --bench decode";
    run_command(
        Command::new("cargo")
            .current_dir(root)
            .args(["bench", "-p", "odoogate-userspace", "--bench", "decode"])
            .env("ODOOGATE_BENCH_INPUTS", &inputs)
            .env("CRITERION_HOME", &criterion_home)
            .env("ODOOGATE_SKIP_EBPF_BUILD", "1"),
    )?;

    let script = root.join("odoogate-userspace/benches/python_decode.py");
    eprintln!("xtask: timing Python's decoders on the same bodies");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&inputs)
        .output()
        .with_context(|| format!("failed to start python3 {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let python: Json = serde_json::from_slice(&output.stdout).context("python_decode.py printed invalid JSON")?;

    let mut rows = rows(&inputs, &criterion_home, &python)?;
    bench_instructions::install_valgrind()?;
    for row in rows.iter_mut().filter(|row| bench_instructions::is_counted(&row.case)) {
        let key = format!("{}/{}", row.surface, row.case);
        eprintln!("xtask: counting the instructions of {key} under callgrind");
        row.instructions = Some(bench_instructions::count(root, &inputs, &key, row.bytes)?);
    }
    let report = report(&rows, bench_command)?;
    let path = root.join("docs/benchmarks.md");
    crate::bench_doc::write_section(&path, "decode", &report)?;
    eprintln!("xtask: wrote the decode section of {}", path.display());
    Ok(())
}

/// Joins the manifest, criterion's estimates and Python's timings.
fn rows(inputs: &Path, criterion_home: &Path, python: &Json) -> Result<Vec<Row>> {
    let manifest_path = inputs.join("manifest.json");
    let manifest: Json = serde_json::from_slice(&std::fs::read(&manifest_path).with_context(|| format!("failed to read {}", manifest_path.display()))?)?;
    let cases = manifest.as_array().context("manifest.json is not a list")?;

    let mut rows = Vec::new();
    for case in cases {
        let text = |key: &str| case[key].as_str().map(str::to_owned).with_context(|| format!("manifest case without {key}"));
        let (surface, name) = (text("surface")?, text("case")?);
        let estimates_path = criterion_home.join(&surface).join(&name).join("new/estimates.json");
        let estimates: Json = serde_json::from_slice(
            &std::fs::read(&estimates_path).with_context(|| format!("failed to read {}", estimates_path.display()))?,
        )?;
        let nanoseconds = estimates["mean"]["point_estimate"].as_f64().context("estimates.json without mean.point_estimate")?;
        let key = format!("{surface}/{name}");
        let python_seconds = python[&key].as_f64().with_context(|| format!("python_decode.py gave no time for {key}"))?;
        rows.push(Row {
            python_decoder: text("python")?,
            bytes: case["bytes"].as_u64().context("manifest case without bytes")?,
            calls: case["bodies"].as_array().map_or(0, |bodies| bodies.len() as u64),
            surface,
            case: name,
            odoogate_seconds: nanoseconds / 1e9,
            python_seconds,
            instructions: None,
        });
    }
    Ok(rows)
}

fn report(rows: &[Row], bench_command: &str) -> Result<String> {
    let mut text = String::new();
    writeln!(text, "# Decoder benchmarks\n")?;
    writeln!(
        text,
        "Throughput of `rpc::decode_request` (odoogate) against the Python decoders Odoo uses on the same bytes: \
         `xmlrpc.client.loads(body, use_datetime=True)` for XML-RPC and `json.loads` for the JSON surfaces. \
         odoogate's time includes the whole decoding (routing, parsing, and extracting model, method, ids, fields \
         and context); Python's is the parse alone. `captures` is every request of \
         `tests/fixtures/odoo19-captures` that decodes to a call, one pass over all of them; the other cases are \
         one generated `create` of partner records of about that size.\n"
    )?;
    writeln!(text, "Targets: at least {XMLRPC_TARGET_RATIO}x Python for XML-RPC and {JSON_TARGET_RATIO}x for JSON.\n")?;

    writeln!(text, "| surface | case | bodies | bytes | odoogate MB/s | odoogate calls/s | Python MB/s | Python calls/s | ratio | target met |")?;
    writeln!(text, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for row in rows {
        let megabytes = row.bytes as f64 / 1e6;
        writeln!(
            text,
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.0} | {:.2}x | {} |",
            row.surface,
            row.case,
            row.calls,
            row.bytes,
            megabytes / row.odoogate_seconds,
            row.calls as f64 / row.odoogate_seconds,
            megabytes / row.python_seconds,
            row.calls as f64 / row.python_seconds,
            row.ratio(),
            if row.ratio() >= row.target_ratio() { "yes" } else { "no" },
        )?;
    }
    writeln!(text, "\nMB is 10^6 bytes. The ratio is Python's time divided by odoogate's.\n")?;

    writeln!(text, "Instructions per byte, counted with valgrind's callgrind (one pass, start-up excluded), do not depend on the machine's load. The 10MiB cases are not counted, because they take minutes under callgrind.\n")?;
    writeln!(text, "| surface | case | odoogate instructions/byte | Python instructions/byte | instruction ratio |")?;
    writeln!(text, "|---|---|---:|---:|---:|")?;
    for row in rows {
        let Some(instructions) = row.instructions else {
            continue;
        };
        let bytes = row.bytes.max(1) as f64;
        writeln!(
            text,
            "| {} | {} | {:.1} | {:.1} | {:.2}x |",
            row.surface,
            row.case,
            instructions.odoogate as f64 / bytes,
            instructions.python as f64 / bytes,
            instructions.python as f64 / instructions.odoogate.max(1) as f64,
        )?;
    }
    writeln!(text)?;

    writeln!(text, "## How this was measured\n")?;
    writeln!(text, "- Command: `cargo xtask bench` (runs `{bench_command}`, then `python3 odoogate-userspace/benches/python_decode.py`).")?;
    writeln!(text, "- odoogate: criterion, mean time per pass over a case's bodies, release profile, with mimalloc as the global allocator as in the daemon.")?;
    writeln!(text, "- Python: `timeit`, the fastest of 5 repeats of `Timer.autorange` passes.")?;
    writeln!(text, "- Kernel: {}", command_output("uname", &["-r"]))?;
    writeln!(text, "- CPU: {}, {} cores", cpu_model(), std::thread::available_parallelism().map_or(0, |n| n.get()))?;
    writeln!(text, "- Python: {}", command_output("python3", &["--version"]))?;
    writeln!(text, "- Date: {}", command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    writeln!(text, "- Load average (1, 5, 15 min) when the table was written: {}", load_average())?;
    Ok(text)
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| format!("unknown ({program} failed)"))
}

pub(crate) fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(", ")
}

fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, model)| model.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

//! Instruction counts of the decoder benchmark under valgrind's callgrind.
//! Unlike times, they do not depend on the load of the machine, so a run on
//! a busy machine still compares odoogate with Python fairly.
//!
//! Each side decodes a case's bodies once and then `1 + extra` times, and
//! the difference divided by `extra` is the count of one pass, so start-up
//! and corpus generation cancel out. `extra` covers at least
//! [`MEASURED_BYTES`], because Python's start-up varies by more than one
//! pass over a small case costs.

use anyhow::{Context as _, Result, bail};
use serde_json::Value as Json;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::setup;

/// Instructions of one pass over a case's bodies.
#[derive(Clone, Copy, Debug)]
pub struct PassInstructions {
    pub odoogate: u64,
    pub python: u64,
}

/// Bytes decoded in the passes whose instructions are measured.
const MEASURED_BYTES: u64 = 2_000_000;

/// Tells whether a case is counted: a 10 MiB body takes minutes per run
/// under callgrind.
pub fn is_counted(case: &str) -> bool {
    case != "10MiB"
}

/// Counts the instructions of one pass over case `key` (`surface/case`),
/// whose bodies have `bytes` bytes, on both sides. The inputs directory is
/// the one the timed run wrote.
pub fn count(root: &Path, inputs: &Path, key: &str, bytes: u64) -> Result<PassInstructions> {
    let bench = bench_executable(root)?;
    let python = python_executable()?;
    let script = root.join("odoogate-userspace/benches/python_decode.py");
    let extra = u32::try_from(MEASURED_BYTES.div_ceil(bytes.max(1)).max(2)).unwrap_or(u32::MAX);
    let per_pass = |run: &dyn Fn(u32) -> Result<u64>| -> Result<u64> {
        let one = run(1)?;
        let more = run(1 + extra)?;
        Ok(more.saturating_sub(one) / u64::from(extra))
    };

    let odoogate = per_pass(&|passes| {
        let envs = [("ODOOGATE_BENCH_CASE", key.to_owned()), ("ODOOGATE_BENCH_PASSES", passes.to_string())];
        callgrind(&bench, &[], &envs)
    })?;
    let python = per_pass(&|passes| {
        let args: Vec<OsString> =
            vec![script.clone().into(), inputs.into(), "--passes".into(), passes.to_string().into(), key.into()];
        // A fixed hash seed makes the interpreter's start-up repeat exactly.
        callgrind(&python, &args, &[("PYTHONHASHSEED", "0".to_owned())])
    })?;
    Ok(PassInstructions { odoogate, python })
}

/// Installs valgrind when it is missing.
pub fn install_valgrind() -> Result<()> {
    setup::install_debian_packages(&["valgrind"])
}

/// Runs `program` under callgrind and returns the instructions it executed.
fn callgrind(program: &Path, args: &[OsString], envs: &[(&str, String)]) -> Result<u64> {
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(program)
        .args(args)
        .envs(envs.iter().map(|(name, value)| (*name, value.as_str())))
        .output()
        .context("failed to start valgrind")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("valgrind {} failed: {stderr}", program.display());
    }
    stderr
        .lines()
        .find_map(|line| line.split_once("Collected :").map(|(_, count)| count.trim().parse::<u64>()))
        .context("valgrind printed no instruction count")?
        .context("valgrind printed an invalid instruction count")
}

/// Returns the path of the release bench binary, building it if needed.
fn bench_executable(root: &Path) -> Result<PathBuf> {
    let output = Command::new("cargo")
        .current_dir(root)
        .args(["bench", "-p", "odoogate-userspace", "--bench", "decode", "--no-run", "--message-format=json"])
        .env("ODOOGATE_SKIP_EBPF_BUILD", "1")
        .output()
        .context("failed to start cargo bench --no-run")?;
    if !output.status.success() {
        bail!("cargo bench --no-run failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Json>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["target"]["name"] == "decode")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo bench --no-run named no decode executable")
}

/// Returns the interpreter `python3` runs, because a `python3` on PATH may be
/// a wrapper script (pyenv's shims are) that callgrind would count too.
fn python_executable() -> Result<PathBuf> {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .context("failed to start python3")?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || path.is_empty() {
        bail!("python3 did not print its executable");
    }
    Ok(PathBuf::from(path))
}

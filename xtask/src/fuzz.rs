//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the cargo-fuzz targets
//! in `fuzz/` on the nightly toolchain, installing cargo-fuzz if missing.
//!
//! libFuzzer writes the inputs it finds to the first corpus directory, so
//! that one is a scratch directory under the target directory, and the
//! committed seeds in `fuzz/corpus/<target>` are only read. Crashes land in
//! `fuzz/artifacts/<target>`, which git ignores: a crash becomes a
//! regression test in the normal suite.

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run_command;

pub fn run(root: &Path, target: Option<&str>, seconds: u64) -> Result<()> {
    install_cargo_fuzz()?;
    let fuzz_dir = root.join("fuzz");
    let targets = match target {
        Some(target) => vec![target.to_owned()],
        None => list_targets(&fuzz_dir)?,
    };
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);

    for target in &targets {
        let scratch = target_dir.join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch).with_context(|| format!("failed to create {}", scratch.display()))?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        run_command(
            Command::new("cargo")
                .current_dir(&fuzz_dir)
                .args(["+nightly", "fuzz", "run", target])
                .arg(&scratch)
                .arg(fuzz_dir.join("corpus").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .env("ODOOGATE_SKIP_EBPF_BUILD", "1"),
        )?;
    }
    Ok(())
}

fn install_cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|output| output.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    run_command(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let output = Command::new("cargo")
        .current_dir(fuzz_dir)
        .args(["+nightly", "fuzz", "list"])
        .output()
        .context("failed to start cargo fuzz list")?;
    if !output.status.success() {
        bail!("cargo fuzz list failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).filter(|line| !line.is_empty()).collect())
}

//! `cargo xtask bench enforce|instructions|observe|memory`: installs wrk, nginx and
//! valgrind from Debian, builds the daemon and `odoogate-bench` in release
//! mode, runs one benchmark as root in a network namespace of its own and
//! writes its section of docs/benchmarks.md.

use anyhow::{Context as _, Result};
use std::path::Path;
use std::process::Command;

use crate::{bench_doc, release_binary, run_command, setup};

/// Debian packages of the load generator, the reference proxy and the
/// instruction counter.
const BENCH_DEBIAN_PACKAGES: &[&str] = &["wrk", "nginx", "valgrind"];

/// Runs benchmark `suite` (enforce, instructions, observe or memory) with wrk runs of
/// `seconds` each.
pub fn run(root: &Path, suite: &str, seconds: u64) -> Result<()> {
    setup::run(root)?;
    setup::install_debian_packages(BENCH_DEBIAN_PACKAGES)?;
    // Without ODOOGATE_SKIP_EBPF_BUILD, so the daemon has its eBPF programs
    // and both packages share one build of the library.
    run_command(
        Command::new("cargo")
            .current_dir(root)
            .args(["build", "--release", "--package", "odoogate-userspace", "--package", "odoogate-bench"])
            .env_remove("ODOOGATE_SKIP_EBPF_BUILD"),
    )?;

    let odoogate = release_binary(root);
    let release = odoogate.parent().context("the release binary has no directory")?;
    let out = release.join(format!("odoogate-bench-{suite}.md"));
    eprintln!("xtask: running the {suite} benchmark (load average now: {})", crate::bench::load_average());
    run_command(
        Command::new(release.join("odoogate-bench"))
            .args(["run", suite, "--seconds", &seconds.to_string()])
            .arg("--odoogate")
            .arg(&odoogate)
            .arg("--workspace")
            .arg(root)
            .arg("--out")
            .arg(&out),
    )?;
    let section = std::fs::read_to_string(&out).with_context(|| format!("failed to read {}", out.display()))?;
    if suite == "instructions" {
        // A comparison for development, not a section of the page.
        print!("{section}");
        return Ok(());
    }
    let page = root.join("docs/benchmarks.md");
    bench_doc::write_section(&page, suite, &section)?;
    eprintln!("xtask: wrote the {suite} section of {}", page.display());
    Ok(())
}

//! `cargo xtask`: installs what odoogate needs to build and test, and runs
//! the demo and the test suite. Every step is idempotent.

mod bench;
mod bench_instructions;
mod bench_daemon;
mod bench_doc;
mod deb;
mod fuzz;
mod packaging_test;
mod setup;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(about = "Build, test and demo helpers for odoogate")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the nightly rust-src component, bpf-linker, the Debian
    /// packages and the Python test clients (idempotent).
    Setup,
    /// Build the daemon (with its eBPF programs) in release mode.
    Build,
    /// Build and run `odoogate demo` (needs root).
    Demo,
    /// Run every test: unit, property, decoder and end-to-end (needs root).
    Test {
        /// Run only the Debian package test instead: install, upgrade,
        /// remove and purge the .deb in a Debian 12 chroot (needs root).
        #[arg(long, conflicts_with = "args")]
        packaging: bool,
        /// Extra arguments for `cargo test`, such as a test name filter.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Write the man pages to target/man and the bash, zsh and fish
    /// completions to target/completions.
    Man,
    /// Build the Debian package target/debian/odoogate_*.deb, installing
    /// cargo-deb from crates.io if missing.
    Deb {
        /// Package version instead of the crate's (for upgrade tests).
        #[arg(long)]
        deb_version: Option<String>,
    },
    /// Run the benchmarks and write their sections of docs/benchmarks.md.
    /// The decoder benchmark compares with Python's decoders (needs python3).
    /// The enforce, observe and memory benchmarks need root and install wrk
    /// and nginx.
    Bench {
        /// One benchmark; all of them when omitted.
        #[arg(value_enum)]
        suite: Option<BenchSuite>,
        /// Seconds of each measured load run of the enforce and observe
        /// benchmarks.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Run the cargo-fuzz targets in fuzz/ on nightly, installing
    /// cargo-fuzz if missing. Not part of `test`.
    Fuzz {
        /// One target (see `cargo +nightly fuzz list` in fuzz/); all when omitted.
        target: Option<String>,
        /// Seconds to run each target.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
}

/// The benchmarks of `cargo xtask bench`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BenchSuite {
    /// RPC decoder throughput against Python's decoders.
    Decode,
    /// Enforce-mode latency and throughput against a direct connection and nginx.
    Enforce,
    /// Only enforce mode's instructions per call, printed instead of
    /// written to docs/benchmarks.md: a quick comparison of two builds.
    /// Keeps callgrind's profiles in the directory named by
    /// `ODOOGATE_BENCH_PROFILES` when set.
    Instructions,
    /// Observe-mode CPU time, lost calls and client latency.
    Observe,
    /// Resident memory idle, with many idle connections and with many partial flows.
    Memory,
}

impl BenchSuite {
    const ALL: [BenchSuite; 4] = [BenchSuite::Decode, BenchSuite::Enforce, BenchSuite::Observe, BenchSuite::Memory];
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Task::Setup => setup::run(&root),
        Task::Build => {
            setup::run(&root)?;
            build(&root)
        }
        Task::Demo => {
            setup::run(&root)?;
            build(&root)?;
            run_command(Command::new(release_binary(&root)).arg("demo"))
        }
        Task::Test { packaging: true, .. } => packaging_test::run(&root),
        Task::Test { packaging: false, args } => {
            setup::run(&root)?;
            build(&root)?;
            let mut command = Command::new("cargo");
            command
                .current_dir(&root)
                .args(["test", "--release", "--no-fail-fast"])
                .args(&args)
                .env("ODOOGATE_BIN", release_binary(&root))
                .env("ODOOGATE_PYTHON", setup::venv_python(&root));
            run_command(&mut command)
        }
        Task::Man => deb::man(&root, None),
        Task::Deb { deb_version } => deb::build_package(&root, deb_version.as_deref()).map(drop),
        Task::Bench { suite, seconds } => {
            let suites = suite.map_or_else(|| BenchSuite::ALL.to_vec(), |suite| vec![suite]);
            for suite in suites {
                match suite {
                    BenchSuite::Decode => bench::run(&root)?,
                    BenchSuite::Enforce => bench_daemon::run(&root, "enforce", seconds)?,
                    BenchSuite::Instructions => bench_daemon::run(&root, "instructions", seconds)?,
                    BenchSuite::Observe => bench_daemon::run(&root, "observe", seconds)?,
                    BenchSuite::Memory => bench_daemon::run(&root, "memory", seconds)?,
                }
            }
            Ok(())
        }
        Task::Fuzz { target, seconds } => fuzz::run(&root, target.as_deref(), seconds),
    }
}

/// Builds the release binary with its eBPF programs, also when the caller's
/// environment sets ODOOGATE_SKIP_EBPF_BUILD for its own debug builds: the
/// demo, the tests and the package all need the programs.
pub(crate) fn build(root: &Path) -> Result<()> {
    run_command(Command::new("cargo")
        .current_dir(root)
        .args(["build", "--release", "--package", "odoogate-userspace"])
        .env_remove("ODOOGATE_SKIP_EBPF_BUILD"))
}

/// Returns the release build of the daemon: under $CARGO_TARGET_DIR when it
/// is set (a relative one is taken from the workspace root, where `build`
/// runs cargo), else under the workspace's target/.
pub(crate) fn release_binary(root: &Path) -> PathBuf {
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    };
    target_dir.join("release/odoogate")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits one level below the workspace root")
        .to_path_buf()
}

/// Runs `command`, failing with its command line when it exits non-zero.
pub(crate) fn run_command(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("failed to start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

//! `cargo xtask man` and `cargo xtask deb`: the man pages, the shell
//! completions and the Debian package.

use crate::{build, release_binary, run_command, setup};
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// cargo-deb release that `deb` installs when `cargo deb` is missing.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Writes target/man/*.1 and target/completions/* with `odoogate
/// generate-manual`, from the same clap definition the binary parses.
/// `binary` is an odoogate build; without one, a debug build without the
/// eBPF programs is enough, since the CLI does not depend on them.
pub fn man(root: &Path, binary: Option<&Path>) -> Result<()> {
    let man_dir = root.join("target/man");
    let completions_dir = root.join("target/completions");
    let mut command = match binary {
        Some(binary) => Command::new(binary),
        None => {
            let mut cargo = Command::new("cargo");
            cargo
                .current_dir(root)
                .args(["run", "--quiet", "--package", "odoogate-userspace", "--bin", "odoogate", "--"])
                .env("ODOOGATE_SKIP_EBPF_BUILD", "1");
            cargo
        }
    };
    command.arg("generate-manual").arg("--man-dir").arg(&man_dir).arg("--completions-dir").arg(&completions_dir);
    run_command(&mut command)
}

/// Builds target/debian/odoogate_VERSION_ARCH.deb and returns its path:
/// installs cargo-deb when missing, builds the release binary with its eBPF
/// programs, writes the man pages and completions it ships, then packages.
/// `version` replaces the crate version when given (the upgrade test builds
/// a second package this way).
pub fn build_package(root: &Path, version: Option<&str>) -> Result<PathBuf> {
    install_cargo_deb()?;
    setup::run(root)?;
    build(root)?;
    man(root, Some(&release_binary(root)))?;

    let output_dir = root.join("target/debian");
    std::fs::create_dir_all(&output_dir).with_context(|| format!("failed to create {}", output_dir.display()))?;
    // cargo-deb finds target/release/odoogate under $CARGO_TARGET_DIR
    // itself (through `cargo metadata`), like `build` does.
    let mut command = Command::new("cargo");
    command
        .current_dir(root)
        .args(["deb", "--no-build", "--package", "odoogate-userspace", "--output"])
        .arg(&output_dir);
    if let Some(version) = version {
        command.args(["--deb-version", version]);
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", output.status);
    }
    // cargo-deb prints the path of the package it wrote as its last line.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let package = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo deb printed no .deb path; its output was: {stdout}"))?;
    eprintln!("xtask: wrote {}", package.display());
    Ok(package)
}

fn install_cargo_deb() -> Result<()> {
    let installed = Command::new("cargo").args(["deb", "--version"]).output().is_ok_and(|output| output.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-deb {CARGO_DEB_VERSION} from crates.io");
    // Without $CARGO_TARGET_DIR, cargo install builds in a temporary
    // directory and does not wait for the lock of a build running there.
    run_command(Command::new("cargo")
        .args(["install", "--locked", "cargo-deb", "--version", CARGO_DEB_VERSION])
        .env_remove("CARGO_TARGET_DIR"))
    .context("failed to install cargo-deb")
}

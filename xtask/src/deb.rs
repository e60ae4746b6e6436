//! `cargo xtask man` and `cargo xtask deb`: the man pages, the shell
//! completions and the Debian package.

use crate::run_command;
use anyhow::{Context as _, Result};
use std::path::Path;
use std::process::Command;

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

/// Builds target/debian/odoogate_VERSION_ARCH.deb from the release binary,
/// with `version` replacing the crate version when given.
///
/// NOTE: not yet run end to end here (cargo-deb was not installed), and no
/// test installs the package with dpkg yet. Like `demo`, it expects the
/// release binary under the workspace's target/, not $CARGO_TARGET_DIR.
pub fn deb(root: &Path, version: Option<&str>) -> Result<()> {
    man(root, Some(&root.join("target/release/odoogate")))?;
    install_cargo_deb()?;
    let mut command = Command::new("cargo");
    command
        .current_dir(root)
        .args(["deb", "--no-build", "--package", "odoogate-userspace", "--output"])
        .arg(root.join("target/debian"));
    if let Some(version) = version {
        command.args(["--deb-version", version]);
    }
    run_command(&mut command)
}

fn install_cargo_deb() -> Result<()> {
    let installed = Command::new("cargo").args(["deb", "--version"]).output().is_ok_and(|output| output.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-deb {CARGO_DEB_VERSION} from crates.io");
    run_command(Command::new("cargo").args(["install", "--locked", "cargo-deb", "--version", CARGO_DEB_VERSION]))
        .context("failed to install cargo-deb")
}

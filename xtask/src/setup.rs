//! Idempotent installation of the build and test prerequisites.

use crate::run_command;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// bpf-linker release that works with the nightly's LLVM 22 and aya 0.14.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests and the demo use: `ip` and `nsenter` for the
/// namespaces, systemd for a private journald, Python's venv module for the
/// Odoo client libraries.
const DEBIAN_PACKAGES: &[&str] = &["iproute2", "util-linux", "systemd", "python3-venv"];

/// Odoo client libraries from PyPI the end-to-end tests drive.
const PYTHON_PACKAGES: &[&str] = &["odoorpc==0.10.1", "odoo-client-lib==2.0.1"];

pub fn run(root: &Path) -> Result<()> {
    install_rust_src()?;
    install_bpf_linker()?;
    install_debian_packages(DEBIAN_PACKAGES)?;
    install_python_clients(root)?;
    mount_bpffs()?;
    Ok(())
}

/// The bpffs mount point systemd creates at boot, under which the tests pin their maps.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// Mounts bpffs at [`BPFFS_MOUNT`] when running as root and nothing is
/// mounted there yet, as systemd does on a booted host. Some minimal
/// machines and containers boot without it, and the steering tests run the
/// daemon without CAP_SYS_ADMIN, so the daemon cannot mount it itself.
fn mount_bpffs() -> Result<()> {
    if !is_root()? {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("failed to read /proc/self/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        fields.nth(1) == Some(BPFFS_MOUNT) && fields.next() == Some("bpf")
    });
    if mounted {
        return Ok(());
    }
    eprintln!("xtask: mounting bpffs at {BPFFS_MOUNT}");
    run_command(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS_MOUNT]))
}

/// Tells whether this process runs with effective user id 0.
pub fn is_root() -> Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status").context("failed to read /proc/self/status")?;
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .context("no Uid line in /proc/self/status")?;
    Ok(effective_uid == "0")
}

fn install_rust_src() -> Result<()> {
    let output = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("failed to run rustup: is rustup installed?")?;
    let installed = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && installed.lines().any(|line| line.starts_with("rust-src")) {
        return Ok(());
    }
    // `rustup toolchain install nightly` would also update an installed
    // nightly, and a newer nightly brings another LLVM than the one
    // bpf-linker was built against, so only a missing toolchain is installed.
    let toolchains = Command::new("rustup").args(["toolchain", "list"]).output().context("failed to run rustup")?;
    let has_nightly = String::from_utf8_lossy(&toolchains.stdout).lines().any(|line| line.starts_with("nightly"));
    if !has_nightly {
        eprintln!("xtask: installing the nightly toolchain");
        run_command(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    eprintln!("xtask: installing the nightly toolchain's rust-src component");
    run_command(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// Installs bpf-linker linked against the nightly toolchain's own libLLVM, so
/// no system LLVM is needed. A bpf-linker built against another nightly
/// fails to load its libLLVM, so that case reinstalls too.
fn install_bpf_linker() -> Result<()> {
    let nightly_lib = nightly_sysroot()?.join("lib");
    let linker_works = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false);
    if linker_works {
        return Ok(());
    }

    let llvm_library = std::fs::read_dir(&nightly_lib)
        .with_context(|| format!("failed to read {}", nightly_lib.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .find(|name| name.starts_with("libLLVM") && name.ends_with(".so"))
        .with_context(|| format!("no libLLVM*.so in {}", nightly_lib.display()))?;
    let llvm_name = llvm_library.trim_start_matches("lib").trim_end_matches(".so");
    let major = llvm_name
        .trim_start_matches("LLVM-")
        .split(['.', '-'])
        .next()
        .unwrap_or_default()
        .to_owned();
    if major.parse::<u32>().is_err() {
        bail!("cannot read the LLVM major version from {llvm_library}");
    }

    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against the nightly's {llvm_library}");
    let rustflags = format!(
        "-L {lib} -C link-arg=-l{llvm_name} -C link-arg=-Wl,-rpath,{lib}",
        lib = nightly_lib.display()
    );
    run_command(Command::new("cargo")
        .env("RUSTFLAGS", rustflags)
        .args(["install", "bpf-linker", "--force", "--locked", "--version"])
        .arg(BPF_LINKER_VERSION)
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{major},no-llvm-linking")))
}

fn nightly_sysroot() -> Result<PathBuf> {
    let output = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("failed to run rustc +nightly")?;
    if !output.status.success() {
        bail!("rustc +nightly --print sysroot failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Installs the Debian `packages` that are not installed yet.
pub fn install_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {missing:?}");
    run_command(Command::new("apt-get").arg("update"))?;
    run_command(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Returns the Python interpreter of the test virtual environment.
pub fn venv_python(root: &Path) -> PathBuf {
    root.join("tests/.venv/bin/python")
}

fn install_python_clients(root: &Path) -> Result<()> {
    let python = venv_python(root);
    if !python.exists() {
        eprintln!("xtask: creating the Python test environment in tests/.venv");
        run_command(Command::new("python3").args(["-m", "venv"]).arg(root.join("tests/.venv")))?;
    }
    let installed = Command::new(&python)
        .args(["-c", "import odoorpc, odoolib"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing the Odoo client libraries {PYTHON_PACKAGES:?}");
    run_command(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(PYTHON_PACKAGES))
}

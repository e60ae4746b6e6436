//! The Odoo-like upstream: a Python server (standard library only) that
//! answers Odoo's RPC surfaces like Odoo 19, used by `odoogate demo` and the
//! end-to-end tests. It is written in Python on purpose: it decodes requests
//! with the same parsers Odoo uses (`xmlrpc.client.loads` on expat, `json`),
//! independently of odoogate's own decoders.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The server's source, embedded so the binary is self-contained.
pub const SCRIPT: &str = include_str!("odoo_like.py");

/// Writes the server script into `directory` and returns its path.
pub fn write_script(directory: &Path) -> anyhow::Result<PathBuf> {
    let path = directory.join("odoo_like.py");
    std::fs::write(&path, SCRIPT).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// Runs the server in the foreground with `args` (`--listen`, `--api-key`, …).
pub fn run_foreground(args: &[String]) -> anyhow::Result<ExitCode> {
    let directory = std::env::temp_dir().join(format!("odoogate-odoo-like-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    let script = write_script(&directory)?;
    let status = Command::new("python3")
        .arg(&script)
        .args(args)
        .status()
        .context("failed to start python3: install Python 3")?;
    let _ = std::fs::remove_dir_all(&directory);
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

//! `odoogate uninstall`: removes the pinned steering of enforce mode.
//!
//! Stopping the daemon leaves the steering pinned on purpose (new
//! connections to Odoo's ports are then refused, not let through
//! unchecked). This command removes the pins, which detaches the sk_lookup
//! program: new connections reach Odoo directly again. While a daemon still
//! steers through the pins it refuses, unless `--force`: the daemon would
//! go on running and reporting its steering while clients bypass it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::{config, steer};

#[derive(clap::Args, Debug)]
pub struct UninstallArgs {
    /// bpffs directory of the steering pins [default: `steering.pin_dir` of
    /// the configuration file, else /sys/fs/bpf/odoogate].
    #[arg(long)]
    pin_dir: Option<PathBuf>,
    /// The configuration file to read `steering.pin_dir` from
    /// [default: /etc/odoogate/odoogate.toml, when it exists].
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Remove the pins even while `odoogate run` steers through them. New
    /// connections then reach Odoo directly, unchecked and unrecorded,
    /// until the daemon restarts.
    #[arg(long)]
    force: bool,
}

pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<ExitCode> {
    let pin_dir = pin_dir(args)?;
    let holders = steer::holders(&pin_dir).with_context(|| format!("failed to look for daemons steering through {}", pin_dir.display()))?;
    if !holders.is_empty() {
        let running = holders.iter().map(|holder| format!("{} (pid {})", holder.command, holder.pid)).collect::<Vec<_>>().join(", ");
        if !args.force {
            anyhow::bail!(
                "{running} still steers through {dir}: removing the pins now would let new connections reach Odoo directly \
                 while it runs. Stop it first (`systemctl stop odoogate`), then run `odoogate uninstall` again, or pass --force",
                dir = pin_dir.display()
            );
        }
        eprintln!("warning: {running} still runs; new connections reach Odoo directly until it restarts");
    }

    let removed = steer::uninstall(&pin_dir).with_context(|| format!("failed to remove the steering pins in {}", pin_dir.display()))?;
    if removed.is_empty() {
        println!("nothing to remove: no steering is pinned in {}", pin_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    for path in &removed {
        println!("removed {}", path.display());
    }
    println!("steering detached: new connections reach Odoo directly");
    Ok(ExitCode::SUCCESS)
}

/// Returns `--pin-dir`, else `steering.pin_dir` of `--config` or of the
/// default configuration when it exists, else the default pin directory.
fn pin_dir(args: &UninstallArgs) -> anyhow::Result<PathBuf> {
    if let Some(pin_dir) = &args.pin_dir {
        return Ok(pin_dir.clone());
    }
    let path = match &args.config {
        Some(path) => path.as_path(),
        None if Path::new(super::DEFAULT_CONFIG).exists() => Path::new(super::DEFAULT_CONFIG),
        None => return Ok(PathBuf::from(steer::DEFAULT_PIN_DIR)),
    };
    let loaded = config::load(path).with_context(|| {
        format!("failed to read steering.pin_dir from {}; pass the pin directory with --pin-dir DIR", path.display())
    })?;
    Ok(loaded.steering.pin_dir)
}

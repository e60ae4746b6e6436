//! `odoogate uninstall`: removes the pinned steering of enforce mode.
//!
//! Stopping the daemon leaves the steering pinned on purpose (new
//! connections to Odoo's ports are then dropped, not let through
//! unchecked). This command removes the pins, which detaches the sk_lookup
//! program: new connections reach Odoo directly again.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::steer;

pub fn uninstall(pin_dir: &Path) -> anyhow::Result<ExitCode> {
    let removed = steer::uninstall(pin_dir)
        .with_context(|| format!("failed to remove the steering pins in {}", pin_dir.display()))?;
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

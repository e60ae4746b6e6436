//! `odoogate reload`: requests that the running daemon re-read its configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::control::{self, ControlRequest};

#[derive(clap::Args)]
pub struct ReloadArgs {
    /// The control socket of the running daemon.
    #[arg(long, default_value = control::DEFAULT_SOCKET)]
    socket: PathBuf,
}

/// Exits 0 when the new configuration is in force, 1 when the daemon kept
/// the old one (the error is printed) or is not running.
pub fn reload(args: &ReloadArgs) -> anyhow::Result<ExitCode> {
    let response = control::send(&args.socket, ControlRequest::Reload)?;
    if response["ok"] != true {
        let error = response["error"].as_str().unwrap_or("no error message");
        anyhow::bail!("the daemon kept its old configuration: {error}");
    }
    println!("Reloaded the configuration.");
    let needs_restart: Vec<&str> = response["needs_restart"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    if !needs_restart.is_empty() {
        println!("Not applied until a restart: {}", needs_restart.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

//! `odoogate reload`: requests that the running daemon re-read its configuration.

use std::process::ExitCode;

use super::control_socket::{self, DaemonArgs};
use crate::control::ControlRequest;

#[derive(clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
}

/// Exits 0 when the new configuration is in force, 1 when the daemon kept
/// the old one (the error is printed), could not apply part of the new one
/// (the service credentials; printed too) or is not running.
pub fn reload(args: &ReloadArgs) -> anyhow::Result<ExitCode> {
    let response = control_socket::send(&args.daemon, ControlRequest::Reload)?;
    if response["ok"] != true {
        let error = response["error"].as_str().unwrap_or("no error message");
        anyhow::bail!("the daemon kept its old configuration: {error}");
    }
    println!("Reloaded the configuration.");
    let needs_restart: Vec<&str> = response["needs_restart"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    if !needs_restart.is_empty() {
        println!("Not applied until a restart: {}", needs_restart.join(", "));
    }
    if let Some(error) = response["not_applied"].as_str() {
        eprintln!("odoogate: not applied: {error}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

//! `odoogate reload`: requests that the running daemon re-read its configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::control::{self, ControlRequest};

#[derive(clap::Args)]
pub struct ReloadArgs {
    /// The control socket of the running daemon [default: `control.socket`
    /// of the configuration file, else /run/odoogate/control.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The daemon's configuration file, read for `control.socket`.
    #[arg(long, short, default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
}

/// Exits 0 when the new configuration is in force, 1 when the daemon kept
/// the old one (the error is printed), could not apply part of the new one
/// (the service credentials; printed too) or is not running.
pub fn reload(args: &ReloadArgs) -> anyhow::Result<ExitCode> {
    let socket = super::status::control_socket(args.socket.as_deref(), &args.config);
    let response = control::send(&socket, ControlRequest::Reload)?;
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

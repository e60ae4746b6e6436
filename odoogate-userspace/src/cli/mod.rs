//! The `odoogate` command line.

mod audit;
mod check;
mod control_socket;
mod grant;
mod install;
mod explain;
mod logging;
mod manual;
mod reload;
mod run;
mod status;
mod suggest;
mod token;
mod uninstall;

use clap::{CommandFactory as _, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/odoogate/odoogate.toml";

#[derive(Parser)]
#[command(
    name = "odoogate",
    version,
    about = "Per-integration scopes and audit records for Odoo's RPC, from the Odoo host",
    long_about = None
)]
struct Cli {
    /// Log format of the daemon's own messages on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the daemon in observe or enforce mode, as `policy.mode` sets.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a configuration file and print what it defines.
    Check {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print audit records from journald (or from a JSON lines file).
    Audit(audit::AuditArgs),
    /// Explain how a saved HTTP request is identified and decided on.
    Explain(explain::ExplainArgs),
    /// Suggest least-privilege allow rules from the audit records.
    Suggest(suggest::SuggestArgs),
    /// Print the running daemon's state (from its control socket).
    Status(status::StatusArgs),
    /// Ask the running daemon to re-read its configuration.
    Reload(reload::ReloadArgs),
    /// Create, list, revoke and rotate scoped tokens.
    Token(token::TokenArgs),
    /// Install the systemd unit, a default configuration (never replacing
    /// one) and the state directory, for hosts without the package.
    Install(install::InstallArgs),
    /// Enable a disabled integration or rule for a while; list grants.
    Grant(grant::GrantArgs),
    /// End a temporary grant before it expires.
    RevokeGrant(grant::RevokeGrantArgs),
    /// Remove the pinned sk_lookup steering of enforce mode, so new
    /// connections reach Odoo directly again (stopping the daemon leaves it
    /// pinned, which refuses new connections to Odoo's ports).
    Uninstall(uninstall::UninstallArgs),
    /// Run a self-contained demonstration in private network namespaces
    /// (needs root and python3).
    Demo(crate::demo::DemoArgs),
    /// Write the man pages and the shell completions.
    #[command(hide = true)]
    GenerateManual(manual::ManualArgs),
    /// Run the Odoo-like upstream server used by the demo and the tests.
    ///
    /// Like Odoo 19's server, it closes the connection after every
    /// response. With `--keep-alive` it keeps the connection open for the
    /// next request, and `--keep-alive-timeout SECONDS` closes a connection
    /// idle that long.
    #[command(hide = true)]
    OdooLike {
        /// Arguments passed to the server, such as `--listen HOST:PORT` and
        /// `--keep-alive` (see `--help` after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

impl Command {
    /// Tells whether the command runs until it is stopped, serving client
    /// connections (`run`, `odoo-like`) or driving the daemon and clients
    /// (`demo`).
    fn is_long_running(&self) -> bool {
        matches!(self, Self::Run { .. } | Self::Demo(_) | Self::OdooLike { .. })
    }
}

/// Restores SIGPIPE's default action, which Rust's runtime sets to ignore,
/// so that a command whose stdout reader has gone (`odoogate check | head
/// -1`) ends quietly as Unix tools do, where `println!` would panic. The
/// long-running commands keep ignoring SIGPIPE, because to them a closed
/// client connection is an error to handle. Sockets raise no SIGPIPE either
/// way: std's UnixStream and TcpStream write with MSG_NOSIGNAL, so a daemon
/// that closes the control socket early still gives an error message.
fn restore_default_sigpipe() {
    // SAFETY: SIG_DFL installs no handler, so no code runs in signal
    // context, and the call happens before any thread is started.
    let restored = unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    if let Err(error) = restored {
        eprintln!("warning: failed to restore SIGPIPE's default action ({error}); a closed stdout may end the command with a panic");
    }
}

/// Returns the command-line definition, for the man pages and the shell
/// completions.
pub fn command() -> clap::Command {
    Cli::command()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.command.is_long_running() {
        restore_default_sigpipe();
    }
    let log_target = logging::init(cli.log_format);
    let result = match cli.command {
        Command::Run { config } => run::run(&config),
        Command::Check { config } => check::check(&config),
        Command::Audit(args) => audit::audit(&args),
        Command::Explain(args) => explain::explain(&args),
        Command::Suggest(args) => suggest::suggest(&args),
        Command::Status(args) => status::status(&args),
        Command::Reload(args) => reload::reload(&args),
        Command::Token(args) => token::token(&args),
        Command::Install(args) => install::install(&args),
        Command::Grant(args) => grant::grant(&args),
        Command::RevokeGrant(args) => grant::revoke_grant(&args),
        Command::Uninstall(args) => uninstall::uninstall(&args),
        Command::Demo(args) => crate::demo::run(&args),
        Command::GenerateManual(args) => manual::generate(&args),
        Command::OdooLike { args } => crate::upstream::run_foreground(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            logging::report_fatal(log_target, &error);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("odoogate").chain(args.iter().copied())).unwrap().command
    }

    #[test]
    fn daemons_keep_sigpipe_ignored() {
        for args in [&["run"][..], &["demo"], &["odoo-like", "--port", "1"]] {
            assert!(parsed(args).is_long_running(), "{args:?}");
        }
        for args in [&["check"][..], &["audit"], &["status"], &["reload"], &["token", "list"], &["grant", "--list"], &["uninstall"]] {
            assert!(!parsed(args).is_long_running(), "{args:?}");
        }
    }
}

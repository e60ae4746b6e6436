//! `odoogate grant` and `odoogate revoke-grant`: temporary grants that
//! enable a disabled integration or rule.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::config;
use super::control_socket::{Notice, notify};
use crate::control::ControlRequest;
use crate::grant::store::{self, GrantRequest};
use crate::policy::runtime::GRANT_FILE_CHECK_INTERVAL;

#[derive(Args)]
pub struct GrantArgs {
    /// Integration to enable, as named in the configuration.
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    integration: Option<String>,

    /// How long the grant lasts, such as `2h`, `30m` or `1h 30m` (at most
    /// 30 days).
    #[arg(long = "for", value_parser = parse_duration, required_unless_present = "list")]
    duration: Option<Duration>,

    /// Enable only the rule at this index of the integration's `allow`
    /// list, counted from 0 as in `integration.allow[N]`.
    #[arg(long)]
    rule: Option<usize>,

    /// Why the grant exists, shown by `grant --list`.
    #[arg(long)]
    reason: Option<String>,

    /// List the grants in force instead of adding one.
    #[arg(long)]
    list: bool,

    #[command(flatten)]
    files: GrantFiles,
}

#[derive(Args)]
pub struct RevokeGrantArgs {
    /// Grant id, as printed by `odoogate grant`.
    id: String,

    #[command(flatten)]
    files: GrantFiles,
}

#[derive(Args)]
struct GrantFiles {
    /// Configuration file; the integration and rule must be defined in it.
    #[arg(long, short, default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,

    /// Grant state file [default: `policy.grants_file` of the
    /// configuration, which defaults to /var/lib/odoogate/grants.json].
    #[arg(long)]
    grants_file: Option<PathBuf>,
}

impl GrantFiles {
    /// Returns `--grants-file`, or else the configuration's
    /// `policy.grants_file`, so the CLI writes the file the daemon reads.
    fn grants_file(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.grants_file {
            return Ok(path.clone());
        }
        let config = config::load(&self.config)
            .with_context(|| format!("failed to find the grant file (pass --grants-file or fix {})", self.config.display()))?;
        Ok(config.policy.grants_file)
    }
}

/// Runs `odoogate grant`.
pub fn grant(args: &GrantArgs) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let path = &args.files.grants_file()?;
    if args.list {
        return list(path, now);
    }

    let (Some(integration), Some(duration)) = (&args.integration, args.duration) else {
        bail!("expected an integration and --for, or --list");
    };
    let config = config::load(&args.files.config)?;
    let Some(defined) = config.integration(integration) else {
        bail!("integration {integration:?} is not defined in {}", args.files.config.display());
    };
    if let Some(index) = args.rule
        && index >= defined.rules.len()
    {
        bail!("{integration} has {} rules, so --rule must be below {}", defined.rules.len(), defined.rules.len());
    }
    warn_when_enabled(defined, args.rule);

    let request = GrantRequest { integration: integration.clone(), rule: args.rule, duration, reason: args.reason.clone() };
    let grant = store::add(path, request, now).with_context(|| format!("failed to add a grant to {}", path.display()))?;
    println!("{}", grant.id);
    eprintln!("granted {} until {}", grant.target(), grant.expires);
    tell_daemon(&args.files);
    Ok(ExitCode::SUCCESS)
}

/// Runs `odoogate revoke-grant`.
pub fn revoke_grant(args: &RevokeGrantArgs) -> anyhow::Result<ExitCode> {
    let path = &args.files.grants_file()?;
    let grant = store::revoke(path, &args.id, SystemTime::now())?;
    eprintln!("revoked grant {} for {}", grant.id, grant.target());
    tell_daemon(&args.files);
    Ok(ExitCode::SUCCESS)
}

fn list(path: &std::path::Path, now: SystemTime) -> anyhow::Result<ExitCode> {
    let grants = store::load(path)?;
    let now = jiff::Timestamp::try_from(now)?;
    println!("{:<18} {:<32} {:<25} REASON", "ID", "TARGET", "EXPIRES");
    for grant in grants.iter().filter(|grant| grant.is_active(now)) {
        let reason = grant.reason.as_deref().unwrap_or("");
        println!("{:<18} {:<32} {:<25} {reason}", grant.id, grant.target(), grant.expires.to_string());
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends `grants_changed` to the running daemon, so the change applies to
/// its next call. A daemon that is not running reads the file when it
/// starts. Without the message, the daemon finds the change at its next
/// periodic check.
fn tell_daemon(files: &GrantFiles) {
    // With only `--grants-file`, the configuration may not load, and the
    // daemon then listens on the default socket.
    let seconds = GRANT_FILE_CHECK_INTERVAL.as_secs();
    match notify(&files.config, ControlRequest::GrantsChanged) {
        Notice::Applied | Notice::NoDaemon => {}
        Notice::Refused(error) => {
            eprintln!("warning: the daemon did not reread the grant file ({error}); it checks the file within {seconds} s");
        }
        Notice::Failed(error) => eprintln!("warning: {error}; the running daemon checks the grant file within {seconds} s"),
    }
}

/// Warns when the grant changes nothing because its target is enabled.
fn warn_when_enabled(integration: &config::Integration, rule: Option<usize>) {
    let enabled = match rule {
        Some(index) => integration.rules[index].enabled,
        None => integration.enabled,
    };
    if enabled {
        eprintln!("note: the target is already enabled in the configuration, so the grant changes nothing until it is disabled");
    }
}

/// Parses a duration such as `2h` or `1h 30m` with jiff's friendly format.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration =
        text.parse().map_err(|error| format!("expected a duration such as 2h or 30m, found {text:?}: {error}"))?;
    Duration::try_from(signed).map_err(|_| format!("expected a positive duration, found {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("-2h").is_err());
        assert!(parse_duration("soon").is_err());
    }
}

//! `odoogate token`: create, list, revoke and rotate scoped tokens.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use jiff::Timestamp;

use crate::config::{self, Config};
use super::control_socket::{Notice, notify};
use crate::control::ControlRequest;
use crate::identity::{InvalidTokenReason, token_acceptance};
use crate::token::{TokenRecord, TokenState, TokenStore};

/// Hex characters of a token's SHA-256 shown by `token list`.
const FINGERPRINT_PREFIX_LEN: usize = 12;

/// Printed after a change to the token store that no daemon confirmed:
/// a daemon notices the changed file on its next check.
const RUNNING_DAEMON_NOTE: &str = "a running daemon loads the change within about a second";

#[derive(Args)]
pub struct TokenArgs {
    /// Configuration file; its `[tokens] store` is used and integrations
    /// must be defined in it.
    #[arg(long, short, global = true, default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,

    /// Token store file, overriding `[tokens] store`.
    #[arg(long, global = true)]
    store: Option<PathBuf>,

    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for an integration and print it once.
    Create {
        /// Name of an integration in the configuration.
        integration: String,
        /// Lifetime, such as `90d`, `12h` or `2w` (units s, m, h, d, w).
        /// Without it the token never expires.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens: id, integration, fingerprint prefix, times and state.
    List,
    /// Revoke a token; a running daemon refuses it from its next call on.
    Revoke {
        /// Token id, from `odoogate token list`.
        id: String,
    },
    /// Create a new token for the same integration and keep the old one
    /// valid for a grace period.
    Rotate {
        /// Token id, from `odoogate token list`.
        id: String,
        /// How long the old token stays valid (units s, m, h, d, w).
        #[arg(long, value_parser = parse_duration, default_value = "24h")]
        grace: Duration,
    },
}

pub fn token(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    let store = args.store.clone().unwrap_or_else(|| config.tokens.store.clone());
    let now = SystemTime::now();

    match &args.command {
        TokenCommand::Create { integration, expires } => {
            check_accepts_tokens(&config, integration, &args.config)?;
            let (record, token) = TokenStore::create(&store, integration, *expires, now)?;
            println!("{}", token.expose());
            eprintln!("created token {} for {integration}{}", record.id, expiry_note(&record));
            eprintln!("the token is shown only once; odoogate stores only its SHA-256");
            tell_daemon(&args.config);
        }
        TokenCommand::List => print!("{}", list(&store, now)?),
        TokenCommand::Revoke { id } => {
            let record = TokenStore::revoke(&store, id, now)?;
            eprintln!("revoked token {} of {}", record.id, record.integration);
            tell_daemon(&args.config);
        }
        TokenCommand::Rotate { id, grace } => {
            // A missing id is reported by `rotate` itself.
            let loaded = TokenStore::load(&store)?;
            if let Some(old) = loaded.records().find(|record| record.id == *id) {
                check_accepts_tokens(&config, &old.integration, &args.config)?;
            }
            let (old, new, token) = TokenStore::rotate(&store, id, *grace, now)?;
            println!("{}", token.expose());
            let deadline = old.grace_until.map_or_else(String::new, |time| time.to_string());
            eprintln!("created token {} for {}{}", new.id, new.integration, expiry_note(&new));
            eprintln!("token {} stays valid until {deadline}", old.id);
            tell_daemon(&args.config);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Has the daemon of the configuration load the changed token store now,
/// as `grant` does with the grant file, and prints what became of it. A
/// daemon that is not running loads the store when it starts. One that
/// cannot be reached loads it on its next check.
fn tell_daemon(config: &Path) {
    match notify(config, ControlRequest::TokensChanged) {
        Notice::Applied => eprintln!("the running daemon loads the change before its next call"),
        Notice::NoDaemon => eprintln!("{RUNNING_DAEMON_NOTE}"),
        Notice::Refused(error) => eprintln!("warning: the daemon did not load the token store ({error}); {RUNNING_DAEMON_NOTE}"),
        Notice::Failed(error) => eprintln!("warning: {error}; {RUNNING_DAEMON_NOTE}"),
    }
}

/// Fails unless `config` defines `integration` with `token = true` in its
/// match, since the daemon refuses every other integration's tokens.
fn check_accepts_tokens(config: &Config, integration: &str, config_path: &Path) -> anyhow::Result<()> {
    match token_acceptance(config, integration) {
        Ok(_) => Ok(()),
        Err(InvalidTokenReason::UnknownIntegration) => bail!("integration {integration:?} is not defined in {}", config_path.display()),
        Err(_) => bail!(
            "integration {integration:?} does not accept scoped tokens, because its match in {} has no `token = true`; \
             add it (the other keys of the match then also apply to token calls)",
            config_path.display()
        ),
    }
}

/// Returns a warning for each active or rotating token in `store` that the
/// daemon would refuse under `config`, because its integration is missing
/// or its match has no `token = true`.
pub fn refused_token_warnings(config: &Config, store: &TokenStore, now: SystemTime) -> Vec<String> {
    let Ok(now) = Timestamp::try_from(now) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for record in store.records().filter(|record| matches!(record.state(now), TokenState::Active | TokenState::Rotating)) {
        let (id, name) = (&record.id, &record.integration);
        let revoke = format!("`odoogate token revoke {id}`");
        match token_acceptance(config, name) {
            Ok(_) => {}
            Err(InvalidTokenReason::UnknownIntegration) => warnings.push(format!(
                "token {id} of {name} is active, but the configuration defines no integration {name:?}, \
                 so calls with it are refused (token_of_unknown_integration); revoke it with {revoke}"
            )),
            Err(_) => warnings.push(format!(
                "token {id} of {name} is active, but the match of integration {name:?} has no `token = true`, \
                 so calls with it are refused (token_outside_match); add `token = true` to that match, \
                 or revoke the token with {revoke}"
            )),
        }
    }
    warnings
}

fn expiry_note(record: &TokenRecord) -> String {
    record.expires.map_or_else(|| ", without expiry".to_owned(), |time| format!(", expires {time}"))
}

/// Formats the store as a table.
fn list(path: &Path, now: SystemTime) -> anyhow::Result<String> {
    let store = TokenStore::load(path)?;
    let now = Timestamp::try_from(now).context("the system clock is out of range")?;
    let mut rows = vec![["ID", "INTEGRATION", "SHA256", "CREATED", "EXPIRES", "LAST USED", "STATE"].map(str::to_owned)];
    for record in store.records() {
        let time = |time: Option<Timestamp>| time.map_or_else(|| "-".to_owned(), |time| time.strftime("%Y-%m-%d %H:%M").to_string());
        rows.push([
            record.id.clone(),
            record.integration.clone(),
            record.sha256.chars().take(FINGERPRINT_PREFIX_LEN).collect(),
            time(Some(record.created)),
            time(record.expires.into_iter().chain(record.grace_until).min()),
            time(store.last_used(&record.id)),
            record.state(now).as_str().to_owned(),
        ]);
    }

    let widths: Vec<usize> = (0..7).map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// Parses `<number><unit>` with unit `s`, `m`, `h`, `d` or `w`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("expected a number and a unit (s, m, h, d, w) such as 30d, found {text:?}")),
    };
    let number: u64 = number.parse().map_err(|_| format!("expected a number before the unit, found {text:?}"))?;
    if number == 0 {
        return Err("expected a duration above zero".to_owned());
    }
    number.checked_mul(unit_seconds).map(Duration::from_secs).ok_or_else(|| format!("duration {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
    }

    /// `local-script` matches by address only; `mcp-assistant` takes tokens.
    fn token_config() -> Config {
        let text = "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n[policy]\nmode = \"enforce\"\nunidentified = \"deny\"\n\
                    [[integration]]\nname = \"local-script\"\nmatch = { ip = [\"127.0.0.1\"] }\n\
                    [[integration]]\nname = \"mcp-assistant\"\nmatch = { token = true }\n";
        config::parse(text, "odoogate.toml").expect("valid test config")
    }

    #[test]
    fn create_needs_token_match() {
        let config = token_config();
        let path = Path::new("odoogate.toml");
        assert!(check_accepts_tokens(&config, "mcp-assistant", path).is_ok());

        let error = check_accepts_tokens(&config, "local-script", path).unwrap_err().to_string();
        assert!(error.contains("does not accept scoped tokens"), "{error}");
        assert!(error.contains("its match in odoogate.toml has no `token = true`"), "{error}");
        let missing = check_accepts_tokens(&config, "nope", path).unwrap_err().to_string();
        assert!(missing.contains("\"nope\" is not defined in odoogate.toml"), "{missing}");
    }

    #[test]
    fn warnings_name_refused_active_tokens() {
        let dir = std::env::temp_dir().join(format!("odoogate-cli-token-warnings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.json");
        let now = SystemTime::now();
        TokenStore::create(&path, "mcp-assistant", None, now).unwrap();
        let (local, _) = TokenStore::create(&path, "local-script", None, now).unwrap();
        let (gone, _) = TokenStore::create(&path, "gone", None, now).unwrap();
        let (revoked, _) = TokenStore::create(&path, "local-script", None, now).unwrap();
        TokenStore::revoke(&path, &revoked.id, now).unwrap();
        let store = TokenStore::load(&path).unwrap();

        let warnings = refused_token_warnings(&token_config(), &store, now);
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(warnings[0].starts_with(&format!("token {} of local-script is active", local.id)), "{}", warnings[0]);
        assert!(warnings[0].contains("has no `token = true`"), "{}", warnings[0]);
        assert!(warnings[0].contains("token_outside_match"), "{}", warnings[0]);
        assert!(warnings[1].starts_with(&format!("token {} of gone is active", gone.id)), "{}", warnings[1]);
        assert!(warnings[1].contains("token_of_unknown_integration"), "{}", warnings[1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_durations_are_rejected() {
        for text in ["30", "d", "0d", "3x", "-1d", "1.5h", "99999999999999999999w"] {
            assert!(parse_duration(text).is_err(), "{text} was accepted");
        }
    }
}

//! `odoogate check`: validates a configuration file.

use crate::config::{self, CheckSummary, Config, Mode};
use crate::token::{CredentialsError, ServiceCredentials};
use std::path::Path;
use std::process::ExitCode;

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match config::load(path) {
        Ok(config) => {
            println!("{}", CheckSummary::from(&config));
            warn_about_stored_tokens(&config);
            Ok(check_credentials(&config))
        }
        Err(error) => {
            eprintln!("odoogate: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Loads the service credentials as enforce mode does at start, and fails
/// when `odoogate run` would stop on them. A file that this user may not
/// read gets a warning only, since the daemon may run as another user.
fn check_credentials(config: &Config) -> ExitCode {
    if config.policy.mode != Mode::Enforce {
        return ExitCode::SUCCESS;
    }
    match ServiceCredentials::load_for_tokens(config) {
        Ok(Some(_)) if config.integrations.iter().any(|integration| integration.matcher.token) => {
            println!("scoped tokens: on, with the service credentials");
            ExitCode::SUCCESS
        }
        Ok(Some(_)) => {
            println!("scoped tokens: on, but no integration has `token = true` in its match, so every token is refused");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("scoped tokens: off (no token store and no service credential)");
            ExitCode::SUCCESS
        }
        Err(CredentialsError::Read { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "warning: the service credentials could not be read as this user ({source}); \
                 run `odoogate check` as root or as the daemon's user to check them"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("odoogate: {error}; `odoogate run` would stop at start");
            ExitCode::FAILURE
        }
    }
}

/// Prints a warning for each active token in the configuration's token
/// store that the daemon would refuse, and for a store that cannot be read.
/// Warnings leave the exit status at 0.
fn warn_about_stored_tokens(config: &Config) {
    let store = match crate::token::TokenStore::load(&config.tokens.store) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("warning: {error}; stored tokens were not checked");
            return;
        }
    };
    for warning in super::token::refused_token_warnings(config, &store, std::time::SystemTime::now()) {
        eprintln!("warning: {warning}");
    }
}

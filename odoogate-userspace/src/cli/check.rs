//! `odoogate check`: validates a configuration file.

use crate::config;
use std::path::Path;
use std::process::ExitCode;

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match config::check(path) {
        Ok(summary) => {
            println!("{summary}");
            warn_about_stored_tokens(path);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints a warning for each active token in the configuration's token
/// store that the daemon would refuse, and for a store that cannot be read.
/// Warnings leave the exit status at 0. `config::check` returns only the
/// summary, so the configuration is loaded again here.
fn warn_about_stored_tokens(path: &Path) {
    let Ok(config) = config::load(path) else {
        return;
    };
    let store = match crate::token::TokenStore::load(&config.tokens.store) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("warning: {error}; stored tokens were not checked");
            return;
        }
    };
    for warning in super::token::refused_token_warnings(&config, &store, std::time::SystemTime::now()) {
        eprintln!("warning: {warning}");
    }
}

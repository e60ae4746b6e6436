//! `odoogate check`: validates a configuration file.

use crate::config;
use std::path::Path;
use std::process::ExitCode;

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match config::check(path) {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

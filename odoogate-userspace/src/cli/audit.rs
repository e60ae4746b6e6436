//! `odoogate audit`: prints audit records.

use crate::audit::reader::{self, AuditQuery};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Only records since this time: `7d`, `2h`, `30m`, or anything
    /// `journalctl --since` accepts ("2026-12-01 08:00", "yesterday").
    #[arg(long)]
    since: Option<String>,
    /// Only records of this integration (`unidentified` for calls that
    /// matched none).
    #[arg(long)]
    integration: Option<String>,
    /// Only records with this decision.
    #[arg(long, value_parser = ["allow", "deny", "would_deny"])]
    decision: Option<String>,
    /// Only records of this model.
    #[arg(long)]
    model: Option<String>,
    /// Print one JSON object per record instead of a table.
    #[arg(long)]
    json: bool,
    /// Read JSON lines written with `[audit] output = "file"` instead of
    /// journald.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Read the journal files in this directory (`journalctl -D`).
    #[arg(long)]
    directory: Option<PathBuf>,
}

pub fn audit(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let query = AuditQuery {
        since: args.since.clone(),
        integration: args.integration.clone(),
        decision: args.decision.clone(),
        model: args.model.clone(),
        file: args.file.clone(),
        journal_directory: args.directory.clone(),
    };
    let entries = reader::read(&query)?;
    let mut stdout = std::io::stdout().lock();
    let printed = if args.json {
        reader::print_json(&entries, &mut stdout)
    } else {
        reader::print_table(&entries, &mut stdout)
    };
    match printed {
        // A reader such as `head` that stops early is not an error.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error.into()),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

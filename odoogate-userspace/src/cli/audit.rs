//! `odoogate audit`: prints audit records.

use crate::audit::reader::{self, AuditQuery};
use crate::config::{self, AuditOutput};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
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
    /// The daemon's configuration file: read its `audit.file` when its
    /// `audit.output` is `file`, else journald.
    #[arg(long, short, conflicts_with = "file")]
    config: Option<PathBuf>,
    /// Read the journal files in this directory (`journalctl -D`).
    #[arg(long)]
    directory: Option<PathBuf>,
}

/// Exits 0 also when no record matches, after a note on stderr that names
/// where the command looked.
pub fn audit(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => file_of_config(path)?,
        None => args.file.clone(),
    };
    let query = AuditQuery {
        since: args.since.clone(),
        integration: args.integration.clone(),
        decision: args.decision.clone(),
        model: args.model.clone(),
        file,
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
        Ok(()) => {
            if entries.is_empty() {
                eprintln!("{}", empty_note(&query, args.config.as_deref()));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Returns `audit.file` of the configuration at `path` when its
/// `audit.output` is `file`, else `None` for journald.
fn file_of_config(path: &Path) -> anyhow::Result<Option<PathBuf>> {
    let config = config::load(path)
        .with_context(|| format!("failed to find the audit records (pass --file PATH, or fix {})", path.display()))?;
    Ok((config.audit.output == AuditOutput::File).then_some(config.audit.file))
}

/// Returns the note naming where `odoogate audit` looked when no record
/// matched, and how to read records written elsewhere.
fn empty_note(query: &AuditQuery, config: Option<&Path>) -> String {
    let filtered = query.since.is_some() || query.integration.is_some() || query.decision.is_some() || query.model.is_some();
    let found = if filtered { "no audit record matched the filters" } else { "no audit records found" };
    if let Some(file) = &query.file {
        let origin = config.map(|config| format!(" (audit.file of {})", config.display())).unwrap_or_default();
        return format!("{found} in {}{origin}", file.display());
    }
    let journal = match &query.journal_directory {
        Some(directory) => format!("the journal files in {}", directory.display()),
        None => "the journal".to_owned(),
    };
    let mut note = format!("{found} in {journal} (SYSLOG_IDENTIFIER=odoogate)");
    if config.is_none() {
        note.push_str(
            "; if the daemon writes a file (audit.output = \"file\"), read it with --file PATH or --config FILE",
        );
    }
    if query.journal_directory.is_none() && !nix::unistd::geteuid().is_root() {
        note.push_str("; outside the systemd-journal group, journalctl shows only this user's own entries");
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_note_names_the_file() {
        let query = AuditQuery { file: Some("/var/log/odoogate/audit.jsonl".into()), ..Default::default() };
        let note = empty_note(&query, Some(Path::new("/etc/odoogate/odoogate.toml")));
        assert_eq!(note, "no audit records found in /var/log/odoogate/audit.jsonl (audit.file of /etc/odoogate/odoogate.toml)");
    }

    #[test]
    fn empty_note_for_journal_suggests_a_file() {
        let query = AuditQuery { since: Some("1h".into()), ..Default::default() };
        let note = empty_note(&query, None);
        assert!(note.starts_with("no audit record matched the filters in the journal"), "{note}");
        assert!(note.contains("--file PATH or --config FILE"), "{note}");
    }
}

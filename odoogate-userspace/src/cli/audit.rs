//! `odoogate audit`: prints audit records.

use crate::audit::journald::JournaldSink;
use crate::audit::reader::{self, AuditQuery, JOURNAL_DIRECTORIES};
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
    let config = match &args.config {
        Some(path) => Some(DaemonConfig::load(path)?),
        None => None,
    };
    let file = match &config {
        Some(config) => config.audit_file(),
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
    let read = reader::read(&query)?;
    if let Some(note) = skipped_lines_note(&query, read.skipped_lines) {
        eprintln!("{note}");
    }
    let entries = read.entries;
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
                let journal = match query.file {
                    Some(_) => JournalState::default(),
                    None => JournalState::probe(query.journal_directory.as_deref()),
                };
                eprintln!("{}", empty_note(&query, config.as_ref(), &journal));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Returns the note on the lines of an audit file that were skipped because
/// they are not audit records, or `None` when there were none.
pub(super) fn skipped_lines_note(query: &AuditQuery, skipped_lines: usize) -> Option<String> {
    let file = query.file.as_ref().filter(|_| skipped_lines > 0)?.display();
    Some(match skipped_lines {
        1 => format!("skipped 1 line of {file} that is not an audit record, such as a log line of the daemon"),
        count => format!("skipped {count} lines of {file} that are not audit records, such as the daemon's log lines"),
    })
}

/// The configuration that `--config` names: where its daemon writes audit
/// records.
struct DaemonConfig {
    path: PathBuf,
    output: AuditOutput,
    file: PathBuf,
}

impl DaemonConfig {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let config = config::load(path)
            .with_context(|| format!("failed to find the audit records (pass --file PATH, or fix {})", path.display()))?;
        Ok(Self { path: path.to_owned(), output: config.audit.output, file: config.audit.file })
    }

    /// Returns `audit.file` when `audit.output` is `file`, else `None` for
    /// journald.
    fn audit_file(&self) -> Option<PathBuf> {
        (self.output == AuditOutput::File).then(|| self.file.clone())
    }
}

/// The state of journald on this host, for the note printed when the
/// journal had no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct JournalState {
    /// journald's socket accepts a connection, as `audit.output = "auto"`
    /// checks at the daemon's start.
    journald_running: bool,
    /// The journal directories that journalctl read contain a journal file.
    has_journal_files: bool,
}

impl Default for JournalState {
    /// Returns the state of a host where journald runs and writes files.
    fn default() -> Self {
        Self { journald_running: true, has_journal_files: true }
    }
}

impl JournalState {
    /// Looks for journald and for the journal files in `directory`, or in
    /// the system's journal directories without one.
    fn probe(directory: Option<&Path>) -> Self {
        let has_journal_files = match directory {
            Some(directory) => reader::has_journal_files(directory),
            None => reader::JOURNAL_DIRECTORIES.iter().any(|directory| reader::has_journal_files(Path::new(directory))),
        };
        Self { journald_running: JournaldSink::available(), has_journal_files }
    }
}

/// Returns the note naming where `odoogate audit` looked when no record
/// matched, and how to read records written elsewhere.
fn empty_note(query: &AuditQuery, config: Option<&DaemonConfig>, journal: &JournalState) -> String {
    let filtered = query.since.is_some() || query.integration.is_some() || query.decision.is_some() || query.model.is_some();
    let found = if filtered { "no audit record matched the filters" } else { "no audit records found" };
    if let Some(file) = &query.file {
        let origin = config.map(|config| format!(" (audit.file of {})", config.path.display())).unwrap_or_default();
        return format!("{found} in {}{origin}", file.display());
    }

    let mut note = match (&query.journal_directory, journal.has_journal_files) {
        (Some(directory), false) => format!("{found}: {} contains no journal files", directory.display()),
        (Some(directory), true) => format!("{found} in the journal files in {} (SYSLOG_IDENTIFIER=odoogate)", directory.display()),
        (None, false) => format!("{found}: there are no journal files in {}", JOURNAL_DIRECTORIES.join(" or ")),
        (None, true) => format!("{found} in the journal (SYSLOG_IDENTIFIER=odoogate)"),
    };
    let without_journald = query.journal_directory.is_none() && !journal.journald_running;
    if without_journald {
        note.push_str(", and journald is not running on this host");
        note.push_str(&without_journald_hint(config));
    } else if config.is_none() {
        note.push_str(
            "; if the daemon writes a file (audit.output = \"file\"), read it with --file PATH or --config FILE",
        );
    }
    if query.journal_directory.is_none() && journal.has_journal_files && !nix::unistd::geteuid().is_root() {
        note.push_str("; outside the systemd-journal group, journalctl shows only this user's own entries");
    }
    note
}

/// Returns where a daemon without journald wrote its audit records and how
/// to read them, for the configuration `--config` named, if any.
fn without_journald_hint(config: Option<&DaemonConfig>) -> String {
    const READ_STDERR: &str = "writes its audit records to its stderr as JSON lines, between its log lines: \
                               read the file its stderr goes to with `odoogate audit --file FILE`";
    match config {
        Some(config) if config.output == AuditOutput::Journald => format!(
            "; with audit.output = \"journald\" in {}, the daemon fails to start on this host",
            config.path.display()
        ),
        Some(config) => format!(
            "; with audit.output = \"{}\" in {} and no journald, the daemon {READ_STDERR}",
            config.output.as_str(),
            config.path.display()
        ),
        None => format!(
            "; without journald, a daemon with audit.output = \"auto\" (the default) or \"stderr\" {READ_STDERR} \
             (with audit.output = \"file\", pass --config FILE)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "/etc/odoogate/odoogate.toml";

    fn daemon_config(output: AuditOutput) -> DaemonConfig {
        DaemonConfig { path: CONFIG.into(), output, file: "/var/log/odoogate/audit.jsonl".into() }
    }

    const NO_JOURNALD: JournalState = JournalState { journald_running: false, has_journal_files: false };

    #[test]
    fn empty_note_names_the_file() {
        let query = AuditQuery { file: Some("/var/log/odoogate/audit.jsonl".into()), ..Default::default() };
        let note = empty_note(&query, Some(&daemon_config(AuditOutput::File)), &JournalState::default());
        assert_eq!(note, "no audit records found in /var/log/odoogate/audit.jsonl (audit.file of /etc/odoogate/odoogate.toml)");
    }

    #[test]
    fn empty_note_for_journal_suggests_a_file() {
        let query = AuditQuery { since: Some("1h".into()), ..Default::default() };
        let note = empty_note(&query, None, &JournalState::default());
        assert!(note.starts_with("no audit record matched the filters in the journal"), "{note}");
        assert!(note.contains("--file PATH or --config FILE"), "{note}");
        assert!(!note.contains("journald is not running"), "{note}");
    }

    #[test]
    fn empty_note_without_journald_points_to_stderr() {
        let note = empty_note(&AuditQuery::default(), None, &NO_JOURNALD);
        assert!(
            note.starts_with(
                "no audit records found: there are no journal files in /var/log/journal or /run/log/journal, \
                 and journald is not running on this host; "
            ),
            "{note}"
        );
        assert!(note.contains("audit.output = \"auto\" (the default) or \"stderr\" writes its audit records to its stderr"), "{note}");
        assert!(note.contains("`odoogate audit --file FILE`"), "{note}");
        assert!(note.ends_with("(with audit.output = \"file\", pass --config FILE)"), "{note}");
        assert!(!note.contains("systemd-journal group"), "{note}");
    }

    #[test]
    fn empty_note_for_auto_config_without_journald() {
        let note = empty_note(&AuditQuery::default(), Some(&daemon_config(AuditOutput::Auto)), &NO_JOURNALD);
        let expected = format!(
            "with audit.output = \"auto\" in {CONFIG} and no journald, the daemon writes its audit records to its stderr \
             as JSON lines, between its log lines: read the file its stderr goes to with `odoogate audit --file FILE`"
        );
        assert!(note.contains(&expected), "{note}");
        assert!(!note.contains("(the default)"), "{note}");

        let note = empty_note(&AuditQuery::default(), Some(&daemon_config(AuditOutput::Stderr)), &NO_JOURNALD);
        assert!(note.contains(&format!("with audit.output = \"stderr\" in {CONFIG} and no journald")), "{note}");
    }

    #[test]
    fn empty_note_for_journald_config_without_journald() {
        let note = empty_note(&AuditQuery::default(), Some(&daemon_config(AuditOutput::Journald)), &NO_JOURNALD);
        assert!(note.ends_with(&format!("with audit.output = \"journald\" in {CONFIG}, the daemon fails to start on this host")), "{note}");
    }

    #[test]
    fn empty_note_journald_running_without_files() {
        let journal = JournalState { journald_running: true, has_journal_files: false };
        let note = empty_note(&AuditQuery::default(), None, &journal);
        assert!(note.starts_with("no audit records found: there are no journal files in /var/log/journal or /run/log/journal;"), "{note}");
        assert!(!note.contains("journald is not running"), "{note}");
    }

    #[test]
    fn empty_note_for_empty_journal_directory() {
        let query = AuditQuery { journal_directory: Some("/srv/journal".into()), ..Default::default() };
        let note = empty_note(&query, None, &NO_JOURNALD);
        assert!(note.starts_with("no audit records found: /srv/journal contains no journal files;"), "{note}");
        assert!(!note.contains("journald is not running"), "a journal directory needs no journald: {note}");

        let journal = JournalState { journald_running: false, has_journal_files: true };
        let note = empty_note(&query, None, &journal);
        assert!(note.starts_with("no audit records found in the journal files in /srv/journal (SYSLOG_IDENTIFIER=odoogate)"), "{note}");
    }

    #[test]
    fn skipped_lines_note_counts_lines() {
        let query = AuditQuery { file: Some("daemon.err".into()), ..Default::default() };
        assert_eq!(skipped_lines_note(&query, 0), None);
        assert_eq!(
            skipped_lines_note(&query, 1).as_deref(),
            Some("skipped 1 line of daemon.err that is not an audit record, such as a log line of the daemon")
        );
        assert_eq!(
            skipped_lines_note(&query, 12).as_deref(),
            Some("skipped 12 lines of daemon.err that are not audit records, such as the daemon's log lines")
        );
        assert_eq!(skipped_lines_note(&AuditQuery::default(), 3), None, "the journal has no skipped lines");
    }
}

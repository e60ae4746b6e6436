//! The daemon's own log messages (not audit records).
//!
//! `--log-format` selects text or JSON lines on stderr. When stderr is
//! connected to journald (systemd sets `$JOURNAL_STREAM` to its device and
//! inode), messages go to journald natively instead, with their fields as
//! journal fields (`ERROR=`, `SIGNAL=`, without a prefix), so
//! `journalctl -u odoogate` shows them with their priority.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the daemon's own messages go, and in which form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    StderrText,
    StderrJson,
    Journald,
}

/// Sets up tracing and returns where messages go. `RUST_LOG` overrides the
/// default level (info).
pub fn init(format: LogFormat) -> LogTarget {
    if stderr_is_journal() && init_journald() {
        return LogTarget::Journald;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal, never in a log file or a pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => {
            let _ = builder.try_init();
            LogTarget::StderrText
        }
        LogFormat::Json => {
            let _ = builder.json().try_init();
            LogTarget::StderrJson
        }
    }
}

/// Reports the error that ends the command: a plain `odoogate: ...` line
/// for text on stderr, else an ERROR event. Under journald that event is
/// one entry at priority 3 (err), even when the message spans several lines
/// (the startup checks list one failure a line), where the stderr stream
/// would store one entry per line at its default priority 6 (info).
pub fn report_fatal(target: LogTarget, error: &anyhow::Error) {
    let message = chain_text(error);
    match target {
        LogTarget::StderrText => eprintln!("odoogate: {message}"),
        LogTarget::StderrJson | LogTarget::Journald => tracing::error!("{message}"),
    }
}

/// Joins the messages of `error` and its causes with `: `, as `{error:#}`
/// does, but leaves out a cause whose message is already in the text. Many
/// errors here put their source in their own message and also return it
/// from `source()` (thiserror's `{source}` with a `source` field), which
/// `{error:#}` would print twice.
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// Sends messages to journald. Returns false when the journald socket
/// cannot be opened, so the caller falls back to stderr.
fn init_journald() -> bool {
    let Ok(layer) = tracing_journald::layer() else { return false };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(layer.with_field_prefix(None))
        .try_init()
        .is_ok()
}

/// Returns whether stderr is the stream `$JOURNAL_STREAM` names, as
/// `sd_journal_stream_fd(3)` describes: the variable alone is not enough,
/// because a child whose stderr was redirected inherits it.
fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((device, inode)) = value.split_once(':') else { return false };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else { return false };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(stat) => stat.st_dev == device && stat.st_ino == inode,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn chain_text_prints_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = crate::config::ConfigError::Read { path: "nope.toml".into(), source: io };
        let error = anyhow::Error::from(error);
        assert_eq!(chain_text(&error), "failed to read the configuration nope.toml: entity not found");

        let error = error.context("failed to find the grant file");
        assert_eq!(chain_text(&error), "failed to find the grant file: failed to read the configuration nope.toml: entity not found");
    }

    #[test]
    fn chain_text_keeps_causes_missing_from_the_message() {
        let error = Err::<(), _>(std::io::Error::from(std::io::ErrorKind::AddrInUse)).context("failed to listen").unwrap_err();
        assert_eq!(chain_text(&error), "failed to listen: address in use");
    }
}

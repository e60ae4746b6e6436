//! Finds the running daemon's control socket and explains a failure to
//! reach it, for `odoogate status`, `odoogate reload` and `odoogate grant`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{self, ConfigError};
use crate::control::{self, ControlError, ControlRequest};

/// The options that point at the running daemon.
#[derive(clap::Args)]
pub struct DaemonArgs {
    /// The control socket of the running daemon [default: `control.socket`
    /// of the configuration file, else /run/odoogate/control.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The daemon's configuration file, read for `control.socket`
    /// [default: /etc/odoogate/odoogate.toml].
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// A control socket path and where it came from.
pub(super) struct Target {
    pub socket: PathBuf,
    origin: Origin,
}

enum Origin {
    /// `--socket`.
    Option,
    /// `control.socket` of this configuration, or its default when the
    /// file leaves it out.
    Config(PathBuf),
    /// The default socket, because the default configuration does not exist.
    Default,
    /// The default socket, because the configuration failed to load.
    ConfigFailed(ConfigError),
}

impl Target {
    /// Returns `socket` when given, else `control.socket` of `config` (by
    /// default /etc/odoogate/odoogate.toml). A configuration that fails to
    /// load gives the default socket, because the daemon may still listen
    /// there: the packaged unit reloads a broken file this way, and the
    /// daemon then reports the file's error.
    pub fn locate(socket: Option<&Path>, config: Option<&Path>) -> Self {
        if let Some(socket) = socket {
            return Self { socket: socket.to_owned(), origin: Origin::Option };
        }
        let path = config.unwrap_or(Path::new(super::DEFAULT_CONFIG));
        let default_socket = PathBuf::from(control::DEFAULT_SOCKET);
        match config::load(path) {
            Ok(loaded) => Self { socket: loaded.control.socket, origin: Origin::Config(path.to_owned()) },
            Err(ConfigError::Read { source, .. }) if config.is_none() && source.kind() == std::io::ErrorKind::NotFound => {
                Self { socket: default_socket, origin: Origin::Default }
            }
            Err(error) => Self { socket: default_socket, origin: Origin::ConfigFailed(error) },
        }
    }

    /// Returns the configuration error that made this the default socket.
    pub fn config_error(&self) -> Option<&ConfigError> {
        match &self.origin {
            Origin::ConfigFailed(error) => Some(error),
            _ => None,
        }
    }

    /// Adds to `error` where the socket path came from and how to reach a
    /// daemon that listens elsewhere.
    pub fn explain(&self, error: ControlError, request: ControlRequest) -> anyhow::Error {
        if !matches!(error, ControlError::NotRunning { .. } | ControlError::NoListener { .. }) {
            // Any other failure on the default socket still leaves the
            // configuration's error unread by the user, so both are shown.
            return match &self.origin {
                Origin::ConfigFailed(config_error) => anyhow::anyhow!(
                    "failed to read control.socket from the configuration: {config_error}. The default socket was tried instead: {error}"
                ),
                _ => error.into(),
            };
        }
        let elsewhere = "pass the running daemon's configuration with --config FILE or its socket with --socket PATH";
        match &self.origin {
            Origin::Option => anyhow::anyhow!("{error}. Start the daemon with `odoogate run`, or check the --socket path"),
            Origin::Config(path) => anyhow::anyhow!(
                "{error}. The path is control.socket of {path}: start the daemon with `odoogate run --config {path}`, or {elsewhere}",
                path = path.display()
            ),
            Origin::Default => anyhow::anyhow!(
                "{error}. The path is the default, because {} does not exist: start the daemon with `odoogate run --config FILE`, or {elsewhere}",
                super::DEFAULT_CONFIG
            ),
            Origin::ConfigFailed(config_error) => {
                let next = match request {
                    ControlRequest::Reload => {
                        "To reload anyway, pass the daemon's socket with --socket PATH: the daemon then reads its own configuration file and reports any error in it"
                    }
                    ControlRequest::Status | ControlRequest::GrantsChanged | ControlRequest::TokensChanged => {
                        "Pass --socket PATH to reach the daemon anyway"
                    }
                };
                anyhow::anyhow!(
                    "failed to read control.socket from the configuration: {config_error}. The default socket was tried instead: {error}. {next}"
                )
            }
        }
    }
}

/// Sends `request` to the daemon that `args` point at and returns its
/// response. When a configuration failed to load but the daemon on the
/// default socket responded, a warning names the file, since that daemon
/// may run with another one.
pub(super) fn send(args: &DaemonArgs, request: ControlRequest) -> anyhow::Result<Value> {
    let target = Target::locate(args.socket.as_deref(), args.config.as_deref());
    let response = control::send(&target.socket, request).map_err(|error| target.explain(error, request))?;
    if let Some(error) = target.config_error()
        && response["ok"] == true
    {
        eprintln!("warning: {error}; the daemon on the default control socket {} responded instead", target.socket.display());
    }
    Ok(response)
}

/// The outcome of a change notice sent with [`notify`].
pub(super) enum Notice {
    /// The daemon applied the change.
    Applied,
    /// No daemon listens, so the change applies when one starts.
    NoDaemon,
    /// The daemon responded that it could not apply the change.
    Refused(String),
    /// The daemon could not be reached for another reason.
    Failed(ControlError),
}

/// Sends `request`, a notice that a file the daemon reads changed, to the
/// daemon of the configuration `config`. When the configuration does not
/// load, the daemon on the default socket gets it.
pub(super) fn notify(config: &Path, request: ControlRequest) -> Notice {
    let target = Target::locate(None, Some(config));
    match control::send(&target.socket, request) {
        Ok(response) if response["ok"] == true => Notice::Applied,
        Ok(response) => Notice::Refused(response["error"].as_str().unwrap_or("no reason given").to_owned()),
        Err(ControlError::NotRunning { .. } | ControlError::NoListener { .. }) => Notice::NoDaemon,
        Err(error) => Notice::Failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> crate::scratch::ScratchDir {
        crate::scratch::ScratchDir::new(&format!("control-socket-{name}"))
    }

    #[test]
    fn locate_prefers_socket_option() {
        let target = Target::locate(Some(Path::new("/tmp/x.sock")), Some(Path::new("/nonexistent.toml")));
        assert_eq!(target.socket, PathBuf::from("/tmp/x.sock"));
        assert!(target.config_error().is_none());
    }

    #[test]
    fn unreadable_config_names_its_error() {
        let dir = scratch("typo");
        let config = dir.join("odoogate.toml");
        std::fs::write(&config, "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n[policy]\nmode = \"observe\"\nunidentifed = \"deny\"\n")
            .unwrap();
        let target = Target::locate(None, Some(&config));
        assert_eq!(target.socket, PathBuf::from(control::DEFAULT_SOCKET));
        assert!(target.config_error().is_some());

        let missing = ControlError::NotRunning { path: target.socket.clone() };
        let message = target.explain(missing, ControlRequest::Reload).to_string();
        assert!(message.contains("unknown field `unidentifed`"), "{message}");
        assert!(message.contains("--socket PATH"), "{message}");
        assert!(message.contains("To reload anyway"), "{message}");
    }

    /// A default socket this user may not open is another failure than
    /// a missing daemon, and the configuration's error must still show.
    #[test]
    fn other_socket_error_keeps_config_error() {
        let dir = scratch("typo-denied");
        let config = dir.join("odoogate.toml");
        std::fs::write(&config, "[odoo]\nports = [8069]\n[policy]\n").unwrap();
        let target = Target::locate(None, Some(&config));
        let denied = ControlError::Connect { path: target.socket.clone(), source: std::io::ErrorKind::PermissionDenied.into() };

        let message = target.explain(denied, ControlRequest::Status).to_string();

        assert!(message.contains("failed to read control.socket from the configuration"), "{message}");
        assert!(message.contains("odoogate.toml"), "{message}");
    }

    #[test]
    fn missing_config_option_is_an_error() {
        let dir = scratch("missing");
        let target = Target::locate(None, Some(&dir.join("nope.toml")));
        let missing = ControlError::NotRunning { path: target.socket.clone() };
        let message = target.explain(missing, ControlRequest::Status).to_string();
        assert!(message.contains("failed to read the configuration"), "{message}");
        assert!(message.contains("nope.toml"), "{message}");
        assert!(message.contains("--socket PATH"), "{message}");
    }

    #[test]
    fn socket_from_config_suggests_other_options() {
        let dir = scratch("config");
        let config = dir.join("odoogate.toml");
        let socket = dir.join("control.sock");
        let text = format!(
            "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n[policy]\nmode = \"observe\"\nunidentified = \"deny\"\n[control]\nsocket = \"{}\"\n",
            socket.display()
        );
        std::fs::write(&config, text).unwrap();
        let target = Target::locate(None, Some(&config));
        assert_eq!(target.socket, socket);

        let missing = ControlError::NotRunning { path: socket };
        let message = target.explain(missing, ControlRequest::Status).to_string();
        assert!(message.contains("--config FILE"), "{message}");
        assert!(message.contains("--socket PATH"), "{message}");
    }
}

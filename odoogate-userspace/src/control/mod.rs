//! The control socket: a unix stream socket on which `odoogate status`,
//! `odoogate reload` and `odoogate grant` talk to the running daemon.
//!
//! The protocol is one JSON object per line each way. A request is
//! `{"command": "status"}`, `{"command": "reload"}` or
//! `{"command": "grants_changed"}`; the response is an
//! object with `"ok": true` and the command's fields, or `"ok": false` and
//! an `"error"` message. The socket file is created with mode 0600 at start
//! and removed when the [`ControlServer`] is dropped.

mod handle;

pub use handle::{ConfigHandle, ReloadReport, RestartSetting};

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/odoogate/control.sock";

/// Maximum bytes of a request or response line, far above a status
/// response with a few hundred integrations.
pub const MAX_LINE_BYTES: u64 = 1024 * 1024;

/// How long either side waits for the other's line.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A request on the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    Status,
    Reload,
    /// The grant file changed: reread it before the next call.
    GrantsChanged,
    /// The token store changed: load it before the next call.
    TokensChanged,
}

/// The daemon's side: returns the response object for a request.
pub type Handler = Arc<dyn Fn(ControlRequest) -> Value + Send + Sync>;

/// An error talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no odoogate daemon listens on {}: the socket file does not exist", path.display())]
    NotRunning { path: PathBuf },
    /// The socket file exists but nothing accepts on it, as after a daemon
    /// was killed with SIGKILL. The next `odoogate run` replaces the file.
    #[error("no odoogate daemon answers on the control socket {} (a stale socket file, left by a daemon that did not stop cleanly)", path.display())]
    NoListener { path: PathBuf },
    #[error("failed to connect to the control socket {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("failed to talk to the daemon on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid response from the daemon on {}: {reason}", path.display())]
    InvalidResponse { path: PathBuf, reason: String },
}

/// The listening control socket and its accept thread.
pub struct ControlServer {
    path: PathBuf,
    /// The socket file's inode, so that stopping removes this daemon's
    /// file and never one another daemon bound at the same path since.
    inode: u64,
    /// A handle on the listening socket, shut down to wake the accept.
    waker: UnixListener,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

// === impl ControlServer ===

impl ControlServer {
    /// Binds the socket at `path` (its directory is created, a stale socket
    /// file replaced), restricts it to the owner, and serves `handler` on a
    /// thread.
    pub fn start(path: &Path, handler: Handler) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let inode = std::fs::symlink_metadata(path)?.ino();
        let waker = listener.try_clone()?;

        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("odoogate-control".into())
                .spawn(move || accept_loop(&listener, &handler, &stopping))?
        };
        Ok(Self { path: path.to_owned(), inode, waker, stopping, thread: Some(thread) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocked accept so the thread reads the flag: a listening
        // socket that is shut down fails accept() with EINVAL. Connecting to
        // the path would not do, since the file may be gone or another
        // daemon's by now.
        if let Err(error) = nix::sys::socket::shutdown(self.waker.as_raw_fd(), nix::sys::socket::Shutdown::Both) {
            tracing::warn!(%error, "Failed to shut down the control socket; waking it by connecting");
            let _ = UnixStream::connect(&self.path);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|metadata| metadata.ino() == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes a socket file that no daemon listens on any more. A path that
/// exists and is not a socket is left alone and reported.
fn remove_stale(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "another daemon serves this control socket"));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, "the path exists and is not a socket")),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn accept_loop(listener: &UnixListener, handler: &Handler, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            // Requests are rare and short, so one at a time is enough.
            Ok(stream) => {
                if let Err(error) = serve(stream, handler) {
                    tracing::debug!(%error, "Control connection ended early");
                }
            }
            Err(error) => tracing::warn!(%error, "Failed to accept a control connection"),
        }
    }
}

fn serve(stream: UnixStream, handler: &Handler) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(MAX_LINE_BYTES));
    let mut writer = stream;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        let response = match serde_json::from_str::<ControlRequest>(line.trim()) {
            Ok(request) => handler(request),
            Err(error) => json!({ "ok": false, "error": format!("invalid request: {error}") }),
        };
        writeln!(writer, "{response}")?;
        line.clear();
    }
    Ok(())
}

/// Sends `request` to the daemon listening on `path` and returns its
/// response object.
pub fn send(path: &Path, request: ControlRequest) -> Result<Value, ControlError> {
    let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ControlError::NotRunning { path: path.to_owned() },
        io::ErrorKind::ConnectionRefused => ControlError::NoListener { path: path.to_owned() },
        _ => ControlError::Connect { path: path.to_owned(), source },
    })?;
    let io_error = |source| ControlError::Io { path: path.to_owned(), source };
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io_error)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io_error)?;

    let mut line = serde_json::to_string(&request).expect("a unit enum serializes");
    line.push('\n');
    // std's UnixStream writes with MSG_NOSIGNAL, so a daemon that closed
    // the connection gives EPIPE here, not a SIGPIPE that would end the
    // command without a message (commands restore SIGPIPE's default).
    (&stream).write_all(line.as_bytes()).map_err(io_error)?;

    let mut response = String::new();
    BufReader::new((&stream).take(MAX_LINE_BYTES)).read_line(&mut response).map_err(io_error)?;
    let invalid = |reason: String| ControlError::InvalidResponse { path: path.to_owned(), reason };
    let value: Value = serde_json::from_str(response.trim()).map_err(|error| invalid(error.to_string()))?;
    if !value.is_object() {
        return Err(invalid("not a JSON object".to_owned()));
    }
    Ok(value)
}

/// Reloads `handle` for a `reload` request: logs the outcome and returns
/// the response object.
pub fn reload_response(handle: &ConfigHandle) -> Value {
    match handle.reload() {
        Ok(report) => {
            let needs_restart: Vec<&str> = report.needs_restart.iter().map(|setting| setting.as_str()).collect();
            if needs_restart.is_empty() {
                tracing::info!(config = %handle.path().display(), "Reloaded the configuration");
            } else {
                tracing::warn!(config = %handle.path().display(), ?needs_restart, "Reloaded the configuration; some changes need a restart");
            }
            json!({ "ok": true, "needs_restart": needs_restart })
        }
        Err(error) => {
            tracing::error!(config = %handle.path().display(), %error, "Failed to reload the configuration; the old one stays in force");
            json!({ "ok": false, "error": error.to_string() })
        }
    }
}

#[cfg(test)]
mod tests;

//! The systemd notify protocol (`sd_notify(3)`), for `Type=notify` units.
//!
//! The service manager passes a unix datagram socket in `$NOTIFY_SOCKET`
//! (a path, or an abstract name written with a leading `@`) and, when
//! `WatchdogSec=` is set, the watchdog interval in `$WATCHDOG_USEC` (with
//! `$WATCHDOG_PID` naming the process it applies to). Each notification is
//! one datagram of newline-separated `KEY=VALUE` assignments. Without
//! `$NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same way
//! outside systemd.

use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variable that names the notify socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";
/// Environment variable with the watchdog interval in microseconds.
pub const WATCHDOG_USEC_ENV: &str = "WATCHDOG_USEC";
/// Environment variable that names the process the watchdog applies to.
pub const WATCHDOG_PID_ENV: &str = "WATCHDOG_PID";

/// An error reading the notify environment or sending a notification.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET is not an absolute path or an @abstract name: {0:?}")]
    InvalidSocket(String),
    #[error("WATCHDOG_USEC is not a positive integer: {0:?}")]
    InvalidWatchdog(String),
    #[error("failed to create the notify socket: {0}")]
    Socket(#[source] io::Error),
    #[error("failed to send {state:?} to the service manager: {source}")]
    Send { state: String, source: io::Error },
}

/// The address of the notify socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyTarget {
    Path(PathBuf),
    /// An abstract socket name, without the leading `@` (or NUL byte).
    Abstract(Vec<u8>),
}

impl NotifyTarget {
    /// Parses a `$NOTIFY_SOCKET` value.
    pub fn parse(value: &str) -> Result<Self, NotifyError> {
        if let Some(name) = value.strip_prefix('@') {
            return Ok(Self::Abstract(name.as_bytes().to_vec()));
        }
        if value.starts_with('/') {
            return Ok(Self::Path(PathBuf::from(value)));
        }
        Err(NotifyError::InvalidSocket(value.to_owned()))
    }

    fn address(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Path(path) => SocketAddr::from_pathname(path),
            Self::Abstract(name) => SocketAddr::from_abstract_name(name),
        }
    }
}

/// A connection to the service manager, or nothing outside systemd.
#[derive(Debug)]
pub struct Notifier {
    inner: Option<Connected>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Connected {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    ///
    /// The watchdog is on only when `$WATCHDOG_PID` is unset or names this
    /// process, as `sd_watchdog_enabled(3)` does, so a child that inherited
    /// the variables does not ping for its parent.
    pub fn from_env() -> Result<Self, NotifyError> {
        let target = match std::env::var(NOTIFY_SOCKET_ENV) {
            Ok(value) if !value.is_empty() => Some(NotifyTarget::parse(&value)?),
            _ => None,
        };
        let watchdog_pid_matches = match std::env::var(WATCHDOG_PID_ENV) {
            Ok(pid) => pid.trim() == std::process::id().to_string(),
            Err(_) => true,
        };
        let watchdog = match std::env::var(WATCHDOG_USEC_ENV) {
            Ok(value) if watchdog_pid_matches => Some(parse_watchdog_usec(&value)?),
            _ => None,
        };
        Self::new(target, watchdog)
    }

    /// Builds a notifier for `target` (none: every call is a no-op) with
    /// the watchdog interval `watchdog`.
    pub fn new(target: Option<NotifyTarget>, watchdog: Option<Duration>) -> Result<Self, NotifyError> {
        let inner = match target {
            Some(target) => {
                let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
                let address = target.address().map_err(NotifyError::Socket)?;
                Some(Connected { socket, address })
            }
            None => None,
        };
        Ok(Self { inner, watchdog })
    }

    /// Returns whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.inner.is_some()
    }

    /// Returns how often to send `WATCHDOG=1`: half of `WatchdogSec=`, as
    /// `sd_watchdog_enabled(3)` recommends. `None` without a watchdog or
    /// without a notify socket.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.inner.as_ref()?;
        self.watchdog.map(|interval| interval / 2)
    }

    /// Sends `READY=1` with a status line: startup is complete.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// Sends `RELOADING=1` with `MONOTONIC_USEC`, which systemd 253 and
    /// later require to accept it; `ready` ends the reload.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    /// Sends `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1")
    }

    /// Sends `WATCHDOG=1`: the service is alive.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1")
    }

    /// Sends one datagram of assignments, or nothing outside systemd.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        let Some(connected) = &self.inner else { return Ok(()) };
        connected
            .socket
            .send_to_addr(state.as_bytes(), &connected.address)
            .map(drop)
            .map_err(|source| NotifyError::Send { state: state.to_owned(), source })
    }
}

/// Sends `WATCHDOG=1` from a loop that calls [`Heartbeat::beat`] at least
/// once per watchdog interval, so a stuck loop lets systemd restart the
/// service. Does nothing without a watchdog.
#[derive(Debug)]
pub struct Heartbeat {
    notifier: Arc<Notifier>,
    timer: Option<WatchdogTimer>,
}

impl Heartbeat {
    pub fn new(notifier: Arc<Notifier>) -> Self {
        let timer = notifier.watchdog_interval().map(WatchdogTimer::new);
        Self { notifier, timer }
    }

    /// Sends `WATCHDOG=1` when the interval has passed. A failed send is
    /// logged, because the daemon keeps working without the watchdog.
    pub fn beat(&mut self) {
        let Some(timer) = &mut self.timer else { return };
        if timer.due(Instant::now()) {
            log_failure(self.notifier.watchdog());
        }
    }
}

/// Logs a failed notification as a warning: the daemon goes on, and systemd
/// reports the missing state (a start timeout or a watchdog restart).
pub fn log_failure(result: Result<(), NotifyError>) {
    if let Err(error) = result {
        tracing::warn!(%error, "failed to notify systemd");
    }
}

/// Schedules `WATCHDOG=1` from a loop that wakes up at least every few
/// seconds: the loop's own progress is then what keeps the service alive.
#[derive(Debug)]
pub struct WatchdogTimer {
    interval: Duration,
    last: Option<Instant>,
}

impl WatchdogTimer {
    /// A timer that is due every `interval` and due at once the first time.
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: None }
    }

    /// Returns whether a ping is due at `now`, and if so, starts a new
    /// interval.
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self.last.is_none_or(|last| now.duration_since(last) >= self.interval);
        if due {
            self.last = Some(now);
        }
        due
    }
}

fn parse_watchdog_usec(value: &str) -> Result<Duration, NotifyError> {
    match value.trim().parse::<u64>() {
        Ok(usec) if usec > 0 => Ok(Duration::from_micros(usec)),
        _ => Err(NotifyError::InvalidWatchdog(value.to_owned())),
    }
}

/// Keeps a status on one line, since a newline would start a new assignment.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(now) => (now.tv_sec() as u64).saturating_mul(1_000_000) + now.tv_nsec() as u64 / 1_000,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound_pair() -> (tempdir::Dir, UnixDatagram, Notifier) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(Some(NotifyTarget::Path(path)), Some(Duration::from_secs(10))).unwrap();
        (dir, receiver, notifier)
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 512];
        let len = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..len].to_vec()).unwrap()
    }

    #[test]
    fn target_parses_path_and_abstract() {
        assert_eq!(NotifyTarget::parse("/run/systemd/notify").unwrap(), NotifyTarget::Path("/run/systemd/notify".into()));
        assert_eq!(NotifyTarget::parse("@sd/notify").unwrap(), NotifyTarget::Abstract(b"sd/notify".to_vec()));
        assert!(matches!(NotifyTarget::parse("relative"), Err(NotifyError::InvalidSocket(_))));
    }

    #[test]
    fn watchdog_usec_rejects_zero_and_text() {
        assert_eq!(parse_watchdog_usec("30000000").unwrap(), Duration::from_secs(30));
        assert!(parse_watchdog_usec("0").is_err());
        assert!(parse_watchdog_usec("ten").is_err());
    }

    #[test]
    fn states_reach_path_socket() {
        let (_dir, receiver, notifier) = bound_pair();
        notifier.ready("observing 1 port\non lo").unwrap();
        assert_eq!(receive(&receiver), "READY=1\nSTATUS=observing 1 port on lo");
        notifier.watchdog().unwrap();
        assert_eq!(receive(&receiver), "WATCHDOG=1");
        notifier.reloading().unwrap();
        let reloading = receive(&receiver);
        assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
        notifier.stopping().unwrap();
        assert_eq!(receive(&receiver), "STOPPING=1");
    }

    #[test]
    fn states_reach_abstract_socket() {
        let name = format!("odoogate-notify-test-{}", std::process::id());
        let receiver = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let target = NotifyTarget::parse(&format!("@{name}")).unwrap();
        let notifier = Notifier::new(Some(target), None).unwrap();
        notifier.ready("up").unwrap();
        assert_eq!(receive(&receiver), "READY=1\nSTATUS=up");
    }

    #[test]
    fn watchdog_interval_is_half() {
        let (_dir, _receiver, notifier) = bound_pair();
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(5)));
        let outside = Notifier::new(None, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(outside.watchdog_interval(), None);
        assert!(outside.ready("up").is_ok());
    }

    #[test]
    fn send_fails_without_listener() {
        let dir = tempdir::Dir::new();
        let notifier = Notifier::new(Some(NotifyTarget::Path(dir.path().join("absent.sock"))), None).unwrap();
        assert!(matches!(notifier.ready("up"), Err(NotifyError::Send { .. })));
    }

    #[test]
    fn watchdog_timer_spaces_pings() {
        let mut timer = WatchdogTimer::new(Duration::from_secs(5));
        let start = Instant::now();
        assert!(timer.due(start));
        assert!(!timer.due(start + Duration::from_secs(4)));
        assert!(timer.due(start + Duration::from_secs(5)));
        assert!(!timer.due(start + Duration::from_secs(9)));
    }

    /// A private temporary directory removed on drop.
    mod tempdir {
        use std::path::{Path, PathBuf};

        pub struct Dir(PathBuf);

        impl Dir {
            pub fn new() -> Self {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).unwrap();
                let path = std::env::temp_dir().join(format!("odoogate-notify-{}", hex::encode(bytes)));
                std::fs::create_dir(&path).unwrap();
                Self(path)
            }

            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

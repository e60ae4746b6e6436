//! Writes audit records to journald with its native protocol, without
//! libsystemd.
//!
//! Each record is one datagram on `/run/systemd/journal/socket` that contains
//! `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER=odoogate` and the record's
//! `ODOOGATE_*` fields. A field is `NAME=value\n`, or, when the value holds a
//! newline, `NAME\n`, the value's length as a little-endian u64, the value
//! and `\n`. A datagram too large for the socket is written to a sealed memfd
//! whose descriptor is passed with `SCM_RIGHTS` instead, as systemd's
//! `sd_journal_sendv` does. The protocol is described in systemd's
//! "Native Journal Protocol" document (systemd.io/JOURNAL_NATIVE_PROTOCOL).

use super::ratelimit::FailureReportThrottle;
use super::record::FieldValue;
use super::{AuditRecord, AuditSink, Encoder};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The socket journald reads native protocol datagrams from.
pub const SOCKET_PATH: &str = "/run/systemd/journal/socket";

/// The `SYSLOG_IDENTIFIER` of every audit record.
pub const SYSLOG_IDENTIFIER: &str = "odoogate";

/// Maximum bytes of one field value. Longer values are cut at a character
/// boundary and end with [`TRUNCATION_MARK`]. Audit fields are short by
/// design, so this only bounds a decoder that passes on a huge value.
pub const MAX_FIELD_VALUE_BYTES: usize = 1 << 20;

/// The suffix of a value cut to [`MAX_FIELD_VALUE_BYTES`].
pub const TRUNCATION_MARK: &str = "…(truncated)";

/// How long one send may block on a journald that does not read its socket.
/// A record that cannot be sent in this time counts as a failed write.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// An error while writing to journald. Messages name the socket and the
/// failing step, never a field value.
#[derive(Debug, thiserror::Error)]
pub enum JournaldError {
    #[error("failed to connect to journald at {}: {source}; is systemd-journald running?", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("failed to send an audit record to journald at {}: {source}", path.display())]
    Send { path: PathBuf, source: io::Error },
    #[error("failed to create a memfd for a large audit record: {0}")]
    MemfdCreate(nix::Error),
    #[error("failed to write a large audit record to its memfd: {0}")]
    MemfdWrite(io::Error),
    #[error("failed to seal the memfd of a large audit record: {0}")]
    MemfdSeal(nix::Error),
    #[error("failed to pass the memfd of a large audit record to journald at {}: {source}", path.display())]
    MemfdSend { path: PathBuf, source: nix::Error },
}

/// An [`AuditSink`] that writes to journald.
///
/// The socket is connected once and reconnected after a failed send, so the
/// sink survives a journald restart. A record that still fails is counted
/// (see [`JournaldSink::failures`]) and reported through `tracing` at most
/// once a minute.
#[derive(Debug)]
pub struct JournaldSink {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    failures: u64,
    throttle: FailureReportThrottle,
}

// === impl JournaldSink ===

impl JournaldSink {
    /// Connects to journald's native socket at [`SOCKET_PATH`].
    pub fn open() -> Result<Self, JournaldError> {
        Self::connect(SOCKET_PATH)
    }

    /// Connects to a journald native socket at `path`.
    pub fn connect(path: impl Into<PathBuf>) -> Result<Self, JournaldError> {
        let path = path.into();
        let socket = connect_socket(&path)?;
        Ok(Self {
            path,
            socket: Some(socket),
            failures: 0,
            throttle: FailureReportThrottle::default(),
        })
    }

    /// Tells whether journald's socket at [`SOCKET_PATH`] exists and accepts
    /// a connect.
    pub fn available() -> bool {
        Self::available_at(Path::new(SOCKET_PATH))
    }

    /// Tells whether a journald socket at `path` exists and accepts a connect.
    pub fn available_at(path: &Path) -> bool {
        path.exists() && connect_socket(path).is_ok()
    }

    /// Returns the number of records that could not be written.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Sends one record, reconnecting and retrying once if the first send
    /// fails. [`AuditSink::write`] calls this and counts the error.
    pub fn send(&mut self, record: &AuditRecord) -> Result<(), JournaldError> {
        self.send_encoded(&encode_entry(record))
    }

    /// Sends one encoded entry as [`JournaldSink::send`] sends a record.
    fn send_encoded(&mut self, entry: &[u8]) -> Result<(), JournaldError> {
        match self.send_entry(entry) {
            Ok(()) => Ok(()),
            Err(first) => {
                tracing::debug!(error = %first, "Reconnecting to journald after a failed send");
                self.socket = None;
                self.send_entry(entry)
            }
        }
    }

    fn send_entry(&mut self, entry: &[u8]) -> Result<(), JournaldError> {
        let socket = match &self.socket {
            Some(socket) => socket,
            None => self.socket.insert(connect_socket(&self.path)?),
        };

        match socket.send(entry) {
            Ok(_) => Ok(()),
            Err(error) if is_too_large(&error) => send_memfd(socket, &self.path, entry),
            Err(source) => Err(JournaldError::Send {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn count_failure(&mut self, error: &JournaldError) {
        self.failures += 1;
        if let Some(unreported) = self.throttle.failure(Instant::now()) {
            tracing::warn!(
                error = %error,
                failed_records = unreported,
                total_failed_records = self.failures,
                "Failed to write audit records to journald",
            );
        }
    }
}

impl AuditSink for JournaldSink {
    fn write(&mut self, record: &AuditRecord) {
        if let Err(error) = self.send(record) {
            self.count_failure(&error);
        }
    }

    fn encoder(&self) -> Option<Arc<dyn Encoder>> {
        Some(Arc::new(JournaldEncoder))
    }

    /// Sends each entry as a datagram of its own, as journald's native
    /// protocol takes one entry per datagram.
    fn write_encoded(&mut self, entries: &[Vec<u8>]) {
        for entry in entries {
            if let Err(error) = self.send_encoded(entry) {
                self.count_failure(&error);
            }
        }
    }
}

/// Encodes records as the entries of [`JournaldSink`].
struct JournaldEncoder;

impl Encoder for JournaldEncoder {
    fn encode(&self, record: &AuditRecord) -> Vec<u8> {
        encode_entry(record)
    }
}

fn connect_socket(path: &Path) -> Result<UnixDatagram, JournaldError> {
    let connect = || -> io::Result<UnixDatagram> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(socket)
    };
    connect().map_err(|source| JournaldError::Connect {
        path: path.to_owned(),
        source,
    })
}

/// Tells whether a send failed because the datagram exceeds what the socket
/// takes in one piece: `EMSGSIZE` past the send buffer, `ENOBUFS` when the
/// kernel cannot allocate that much at once.
fn is_too_large(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMSGSIZE | libc::ENOBUFS))
}

/// Writes `entry` to a sealed memfd and passes the descriptor to journald.
/// journald reads such a descriptor only if it is sealed against writes,
/// growing and shrinking, and only in a datagram without payload.
fn send_memfd(socket: &UnixDatagram, path: &Path, entry: &[u8]) -> Result<(), JournaldError> {
    let fd = memfd_create(
        c"odoogate-audit",
        MFdFlags::MFD_ALLOW_SEALING | MFdFlags::MFD_CLOEXEC,
    )
    .map_err(JournaldError::MemfdCreate)?;
    let mut file = File::from(fd);
    file.write_all(entry).map_err(JournaldError::MemfdWrite)?;

    let seals = SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SEAL;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(JournaldError::MemfdSeal)?;

    let fds = [file.as_raw_fd()];
    sendmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &[],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|source| JournaldError::MemfdSend {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}

/// Returns the journald fields of `record`: `MESSAGE`, `PRIORITY`,
/// `SYSLOG_IDENTIFIER`, then [`AuditRecord::fields`], each value bounded to
/// [`MAX_FIELD_VALUE_BYTES`]. The JSON lines sink writes the same fields.
pub fn entry_fields(record: &AuditRecord) -> Vec<(&'static str, Cow<'_, str>)> {
    let mut fields = Vec::with_capacity(32);
    for_each_entry_field(record, |name, value| fields.push((name, bounded_text(value))));
    fields
}

/// Calls `visit` with each field [`entry_fields`] returns, in the same
/// order, before the values are bounded (see [`bounded_text`]).
pub fn for_each_entry_field<'a>(record: &'a AuditRecord, mut visit: impl FnMut(&'static str, FieldValue<'a>)) {
    visit("MESSAGE", FieldValue::Text(&record.message));
    visit("PRIORITY", FieldValue::Unsigned(u64::from(record.priority())));
    visit("SYSLOG_IDENTIFIER", FieldValue::Text(SYSLOG_IDENTIFIER));
    record.for_each_field(visit);
}

/// Returns the text of `value`, cut to at most [`MAX_FIELD_VALUE_BYTES`].
pub fn bounded_text(value: FieldValue<'_>) -> Cow<'_, str> {
    bound_value(value.into_text())
}

/// Encodes `record` as one native protocol entry.
pub fn encode_entry(record: &AuditRecord) -> Vec<u8> {
    let mut entry = Vec::new();
    for_each_entry_field(record, |name, value| encode_field(&mut entry, name, &bounded_text(value)));
    entry
}

fn encode_field(entry: &mut Vec<u8>, name: &str, value: &str) {
    entry.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        entry.push(b'\n');
        entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        entry.push(b'=');
    }
    entry.extend_from_slice(value.as_bytes());
    entry.push(b'\n');
}

/// Cuts `value` to at most [`MAX_FIELD_VALUE_BYTES`], mark included.
fn bound_value(value: Cow<'_, str>) -> Cow<'_, str> {
    if value.len() <= MAX_FIELD_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_FIELD_VALUE_BYTES - TRUNCATION_MARK.len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{TRUNCATION_MARK}", &value[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, Decision};

    /// Decodes a native protocol entry back to (name, value) pairs.
    fn decode_entry(mut entry: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields = Vec::new();
        while !entry.is_empty() {
            let name_end = entry
                .iter()
                .position(|&b| b == b'=' || b == b'\n')
                .expect("field name ends");
            let name = String::from_utf8(entry[..name_end].to_vec()).unwrap();
            if entry[name_end] == b'=' {
                let rest = &entry[name_end + 1..];
                let value_end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .expect("value ends with a newline");
                fields.push((name, rest[..value_end].to_vec()));
                entry = &rest[value_end + 1..];
            } else {
                let rest = &entry[name_end + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                fields.push((name, rest[8..8 + len].to_vec()));
                assert_eq!(rest[8 + len], b'\n', "binary value ends with a newline");
                entry = &rest[8 + len + 1..];
            }
        }
        fields
    }

    fn deny_record() -> AuditRecord {
        let mut record = AuditRecord::new(
            AuditEvent::Call,
            "deny n8n crm.lead.unlink via xmlrpc: no rule allows unlink",
        );
        record.decision = Some(Decision::Deny);
        record.integration = Some("n8n".to_owned());
        record.model = Some("crm.lead".to_owned());
        record.method = Some("unlink".to_owned());
        record
    }

    #[test]
    fn entry_starts_with_journal_fields() {
        let fields = decode_entry(&encode_entry(&deny_record()));
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "MESSAGE",
                "PRIORITY",
                "SYSLOG_IDENTIFIER",
                "ODOOGATE_EVENT",
                "ODOOGATE_DECISION",
                "ODOOGATE_INTEGRATION",
                "ODOOGATE_MODEL",
                "ODOOGATE_METHOD",
            ]
        );
        assert_eq!(fields[1].1, b"4");
        assert_eq!(fields[2].1, b"odoogate");
        assert_eq!(fields[4].1, b"deny");
    }

    #[test]
    fn plain_value_uses_equals_form() {
        let entry = encode_entry(&deny_record());
        let text = String::from_utf8(entry).unwrap();
        assert!(text.contains("\nODOOGATE_MODEL=crm.lead\n"), "{text}");
    }

    #[test]
    fn newline_value_uses_binary_form() {
        let mut record = deny_record();
        record.reason = Some("first line\nsecond line".to_owned());
        let entry = encode_entry(&record);

        let mut expected = b"ODOOGATE_REASON\n".to_vec();
        expected.extend_from_slice(&22u64.to_le_bytes());
        expected.extend_from_slice(b"first line\nsecond line\n");
        assert!(
            entry.windows(expected.len()).any(|w| w == expected),
            "binary field not found"
        );

        let fields = decode_entry(&entry);
        let reason = fields
            .iter()
            .find(|(name, _)| name == "ODOOGATE_REASON")
            .unwrap();
        assert_eq!(reason.1, b"first line\nsecond line");
    }

    #[test]
    fn oversized_value_is_truncated_at_char_boundary() {
        let mut record = deny_record();
        record.path = Some("é".repeat(MAX_FIELD_VALUE_BYTES));
        let fields = entry_fields(&record);
        let path = &fields
            .iter()
            .find(|(name, _)| *name == "ODOOGATE_PATH")
            .unwrap()
            .1;
        assert!(path.len() <= MAX_FIELD_VALUE_BYTES);
        assert!(path.len() > MAX_FIELD_VALUE_BYTES - TRUNCATION_MARK.len() - 4);
        assert!(path.ends_with(TRUNCATION_MARK));
    }

    #[test]
    fn connect_to_missing_socket_fails() {
        let error = JournaldSink::connect("/nonexistent/odoogate/journal.sock").unwrap_err();
        assert!(matches!(error, JournaldError::Connect { .. }));
        assert!(
            error
                .to_string()
                .contains("/nonexistent/odoogate/journal.sock")
        );
        assert!(!JournaldSink::available_at(Path::new(
            "/nonexistent/odoogate/journal.sock"
        )));
    }

    /// A bound datagram socket replaces journald's, so the test sees the
    /// exact bytes and descriptors the sink sends.
    fn fake_journal() -> (tempdir::Dir, UnixDatagram) {
        let dir = tempdir::Dir::new();
        let server = UnixDatagram::bind(dir.path().join("socket")).unwrap();
        (dir, server)
    }

    #[test]
    fn sends_one_datagram_per_record() {
        let (dir, server) = fake_journal();
        let mut sink = JournaldSink::connect(dir.path().join("socket")).unwrap();
        sink.write(&deny_record());

        let mut buf = vec![0; 64 * 1024];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], encode_entry(&deny_record()).as_slice());
        assert_eq!(sink.failures(), 0);
    }

    #[test]
    fn encoded_entries_are_datagrams() {
        let (dir, server) = fake_journal();
        let mut sink = JournaldSink::connect(dir.path().join("socket")).unwrap();
        let encoder = sink.encoder().expect("journald entries are bytes");
        let capture_loss = AuditRecord::new(AuditEvent::CaptureLoss, "3 ring buffer records lost");
        sink.write_encoded(&[encoder.encode(&deny_record()), encoder.encode(&capture_loss)]);

        let mut buf = vec![0; 64 * 1024];
        let first = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..first], encode_entry(&deny_record()).as_slice());
        let second = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..second], encode_entry(&capture_loss).as_slice());
        assert_eq!(sink.failures(), 0);
    }

    #[test]
    fn reconnects_after_server_restart() {
        let (dir, server) = fake_journal();
        let path = dir.path().join("socket");
        let mut sink = JournaldSink::connect(&path).unwrap();

        drop(server);
        std::fs::remove_file(&path).unwrap();
        let server = UnixDatagram::bind(&path).unwrap();

        sink.send(&deny_record()).expect("send after reconnect");
        let mut buf = vec![0; 64 * 1024];
        assert!(server.recv(&mut buf).unwrap() > 0);
    }

    #[test]
    fn failed_writes_are_counted() {
        let (dir, server) = fake_journal();
        let path = dir.path().join("socket");
        let mut sink = JournaldSink::connect(&path).unwrap();
        drop(server);
        std::fs::remove_file(&path).unwrap();

        sink.write(&deny_record());
        sink.write(&deny_record());
        assert_eq!(sink.failures(), 2);
    }

    #[test]
    fn large_record_passes_sealed_memfd() {
        use nix::sys::socket::{ControlMessageOwned, recvmsg};
        use std::io::{IoSliceMut, Read as _, Seek as _};
        use std::os::fd::{FromRawFd as _, OwnedFd};

        let (dir, server) = fake_journal();
        let mut sink = JournaldSink::connect(dir.path().join("socket")).unwrap();
        let mut record = deny_record();
        record.reason = Some("x".repeat(300 * 1024));
        sink.send(&record).expect("large record is sent");

        let mut payload = [0u8; 16];
        let mut iov = [IoSliceMut::new(&mut payload)];
        let mut cmsg_space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            server.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::empty(),
        )
        .unwrap();
        assert_eq!(msg.bytes, 0, "a datagram with a descriptor has no payload");
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|cmsg| match cmsg {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("an SCM_RIGHTS descriptor");
        // SAFETY: the kernel just installed `fd` in this process for this
        // message, and nothing else owns it.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });

        let seals = SealFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GET_SEALS).unwrap());
        assert!(
            seals
                .contains(SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK)
        );

        let mut entry = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut entry).unwrap();
        assert_eq!(entry, encode_entry(&record));
    }

    /// A throwaway directory removed on drop.
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU32, Ordering};

        pub struct Dir(PathBuf);

        impl Dir {
            pub fn new() -> Self {
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let name = format!(
                    "odoogate-journald-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                let path = std::env::temp_dir().join(name);
                std::fs::create_dir_all(&path).unwrap();
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

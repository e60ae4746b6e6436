//! The ring buffer reader: decodes the records of the `EVENTS` map into
//! [`CaptureEvent`]s on a dedicated thread.
//!
//! The record layouts are defined in `odoogate-common`. The reader copies
//! each record out of the ring before it hands it on, so the kernel can reuse
//! the space at once. A slow consumer blocks the reader, and the ring then
//! absorbs the backlog until it is full; the kernel counts what it drops.

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd as _, AsRawFd as _, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use bytes::Bytes;
use odoogate_common::{
    FAMILY_IPV4, FAMILY_IPV6, FlowOriginRecord, GuardRefusalRecord, HOOK_INGRESS,
    PACKET_HEADER_LEN, PacketHeader, RECORD_FLOW_ORIGIN, RECORD_GUARD_REFUSAL, RECORD_PACKET,
};

use super::event::{CaptureEvent, FlowOrigin, GuardRefusal, Segment, TcpFlags};

/// How long the reader waits before it retries a send to a full channel.
const FULL_CHANNEL_RETRY: Duration = Duration::from_millis(1);

/// Maximum wait in poll(), a safety net in case the wake-up byte is lost.
const POLL_TIMEOUT_MS: libc::c_int = 1000;

/// How long the reader lets records gather after the kernel wakes it, when
/// it reads captured packets. The kernel wakes the reader only for a record
/// written while the ring was empty, so with the window a burst of segments
/// costs one wakeup of the reader and of the pipeline behind it, not one per
/// segment. Records are then handled up to this much later.
pub const PACKET_BATCH_WINDOW: Duration = Duration::from_millis(1);

/// Reason a ring buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("record of kind {kind} is {len} bytes, expected {expected}")]
    Length {
        kind: u8,
        len: usize,
        expected: usize,
    },
    #[error("unknown address family {0}")]
    UnknownFamily(u8),
    #[error("captured length {captured} exceeds the wire length {wire}")]
    CapturedExceedsWire { captured: u32, wire: u32 },
}

/// Decodes one ring buffer record.
pub fn decode_record(record: &[u8]) -> Result<CaptureEvent, RecordError> {
    match record.first() {
        None => Err(RecordError::Empty),
        Some(&RECORD_PACKET) => decode_packet(record).map(CaptureEvent::Segment),
        Some(&RECORD_FLOW_ORIGIN) => decode_origin(record).map(CaptureEvent::Origin),
        Some(&RECORD_GUARD_REFUSAL) => decode_refusal(record).map(CaptureEvent::GuardRefusal),
        Some(&kind) => Err(RecordError::UnknownKind(kind)),
    }
}

fn decode_packet(record: &[u8]) -> Result<Segment, RecordError> {
    let header: PacketHeader = read_pod(record, RECORD_PACKET)?;
    let PacketHeader {
        family,
        tcp_flags,
        hook,
        ifindex,
        saddr,
        daddr,
        sport,
        dport,
        seq,
        ack,
        payload_len,
        captured_len,
        timestamp_ns,
        first_fragment,
        ..
    } = header;
    if captured_len > payload_len {
        return Err(RecordError::CapturedExceedsWire {
            captured: captured_len,
            wire: payload_len,
        });
    }
    let expected = PACKET_HEADER_LEN + captured_len as usize;
    if record.len() != expected {
        return Err(RecordError::Length {
            kind: RECORD_PACKET,
            len: record.len(),
            expected,
        });
    }
    Ok(Segment {
        src: endpoint(family, saddr, sport)?,
        dst: endpoint(family, daddr, dport)?,
        seq,
        ack,
        flags: TcpFlags(tcp_flags),
        payload: Bytes::copy_from_slice(&record[PACKET_HEADER_LEN..]),
        wire_len: payload_len,
        timestamp_ns,
        ingress_ifindex: (hook == HOOK_INGRESS).then_some(ifindex),
        first_fragment: first_fragment != 0,
    })
}

fn decode_origin(record: &[u8]) -> Result<FlowOrigin, RecordError> {
    let origin: FlowOriginRecord = read_exact_pod(record, RECORD_FLOW_ORIGIN)?;
    let FlowOriginRecord {
        family,
        process_known,
        pid,
        saddr,
        daddr,
        sport,
        dport,
        uid,
        cgroup_id,
        timestamp_ns,
        comm,
        ..
    } = origin;
    let known = process_known != 0;
    Ok(FlowOrigin {
        client: endpoint(family, saddr, sport)?,
        server: endpoint(family, daddr, dport)?,
        cgroup_id,
        pid: known.then_some(pid),
        uid: known.then_some(uid),
        comm: known.then(|| command_name(&comm)),
        timestamp_ns,
    })
}

fn decode_refusal(record: &[u8]) -> Result<GuardRefusal, RecordError> {
    let refusal: GuardRefusalRecord = read_exact_pod(record, RECORD_GUARD_REFUSAL)?;
    let GuardRefusalRecord {
        family,
        pid,
        uid,
        dport,
        daddr,
        cgroup_id,
        timestamp_ns,
        comm,
        ..
    } = refusal;
    Ok(GuardRefusal {
        destination: endpoint(family, daddr, dport)?,
        cgroup_id,
        pid,
        uid,
        comm: command_name(&comm),
        timestamp_ns,
    })
}

/// Reads a record that must be exactly one `T`, with no payload after it.
fn read_exact_pod<T: aya::Pod>(record: &[u8], kind: u8) -> Result<T, RecordError> {
    let expected = size_of::<T>();
    if record.len() != expected {
        return Err(RecordError::Length { kind, len: record.len(), expected });
    }
    read_pod(record, kind)
}

/// Reads a `T` from the start of `record`, which must be at least as long.
fn read_pod<T: aya::Pod>(record: &[u8], kind: u8) -> Result<T, RecordError> {
    let expected = size_of::<T>();
    if record.len() < expected {
        return Err(RecordError::Length {
            kind,
            len: record.len(),
            expected,
        });
    }
    // SAFETY: `record` contains at least `size_of::<T>()` bytes, the read does
    // not require alignment, and `T: Pod` is valid for every byte pattern.
    Ok(unsafe { record.as_ptr().cast::<T>().read_unaligned() })
}

/// Builds a socket address from a record's address; IPv4 flows come as
/// IPv4-mapped IPv6 addresses and leave as plain IPv4.
fn endpoint(family: u8, address: [u8; 16], port: u16) -> Result<SocketAddr, RecordError> {
    let address = Ipv6Addr::from(address);
    let ip = match family {
        FAMILY_IPV4 => IpAddr::V4(
            address
                .to_ipv4_mapped()
                .ok_or(RecordError::UnknownFamily(family))?,
        ),
        FAMILY_IPV6 => IpAddr::V6(address),
        other => return Err(RecordError::UnknownFamily(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Returns the command name up to its first NUL.
fn command_name(comm: &[u8]) -> String {
    let end = comm
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// A running reader thread; [`RingReader::stop`] or drop ends it.
#[derive(Debug)]
pub struct RingReader {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    wake: UnixStream,
    malformed: Arc<AtomicU64>,
}

// === impl RingReader ===

impl RingReader {
    /// Starts a thread named `odoogate-ring` that waits on the ring buffer's
    /// file descriptor, waits `batch_window` more after each wakeup, decodes
    /// each record and sends it into `events`. Records that do not decode are
    /// counted and dropped.
    pub fn spawn(
        ring: RingBuf<MapData>,
        events: SyncSender<CaptureEvent>,
        batch_window: Duration,
    ) -> io::Result<Self> {
        let (wake, wake_peer) = UnixStream::pair()?;
        let stop = Arc::new(AtomicBool::new(false));
        let malformed = Arc::new(AtomicU64::new(0));
        let sink = Sink {
            events,
            stop: stop.clone(),
            malformed: malformed.clone(),
        };
        let mut drain = Drain {
            ring,
            wake: wake_peer,
            batch_window,
            sink,
        };
        let thread = thread::Builder::new()
            .name("odoogate-ring".to_owned())
            .spawn(move || drain.run())?;
        Ok(Self {
            thread: Some(thread),
            stop,
            wake,
            malformed,
        })
    }

    /// Number of records that could not be decoded.
    pub fn malformed_records(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// Stops the thread after one last pass over the ring, and waits for it.
    /// Calling it again does nothing.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        // A reader that already exited (its receiver was gone) has closed the
        // other end, so this write may fail. A running reader also sees the
        // flag at its next poll timeout.
        let _ = (&self.wake).write_all(&[1]);
        if thread.join().is_err() {
            tracing::error!("The ring buffer reader thread panicked");
        }
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The state the reader thread owns.
struct Drain {
    ring: RingBuf<MapData>,
    wake: UnixStream,
    batch_window: Duration,
    sink: Sink,
}

/// Destination of decoded records, and the flags shared with the owner.
struct Sink {
    events: SyncSender<CaptureEvent>,
    stop: Arc<AtomicBool>,
    malformed: Arc<AtomicU64>,
}

/// Whether the reader goes on after a drain pass.
enum Next {
    Continue,
    Exit,
}

// === impl Drain ===

impl Drain {
    fn run(&mut self) {
        tracing::debug!("Ring buffer reader started");
        loop {
            let woken_by_ring = match self.wait() {
                Ok(woken_by_ring) => woken_by_ring,
                Err(error) => {
                    tracing::error!(%error, "Failed to wait for ring buffer records; capture stops");
                    return;
                }
            };
            let mut stopping = self.sink.stop.load(Ordering::Acquire);
            if woken_by_ring && !stopping && !self.batch_window.is_zero() {
                thread::sleep(self.batch_window);
                stopping = self.sink.stop.load(Ordering::Acquire);
            }
            if let Next::Exit = self.drain_once() {
                return;
            }
            crate::memory::release_freed_memory();
            if stopping {
                tracing::debug!("Ring buffer reader stopped");
                return;
            }
        }
    }

    /// Blocks until the ring has records, the owner asks to stop, or the
    /// poll timeout passes. Returns whether the ring was ready.
    fn wait(&mut self) -> io::Result<bool> {
        let ring_fd: RawFd = self.ring.as_raw_fd();
        let mut fds = [
            libc::pollfd {
                fd: ring_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: `fds` is a valid array of two pollfd structures for the
            // duration of the call, and both descriptors stay open.
            let ready =
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_TIMEOUT_MS) };
            if ready >= 0 {
                break;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        if fds[1].revents != 0 {
            let mut byte = [0u8; 1];
            let _ = self.wake.read(&mut byte);
        }
        Ok(fds[0].revents != 0)
    }

    /// Decodes and sends every record now in the ring.
    fn drain_once(&mut self) -> Next {
        while let Some(item) = self.ring.next() {
            let decoded = decode_record(&item);
            drop(item);
            match decoded {
                Ok(event) => {
                    if let Next::Exit = self.sink.send(event) {
                        return Next::Exit;
                    }
                }
                Err(error) => self.sink.count_malformed(&error),
            }
        }
        Next::Continue
    }
}

// === impl Sink ===

impl Sink {
    /// Sends one event, waiting while the channel is full; gives up when the
    /// receiver is gone or the owner stops the reader.
    fn send(&self, mut event: CaptureEvent) -> Next {
        loop {
            match self.events.try_send(event) {
                Ok(()) => return Next::Continue,
                Err(TrySendError::Disconnected(_)) => {
                    tracing::warn!(
                        "The capture event receiver is gone; the ring buffer reader stops"
                    );
                    return Next::Exit;
                }
                Err(TrySendError::Full(returned)) => {
                    if self.stop.load(Ordering::Acquire) {
                        return Next::Exit;
                    }
                    event = returned;
                    thread::sleep(FULL_CHANNEL_RETRY);
                }
            }
        }
    }

    fn count_malformed(&self, error: &RecordError) {
        let previous = self.malformed.fetch_add(1, Ordering::Relaxed);
        // Log the first malformed record and then every 1000th, so a broken
        // program cannot flood the log.
        if previous.is_multiple_of(1000) {
            tracing::warn!(%error, malformed_records = previous + 1, "Dropped a malformed ring buffer record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use odoogate_common::{COMM_LEN, ProcessInfo};

    fn mapped(ipv4: [u8; 4]) -> [u8; 16] {
        std::net::Ipv4Addr::from(ipv4).to_ipv6_mapped().octets()
    }

    fn packet_header(captured_len: u32, payload_len: u32) -> PacketHeader {
        PacketHeader {
            kind: RECORD_PACKET,
            family: FAMILY_IPV4,
            tcp_flags: TcpFlags::ACK | TcpFlags::PSH,
            saddr: mapped([127, 0, 0, 1]),
            daddr: mapped([127, 0, 0, 2]),
            sport: 40000,
            dport: 8069,
            seq: 0xffff_fff0,
            ack: 7,
            payload_len,
            captured_len,
            timestamp_ns: 123,
            ..PacketHeader::default()
        }
    }

    fn bytes_of<T: aya::Pod>(value: &T) -> Vec<u8> {
        // SAFETY: `T: Pod` has no padding, so all its bytes are initialised.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn packet_record(header: &PacketHeader, payload: &[u8]) -> Vec<u8> {
        let mut record = bytes_of(header);
        record.extend_from_slice(payload);
        record
    }

    #[test]
    fn packet_record_decodes_to_segment() {
        let record = packet_record(&packet_header(5, 5), b"hello");
        let CaptureEvent::Segment(segment) = decode_record(&record).unwrap() else {
            panic!("expected a segment")
        };
        assert_eq!(segment.src, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(segment.dst, "127.0.0.2:8069".parse().unwrap());
        assert_eq!(segment.seq, 0xffff_fff0);
        assert_eq!(segment.ack, 7);
        assert_eq!(segment.flags, TcpFlags(TcpFlags::ACK | TcpFlags::PSH));
        assert_eq!(&segment.payload[..], b"hello");
        assert_eq!(segment.wire_len, 5);
        assert_eq!(segment.timestamp_ns, 123);
    }

    #[test]
    fn truncated_packet_keeps_wire_length() {
        let record = packet_record(&packet_header(3, 9), b"abc");
        let CaptureEvent::Segment(segment) = decode_record(&record).unwrap() else {
            panic!("expected a segment")
        };
        assert_eq!(segment.payload.len(), 3);
        assert_eq!(segment.wire_len, 9);
    }

    #[test]
    fn ipv6_packet_keeps_ipv6_addresses() {
        let mut header = packet_header(0, 0);
        header.family = FAMILY_IPV6;
        header.saddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        header.daddr = Ipv6Addr::LOCALHOST.octets();
        let CaptureEvent::Segment(segment) = decode_record(&packet_record(&header, b"")).unwrap()
        else {
            panic!("expected a segment")
        };
        assert_eq!(segment.src, "[2001:db8::1]:40000".parse().unwrap());
        assert_eq!(segment.dst, "[::1]:8069".parse().unwrap());
    }

    #[test]
    fn packet_with_missing_payload_rejected() {
        let record = packet_record(&packet_header(5, 5), b"hel");
        assert_eq!(
            decode_record(&record).unwrap_err(),
            RecordError::Length {
                kind: RECORD_PACKET,
                len: PACKET_HEADER_LEN + 3,
                expected: PACKET_HEADER_LEN + 5
            }
        );
    }

    #[test]
    fn packet_capturing_more_than_wire_rejected() {
        let record = packet_record(&packet_header(5, 4), b"hello");
        assert_eq!(
            decode_record(&record).unwrap_err(),
            RecordError::CapturedExceedsWire {
                captured: 5,
                wire: 4
            }
        );
    }

    #[test]
    fn short_header_rejected() {
        let record = packet_record(&packet_header(0, 0), b"");
        assert!(matches!(
            decode_record(&record[..10]),
            Err(RecordError::Length { .. })
        ));
    }

    #[test]
    fn unknown_kind_and_family_rejected() {
        assert_eq!(decode_record(&[]).unwrap_err(), RecordError::Empty);
        assert_eq!(
            decode_record(&[9, 0, 0]).unwrap_err(),
            RecordError::UnknownKind(9)
        );
        let mut header = packet_header(0, 0);
        header.family = 3;
        assert_eq!(
            decode_record(&packet_record(&header, b"")).unwrap_err(),
            RecordError::UnknownFamily(3)
        );
    }

    #[test]
    fn ipv4_family_with_unmapped_address_rejected() {
        let mut header = packet_header(0, 0);
        header.saddr = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(
            decode_record(&packet_record(&header, b"")).unwrap_err(),
            RecordError::UnknownFamily(FAMILY_IPV4)
        );
    }

    fn origin_record(process_known: u8) -> FlowOriginRecord {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        FlowOriginRecord {
            kind: RECORD_FLOW_ORIGIN,
            family: FAMILY_IPV4,
            process_known,
            pid: 4242,
            saddr: mapped([10, 0, 0, 5]),
            daddr: mapped([10, 0, 0, 1]),
            sport: 51000,
            dport: 8069,
            uid: 1000,
            cgroup_id: 77,
            socket_cookie: 9,
            timestamp_ns: 55,
            comm,
            ..FlowOriginRecord::default()
        }
    }

    #[test]
    fn origin_record_decodes_process() {
        let CaptureEvent::Origin(origin) = decode_record(&bytes_of(&origin_record(1))).unwrap()
        else {
            panic!("expected an origin")
        };
        assert_eq!(origin.client, "10.0.0.5:51000".parse().unwrap());
        assert_eq!(origin.server, "10.0.0.1:8069".parse().unwrap());
        assert_eq!(origin.cgroup_id, 77);
        assert_eq!(origin.pid, Some(4242));
        assert_eq!(origin.uid, Some(1000));
        assert_eq!(origin.comm.as_deref(), Some("curl"));
        assert_eq!(origin.timestamp_ns, 55);
    }

    #[test]
    fn origin_without_process_has_no_pid() {
        let CaptureEvent::Origin(origin) = decode_record(&bytes_of(&origin_record(0))).unwrap()
        else {
            panic!("expected an origin")
        };
        assert_eq!(origin.cgroup_id, 77);
        assert_eq!(origin.pid, None);
        assert_eq!(origin.uid, None);
        assert_eq!(origin.comm, None);
    }

    #[test]
    fn origin_with_trailing_bytes_rejected() {
        let mut record = bytes_of(&origin_record(1));
        record.push(0);
        assert!(matches!(
            decode_record(&record),
            Err(RecordError::Length {
                kind: RECORD_FLOW_ORIGIN,
                ..
            })
        ));
    }

    #[test]
    fn guard_refusal_record_decodes() {
        let mut comm = [0u8; COMM_LEN];
        comm[..6].copy_from_slice(b"python");
        let record = GuardRefusalRecord {
            kind: RECORD_GUARD_REFUSAL,
            family: FAMILY_IPV4,
            pid: 31,
            uid: 1000,
            dport: 8069,
            daddr: mapped([127, 0, 0, 1]),
            cgroup_id: 4026,
            timestamp_ns: 9,
            comm,
            ..GuardRefusalRecord::default()
        };
        let CaptureEvent::GuardRefusal(refusal) = decode_record(&bytes_of(&record)).unwrap()
        else {
            panic!("expected a guard refusal")
        };
        assert_eq!(refusal.destination, "127.0.0.1:8069".parse().unwrap());
        assert_eq!(refusal.cgroup_id, 4026);
        assert_eq!((refusal.pid, refusal.uid), (31, 1000));
        assert_eq!(refusal.comm, "python");
        assert_eq!(refusal.timestamp_ns, 9);

        let short = &bytes_of(&record)[..40];
        assert!(matches!(
            decode_record(short),
            Err(RecordError::Length {
                kind: RECORD_GUARD_REFUSAL,
                ..
            })
        ));
    }

    #[test]
    fn full_comm_without_nul_decodes() {
        assert_eq!(command_name(b"0123456789abcdef"), "0123456789abcdef");
        assert_eq!(command_name(&ProcessInfo::default().comm), "");
    }
}

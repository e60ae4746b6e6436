//! Owned, decoded forms of the records the eBPF programs send to userspace.

use bytes::Bytes;
use std::net::SocketAddr;

/// One end of a TCP connection.
pub type Endpoint = SocketAddr;

/// A TCP connection as seen from its client: `client` is the side that
/// connected, `server` is Odoo's listening address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub client: Endpoint,
    pub server: Endpoint,
}

/// TCP header flags, as in the TCP header's flags byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    pub fn urg(self) -> bool {
        self.0 & Self::URG != 0
    }
}

/// One captured TCP segment (one skb, which may be a GSO super-packet).
#[derive(Clone, Debug)]
pub struct Segment {
    pub src: Endpoint,
    pub dst: Endpoint,
    /// Sequence number of the first payload byte (or of the SYN/FIN).
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The captured payload bytes.
    pub payload: Bytes,
    /// The payload length on the wire; larger than `payload.len()` when the
    /// kernel program had to truncate the copy.
    pub wire_len: u32,
    /// Kernel monotonic clock (`bpf_ktime_get_ns`) when the program ran.
    pub timestamp_ns: u64,
    /// The interface index when the segment was seen arriving (TC ingress),
    /// `None` when it was seen leaving (TC egress).
    pub ingress_ifindex: Option<u32>,
    /// The segment came as IP fragments and this is the first of them, so
    /// `payload` and `wire_len` cover only that fragment's part.
    pub first_fragment: bool,
}

// === impl Segment ===

impl Segment {
    /// Returns the sequence number of the first data byte. A SYN takes one
    /// sequence number before any data it carries.
    pub fn data_seq(&self) -> u32 {
        if self.flags.syn() { self.seq.wrapping_add(1) } else { self.seq }
    }
}

/// Where a flow came from, for local senders: reported once per flow by
/// the cgroup_skb egress program when the client's SYN leaves its socket,
/// joined in the kernel (by socket cookie) with what the connect4/connect6
/// program saw of the connecting process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowOrigin {
    /// The client's address and port (the SYN's source).
    pub client: Endpoint,
    /// The server's address and port (the SYN's destination).
    pub server: Endpoint,
    /// cgroup v2 id of the client socket (the inode number of its cgroup
    /// directory).
    pub cgroup_id: u64,
    /// Process that called connect(), when the connect program saw it.
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub comm: Option<String>,
    pub timestamp_ns: u64,
}

/// A connect to Odoo's port that the cgroup guard refused (enforce mode):
/// the process got EPERM and no packet left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardRefusal {
    /// The address and port the process tried to reach.
    pub destination: Endpoint,
    /// cgroup v2 id of the calling task.
    pub cgroup_id: u64,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    /// Kernel monotonic clock when the connect was refused.
    pub timestamp_ns: u64,
}

/// Everything the capture stage hands to the pipeline.
#[derive(Clone, Debug)]
pub enum CaptureEvent {
    Segment(Segment),
    Origin(FlowOrigin),
    GuardRefusal(GuardRefusal),
}

/// Counters kept by the kernel programs and the ring buffer reader. Every
/// drop and truncation is counted here and reported in audit records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Matching packets the TC programs saw.
    pub packets: u64,
    /// Records written to the ring buffer.
    pub records: u64,
    /// Records lost because the ring buffer was full.
    pub ring_full: u64,
    /// Packets whose payload was cut because it exceeded the copy buffer.
    pub truncated: u64,
    /// `bpf_skb_load_bytes` failures.
    pub load_errors: u64,
    /// Packets the programs do not parse (IPv6 extension headers, IPv4
    /// fragments); they may or may not belong to a captured port.
    pub skipped_packets: u64,
    /// Packets with unreadable or invalid IP or TCP headers.
    pub header_errors: u64,
    /// Flow origin records written to the ring buffer.
    pub origins: u64,
    /// Connects to a captured port whose process the kernel recorded.
    pub connects: u64,
    /// Connects to a captured port that the cgroup guard refused.
    pub guard_refusals: u64,
    /// Records userspace could not parse.
    pub malformed_records: u64,
}

//! `#[repr(C)]` types shared by the eBPF programs and the daemon.
//!
//! Both sides compile this crate: the eBPF side for `bpfel-unknown-none`, the
//! daemon with the `user` feature, which implements `aya::Pod` for each type.
//!
//! The programs send every record through one ring buffer map, [`EVENTS_MAP`].
//! A record starts with a one-byte kind tag ([`RECORD_PACKET`],
//! [`RECORD_FLOW_ORIGIN`] or [`RECORD_GUARD_REFUSAL`]), so the reader can
//! tell them apart:
//!
//! - a packet record is a [`PacketHeader`] followed by exactly
//!   [`PacketHeader::captured_len`] payload bytes;
//! - a flow origin record is one [`FlowOriginRecord`];
//! - a guard refusal record is one [`GuardRefusalRecord`].
//!
//! The steering program (`odoogate-steer`, a separate object whose maps are
//! pinned in bpffs) shares its map names and [`SteerConfig`] from here too.
//!
//! Every layout has no implicit padding (checked below at compile time), so
//! any byte pattern is a valid value and `aya::Pod` is sound.
#![no_std]

use core::mem::size_of;

/// Name of the ring buffer map that carries every record.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU array of `u64` counters, indexed by [`stat`].
pub const STATS_MAP: &str = "STATS";
/// Name of the per-CPU scratch array the TC program copies payloads into;
/// userspace sets its `max_entries` to the number of possible CPUs.
pub const SCRATCH_MAP: &str = "SCRATCH";
/// Name of the LRU hash that joins connect() calls to SYNs by socket cookie.
pub const PROCESSES_MAP: &str = "PROCESSES";
/// Name of the read-only global holding the [`CaptureConfig`].
pub const CONFIG_GLOBAL: &str = "CONFIG";
/// Name of the hash of cgroup ids (`u64` to `u8`) the cgroup guard lets
/// connect to a configured port.
pub const GUARD_ALLOW_MAP: &str = "GUARD_ALLOW";
/// Capacity of [`GUARD_ALLOW_MAP`].
pub const GUARD_ALLOW_MAX_ENTRIES: u32 = 4096;

/// Names of the programs in the object file. The two TC programs run the
/// same code and differ only in the [`PacketHeader::hook`] they write.
pub const TC_INGRESS_PROGRAM: &str = "capture_ingress";
pub const TC_EGRESS_PROGRAM: &str = "capture_egress";
pub const FLOW_ORIGIN_PROGRAM: &str = "report_flow_origin";
pub const CONNECT4_PROGRAM: &str = "record_connect4";
pub const CONNECT6_PROGRAM: &str = "record_connect6";

/// Maximum number of TCP ports the programs match.
pub const MAX_PORTS: usize = 8;

/// Payload bytes one packet record can carry. A larger skb payload is cut to
/// this length and counted in [`stat::TRUNCATED`]. It covers the 64 KiB skbs
/// of `lo` ingress and the 128 KiB GSO skbs of egress with room to spare;
/// only BIG TCP (gso_max_size raised above 256 KiB) goes beyond it.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Length of a task's command name (`TASK_COMM_LEN`), NUL included.
pub const COMM_LEN: usize = 16;

/// Record kind tag: a [`PacketHeader`] and its payload.
pub const RECORD_PACKET: u8 = 1;
/// [`PacketHeader::hook`] of a packet arriving on the interface.
pub const HOOK_INGRESS: u8 = 1;
/// [`PacketHeader::hook`] of a packet leaving through the interface.
pub const HOOK_EGRESS: u8 = 2;
/// Record kind tag: a [`FlowOriginRecord`].
pub const RECORD_FLOW_ORIGIN: u8 = 2;
/// Record kind tag: a [`GuardRefusalRecord`].
pub const RECORD_GUARD_REFUSAL: u8 = 3;

/// Address family values of the `family` fields (Linux `AF_INET`, `AF_INET6`).
pub const FAMILY_IPV4: u8 = 2;
pub const FAMILY_IPV6: u8 = 10;

/// [`CaptureConfig::connect_policy`]: connect4/connect6 allow every connect.
pub const CONNECT_POLICY_ALLOW_ALL: u32 = 0;
/// [`CaptureConfig::connect_policy`]: the cgroup guard. connect4/connect6
/// refuse (EPERM) a TCP connect to a configured port from a cgroup that is
/// not in [`GUARD_ALLOW_MAP`], when the socket lives in the network
/// namespace [`CaptureConfig::guard_netns_cookie`] names, and report it with
/// a [`GuardRefusalRecord`].
pub const CONNECT_POLICY_GUARD: u32 = 1;

/// Settings the daemon writes into the object before loading it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    /// TCP ports to capture, host order; unused slots are 0, which matches
    /// nothing because no TCP segment carries port 0.
    pub ports: [u16; MAX_PORTS],
    /// What connect4/connect6 do with connects to a configured port:
    /// [`CONNECT_POLICY_ALLOW_ALL`] or [`CONNECT_POLICY_GUARD`].
    pub connect_policy: u32,
    /// Process id (thread group id, as `bpf_get_current_pid_tgid` returns
    /// it) whose own connects get no flow origin record, or 0 for none.
    /// Enforce mode sets the daemon's own id, because it never accepts its
    /// connections to Odoo, so their origins would only be filed and expire.
    pub ignored_tgid: u32,
    /// With [`CONNECT_POLICY_GUARD`]: the network namespace cookie
    /// (`SO_NETNS_COOKIE`) of Odoo's namespace. The guard applies only to
    /// sockets of that namespace, because the programs sit on the cgroup
    /// root and see every namespace of the host.
    pub guard_netns_cookie: u64,
}

impl CaptureConfig {
    /// Tells whether `port` is one of the configured ports.
    #[inline(always)]
    pub fn matches_port(&self, port: u16) -> bool {
        port_listed(&self.ports, port)
    }
}

/// Tells whether `port` is in `ports`; 0 is never listed, as unused slots
/// hold 0.
#[inline(always)]
pub fn port_listed(ports: &[u16; MAX_PORTS], port: u16) -> bool {
    if port == 0 {
        return false;
    }
    let mut index = 0;
    while index < MAX_PORTS {
        if ports[index] == port {
            return true;
        }
        index += 1;
    }
    false
}

/// A connect to a configured port that the cgroup guard refused, sent by
/// connect4/connect6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardRefusalRecord {
    /// [`RECORD_GUARD_REFUSAL`].
    pub kind: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    pub reserved: [u8; 2],
    /// Thread group id (the process id) that called connect().
    pub pid: u32,
    /// Real user id of that process.
    pub uid: u32,
    /// Destination port, host order.
    pub dport: u16,
    pub reserved2: u16,
    /// Destination address, in the same form as [`PacketHeader::daddr`].
    pub daddr: [u8; 16],
    /// cgroup v2 id of the calling task.
    pub cgroup_id: u64,
    /// `bpf_ktime_get_ns()` when the connect was refused.
    pub timestamp_ns: u64,
    /// Command name of the calling thread, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Names in the steering object (`odoogate-steer`). Its maps are pinned
/// under the pin directory with these names, and its link as [`LINK_PIN`].
pub mod steer {
    /// The sk_lookup program.
    pub const PROGRAM: &str = "steer_to_odoogate";
    /// SockMap with one slot, index [`SOCKET_INDEX`]: odoogate's listener.
    pub const SOCKET_MAP: &str = "STEER_SOCKET";
    pub const SOCKET_INDEX: u32 = 0;
    /// Hash of bypass ports (`u16` host order to `u8`): local source ports of
    /// odoogate's own upstream connections.
    pub const BYPASS_MAP: &str = "STEER_BYPASS";
    /// Capacity of [`BYPASS_MAP`]: upstream connections open at once.
    pub const BYPASS_MAX_ENTRIES: u32 = 16384;
    /// Array with one [`super::SteerConfig`].
    pub const CONFIG_MAP: &str = "STEER_CONFIG";
    /// Per-CPU array of `u64` counters, indexed by [`stat`].
    pub const STATS_MAP: &str = "STEER_STATS";
    /// File name of the pinned sk_lookup link.
    pub const LINK_PIN: &str = "steer_link";

    /// Indices of the steering counters.
    pub mod stat {
        /// Connections handed to odoogate's socket.
        pub const STEERED: u32 = 0;
        /// Connections from a bypass port, left to Odoo's own socket.
        pub const BYPASSED: u32 = 1;
        /// Connections dropped because odoogate's socket is missing (the
        /// daemon is down) or could not take them.
        pub const DROPPED: u32 = 2;
        pub const COUNT: u32 = 4;
    }
}

/// What the steering program reads on every lookup; userspace rewrites it
/// at each install, so a restart with other ports takes effect at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerConfig {
    /// Odoo's TCP ports, host order; unused slots are 0.
    pub ports: [u16; MAX_PORTS],
}

/// Header of a packet record: one TCP segment as the TC program saw it (an
/// skb, which may be a GSO or GRO super-packet carrying many segments).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketHeader {
    /// [`RECORD_PACKET`].
    pub kind: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// The TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10,
    /// URG 0x20).
    pub tcp_flags: u8,
    /// [`HOOK_INGRESS`] or [`HOOK_EGRESS`]: where on the interface the
    /// program ran.
    pub hook: u8,
    /// Interface index the program ran on.
    pub ifindex: u32,
    /// Source address: IPv6, or IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub saddr: [u8; 16],
    /// Destination address, in the same form as `saddr`.
    pub daddr: [u8; 16],
    /// Source port, host order.
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// Sequence number, host order.
    pub seq: u32,
    /// Acknowledgment number, host order (meaningful when ACK is set).
    pub ack: u32,
    /// TCP payload length on the wire (this skb).
    pub payload_len: u32,
    /// Payload bytes that follow this header in the record; less than
    /// `payload_len` only when the payload was truncated.
    pub captured_len: u32,
    /// 1 when the packet is the first fragment of a fragmented IP packet,
    /// so `payload_len` covers only this fragment's part of the payload.
    /// The other fragments carry no TCP header and are not recorded.
    pub first_fragment: u8,
    pub reserved: [u8; 3],
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the program ran.
    pub timestamp_ns: u64,
}

/// Size of [`PacketHeader`]; the payload starts at this offset of a record.
pub const PACKET_HEADER_LEN: usize = size_of::<PacketHeader>();

/// Where a TCP flow came from, sent once per client SYN by the cgroup_skb
/// egress program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowOriginRecord {
    /// [`RECORD_FLOW_ORIGIN`].
    pub kind: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// 1 when `pid`, `uid` and `comm` come from the connect program, 0 when
    /// that program did not see the connect (e.g. it started before odoogate).
    pub process_known: u8,
    pub reserved: u8,
    /// Thread group id (the process id) that called connect().
    pub pid: u32,
    /// Client address, in the same form as [`PacketHeader::saddr`].
    pub saddr: [u8; 16],
    /// Server address.
    pub daddr: [u8; 16],
    /// Client port, host order.
    pub sport: u16,
    /// Server port, host order.
    pub dport: u16,
    /// Real user id of the process that called connect().
    pub uid: u32,
    /// cgroup v2 id of the sending socket (inode of its cgroup directory).
    pub cgroup_id: u64,
    /// `bpf_get_socket_cookie` of the client socket.
    pub socket_cookie: u64,
    /// `bpf_ktime_get_ns()` when the SYN left the socket.
    pub timestamp_ns: u64,
    /// Command name of the thread that called connect(), NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// What the connect programs store per socket cookie in [`PROCESSES_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub uid: u32,
    pub comm: [u8; COMM_LEN],
}

/// Indices of the per-CPU counters in [`STATS_MAP`].
pub mod stat {
    /// TCP packets to or from a configured port that the TC program saw.
    pub const PACKETS: u32 = 0;
    /// Packet records written to the ring buffer.
    pub const RECORDS: u32 = 1;
    /// Records (of either kind) lost because the ring buffer was full.
    pub const RING_FULL: u32 = 2;
    /// Packets whose payload exceeded `MAX_PAYLOAD_BYTES` and was cut.
    pub const TRUNCATED: u32 = 3;
    /// `bpf_skb_load_bytes` failures while copying a payload (the packet
    /// is then not recorded).
    pub const LOAD_ERRORS: u32 = 4;
    /// Packets the programs do not parse: IPv6 with extension headers and
    /// IPv4 fragments. They may or may not belong to a configured port.
    pub const SKIPPED: u32 = 5;
    /// IP or TCP headers that could not be read or were invalid.
    pub const HEADER_ERRORS: u32 = 6;
    /// Flow origin records written to the ring buffer.
    pub const ORIGINS: u32 = 7;
    /// Connects to a configured port whose process the connect programs
    /// stored.
    pub const CONNECTS: u32 = 8;
    /// Connects the cgroup guard refused.
    pub const GUARD_REFUSALS: u32 = 9;
    /// Number of slots in the map (room for more counters).
    pub const COUNT: u32 = 16;
}

// The layouts are part of the kernel/user contract: fail the build when one
// changes size by accident (for example through implicit padding).
const _: () = assert!(size_of::<CaptureConfig>() == 32);
const _: () = assert!(size_of::<GuardRefusalRecord>() == 64);
const _: () = assert!(size_of::<SteerConfig>() == 16);
const _: () = assert!(size_of::<PacketHeader>() == 72);
const _: () = assert!(size_of::<FlowOriginRecord>() == 88);
const _: () = assert!(size_of::<ProcessInfo>() == 24);

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: each type is `#[repr(C)]`, `Copy`, made only of integers and
    // integer arrays, and has no padding (the size assertions above fail the
    // build if padding appears), so every byte pattern is a valid value.
    unsafe impl aya::Pod for CaptureConfig {}
    unsafe impl aya::Pod for PacketHeader {}
    unsafe impl aya::Pod for FlowOriginRecord {}
    unsafe impl aya::Pod for ProcessInfo {}
    unsafe impl aya::Pod for GuardRefusalRecord {}
    unsafe impl aya::Pod for SteerConfig {}
}

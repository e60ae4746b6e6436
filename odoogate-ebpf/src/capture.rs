//! `capture_ingress` and `capture_egress`: the TC classifiers of the
//! observe path, one for each side of an interface.
//!
//! For each TCP packet to or from a configured port it writes one record to
//! `EVENTS`: the [`PacketHeader`] and, when the packet carries payload, the
//! whole payload (up to [`MAX_PAYLOAD_BYTES`]). Packets without payload (SYN,
//! FIN, RST, pure ACK) are recorded too, because reassembly needs the initial
//! sequence number, the end of each direction and the acknowledgments.
//! Each record names the hook it was seen at, because a packet with a
//! source address of this host that arrives on ingress was not sent by it.
//!
//! The program always returns `TC_ACT_PIPE`: it observes and never changes
//! what happens to a packet.

use core::{ffi::c_void, hint::black_box, ptr::addr_of_mut};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, TC_ACT_PIPE},
    helpers::generated::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::{classifier, map},
    maps::Array,
    programs::TcContext,
};
use odoogate_common::{
    FAMILY_IPV4, FAMILY_IPV6, HOOK_EGRESS, HOOK_INGRESS, MAX_PAYLOAD_BYTES, PACKET_HEADER_LEN,
    PacketHeader, RECORD_PACKET, stat,
};

use crate::{CONFIG, EVENTS, count, ipv4_mapped};

/// The programs assume an Ethernet header in front of the IP header, as on
/// `lo`, veth and Ethernet devices.
// NOTE: devices without a link-layer header (tun, WireGuard) put the IP
// header at offset 0, so their packets are not recognised and not captured.
const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPV6_HEADER_LEN: usize = 40;
const IPPROTO_FRAGMENT: u8 = 44;
/// IPv6 extension headers that the programs step over besides a fragment
/// header: Hop-by-Hop Options, Routing and Destination Options. Each
/// starts with the next-header byte and its length in 8-byte units, not
/// counting the first 8 (RFC 8200 sections 4.3 to 4.6).
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_DSTOPTS: u8 = 60;
/// Most extension headers stepped over in front of the TCP header. Linux
/// sets no such limit, so a packet with more is skipped and counted.
const MAX_IPV6_EXTENSION_HEADERS: usize = 8;
const IPV6_FRAGMENT_HEADER_LEN: usize = 8;
const TCP_MIN_HEADER_LEN: usize = 20;

/// One CPU's copy buffer: a record laid out exactly as it goes to the ring.
#[repr(C)]
struct Scratch {
    header: PacketHeader,
    payload: [u8; MAX_PAYLOAD_BYTES],
}

/// One [`Scratch`] per possible CPU, indexed by CPU id (userspace sets
/// `max_entries`). A plain array, because per-CPU array values are limited
/// to 32 KiB.
#[map]
static SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// Records the packets arriving on an interface (TC ingress).
#[classifier]
pub fn capture_ingress(ctx: TcContext) -> i32 {
    capture(&ctx, HOOK_INGRESS)
}

/// Records the packets leaving through an interface (TC egress).
#[classifier]
pub fn capture_egress(ctx: TcContext) -> i32 {
    capture(&ctx, HOOK_EGRESS)
}

/// Records the packet if it is a TCP segment to or from a configured port,
/// marked with the `hook` it was seen at.
#[inline(always)]
fn capture(ctx: &TcContext, hook: u8) -> i32 {
    match locate_segment(ctx) {
        Ok(Some(mut segment)) => {
            segment.header.hook = hook;
            record_segment(ctx, segment)
        }
        Ok(None) => {}
        Err(Unparsed::Skipped) => count(stat::SKIPPED),
        Err(Unparsed::HeaderError) => count(stat::HEADER_ERRORS),
    }
    TC_ACT_PIPE
}

/// Reason a packet that may belong to a configured port was not parsed.
enum Unparsed {
    /// An IP fragment after the first, or IPv6 extension headers other
    /// than option, routing and first fragment headers, or more than
    /// [`MAX_IPV6_EXTENSION_HEADERS`] of them.
    Skipped,
    /// A header could not be read or has an impossible length.
    HeaderError,
}

/// A matching TCP segment: its header fields and where its payload starts.
struct Located {
    header: PacketHeader,
    payload_offset: u32,
}

/// The network-layer facts the TCP parser needs.
struct Network {
    family: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
    /// Offset of the TCP header from the start of the packet.
    l4_offset: usize,
    /// TCP header plus payload length from the IP header, or `None` when the
    /// IP header leaves it to the skb (a zero length field, as BIG TCP sends).
    l4_len: Option<u32>,
    /// The packet is the first fragment of a fragmented IP packet.
    first_fragment: bool,
}

/// Parses the packet; returns `Ok(None)` for anything that is not TCP to or
/// from a configured port.
#[inline(always)]
fn locate_segment(ctx: &TcContext) -> Result<Option<Located>, Unparsed> {
    let ether_type = u16::from_be(load(ctx, 12)?);
    let network = match ether_type {
        ETH_P_IP => parse_ipv4(ctx)?,
        ETH_P_IPV6 => parse_ipv6(ctx)?,
        _ => None,
    };
    match network {
        Some(network) => parse_tcp(ctx, network),
        None => Ok(None),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &TcContext) -> Result<Option<Network>, Unparsed> {
    let version_ihl: u8 = load(ctx, ETH_HLEN)?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 {
        return Err(Unparsed::HeaderError);
    }
    let protocol: u8 = load(ctx, ETH_HLEN + 9)?;
    if protocol != IPPROTO_TCP {
        return Ok(None);
    }

    // A fragment offset or the more-fragments flag: the TCP header is absent
    // or the payload incomplete.
    // The flags and fragment offset field: MF is 0x2000, the offset the low
    // 13 bits. Only the first fragment carries the TCP header.
    let fragment = u16::from_be(load(ctx, ETH_HLEN + 6)?);
    if fragment & 0x1fff != 0 {
        return Err(Unparsed::Skipped);
    }
    let first_fragment = fragment & 0x2000 != 0;

    let total_len = u32::from(u16::from_be(load(ctx, ETH_HLEN + 2)?));
    let l4_len = match total_len {
        0 => None,
        len if len < header_len as u32 => return Err(Unparsed::HeaderError),
        len => Some(len - header_len as u32),
    };

    let source: [u8; 4] = load(ctx, ETH_HLEN + 12)?;
    let destination: [u8; 4] = load(ctx, ETH_HLEN + 16)?;
    Ok(Some(Network {
        family: FAMILY_IPV4,
        saddr: ipv4_mapped(source),
        daddr: ipv4_mapped(destination),
        l4_offset: ETH_HLEN + header_len,
        l4_len,
        first_fragment,
    }))
}

#[inline(always)]
fn parse_ipv6(ctx: &TcContext) -> Result<Option<Network>, Unparsed> {
    // The kernel drops a packet whose version is not 6, whatever its
    // EtherType, so reading it would take in bytes Odoo never gets.
    let version: u8 = load(ctx, ETH_HLEN)?;
    if version >> 4 != 6 {
        return Err(Unparsed::HeaderError);
    }
    let mut next_header: u8 = load(ctx, ETH_HLEN + 6)?;
    let payload_len = u32::from(u16::from_be(load(ctx, ETH_HLEN + 4)?));

    // Step over option and routing headers and one fragment header, in any
    // order, as the kernel reads past them. When it drops the packet for
    // one of them instead, the capture has read a copy that Odoo never
    // gets, which the comparison of copies catches. Skipping them would
    // let a client hide its requests from the capture behind a Destination
    // Options header.
    let mut offset = ETH_HLEN + IPV6_HEADER_LEN;
    // Whether a fragment header was stepped over, and then its M flag.
    let mut fragment: Option<bool> = None;
    for _ in 0..MAX_IPV6_EXTENSION_HEADERS {
        match next_header {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                next_header = load(ctx, offset)?;
                let length: u8 = load(ctx, offset + 1)?;
                offset += (usize::from(length) + 1) * 8;
            }
            IPPROTO_FRAGMENT if fragment.is_none() => {
                // The fragment header: next header, a reserved byte, then
                // the offset in its top 13 bits and M in its lowest. Only
                // the first fragment carries the TCP header.
                next_header = load(ctx, offset)?;
                let offset_and_flags = u16::from_be(load(ctx, offset + 2)?);
                if offset_and_flags & 0xfff8 != 0 {
                    return Err(Unparsed::Skipped);
                }
                // Without M it is an atomic fragment (RFC 6946): the whole
                // packet, which the kernel reads as such.
                fragment = Some(offset_and_flags & 1 != 0);
                offset += IPV6_FRAGMENT_HEADER_LEN;
            }
            _ => break,
        }
    }
    if next_header != IPPROTO_TCP {
        if is_ipv6_extension_header(next_header) {
            return Err(Unparsed::Skipped);
        }
        return Ok(None);
    }

    // A zero payload length leaves the length to the skb, as BIG TCP sends
    // it with a jumbo option in a Hop-by-Hop header. A fragment always
    // states its length.
    let headers_len = (offset - ETH_HLEN - IPV6_HEADER_LEN) as u32;
    if (payload_len == 0 && fragment.is_some()) || (payload_len != 0 && payload_len < headers_len) {
        return Err(Unparsed::HeaderError);
    }
    // Computed on every path: the verifier rejects the store of an
    // `Option` whose `None` leaves its value register unset.
    let after_headers = payload_len.wrapping_sub(headers_len);
    let l4_len = (payload_len != 0).then_some(after_headers);

    Ok(Some(Network {
        family: FAMILY_IPV6,
        saddr: load(ctx, ETH_HLEN + 8)?,
        daddr: load(ctx, ETH_HLEN + 24)?,
        l4_offset: offset,
        l4_len,
        first_fragment: fragment == Some(true),
    }))
}

/// Next-header values that announce an IPv6 extension header (RFC 8200
/// section 4 and the IANA registry). The programs step over the option,
/// routing and fragment headers only, and skip packets with any other.
#[inline(always)]
fn is_ipv6_extension_header(next_header: u8) -> bool {
    matches!(next_header, IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | 50 | 51 | IPPROTO_DSTOPTS | 135 | 139 | 140 | 253 | 254)
}

#[inline(always)]
fn parse_tcp(ctx: &TcContext, network: Network) -> Result<Option<Located>, Unparsed> {
    let l4 = network.l4_offset;
    let sport = u16::from_be(load(ctx, l4)?);
    let dport = u16::from_be(load(ctx, l4 + 2)?);
    let config = CONFIG.load();
    if !config.matches_port(sport) && !config.matches_port(dport) {
        return Ok(None);
    }

    let data_offset: u8 = load(ctx, l4 + 12)?;
    let tcp_header_len = usize::from(data_offset >> 4) * 4;
    let skb_len = ctx.len() as usize;
    if tcp_header_len < TCP_MIN_HEADER_LEN || skb_len < l4 + tcp_header_len {
        return Err(Unparsed::HeaderError);
    }

    // Trust the IP length field over the skb length, because a short
    // Ethernet frame arrives padded to 60 bytes. Fall back to the skb when the
    // field is zero or larger than the skb.
    let skb_l4_len = (skb_len - l4) as u32;
    let l4_len = match network.l4_len {
        Some(len) if len <= skb_l4_len => len,
        _ => skb_l4_len,
    };
    if l4_len < tcp_header_len as u32 {
        return Err(Unparsed::HeaderError);
    }

    let header = PacketHeader {
        kind: RECORD_PACKET,
        family: network.family,
        tcp_flags: load(ctx, l4 + 13)?,
        hook: 0,
        ifindex: ifindex(ctx),
        saddr: network.saddr,
        daddr: network.daddr,
        sport,
        dport,
        seq: u32::from_be(load(ctx, l4 + 4)?),
        ack: u32::from_be(load(ctx, l4 + 8)?),
        payload_len: l4_len - tcp_header_len as u32,
        captured_len: 0,
        first_fragment: u8::from(network.first_fragment),
        reserved: [0; 3],
        // SAFETY: a helper without arguments or side effects.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    };
    Ok(Some(Located {
        header,
        payload_offset: (l4 + tcp_header_len) as u32,
    }))
}

/// Writes the segment's record and counts the outcome.
#[inline(always)]
fn record_segment(ctx: &TcContext, segment: Located) {
    count(stat::PACKETS);
    let written = if segment.header.payload_len == 0 {
        EVENTS.output::<PacketHeader>(&segment.header, 0).is_ok()
    } else {
        match copy_payload(ctx, segment) {
            Some(record) => EVENTS.output::<[u8]>(record, 0).is_ok(),
            None => return,
        }
    };
    count(if written {
        stat::RECORDS
    } else {
        stat::RING_FULL
    });
}

/// Copies header and payload into this CPU's scratch buffer and returns the
/// record bytes, or `None` (counted) when the copy failed. The caller
/// guarantees `payload_len > 0`.
#[inline(always)]
fn copy_payload(ctx: &TcContext, segment: Located) -> Option<&'static [u8]> {
    // SAFETY: a helper without arguments or side effects.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        count(stat::LOAD_ERRORS);
        return None;
    };

    // The verifier accepts a runtime length for bpf_skb_load_bytes only when
    // the very register passed is bounded to [1, MAX]: clamp `len - 1` to
    // [0, MAX - 1] and pass `last + 1`. A clamp of `len` followed by a
    // `len > 0` test is rejected, because LLVM rewrites the zero test.
    let mut last = u64::from(segment.header.payload_len - 1);
    if last > (MAX_PAYLOAD_BYTES - 1) as u64 {
        last = (MAX_PAYLOAD_BYTES - 1) as u64;
        count(stat::TRUNCATED);
    }
    let last = black_box(last);
    if last >= MAX_PAYLOAD_BYTES as u64 {
        return None;
    }
    let captured = last + 1;

    // SAFETY: `scratch` points to this CPU's map value, which outlives the
    // program run. TC programs run with bottom halves disabled, so no other
    // TC program runs on this CPU until this one returns and the buffer is
    // not shared.
    // NOTE: on PREEMPT_RT kernels softirqs are preemptible threads, and two
    // runs on one CPU could interleave in this buffer.
    let status = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr() as *const c_void,
            segment.payload_offset,
            addr_of_mut!((*scratch).payload) as *mut c_void,
            captured as u32,
        )
    };
    if status != 0 {
        count(stat::LOAD_ERRORS);
        return None;
    }
    // SAFETY: as above; the record is the header followed by `captured`
    // payload bytes, all inside the map value.
    unsafe {
        (*scratch).header = segment.header;
        (*scratch).header.captured_len = captured as u32;
        Some(core::slice::from_raw_parts(
            scratch as *const u8,
            PACKET_HEADER_LEN + captured as usize,
        ))
    }
}

#[inline(always)]
fn load<T>(ctx: &TcContext, offset: usize) -> Result<T, Unparsed> {
    ctx.load(offset).map_err(|_| Unparsed::HeaderError)
}

#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: the context pointer is the program's valid __sk_buff.
    unsafe { (*(ctx.as_ptr() as *const __sk_buff)).ifindex }
}

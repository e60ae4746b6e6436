//! `steer_to_odoogate`: the sk_lookup program of enforce mode.
//!
//! It runs when a TCP SYN (or a UDP datagram) looks for a local socket in the
//! network namespace it is attached to. For TCP to one of Odoo's ports, on
//! any local address, it hands the connection to odoogate's listening socket
//! (slot 0 of `STEER_SOCKET`) with `bpf_sk_assign`, so every client reaches
//! odoogate while it keeps dialing Odoo's address and port. Two exceptions:
//!
//! - Bypass: a connection that arrives on the loopback device from a remote
//!   port in `STEER_BYPASS` is left to the normal lookup and reaches Odoo.
//!   Those are the local source ports odoogate bound for its own upstream
//!   connections. The loopback condition keeps a remote client that picks
//!   the same source port from going around odoogate: its packets come in
//!   on another device.
//! - Fail closed: when slot 0 is empty (odoogate's socket was closed, the
//!   daemon is down) or the assign fails, the program returns `SK_DROP`.
//!   The socket lookup then fails and the kernel replies to the SYN with a
//!   reset, so the client sees the connection refused and a connection
//!   never reaches Odoo unchecked.
//!
//! Connections established before the program ran are not looked up again
//! and are not touched. Every outcome is a counter in `STEER_STATS`.
#![no_std]
#![no_main]

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::sk_action::{SK_DROP, SK_PASS},
    macros::{map, sk_lookup},
    maps::{Array, HashMap, PerCpuArray, SockMap},
    programs::SkLookupContext,
};
use odoogate_common::{
    SteerConfig, port_listed,
    steer::{BYPASS_MAX_ENTRIES, SOCKET_INDEX, stat},
};

const IPPROTO_TCP: u32 = 6;

/// `LOOPBACK_IFINDEX`: the loopback device is the first device of every
/// network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// Slot 0: odoogate's listening socket.
#[map]
static STEER_SOCKET: SockMap = SockMap::with_max_entries(1, 0);

/// Local source ports of odoogate's upstream connections (host order).
#[map]
static STEER_BYPASS: HashMap<u16, u8> = HashMap::with_max_entries(BYPASS_MAX_ENTRIES, 0);

/// Odoo's ports; userspace writes slot 0 at every install.
#[map]
static STEER_CONFIG: Array<SteerConfig> = Array::with_max_entries(1, 0);

/// Counters, indexed by `odoogate_common::steer::stat`.
#[map]
static STEER_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[sk_lookup]
pub fn steer_to_odoogate(ctx: SkLookupContext) -> u32 {
    let lookup = ctx.lookup;
    // SAFETY: the context is valid for the program run; these are plain
    // field loads the verifier allows. `remote_port` is in network order,
    // `local_port` in host order.
    let (protocol, local_port, remote_port, ingress_ifindex) = unsafe {
        (
            read_volatile(addr_of!((*lookup).protocol)),
            read_volatile(addr_of!((*lookup).local_port)),
            read_volatile(addr_of!((*lookup).remote_port)),
            read_volatile(addr_of!((*lookup).ingress_ifindex)),
        )
    };
    if protocol != IPPROTO_TCP || !is_odoo_port(local_port) {
        return SK_PASS;
    }
    let remote_port = u16::from_be(remote_port);
    if ingress_ifindex == LOOPBACK_IFINDEX && STEER_BYPASS.get_ptr(remote_port).is_some() {
        count(stat::BYPASSED);
        return SK_PASS;
    }
    match STEER_SOCKET.redirect_sk_lookup(&ctx, SOCKET_INDEX, 0) {
        Ok(()) => {
            count(stat::STEERED);
            SK_PASS
        }
        Err(_) => {
            count(stat::DROPPED);
            SK_DROP
        }
    }
}

#[inline(always)]
fn is_odoo_port(local_port: u32) -> bool {
    let Ok(port) = u16::try_from(local_port) else {
        return false;
    };
    match STEER_CONFIG.get(0) {
        Some(config) => port_listed(&config.ports, port),
        None => false,
    }
}

/// Adds one to this CPU's slot of a counter.
// NOTE: a plain read-modify-write, as in the capture programs: core has no
// fetch_add on the BPF target.
#[inline(always)]
fn count(index: u32) {
    if let Some(slot) = STEER_STATS.get_ptr_mut(index) {
        // SAFETY: the map returns a valid, aligned pointer to this CPU's u64
        // slot, which lives as long as the map.
        unsafe { *slot += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

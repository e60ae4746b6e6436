//! odoogate's eBPF programs.
//!
//! - `capture_ingress` / `capture_egress` (TC classifiers, attached with
//!   TCX): copy every TCP packet to or from a configured port, whole payload
//!   included, into the `EVENTS` ring buffer.
//! - `report_flow_origin` (cgroup_skb egress on the cgroup v2 root): on a
//!   client SYN to a configured port, reports the sending socket's cgroup and
//!   the process that called connect().
//! - `record_connect4` / `record_connect6` (cgroup_sock_addr on the cgroup v2
//!   root): remember which process connects to a configured port, keyed by
//!   socket cookie, for `report_flow_origin`; with the cgroup guard on, they
//!   also refuse connects from cgroups outside `GUARD_ALLOW` (see `guard`).
//!
//! The sk_lookup steering program is a separate object (`steer.rs`, binary
//! `odoogate-steer`), because its link and maps are pinned in bpffs and
//! outlive the daemon, while these programs live and die with it.
//!
//! The record layouts and map names live in `odoogate-common`. The programs
//! never log: every outcome is a counter in `STATS`.
#![no_std]
#![no_main]

mod capture;
mod guard;
mod origin;

use aya_ebpf::{
    Global,
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use odoogate_common::{CaptureConfig, ProcessInfo, stat};

/// The capture settings; userspace overrides the whole value at load time.
#[unsafe(no_mangle)]
static CONFIG: Global<CaptureConfig> = Global::new(CaptureConfig {
    ports: [0; odoogate_common::MAX_PORTS],
    connect_policy: odoogate_common::CONNECT_POLICY_ALLOW_ALL,
    ignored_tgid: 0,
    guard_netns_cookie: 0,
});

/// Every record, both kinds. Userspace sets the size (a power of two).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

/// Counters, indexed by `odoogate_common::stat`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Processes that connected to a configured port, by socket cookie. An LRU
/// map, so entries of closed sockets age out without a delete.
#[map]
static PROCESSES: LruHashMap<u64, ProcessInfo> = LruHashMap::with_max_entries(16384, 0);

/// cgroup ids the guard lets connect to a configured port; userspace keeps
/// it in sync with `[guard] allow_cgroups`.
#[map]
static GUARD_ALLOW: HashMap<u64, u8> =
    HashMap::with_max_entries(odoogate_common::GUARD_ALLOW_MAX_ENTRIES, 0);

/// Adds one to a counter.
#[inline(always)]
fn count(index: u32) {
    add(index, 1);
}

/// Adds `value` to this CPU's slot of a counter.
// NOTE: the add is a plain read-modify-write, because core's atomics have no
// fetch_add on the BPF target. A program preempted between the read and the
// write by another program on the same CPU (possible on preemptible kernels)
// loses one of the two increments.
#[inline(always)]
fn add(index: u32, value: u64) {
    if let Some(slot) = STATS.get_ptr_mut(index) {
        // SAFETY: the map returns a valid, aligned pointer to this CPU's u64
        // slot, which lives as long as the map.
        unsafe { *slot += value };
    }
}

/// Returns the IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) the records use.
#[inline(always)]
fn ipv4_mapped(address: [u8; 4]) -> [u8; 16] {
    let [a, b, c, d] = address;
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

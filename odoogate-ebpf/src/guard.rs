//! The cgroup guard: which local processes may connect to Odoo's port.
//!
//! In enforce mode a process on the Odoo host could connect to Odoo's port
//! directly and go around odoogate. With [`CONNECT_POLICY_GUARD`], the
//! connect4/connect6 programs refuse a TCP connect to a configured port when
//! the calling task's cgroup is not in `GUARD_ALLOW`; the caller's connect()
//! fails with EPERM and a [`GuardRefusalRecord`] goes to `EVENTS`.
//!
//! The guard applies only to sockets in the network namespace whose cookie
//! is [`CaptureConfig::guard_netns_cookie`] (Odoo's), because the programs
//! are attached to the cgroup v2 root and see every namespace. It judges the
//! task that calls connect(), not the one that created the socket.
//!
//! [`CaptureConfig::guard_netns_cookie`]: odoogate_common::CaptureConfig

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    EbpfContext as _,
    bindings::bpf_sock_addr,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_ktime_get_ns},
    },
    programs::SockAddrContext,
};
use odoogate_common::{
    COMM_LEN, CONNECT_POLICY_GUARD, FAMILY_IPV4, FAMILY_IPV6, GuardRefusalRecord,
    RECORD_GUARD_REFUSAL, stat,
};

use crate::{CONFIG, EVENTS, GUARD_ALLOW, count, ipv4_mapped};

/// cgroup_sock_addr verdicts: 1 lets the connect through, 0 makes it fail
/// with EPERM.
pub const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

/// The connect hook that runs. Each hook may read only its own address fields.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Connect4,
    Connect6,
}

/// Returns the verdict on a TCP connect to the configured port `port`.
#[inline(always)]
pub fn verdict(ctx: &SockAddrContext, hook: Hook, port: u16) -> i32 {
    let config = CONFIG.load();
    if config.connect_policy != CONNECT_POLICY_GUARD {
        return ALLOW;
    }
    // SAFETY: the helpers read the socket behind the valid context and the
    // current task.
    let (netns, cgroup_id) = unsafe {
        (
            bpf_get_netns_cookie(ctx.as_ptr()),
            bpf_get_current_cgroup_id(),
        )
    };
    if netns != config.guard_netns_cookie || GUARD_ALLOW.get_ptr(cgroup_id).is_some() {
        return ALLOW;
    }
    count(stat::GUARD_REFUSALS);
    report(ctx, hook, port, cgroup_id);
    REFUSE
}

/// Writes the refusal record; a full ring only loses the record (counted),
/// never the refusal.
#[inline(always)]
fn report(ctx: &SockAddrContext, hook: Hook, port: u16, cgroup_id: u64) {
    let (family, daddr) = destination(ctx, hook);
    let record = GuardRefusalRecord {
        kind: RECORD_GUARD_REFUSAL,
        family,
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: bpf_get_current_uid_gid() as u32,
        dport: port,
        daddr,
        cgroup_id,
        // SAFETY: a helper without arguments or side effects.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        ..GuardRefusalRecord::default()
    };
    if EVENTS.output::<GuardRefusalRecord>(&record, 0).is_err() {
        count(stat::RING_FULL);
    }
}

/// Reads the connect's destination address in the records' form. The
/// verifier rejects a load of `user_ip6` in connect4 and of `user_ip4` in
/// connect6, so `hook` picks the field.
#[inline(always)]
fn destination(ctx: &SockAddrContext, hook: Hook) -> (u8, [u8; 16]) {
    let address: *const bpf_sock_addr = ctx.sock_addr;
    // SAFETY: the context is valid for the program run; the verifier allows
    // 4-byte loads of these fields, which hold the address in network order.
    unsafe {
        if hook == Hook::Connect4 {
            let ip4 = read_volatile(addr_of!((*address).user_ip4));
            return (FAMILY_IPV4, ipv4_mapped(ip4.to_ne_bytes()));
        }
        let mut daddr = [0u8; 16];
        let mut word = 0;
        while word < 4 {
            let bytes = read_volatile(addr_of!((*address).user_ip6[word])).to_ne_bytes();
            daddr[word * 4..word * 4 + 4].copy_from_slice(&bytes);
            word += 1;
        }
        (FAMILY_IPV6, daddr)
    }
}

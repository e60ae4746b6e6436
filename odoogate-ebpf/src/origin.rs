//! Flow origins: which cgroup and process opened a connection to Odoo.
//!
//! `record_connect4` and `record_connect6` run when a process calls
//! connect(). For a TCP connect to a configured port, they store the process
//! (pid, uid, command name) in `PROCESSES` under the socket cookie. When the
//! connection's SYN leaves the socket, `report_flow_origin` reads the
//! socket's cgroup id, joins the stored process by the same cookie, and
//! writes one [`FlowOriginRecord`], unless the process is the one
//! `CaptureConfig::ignored_tgid` names. The join happens in the kernel because
//! the connect hook does not know the source port yet and the SYN hook does
//! not run in the caller's context.
//!
//! All three are attached to the cgroup v2 root, so they see every process
//! of the host in every network namespace. `report_flow_origin` always
//! allows the packet; the connect programs allow the connect unless the
//! cgroup guard (`guard`) refuses it.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, bpf_sock_addr},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_skb_cgroup_id},
    },
    macros::{cgroup_skb, cgroup_sock_addr},
    programs::{SkBuffContext, SockAddrContext},
};
use odoogate_common::{
    COMM_LEN, FAMILY_IPV4, FAMILY_IPV6, FlowOriginRecord, ProcessInfo, RECORD_FLOW_ORIGIN, stat,
};

use crate::{CONFIG, EVENTS, PROCESSES, count, guard, ipv4_mapped};

/// cgroup_skb verdict that lets the packet through.
const ALLOW: i32 = 1;
const IPPROTO_TCP: u8 = 6;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

#[cgroup_sock_addr(connect4)]
pub fn record_connect4(ctx: SockAddrContext) -> i32 {
    on_connect(&ctx, guard::Hook::Connect4)
}

#[cgroup_sock_addr(connect6)]
pub fn record_connect6(ctx: SockAddrContext) -> i32 {
    on_connect(&ctx, guard::Hook::Connect6)
}

/// For a TCP connect to a configured port: returns the guard's verdict and,
/// when the connect goes ahead, stores the calling process. Every other
/// connect is allowed untouched.
#[inline(always)]
fn on_connect(ctx: &SockAddrContext, hook: guard::Hook) -> i32 {
    let Some(port) = configured_tcp_port(ctx) else {
        return guard::ALLOW;
    };
    let verdict = guard::verdict(ctx, hook, port);
    if verdict == guard::ALLOW {
        remember_process(ctx);
    }
    verdict
}

/// Returns the destination port (host order) of a TCP connect to a
/// configured port, `None` for any other connect.
#[inline(always)]
fn configured_tcp_port(ctx: &SockAddrContext) -> Option<u16> {
    let address: *const bpf_sock_addr = ctx.sock_addr;
    // SAFETY: the context is valid for the program run. The verifier allows
    // only 4-byte loads of these fields, and `user_port` contains the port in
    // network order in its low 16 bits.
    let (protocol, user_port) = unsafe {
        (
            read_volatile(addr_of!((*address).protocol)),
            read_volatile(addr_of!((*address).user_port)),
        )
    };
    let port = u16::from_be(user_port as u16);
    (protocol == u32::from(IPPROTO_TCP) && CONFIG.load().matches_port(port)).then_some(port)
}

/// Stores the calling process under the socket cookie.
#[inline(always)]
fn remember_process(ctx: &SockAddrContext) {
    let process = ProcessInfo {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: bpf_get_current_uid_gid() as u32,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    // SAFETY: the helper reads the socket behind the valid context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if PROCESSES.insert(cookie, process, 0).is_ok() {
        count(stat::CONNECTS);
    }
}

#[cgroup_skb(egress)]
pub fn report_flow_origin(ctx: SkBuffContext) -> i32 {
    if let Some(origin) = locate_client_syn(&ctx) {
        let written = EVENTS.output::<FlowOriginRecord>(&origin, 0).is_ok();
        count(if written {
            stat::ORIGINS
        } else {
            stat::RING_FULL
        });
    }
    ALLOW
}

/// Builds the origin record when the packet is a SYN without ACK to a
/// configured port; `None` for every other packet. cgroup_skb programs see
/// the packet from its IP header on.
#[inline(always)]
fn locate_client_syn(ctx: &SkBuffContext) -> Option<FlowOriginRecord> {
    let version_ihl: u8 = ctx.load(0).ok()?;
    let mut origin = FlowOriginRecord {
        kind: RECORD_FLOW_ORIGIN,
        ..FlowOriginRecord::default()
    };
    let l4 = match version_ihl >> 4 {
        4 => {
            let protocol: u8 = ctx.load(9).ok()?;
            if protocol != IPPROTO_TCP {
                return None;
            }
            origin.family = FAMILY_IPV4;
            origin.saddr = ipv4_mapped(ctx.load(12).ok()?);
            origin.daddr = ipv4_mapped(ctx.load(16).ok()?);
            usize::from(version_ihl & 0x0f) * 4
        }
        6 => {
            // Extension headers in front of a SYN are not walked.
            let next_header: u8 = ctx.load(6).ok()?;
            if next_header != IPPROTO_TCP {
                return None;
            }
            origin.family = FAMILY_IPV6;
            origin.saddr = ctx.load(8).ok()?;
            origin.daddr = ctx.load(24).ok()?;
            40
        }
        _ => return None,
    };

    origin.dport = u16::from_be(ctx.load(l4 + 2).ok()?);
    let flags: u8 = ctx.load(l4 + 13).ok()?;
    if flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) != TCP_FLAG_SYN
        || !CONFIG.load().matches_port(origin.dport)
    {
        return None;
    }
    origin.sport = u16::from_be(ctx.load(l4).ok()?);

    let skb = ctx.as_ptr() as *mut __sk_buff;
    // SAFETY: the helpers read the socket behind the valid context and the
    // kernel clock.
    unsafe {
        origin.cgroup_id = bpf_skb_cgroup_id(skb);
        origin.socket_cookie = bpf_get_socket_cookie(ctx.as_ptr());
        origin.timestamp_ns = bpf_ktime_get_ns();
    }
    if let Some(process) = PROCESSES.get_ptr(origin.socket_cookie) {
        // SAFETY: the pointer is a valid map value; a concurrent update of
        // the same cookie could only come from the same socket's connect.
        let process = unsafe { *process };
        let ignored_tgid = CONFIG.load().ignored_tgid;
        if ignored_tgid != 0 && process.pid == ignored_tgid {
            return None;
        }
        origin.process_known = 1;
        origin.pid = process.pid;
        origin.uid = process.uid;
        origin.comm = process.comm;
    }
    Some(origin)
}

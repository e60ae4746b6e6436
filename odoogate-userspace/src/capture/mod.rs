//! The observe path's capture stage: eBPF programs, the ring buffer reader,
//! the flow table and TCP reassembly.
//!
//! `ebpf` loads and attaches the programs, `ring` turns ring buffer records
//! into [`CaptureEvent`]s on its own thread, `cgroup` maps cgroup ids to
//! paths; `flow` keeps one entry per TCP connection and feeds
//! `reassembly`, which turns segments into ordered bytes per direction.

pub mod cgroup;
pub mod ebpf;
pub mod event;
pub mod flow;
pub mod reassembly;
pub mod ring;

pub use event::{
    CaptureEvent, CaptureStats, Endpoint, FlowKey, FlowOrigin, GuardRefusal, Segment, TcpFlags,
};

use std::net::IpAddr;

/// Lists the addresses of the calling thread's network namespace, which
/// the flow table checks segments arriving from the network against.
pub fn host_addresses() -> std::io::Result<Vec<IpAddr>> {
    let interfaces = nix::ifaddrs::getifaddrs()?;
    Ok(interfaces.filter_map(|interface| interface.address.as_ref().and_then(ip_of)).collect())
}

/// Returns the IP address of an IPv4 or IPv6 socket address.
pub(crate) fn ip_of(address: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
        (Some(v4), _) => Some(IpAddr::V4(v4.ip())),
        (_, Some(v6)) => Some(IpAddr::V6(v6.ip())),
        _ => None,
    }
}

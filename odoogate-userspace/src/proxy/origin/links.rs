//! The network interfaces of the calling thread's network namespace, with
//! their kind and the bridge they belong to, read with rtnetlink's
//! `RTM_GETLINK` dump.
//!
//! sysfs would be simpler, but `/sys/class/net` lists the interfaces of
//! the namespace that mounted it, which is not the daemon's when the
//! daemon joined another namespace (as `ip netns exec` without a new
//! mount of sysfs, or a test, does).

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The driver's kind (`IFLA_INFO_KIND`), such as `veth` or `bridge`.
    /// Physical interfaces have none.
    pub kind: Option<String>,
    /// The index of the bridge (or bond) this interface is a port of.
    pub master: Option<u32>,
}

// From the kernel's uapi headers (linux/rtnetlink.h, linux/if_link.h),
// because not every libc release exports them.
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
/// Clears the nested and byte-order flags of an attribute's type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Length of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// Length of `struct ifinfomsg`.
const IFINFO_LEN: usize = 16;
/// The request's sequence number, which replies carry back.
const SEQUENCE: u32 = 1;

/// Lists the interfaces of the calling thread's network namespace.
pub fn list() -> io::Result<Vec<Link>> {
    // SAFETY: a plain socket call, whose descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    let request = dump_request();
    // SAFETY: `request` is readable memory of its length. An unbound
    // netlink socket sends to the kernel.
    let sent = unsafe { libc::send(socket.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut links = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buffer` is writable memory of its length.
        let read = unsafe { libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        let read = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the link dump ended without NLMSG_DONE"));
        }
        if parse_reply(&buffer[..read], &mut links)? == Reply::Done {
            return Ok(links);
        }
    }
}

/// Builds an `RTM_GETLINK` dump request for every address family.
fn dump_request() -> Vec<u8> {
    let length = (HEADER_LEN + IFINFO_LEN) as u32;
    let mut request = Vec::with_capacity(HEADER_LEN + IFINFO_LEN);
    request.extend_from_slice(&length.to_ne_bytes());
    request.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&SEQUENCE.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg, all zero: AF_UNSPEC, any type, index and flags.
    request.resize(HEADER_LEN + IFINFO_LEN, 0);
    request
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    More,
    Done,
}

/// Reads the messages of one `recv` into `links`. Returns whether the dump
/// ended.
fn parse_reply(mut bytes: &[u8], links: &mut Vec<Link>) -> io::Result<Reply> {
    while bytes.len() >= HEADER_LEN {
        let length = u32_at(bytes, 0) as usize;
        let kind = u16_at(bytes, 4);
        if length < HEADER_LEN || length > bytes.len() {
            return Err(malformed("a message length past the reply"));
        }
        let message = &bytes[HEADER_LEN..length];
        match kind {
            NLMSG_DONE => return Ok(Reply::Done),
            NLMSG_ERROR => {
                let code = message.get(..4).map(|code| i32::from_ne_bytes(code.try_into().unwrap_or_default()));
                return Err(match code {
                    Some(code) if code < 0 => io::Error::from_raw_os_error(-code),
                    _ => malformed("an error message without an error"),
                });
            }
            RTM_NEWLINK if u32_at(bytes, 8) == SEQUENCE => links.push(parse_link(message)?),
            _ => {}
        }
        bytes = bytes.get(align(length)..).unwrap_or_default();
    }
    Ok(Reply::More)
}

/// Reads one `RTM_NEWLINK` message: `struct ifinfomsg` and its attributes.
fn parse_link(message: &[u8]) -> io::Result<Link> {
    if message.len() < IFINFO_LEN {
        return Err(malformed("a link message shorter than struct ifinfomsg"));
    }
    let mut link = Link { index: u32_at(message, 4), name: String::new(), kind: None, master: None };
    for (kind, payload) in attributes(&message[IFINFO_LEN..]) {
        match kind {
            IFLA_IFNAME => link.name = c_string(payload),
            IFLA_MASTER if payload.len() >= 4 => link.master = Some(u32_at(payload, 0)),
            IFLA_LINKINFO => {
                link.kind = attributes(payload).find(|&(kind, _)| kind == IFLA_INFO_KIND).map(|(_, kind)| c_string(kind));
            }
            _ => {}
        }
    }
    Ok(link)
}

/// Iterates over the attributes (`struct rtattr`) in `bytes`, giving each
/// one's type, without flags, and payload. Stops at the first one that
/// does not fit.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let length = usize::from(u16_at(bytes, 0));
        let kind = u16_at(bytes, 2) & NLA_TYPE_MASK;
        if length < 4 || length > bytes.len() {
            return None;
        }
        let payload = &bytes[4..length];
        bytes = bytes.get(align(length)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// Rounds `length` up to netlink's 4-byte alignment.
fn align(length: usize) -> usize {
    length.next_multiple_of(4)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads a NUL-terminated string attribute.
fn c_string(payload: &[u8]) -> String {
    let end = payload.iter().position(|&byte| byte == 0).unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed rtnetlink reply: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(payload);
        bytes.resize(align(bytes.len()), 0);
        bytes
    }

    fn message(kind: u16, sequence: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&0u16.to_ne_bytes());
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(body);
        bytes.resize(align(bytes.len()), 0);
        bytes
    }

    fn link_message(index: u32, name: &str, kind: Option<&str>, master: Option<u32>) -> Vec<u8> {
        let mut body = vec![0u8; IFINFO_LEN];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body.extend(attribute(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        if let Some(master) = master {
            body.extend(attribute(IFLA_MASTER, &master.to_ne_bytes()));
        }
        if let Some(kind) = kind {
            // The kernel marks IFLA_LINKINFO as nested.
            body.extend(attribute(IFLA_LINKINFO | 0x8000, &attribute(IFLA_INFO_KIND, format!("{kind}\0").as_bytes())));
        }
        message(RTM_NEWLINK, SEQUENCE, &body)
    }

    #[test]
    fn reads_names_kinds_and_masters() {
        let mut reply = link_message(1, "lo", None, None);
        reply.extend(link_message(4, "docker0", Some("bridge"), None));
        reply.extend(link_message(5, "veth1a2b", Some("veth"), Some(4)));
        let mut links = Vec::new();
        assert_eq!(parse_reply(&reply, &mut links).unwrap(), Reply::More);
        assert_eq!(parse_reply(&message(NLMSG_DONE, SEQUENCE, &[0; 4]), &mut links).unwrap(), Reply::Done);
        assert_eq!(
            links,
            [
                Link { index: 1, name: "lo".into(), kind: None, master: None },
                Link { index: 4, name: "docker0".into(), kind: Some("bridge".into()), master: None },
                Link { index: 5, name: "veth1a2b".into(), kind: Some("veth".into()), master: Some(4) },
            ]
        );
    }

    #[test]
    fn error_and_truncated_replies_are_errors() {
        let error = message(NLMSG_ERROR, SEQUENCE, &(-libc::EPERM).to_ne_bytes());
        let mut links = Vec::new();
        assert_eq!(parse_reply(&error, &mut links).unwrap_err().raw_os_error(), Some(libc::EPERM));

        let mut truncated = link_message(2, "eth0", None, None);
        truncated.truncate(HEADER_LEN + 4);
        assert_eq!(parse_reply(&truncated, &mut links).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(links.is_empty());
    }

    #[test]
    fn lists_loopback() {
        let links = list().expect("list this namespace's links");
        assert!(links.iter().any(|link| link.name == "lo" && link.kind.is_none()), "{links:?}");
    }
}

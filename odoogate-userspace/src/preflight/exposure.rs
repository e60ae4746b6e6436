//! Finds Odoo listening where clients can reach it without odoogate.
//!
//! In listen mode odoogate receives only the connections made to
//! `proxy.listen`. When Odoo also listens on an address other than
//! loopback, a client that has a real credential can call Odoo there,
//! and no record is written. The daemon reads `/proc/net/tcp` and
//! `/proc/net/tcp6` of its own network namespace at start and warns about
//! such listeners. A firewall rule may still block them; odoogate cannot
//! see that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP state `LISTEN` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Returns the listening sockets on `port` in the `/proc/net/tcp` and
/// `/proc/net/tcp6` tables whose address is not loopback. Lines that do
/// not parse are skipped.
pub fn exposed_listeners(tcp: &str, tcp6: &str, port: u16) -> Vec<SocketAddr> {
    let mut exposed: Vec<SocketAddr> = tcp
        .lines()
        .chain(tcp6.lines())
        .filter_map(listening_address)
        .filter(|address| address.port() == port && !address.ip().is_loopback() && !is_mapped_loopback(address.ip()))
        .collect();
    exposed.sort();
    exposed.dedup();
    exposed
}

/// Reads the listeners on `port` of this network namespace that are not on
/// loopback. A table that cannot be read counts as empty.
pub fn read_exposed_listeners(port: u16) -> Vec<SocketAddr> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    exposed_listeners(&read("/proc/net/tcp"), &read("/proc/net/tcp6"), port)
}

/// Parses one line of a table and returns its local address when the
/// socket listens.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state) = (fields.get(1)?, fields.get(3)?);
    if *state != TCP_LISTEN {
        return None;
    }
    let (address, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::new(kernel_address(address)?, port))
}

/// Decodes an address as the kernel prints it: the 32-bit words of the
/// address in hex, each in the host's byte order.
fn kernel_address(hex: &str) -> Option<IpAddr> {
    let word = |index: usize| -> Option<[u8; 4]> {
        let text = hex.get(index * 8..index * 8 + 8)?;
        Some(u32::from_str_radix(text, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut octets = [0u8; 16];
            for index in 0..4 {
                octets[index * 4..index * 4 + 4].copy_from_slice(&word(index)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Tells whether `ip` is `::ffff:127.x.y.z`, loopback written as IPv6.
fn is_mapped_loopback(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F95 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F95 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F96 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
   3: 0200000A:1F95 0100000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 100 0 0 10 0
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F95 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1F95 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn wildcard_listeners_are_exposed() {
        let exposed = exposed_listeners(TCP, TCP6, 8085);

        assert_eq!(exposed, ["0.0.0.0:8085".parse().unwrap(), "[::]:8085".parse().unwrap()] as [SocketAddr; 2]);
    }

    #[test]
    fn loopback_and_other_ports_are_not() {
        let loopback_only: String = TCP.lines().take(2).map(|line| format!("{line}\n")).collect();

        assert!(exposed_listeners(&loopback_only, "", 8085).is_empty());
        assert!(exposed_listeners(TCP, "", 8086).is_empty(), "127.0.0.1:8086 is loopback");
        assert!(exposed_listeners(TCP, TCP6, 9000).is_empty());
    }

    #[test]
    fn established_sockets_are_not_listeners() {
        let established: String = TCP.lines().take(1).chain(TCP.lines().skip(4)).map(|line| format!("{line}\n")).collect();

        assert!(exposed_listeners(&established, "", 8085).is_empty());
    }

    #[test]
    fn addresses_decode_in_host_order() {
        assert_eq!(kernel_address("0100007F"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(kernel_address("00000000000000000000000001000000"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(kernel_address("0000000000000000FFFF00000100007F"), Some("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_mapped_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert_eq!(kernel_address("zz"), None);
    }
}

//! Where the proxy's local clients came from: the cgroup, pid and command
//! of the process that opened a connection, so `match.cgroup` works in
//! enforce mode as it does when observing.
//!
//! The capture's cgroup programs report a flow origin when a client's SYN
//! leaves its socket, before odoogate accepts the connection. The capture
//! reader thread [`Origins::insert`]s it, keyed by the connection's client
//! and server addresses, and the proxy takes it with
//! [`Origins::wait_for`] when it accepts. The reader may lag behind the
//! accept, so the proxy waits a little for a local client's origin;
//! connections from other hosts never get one and are not waited for.
//!
//! A local client is one whose address is this host's, or one in a
//! container network: the subnet of a veth interface, or of a bridge whose
//! ports are all veth interfaces (docker0, podman0, lxdbr0). Processes in
//! other network namespaces reach Odoo from there, and the cgroup
//! programs, which see every cgroup of the host, report their origins too.
//! A bridge with any other port (a physical interface, a virtual machine's
//! tap) also reaches other machines, so its clients are not waited for.
//! The origin thread lists the networks again every few seconds, so a
//! container network created later counts too.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::Notify;

use crate::capture::ip_of;

mod links;

/// Origins kept at once. The oldest is dropped beyond it, so a flood of
/// connections that are never accepted cannot grow the table.
pub const MAX_ORIGINS: usize = 65_536;

/// How long an origin waits to be taken. Origins of connections that
/// odoogate never accepts (connections refused before the accept, and its
/// own upstream connections when the kernel programs cannot tell them
/// apart, see `CaptureOptions::ignore_own_connects`) expire after it.
const ORIGIN_TTL: Duration = Duration::from_secs(30);

/// The cgroup and process of a local client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalOrigin {
    /// cgroup path relative to the cgroup v2 mount, when it resolved.
    pub cgroup: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
}

type Key = (SocketAddr, SocketAddr);

/// The origins reported and not yet taken, shared by the capture reader and
/// the proxy. Cloning shares the table.
#[derive(Clone, Debug)]
pub struct Origins {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    table: Mutex<Table>,
    arrived: Notify,
    local: RwLock<LocalNetworks>,
    /// Whether the last refresh of `local` failed, so that a lasting
    /// failure is logged once as a warning, not on every refresh.
    refresh_failing: AtomicBool,
}

/// The addresses and networks that local clients connect from, found at
/// start and again by [`Origins::refresh_local_networks`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LocalNetworks {
    /// Addresses of this host's interfaces: a connection from one of them
    /// (or from a loopback address) comes from a local process.
    pub addresses: BTreeSet<IpAddr>,
    /// Container networks, whose clients are processes of this host in
    /// other network namespaces.
    pub containers: Vec<IpNet>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, (LocalOrigin, Instant)>,
    /// Keys in insertion order, for expiry and eviction. A key may appear
    /// again after it was taken and reported anew; the timestamp tells the
    /// entries apart.
    order: VecDeque<(Key, Instant)>,
}

// === impl Origins ===

impl Origins {
    /// Builds an empty table for a host whose local clients come from
    /// `local`.
    pub fn new(local: LocalNetworks) -> Self {
        let LocalNetworks { addresses, containers } = local;
        let addresses = addresses.into_iter().map(|ip| ip.to_canonical()).collect();
        let local = RwLock::new(LocalNetworks { addresses, containers });
        let inner = Inner { table: Mutex::new(Table::default()), arrived: Notify::new(), local, refresh_failing: AtomicBool::new(false) };
        Self { inner: Arc::new(inner) }
    }

    /// Builds an empty table with the addresses and container networks of
    /// the calling thread's network namespace. Interfaces that cannot be
    /// listed leave only loopback clients counted as local.
    pub fn for_this_host() -> Self {
        let local = LocalNetworks::of_this_host();
        if !local.containers.is_empty() {
            log_container_networks(&local);
        }
        Self::new(local)
    }

    /// Finds the addresses and container networks of the calling thread's
    /// network namespace again, so that a container network created after
    /// the start (`docker network create`) counts as local from now on.
    pub fn refresh_local_networks(&self) {
        // A listing that failed keeps the networks found before.
        let found = match LocalNetworks::list_this_host() {
            Ok(found) => found,
            Err(error) => {
                if !self.inner.refresh_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "Failed to list the host's networks again; keeping those found before");
                }
                return;
            }
        };
        if self.inner.refresh_failing.swap(false, Ordering::Relaxed) {
            tracing::info!("Listed the host's networks again");
        }
        let mut local = self.inner.local.write().unwrap_or_else(PoisonError::into_inner);
        if *local != found {
            if local.containers != found.containers {
                log_container_networks(&found);
            }
            *local = found;
        }
    }

    /// Stores the origin of the connection from `client` to `server` and
    /// wakes the connections waiting for one.
    pub fn insert(&self, client: SocketAddr, server: SocketAddr, origin: LocalOrigin) {
        let now = Instant::now();
        let key = canonical_key(client, server);
        {
            let mut table = self.table();
            table.expire(now);
            while table.entries.len() >= MAX_ORIGINS {
                if !table.evict_oldest() {
                    break;
                }
            }
            table.entries.insert(key, (origin, now));
            table.order.push_back((key, now));
        }
        self.inner.arrived.notify_waiters();
    }

    /// Takes the origin of the connection from `client` to `server`, if it
    /// was reported.
    pub fn take(&self, client: SocketAddr, server: SocketAddr) -> Option<LocalOrigin> {
        let key = canonical_key(client, server);
        self.table().entries.remove(&key).map(|(origin, _)| origin)
    }

    /// Takes the origin of the connection from `client` to `server`,
    /// waiting up to `timeout` for it when the client is a local process.
    /// Returns `None` at once for clients on other hosts.
    pub async fn wait_for(&self, client: SocketAddr, server: SocketAddr, timeout: Duration) -> Option<LocalOrigin> {
        if !self.is_local(client.ip(), server.ip()) {
            return None;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the look-up, so an insert between the two
            // still wakes this wait.
            let arrived = self.inner.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(origin) = self.take(client, server) {
                return Some(origin);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }

    /// Tells whether a connection from `client` to `server` comes from a
    /// process on this host.
    pub fn is_local(&self, client: IpAddr, server: IpAddr) -> bool {
        let client = client.to_canonical();
        let local = self.inner.local.read().unwrap_or_else(PoisonError::into_inner);
        client.is_loopback()
            || client == server.to_canonical()
            || local.addresses.contains(&client)
            || local.containers.iter().any(|network| network.contains(&client))
    }

    /// The number of origins waiting to be taken.
    pub fn len(&self) -> usize {
        self.table().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent across a panic in a holder: every
        // mutation is a single map or queue operation.
        self.inner.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl LocalNetworks ===

impl LocalNetworks {
    /// Finds the addresses and container networks of the calling thread's
    /// network namespace. What cannot be listed is left out, with a warning.
    pub fn of_this_host() -> Self {
        let (interfaces, links) = list_interfaces_and_links();
        let interfaces = interfaces.unwrap_or_else(|error| {
            tracing::warn!(%error, "Failed to list the host's addresses: only loopback clients get a cgroup");
            Vec::new()
        });
        let links = links.unwrap_or_else(|error| {
            tracing::warn!(%error, "Failed to list the network interfaces: clients in containers get no cgroup");
            Vec::new()
        });
        Self::from_interfaces(&interfaces, &links)
    }

    /// Finds the addresses and container networks as [`Self::of_this_host`]
    /// does, or returns the error of the first listing that failed.
    fn list_this_host() -> std::io::Result<Self> {
        let (interfaces, links) = list_interfaces_and_links();
        Ok(Self::from_interfaces(&interfaces?, &links?))
    }

    /// Builds the networks from each interface's name, address and netmask,
    /// and the interfaces' kinds.
    fn from_interfaces(interfaces: &[InterfaceAddress], links: &[links::Link]) -> Self {
        let addresses = interfaces.iter().map(|(_, address, _)| address.to_canonical()).collect();
        let mut containers: Vec<IpNet> = interfaces
            .iter()
            .filter(|(name, _, _)| links.iter().any(|link| &link.name == name && reaches_only_containers(link, links)))
            .filter_map(|(_, address, netmask)| IpNet::with_netmask(*address, (*netmask)?).ok())
            .map(|network| network.trunc())
            // An IPv6 link-local network is on every interface.
            .filter(|network| !matches!(network, IpNet::V6(v6) if v6.addr().is_unicast_link_local()))
            .collect();
        containers.sort();
        containers.dedup();
        Self { addresses, containers }
    }
}

fn log_container_networks(local: &LocalNetworks) {
    let containers: Vec<String> = local.containers.iter().map(ToString::to_string).collect();
    tracing::info!(?containers, "Clients in these container networks get their cgroup and process");
}

/// An interface's name, address and netmask.
type InterfaceAddress = (String, IpAddr, Option<IpAddr>);

/// Lists the addresses of the calling thread's network namespace, and its
/// interfaces with their kinds.
fn list_interfaces_and_links() -> (std::io::Result<Vec<InterfaceAddress>>, std::io::Result<Vec<links::Link>>) {
    let interfaces = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from).map(|interfaces| {
        interfaces
            .filter_map(|interface| {
                let address = interface.address.as_ref().and_then(ip_of)?;
                let netmask = interface.netmask.as_ref().and_then(ip_of);
                Some((interface.interface_name, address, netmask))
            })
            .collect()
    });
    (interfaces, links::list())
}

/// Tells whether `link` leads only to this host's own network namespaces:
/// a veth interface, or a bridge whose ports are all veth interfaces.
fn reaches_only_containers(link: &links::Link, links: &[links::Link]) -> bool {
    match link.kind.as_deref() {
        Some("veth") => true,
        Some("bridge") => {
            let mut ports = links.iter().filter(|port| port.master == Some(link.index));
            ports.all(|port| port.kind.as_deref() == Some("veth"))
        }
        _ => false,
    }
}

// === impl Table ===

impl Table {
    /// Drops origins older than [`ORIGIN_TTL`].
    fn expire(&mut self, now: Instant) {
        while let Some(&(key, inserted)) = self.order.front() {
            if now.duration_since(inserted) < ORIGIN_TTL {
                break;
            }
            self.order.pop_front();
            self.remove_if_inserted_at(key, inserted);
        }
    }

    /// Drops the oldest origin still stored; returns false when none is.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, inserted)) = self.order.pop_front() {
            if self.remove_if_inserted_at(key, inserted) {
                return true;
            }
        }
        false
    }

    fn remove_if_inserted_at(&mut self, key: Key, inserted: Instant) -> bool {
        let current = self.entries.get(&key).is_some_and(|(_, at)| *at == inserted);
        if current {
            self.entries.remove(&key);
        }
        current
    }
}

/// Keys by IPv4 addresses where the proxy's dual-stack listener sees them
/// as IPv4-mapped IPv6 ones, as the capture reports them as IPv4.
fn canonical_key(client: SocketAddr, server: SocketAddr) -> Key {
    let canonical = |address: SocketAddr| SocketAddr::new(address.ip().to_canonical(), address.port());
    (canonical(client), canonical(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(comm: &str) -> LocalOrigin {
        LocalOrigin { cgroup: Some("system.slice/n8n.service".to_owned()), pid: Some(42), comm: Some(comm.to_owned()) }
    }

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn mapped_addresses_find_ipv4_origins() {
        let origins = Origins::new(LocalNetworks::default());
        origins.insert(address("127.0.0.1:40000"), address("127.0.0.1:8069"), origin("python3"));

        let found = origins.take(address("[::ffff:127.0.0.1]:40000"), address("[::ffff:127.0.0.1]:8069"));
        assert_eq!(found, Some(origin("python3")));
        assert!(origins.is_empty(), "an origin is taken once");
    }

    #[test]
    fn other_connections_do_not_match() {
        let origins = Origins::new(LocalNetworks::default());
        origins.insert(address("127.0.0.1:40000"), address("127.0.0.1:8069"), origin("python3"));

        assert_eq!(origins.take(address("127.0.0.1:40001"), address("127.0.0.1:8069")), None);
        assert_eq!(origins.take(address("127.0.0.1:40000"), address("127.0.0.1:8072")), None);
        assert_eq!(origins.len(), 1);
    }

    #[test]
    fn table_is_bounded() {
        let origins = Origins::new(LocalNetworks::default());
        let server = address("127.0.0.1:8069");
        for port in 0..(MAX_ORIGINS as u32 + 10) {
            let client = SocketAddr::new("127.0.0.1".parse().unwrap(), 1024 + (port % 60_000) as u16);
            let client = match port < 60_000 {
                true => client,
                false => SocketAddr::new("127.0.0.2".parse().unwrap(), client.port()),
            };
            origins.insert(client, server, origin("flood"));
        }
        assert_eq!(origins.len(), MAX_ORIGINS);
        assert_eq!(origins.take(address("127.0.0.1:1024"), server), None, "the oldest origin was evicted");
    }

    #[test]
    fn local_clients_are_recognised() {
        let local = LocalNetworks {
            addresses: BTreeSet::from(["10.214.0.1".parse().unwrap()]),
            containers: vec!["172.17.0.0/16".parse().unwrap()],
        };
        let origins = Origins::new(local);
        let server: IpAddr = "10.214.0.1".parse().unwrap();

        assert!(origins.is_local("127.0.0.1".parse().unwrap(), server));
        assert!(origins.is_local("::ffff:10.214.0.1".parse().unwrap(), server));
        assert!(origins.is_local("::1".parse().unwrap(), server));
        assert!(!origins.is_local("10.214.0.2".parse().unwrap(), server));
        assert!(origins.is_local("172.17.0.5".parse().unwrap(), server), "a container network");
        assert!(!origins.is_local("172.18.0.5".parse().unwrap(), server));
    }

    fn link(index: u32, name: &str, kind: Option<&str>, master: Option<u32>) -> links::Link {
        links::Link { index, name: name.to_owned(), kind: kind.map(str::to_owned), master }
    }

    fn interface(name: &str, address: &str, netmask: &str) -> (String, IpAddr, Option<IpAddr>) {
        (name.to_owned(), address.parse().unwrap(), Some(netmask.parse().unwrap()))
    }

    #[test]
    fn container_networks_are_veths_and_bridges_of_veths() {
        let links = [
            link(1, "lo", None, None),
            link(2, "eth0", None, None),
            link(3, "docker0", Some("bridge"), None),
            link(4, "veth1", Some("veth"), Some(3)),
            link(5, "br0", Some("bridge"), None),
            link(6, "eth1", None, Some(5)),
            link(7, "vethlab", Some("veth"), None),
            link(8, "virbr0", Some("bridge"), None),
            link(9, "vnet0", Some("tun"), Some(8)),
            link(10, "wg0", Some("wireguard"), None),
        ];
        let interfaces = [
            interface("lo", "127.0.0.1", "255.0.0.0"),
            interface("eth0", "192.0.2.10", "255.255.255.0"),
            interface("docker0", "172.17.0.1", "255.255.0.0"),
            interface("docker0", "fe80::1", "ffff:ffff:ffff:ffff::"),
            interface("br0", "198.51.100.1", "255.255.255.0"),
            interface("vethlab", "10.214.0.1", "255.255.255.0"),
            interface("virbr0", "192.168.122.1", "255.255.255.0"),
            interface("wg0", "10.8.0.1", "255.255.255.0"),
        ];
        let local = LocalNetworks::from_interfaces(&interfaces, &links);
        let containers: Vec<String> = local.containers.iter().map(ToString::to_string).collect();
        assert_eq!(containers, ["10.214.0.0/24", "172.17.0.0/16"]);
        assert!(local.addresses.contains(&"192.0.2.10".parse::<IpAddr>().unwrap()));
        assert_eq!(local.addresses.len(), interfaces.len());
    }

    #[test]
    fn refresh_replaces_the_networks() {
        let local = LocalNetworks { addresses: BTreeSet::new(), containers: vec!["192.0.2.0/24".parse().unwrap()] };
        let origins = Origins::new(local);
        let server: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(origins.is_local("192.0.2.5".parse().unwrap(), server));

        // This host has no container network in the documentation range,
        // and its own addresses count as local after the refresh.
        origins.refresh_local_networks();
        assert!(!origins.is_local("192.0.2.5".parse().unwrap(), server));
        let own = nix::ifaddrs::getifaddrs().unwrap().find_map(|interface| interface.address.as_ref().and_then(ip_of));
        if let Some(own) = own {
            assert!(origins.is_local(own, server), "{own} is this host's address");
        }
    }

    #[tokio::test]
    async fn wait_for_sees_a_later_insert() {
        let origins = Origins::new(LocalNetworks::default());
        let (client, server) = (address("127.0.0.1:40000"), address("127.0.0.1:8069"));
        let writer = origins.clone();
        let insert = std::thread::spawn(move || writer.insert(client, server, origin("late")));

        let found = origins.wait_for(client, server, Duration::from_secs(30)).await;
        insert.join().unwrap();
        assert_eq!(found, Some(origin("late")));
    }

    #[tokio::test]
    async fn remote_clients_are_not_waited_for() {
        let origins = Origins::new(LocalNetworks::default());
        origins.insert(address("10.214.0.2:40000"), address("10.214.0.1:8069"), origin("remote"));

        // A remote client's connection never has an origin worth waiting
        // for, even when one with its addresses happens to be stored.
        let found = origins.wait_for(address("10.214.0.2:40000"), address("10.214.0.1:8069"), Duration::from_secs(30)).await;
        assert_eq!(found, None);
    }
}

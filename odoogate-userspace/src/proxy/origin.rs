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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

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
    /// Addresses of this host's interfaces, found at start: a connection
    /// from one of them (or from a loopback address) comes from a local
    /// process.
    local_addresses: BTreeSet<IpAddr>,
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
    /// Builds an empty table for a host with `local_addresses`.
    pub fn new(local_addresses: BTreeSet<IpAddr>) -> Self {
        let local_addresses = local_addresses.into_iter().map(|ip| ip.to_canonical()).collect();
        let inner = Inner { table: Mutex::new(Table::default()), arrived: Notify::new(), local_addresses };
        Self { inner: Arc::new(inner) }
    }

    /// Builds an empty table with the addresses of the calling thread's
    /// network namespace. Interfaces that cannot be listed leave only
    /// loopback clients counted as local.
    pub fn for_this_host() -> Self {
        let addresses = match nix::ifaddrs::getifaddrs() {
            Ok(interfaces) => interfaces
                .filter_map(|interface| interface.address)
                .filter_map(|address| match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                    (Some(v4), _) => Some(IpAddr::V4(v4.ip())),
                    (_, Some(v6)) => Some(IpAddr::V6(v6.ip())),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "Failed to list the host's addresses: only loopback clients get a cgroup");
                BTreeSet::new()
            }
        };
        Self::new(addresses)
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
        client.is_loopback() || client == server.to_canonical() || self.inner.local_addresses.contains(&client)
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
        let origins = Origins::new(BTreeSet::new());
        origins.insert(address("127.0.0.1:40000"), address("127.0.0.1:8069"), origin("python3"));

        let found = origins.take(address("[::ffff:127.0.0.1]:40000"), address("[::ffff:127.0.0.1]:8069"));
        assert_eq!(found, Some(origin("python3")));
        assert!(origins.is_empty(), "an origin is taken once");
    }

    #[test]
    fn other_connections_do_not_match() {
        let origins = Origins::new(BTreeSet::new());
        origins.insert(address("127.0.0.1:40000"), address("127.0.0.1:8069"), origin("python3"));

        assert_eq!(origins.take(address("127.0.0.1:40001"), address("127.0.0.1:8069")), None);
        assert_eq!(origins.take(address("127.0.0.1:40000"), address("127.0.0.1:8072")), None);
        assert_eq!(origins.len(), 1);
    }

    #[test]
    fn table_is_bounded() {
        let origins = Origins::new(BTreeSet::new());
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
        let origins = Origins::new(BTreeSet::from(["10.214.0.1".parse().unwrap()]));
        let server: IpAddr = "10.214.0.1".parse().unwrap();

        assert!(origins.is_local("127.0.0.1".parse().unwrap(), server));
        assert!(origins.is_local("::ffff:10.214.0.1".parse().unwrap(), server));
        assert!(origins.is_local("::1".parse().unwrap(), server));
        assert!(!origins.is_local("10.214.0.2".parse().unwrap(), server));
    }

    #[tokio::test]
    async fn wait_for_sees_a_later_insert() {
        let origins = Origins::new(BTreeSet::new());
        let (client, server) = (address("127.0.0.1:40000"), address("127.0.0.1:8069"));
        let writer = origins.clone();
        let insert = std::thread::spawn(move || writer.insert(client, server, origin("late")));

        let found = origins.wait_for(client, server, Duration::from_secs(30)).await;
        insert.join().unwrap();
        assert_eq!(found, Some(origin("late")));
    }

    #[tokio::test]
    async fn remote_clients_are_not_waited_for() {
        let origins = Origins::new(BTreeSet::new());
        origins.insert(address("10.214.0.2:40000"), address("10.214.0.1:8069"), origin("remote"));

        // A remote client's connection never has an origin worth waiting
        // for, even when one with its addresses happens to be stored.
        let found = origins.wait_for(address("10.214.0.2:40000"), address("10.214.0.1:8069"), Duration::from_secs(30)).await;
        assert_eq!(found, None);
    }
}

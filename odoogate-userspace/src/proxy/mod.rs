//! The enforce path: odoogate in the path between clients and Odoo.
//!
//! Each client connection is served by a [`Session`](session::Session):
//!
//! 1. The request head is read with the same [`RequestFramer`] the observe
//!    path uses, bounded in size and time.
//! 2. A request to an RPC surface ([`rpc::is_rpc_surface`]) is read whole
//!    (up to `proxy.max_request_bytes`), decoded, tied to its integration and
//!    decided on with the grants and rate limits of [`LivePolicy`]. A denied
//!    call is answered in the
//!    shape its protocol expects ([`deny`]) and never reaches Odoo; an
//!    allowed one is sent to Odoo with a fresh `Content-Length`.
//! 3. Any other request (pages, assets, reports, uploads) streams through
//!    without its body being held, and a WebSocket upgrade is spliced
//!    after Odoo's `101`.
//! 4. A framing Odoo could read differently ([`FramingAnomaly`]) is
//!    rejected with 400 before any of it reaches Odoo, and the connection
//!    closes.
//!
//! Odoo's response is passed back as it arrives. The client's connection
//! to odoogate stays open when the client asked for it and the response
//! body is framed. The connection to Odoo goes back to a pool of idle
//! connections when Odoo's response allows it ([`pool`]): HTTP/1.1
//! without `Connection: close`, and read to its framed end. Odoo's own
//! server closes after every response, so there every request gets a new
//! connection. A server in front of Odoo that keeps connections open saves
//! a connect per request.
//!
//! Every call gets one audit record, as on the observe path, with the
//! decision `allow` or `deny` and Odoo's outcome.
//!
//! NOTE: only the RPC surfaces are decided on. Other routes, including the
//! web client's JSON routes outside `/web/dataset/call_kw` and
//! `/web/dataset/call_button`, pass through with Odoo's own access checks.
//!
//! [`RequestFramer`]: crate::http::framer::RequestFramer
//! [`rpc::is_rpc_surface`]: crate::rpc::is_rpc_surface
//! [`FramingAnomaly`]: crate::http::FramingAnomaly

mod connector;
pub mod deny;
mod live;
mod narrow;
pub mod origin;
mod pool;
mod read;
mod recorder;
mod relay;
mod session;
mod shards;
mod slots;
mod stream;
mod tokens;
mod wire;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub use connector::{DirectConnector, SteeredConnector, UpstreamConnector};
pub use live::LivePolicy;
pub use origin::{LocalOrigin, Origins};
pub use recorder::{ProxyStats, Recorder};
pub use session::Tokens;
pub use shards::Shards;
pub use tokens::CredentialsReloader;

use crate::audit::AuditSink;
use crate::config::Config;
use crate::identity::{SessionTable, Source};
use pool::UpstreamPool;
use session::{Session, Shared};
use slots::{Admission, Slot, Slots};
use stream::Peer;
use tokens::LiveTokens;

/// How often rate-limited error summaries are written and old sessions
/// forgotten.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// How long an accepted connection from a local process waits for its
/// origin (cgroup, pid, command) from the capture reader. The origin is
/// reported from the client's SYN, before the accept, so the wait covers
/// only the reader's lag.
const ORIGIN_WAIT: Duration = Duration::from_millis(250);

/// How long requests in flight may finish after the listener stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Pause after a failed accept (such as too many open files), so the loop
/// does not spin while the cause lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The inline proxy. `C` opens the connections to Odoo.
pub struct Proxy<C> {
    shared: Arc<Shared<C>>,
    next_conn_id: AtomicU64,
    origins: Option<Origins>,
    shards: Option<Arc<Shards>>,
    slots: Arc<Slots>,
    /// Connections refused since the last maintenance tick, for the log.
    refused_since_tick: AtomicU64,
}

impl<C: UpstreamConnector> Proxy<C> {
    /// Builds a proxy that decides by `config` and writes its audit records
    /// to `sink`.
    pub fn new(config: Arc<Config>, connector: C, sink: Box<dyn AuditSink>) -> Self {
        let live = Arc::new(LivePolicy::new(config));
        let recorder = Recorder::with_counts(sink, live.config().audit.error_records_per_minute, live.counts());
        let sessions = Mutex::new(SessionTable::open_or_in_memory(
            live.config().policy.sessions_file.as_deref(),
            live.config().policy.session_lifetime,
        ));
        let shared = Shared { live, connector, pool: UpstreamPool::default(), sessions, recorder, tokens: None };
        Self::from_shared(shared)
    }

    /// Builds a proxy that also accepts scoped tokens, forwarding calls made
    /// with a valid one under the integration's service credential.
    ///
    /// The store is loaded again within a second of its file changing, and
    /// token uses are written back to it every minute and at shutdown.
    pub fn with_tokens(config: Arc<Config>, connector: C, sink: Box<dyn AuditSink>, tokens: Tokens) -> Self {
        let live = Arc::new(LivePolicy::new(config));
        let recorder = Recorder::with_counts(sink, live.config().audit.error_records_per_minute, live.counts());
        let sessions = Mutex::new(SessionTable::open_or_in_memory(
            live.config().policy.sessions_file.as_deref(),
            live.config().policy.session_lifetime,
        ));
        let shared = Shared { live, connector, pool: UpstreamPool::default(), sessions, recorder, tokens: Some(Arc::new(LiveTokens::new(tokens))) };
        Self::from_shared(shared)
    }

    fn from_shared(shared: Shared<C>) -> Self {
        Self {
            shared: Arc::new(shared),
            next_conn_id: AtomicU64::new(1),
            origins: None,
            shards: None,
            slots: Arc::new(Slots::default()),
            refused_since_tick: AtomicU64::new(0),
        }
    }

    /// Ties connections from local processes to their cgroup, pid and
    /// command from `origins`, which the capture reader fills, so
    /// `match.cgroup` holds for proxied calls.
    pub fn with_origins(mut self, origins: Origins) -> Self {
        self.origins = Some(origins);
        self
    }

    /// Serves connections on `shards` instead of the runtime that runs
    /// [`Proxy::serve`].
    pub fn with_shards(mut self, shards: Arc<Shards>) -> Self {
        self.shards = Some(shards);
        self
    }

    pub fn stats(&self) -> ProxyStats {
        self.shared.recorder.stats()
    }

    /// Returns the client connections open now.
    pub fn open_connections(&self) -> usize {
        self.slots.open()
    }

    /// Returns the configuration and policy state, through which a reload
    /// puts a new configuration in force while the proxy serves.
    pub fn live(&self) -> Arc<LivePolicy> {
        self.shared.live.clone()
    }

    /// Returns the handle that reads the service credentials again on a
    /// configuration reload, or `None` when scoped tokens are off.
    pub fn credentials_reloader(&self) -> Option<CredentialsReloader> {
        self.shared.tokens.clone().map(CredentialsReloader)
    }

    /// Accepts and serves connections on `listener` until `shutdown`
    /// completes, then gives requests in flight a grace period to finish
    /// and stops the rest.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let mut connections = JoinSet::new();
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        tokio::pin!(shutdown);

        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                _ = maintenance.tick() => {
                    self.maintain();
                    while connections.try_join_next().is_some() {}
                    continue;
                }
                accepted = listener.accept() => accepted,
            };

            match accepted {
                Ok((stream, peer)) => {
                    let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = self.admit(&stream, peer, conn_id) else {
                        continue;
                    };
                    let shared = self.shared.clone();
                    let origins = self.origins.clone();
                    match &self.shards {
                        None => {
                            connections.spawn(async move {
                                serve_connection(&shared, stream, peer, conn_id, origins.as_ref(), slot).await;
                            });
                        }
                        Some(shards) => {
                            // The stream moves to the shard's own reactor.
                            let stream = match stream.into_std() {
                                Ok(stream) => stream,
                                Err(error) => {
                                    tracing::warn!(conn_id, %error, "Failed to hand a connection to a proxy thread");
                                    continue;
                                }
                            };
                            let (handle, open) = shards.pick();
                            connections.spawn_on(
                                async move {
                                    let _open = open;
                                    match TcpStream::from_std(stream) {
                                        Ok(stream) => serve_connection(&shared, stream, peer, conn_id, origins.as_ref(), slot).await,
                                        Err(error) => tracing::warn!(conn_id, %error, "Failed to register a connection on a proxy thread"),
                                    }
                                },
                                handle,
                            );
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Failed to accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }

        drop(listener);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::info!(connections = connections.len(), "Closing connections still open after the grace period");
            connections.shutdown().await;
        }
        self.log_refusals();
        self.shared.recorder.flush(std::time::Instant::now() + Duration::from_secs(3600));
        if let Some(tokens) = &self.shared.tokens {
            tokens.flush();
        }
        Ok(())
    }

    /// Logs the connections refused since the last call, once for all of
    /// them, so a flood of refusals makes one line a second.
    fn log_refusals(&self) {
        let refused = self.refused_since_tick.swap(0, Ordering::Relaxed);
        if refused > 0 {
            let max_connections = self.shared.live.config().proxy.max_connections;
            tracing::warn!(refused, max_connections, "Refused connections: proxy.max_connections were open and none was idle");
        }
    }

    /// Gives a new connection its slot under `proxy.max_connections`,
    /// closing the longest-idle connection at the limit. With no idle
    /// connection, the new one gets 503 and is closed at once, so the excess
    /// keeps no file descriptor and no task.
    fn admit(&self, stream: &TcpStream, peer: SocketAddr, conn_id: u64) -> Option<Slot> {
        let limit = self.shared.live.config().proxy.max_connections;
        match self.slots.admit(conn_id, limit) {
            Admission::Admitted(slot) => Some(slot),
            Admission::Evicted { slot, evicted_conn_id } => {
                self.shared.recorder.count_idle_closed();
                tracing::debug!(conn_id, evicted_conn_id, max_connections = limit, "Closing the longest-idle connection for a new one");
                Some(slot)
            }
            Admission::Refused => {
                // A best-effort write that never waits: a client that does
                // not read it gets the close alone.
                let _ = stream.try_write(&wire::service_unavailable(limit));
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                self.shared.recorder.write(connection_refused(conn_id, peer, limit));
                self.refused_since_tick.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Loads the token store again now when its file changed, as the
    /// periodic check would within a second. Without scoped tokens it does
    /// nothing.
    pub fn refresh_tokens(&self) {
        if let Some(tokens) = &self.shared.tokens {
            tokens.refresh(std::time::Instant::now());
        }
    }

    fn maintain(&self) {
        let now = std::time::Instant::now();
        self.log_refusals();
        self.shared.recorder.flush(now);
        if let Some(tokens) = &self.shared.tokens {
            tokens.refresh(now);
        }
        let lifetime = self.shared.live.config().policy.session_lifetime;
        let compaction = {
            let mut sessions = self.shared.sessions();
            // A reload may have changed the lifetime since the last tick.
            sessions.set_lifetime(lifetime);
            sessions.expire_old(SystemTime::now());
            sessions.start_compaction()
        };
        if let Some(compaction) = compaction {
            // Calls with session cookies keep running while the compacted
            // file is written and synced.
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || {
                let written = compaction.write();
                shared.sessions().finish_compaction(written);
            });
        }
        self.shared.pool.expire(now);
    }
}

async fn serve_connection<C: UpstreamConnector>(
    shared: &Shared<C>,
    stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    origins: Option<&Origins>,
    slot: Slot,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(conn_id, %error, "Failed to set TCP_NODELAY");
    }
    // The steering listener is dual-stack, so IPv4 clients arrive as
    // IPv4-mapped IPv6 addresses; records and `match.ip` use the IPv4 form.
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let origin = match (origins, stream.local_addr()) {
        (Some(origins), Ok(local)) => origins.wait_for(peer, local, ORIGIN_WAIT).await,
        _ => None,
    };
    let LocalOrigin { cgroup, pid, comm } = origin.unwrap_or_default();
    let source = Source { peer, cgroup, pid, comm, conn_id };
    let session = Session::new(shared, Peer::new(stream), source, slot);
    match session.run().await {
        Ok(()) => tracing::debug!(conn_id, client = %peer, "Connection closed"),
        Err(error) => tracing::debug!(conn_id, client = %peer, %error, "Connection ended early"),
    }
}

/// Builds the record of a connection refused at `proxy.max_connections`.
fn connection_refused(conn_id: u64, peer: SocketAddr, max_connections: usize) -> crate::audit::AuditRecord {
    let message = format!(
        "refused connection {conn_id} from {peer}: proxy.max_connections ({max_connections}) connections were open and none was idle"
    );
    max_connections_record(conn_id, peer, message)
}

/// Builds the record of a request rejected because its idle connection was
/// closed for a new one at `proxy.max_connections` as the request arrived.
fn evicted_request_rejected(conn_id: u64, peer: SocketAddr, max_connections: usize) -> crate::audit::AuditRecord {
    let message = format!(
        "rejected a request on connection {conn_id} from {peer}: it arrived as the idle connection was closed for a new one at proxy.max_connections ({max_connections})"
    );
    max_connections_record(conn_id, peer, message)
}

/// Builds a `connection_refused` record with error code `max_connections`.
fn max_connections_record(conn_id: u64, peer: SocketAddr, message: String) -> crate::audit::AuditRecord {
    let mut record = crate::audit::AuditRecord::new(crate::audit::AuditEvent::ConnectionRefused, message);
    record.conn_id = Some(conn_id);
    record.src_ip = Some(peer.ip());
    record.src_port = Some(peer.port());
    record.error_code = Some("max_connections".to_owned());
    record.count = Some(1);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::jsonl::JsonLinesSink;
    use crate::secret::Secret;

    const CONFIG: &str = r#"
[odoo]
ports = [8069]
interfaces = ["lo"]

[policy]
mode = "enforce"
unidentified = "deny"

[proxy]
listen = "127.0.0.1:18069"
upstream = "127.0.0.1:8069"

[[integration]]
name = "website-form"
match = { ip = ["10.0.0.2/32"] }
allow = [{ models = ["crm.lead"], methods = ["create"] }]
"#;

    fn config(text: &str) -> Arc<Config> {
        Arc::new(crate::config::parse(text, "test.toml").expect("test config is valid"))
    }

    #[test]
    fn reload_sets_session_lifetime() {
        let connector = DirectConnector::new(SocketAddr::from(([127, 0, 0, 1], 8069)));
        let proxy = Proxy::new(config(CONFIG), connector, Box::new(JsonLinesSink::new(std::io::sink())));
        let hour = Duration::from_secs(3600);
        proxy.shared.sessions().bind(&Secret::new("idle"), "website-form", None, SystemTime::now() - 2 * hour);
        proxy.maintain();
        assert!(proxy.shared.sessions().lookup(&Secret::new("idle")).is_some(), "within the default 7 days");

        let reloaded = CONFIG.replacen("[policy]\n", "[policy]\nsession_lifetime_secs = 3600\n", 1);
        proxy.live().set_config(config(&reloaded));
        proxy.maintain();
        assert!(proxy.shared.sessions().lookup(&Secret::new("idle")).is_none(), "unused for two hours of a one-hour lifetime");
    }

    /// Collects the records it is given.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<crate::audit::AuditRecord>>>);

    impl AuditSink for Collect {
        fn write(&mut self, record: &crate::audit::AuditRecord) {
            self.0.lock().unwrap().push(record.clone());
        }
    }

    /// A request that arrives as its idle connection's slot goes to a new
    /// connection gets 503 and a record, not a reset.
    #[tokio::test]
    async fn request_on_evicted_connection_gets_503() {
        let records = Collect::default();
        let connector = DirectConnector::new(SocketAddr::from(([127, 0, 0, 1], 8069)));
        let proxy = Proxy::new(config(CONFIG), connector, Box::new(records.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let Admission::Admitted(slot) = proxy.slots.admit(1, 1) else { panic!("the first connection is admitted") };
        let shared = proxy.shared.clone();
        let session = tokio::spawn(async move { serve_connection(&shared, server, peer, 1, None, slot).await });
        for _ in 0..100 {
            if proxy.slots.is_idle(1) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(proxy.slots.is_idle(1), "the session waits for a request");

        // This task does not yield in between, so the session reads nothing
        // before its slot goes to connection 2.
        std::io::Write::write_all(&mut client, b"GET /web/login HTTP/1.1\r\nHost: odoo\r\n\r\n").unwrap();
        assert!(matches!(proxy.slots.admit(2, 1), Admission::Evicted { evicted_conn_id: 1, .. }));
        let response = tokio::task::spawn_blocking(move || {
            let mut response = String::new();
            std::io::Read::read_to_string(&mut client, &mut response).map(|_| response)
        });
        session.await.unwrap();
        let response = response.await.unwrap().unwrap();

        assert!(response.starts_with("HTTP/1.1 503 SERVICE UNAVAILABLE\r\n"), "{response}");
        let records = records.0.lock().unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].event, crate::audit::AuditEvent::ConnectionRefused);
        assert_eq!(records[0].error_code.as_deref(), Some("max_connections"));
        assert!(records[0].message.contains("arrived as the idle connection was closed"), "{}", records[0].message);
    }

    /// The maintenance tick writes the compacted sessions file on a
    /// blocking thread, without the table's lock.
    #[tokio::test]
    async fn tick_compacts_sessions_file() {
        let dir = std::env::temp_dir().join(format!("odoogate-proxy-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("sessions.json");
        let text = CONFIG.replacen("[policy]\n", &format!("[policy]\nsessions_file = \"{}\"\n", file.display()), 1);
        let connector = DirectConnector::new(SocketAddr::from(([127, 0, 0, 1], 8069)));
        let proxy = Proxy::new(config(&text), connector, Box::new(JsonLinesSink::new(std::io::sink())));
        let now = SystemTime::now();
        {
            let mut sessions = proxy.shared.sessions();
            sessions.bind(&Secret::new("kept"), "website-form", None, now);
            sessions.churn("website-form", 20_000, now);
        }
        let lines = || std::fs::read_to_string(&file).unwrap().lines().count();
        // Returns the line count once it is `expected`, or after 2 seconds.
        let lines_when = async |expected: usize| {
            for _ in 0..100 {
                if lines() == expected {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lines()
        };
        assert_eq!(lines(), 40_001);

        proxy.maintain();
        assert_eq!(lines_when(1).await, 1, "one line for the one binding");
        // The bind may come before the compaction has finished, and then
        // reaches the new file when it does.
        proxy.shared.sessions().bind(&Secret::new("late"), "website-form", None, now);
        assert_eq!(lines_when(2).await, 2, "appends go to the compacted file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

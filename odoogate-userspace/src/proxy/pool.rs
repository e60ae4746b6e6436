//! Idle upstream connections kept for the next request.
//!
//! A connection comes back here only after a response that leaves it
//! reusable (see [`Reuse`]), and each request takes the connection that
//! was used last. Connections idle for longer than [`IDLE_TIMEOUT`] are
//! closed, and at most [`MAX_IDLE`] are kept.
//!
//! An upstream such as Odoo's own server, which closes after every
//! response, never gets a connection reused, because its responses carry
//! `Connection: close` or come as HTTP/1.0.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::http::{Headers, HttpVersion};

/// How long an idle upstream connection is kept. Servers close idle
/// keep-alive connections after a timeout of their own: gunicorn's
/// `keepalive` defaults to 5 seconds and nginx's `keepalive_timeout` to 75,
/// as their documentation states. A connection that the server closes
/// while odoogate sends on it costs a retry, or an error for a request
/// that cannot be sent twice. This timeout is shorter than those defaults,
/// so that race stays rare.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Maximum idle upstream connections kept. Busy connections are not
/// counted, because the pool only bounds the connections that odoogate
/// keeps open to Odoo without a request on them.
pub(super) const MAX_IDLE: usize = 64;

/// The facts of a finished exchange that decide whether its upstream
/// connection may carry another request.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reuse<'a> {
    /// The request asked the upstream to keep the connection open.
    pub request_keeps_alive: bool,
    pub response_version: HttpVersion,
    pub response_headers: &'a Headers,
    /// The response was a `101 Switching Protocols` (or a 2xx to
    /// `CONNECT`), so the connection now carries another protocol.
    pub upgraded: bool,
    /// An interim (1xx) response came before the final one.
    pub interim: bool,
    /// The response body ended with the close of the connection.
    pub delimited_by_close: bool,
    /// Bytes the upstream sent after the end of the response.
    pub leftover_bytes: usize,
}

impl Reuse<'_> {
    /// Tells whether the connection may carry another request: HTTP/1.1
    /// without `Connection: close` on either side, a framed final response
    /// read to its end, no interim response, and nothing sent after it.
    pub fn allowed(&self) -> bool {
        self.request_keeps_alive
            && self.response_version == HttpVersion::Http11
            && !has_close_option(self.response_headers)
            && !self.upgraded
            && !self.interim
            && !self.delimited_by_close
            && self.leftover_bytes == 0
    }
}

fn has_close_option(headers: &Headers) -> bool {
    headers
        .get_all("connection")
        .flat_map(|value| value.split(|&byte| byte == b','))
        .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// Idle connections to the upstream, the most recently used last.
#[derive(Debug, Default)]
pub(super) struct UpstreamPool {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
    /// The proxy thread whose reactor the stream is registered with.
    shard: usize,
}

impl UpstreamPool {
    /// Takes the most recently used idle connection of the calling proxy
    /// thread that is still open. Connections past [`IDLE_TIMEOUT`], and
    /// those the upstream closed or sent bytes on while idle, are closed on
    /// the way.
    ///
    /// A connection is only reused on the thread that opened it: its events
    /// come from that thread's reactor, so on another thread each of them
    /// would wake two threads.
    pub fn take(&self, now: Instant) -> Option<TcpStream> {
        let shard = super::shards::current();
        loop {
            let idle = {
                let mut idle = self.lock();
                let position = idle.iter().rposition(|idle| idle.shard == shard)?;
                idle.remove(position)
            };
            if now.saturating_duration_since(idle.since) < IDLE_TIMEOUT && still_open(&idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    /// Keeps `stream` for the next request. At [`MAX_IDLE`] the connection
    /// idle the longest is closed to make room.
    pub fn put(&self, stream: TcpStream, now: Instant) {
        let mut idle = self.lock();
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle { stream, since: now, shard: super::shards::current() });
    }

    /// Closes the connections idle for [`IDLE_TIMEOUT`] or longer.
    pub fn expire(&self, now: Instant) {
        self.lock().retain(|idle| now.saturating_duration_since(idle.since) < IDLE_TIMEOUT);
    }

    /// Returns how many idle connections are kept.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // The vector stays consistent whatever panicked while holding it.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Tells whether an idle connection is still usable: the upstream has
/// neither closed it nor sent anything on it since its last response. The
/// check peeks at the socket without consuming, and does not wait.
///
/// The reactor's readiness would spare the `recv`, but it is only as fresh
/// as the thread's last read of its events. A busy thread reads them only
/// every 61 task polls (tokio's default `event_interval`), milliseconds
/// apart under load. Bytes that arrived since would become the response to
/// the next request.
fn still_open(stream: &TcpStream) -> bool {
    match super::stream::peek(stream) {
        Err(nix::errno::Errno::EAGAIN) => true,
        // 0 is the upstream's close, more bytes that no request asked for.
        Ok(_) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        Headers(fields.iter().map(|(n, v)| ((*n).into(), Bytes::copy_from_slice(v.as_bytes()))).collect())
    }

    fn reusable<'a>(response_headers: &'a Headers) -> Reuse<'a> {
        Reuse {
            request_keeps_alive: true,
            response_version: HttpVersion::Http11,
            response_headers,
            upgraded: false,
            interim: false,
            delimited_by_close: false,
            leftover_bytes: 0,
        }
    }

    #[test]
    fn reuse_needs_every_condition() {
        let framed = headers(&[("Content-Length", "2")]);
        assert!(reusable(&framed).allowed());

        let close = headers(&[("Content-Length", "2"), ("Connection", "keep-alive, Close")]);
        assert!(!reusable(&close).allowed(), "Connection: close");
        assert!(!Reuse { request_keeps_alive: false, ..reusable(&framed) }.allowed(), "request sent Connection: close");
        assert!(!Reuse { response_version: HttpVersion::Http10, ..reusable(&framed) }.allowed(), "HTTP/1.0");
        assert!(!Reuse { upgraded: true, ..reusable(&framed) }.allowed(), "101");
        assert!(!Reuse { interim: true, ..reusable(&framed) }.allowed(), "1xx");
        assert!(!Reuse { delimited_by_close: true, ..reusable(&framed) }.allowed(), "unframed body");
        assert!(!Reuse { leftover_bytes: 1, ..reusable(&framed) }.allowed(), "bytes after the response");
    }

    /// Returns a connected pair: the client side, and the server side.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn take_returns_last_used() {
        let pool = UpstreamPool::default();
        let (first, _first_server) = pair().await;
        let (second, _second_server) = pair().await;
        let second_port = second.local_addr().unwrap().port();
        let now = Instant::now();
        pool.put(first, now);
        pool.put(second, now);

        let taken = pool.take(now).expect("an idle connection");
        assert_eq!(taken.local_addr().unwrap().port(), second_port);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn take_skips_closed_and_dirty() {
        let pool = UpstreamPool::default();
        let (closed, closed_server) = pair().await;
        let (dirty, mut dirty_server) = pair().await;
        drop(closed_server);
        dirty_server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        // Lets the FIN and the bytes arrive on the loopback.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        pool.put(closed, now);
        pool.put(dirty, now);

        assert!(pool.take(now).is_none(), "neither connection is usable");
        assert_eq!(pool.idle(), 0);
    }

    /// A close or stray bytes that the reactor has not reported yet, because
    /// the thread is busy and has not read its events since, are found by
    /// the peek. Taking such a connection would make the stray bytes the
    /// response to the next request.
    #[tokio::test]
    async fn unreported_close_and_bytes_are_peeked() {
        let pool = UpstreamPool::default();
        let (closed, closed_server) = pair().await;
        let (dirty, dirty_server) = pair().await;
        let now = Instant::now();
        pool.put(closed, now);
        pool.put(dirty, now);
        drop(closed_server);
        // A write without `.await`: the runtime's reactor must not run from
        // here on.
        let mut dirty_server = dirty_server.into_std().unwrap();
        std::io::Write::write_all(&mut dirty_server, b"HTTP/1.1 200 OK\r\n").unwrap();
        // Blocks the runtime's only thread while the bytes and the FIN
        // reach the loopback.
        std::thread::sleep(Duration::from_millis(50));

        assert!(pool.take(now).is_none(), "a connection with an unreported close or stray bytes was taken");
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn idle_timeout_closes() {
        let pool = UpstreamPool::default();
        let (stream, _server) = pair().await;
        let start = Instant::now();
        pool.put(stream, start);

        pool.expire(start + IDLE_TIMEOUT - Duration::from_millis(1));
        assert_eq!(pool.idle(), 1);
        assert!(pool.take(start + IDLE_TIMEOUT).is_none(), "expired at take");

        let (stream, _server) = pair().await;
        pool.put(stream, start);
        pool.expire(start + IDLE_TIMEOUT);
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn pool_is_bounded() {
        let pool = UpstreamPool::default();
        let now = Instant::now();
        let mut servers = Vec::new();
        // Each pair has its own listener, whose port the kept server side
        // holds, so the peer port names a connection. The local port does
        // not: connects to different listeners may share one.
        let mut first_port = 0;
        for index in 0..=MAX_IDLE {
            let (stream, server) = pair().await;
            if index == 0 {
                first_port = stream.peer_addr().unwrap().port();
            }
            servers.push(server);
            pool.put(stream, now);
        }
        assert_eq!(pool.idle(), MAX_IDLE);
        while let Some(stream) = pool.take(now) {
            assert_ne!(stream.peer_addr().unwrap().port(), first_port, "the longest-idle connection was closed");
        }
    }
}

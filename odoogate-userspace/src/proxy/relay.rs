//! Talking to Odoo: a connection from the pool or a new one, the request
//! sent whole or streamed, and Odoo's response passed back as it arrives.
//!
//! A request read whole may go on an idle connection from the pool
//! ([`super::pool`]). Odoo may have closed that connection just before the
//! request went out. So when the exchange fails before any byte of the
//! response arrived, the request goes again on a new connection if that
//! cannot run it twice. That holds when its method is idempotent (RFC
//! 9110, section 9.2.2), or when the send itself failed, so Odoo never got
//! the whole request. Otherwise the client gets 502, as when Odoo is
//! unreachable. A request whose body streams through cannot be sent
//! again, so it always gets a new connection.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::connector::UpstreamConnector;
use super::pool::Reuse;
use super::read::{OpenHead, StreamedBody};
use super::session::{MAX_HEAD_BYTES, Next, Session, SessionError, ambiguous};
use super::stream::{Peer, StreamError};
use super::wire::{self, ClientConnection, ForwardedBody, RequestLine, StatusLine};
use crate::http::framer::{FramerEvent, FramerLimits, ResponseFramer};
use crate::http::{HttpRequest, HttpResponse};

/// A response passed back to the client.
pub(super) struct Relayed {
    /// The response, its body kept up to the limit given to the relay.
    pub response: HttpResponse,
    /// From the last byte sent to Odoo to the first byte of its answer.
    pub latency: Duration,
    pub connection: ClientConnection,
    /// The upstream connection may carry another request (see [`Reuse`]).
    pub upstream_reusable: bool,
}

/// The start of Odoo's response.
enum ResponseStart {
    /// A response without a body (or a `101 Switching Protocols`).
    Complete {
        response: HttpResponse,
        upgraded: bool,
    },
    /// A head whose body is still to come. The head stays in the response
    /// framer ([`ResponseFramer::open_response`]), so it is not copied.
    Open { delimited_by_close: bool },
}

/// The head of Odoo's response, read and not yet passed on.
struct Started {
    start: ResponseStart,
    /// From the last byte sent to Odoo to the first byte of its response.
    latency: Duration,
    /// An interim (1xx) response came before this one.
    interim: bool,
}

/// A connection to Odoo.
struct Upstream {
    peer: Peer,
    /// The connection came from the pool, so Odoo may have closed it since.
    reused: bool,
}

/// Whether a request may take an idle connection from the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pooled {
    Allowed,
    /// The request cannot be sent a second time, so it needs a connection
    /// that Odoo has not had a chance to close.
    No,
}

/// A failure of an exchange before Odoo's response head was read.
enum StartFailure {
    /// Writing the request failed.
    Send(StreamError),
    /// Reading the response head failed. `received` is true when some
    /// byte of it had arrived.
    Receive { error: SessionError, received: bool },
}

impl StartFailure {
    /// Tells whether the request may go again on a new connection after
    /// this failure on a pooled one: nothing of the response arrived, and
    /// either Odoo never got the whole request or `method` is idempotent.
    /// Timeouts are not retried, since Odoo may still be working.
    fn may_retry(&self, method: &str) -> bool {
        match self {
            StartFailure::Send(error) => matches!(error, StreamError::Io(_)),
            StartFailure::Receive { error, received: false } => {
                let closed = matches!(error, SessionError::UpstreamClosed | SessionError::Upstream(StreamError::Io(_)));
                closed && is_idempotent(method)
            }
            StartFailure::Receive { received: true, .. } => false,
        }
    }
}

/// Tells whether a request method is idempotent (RFC 9110, section
/// 9.2.2), so a request sent twice has the effect of one.
fn is_idempotent(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"].contains(&method)
}

impl<C: UpstreamConnector> Session<'_, C> {
    /// Sends `bytes`, the complete upstream form of a request read whole,
    /// to Odoo and relays the answer. Returns `None` in place of the
    /// response when Odoo could not be reached (the client then got a 502).
    pub async fn forward_whole(
        &mut self,
        request: &HttpRequest,
        bytes: Bytes,
        keep_alive: bool,
        keep_body: usize,
    ) -> Result<(Next, Option<Relayed>), SessionError> {
        let upstream_keeps_alive = wire::upstream_keeps_alive(request.version, wire::upgrade_protocol(&request.headers));
        let Some(mut upstream) = self.connect_upstream(Pooled::Allowed).await? else {
            return Ok((Next::Close, None));
        };
        let (mut framer, started) = loop {
            let mut framer = response_framer(&request.method, keep_body);
            let failure = match self.start_exchange(&mut upstream.peer, &bytes, &mut framer).await {
                Ok(started) => break (framer, started),
                Err(failure) => failure,
            };
            if !(upstream.reused && failure.may_retry(&request.method)) {
                return Err(self.fail_exchange(failure).await?);
            }
            tracing::debug!(
                conn_id = self.source.conn_id,
                "A pooled connection to Odoo failed before its response; sending the request again on a new connection"
            );
            let Some(fresh) = self.connect_upstream(Pooled::No).await? else {
                return Ok((Next::Close, None));
            };
            upstream = fresh;
        };

        let relayed = self.relay_response(&mut upstream.peer, &mut framer, started, keep_alive, upstream_keeps_alive).await?;
        let next = self.after_response(&relayed, upstream).await?;
        Ok((next, Some(relayed)))
    }

    /// Streams a request that is not an RPC call to Odoo: the head as soon
    /// as it is read, then the body as it arrives, then the response back.
    pub async fn pass_through(&mut self, head: OpenHead) -> Result<Next, SessionError> {
        let anomalies = ambiguous(&head.anomalies, false);
        if !anomalies.is_empty() {
            return self.reject_framing(&head.as_request(), &anomalies, None).await;
        }
        let keep_alive = wire::client_keeps_alive(head.version, &head.headers);
        let upstream_keeps_alive = wire::upstream_keeps_alive(head.version, wire::upgrade_protocol(&head.headers));
        let Some(mut upstream) = self.connect_upstream(Pooled::No).await? else {
            return Ok(Next::Close);
        };
        let headers = wire::forwarded_headers(&head.headers, self.source.peer.ip(), head.version, ForwardedBody::AsSent);
        let line = RequestLine { method: &head.method, target: &head.target, version: head.version };
        self.send_upstream(&mut upstream.peer, &wire::request_head(line, &headers)).await?;

        match self.stream_body(&mut upstream.peer).await? {
            StreamedBody::Complete => {}
            StreamedBody::Ambiguous(anomalies) => {
                return self.reject_framing(&head.as_request(), &anomalies, None).await;
            }
            StreamedBody::Malformed(reason) => return self.reject_malformed(reason).await,
            StreamedBody::TimedOut => return self.request_timed_out().await,
            StreamedBody::Closed => return Ok(Next::Close),
        }

        let mut framer = response_framer(&head.method, 0);
        let sent_at = Instant::now();
        let started = match self.read_response_start(&mut upstream.peer, &mut framer, sent_at).await {
            Ok(started) => started,
            Err((error, received)) => {
                return Err(self.fail_exchange(StartFailure::Receive { error, received }).await?);
            }
        };
        let relayed = self.relay_response(&mut upstream.peer, &mut framer, started, keep_alive, upstream_keeps_alive).await?;
        self.after_response(&relayed, upstream).await
    }

    /// Takes an idle connection to Odoo from the pool when `pooled`
    /// allows it, or opens one. When opening fails, the client gets a 502
    /// and `None` comes back.
    async fn connect_upstream(&mut self, pooled: Pooled) -> Result<Option<Upstream>, SessionError> {
        if pooled == Pooled::Allowed
            && let Some(stream) = self.shared.pool.take(std::time::Instant::now())
        {
            return Ok(Some(Upstream { peer: Peer::new(stream), reused: true }));
        }
        let timeout = self.config().proxy.upstream_timeout;
        let error = match tokio::time::timeout(timeout, self.shared.connector.connect()).await {
            Ok(Ok(stream)) => {
                return Ok(Some(Upstream { peer: Peer::new(stream), reused: false }));
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no connection within {} seconds", timeout.as_secs()),
        };
        tracing::warn!(conn_id = self.source.conn_id, upstream = %self.config().proxy.upstream, %error, "Failed to connect to Odoo");
        self.fail(502, "BAD GATEWAY", "odoogate could not reach Odoo").await?;
        Ok(None)
    }

    async fn send_upstream(&mut self, upstream: &mut Peer, bytes: &[u8]) -> Result<(), SessionError> {
        let timeout = self.config().proxy.upstream_timeout;
        if let Err(error) = upstream.write_all(bytes, timeout).await {
            self.fail(502, "BAD GATEWAY", "odoogate could not send the request to Odoo").await?;
            return Err(SessionError::Upstream(error));
        }
        Ok(())
    }

    /// Sends a request read whole and reads the head of Odoo's response.
    /// Nothing goes to the client here, so a failure can still be retried.
    async fn start_exchange(&mut self, upstream: &mut Peer, bytes: &[u8], framer: &mut ResponseFramer) -> Result<Started, StartFailure> {
        let timeout = self.config().proxy.upstream_timeout;
        upstream.write_all(bytes, timeout).await.map_err(StartFailure::Send)?;
        let sent_at = Instant::now();
        self.read_response_start(upstream, framer, sent_at).await.map_err(|(error, received)| StartFailure::Receive { error, received })
    }

    /// Sends the client an error for an exchange that failed before Odoo's
    /// response head, and returns the error that ends the connection.
    async fn fail_exchange(&mut self, failure: StartFailure) -> Result<SessionError, SessionError> {
        match failure {
            StartFailure::Send(error) => {
                self.fail(502, "BAD GATEWAY", "odoogate could not send the request to Odoo").await?;
                Ok(SessionError::Upstream(error))
            }
            StartFailure::Receive { error, .. } => {
                let (status, reason) = match &error {
                    SessionError::Upstream(StreamError::TimedOut(_)) => (504, "GATEWAY TIMEOUT"),
                    _ => (502, "BAD GATEWAY"),
                };
                self.fail(status, reason, "odoogate did not get a usable response from Odoo").await?;
                Ok(error)
            }
        }
    }

    /// Passes Odoo's response, whose head is `started`, to the client: its
    /// head rewritten (see [`wire::client_response_head`]), its body copied
    /// as it arrives. Interim responses are dropped, because odoogate
    /// handles `Expect` itself and does not pass it to Odoo.
    async fn relay_response(
        &mut self,
        upstream: &mut Peer,
        framer: &mut ResponseFramer,
        started: Started,
        client_keep_alive: bool,
        upstream_keeps_alive: bool,
    ) -> Result<Relayed, SessionError> {
        let Started { start, latency, interim } = started;
        let (response, connection, delimited_by_close) = match start {
            ResponseStart::Complete { response, upgraded } => {
                let connection = match (upgraded, client_keep_alive) {
                    (true, _) => ClientConnection::Upgrade,
                    (false, true) => ClientConnection::KeepAlive,
                    (false, false) => ClientConnection::Close,
                };
                let line = StatusLine { status: response.status, reason: &response.reason };
                self.send(&wire::client_response_head(line, &response.headers, connection)).await?;
                (response, connection, false)
            }
            ResponseStart::Open { delimited_by_close } => {
                let connection =
                    if client_keep_alive && !delimited_by_close { ClientConnection::KeepAlive } else { ClientConnection::Close };
                let open = framer.open_response().ok_or(SessionError::BadResponse("response head missing"))?;
                let head = wire::client_response_head(StatusLine { status: open.status, reason: open.reason }, open.headers, connection);
                let response = self.relay_body(upstream, framer, head).await?;
                (response, connection, delimited_by_close)
            }
        };
        let reuse = Reuse {
            request_keeps_alive: upstream_keeps_alive,
            response_version: response.version,
            response_headers: &response.headers,
            upgraded: connection == ClientConnection::Upgrade,
            interim,
            delimited_by_close,
            leftover_bytes: upstream.buffered().len(),
        };
        let upstream_reusable = reuse.allowed();
        Ok(Relayed { response, latency, connection, upstream_reusable })
    }

    /// Reads Odoo's response up to the end of its head. An error comes with
    /// whether any byte of the response had arrived.
    async fn read_response_start(
        &mut self,
        upstream: &mut Peer,
        framer: &mut ResponseFramer,
        sent_at: Instant,
    ) -> Result<Started, (SessionError, bool)> {
        let timeout = self.config().proxy.upstream_timeout;
        let mut first_byte_at = None;
        let mut interim = false;
        let mut events = Vec::new();
        loop {
            if !upstream.buffered().is_empty() {
                let used = framer.push_to_boundary(upstream.buffered(), 0, &mut events);
                upstream.consume(used);
                let latency = first_byte_at.unwrap_or(sent_at).duration_since(sent_at);
                let mut upgraded = false;
                let mut complete = None;
                for event in events.drain(..) {
                    match event {
                        FramerEvent::Response(response) => complete = Some(response),
                        FramerEvent::Upgraded => upgraded = true,
                        FramerEvent::Interim { .. } => interim = true,
                        FramerEvent::Malformed { reason } => {
                            return Err((SessionError::BadResponse(reason), true));
                        }
                        _ => {}
                    }
                }
                if let Some(response) = complete {
                    return Ok(Started { start: ResponseStart::Complete { response, upgraded }, latency, interim });
                }
                if let Some(open) = framer.open_response() {
                    let start = ResponseStart::Open { delimited_by_close: open.delimited_by_close };
                    return Ok(Started { start, latency, interim });
                }
            }
            let received = first_byte_at.is_some();
            let filled = match received {
                true => upstream.fill_more(timeout).await,
                false => upstream.fill(timeout).await,
            };
            match filled.map_err(|error| (SessionError::Upstream(error), received))? {
                0 => return Err((SessionError::UpstreamClosed, received)),
                _ => {
                    first_byte_at.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    /// Sends the client `head`, then copies the response body to the client
    /// until the framer finds its end, and returns the framed response.
    ///
    /// Body bytes that arrived with the head go out in the same write as the
    /// head, so a small response costs the client one segment and one
    /// wakeup. Without them the head is sent before waiting for the body.
    async fn relay_body(&mut self, upstream: &mut Peer, framer: &mut ResponseFramer, head: Vec<u8>) -> Result<HttpResponse, SessionError> {
        let timeout = self.config().proxy.upstream_timeout;
        let mut events = Vec::new();
        let mut head = Some(head);
        loop {
            if !upstream.buffered().is_empty() {
                let used = framer.push_to_boundary(upstream.buffered(), 0, &mut events);
                let piece = upstream.consume(used);
                match head.take() {
                    Some(mut head) => {
                        head.extend_from_slice(&piece);
                        self.send(&head).await?;
                    }
                    None => self.send(&piece).await?,
                }
                if let Some(response) = take_response(&mut events)? {
                    return Ok(response);
                }
            }
            if let Some(head) = head.take() {
                self.send(&head).await?;
            }
            if upstream.fill_more(timeout).await.map_err(SessionError::Upstream)? == 0 {
                // The close ends a body delimited by it; any other body is cut.
                framer.finish(&mut events);
                return take_response(&mut events)?.ok_or(SessionError::UpstreamClosed);
            }
        }
    }

    /// Ends an exchange: splices the two connections after a protocol
    /// switch, or gives a reusable upstream connection back to the pool,
    /// and returns whether the client connection goes on.
    async fn after_response(&mut self, relayed: &Relayed, mut upstream: Upstream) -> Result<Next, SessionError> {
        match relayed.connection {
            _ if relayed.upstream_reusable => {
                self.shared.pool.put(upstream.peer.into_stream(), std::time::Instant::now());
                Ok(if relayed.connection == ClientConnection::KeepAlive { Next::Continue } else { Next::Close })
            }
            ClientConnection::KeepAlive => Ok(Next::Continue),
            ClientConnection::Close => Ok(Next::Close),
            ClientConnection::Upgrade => {
                let (to_upstream, to_client) = Peer::splice(&mut self.client, &mut upstream.peer).await.map_err(SessionError::Splice)?;
                tracing::debug!(conn_id = self.source.conn_id, to_upstream, to_client, "Upgraded connection closed");
                Ok(Next::Close)
            }
        }
    }
}

fn response_framer(method: &str, keep_body: usize) -> ResponseFramer {
    let mut framer = ResponseFramer::new(FramerLimits { max_header_bytes: MAX_HEAD_BYTES, max_body_bytes: keep_body });
    framer.expect_response(method);
    framer
}

/// Takes the response that ended from the framer's events.
fn take_response(events: &mut Vec<FramerEvent>) -> Result<Option<HttpResponse>, SessionError> {
    let mut complete = None;
    for event in events.drain(..) {
        match event {
            FramerEvent::Response(response) => complete = Some(response),
            FramerEvent::Malformed { reason } => return Err(SessionError::BadResponse(reason)),
            _ => {}
        }
    }
    Ok(complete)
}

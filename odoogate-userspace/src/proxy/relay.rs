//! Talking to Odoo: one upstream connection per request, the request sent
//! whole or streamed, and Odoo's response passed back as it arrives.

use std::time::Duration;

use tokio::time::Instant;

use super::connector::UpstreamConnector;
use super::read::{OpenHead, StreamedBody};
use super::session::{MAX_HEAD_BYTES, Next, Session, SessionError, ambiguous};
use super::stream::{Peer, StreamError};
use super::wire::{self, ClientConnection, ForwardedBody, RequestLine, StatusLine};
use crate::http::framer::{FramerEvent, FramerLimits, ResponseFramer};
use crate::http::{Headers, HttpRequest, HttpResponse};

/// A response passed back to the client.
pub(super) struct Relayed {
    /// The response, its body kept up to the limit given to the relay.
    pub response: HttpResponse,
    /// From the last byte sent to Odoo to the first byte of its answer.
    pub latency: Duration,
    pub connection: ClientConnection,
}

/// The start of Odoo's response.
enum ResponseStart {
    /// A response without a body (or a `101 Switching Protocols`).
    Complete { response: HttpResponse, upgraded: bool },
    Open { status: u16, reason: String, headers: Headers, delimited_by_close: bool },
}

impl<C: UpstreamConnector> Session<'_, C> {
    /// Sends `bytes`, the complete upstream form of a request read whole,
    /// to Odoo and relays the answer. Returns `None` in place of the
    /// response when Odoo could not be reached (the client then got a 502).
    pub async fn forward_whole(
        &mut self,
        request: &HttpRequest,
        bytes: Vec<u8>,
        keep_alive: bool,
        keep_body: usize,
    ) -> Result<(Next, Option<Relayed>), SessionError> {
        let Some(mut upstream) = self.connect_upstream().await? else {
            return Ok((Next::Close, None));
        };
        self.send_upstream(&mut upstream, &bytes).await?;

        let relayed = self.relay_response(&mut upstream, &request.method, keep_alive, keep_body).await?;
        let next = self.after_response(relayed.connection, &mut upstream).await?;
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
        let Some(mut upstream) = self.connect_upstream().await? else {
            return Ok(Next::Close);
        };
        let headers = wire::forwarded_headers(&head.headers, self.source.peer.ip(), ForwardedBody::AsSent);
        let line = RequestLine { method: &head.method, target: &head.target, version: head.version };
        self.send_upstream(&mut upstream, &wire::request_head(line, &headers)).await?;

        match self.stream_body(&mut upstream).await? {
            StreamedBody::Complete => {}
            StreamedBody::Ambiguous(anomalies) => {
                return self.reject_framing(&head.as_request(), &anomalies, None).await;
            }
            StreamedBody::Malformed(reason) => return self.reject_malformed(reason).await,
            StreamedBody::TimedOut => return self.request_timed_out().await,
            StreamedBody::Closed => return Ok(Next::Close),
        }

        let relayed = self.relay_response(&mut upstream, &head.method, keep_alive, 0).await?;
        self.after_response(relayed.connection, &mut upstream).await
    }

    /// Opens a connection to Odoo. When that fails, the client gets a 502
    /// and `None` comes back.
    async fn connect_upstream(&mut self) -> Result<Option<Peer>, SessionError> {
        let timeout = self.config().proxy.upstream_timeout;
        let error = match tokio::time::timeout(timeout, self.shared.connector.connect()).await {
            Ok(Ok(stream)) => return Ok(Some(Peer::new(stream))),
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

    /// Passes Odoo's response to the client: its head rewritten (see
    /// [`wire::client_response_head`]), its body copied as it arrives.
    /// Interim responses are dropped, since odoogate answered `Expect`
    /// itself. `keep_body` bounds the body bytes kept in the returned
    /// response.
    async fn relay_response(
        &mut self,
        upstream: &mut Peer,
        method: &str,
        client_keep_alive: bool,
        keep_body: usize,
    ) -> Result<Relayed, SessionError> {
        let mut framer = ResponseFramer::new(FramerLimits { max_header_bytes: MAX_HEAD_BYTES, max_body_bytes: keep_body });
        framer.expect_response(method);
        let sent_at = Instant::now();

        let (start, latency) = match self.read_response_start(upstream, &mut framer, sent_at).await {
            Ok(start) => start,
            Err(error) => {
                let (status, reason) = match &error {
                    SessionError::Upstream(StreamError::TimedOut(_)) => (504, "GATEWAY TIMEOUT"),
                    _ => (502, "BAD GATEWAY"),
                };
                self.fail(status, reason, "odoogate did not get a usable response from Odoo").await?;
                return Err(error);
            }
        };

        match start {
            ResponseStart::Complete { response, upgraded } => {
                let connection = match (upgraded, client_keep_alive) {
                    (true, _) => ClientConnection::Upgrade,
                    (false, true) => ClientConnection::KeepAlive,
                    (false, false) => ClientConnection::Close,
                };
                let line = StatusLine { status: response.status, reason: &response.reason };
                self.send(&wire::client_response_head(line, &response.headers, connection)).await?;
                Ok(Relayed { response, latency, connection })
            }
            ResponseStart::Open { status, reason, headers, delimited_by_close } => {
                let connection = if client_keep_alive && !delimited_by_close {
                    ClientConnection::KeepAlive
                } else {
                    ClientConnection::Close
                };
                self.send(&wire::client_response_head(StatusLine { status, reason: &reason }, &headers, connection)).await?;
                let response = self.relay_body(upstream, &mut framer).await?;
                Ok(Relayed { response, latency, connection })
            }
        }
    }

    /// Reads Odoo's response up to the end of its head.
    async fn read_response_start(
        &mut self,
        upstream: &mut Peer,
        framer: &mut ResponseFramer,
        sent_at: Instant,
    ) -> Result<(ResponseStart, Duration), SessionError> {
        let timeout = self.config().proxy.upstream_timeout;
        let mut first_byte_at = None;
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
                        FramerEvent::Malformed { reason } => return Err(SessionError::BadResponse(reason)),
                        _ => {}
                    }
                }
                if let Some(response) = complete {
                    return Ok((ResponseStart::Complete { response, upgraded }, latency));
                }
                if let Some(open) = framer.open_response() {
                    let start = ResponseStart::Open {
                        status: open.status,
                        reason: open.reason.to_owned(),
                        headers: open.headers.clone(),
                        delimited_by_close: open.delimited_by_close,
                    };
                    return Ok((start, latency));
                }
            }
            match upstream.fill(timeout).await.map_err(SessionError::Upstream)? {
                0 => return Err(SessionError::UpstreamClosed),
                _ => {
                    first_byte_at.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    /// Copies the response body to the client until the framer finds its
    /// end, and returns the framed response.
    async fn relay_body(&mut self, upstream: &mut Peer, framer: &mut ResponseFramer) -> Result<HttpResponse, SessionError> {
        let timeout = self.config().proxy.upstream_timeout;
        let mut events = Vec::new();
        loop {
            if !upstream.buffered().is_empty() {
                let used = framer.push_to_boundary(upstream.buffered(), 0, &mut events);
                let piece = upstream.consume(used);
                self.send(&piece).await?;
                if let Some(response) = take_response(&mut events)? {
                    return Ok(response);
                }
            }
            if upstream.fill(timeout).await.map_err(SessionError::Upstream)? == 0 {
                // The close ends a body delimited by it; any other body is cut.
                framer.finish(&mut events);
                return take_response(&mut events)?.ok_or(SessionError::UpstreamClosed);
            }
        }
    }

    /// Ends an exchange: splices the two connections after a protocol
    /// switch, and tells whether the client connection goes on.
    async fn after_response(&mut self, connection: ClientConnection, upstream: &mut Peer) -> Result<Next, SessionError> {
        match connection {
            ClientConnection::KeepAlive => Ok(Next::Continue),
            ClientConnection::Close => Ok(Next::Close),
            ClientConnection::Upgrade => {
                let (to_upstream, to_client) = Peer::splice(&mut self.client, upstream).await.map_err(SessionError::Splice)?;
                tracing::debug!(conn_id = self.source.conn_id, to_upstream, to_client, "Upgraded connection closed");
                Ok(Next::Close)
            }
        }
    }
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

//! Reading a client's requests: the head first, then either the whole body
//! of an RPC request, or the body piece by piece for a request that
//! streams through to Odoo.

use std::sync::OnceLock;

use tokio::time::Instant;

use super::connector::UpstreamConnector;
use super::session::{Session, SessionError, ambiguous};
use super::stream::{Peer, StreamError};
use crate::http::framer::{FramerEvent, OpenRequest};
use crate::http::{FramingAnomaly, Headers, HttpRequest, HttpVersion};

/// The head of a request whose body has not been read yet.
#[derive(Clone, Debug)]
pub(super) struct OpenHead {
    pub method: String,
    pub target: String,
    pub version: HttpVersion,
    pub headers: Headers,
    pub anomalies: Vec<FramingAnomaly>,
}

impl OpenHead {
    fn copy_of(open: OpenRequest<'_>) -> Self {
        Self {
            method: open.method.to_owned(),
            target: open.target.to_owned(),
            version: open.version,
            headers: open.headers.clone(),
            anomalies: open.anomalies.to_vec(),
        }
    }

    /// Returns the head as a request without a body, for audit records.
    pub fn as_request(&self) -> HttpRequest {
        HttpRequest {
            method: self.method.clone(),
            target: self.target.clone(),
            version: self.version,
            headers: self.headers.clone(),
            body: bytes::Bytes::new(),
            body_truncated: false,
            anomalies: self.anomalies.clone(),
            first_byte_ns: 0,
            last_byte_ns: 0,
        }
    }
}

/// How the start of a request went.
pub(super) enum RequestStart {
    /// The client closed the connection between requests.
    Closed,
    /// A new connection took this idle connection's slot at
    /// `proxy.max_connections`.
    Evicted,
    /// The request timeout passed; `started` tells whether part of a
    /// request had arrived.
    TimedOut { started: bool },
    /// The framer could not read the request (its reason is bounded text).
    Malformed(&'static str),
    /// A request without a body, or whose body came with its head.
    Complete(HttpRequest),
    /// A head whose body is still to come.
    Open(OpenHead),
}

/// How reading the rest of a request went.
pub(super) enum BodyRead {
    Complete(HttpRequest),
    /// The body exceeds `proxy.max_request_bytes`.
    TooLarge,
    Malformed(&'static str),
    TimedOut,
    /// The client closed the connection inside the body.
    Closed,
}

/// How streaming a request body to Odoo went.
pub(super) enum StreamedBody {
    Complete,
    /// The body showed an ambiguous framing; nothing of the offending
    /// piece was sent.
    Ambiguous(Vec<FramingAnomaly>),
    Malformed(&'static str),
    TimedOut,
    Closed,
}

/// Returns a monotonic time in nanoseconds, for the framers' timestamps.
fn now_ns() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

impl<C: UpstreamConnector> Session<'_, C> {
    /// Reads until a request head is complete. The whole request, and the
    /// wait for it on an idle connection, share one deadline.
    pub async fn read_start(&mut self) -> Result<RequestStart, SessionError> {
        self.deadline = Instant::now() + self.config().proxy.request_timeout;
        let mut started = false;
        loop {
            if !self.client.buffered().is_empty() {
                started = true;
                self.frame_buffered();
                if let Some(start) = self.take_start() {
                    return Ok(start);
                }
            }
            let filled = match started {
                true => self.fill_until_deadline().await?,
                false => match self.fill_while_idle().await? {
                    Some(filled) => filled,
                    None => return Ok(RequestStart::Evicted),
                },
            };
            match filled {
                Some(0) if started => return Ok(RequestStart::Malformed("message incomplete at connection close")),
                Some(0) => return Ok(RequestStart::Closed),
                Some(_) => {}
                None => return Ok(RequestStart::TimedOut { started }),
            }
        }
    }

    /// Waits for the first bytes of a request with the connection's slot
    /// marked idle, so that a new connection may take the slot at
    /// `proxy.max_connections`. Returns `None` when that happened: the
    /// connection must close, and any bytes that arrived meanwhile are
    /// never forwarded.
    async fn fill_while_idle(&mut self) -> Result<Option<Option<usize>>, SessionError> {
        if !self.slot.set_idle() {
            return Ok(None);
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let filled = tokio::select! {
            filled = self.client.fill(remaining) => match filled {
                Ok(read) => Some(read),
                Err(StreamError::TimedOut(_)) => None,
                Err(error) => return Err(SessionError::Client(error)),
            },
            () = self.slot.evicted() => return Ok(None),
        };
        if !self.slot.set_busy() {
            return Ok(None);
        }
        Ok(Some(filled))
    }

    /// Reads the rest of an RPC request whose head is `head`, bounded by
    /// `proxy.max_request_bytes` and the request deadline.
    pub async fn read_rest(&mut self, head: &OpenHead) -> Result<BodyRead, SessionError> {
        let limit = self.config().proxy.max_request_bytes;
        if declared_length(&head.headers).is_some_and(|length| length > limit as u64) {
            return Ok(BodyRead::TooLarge);
        }
        let mut body_bytes = 0usize;
        loop {
            if !self.client.buffered().is_empty() {
                body_bytes += self.frame_buffered();
                if body_bytes > limit {
                    return Ok(BodyRead::TooLarge);
                }
                // `take_end`, not `take_start`: the head is known, so the
                // open request needs no copy.
                match self.take_end() {
                    (_, Some(reason)) => return Ok(BodyRead::Malformed(reason)),
                    (Some(request), None) => return Ok(BodyRead::Complete(request)),
                    (None, None) => {}
                }
            }
            match self.fill_until_deadline().await? {
                Some(0) => return Ok(BodyRead::Closed),
                Some(_) => {}
                None => return Ok(BodyRead::TimedOut),
            }
        }
    }

    /// Copies the body of a request that is not an RPC call to `upstream`
    /// as it arrives. Each piece is framed before it is sent, so a chunk
    /// line Odoo could read differently is caught before Odoo sees it.
    /// Each read may wait up to the request timeout, since uploads can be
    /// long.
    pub async fn stream_body(&mut self, upstream: &mut Peer) -> Result<StreamedBody, SessionError> {
        let timeout = self.config().proxy.request_timeout;
        let upstream_timeout = self.config().proxy.upstream_timeout;
        loop {
            if !self.client.buffered().is_empty() {
                let used = self.framer.push_to_boundary(self.client.buffered(), now_ns(), &mut self.events);
                let piece = self.client.consume(used);
                let (complete, malformed) = self.take_end();
                if let Some(reason) = malformed {
                    return Ok(StreamedBody::Malformed(reason));
                }
                let anomalies = match (&complete, self.framer.open_request()) {
                    (Some(request), _) => ambiguous(&request.anomalies, false),
                    (None, Some(open)) => ambiguous(open.anomalies, false),
                    (None, None) => Vec::new(),
                };
                if !anomalies.is_empty() {
                    return Ok(StreamedBody::Ambiguous(anomalies));
                }
                upstream.write_all(&piece, upstream_timeout).await.map_err(SessionError::Upstream)?;
                if complete.is_some() {
                    return Ok(StreamedBody::Complete);
                }
            }
            match self.client.fill_more(timeout).await {
                Ok(0) => return Ok(StreamedBody::Closed),
                Ok(_) => {}
                Err(StreamError::TimedOut(_)) => return Ok(StreamedBody::TimedOut),
                Err(error) => return Err(SessionError::Client(error)),
            }
        }
    }

    /// Frames the buffered bytes up to the next boundary and returns how
    /// many it took.
    fn frame_buffered(&mut self) -> usize {
        let used = self.framer.push_to_boundary(self.client.buffered(), now_ns(), &mut self.events);
        self.client.consume(used);
        used
    }

    /// Reads more from the client before the request deadline. `None` when
    /// the deadline passed.
    async fn fill_until_deadline(&mut self) -> Result<Option<usize>, SessionError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        match self.client.fill_more(remaining).await {
            Ok(read) => Ok(Some(read)),
            Err(StreamError::TimedOut(_)) => Ok(None),
            Err(error) => Err(SessionError::Client(error)),
        }
    }

    /// Turns the framer's events into the start of a request, if one is
    /// there.
    fn take_start(&mut self) -> Option<RequestStart> {
        let (complete, malformed) = self.take_end();
        if let Some(reason) = malformed {
            return Some(RequestStart::Malformed(reason));
        }
        if let Some(request) = complete {
            return Some(RequestStart::Complete(request));
        }
        self.framer.open_request().map(|open| RequestStart::Open(OpenHead::copy_of(open)))
    }

    /// Takes the framer's events: the request that ended and the error that
    /// stopped framing, if any.
    fn take_end(&mut self) -> (Option<HttpRequest>, Option<&'static str>) {
        let mut complete = None;
        let mut malformed = None;
        for event in self.events.drain(..) {
            match event {
                FramerEvent::Request(request) => complete = Some(request),
                FramerEvent::Malformed { reason } => malformed = Some(reason),
                _ => {}
            }
        }
        (complete, malformed)
    }
}

/// Returns the body length a request head declares, when it uses a plain
/// `Content-Length`.
fn declared_length(headers: &Headers) -> Option<u64> {
    if headers.get("transfer-encoding").is_some() {
        return None;
    }
    headers.get_str("content-length")?.trim().parse().ok()
}

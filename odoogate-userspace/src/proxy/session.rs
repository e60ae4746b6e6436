//! One client connection: read a request, decide on it, answer or forward
//! it, and keep the connection for the next request when both the client
//! and the framing of the response allow it.
//!
//! Reading the client's requests is in `read`, talking to Odoo in `relay`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::connector::UpstreamConnector;
use super::deny::{self, Denial, Refusal, Shape};
use super::read::{BodyRead, RequestStart};
use super::recorder::Recorder;
use super::slots::Slot;
use super::stream::{Peer, StreamError};
use super::live::LivePolicy;
use super::narrow::{self, Narrowed};
use super::pool::UpstreamPool;
use super::tokens::LiveTokens;
use super::wire::{self, OwnResponse};
use crate::audit::{AuditEvent, AuditRecord, Decision};
use crate::config::Config;
use crate::http::framer::{FramerEvent, FramerLimits, RequestFramer};
use crate::http::{FramingAnomaly, HttpRequest};
use crate::audit::Identity;
use crate::identity::{self, InvalidToken, Resolution, SessionTable, Source, TokenResolution};
use crate::token::{ServiceCredentials, TokenStore, rewrite_request_with_headers};
use crate::pipeline::records;
use crate::policy::runtime::Decided;
use crate::rpc::{self, Call, CallKind, DecodeError, DecodeLimits};

/// Largest request or response head odoogate reads.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Response body bytes kept to read a call's outcome. Longer bodies pass
/// through whole; only the copy kept for the outcome is cut, which the
/// outcome decoders handle.
const MAX_KEPT_RESPONSE_BYTES: usize = 1024 * 1024;

/// How long a connection closed after odoogate's own error response (400,
/// 408, 413) still reads and discards what the client sends, so the client
/// can read the response before the close.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Nesting bound for decoding request bodies, as on the observe path.
const MAX_DECODE_DEPTH: usize = 64;

/// The state the proxy's connections share.
pub(super) struct Shared<C> {
    /// The configuration in force, the grants and the rate limits.
    pub live: Arc<LivePolicy>,
    pub connector: C,
    /// Idle upstream connections for the next request.
    pub pool: UpstreamPool,
    pub sessions: Mutex<SessionTable>,
    pub recorder: Recorder,
    /// Scoped tokens and the service credentials that replace them; `None`
    /// when no token store is loaded, so every presented token is unknown.
    pub tokens: Option<Arc<LiveTokens>>,
}

/// The token store and the credentials forwarded in place of tokens.
pub struct Tokens {
    pub store: TokenStore,
    pub credentials: ServiceCredentials,
}

impl<C> Shared<C> {
    pub fn sessions(&self) -> MutexGuard<'_, SessionTable> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the client connection goes on after an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    Close,
}

/// Why a connection ended before its exchange did.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("client connection failed: {0}")]
    Client(#[source] StreamError),
    #[error("connection to Odoo failed: {0}")]
    Upstream(#[source] StreamError),
    #[error("Odoo sent an unreadable response: {0}")]
    BadResponse(&'static str),
    #[error("Odoo closed the connection before its response ended")]
    UpstreamClosed,
    #[error("WebSocket relay failed: {0}")]
    Splice(#[source] std::io::Error),
}

/// The state of one client connection.
pub(super) struct Session<'s, C> {
    pub shared: &'s Shared<C>,
    pub client: Peer,
    pub framer: RequestFramer,
    pub events: Vec<FramerEvent>,
    pub source: Source,
    /// The configuration the current request is served under, taken from
    /// [`LivePolicy::config`] when the request starts.
    pub config: Arc<Config>,
    /// When the request being read must be complete.
    pub deadline: Instant,
    /// The connection's place under `proxy.max_connections`.
    pub slot: Slot,
}

impl<'s, C: UpstreamConnector> Session<'s, C> {
    pub fn new(shared: &'s Shared<C>, client: Peer, source: Source, slot: Slot) -> Self {
        let config = shared.live.config();
        let limits = FramerLimits {
            max_header_bytes: MAX_HEAD_BYTES,
            max_body_bytes: config.proxy.max_request_bytes,
        };
        Self {
            shared,
            client,
            framer: RequestFramer::new(limits),
            events: Vec::new(),
            source,
            config,
            deadline: Instant::now(),
            slot,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves requests until the connection ends.
    pub async fn run(mut self) -> Result<(), SessionError> {
        while self.handle_next().await? == Next::Continue {}
        Ok(())
    }

    async fn handle_next(&mut self) -> Result<Next, SessionError> {
        self.config = self.shared.live.config();
        let request = match self.read_start().await? {
            RequestStart::Closed | RequestStart::TimedOut { started: false } => return Ok(Next::Close),
            RequestStart::Evicted if self.client.has_unread_bytes() => return self.reject_evicted_request().await,
            RequestStart::Evicted => {
                tracing::debug!(conn_id = self.source.conn_id, "Closing an idle connection to make room for a new one");
                return Ok(Next::Close);
            }
            RequestStart::TimedOut { started: true } => return self.request_timed_out().await,
            RequestStart::Malformed(reason) => return self.reject_malformed(reason).await,
            RequestStart::Complete(request) => request,
            RequestStart::Open(head) => {
                let is_rpc = rpc::is_rpc_surface(&head.method, &head.target);
                // A body whose framing is in doubt is not waited for: with
                // a head such as Content-Length plus chunked, the client
                // may never send what the lenient reading expects. The
                // check runs before `100 Continue`, so such a client gets
                // the 400 and no invitation to send its body.
                let anomalies = ambiguous(&head.anomalies, true);
                if is_rpc && !anomalies.is_empty() {
                    return self.reject_framing(&head.as_request(), &anomalies, None).await;
                }
                if wire::expects_continue(&head.headers) {
                    self.send(wire::CONTINUE).await?;
                }
                if !is_rpc {
                    if let Some(denied) = self.reject_web_route(&head.as_request()).await? {
                        return Ok(denied);
                    }
                    return self.pass_through(head).await;
                }
                match self.read_rest(&head).await? {
                    BodyRead::Complete(request) => request,
                    BodyRead::TooLarge => return self.reject_oversized(&head.as_request()).await,
                    BodyRead::Malformed(reason) => return self.reject_malformed(reason).await,
                    BodyRead::TimedOut => return self.request_timed_out().await,
                    BodyRead::Closed => return Ok(Next::Close),
                }
            }
        };
        self.on_request(request).await
    }

    /// Decides what to do with a request read whole.
    async fn on_request(&mut self, request: HttpRequest) -> Result<Next, SessionError> {
        let is_rpc = rpc::is_rpc_surface(&request.method, &request.target);
        let keep_alive = wire::client_keeps_alive(request.version, &request.headers);
        let limits = DecodeLimits { max_depth: MAX_DECODE_DEPTH, max_body_bytes: self.config().proxy.max_request_bytes };
        let decoded = is_rpc.then(|| rpc::decode_request(&request, &limits));

        let anomalies = ambiguous(&request.anomalies, is_rpc);
        if !anomalies.is_empty() {
            let call = decoded.and_then(|decoded| decoded.ok().flatten());
            return self.reject_framing(&request, &anomalies, call.as_ref()).await;
        }
        match decoded {
            Some(Err(error)) => self.reject_undecodable(&request, &error, keep_alive).await,
            Some(Ok(Some(call))) => self.on_call(&request, &call, keep_alive).await,
            None if let Some(denied) = self.reject_web_route(&request).await? => Ok(denied),
            Some(Ok(None)) | None => {
                let bytes = self.plain_upstream_request(&request);
                Ok(self.forward_whole(&request, bytes, keep_alive, 0).await?.0)
            }
        }
    }

    /// Decides on a call and either answers it with an Odoo-shaped denial
    /// or forwards it and records Odoo's outcome.
    async fn on_call(&mut self, request: &HttpRequest, call: &Call, keep_alive: bool) -> Result<Next, SessionError> {
        let config = self.config.clone();
        let TokenResolution { resolution, invalid_token } = self.resolve(request, Some(call));

        if let Some(invalid) = invalid_token {
            // The call is refused whatever the policy says, so it is decided
            // without grants or rate limits and uses up no token.
            let verdict = crate::policy::decide(call, &resolution, &config, std::time::SystemTime::now());
            let record = records::call_record(call, request, &resolution, &self.source, &config, &verdict);
            return self.deny_token(request, call, record, &invalid, keep_alive).await;
        }
        let decided = self.shared.live.decide(call, request, &resolution, &config);
        let narrowed = self.narrow(request, call, &decided, &resolution);
        let (request, call, decided) = match &narrowed {
            Some((narrowed, decided)) => (&narrowed.request, &narrowed.call, decided.clone()),
            None => (request, call, decided),
        };
        let mut record = records::call_record(call, request, &resolution, &self.source, &config, &decided.verdict);
        if record.decision == Some(Decision::Deny) {
            let message = access_error_message(&record);
            let refusal = match &decided.rate_limited {
                Some(limited) => Refusal::RateLimited { message: &message, retry_after: limited.retry_after },
                None => Refusal::AccessError { message: &message },
            };
            let denial = deny::denial(Shape::of_protocol(call.protocol), refusal, &request.body);
            record.outcome = Some(denial.outcome.to_field());
            record.http_status = Some(denial.status);
            self.shared.recorder.write(record);
            return self.send_denial(&denial, keep_alive).await;
        }

        let bytes = match self.upstream_request(request, call, &resolution) {
            Ok(bytes) => bytes,
            Err(error) => {
                record.message.push_str(&format!(" (not forwarded: {error})"));
                record.http_status = Some(500);
                self.shared.recorder.write(record);
                tracing::warn!(conn_id = self.source.conn_id, %error, "Failed to swap a scoped token for the service credential");
                return self.fail(500, "INTERNAL SERVER ERROR", "odoogate could not prepare the request for Odoo").await;
            }
        };
        // Held while the call is with Odoo: a connection stopped at
        // shutdown drops it, which still writes the record.
        let pending = self.shared.recorder.pending(record);
        let forwarded = self.forward_whole(request, bytes, keep_alive, MAX_KEPT_RESPONSE_BYTES).await;
        let mut record = pending.into_record();
        match forwarded {
            Ok((next, Some(relayed))) => {
                let response = &relayed.response;
                record.outcome = Some(rpc::decode_response(call, response).to_field());
                record.http_status = Some(response.status);
                record.latency_us = Some(u64::try_from(relayed.latency.as_micros()).unwrap_or(u64::MAX));
                if call.kind == CallKind::Auth && record.uid.is_none() {
                    record.uid = rpc::login_uid(call, response);
                }
                let integration = resolution.integration.as_deref();
                let token = crate::pipeline::login_token(call, &resolution);
                crate::pipeline::track_session(call, integration, token, response, &mut self.shared.sessions());
                self.shared.recorder.write(record);
                Ok(next)
            }
            Ok((next, None)) => {
                record.message.push_str(" (no response: Odoo is unreachable)");
                record.http_status = Some(502);
                self.shared.recorder.write(record);
                Ok(next)
            }
            Err(error) => {
                record.message.push_str(&format!(" (no response: {error})"));
                self.shared.recorder.write(record);
                Err(error)
            }
        }
    }

    /// Rewrites a read that `decided` denies for its fields, when the rule
    /// says `narrow_reads`, and decides on the rewritten call. Returns it
    /// only when that decision allows it.
    fn narrow(&self, request: &HttpRequest, call: &Call, decided: &Decided, resolution: &Resolution) -> Option<(Narrowed, Decided)> {
        let fields = crate::policy::narrowing(call, &decided.verdict)?;
        let limits = DecodeLimits { max_depth: MAX_DECODE_DEPTH, max_body_bytes: self.config.proxy.max_request_bytes };
        let narrowed = match narrow::narrow(request, call, &fields, &limits) {
            Ok(narrowed) => narrowed,
            Err(error) => {
                tracing::debug!(conn_id = self.source.conn_id, %error, "Failed to narrow a read; it stays denied");
                return None;
            }
        };
        let mut decided = self.shared.live.decide(&narrowed.call, &narrowed.request, resolution, &self.config);
        if !decided.verdict.allowed {
            return None;
        }
        decided.verdict.reason = format!("{}, with the read narrowed to fields {}", decided.verdict.reason, fields.join(","));
        Some((narrowed, decided))
    }

    /// Resolves the integration of a request, its scoped token first, as
    /// observe mode does. `call` is `None` for a body that did not decode.
    /// Without a token store, a presented token cannot be valid.
    fn resolve(&self, request: &HttpRequest, call: Option<&Call>) -> TokenResolution {
        let sessions = self.shared.sessions();
        let store = self.shared.tokens.as_ref().map(|tokens| tokens.store());
        let now = std::time::SystemTime::now();
        identity::resolve_with_tokens(&self.config, store.as_deref(), call, &request.headers, &self.source, &sessions, now)
    }

    /// Answers a call whose scoped token did not verify with Odoo's
    /// AccessDenied, as for a wrong API key.
    async fn deny_token(
        &mut self,
        request: &HttpRequest,
        call: &Call,
        mut record: AuditRecord,
        invalid: &InvalidToken,
        keep_alive: bool,
    ) -> Result<Next, SessionError> {
        let denial = deny::denial(Shape::of_protocol(call.protocol), Refusal::AccessDenied, &request.body);
        let reason = invalid.reason_text();
        record.decision = Some(Decision::Deny);
        record.rule = None;
        record.message = format!("deny {}: {reason}", records::CallTarget(call));
        record.reason = Some(reason);
        record.error_code = Some(invalid.reason.code().to_owned());
        record.outcome = Some(denial.outcome.to_field());
        record.http_status = Some(denial.status);
        self.shared.recorder.write(record);
        self.send_denial(&denial, keep_alive).await
    }

    /// Returns the bytes to send Odoo for an allowed call: with a scoped
    /// token, the request rewritten with the integration's service
    /// credential; otherwise the request as the client sent it.
    fn upstream_request(&self, request: &HttpRequest, call: &Call, resolution: &Resolution) -> Result<Bytes, String> {
        if resolution.identity != Identity::Token {
            return Ok(self.plain_upstream_request(request));
        }
        let (Some(tokens), Some(integration)) = (&self.shared.tokens, resolution.integration.as_deref()) else {
            return Err("no service credential is loaded".to_owned());
        };
        let credentials = tokens.credentials();
        let credential = credentials
            .for_integration(integration)
            .ok_or_else(|| format!("no service credential for integration {integration}"))?;
        let body = wire::ForwardedBody::Whole(request.body.len());
        let headers = wire::forwarded_headers(&request.headers, self.source.peer.ip(), request.version, body);
        let inject = self.config().tokens.inject_context.then_some(integration);
        rewrite_request_with_headers(request, &headers, call, credential, inject).map_err(|error| error.to_string())
    }

    /// Returns the request as the client sent it, re-framed, for Odoo.
    pub fn plain_upstream_request(&self, request: &HttpRequest) -> Bytes {
        let body = wire::ForwardedBody::Whole(request.body.len());
        let headers = wire::forwarded_headers(&request.headers, self.source.peer.ip(), request.version, body);
        let line = wire::RequestLine { method: &request.method, target: &request.target, version: request.version };
        let mut bytes = wire::request_head(line, &headers);
        bytes.extend_from_slice(&request.body);
        bytes.into()
    }

    // === rejections ===

    /// Rejects a request whose framing Odoo could read differently: one
    /// framing record per anomaly, the call record as a denial when the
    /// body was read and decoded (not for anomalies in the head, whose body
    /// is never read), then 400 and close, since the stream position is in
    /// doubt.
    pub async fn reject_framing(
        &mut self,
        request: &HttpRequest,
        anomalies: &[FramingAnomaly],
        call: Option<&Call>,
    ) -> Result<Next, SessionError> {
        let conn_id = self.source.conn_id;
        for anomaly in anomalies {
            self.shared.recorder.write(records::framing_anomaly(conn_id, &self.source, request, *anomaly));
        }
        if let Some(call) = call {
            let config = self.config.clone();
            let resolved = self.resolve(request, Some(call));
            let resolution = resolved.resolution;
            let decided = self.shared.live.decide(call, request, &resolution, &config);
            let mut record = records::call_record(call, request, &resolution, &self.source, &config, &decided.verdict);
            // A refused token is named as the call's own refusal would name it.
            if let Some(invalid) = &resolved.invalid_token {
                record.decision = Some(Decision::Deny);
                record.rule = None;
                record.reason = Some(invalid.reason_text());
                record.error_code = Some(invalid.reason.code().to_owned());
            }
            record.outcome = Some(rpc::Outcome::HttpStatus(400).to_field());
            record.http_status = Some(400);
            self.shared.recorder.write(record);
        }
        let codes: Vec<&str> = anomalies.iter().map(|anomaly| anomaly.code()).collect();
        let message = format!("odoogate rejected the request: ambiguous HTTP framing ({})", codes.join(", "));
        self.fail(400, "BAD REQUEST", &message).await
    }

    /// Answers a request to an RPC surface whose body does not decode the
    /// way Odoo answers a body it cannot parse.
    async fn reject_undecodable(&mut self, request: &HttpRequest, error: &DecodeError, keep_alive: bool) -> Result<Next, SessionError> {
        let resolution = self.resolve(request, None).resolution;
        self.shared.recorder.write(records::decode_error(&self.source, request, error, &resolution));

        let message = format!("odoogate could not read the request: {error}");
        let denial = deny::denial(Shape::of_path(request.path()), Refusal::BadRequest { message: &message }, &request.body);
        self.send_denial(&denial, keep_alive).await
    }

    async fn reject_oversized(&mut self, request: &HttpRequest) -> Result<Next, SessionError> {
        let limit = self.config().proxy.max_request_bytes;
        let error = DecodeError::Truncated(limit);
        let resolution = self.resolve(request, None).resolution;
        self.shared.recorder.write(records::decode_error(&self.source, request, &error, &resolution));
        let message = format!("odoogate rejected the request: its body exceeds proxy.max_request_bytes ({limit} bytes)");
        self.fail(413, "REQUEST ENTITY TOO LARGE", &message).await
    }

    pub async fn reject_malformed(&mut self, reason: &'static str) -> Result<Next, SessionError> {
        let message = format!("malformed HTTP request on connection {}: {reason}", self.source.conn_id);
        let mut record = AuditRecord::new(AuditEvent::DecodeError, message);
        record.src_ip = Some(self.source.peer.ip());
        record.src_port = Some(self.source.peer.port());
        record.conn_id = Some(self.source.conn_id);
        record.error_code = Some("malformed_http".to_owned());
        record.reason = Some(reason.to_owned());
        self.shared.recorder.write(record);
        self.fail(400, "BAD REQUEST", &format!("odoogate rejected the request: {reason}")).await
    }

    /// Denies a request outside the RPC routes that carries an
    /// integration's web session to a path its `web_routes` do not list,
    /// with 403 and a `web_route` record. Returns `None` when the request
    /// may go on.
    async fn reject_web_route(&mut self, request: &HttpRequest) -> Result<Option<Next>, SessionError> {
        let store = self.shared.tokens.as_ref().map(|tokens| tokens.store());
        let refusal = crate::pipeline::web_route_refusal(&self.config, &self.shared.sessions(), store.as_deref(), request);
        let Some((integration, reason)) = refusal else {
            return Ok(None);
        };
        let mut record = records::web_route(&self.source, request, &integration, reason, Decision::Deny);
        record.http_status = Some(403);
        tracing::info!(
            conn_id = self.source.conn_id,
            integration = %integration,
            path = %request.path(),
            reason = record.reason.as_deref().unwrap_or_default(),
            "Web route denied"
        );
        let message = format!("odoogate denied {} to integration {integration}: see the web_routes of the integration", request.path());
        self.shared.recorder.write(record);
        self.fail(403, "FORBIDDEN", &message).await.map(Some)
    }

    pub async fn request_timed_out(&mut self) -> Result<Next, SessionError> {
        let seconds = self.config().proxy.request_timeout.as_secs();
        self.fail(408, "REQUEST TIMEOUT", &format!("odoogate: the request did not arrive within {seconds} seconds")).await
    }

    // === writing to the client ===

    /// Sends a plain-text error and ends the connection.
    /// Sends 503 for a request that arrived just as a new connection took
    /// this one's slot at `proxy.max_connections`, as for a connection
    /// refused at the limit, and records it. Closing with the request
    /// unread would reset the connection.
    async fn reject_evicted_request(&mut self) -> Result<Next, SessionError> {
        let limit = self.config().proxy.max_connections;
        let (conn_id, peer) = (self.source.conn_id, self.source.peer);
        tracing::debug!(conn_id, "Rejecting a request that arrived as its idle connection was closed for a new one");
        self.shared.recorder.write(super::evicted_request_rejected(conn_id, peer, limit));
        if self.client.write_all(&wire::service_unavailable(limit), self.client_timeout()).await.is_ok() {
            self.client.linger(LINGER_TIME).await;
        }
        Ok(Next::Close)
    }

    pub async fn fail(&mut self, status: u16, reason: &str, message: &str) -> Result<Next, SessionError> {
        // The connection closes either way, so a client that stopped
        // reading does not matter here.
        if self.client.write_all(&wire::plain_error(status, reason, message), self.client_timeout()).await.is_ok() {
            self.client.linger(LINGER_TIME).await;
        }
        Ok(Next::Close)
    }

    async fn send_denial(&mut self, denial: &Denial, keep_alive: bool) -> Result<Next, SessionError> {
        let extra_headers: Vec<(&str, &str)> = denial.extra_headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let response = OwnResponse {
            status: denial.status,
            reason: denial.reason,
            content_type: denial.content_type,
            extra_headers: &extra_headers,
            body: &denial.body,
        };
        self.send(&wire::own_response(response, keep_alive)).await?;
        Ok(if keep_alive { Next::Continue } else { Next::Close })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.client.write_all(bytes, self.client_timeout()).await.map_err(SessionError::Client)
    }

    /// How long a write to the client may wait for the client to read.
    pub fn client_timeout(&self) -> Duration {
        self.config().proxy.request_timeout
    }
}

/// Returns the anomalies that make a request ambiguous. A `Content-Encoding`
/// only stops odoogate from reading an RPC body; on other routes it does not
/// change where the request ends, so it passes.
pub(super) fn ambiguous(anomalies: &[FramingAnomaly], is_rpc: bool) -> Vec<FramingAnomaly> {
    anomalies
        .iter()
        .copied()
        .filter(|anomaly| is_rpc || *anomaly != FramingAnomaly::EncodedBody)
        .collect()
}

/// The message of the AccessError a denied client sees: the integration,
/// the call and the reason, never a credential.
fn access_error_message(record: &AuditRecord) -> String {
    let target = match (&record.model, &record.method) {
        (Some(model), Some(method)) => format!("{model}.{method}"),
        (None, Some(method)) => method.clone(),
        _ => "this call".to_owned(),
    };
    let reason = record.reason.as_deref().unwrap_or("not allowed");
    match record.integration.as_deref() {
        Some(integration) => format!("odoogate denied {target} to integration {integration}: {reason}"),
        None => format!("odoogate denied {target}: {reason}"),
    }
}

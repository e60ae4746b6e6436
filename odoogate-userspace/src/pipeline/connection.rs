//! One TCP connection to Odoo: its two framers, where it came from, and the
//! calls waiting for their response.

use super::records;
use crate::audit::{AuditEvent, AuditRecord, Decision};
use crate::capture::flow::Direction;
use crate::capture::reassembly::ConflictKind;
use crate::capture::{Endpoint, FlowKey};
use crate::config::Config;
use crate::http::framer::{FramerEvent, FramerLimits, RequestFramer, ResponseFramer};
use crate::http::{HttpRequest, HttpResponse};
use crate::identity::{self, Fingerprint, SessionTable, Source};
use crate::policy::runtime::PolicyRuntime;
use crate::rpc::{self, Call, CallKind, DecodeLimits, Protocol};
use crate::secret::Secret;
use crate::token::TokenStore;
use std::collections::VecDeque;

/// The web client's logout route (`GET`, answered with a redirect).
const WEB_LOGOUT_PATH: &str = "/web/session/logout";

/// Upper bound on requests waiting for a response on one connection
/// (pipelining). Beyond it the oldest is recorded without an outcome.
const MAX_PENDING_CALLS: usize = 64;

/// Upper bound on calls of one connection that were completed without a
/// response (see [`Connection::take_acknowledged`]) and wait for the server
/// to acknowledge their request. Beyond it the oldest is written marked as
/// unacknowledged.
const MAX_UNCONFIRMED_CALLS: usize = 16;

/// The origin of a local client's connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub cgroup: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
}

/// Keeps the session table in step with the web client's session routes: a
/// session created by `/web/session/authenticate` belongs to the
/// integration that authenticated, `/web/session/destroy` ends it, and
/// every other call with the session that got a response keeps it alive.
/// `token` is the scoped token that identified the call, if one did: a
/// session it logs in ends with it.
pub(crate) fn track_session(
    call: &Call,
    integration: Option<&str>,
    token: Option<Fingerprint>,
    response: &HttpResponse,
    sessions: &mut SessionTable,
) {
    let is_logout = call.protocol == Protocol::Web && call.method.as_deref() == Some("destroy");
    if is_logout {
        // Only a logout that Odoo accepted, of a session named in one way,
        // ends the binding; otherwise Odoo may have ended another session.
        let accepted = rpc::decode_response(call, response) == rpc::Outcome::Ok;
        if let Some(session) = call.session_id.as_ref().filter(|_| accepted && call.mismatches.is_empty()) {
            sessions.unbind(session);
        }
        return;
    }
    let now = std::time::SystemTime::now();
    if let Some(session) = &call.session_id {
        sessions.touch(session, now);
    }
    // A failed login may still set a cookie; only a session that Odoo
    // accepted (a uid in the answer) belongs to the integration.
    if call.kind != CallKind::Auth || rpc::login_uid(call, response).is_none() {
        return;
    }
    if let (Some(integration), Some(session)) = (integration, rpc::session_cookie(response)) {
        sessions.bind(&session, integration, token, now);
    }
}

/// Returns the scoped token that a session opened by `call` is bound to
/// ([`track_session`]). Only a login opens one, so other calls skip
/// parsing the fingerprint back from its hex.
pub(crate) fn login_token(call: &Call, resolution: &identity::Resolution) -> Option<Fingerprint> {
    if call.kind != CallKind::Auth {
        return None;
    }
    resolution.token()
}

/// Returns the integration whose web session `request` carries, with the
/// reason its `web_routes` deny the request, when they do. For requests
/// outside the RPC routes only. Every session id the request carries
/// counts, wherever it is, since Odoo versions differ in which one they
/// read. Sessions of two integrations, or of an integration that the
/// configuration no longer has, are denied too.
pub(crate) fn web_route_refusal(
    config: &Config,
    sessions: &SessionTable,
    tokens: Option<&TokenStore>,
    request: &HttpRequest,
) -> Option<(String, String)> {
    let now = std::time::SystemTime::now();
    let session_owners: Vec<_> =
        rpc::web::session_ids(request).iter().filter_map(|id| sessions.lookup(&Secret::new(id.as_str()))).collect();
    // The web session is the request's credential at Odoo, so a session
    // whose scoped token was revoked, expired or is no longer accepted opens
    // no route but the static files and the logout that every session may
    // open.
    let ended = session_owners.iter().find(|owner| owner.token_ended(config, tokens, now));
    if let Some(ended) = ended.filter(|_| !crate::policy::web_routes::is_always_allowed(request.path())) {
        let reason = "the web session was opened with a scoped token that is revoked, expired or gone, \
                      or that its integration no longer accepts"
            .to_owned();
        return Some((ended.integration.to_owned(), reason));
    }
    let mut owners: Vec<&str> = session_owners.iter().map(|owner| owner.integration).collect();
    owners.dedup();
    let name = match owners[..] {
        [] => return None,
        [name] => name,
        [first, second, ..] => {
            return Some((first.to_owned(), format!("the request carries web sessions of integrations {first} and {second}")));
        }
    };
    let verdict = match config.integrations.iter().find(|integration| integration.name == name) {
        Some(integration) => crate::policy::web_routes::check(integration, request.path()),
        None => Err(format!("the session belongs to integration {name}, which the configuration no longer has")),
    };
    verdict.err().map(|reason| (name.to_owned(), reason))
}

/// Returns the one session id a request carries, or `None` when it carries
/// none or several that differ, so that a logout ends a session only when
/// it is certain which one Odoo ends.
pub(crate) fn single_session_id(request: &HttpRequest) -> Option<Secret> {
    let ids = rpc::web::session_ids(request);
    let first = ids.first()?;
    ids.iter().all(|id| id == first).then(|| Secret::new(first.as_str()))
}

/// Builds the placeholder call for a request on an RPC surface whose body
/// did not decode: its protocol, the model and method a JSON-2 path names,
/// and the decode failure as a mismatch, which the policy always denies.
fn undecodable_call(request: &HttpRequest, error: &rpc::DecodeError) -> Option<Call> {
    let protocol = rpc::surface_protocol(&request.target)?;
    let mut call = Call::new(protocol, CallKind::Model);
    if protocol == Protocol::Json2 {
        if let Some((model, method)) = rpc::json2::route(request.path()) {
            call.model = Some(model.to_owned());
            call.method = Some(method.to_owned());
        }
    }
    call.mismatches.push(format!("the body could not be decoded ({error})"));
    Some(call)
}

/// What deciding on a call needs besides the connection: the configuration
/// in force, the web sessions and the policy's grants and rate limits.
pub struct CallContext<'a> {
    pub config: &'a Config,
    pub sessions: &'a mut SessionTable,
    pub policy: &'a mut PolicyRuntime,
    /// The scoped tokens, when the store could be loaded.
    pub tokens: Option<&'a TokenStore>,
}

/// Ties a request to its integration, with the scoped tokens when their
/// store is loaded. The second value is set for a token that did not verify,
/// or for the token that logged in the call's web session once that token
/// may no longer be used.
fn resolve(
    config: &Config,
    tokens: Option<&TokenStore>,
    call: Option<&Call>,
    request: &HttpRequest,
    source: &Source,
    sessions: &SessionTable,
) -> (identity::Resolution, Option<identity::InvalidToken>) {
    // As in enforce mode, without a store a presented token is unknown, and
    // a session that a token logged in cannot be checked, so its calls are
    // refused.
    let now = std::time::SystemTime::now();
    let resolved = identity::resolve_with_tokens(config, tokens, call, &request.headers, source, sessions, now);
    (resolved.resolution, resolved.invalid_token)
}

/// A request that was framed and is waiting for its response.
struct PendingCall {
    /// The record to write, without outcome and latency. It is `None` for
    /// requests that are not RPC calls (web pages, assets), which are
    /// tracked only to keep responses paired with requests.
    record: Option<AuditRecord>,
    call: Option<Call>,
    integration: Option<String>,
    /// The scoped token that identified the call, if one did.
    token: Option<Fingerprint>,
    request_last_byte_ns: u64,
    /// Offset in the client's stream of the end of the bytes that
    /// completed the request, at or past the request's last byte.
    request_end: u64,
}

pub struct Connection {
    conn_id: u64,
    key: FlowKey,
    origin: Origin,
    requests: RequestFramer,
    responses: ResponseFramer,
    pending: VecDeque<PendingCall>,
    upgraded: bool,
    /// The way a copy of request bytes failed its check, once one did. The
    /// bytes may belong to any request not complete yet, including one
    /// waiting in the out-of-order buffer, so every later request may hold
    /// the copy Odoo did not read.
    requests_in_doubt: Option<ConflictKind>,
    /// Bytes of the client's stream pushed or lost in gaps so far: the
    /// stream offset the reassembler delivers next.
    request_offset: u64,
    /// Bytes or a gap came in either direction.
    carried_data: bool,
    /// Records of calls completed without a response while the connection
    /// goes on, oldest first, each with the `request_end` of its call.
    unconfirmed: VecDeque<(u64, AuditRecord)>,
    /// Offset in the client's stream up to which the server acknowledged
    /// the client's bytes, as last passed to
    /// [`Connection::take_acknowledged`].
    server_acked: u64,
    events: Vec<FramerEvent>,
}

impl Connection {
    pub fn new(conn_id: u64, key: FlowKey, mid_stream: bool, config: &Config) -> Self {
        let limits = FramerLimits {
            max_header_bytes: 64 * 1024,
            max_body_bytes: config.capture.max_body_bytes,
        };
        let mut requests = RequestFramer::new(limits);
        let mut responses = ResponseFramer::new(limits);
        if mid_stream {
            // Joined mid-connection: the first bytes may sit inside a message.
            let mut ignored = Vec::new();
            requests.gap(0, &mut ignored);
            responses.gap(0, &mut ignored);
        }
        Self {
            conn_id,
            key,
            origin: Origin::default(),
            requests,
            responses,
            pending: VecDeque::new(),
            upgraded: false,
            requests_in_doubt: None,
            request_offset: 0,
            carried_data: false,
            unconfirmed: VecDeque::new(),
            server_acked: 0,
            events: Vec::new(),
        }
    }

    /// Returns the (client, server) pair of the connection.
    pub fn endpoints(&self) -> (Endpoint, Endpoint) {
        (self.key.client, self.key.server)
    }

    /// Returns the doubt that a conflict put on the connection's later
    /// requests, if any (see [`Connection::conflict`]).
    pub fn requests_in_doubt(&self) -> Option<ConflictKind> {
        self.requests_in_doubt
    }

    /// Puts the connection's requests in the doubt of an earlier flow of the
    /// same TCP connection, which the capture ended while the connection
    /// went on.
    pub fn inherit_doubt(&mut self, kind: ConflictKind) {
        self.requests_in_doubt = Some(kind);
    }

    pub fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    /// Tells whether any bytes, or a gap, came on the connection.
    pub fn carried_data(&self) -> bool {
        self.carried_data
    }

    /// Frames `bytes` of one direction and returns the records that became
    /// complete.
    pub fn push(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        timestamp_ns: u64,
        context: &mut CallContext<'_>,
    ) -> Vec<AuditRecord> {
        self.carried_data = true;
        if direction == Direction::ToServer {
            self.request_offset += bytes.len() as u64;
        }
        if self.upgraded {
            return Vec::new();
        }
        let mut events = std::mem::take(&mut self.events);
        match direction {
            Direction::ToServer => self.requests.push(bytes, timestamp_ns, &mut events),
            Direction::ToClient => self.responses.push(bytes, timestamp_ns, &mut events),
        }
        let output = self.handle_framer_events(direction, &mut events, context);
        self.events = events;
        output
    }

    /// Records a gap of `missing_bytes` in one direction: the framer resyncs
    /// and, for the response direction, calls waiting for a response are
    /// recorded without an outcome because their responses cannot be paired
    /// any more.
    pub fn gap(&mut self, direction: Direction, missing_bytes: u64) -> Vec<AuditRecord> {
        self.carried_data = true;
        let mut events = std::mem::take(&mut self.events);
        let mut output = vec![records::capture_gap(self.conn_id, &self.key, direction, missing_bytes)];
        match direction {
            Direction::ToServer => {
                self.request_offset += missing_bytes;
                self.requests.gap(missing_bytes, &mut events);
            }
            Direction::ToClient => {
                self.responses.gap(missing_bytes, &mut events);
                while let Some(pending) = self.pending.pop_front() {
                    self.complete_unconfirmed(pending, "response lost in a capture gap", &mut output);
                }
            }
        }
        events.clear();
        self.events = events;
        output
    }

    /// Handles bytes of the `direction` stream that the server's kernel may
    /// have read differently (see [`ConflictKind`]). On
    /// the request side, the calls waiting for their response and every
    /// later request may hold the copy Odoo did not read, so none of them
    /// is recorded as allowed. Nor is a call completed without a response
    /// that waits for the server's acknowledgement, when its request ends
    /// past `offset`.
    pub fn conflict(&mut self, direction: Direction, offset: u64, kind: ConflictKind) -> Vec<AuditRecord> {
        if direction == Direction::ToServer {
            for pending in &mut self.pending {
                if let Some(record) = &mut pending.record {
                    records::mark_conflicting(record, kind);
                }
            }
            for (request_end, record) in &mut self.unconfirmed {
                if *request_end > offset {
                    records::mark_conflicting(record, kind);
                }
            }
            // Every other kind is stronger evidence than a copy that could
            // not be checked, so it names the doubt once seen.
            if self.requests_in_doubt.is_none_or(|doubt| doubt == ConflictKind::Unverifiable) {
                self.requests_in_doubt = Some(kind);
            }
        }
        vec![records::stream_conflict(self.conn_id, &self.key, direction, offset, kind)]
    }

    /// Ends the connection: a response delimited by the close is completed,
    /// and calls still waiting are recorded without an outcome, saying
    /// `why`. `server_acked` is given when the TCP connection is over, not
    /// when the capture drops a flow that may go on. A call whose request
    /// the server never acknowledged up to its end is then marked
    /// ([`records::mark_unacknowledged`]), because Odoo may never have read
    /// it. A request segment replayed after its connection closed gives
    /// such a call.
    pub fn finish(&mut self, why: &str, server_acked: Option<u64>, context: &mut CallContext<'_>) -> Vec<AuditRecord> {
        let mut events = std::mem::take(&mut self.events);
        self.requests.finish(&mut events);
        let mut output = self.handle_framer_events(Direction::ToServer, &mut events, context);
        self.responses.finish(&mut events);
        output.extend(self.handle_framer_events(Direction::ToClient, &mut events, context));
        let is_unacknowledged = |request_end: u64| server_acked.is_some_and(|acked| request_end > acked);
        for (request_end, mut record) in self.unconfirmed.drain(..) {
            if is_unacknowledged(request_end) {
                records::mark_unacknowledged(&mut record);
            }
            output.push(record);
        }
        while let Some(pending) = self.pending.pop_front() {
            let unacknowledged = is_unacknowledged(pending.request_end);
            if let Some(mut record) = self.complete(pending, None, why) {
                if unacknowledged {
                    records::mark_unacknowledged(&mut record);
                }
                output.push(record);
            }
        }
        output
    }

    /// Tells whether calls completed without a response wait for the server
    /// to acknowledge their request.
    pub fn awaits_acknowledgement(&self) -> bool {
        !self.unconfirmed.is_empty()
    }

    /// Returns the records of the calls completed without a response whose
    /// request the server has acknowledged up to stream offset
    /// `server_acked`. Such a call (its response lost in a capture gap, or
    /// pushed out by too many pipelined requests) is written only once the
    /// server acknowledged its request, or when the connection ends (see
    /// [`Connection::finish`]). Otherwise a replayed request could be
    /// recorded before its connection's RST shows that Odoo never got it.
    pub fn take_acknowledged(&mut self, server_acked: u64) -> Vec<AuditRecord> {
        self.server_acked = self.server_acked.max(server_acked);
        let mut output = Vec::new();
        self.release_acknowledged(&mut output);
        output
    }

    /// Moves the waiting records whose request ends at or before offset
    /// `server_acked` to `output`.
    fn release_acknowledged(&mut self, output: &mut Vec<AuditRecord>) {
        while let Some((request_end, _)) = self.unconfirmed.front()
            && *request_end <= self.server_acked
        {
            output.extend(self.unconfirmed.pop_front().map(|(_, record)| record));
        }
    }

    /// Completes `pending` without a response, saying `why`, and keeps its
    /// record until the server acknowledges its request, unless it already
    /// has. At [`MAX_UNCONFIRMED_CALLS`] the oldest record kept is written
    /// marked.
    fn complete_unconfirmed(&mut self, pending: PendingCall, why: &str, output: &mut Vec<AuditRecord>) {
        let request_end = pending.request_end;
        let Some(record) = self.complete(pending, None, why) else {
            return;
        };
        self.unconfirmed.push_back((request_end, record));
        self.release_acknowledged(output);
        if self.unconfirmed.len() > MAX_UNCONFIRMED_CALLS
            && let Some((_, mut oldest)) = self.unconfirmed.pop_front()
        {
            records::mark_unacknowledged(&mut oldest);
            output.push(oldest);
        }
    }

    fn handle_framer_events(
        &mut self,
        direction: Direction,
        events: &mut Vec<FramerEvent>,
        context: &mut CallContext<'_>,
    ) -> Vec<AuditRecord> {
        let mut output = Vec::new();
        for event in events.drain(..) {
            match event {
                FramerEvent::Request(request) => output.extend(self.on_request(request, context)),
                FramerEvent::Response(response) => output.extend(self.on_response(response, context.sessions)),
                FramerEvent::Interim { .. } => {}
                FramerEvent::Upgraded => {
                    self.upgraded = true;
                    self.pending.clear();
                }
                FramerEvent::Desync { skipped_bytes } => {
                    output.push(records::desync(self.conn_id, &self.key, direction, skipped_bytes));
                }
                FramerEvent::Malformed { reason } => {
                    output.push(records::malformed(self.conn_id, &self.key, direction, reason));
                }
            }
        }
        output
    }

    fn source(&self) -> Source {
        Source {
            peer: self.key.client,
            cgroup: self.origin.cgroup.clone(),
            pid: self.origin.pid,
            comm: self.origin.comm.clone(),
            conn_id: self.conn_id,
        }
    }

    fn on_request(&mut self, request: HttpRequest, context: &mut CallContext<'_>) -> Vec<AuditRecord> {
        let CallContext { config, sessions, policy, tokens } = context;
        let tokens: Option<&TokenStore> = *tokens;
        let config: &Config = config;
        let mut output = Vec::new();
        self.responses.expect_response(&request.method);
        let source = self.source();
        let in_doubt = self.requests_in_doubt;

        for anomaly in &request.anomalies {
            output.push(records::framing_anomaly(self.conn_id, &source, &request, *anomaly));
        }

        let limits = DecodeLimits { max_depth: 64, max_body_bytes: config.capture.max_body_bytes };
        let decoded = if request.body_truncated {
            Err(rpc::DecodeError::Truncated(request.body.len()))
        } else {
            rpc::decode_request(&request, &limits)
        };
        let mut decode_failure = None;
        // Resolved once per request: a body that does not decode gets a
        // decode-error record and a call record for the same caller.
        let mut resolved = None;
        let call = match decoded {
            Ok(Some(call)) => Some(call),
            Ok(None) => {
                // The web client logs out with a plain GET, which is no RPC
                // call but still ends the session.
                if request.path() == WEB_LOGOUT_PATH {
                    if let Some(session) = single_session_id(&request) {
                        sessions.unbind(&session);
                    }
                } else if !rpc::is_rpc_surface(&request.method, &request.target)
                    && let Some((integration, reason)) = web_route_refusal(config, sessions, tokens, &request)
                {
                    output.push(records::web_route(&source, &request, &integration, reason, Decision::WouldDeny));
                }
                None
            }
            Err(error) => {
                let (resolution, invalid_token) = resolve(config, tokens, None, &request, &source, sessions);
                output.push(records::decode_error(&source, &request, &error, &resolution));
                resolved = Some((resolution, invalid_token));
                decode_failure = Some(error.code());
                // Odoo's own parsers may still read this body (a DOCTYPE,
                // another encoding, NaN), so it also gets a call record,
                // which is never rate-limited and can never be allowed.
                undecodable_call(&request, &error)
            }
        };

        let pending = match call {
            Some(call) => {
                let (resolution, invalid_token) = match resolved.take() {
                    Some(resolved) => resolved,
                    None => resolve(config, tokens, Some(&call), &request, &source, sessions),
                };
                let mut verdict = match &invalid_token {
                    // As in enforce mode, a call refused for its token is
                    // decided without grants or rate limits, so it takes
                    // nothing from its integration's buckets.
                    Some(_) => crate::policy::decide(&call, &resolution, config, std::time::SystemTime::now()),
                    None => records::decide_call(&call, &request, &resolution, config, policy).verdict,
                };
                if let Some(invalid) = &invalid_token {
                    // Enforce mode denies the call with AccessDenied whatever
                    // the rules allow, so observe mode records would_deny.
                    verdict.allowed = false;
                    verdict.rule = None;
                    verdict.reason = invalid.reason_text();
                }
                let mut record = records::call_record(&call, &request, &resolution, &source, config, &verdict);
                if let Some(kind) = in_doubt {
                    records::mark_conflicting(&mut record, kind);
                }
                if let Some(invalid) = &invalid_token {
                    record.error_code = Some(invalid.reason.code().to_owned());
                }
                if let Some(code) = decode_failure {
                    record.error_code = Some(code.to_owned());
                }
                PendingCall {
                    record: Some(record),
                    // Enforce mode denies a call with a refused token, so
                    // a login Odoo accepts anyway binds no session.
                    integration: resolution.integration.clone().filter(|_| invalid_token.is_none()),
                    token: login_token(&call, &resolution),
                    call: Some(call),
                    request_last_byte_ns: request.last_byte_ns,
                    request_end: self.request_offset,
                }
            }
            None => PendingCall {
                record: None,
                call: None,
                integration: None,
                token: None,
                request_last_byte_ns: request.last_byte_ns,
                request_end: self.request_offset,
            },
        };
        if self.pending.len() >= MAX_PENDING_CALLS {
            if let Some(oldest) = self.pending.pop_front() {
                self.complete_unconfirmed(oldest, "too many pipelined requests", &mut output);
            }
        }
        self.pending.push_back(pending);
        output
    }

    fn on_response(&mut self, response: HttpResponse, sessions: &mut SessionTable) -> Vec<AuditRecord> {
        let Some(pending) = self.pending.pop_front() else {
            return Vec::new();
        };
        if let Some(call) = &pending.call {
            track_session(call, pending.integration.as_deref(), pending.token, &response, sessions);
        }
        self.complete(pending, Some(&response), "").into_iter().collect()
    }

    /// Finishes the record of `pending` with the response, if any.
    fn complete(&self, pending: PendingCall, response: Option<&HttpResponse>, why: &str) -> Option<AuditRecord> {
        let mut record = pending.record?;
        match (response, &pending.call) {
            (Some(response), Some(call)) => {
                record.outcome = Some(rpc::decode_response(call, response).to_field());
                record.http_status = Some(response.status);
                let latency_ns = response.first_byte_ns.saturating_sub(pending.request_last_byte_ns);
                record.latency_us = Some(latency_ns / 1_000);
                if call.kind == CallKind::Auth && record.uid.is_none() {
                    record.uid = rpc::login_uid(call, response);
                }
            }
            _ => {
                if !why.is_empty() {
                    record.message.push_str(&format!(" (no response: {why})"));
                }
            }
        }
        debug_assert_eq!(record.event, AuditEvent::Call);
        Some(record)
    }
}

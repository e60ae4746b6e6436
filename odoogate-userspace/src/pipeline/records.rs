//! Builders for the audit records the pipeline writes.

use crate::audit::{AuditEvent, AuditRecord, Decision, Identity};
use crate::capture::flow::{Direction, IgnoredKind};
use crate::capture::reassembly::ConflictKind;
use crate::capture::{CaptureStats, Endpoint, FlowKey};
use crate::config::Config;
use crate::http::{FramingAnomaly, HttpRequest};
use crate::identity::{Resolution, Source};
use crate::policy::runtime::{Decided, PolicyRuntime};
use crate::policy::{self, Verdict};
use crate::rpc::call::MAX_RECORD_IDS;
use crate::rpc::{Call, CallKind, DecodeError};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::ToServer => "request",
        Direction::ToClient => "response",
    }
}

/// Creates a record about connection `conn_id` from `client`, known only by
/// its flow (no process or cgroup).
fn flow_record(event: AuditEvent, message: String, conn_id: u64, client: Endpoint) -> AuditRecord {
    let mut record = AuditRecord::new(event, message);
    record.conn_id = Some(conn_id);
    record.src_ip = Some(client.ip());
    record.src_port = Some(client.port());
    record
}

/// Fills the source fields shared by every record about a connection.
fn set_source(record: &mut AuditRecord, source: &Source) {
    record.src_ip = Some(source.peer.ip());
    record.src_port = Some(source.peer.port());
    record.cgroup = source.cgroup.clone();
    record.pid = source.pid;
    record.comm = source.comm.clone();
    record.conn_id = Some(source.conn_id);
}

fn set_resolution(record: &mut AuditRecord, resolution: &Resolution) {
    record.integration = resolution.integration.clone();
    record.identity = Some(resolution.identity);
    record.key_fingerprint = resolution.key_fingerprint.clone();
    if resolution.client_ip != record.src_ip.unwrap_or(resolution.client_ip) {
        // Behind a trusted proxy the record names the real client.
        record.src_ip = Some(resolution.client_ip);
        record.src_port = None;
    }
}

/// `model.method`, or `service.method` or the method alone for calls without
/// a model, written straight into a message.
pub struct CallTarget<'a>(pub &'a Call);

impl fmt::Display for CallTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        target_parts(self.0).into_iter().try_for_each(|part| f.write_str(part))
    }
}

/// Decides on a call. A request with ambiguous HTTP framing is denied
/// without consulting the policy, so it uses up no rate-limit token.
pub fn decide_call(
    call: &Call,
    request: &HttpRequest,
    resolution: &Resolution,
    config: &Config,
    policy: &mut PolicyRuntime,
) -> Decided {
    if let Some(anomaly) = request.anomalies.first() {
        // Odoo could read this request differently from odoogate, so its
        // decoded content cannot justify an allow.
        let reason = format!("ambiguous HTTP framing ({}): Odoo may read another call", anomaly.code());
        let verdict = policy::Verdict { allowed: false, rule: None, reason, rule_index: None, grant: None, narrowing: None };
        return Decided { verdict, rate_limited: None };
    }
    policy.decide(call, resolution, config, SystemTime::now(), Instant::now())
}

/// Builds the record of one call with its `verdict`; the outcome and
/// latency are added when the response arrives.
pub fn call_record(
    call: &Call,
    request: &HttpRequest,
    resolution: &Resolution,
    source: &Source,
    config: &Config,
    verdict: &Verdict,
) -> AuditRecord {
    let decision = policy::decision(verdict, config.policy.mode);

    let integration = resolution.integration.as_deref().unwrap_or("unidentified");
    let mut record = AuditRecord::new(AuditEvent::Call, call_message(decision, integration, call, &verdict.reason));
    set_source(&mut record, source);
    set_resolution(&mut record, resolution);
    record.decision = Some(decision);
    record.rule = verdict.rule.clone();
    record.grant = verdict.grant.clone();
    record.reason = Some(verdict.reason.clone());
    record.protocol = Some(call.protocol.as_str());
    record.db = call.db.clone();
    record.uid = call.uid;
    record.login = call.login.as_deref().map(redact_login);
    record.model = call.model.clone();
    record.method = match call.kind {
        CallKind::Model => call.method.clone(),
        _ => call.method.as_ref().map(|method| match &call.service {
            Some(service) => format!("{service}.{method}"),
            None => method.clone(),
        }),
    };
    record.record_ids = call.record_ids.clone();
    record.record_count = (call.record_ids.len() >= MAX_RECORD_IDS).then_some(call.record_ids.len());
    record.fields = call.fields.to_vec();
    record.path = Some(request.path().to_owned());
    record
}

/// Returns `decision integration target via protocol: reason`, the message
/// of a call's record. It is written piece by piece, because `format!`
/// costs several times as much on this path, taken once per call.
fn call_message(decision: Decision, integration: &str, call: &Call, reason: &str) -> String {
    message_of(decision, integration, target_parts(call), call.protocol.as_str(), reason)
}

/// Joins the parts of a call record's message.
fn message_of(decision: Decision, integration: &str, target: [&str; 3], protocol: &str, reason: &str) -> String {
    let parts = [decision.as_str(), " ", integration, " ", target[0], target[1], target[2], " via ", protocol, ": ", reason];
    let mut message = String::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        message.push_str(part);
    }
    message
}

/// Returns [`CallTarget`]'s text in up to three parts.
fn target_parts(call: &Call) -> [&str; 3] {
    parts_of_target(call.model.as_deref(), call.method.as_deref(), call.service.as_deref())
}

/// Returns a call's target in up to three parts: `model.method`, else
/// `service.method`, else the one that is known.
fn parts_of_target<'a>(model: Option<&'a str>, method: Option<&'a str>, service: Option<&'a str>) -> [&'a str; 3] {
    match (model, method) {
        (Some(model), Some(method)) => [model, ".", method],
        (None, Some(method)) => match service {
            Some(service) => [service, ".", method],
            None => [method, "", ""],
        },
        (Some(model), None) => [model, "", ""],
        (None, None) => ["(unknown)", "", ""],
    }
}

/// Returns the login for the audit record, or a placeholder when the value
/// is a secret sent in the wrong field: a scoped token or an Odoo API key.
fn redact_login(login: &str) -> String {
    if crate::token::TokenStore::looks_like_token(login) || crate::secret::Secret::new(login).looks_like_odoo_api_key() {
        return "(secret in the login field, not recorded)".to_owned();
    }
    login.to_owned()
}

/// Logs the decision through tracing: denials at INFO, allows at DEBUG.
pub fn trace_decision(record: &AuditRecord) {
    let integration = record.integration.as_deref().unwrap_or("unidentified");
    let model = record.model.as_deref().unwrap_or("");
    let method = record.method.as_deref().unwrap_or("");
    let conn_id = record.conn_id.unwrap_or(0);
    match record.decision {
        Some(Decision::Deny | Decision::WouldDeny) => tracing::info!(
            integration,
            model,
            method,
            conn_id,
            decision = record.decision.map(Decision::as_str).unwrap_or(""),
            error_code = record.error_code.as_deref().unwrap_or(""),
            reason = record.reason.as_deref().unwrap_or(""),
            "Call denied"
        ),
        _ => tracing::debug!(integration, model, method, conn_id, "Call allowed"),
    }
}

pub fn decode_error(source: &Source, request: &HttpRequest, error: &DecodeError, resolution: &Resolution) -> AuditRecord {
    let integration = resolution.integration.as_deref().unwrap_or("unidentified");
    let message = format!("decode error on {} {} from {integration}: {error}", request.method, request.path());
    let mut record = AuditRecord::new(AuditEvent::DecodeError, message);
    set_source(&mut record, source);
    set_resolution(&mut record, resolution);
    record.error_code = Some(error.code().to_owned());
    record.reason = Some(error.to_string());
    record.path = Some(request.path().to_owned());
    record
}

pub fn framing_anomaly(conn_id: u64, source: &Source, request: &HttpRequest, anomaly: FramingAnomaly) -> AuditRecord {
    let message = format!(
        "ambiguous HTTP framing on {} {} (connection {conn_id}): {}",
        request.method,
        request.path(),
        anomaly.code()
    );
    let mut record = AuditRecord::new(AuditEvent::FramingAnomaly, message);
    set_source(&mut record, source);
    record.error_code = Some(anomaly.code().to_owned());
    record.path = Some(request.path().to_owned());
    record
}

/// Builds the record of a request outside the RPC routes that carries
/// `integration`'s web session to a path its `web_routes` do not list.
pub fn web_route(source: &Source, request: &HttpRequest, integration: &str, reason: String, decision: Decision) -> AuditRecord {
    let message = format!("odoogate {} {} {} to integration {integration}: {reason}", verb(decision), request.method, request.path());
    let mut record = AuditRecord::new(AuditEvent::WebRoute, message);
    set_source(&mut record, source);
    record.decision = Some(decision);
    record.integration = Some(integration.to_owned());
    record.identity = Some(Identity::Session);
    record.path = Some(request.path().to_owned());
    record.reason = Some(reason);
    record
}

fn verb(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allowed",
        Decision::Deny => "denied",
        Decision::WouldDeny => "would deny",
    }
}

pub fn capture_gap(conn_id: u64, key: &FlowKey, direction: Direction, missing_bytes: u64) -> AuditRecord {
    let message = format!(
        "capture gap: {missing_bytes} bytes of the {} stream of connection {conn_id} from {} were not captured; framing resumes at the next message",
        direction_name(direction),
        key.client
    );
    let mut record = flow_record(AuditEvent::CaptureGap, message, conn_id, key.client);
    record.error_code = Some(format!("{}_gap", direction_name(direction)));
    record.count = Some(missing_bytes);
    record
}

/// Returns the reason of a call whose request bytes came in a second copy
/// that failed its check (`kind`).
pub fn conflict_reason(kind: ConflictKind) -> &'static str {
    match kind {
        ConflictKind::Differs => {
            "the capture saw two different copies of the request's bytes, and Odoo may have read the other one"
        }
        ConflictKind::Unverifiable => {
            "the capture saw a second copy of the request's bytes that it could not compare with the first, \
             which it had dropped unacknowledged to bound memory"
        }
        ConflictKind::DataAfterFin => {
            "the capture saw request bytes after the client's FIN, which a TCP sender never sends, \
             so the server's kernel dropped one of the two and Odoo may not have read these bytes"
        }
        ConflictKind::UrgentData => {
            "the client sent TCP urgent data, whose byte the server's kernel takes out of the bytes Odoo reads, \
             so Odoo may have read another request"
        }
        ConflictKind::IpFragment => {
            "the client sent a segment as IP fragments, which the capture does not reassemble, \
             so Odoo may have read bytes the capture did not see"
        }
    }
}

/// Builds the record of bytes at stream `offset` of a connection that the
/// receiver's kernel may have read differently from the capture, which
/// runs before the kernel's checks. Two different copies come from a
/// client crafting them: the server's kernel drops one (a bad checksum, a
/// stale timestamp), and the capture reads both. An uncheckable copy is one
/// whose first copy the reassembler dropped before the peer acknowledged
/// it. An ordinary retransmission gives that when more than
/// `capture.max_flow_buffer_bytes` are unacknowledged, or when all flows
/// together hold 64 times that. Data after a FIN comes from the same trick
/// played with the FIN, urgent data from a byte the kernel takes out, and
/// IP fragments from a segment the capture cannot read whole.
pub fn stream_conflict(conn_id: u64, key: &FlowKey, direction: Direction, offset: u64, kind: ConflictKind) -> AuditRecord {
    let (summary, what) = match kind {
        ConflictKind::Differs => ("conflicting TCP copies", "two different copies of the bytes"),
        ConflictKind::Unverifiable => (
            "conflicting TCP copies",
            "a copy it could not check, its first copy dropped unacknowledged to bound memory, of the bytes",
        ),
        ConflictKind::DataAfterFin => ("data after a TCP FIN", "a FIN and data after it, which a TCP sender never sends, with the FIN"),
        ConflictKind::UrgentData => ("TCP urgent data", "a segment with the URG flag, whose urgent byte the receiver's kernel takes out,"),
        ConflictKind::IpFragment => ("IP fragments", "a segment sent as IP fragments, which the capture does not reassemble,"),
    };
    let message = format!(
        "{summary}: the {} stream of connection {conn_id} from {} carried {what} at offset {offset}; \
         the records of its calls around them may not match what Odoo read",
        direction_name(direction),
        key.client
    );
    let mut record = flow_record(AuditEvent::FramingAnomaly, message, conn_id, key.client);
    record.error_code = Some(kind.code().to_owned());
    record
}

/// Marks the record of a call whose request bytes came in a second copy
/// that failed its check: an allowed call becomes `would_deny`, because
/// odoogate cannot tell which copy Odoo ran.
pub fn mark_conflicting(record: &mut AuditRecord, kind: ConflictKind) {
    record.error_code.get_or_insert_with(|| kind.code().to_owned());
    if record.decision != Some(Decision::Allow) {
        return;
    }
    let reason = conflict_reason(kind);
    record.decision = Some(Decision::WouldDeny);
    record.rule = None;
    record.grant = None;
    record.reason = Some(reason.to_owned());
    // A record's method already carries the service of a call without a
    // model (`common.login`), as `call_record` wrote it.
    let target = parts_of_target(record.model.as_deref(), record.method.as_deref(), None);
    let integration = record.integration.as_deref().unwrap_or("unidentified");
    record.message = message_of(Decision::WouldDeny, integration, target, record.protocol.unwrap_or("unknown"), reason);
}

/// Code of a record for a segment that arrived from the network with a
/// source address of this host.
pub const SPOOFED_SEGMENT: &str = "spoofed_segment";

/// Code of a record for a RST at a sequence number the receiver ignores.
pub const IGNORED_RESET: &str = "ignored_reset";

/// Builds the record for a segment from `src` to `dst` that the flow table
/// ignored, as the receiver's kernel does (see [`IgnoredKind`]). Such
/// segments are crafted, or sent blind by another host, or for a RST, sent
/// after a segment that the capture missed. The records share the rate
/// limit of the other error records, so a flood of them cannot flood the
/// journal.
pub fn ignored_segment(src: SocketAddr, dst: SocketAddr, kind: IgnoredKind) -> AuditRecord {
    match kind {
        IgnoredKind::Spoofed { ifindex } => {
            let message = format!(
                "ignored a segment from {src} to {dst} that arrived on interface {ifindex} with a source address of \
                 this host, which this host did not send"
            );
            let mut record = AuditRecord::new(AuditEvent::FramingAnomaly, message);
            record.error_code = Some(SPOOFED_SEGMENT.to_owned());
            record
        }
        IgnoredKind::Reset { conn_id, client } => {
            let message = format!(
                "ignored a RST from {src} to {dst} on connection {conn_id}: its sequence number is not the next one \
                 the capture expects, and Linux ignores such a RST (RFC 5961). It was crafted or sent blind, or the \
                 capture missed a segment before it"
            );
            let mut record = flow_record(AuditEvent::FramingAnomaly, message, conn_id, client);
            record.error_code = Some(IGNORED_RESET.to_owned());
            record
        }
    }
}

/// Code of a call record whose request the server never acknowledged to its
/// end before the connection closed.
pub const UNACKNOWLEDGED: &str = "unacknowledged_request";

/// Marks a call record, completed without a response, whose request the
/// server's TCP stack never acknowledged to its end before the connection
/// closed. Odoo may never have read the request: a data segment replayed or
/// forged after its connection closed gives such a record, and so does an
/// acknowledgement that the capture missed. A code that the record already
/// carries (a conflict, a decode error) is kept, because it is the more
/// specific finding about the bytes.
pub fn mark_unacknowledged(record: &mut AuditRecord) {
    record.error_code.get_or_insert_with(|| UNACKNOWLEDGED.to_owned());
    record
        .message
        .push_str(" (the server never acknowledged the whole request, so Odoo may not have received it)");
}

/// Builds the record for bytes the framer skipped because they formed no
/// HTTP message: after a capture gap, after a malformed head, or a message
/// cut short by the close. It is a decode error, not a capture loss: the
/// bytes were captured.
pub fn desync(conn_id: u64, key: &FlowKey, direction: Direction, skipped_bytes: u64) -> AuditRecord {
    let message = format!(
        "skipped {skipped_bytes} bytes of the {} stream of connection {conn_id} that formed no HTTP message",
        direction_name(direction)
    );
    let mut record = flow_record(AuditEvent::DecodeError, message, conn_id, key.client);
    record.error_code = Some("unframed_bytes".to_owned());
    record.count = Some(skipped_bytes);
    record
}

pub fn malformed(conn_id: u64, key: &FlowKey, direction: Direction, reason: &'static str) -> AuditRecord {
    let message = format!("malformed HTTP {} on connection {conn_id}: {reason}", direction_name(direction));
    let mut record = flow_record(AuditEvent::DecodeError, message, conn_id, key.client);
    record.error_code = Some("malformed_http".to_owned());
    record.reason = Some(reason.to_owned());
    record
}

/// `ODOOGATE_ERROR_CODE` of a connection dropped from the full flow table.
pub const FLOW_TABLE_FULL: &str = "flow_table_full";

/// Builds the record for a connection dropped from the flow table because
/// `capture.max_flows` connections were tracked. Its calls still waiting
/// for a response are recorded without an outcome, and its later segments
/// start a new flow mid-stream.
pub fn flow_evicted(conn_id: u64, client: Endpoint, max_flows: usize) -> AuditRecord {
    let message = format!(
        "capture loss: connection {conn_id} from {client} was dropped because the flow table held capture.max_flows \
         ({max_flows}) connections; raise capture.max_flows"
    );
    let mut record = flow_record(AuditEvent::CaptureLoss, message, conn_id, client);
    record.error_code = Some(FLOW_TABLE_FULL.to_owned());
    record.count = Some(1);
    record
}

/// Returns a record for each kernel counter that grew since `previous`.
pub fn capture_loss(previous: &CaptureStats, current: &CaptureStats) -> Vec<AuditRecord> {
    let counters = [
        ("ring_buffer_full", previous.ring_full, current.ring_full, "packets were not captured because the ring buffer was full; raise capture.ring_buffer_bytes"),
        ("payload_truncated", previous.truncated, current.truncated, "packet payloads were cut because they exceeded the copy buffer"),
        ("load_error", previous.load_errors, current.load_errors, "packet payloads could not be read in the kernel"),
        ("malformed_record", previous.malformed_records, current.malformed_records, "ring buffer records could not be parsed"),
    ];
    counters
        .into_iter()
        .filter(|(_, before, now, _)| now > before)
        .map(|(code, before, now, what)| {
            let lost = now - before;
            let mut record = AuditRecord::new(AuditEvent::CaptureLoss, format!("capture loss: {lost} {what}"));
            record.error_code = Some(code.to_owned());
            record.count = Some(lost);
            record
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Protocol;

    /// The message and the target read as the `format!` they replaced wrote
    /// them, for each combination of model, method and service.
    #[test]
    fn call_message_matches_format() {
        let parts = [
            (None, None, None),
            (Some("res.partner"), Some("read"), Some("object")),
            (None, Some("login"), Some("common")),
            (None, Some("version"), None),
            (Some("crm.lead"), None, None),
            (Some("m"), None, Some("object")),
        ];
        for (model, method, service) in parts {
            let mut call = Call::new(Protocol::JsonRpc, CallKind::Model);
            call.model = model.map(str::to_owned);
            call.method = method.map(str::to_owned);
            call.service = service.map(str::to_owned);
            let target = match (model, method) {
                (Some(model), Some(method)) => format!("{model}.{method}"),
                (None, Some(method)) => match service {
                    Some(service) => format!("{service}.{method}"),
                    None => method.to_owned(),
                },
                (Some(model), None) => model.to_owned(),
                (None, None) => "(unknown)".to_owned(),
            };
            assert_eq!(CallTarget(&call).to_string(), target);
            for decision in [Decision::Allow, Decision::Deny, Decision::WouldDeny] {
                let expected = format!("{} erp {} via {}: no rule", decision.as_str(), target, call.protocol.as_str());
                assert_eq!(call_message(decision, "erp", &call, "no rule"), expected);
            }
        }
    }
}

//! The audit record and its mapping to `ODOOGATE_*` journald fields.

use std::borrow::Cow;
use std::net::IpAddr;

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    /// One RPC call.
    Call,
    /// A request body that could not be decoded.
    DecodeError,
    /// A framing that Odoo could read differently (observe mode flags it).
    FramingAnomaly,
    /// Bytes missing from a flow, so its framing was lost until resync.
    CaptureGap,
    /// Ring buffer records lost or truncated in the kernel.
    CaptureLoss,
    /// A local process whose cgroup the guard does not allow tried to
    /// connect to Odoo's port, and its connect() failed with EPERM.
    GuardRefusal,
    /// Enforce mode: a client connection closed unserved because
    /// `proxy.max_connections` connections were open and none was idle.
    ConnectionRefused,
    /// A request outside the RPC routes, carrying an integration's web
    /// session, to a path its `web_routes` do not list.
    WebRoute,
}

impl AuditEvent {
    /// Returns the value of `ODOOGATE_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::DecodeError => "decode_error",
            Self::FramingAnomaly => "framing_anomaly",
            Self::CaptureGap => "capture_gap",
            Self::CaptureLoss => "capture_loss",
            Self::GuardRefusal => "guard_refusal",
            Self::ConnectionRefused => "connection_refused",
            Self::WebRoute => "web_route",
        }
    }
}

/// The decision on a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Deny,
    /// Observe mode: the policy would have denied the call.
    WouldDeny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::WouldDeny => "would_deny",
        }
    }
}

/// How a call was tied to its integration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Token,
    ApiKey,
    Cgroup,
    Ip,
    Session,
    None,
}

impl Identity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::ApiKey => "api_key",
            Self::Cgroup => "cgroup",
            Self::Ip => "ip",
            Self::Session => "session",
            Self::None => "none",
        }
    }
}

/// Maximum record ids written to `ODOOGATE_RECORD_IDS`; the field says how
/// many more there were.
pub const MAX_AUDIT_RECORD_IDS: usize = 50;

/// One audit record. Unknown values are `None` and their fields are left out.
/// No field may hold a password, token, API key or session id: only
/// fingerprints.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub event: AuditEvent,
    /// The readable `MESSAGE`.
    pub message: String,
    pub decision: Option<Decision>,
    pub integration: Option<String>,
    pub identity: Option<Identity>,
    /// `xmlrpc`, `xmlrpc_legacy`, `jsonrpc`, `web` or `json2`.
    pub protocol: Option<&'static str>,
    pub db: Option<String>,
    pub uid: Option<i64>,
    pub login: Option<String>,
    pub model: Option<String>,
    pub method: Option<String>,
    pub record_ids: Vec<i64>,
    /// Number of record ids the call carried, which may exceed `record_ids`.
    pub record_count: Option<usize>,
    pub fields: Vec<String>,
    pub rule: Option<String>,
    /// The id of the temporary grant (`odoogate grant`) that the allow
    /// relied on.
    pub grant: Option<String>,
    pub reason: Option<String>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub cgroup: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub conn_id: Option<u64>,
    /// `ok`, `fault:<code>`, `error:<name>` or `http:<status>`.
    pub outcome: Option<String>,
    pub http_status: Option<u16>,
    pub latency_us: Option<u64>,
    /// SHA-256 of the API key or token that made the call.
    pub key_fingerprint: Option<String>,
    /// Bounded error or anomaly code (`invalid_xml`, `duplicate_content_length`).
    pub error_code: Option<String>,
    /// How many events of this kind the record stands for (rate-limited
    /// records and loss counters).
    pub count: Option<u64>,
    /// Request path, for records about requests that did not decode.
    pub path: Option<String>,
}

impl AuditRecord {
    /// Returns an empty record of `event` with `message`.
    pub fn new(event: AuditEvent, message: impl Into<String>) -> Self {
        Self {
            event,
            message: message.into(),
            decision: None,
            integration: None,
            identity: None,
            protocol: None,
            db: None,
            uid: None,
            login: None,
            model: None,
            method: None,
            record_ids: Vec::new(),
            record_count: None,
            fields: Vec::new(),
            rule: None,
            grant: None,
            reason: None,
            src_ip: None,
            src_port: None,
            cgroup: None,
            pid: None,
            comm: None,
            conn_id: None,
            outcome: None,
            http_status: None,
            latency_us: None,
            key_fingerprint: None,
            error_code: None,
            count: None,
            path: None,
        }
    }

    /// Returns the record's journald fields (`ODOOGATE_*`, without `MESSAGE`,
    /// `PRIORITY` or `SYSLOG_IDENTIFIER`), leaving out unknown values.
    pub fn fields(&self) -> Vec<(&'static str, Cow<'_, str>)> {
        let Self {
            event,
            message: _,
            decision,
            integration,
            identity,
            protocol,
            db,
            uid,
            login,
            model,
            method,
            record_ids,
            record_count,
            fields,
            rule,
            grant,
            reason,
            src_ip,
            src_port,
            cgroup,
            pid,
            comm,
            conn_id,
            outcome,
            http_status,
            latency_us,
            key_fingerprint,
            error_code,
            count,
            path,
        } = self;

        let known: [(&'static str, Option<Cow<'_, str>>); 27] = [
            ("ODOOGATE_DECISION", decision.map(|d| Cow::Borrowed(d.as_str()))),
            ("ODOOGATE_INTEGRATION", integration.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_IDENTITY", identity.map(|i| Cow::Borrowed(i.as_str()))),
            ("ODOOGATE_PROTOCOL", protocol.map(Cow::Borrowed)),
            ("ODOOGATE_DB", db.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_UID", uid.map(|u| Cow::Owned(u.to_string()))),
            ("ODOOGATE_LOGIN", login.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_MODEL", model.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_METHOD", method.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_RECORD_IDS", format_record_ids(record_ids, *record_count).map(Cow::Owned)),
            ("ODOOGATE_FIELDS", (!fields.is_empty()).then(|| Cow::Owned(fields.join(",")))),
            ("ODOOGATE_RULE", rule.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_GRANT", grant.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_REASON", reason.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_SRC_IP", src_ip.map(|ip| Cow::Owned(ip.to_string()))),
            ("ODOOGATE_SRC_PORT", src_port.map(|p| Cow::Owned(p.to_string()))),
            ("ODOOGATE_CGROUP", cgroup.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_PID", pid.map(|p| Cow::Owned(p.to_string()))),
            ("ODOOGATE_COMM", comm.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_CONN_ID", conn_id.map(|c| Cow::Owned(c.to_string()))),
            ("ODOOGATE_OUTCOME", outcome.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_HTTP_STATUS", http_status.map(|s| Cow::Owned(s.to_string()))),
            ("ODOOGATE_LATENCY_US", latency_us.map(|l| Cow::Owned(l.to_string()))),
            ("ODOOGATE_KEY_FINGERPRINT", key_fingerprint.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_ERROR_CODE", error_code.as_deref().map(Cow::Borrowed)),
            ("ODOOGATE_COUNT", count.map(|c| Cow::Owned(c.to_string()))),
            ("ODOOGATE_PATH", path.as_deref().map(Cow::Borrowed)),
        ];
        let mut out = vec![("ODOOGATE_EVENT", Cow::Borrowed(event.as_str()))];
        out.extend(known.into_iter().filter_map(|(name, value)| Some((name, value?))));
        out
    }

    /// Returns the syslog priority: warnings for denials and losses,
    /// notice for the rest.
    pub fn priority(&self) -> u8 {
        match (self.event, self.decision) {
            (AuditEvent::Call, Some(Decision::Deny | Decision::WouldDeny)) => 4,
            (AuditEvent::Call, _) => 6,
            (AuditEvent::CaptureLoss | AuditEvent::CaptureGap, _) => 4,
            (AuditEvent::DecodeError | AuditEvent::FramingAnomaly, _) => 4,
            (AuditEvent::GuardRefusal | AuditEvent::ConnectionRefused | AuditEvent::WebRoute, _) => 4,
        }
    }
}

/// Formats record ids as `1,2,3`, with `,…(+N)` when some were left out.
fn format_record_ids(ids: &[i64], total: Option<usize>) -> Option<String> {
    if ids.is_empty() {
        return None;
    }
    let shown = &ids[..ids.len().min(MAX_AUDIT_RECORD_IDS)];
    let mut text = shown.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let total = total.unwrap_or(ids.len()).max(ids.len());
    if total > shown.len() {
        text.push_str(&format!(",…(+{})", total - shown.len()));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_left_out() {
        let record = AuditRecord::new(AuditEvent::Call, "m");
        assert_eq!(record.fields(), vec![("ODOOGATE_EVENT", Cow::Borrowed("call"))]);
    }

    #[test]
    fn grant_follows_rule() {
        let mut record = AuditRecord::new(AuditEvent::Call, "m");
        record.rule = Some("erp.allow[1]".to_owned());
        record.grant = Some("g-0123456789abcdef".to_owned());
        let names: Vec<&str> = record.fields().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["ODOOGATE_EVENT", "ODOOGATE_RULE", "ODOOGATE_GRANT"]);
        assert_eq!(record.fields()[2].1, "g-0123456789abcdef");
    }

    #[test]
    fn record_ids_are_bounded() {
        let mut record = AuditRecord::new(AuditEvent::Call, "m");
        record.record_ids = (1..=60).collect();
        let fields = record.fields();
        let ids = &fields.iter().find(|(k, _)| *k == "ODOOGATE_RECORD_IDS").unwrap().1;
        assert!(ids.starts_with("1,2,3,"));
        assert!(ids.ends_with(",50,…(+10)"));
    }
}

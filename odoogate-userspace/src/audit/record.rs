//! The audit record and its mapping to `ODOOGATE_*` journald fields.

use std::borrow::Cow;
use std::fmt;
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
        let mut out = Vec::with_capacity(28);
        self.for_each_field(|name, value| out.push((name, value.into_text())));
        out
    }

    /// Calls `visit` with each field that [`AuditRecord::fields`] returns, in
    /// the same order, with numbers and addresses not yet formatted, so a
    /// sink can write them without a `String` each.
    pub fn for_each_field<'a>(&'a self, mut visit: impl FnMut(&'static str, FieldValue<'a>)) {
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
        let text = |value: Option<&'a str>| value.map(FieldValue::Text);
        let unsigned = |value: Option<u64>| value.map(FieldValue::Unsigned);

        let known: [(&'static str, Option<FieldValue<'a>>); 28] = [
            ("ODOOGATE_EVENT", Some(FieldValue::Text(event.as_str()))),
            ("ODOOGATE_DECISION", text(decision.map(Decision::as_str))),
            ("ODOOGATE_INTEGRATION", text(integration.as_deref())),
            ("ODOOGATE_IDENTITY", text(identity.map(Identity::as_str))),
            ("ODOOGATE_PROTOCOL", text(*protocol)),
            ("ODOOGATE_DB", text(db.as_deref())),
            ("ODOOGATE_UID", uid.map(FieldValue::Signed)),
            ("ODOOGATE_LOGIN", text(login.as_deref())),
            ("ODOOGATE_MODEL", text(model.as_deref())),
            ("ODOOGATE_METHOD", text(method.as_deref())),
            ("ODOOGATE_RECORD_IDS", (!record_ids.is_empty()).then_some(FieldValue::RecordIds(record_ids, *record_count))),
            ("ODOOGATE_FIELDS", (!fields.is_empty()).then_some(FieldValue::Names(fields))),
            ("ODOOGATE_RULE", text(rule.as_deref())),
            ("ODOOGATE_GRANT", text(grant.as_deref())),
            ("ODOOGATE_REASON", text(reason.as_deref())),
            ("ODOOGATE_SRC_IP", src_ip.map(FieldValue::Ip)),
            ("ODOOGATE_SRC_PORT", unsigned(src_port.map(u64::from))),
            ("ODOOGATE_CGROUP", text(cgroup.as_deref())),
            ("ODOOGATE_PID", unsigned(pid.map(u64::from))),
            ("ODOOGATE_COMM", text(comm.as_deref())),
            ("ODOOGATE_CONN_ID", unsigned(*conn_id)),
            ("ODOOGATE_OUTCOME", text(outcome.as_deref())),
            ("ODOOGATE_HTTP_STATUS", unsigned(http_status.map(u64::from))),
            ("ODOOGATE_LATENCY_US", unsigned(*latency_us)),
            ("ODOOGATE_KEY_FINGERPRINT", text(key_fingerprint.as_deref())),
            ("ODOOGATE_ERROR_CODE", text(error_code.as_deref())),
            ("ODOOGATE_COUNT", unsigned(*count)),
            ("ODOOGATE_PATH", text(path.as_deref())),
        ];
        for (name, value) in known {
            if let Some(value) = value {
                visit(name, value);
            }
        }
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

/// The value of one journald field, as [`AuditRecord::for_each_field`]
/// gives it. Its text is what [`fmt::Display`] writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Text(&'a str),
    Unsigned(u64),
    Signed(i64),
    Ip(IpAddr),
    /// Record ids, written as `1,2,3`, with `,…(+N)` when the call carried
    /// more than [`MAX_AUDIT_RECORD_IDS`] (the second value is how many).
    RecordIds(&'a [i64], Option<usize>),
    /// Field names, written joined with commas.
    Names(&'a [String]),
}

impl<'a> FieldValue<'a> {
    /// Returns the value's text, borrowed when it is text already.
    pub fn into_text(self) -> Cow<'a, str> {
        match self {
            FieldValue::Text(text) => Cow::Borrowed(text),
            other => Cow::Owned(other.to_string()),
        }
    }
}

impl fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FieldValue::Text(text) => f.write_str(text),
            FieldValue::Unsigned(number) => write!(f, "{number}"),
            FieldValue::Signed(number) => write!(f, "{number}"),
            FieldValue::Ip(address) => write!(f, "{address}"),
            FieldValue::RecordIds(ids, total) => {
                let shown = &ids[..ids.len().min(MAX_AUDIT_RECORD_IDS)];
                for (index, id) in shown.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{id}")?;
                }
                let total = total.unwrap_or(ids.len()).max(ids.len());
                if total > shown.len() {
                    write!(f, ",…(+{})", total - shown.len())?;
                }
                Ok(())
            }
            FieldValue::Names(names) => {
                for (index, name) in names.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
        }
    }
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

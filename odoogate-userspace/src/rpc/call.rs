//! The decoded form of one RPC call, shared by every surface.

use std::ops::Range;

use crate::secret::Secret;

/// The RPC surface a call came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `/xmlrpc/2/<service>`
    XmlRpc,
    /// `/xmlrpc/<service>`, whose faults carry string codes.
    XmlRpcLegacy,
    /// `/jsonrpc`
    JsonRpc,
    /// The web client's session routes (`/web/session/*`, `/web/dataset/*`).
    Web,
    /// `/json/2/<model>/<method>` (Odoo 19 and later).
    Json2,
}

impl Protocol {
    /// Returns the name used in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::XmlRpc => "xmlrpc",
            Self::XmlRpcLegacy => "xmlrpc_legacy",
            Self::JsonRpc => "jsonrpc",
            Self::Web => "web",
            Self::Json2 => "json2",
        }
    }
}

/// What a call asks Odoo to do, which decides whether it needs an allow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A method on a model (`object.execute_kw`, `call_kw`, JSON-2).
    /// `Call::model` and `Call::method` are set.
    Model,
    /// A login: `common.login`, `common.authenticate`,
    /// `/web/session/authenticate`. Needs no rule.
    Auth,
    /// Metadata that reveals nothing about records: `common.version`,
    /// `common.about`, `db.list`, `db.server_version`,
    /// `/web/webclient/version_info`, session info or logout. Needs no rule.
    Meta,
    /// A `db` service method that manages databases (`create_database`,
    /// `drop`, `dump`, `restore`, …).
    /// `Call::method` is the db method; policy treats it as model `db`.
    Database,
}

/// Where the credential of a call was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSlot {
    /// The password argument of XML-RPC or JSON-RPC (a password or an API key).
    Password,
    /// `Authorization: Bearer <key>` (JSON-2).
    Bearer,
    /// odoogate's own `X-Odoogate-Token` header.
    OdoogateHeader,
}

/// A credential carried by a call. The value is a [`Secret`] and never logged.
///
/// Two credentials are equal when their slot and secret are: where the
/// secret sat in the body does not change which credential it is.
#[derive(Clone, Debug, Eq)]
pub struct Credential {
    pub slot: CredentialSlot,
    pub secret: Secret,
    /// The byte range of the body that contains the secret, when the decoder
    /// read it verbatim as the whole text of one XML-RPC element: no
    /// entity, character reference or CDATA section, and `>` before it and
    /// `<` after it. No other element of the document may read its text
    /// twice, since Python then makes two values of the same bytes. The
    /// token swap replaces exactly these bytes.
    pub span: Option<Range<usize>>,
}

impl Credential {
    /// Creates a credential with no known place in the body.
    pub fn new(slot: CredentialSlot, secret: Secret) -> Self {
        Self { slot, secret, span: None }
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        self.slot == other.slot && self.secret == other.secret
    }
}

/// One decoded RPC call.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub protocol: Protocol,
    pub kind: CallKind,
    /// `common`, `object` or `db` for XML-RPC and JSON-RPC.
    pub service: Option<String>,
    pub db: Option<String>,
    pub uid: Option<i64>,
    /// The login name of `login`/`authenticate` calls.
    pub login: Option<String>,
    pub model: Option<String>,
    /// The model method (`search_read`), or the service method for
    /// `Auth`, `Meta` and `Database` calls (`login`, `version`, `drop`).
    pub method: Option<String>,
    /// Record ids the call targets (`args[0]` of record methods, JSON-2 `ids`),
    /// in order, possibly cut at [`MAX_RECORD_IDS`].
    pub record_ids: Vec<i64>,
    /// Field names: keys of `create`/`write` values and the `fields` asked
    /// for by reads, deduplicated, in first-seen order.
    pub fields: Vec<String>,
    /// True when the call reads without a `fields` list, so all fields.
    pub reads_all_fields: bool,
    /// The call's context, as JSON.
    pub context: Option<serde_json::Value>,
    pub credential: Option<Credential>,
    /// Session id from the `session_id` cookie or `X-Openerp-Session-Id`.
    pub session_id: Option<Secret>,
    /// Things in the request that Odoo might read differently from odoogate
    /// (a JSON-2 body naming another model, a DOCTYPE, …). A call with a
    /// mismatch is never allowed on the strength of its decoded content.
    pub mismatches: Vec<String>,
}

/// Upper bound on the record ids kept per call.
pub const MAX_RECORD_IDS: usize = 1000;

impl Call {
    /// Returns an empty call of `protocol` and `kind`, for decoders to fill.
    pub fn new(protocol: Protocol, kind: CallKind) -> Self {
        Self {
            protocol,
            kind,
            service: None,
            db: None,
            uid: None,
            login: None,
            model: None,
            method: None,
            record_ids: Vec::new(),
            fields: Vec::new(),
            reads_all_fields: false,
            context: None,
            credential: None,
            session_id: None,
            mismatches: Vec::new(),
        }
    }
}

/// How Odoo answered a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A normal result.
    Ok,
    /// An XML-RPC fault, with its code as text (`4`, or a legacy string
    /// code cut to its first line such as `warning -- AccessError`).
    Fault(String),
    /// A JSON-RPC or JSON-2 error, with `data.name` / `name`
    /// (`odoo.exceptions.AccessError`).
    Error(String),
    /// An HTTP error status without a decodable RPC error body.
    HttpStatus(u16),
}

impl Outcome {
    /// Returns the value of the `ODOOGATE_OUTCOME` audit field.
    pub fn to_field(&self) -> String {
        match self {
            Self::Ok => "ok".to_owned(),
            Self::Fault(code) => format!("fault:{code}"),
            Self::Error(name) => format!("error:{name}"),
            Self::HttpStatus(status) => format!("http:{status}"),
        }
    }
}

/// Why a request body could not be decoded. Each variant has a bounded code
/// for audit records; the detail never contains request bytes that could be
/// secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid XML: {0}")]
    InvalidXml(String),
    #[error("XML with a DOCTYPE declaration")]
    XmlDoctype,
    #[error("invalid XML-RPC structure: {0}")]
    InvalidXmlRpc(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid JSON-RPC structure: {0}")]
    InvalidJsonRpc(String),
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("body truncated at {0} bytes")]
    Truncated(usize),
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
}

impl DecodeError {
    /// Returns the bounded code used in `ODOOGATE_ERROR_CODE`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidXml(_) => "invalid_xml",
            Self::XmlDoctype => "xml_doctype",
            Self::InvalidXmlRpc(_) => "invalid_xmlrpc",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidJsonRpc(_) => "invalid_jsonrpc",
            Self::TooDeep(_) => "too_deep",
            Self::Truncated(_) => "truncated",
            Self::NotUtf8 => "not_utf8",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
        }
    }
}

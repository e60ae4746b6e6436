//! The decoded form of one RPC call, shared by every surface.

use std::fmt;
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
    /// read it verbatim. In XML-RPC that is the whole text of one element:
    /// no entity, character reference or CDATA section, and `>` before it
    /// and `<` after it. No other element of the document may read its text
    /// twice, since Python then makes two values of the same bytes. In
    /// JSON-RPC it is the content of the string literal of `args[2]`,
    /// without escapes, between its quotes. The token swap replaces exactly
    /// these bytes.
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
    pub fields: FieldNames,
    /// True when the call reads without a `fields` list, so all fields.
    pub reads_all_fields: bool,
    /// The call's context, when it is an object.
    pub context: Option<Context>,
    pub credential: Option<Credential>,
    /// Session id from the `session_id` cookie or `X-Openerp-Session-Id`.
    pub session_id: Option<Secret>,
    /// Things in the request that Odoo might read differently from odoogate
    /// (a JSON-2 body naming another model, a DOCTYPE, …). A call with a
    /// mismatch is never allowed on the strength of its decoded content.
    pub mismatches: Vec<String>,
}

/// A list of field names stored in one buffer, so that a call with many
/// names costs two allocations instead of one per name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FieldNames {
    /// The names, one after another.
    text: String,
    /// The end of each name in `text`.
    ends: Vec<usize>,
}

impl FieldNames {
    /// Returns how many names the list contains.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Returns name number `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.text.get(self.range(index)?)
    }

    /// Returns where name number `index` lies in `text`.
    fn range(&self, index: usize) -> Option<Range<usize>> {
        let end = *self.ends.get(index)?;
        let start = match index.checked_sub(1) {
            Some(before) => self.ends[before],
            None => 0,
        };
        Some(start..end)
    }

    /// Returns the names in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator + Clone + '_ {
        (0..self.len()).map(|index| self.get(index).unwrap_or_default())
    }

    /// Tells whether the list contains `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Returns the index of the first name equal to `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        // Byte slices, because they need no check of character boundaries.
        let text = self.text.as_bytes();
        let mut start = 0;
        for (index, &end) in self.ends.iter().enumerate() {
            if end - start == name.len() && text.get(start..end) == Some(name.as_bytes()) {
                return Some(index);
            }
            start = end;
        }
        None
    }

    /// Tells whether name number `index` is `name`.
    pub fn is_at(&self, index: usize, name: &str) -> bool {
        let Some(range) = self.range(index) else {
            return false;
        };
        range.len() == name.len() && self.text.as_bytes().get(range) == Some(name.as_bytes())
    }

    /// Returns the names joined by `separator`.
    pub fn join(&self, separator: &str) -> String {
        self.iter().collect::<Vec<_>>().join(separator)
    }

    /// Returns the names as a list of strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }

    /// Appends `name`, which may repeat an earlier one.
    pub fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len());
    }

    /// Keeps the first `len` names.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.ends.len() {
            self.ends.truncate(len);
            self.text.truncate(self.ends.last().copied().unwrap_or(0));
        }
    }

    /// Reserves room for `names` more names of `bytes` bytes in all.
    pub(crate) fn reserve(&mut self, names: usize, bytes: usize) {
        self.ends.reserve(names);
        self.text.reserve(bytes);
    }

    /// Returns how many names the list has room for without allocating.
    pub(crate) fn capacity(&self) -> usize {
        self.ends.capacity()
    }
}

impl fmt::Debug for FieldNames {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<&'a str> for FieldNames {
    fn from_iter<I: IntoIterator<Item = &'a str>>(names: I) -> Self {
        let mut list = Self::default();
        names.into_iter().for_each(|name| list.push(name));
        list
    }
}

impl FromIterator<String> for FieldNames {
    fn from_iter<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut list = Self::default();
        names.into_iter().for_each(|name| list.push(&name));
        list
    }
}

impl<S: AsRef<str>> PartialEq<[S]> for FieldNames {
    fn eq(&self, other: &[S]) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(name, other)| name == other.as_ref())
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for FieldNames {
    fn eq(&self, other: &[S; N]) -> bool {
        *self == other[..]
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for FieldNames {
    fn eq(&self, other: &Vec<S>) -> bool {
        *self == other[..]
    }
}

/// The context object of a call, as the decoder read it.
///
/// Two contexts are equal when their JSON values are, whatever their form.
#[derive(Clone, Debug)]
pub enum Context {
    /// A JSON object built by a decoder that reads a value tree.
    Json(serde_json::Value),
    /// The JSON text of an object: copied from the body by the one-pass
    /// JSON decoders, which checked it as serde_json checks it, or written
    /// from an XML-RPC struct. Only the token rewrite reads a context, so
    /// the decoders leave the parsing to it.
    Text(Box<str>),
}

impl Context {
    /// Returns the context as a JSON value, parsing it when it is text.
    /// Fails only on text that serde_json rejects, which the decoders
    /// never store.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Self::Json(json) => Ok(json.clone()),
            Self::Text(text) => serde_json::from_str(text),
        }
    }
}

impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Json(json), Self::Json(other)) => json == other,
            // Equal text parses to equal values.
            (Self::Text(text), Self::Text(other)) if text == other => true,
            _ => matches!((self.to_json(), other.to_json()), (Ok(json), Ok(other)) if json == other),
        }
    }
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
            fields: FieldNames::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_keep_order_and_text() {
        let mut names = FieldNames::default();
        assert!(names.is_empty());
        for name in ["name", "", "partner_id.email", "n\u{e4}me", "name", "🚀"] {
            names.push(name);
        }
        assert_eq!(names.len(), 6);
        assert_eq!(names, ["name", "", "partner_id.email", "n\u{e4}me", "name", "🚀"]);
        assert_eq!(names.get(3), Some("n\u{e4}me"));
        assert_eq!(names.get(6), None);
        assert_eq!(names.iter().rev().next(), Some("🚀"));
        assert_eq!(names.join(", "), "name, , partner_id.email, n\u{e4}me, name, 🚀");
        assert_eq!(format!("{names:?}"), r#"["name", "", "partner_id.email", "nämé", "name", "🚀"]"#.replace("nämé", "n\u{e4}me"));
    }

    #[test]
    fn field_names_find_by_bytes() {
        let names: FieldNames = ["ab", "a", "abc", "", "ab"].into_iter().collect();
        assert_eq!(names.position("ab"), Some(0));
        assert_eq!(names.position("a"), Some(1));
        assert_eq!(names.position(""), Some(3));
        assert_eq!(names.position("b"), None);
        assert_eq!(names.position("abcd"), None);
        assert!(names.is_at(2, "abc"));
        assert!(!names.is_at(2, "ab"));
        assert!(!names.is_at(5, "ab"));
        assert!(names.contains("abc"));
        assert!(!names.contains("bc"));
    }

    #[test]
    fn field_names_truncate() {
        let mut names: FieldNames = ["one", "two", "three"].into_iter().collect();
        names.truncate(5);
        assert_eq!(names, ["one", "two", "three"]);
        names.truncate(1);
        assert_eq!(names, ["one"]);
        names.push("four");
        assert_eq!(names, ["one", "four"]);
        names.truncate(0);
        assert!(names.is_empty());
        assert_eq!(names, FieldNames::default());
    }

    #[test]
    fn field_names_equal_by_names() {
        let left: FieldNames = ["ab", "c"].into_iter().collect();
        let right: FieldNames = ["a", "bc"].into_iter().collect();
        assert_ne!(left, right);
        assert_eq!(left, vec!["ab".to_owned(), "c".to_owned()]);
        assert_ne!(left, vec!["ab"]);
        assert_eq!(left.to_vec(), vec!["ab", "c"]);
    }
}

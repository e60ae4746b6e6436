//! The request odoogate sends upstream for a call that presented a scoped
//! token: the token replaced by the service credential, `X-Odoogate-Token`
//! removed, and optionally `context.odoogate_integration` set.
//!
//! Where the credential goes:
//!
//! | surface | credential |
//! |---|---|
//! | XML-RPC `object.execute[_kw]`, `common.login`/`authenticate` | `params[2]`, edited in place |
//! | JSON-RPC, same methods | `args[2]` |
//! | `/web/session/authenticate` | `params.password` |
//! | JSON-2 | `Authorization: bearer <credential>` |
//!
//! The credential is written there even when the token came only in
//! `X-Odoogate-Token`. Other calls (`common.version`, `db.*`, the session
//! routes) carry no credential of odoogate's, so only the header goes.
//!
//! The body is re-framed with a `Content-Length` and without
//! `Transfer-Encoding`. Before returning, the rewritten request is decoded
//! again and must give the same call with only the credential (and the
//! injected context key) changed; otherwise the rewrite fails, so odoogate
//! never forwards a call other than the one it decided on.
//!
//! The common XML-RPC and JSON-RPC cases take a shorter way. When the
//! decoder found the token as the plain text of its element, or as a JSON
//! string without escapes, only those bytes are replaced, and the body is
//! neither parsed nor decoded again. [`splice_credential`] explains why
//! that is safe.

mod xml;

use std::fmt::Write as _;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::{Map, Value as Json};

use crate::http::HttpRequest;
use crate::http::message::{HeaderName, Headers, HttpVersion};
use crate::rpc::{self, Call, CallKind, Context, Credential, CredentialSlot, DecodeError, DecodeLimits, Protocol};
use crate::secret::Secret;

pub use xml::CONTEXT_KEY;

/// Why a request could not be rewritten. No variant carries request bytes
/// or the credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("the request body was cut at {0} bytes, so it cannot be forwarded")]
    Truncated(usize),
    #[error("the service credential contains a control character, so it cannot be sent")]
    InvalidCredential,
    #[error("cannot rewrite the XML-RPC body: {0}")]
    XmlRpc(String),
    #[error("cannot rewrite the JSON body: {0}")]
    Json(String),
    #[error("the rewritten request does not decode: {0}")]
    Redecode(DecodeError),
    #[error("the rewritten request decodes to a different call: {0}")]
    Changed(&'static str),
}

/// Header that carries a scoped token outside the call itself.
const TOKEN_HEADER: &str = "X-Odoogate-Token";

/// Integers beyond 64 bits would be re-serialized as floats by serde_json.
const MAX_INTEGER_DIGITS: usize = 18;

/// Builds the upstream request for `call` (decoded from `request`) with
/// `credential` in place of the token, and with
/// `context.odoogate_integration` set to `inject_integration` for model
/// calls when given.
pub fn rewrite_request(
    request: &HttpRequest,
    call: &Call,
    credential: &Secret,
    inject_integration: Option<&str>,
) -> Result<Bytes, RewriteError> {
    rewrite_request_with_headers(request, &request.headers, call, credential, inject_integration)
}

/// Builds the upstream request as [`rewrite_request`] does, with `headers`
/// in place of the request's own: the proxy passes the fields it forwards.
pub fn rewrite_request_with_headers(
    request: &HttpRequest,
    headers: &Headers,
    call: &Call,
    credential: &Secret,
    inject_integration: Option<&str>,
) -> Result<Bytes, RewriteError> {
    if request.body_truncated {
        return Err(RewriteError::Truncated(request.body.len()));
    }
    if credential.expose().chars().any(char::is_control) {
        return Err(RewriteError::InvalidCredential);
    }
    let integration = inject_integration.filter(|_| call.kind == CallKind::Model);
    if integration.is_none()
        && let Some(bytes) = splice_credential(request, headers, call, credential.expose())
    {
        return Ok(bytes);
    }

    let body = rewrite_body(request, call, credential.expose(), integration)?;
    let authorization = (call.protocol == Protocol::Json2).then(|| format!("bearer {}", credential.expose()));
    let headers = upstream_headers(headers, authorization.as_deref());
    let upstream = HttpRequest {
        headers,
        body: body.bytes.clone(),
        body_truncated: false,
        anomalies: Vec::new(),
        ..request.clone()
    };

    let slot = match call.protocol {
        Protocol::Json2 => Some(CredentialSlot::Bearer),
        _ if body.wrote_credential => Some(CredentialSlot::Password),
        _ => None,
    };
    confirm(&upstream, call, credential, slot, body.wrote_context.then_some(integration).flatten())?;
    Ok(serialize(&upstream))
}

/// Writes the credential over the bytes of an XML-RPC or JSON-RPC password
/// that the decoder read verbatim ([`Credential::span`]), and keeps every
/// other byte of the body. Returns `None` when the call has no such span,
/// or when the credential is not ASCII (an XML-RPC body may be in another
/// ASCII-compatible encoding). It also returns `None` for a JSON-RPC body
/// that may contain another copy of the password, verbatim or escaped.
///
/// The rewritten body is not decoded again as the other edits are. In
/// XML-RPC the span is the whole text of one element, between its `>` and
/// the next `<`, and the credential is XML-escaped and free of control
/// characters. The decoder gives no span when any text of the document was
/// read by two end tags, so these bytes are the password's alone. In
/// JSON-RPC the span is the content of one string literal without
/// escapes, which ends at its first `"`, and the credential is written
/// with `"` and `\` escaped, so the literal still ends where it did. So
/// every other value of the document stays as it was, and the password is
/// the only value that changes. The tests check that this gives the same
/// call as the full rewrite.
fn splice_credential(request: &HttpRequest, headers: &Headers, call: &Call, credential: &str) -> Option<Bytes> {
    if !credential.is_ascii() {
        return None;
    }
    let presented = call.credential.as_ref().filter(|presented| presented.slot == CredentialSlot::Password)?;
    let span = presented.span.clone()?;
    let body = &request.body;
    let password = presented.secret.expose().as_bytes();
    if body.get(span.clone())? != password {
        return None;
    }
    let escaped = match call.protocol {
        Protocol::XmlRpc | Protocol::XmlRpcLegacy => quick_xml::escape::escape(credential),
        // A key sent twice keeps its earlier value in the body, where
        // Python ignores it, and the full rewrite drops it. The decoder
        // gives no span when `params` or `args` came twice, and a password
        // found anywhere else in the body takes the full rewrite too, as
        // does a body that may spell a copy of it with escapes.
        Protocol::JsonRpc if memchr::memmem::find_iter(body, password).nth(1).is_none() && !may_escape_any_of(body, password) => {
            json_string_content(credential)
        }
        _ => return None,
    };
    let body = [&body[..span.start], escaped.as_bytes(), &body[span.end..]];
    let headers = headers.0.iter().filter(|(name, _)| !is_dropped_upstream(name));
    Some(serialize_parts(&request.method, &request.target, request.version, headers, &body))
}

/// Tells whether a JSON `body` may contain an escape that decodes to a
/// byte of `text`, or to any non-ASCII character when `text` is not ASCII.
/// Every backslash is read as the start of an escape, so a backslash that
/// `\\` wrote counts too, and an escape that does not parse counts as a
/// match. So the result errs towards true, which only costs the splice.
fn may_escape_any_of(body: &[u8], text: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', body).any(|backslash| {
        let decoded = match body.get(backslash + 1) {
            Some(b'u') => body
                .get(backslash + 2..backslash + 6)
                .filter(|digits| digits.iter().all(u8::is_ascii_hexdigit))
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| u32::from_str_radix(digits, 16).ok()),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0C),
            Some(b'n') => Some(u32::from(b'\n')),
            Some(b'r') => Some(u32::from(b'\r')),
            Some(b't') => Some(u32::from(b'\t')),
            Some(&byte @ (b'"' | b'\\' | b'/')) => Some(u32::from(byte)),
            _ => None,
        };
        match decoded.map(u8::try_from) {
            Some(Ok(byte)) if byte.is_ascii() => text.contains(&byte),
            Some(_) => !text.is_ascii(),
            None => true,
        }
    })
}

/// Returns `text` as the content of a JSON string literal. The caller has
/// checked that it is ASCII without control characters, so only `"` and
/// `\` need escapes.
fn json_string_content(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['"', '\\']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut content = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if matches!(character, '"' | '\\') {
            content.push('\\');
        }
        content.push(character);
    }
    std::borrow::Cow::Owned(content)
}

/// A body after the edits, with what was written.
struct Body {
    bytes: Bytes,
    wrote_credential: bool,
    wrote_context: bool,
}

fn rewrite_body(
    request: &HttpRequest,
    call: &Call,
    credential: &str,
    integration: Option<&str>,
) -> Result<Body, RewriteError> {
    let unchanged = || Body { bytes: request.body.clone(), wrote_credential: false, wrote_context: false };
    match call.protocol {
        Protocol::XmlRpc | Protocol::XmlRpcLegacy => {
            let service = call.service.as_deref().unwrap_or_default();
            let edits = xml::Edits { credential: Some(credential), integration };
            let out = xml::rewrite(&request.body, service, &edits).map_err(RewriteError::XmlRpc)?;
            Ok(Body { bytes: out.body.into(), wrote_credential: out.wrote_credential, wrote_context: out.wrote_context })
        }
        Protocol::JsonRpc => edit_json(&request.body, |envelope| jsonrpc_edits(envelope, credential, integration)),
        Protocol::Web => match call.kind {
            CallKind::Auth => edit_json(&request.body, |envelope| {
                params_mut(envelope)?.insert("password".to_owned(), Json::String(credential.to_owned()));
                Ok((true, false))
            }),
            CallKind::Model if integration.is_some() => edit_json(&request.body, |envelope| {
                let kwargs = params_mut(envelope)?.entry("kwargs").or_insert_with(|| Json::Object(Map::new()));
                set_context(kwargs, integration.unwrap_or_default());
                Ok((false, true))
            }),
            _ => Ok(unchanged()),
        },
        Protocol::Json2 => match integration {
            // The body holds the named arguments, `context` among them.
            Some(name) => edit_json(&request.body, |body| {
                set_context(body, name);
                Ok((false, true))
            }),
            None => Ok(unchanged()),
        },
    }
}

/// Parses a JSON body, lets `edit` change it and serializes it again.
/// `edit` returns whether it wrote the credential and the context.
/// Applies `edit` to a JSON request body and serializes it again, with the
/// same depth and integer-size checks as the credential rewrite, so numbers
/// keep their values.
pub fn edit_json_body(body: &[u8], edit: impl FnOnce(&mut Json) -> Result<(), RewriteError>) -> Result<Bytes, RewriteError> {
    edit_json(body, |value| edit(value).map(|()| (false, false))).map(|body| body.bytes)
}

/// Sets the field list of an XML-RPC `execute_kw` `read` or `search_read`
/// to `fields`, editing only those bytes of the body. The caller decodes the
/// result again to confirm it.
pub fn edit_xml_fields(body: &[u8], fields: &[String]) -> Result<Bytes, RewriteError> {
    xml::set_fields(body, fields).map(Bytes::from).map_err(RewriteError::XmlRpc)
}

fn edit_json(body: &[u8], edit: impl FnOnce(&mut Json) -> Result<(bool, bool), RewriteError>) -> Result<Body, RewriteError> {
    rpc::jsonrpc::check_depth(body, DecodeLimits::default().max_depth).map_err(RewriteError::Redecode)?;
    check_integer_sizes(body)?;
    let mut value: Json = serde_json::from_slice(body).map_err(|error| RewriteError::Json(error.to_string()))?;
    if !value.is_object() {
        return Err(RewriteError::Json("body is not an object".to_owned()));
    }
    let (wrote_credential, wrote_context) = edit(&mut value)?;
    let bytes = serde_json::to_vec(&value).map_err(|error| RewriteError::Json(error.to_string()))?;
    Ok(Body { bytes: bytes.into(), wrote_credential, wrote_context })
}

/// `/jsonrpc`: `args[2]` of password-taking methods, `args[6].context` of
/// `execute_kw`.
fn jsonrpc_edits(envelope: &mut Json, credential: &str, integration: Option<&str>) -> Result<(bool, bool), RewriteError> {
    let params = params_mut(envelope)?;
    let service = params.get("service").and_then(Json::as_str).unwrap_or_default().to_owned();
    let method = params.get("method").and_then(Json::as_str).unwrap_or_default().to_owned();
    let args = params
        .get_mut("args")
        .and_then(Json::as_array_mut)
        .ok_or_else(|| RewriteError::Json("params.args is not a list".to_owned()))?;

    let takes_password = matches!(
        (service.as_str(), method.as_str()),
        ("object", "execute" | "execute_kw") | ("common", "login" | "authenticate")
    );
    if takes_password {
        let slot = args.get_mut(2).ok_or_else(|| RewriteError::Json("fewer than 3 arguments".to_owned()))?;
        *slot = Json::String(credential.to_owned());
    }

    let inject = integration.filter(|_| service == "object" && method == "execute_kw");
    if let Some(name) = inject {
        if args.len() == 6 {
            args.push(Json::Object(Map::new()));
        }
        let kwargs = args.get_mut(6).ok_or_else(|| RewriteError::Json("execute_kw without 6 arguments".to_owned()))?;
        set_context(kwargs, name);
    }
    Ok((takes_password, inject.is_some()))
}

fn params_mut(envelope: &mut Json) -> Result<&mut Map<String, Json>, RewriteError> {
    envelope
        .get_mut("params")
        .and_then(Json::as_object_mut)
        .ok_or_else(|| RewriteError::Json("params is not an object".to_owned()))
}

/// Sets `kwargs.context.odoogate_integration`; a `kwargs` or `context` that
/// is not an object (`null`, `false`) becomes one.
fn set_context(kwargs: &mut Json, name: &str) {
    if !kwargs.is_object() {
        *kwargs = Json::Object(Map::new());
    }
    let object = kwargs.as_object_mut().expect("kwargs is an object");
    set_context_key(object.entry("context").or_insert(Json::Null), name);
}

/// Sets `odoogate_integration` in a context, dropping the client's value
/// so that it cannot claim another integration. A context that is not an
/// object becomes one.
fn set_context_key(context: &mut Json, name: &str) {
    if !context.is_object() {
        *context = Json::Object(Map::new());
    }
    let object = context.as_object_mut().expect("context is an object");
    // shift_remove keeps the order of the client's other keys.
    object.shift_remove(CONTEXT_KEY);
    object.insert(CONTEXT_KEY.to_owned(), Json::String(name.to_owned()));
}

/// Rejects integers that serde_json would read as floats, which would
/// reach Odoo as `1.2e21` instead of the client's integer.
fn check_integer_sizes(body: &[u8]) -> Result<(), RewriteError> {
    let mut digits = 0usize;
    let mut fraction = false;
    for byte in crate::rpc::jsonrpc::bytes_outside_strings(body) {
        match byte {
            b'0'..=b'9' => digits += 1,
            b'.' | b'e' | b'E' => fraction = true,
            _ => {
                if digits > MAX_INTEGER_DIGITS && !fraction {
                    return Err(RewriteError::Json(format!("an integer with more than {MAX_INTEGER_DIGITS} digits")));
                }
                digits = 0;
                fraction = false;
            }
        }
    }
    Ok(())
}

/// Copies the headers for upstream: without `Content-Length`,
/// `Transfer-Encoding` and `X-Odoogate-Token`, and with every
/// `Authorization` replaced by `authorization` when given (at the first
/// one's place, or at the end).
fn upstream_headers(headers: &Headers, authorization: Option<&str>) -> Headers {
    let replaces_authorization = authorization.is_some();
    let mut authorization = authorization.map(|value| Bytes::from(value.to_owned()));
    let mut out = Vec::with_capacity(headers.0.len() + 1);
    for (name, value) in &headers.0 {
        if is_dropped_upstream(name) {
            continue;
        }
        if name.eq_ignore_ascii_case("Authorization") && replaces_authorization {
            if let Some(value) = authorization.take() {
                out.push((name.clone(), value));
            }
            continue;
        }
        out.push((name.clone(), value.clone()));
    }
    if let Some(value) = authorization {
        out.push((HeaderName::from_static("Authorization"), value));
    }
    Headers(out)
}

/// Tells whether the field `name` is left out of every upstream request:
/// the framing fields, which the body's new length replaces, and
/// `X-Odoogate-Token`.
fn is_dropped_upstream(name: &str) -> bool {
    ["Content-Length", "Transfer-Encoding", TOKEN_HEADER].iter().any(|field| name.eq_ignore_ascii_case(field))
}

/// Decodes the upstream request and checks that it is `call` with only the
/// credential and the injected context changed.
fn confirm(
    upstream: &HttpRequest,
    call: &Call,
    credential: &Secret,
    slot: Option<CredentialSlot>,
    injected: Option<&str>,
) -> Result<(), RewriteError> {
    let limits = DecodeLimits { max_depth: DecodeLimits::default().max_depth + 2, max_body_bytes: upstream.body.len() };
    let decoded = rpc::decode_request(upstream, &limits)
        .map_err(RewriteError::Redecode)?
        .ok_or(RewriteError::Changed("no longer an RPC call"))?;

    let mut expected = call.clone();
    expected.credential = match slot {
        Some(slot) => Some(Credential::new(slot, credential.clone())),
        None => call.credential.clone().filter(|credential| credential.slot != CredentialSlot::OdoogateHeader),
    };
    if let Some(name) = injected {
        let mut context = match expected.context.take() {
            Some(context) => context.to_json().map_err(|_| RewriteError::Changed("context"))?,
            None => Json::Null,
        };
        set_context_key(&mut context, name);
        expected.context = Some(Context::Json(context));
    }
    if !decoded.mismatches.iter().all(|mismatch| call.mismatches.contains(mismatch)) {
        return Err(RewriteError::Changed("new mismatches"));
    }
    expected.mismatches = decoded.mismatches.clone();

    if decoded.credential != expected.credential {
        return Err(RewriteError::Changed("credential"));
    }
    if decoded.context != expected.context {
        return Err(RewriteError::Changed("context"));
    }
    if decoded != expected {
        return Err(RewriteError::Changed("call fields"));
    }
    Ok(())
}

/// Writes the request line, the headers, `Content-Length` and the body.
fn serialize(request: &HttpRequest) -> Bytes {
    serialize_parts(&request.method, &request.target, request.version, request.headers.0.iter(), &[&request.body])
}

/// Writes a request whose body is the concatenation of `body`.
fn serialize_parts<'a>(
    method: &str,
    target: &str,
    version: HttpVersion,
    headers: impl Iterator<Item = &'a (HeaderName, Bytes)> + Clone,
    body: &[&[u8]],
) -> Bytes {
    let head_bytes: usize = headers.clone().map(|(name, value)| name.len() + value.len() + 4).sum();
    let body_bytes: usize = body.iter().map(|part| part.len()).sum();
    let mut out = BytesMut::with_capacity(method.len() + target.len() + head_bytes + body_bytes + 64);
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_u8(b' ');
    out.put_slice(version.as_str().as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    let _ = write!(out, "Content-Length: {body_bytes}\r\n\r\n");
    for part in body {
        out.put_slice(part);
    }
    out.freeze()
}

#[cfg(test)]
mod tests;

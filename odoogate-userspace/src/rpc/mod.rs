//! Decoders for Odoo's RPC surfaces: one module per surface, each turning a
//! framed [`HttpRequest`](crate::http::HttpRequest) into a [`Call`] and a
//! framed response into an [`Outcome`].
//!
//! [`decode_request`] routes by path the way Odoo's router does: on the
//! percent-decoded path, case-sensitively, without the query. Surfaces:
//!
//! | path | module |
//! |---|---|
//! | `/xmlrpc/2/<service>`, `/xmlrpc/<service>` | [`xmlrpc`] |
//! | `/jsonrpc` | [`jsonrpc`] |
//! | `/web/session/authenticate`, `/web/dataset/call_kw[/…]`, `/web/dataset/call_button[/…]`, metadata routes | [`web`] |
//! | `/json/2/<model>/<method>` | [`json2`] |
//!
//! On every surface, an `X-Odoogate-Token` header becomes the call's
//! credential (slot [`CredentialSlot::OdoogateHeader`]) and replaces the
//! password or bearer key found in the request. A client that presents a
//! scoped token is identified by it, and its password slot then carries
//! whatever the client was configured with.

pub mod args;
pub mod call;
pub mod json2;
mod json_stream;
pub mod jsonrpc;
pub mod response;
pub mod service;
mod text;
pub mod value;
pub mod web;
pub mod xmlrpc;

use std::borrow::Cow;

pub use call::{Call, CallKind, Context, Credential, CredentialSlot, DecodeError, FieldNames, Outcome, Protocol};
pub use response::{decode_response, login_uid, session_cookie};

use crate::http::HttpRequest;
use crate::secret::Secret;

/// Bounds on what the decoders read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum nesting of XML-RPC arrays and structs, or of JSON arrays and
    /// objects.
    pub max_depth: usize,
    /// Largest body the decoders read. A larger one is rejected as
    /// [`DecodeError::Truncated`] at this size.
    pub max_body_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_depth: 64, max_body_bytes: 16 * 1024 * 1024 }
    }
}

/// The surface a request path names.
enum Surface<'p> {
    XmlRpc { protocol: Protocol, service: &'p str },
    JsonRpc,
    Web(web::Route),
    Json2 { model: &'p str, method: &'p str },
}

/// Decodes an RPC call from a framed request.
///
/// Returns `Ok(None)` when the request is not an RPC call: a path that names
/// no surface (web pages, assets, reports, `/websocket`, other JSON routes),
/// a JSON-2 request whose method is not `POST` (Odoo returns 404 for
/// those), or a request without a body that is not `POST` (a probe that cannot
/// carry a call). Other methods with a body are decoded, because Odoo's
/// XML-RPC and JSON-RPC routes do not restrict the method.
pub fn decode_request(request: &HttpRequest, limits: &DecodeLimits) -> Result<Option<Call>, DecodeError> {
    let path = route_path(request.path());
    let Some(surface) = surface_of(&path) else {
        return Ok(None);
    };
    let is_post = request.method == "POST";
    if matches!(surface, Surface::Json2 { .. }) && !is_post {
        return Ok(None);
    }
    let is_meta = matches!(surface, Surface::Web(web::Route::Meta));
    if !is_post && !is_meta && request.body.is_empty() {
        return Ok(None);
    }
    if !is_meta {
        check_body(request, limits)?;
    }

    // The JSON decoders fill this call in place, because a `Call` is a few
    // hundred bytes and each return by value copies it.
    let mut call = Call::new(Protocol::JsonRpc, CallKind::Model);
    match surface {
        Surface::XmlRpc { protocol, service } => call = xmlrpc::decode_request(protocol, service, &request.body, limits.max_depth)?,
        Surface::JsonRpc => jsonrpc::decode_request_into(&request.body, limits.max_depth, &mut call)?,
        Surface::Web(route) => web::decode_request_into(route, &path, request, limits.max_depth, &mut call)?,
        Surface::Json2 { model, method } => json2::decode_request_into(model, method, request, limits.max_depth, &mut call)?,
    }
    add_odoogate_token(&mut call, request);
    Ok(Some(call))
}

/// Tells from the request line alone whether [`decode_request`] reads the
/// request as an RPC call (given a body, for the routes that need one). An
/// inline proxy uses it to decide, before the body arrives, whether to read
/// the whole body or to stream it through.
pub fn is_rpc_surface(method: &str, target: &str) -> bool {
    let path = route_path(target.split(['?', '#']).next().unwrap_or(""));
    match surface_of(&path) {
        Some(Surface::Json2 { .. }) => method == "POST",
        Some(_) => true,
        None => false,
    }
}

/// Returns the protocol of the RPC surface `target` names, if any, so a
/// request whose body does not decode can still be recorded as a call of
/// that protocol.
pub fn surface_protocol(target: &str) -> Option<Protocol> {
    let path = route_path(target.split(['?', '#']).next().unwrap_or(""));
    Some(match surface_of(&path)? {
        Surface::XmlRpc { protocol, .. } => protocol,
        Surface::JsonRpc => Protocol::JsonRpc,
        Surface::Web(_) => Protocol::Web,
        Surface::Json2 { .. } => Protocol::Json2,
    })
}

fn surface_of(path: &str) -> Option<Surface<'_>> {
    if path == "/jsonrpc" {
        return Some(Surface::JsonRpc);
    }
    if let Some(service) = path.strip_prefix("/xmlrpc/2/") {
        return single_segment(service).map(|service| Surface::XmlRpc { protocol: Protocol::XmlRpc, service });
    }
    if let Some(service) = path.strip_prefix("/xmlrpc/") {
        return single_segment(service).map(|service| Surface::XmlRpc { protocol: Protocol::XmlRpcLegacy, service });
    }
    if let Some((model, method)) = json2::route(path) {
        return Some(Surface::Json2 { model, method });
    }
    web::route(path).map(Surface::Web)
}

/// Accepts one non-empty path segment, as a werkzeug `<service>` converter.
fn single_segment(segment: &str) -> Option<&str> {
    (!segment.is_empty() && !segment.contains('/')).then_some(segment)
}

/// Returns the path Odoo's router matches: the path werkzeug takes from the
/// target ([`target_path`]), percent-decoded, with runs of `/` merged and one
/// trailing `/` removed. Escapes that decode to invalid UTF-8 become U+FFFD,
/// as Python's `urllib.parse.unquote` makes them, so
/// `/web/dataset/call%5Fkw/%FF` still reaches `call_kw`.
///
/// Odoo builds its werkzeug routing map with `strict_slashes=False`, so
/// `/xmlrpc/2/object/` reaches the same endpoint as `/xmlrpc/2/object`.
/// Normalising both forms here errs towards decoding a call Odoo might run.
fn route_path(path: &str) -> Cow<'_, str> {
    let path = target_path(path);
    let decoded = if contains_byte(path.as_bytes(), b'%') {
        match String::from_utf8(percent_decode(path.as_bytes())) {
            Ok(decoded) => Cow::Owned(decoded),
            Err(invalid) => Cow::Owned(String::from_utf8_lossy(invalid.as_bytes()).into_owned()),
        }
    } else {
        path
    };
    normalize_slashes(decoded)
}

/// Tells whether `bytes` contains `needle`. The scan has no early exit, so
/// the compiler vectorizes it, and on a path of a few dozen bytes that
/// costs fewer instructions than `memchr`'s set-up or a loop that stops.
fn contains_byte(bytes: &[u8], needle: u8) -> bool {
    bytes.iter().fold(false, |found, &byte| found | (byte == needle))
}

/// Merges runs of `/` and drops one trailing `/` (but keeps `/` itself).
fn normalize_slashes(path: Cow<'_, str>) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let has_run = bytes.iter().zip(bytes.iter().skip(1)).fold(false, |found, (&byte, &next)| found | (byte == b'/' && next == b'/'));
    let needs_work = has_run || (path.len() > 1 && path.ends_with('/'));
    if !needs_work {
        return path;
    }
    let mut normalized = String::with_capacity(path.len());
    for character in path.chars() {
        if character == '/' && normalized.ends_with('/') {
            continue;
        }
        normalized.push(character);
    }
    if normalized.len() > 1 && normalized.ends_with('/') {
        normalized.pop();
    }
    Cow::Owned(normalized)
}

/// Returns the path werkzeug's development server routes a request target
/// on, given the target without its query and fragment (checked against
/// werkzeug 3.1 on Python 3.11). `urllib.parse.urlsplit` drops a scheme of any name, so
/// `x:/jsonrpc`, `ftp://host/jsonrpc` and `http:jsonrpc` have the path
/// `/jsonrpc` or `jsonrpc`, and the authority after `//` goes too. Then
/// werkzeug's `Request.path` adds the `/` that `jsonrpc` lacks. An
/// origin-form target (`/path`, or `//host/path`, which werkzeug reads as
/// the path `/host/path`) is returned unchanged.
fn target_path(target: &str) -> Cow<'_, str> {
    if target.starts_with('/') {
        return Cow::Borrowed(target);
    }
    let rest = strip_scheme(target);
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path.find('/').map_or("", |slash| &authority_and_path[slash..]),
        None => rest,
    };
    if path.starts_with('/') { Cow::Borrowed(path) } else { Cow::Owned(format!("/{path}")) }
}

/// Drops a URL scheme and its `:` as `urllib.parse.urlsplit` does: an ASCII
/// letter followed by letters, digits, `+`, `-` or `.`, up to the first `:`.
fn strip_scheme(target: &str) -> &str {
    let Some(colon) = target.find(':') else {
        return target;
    };
    let scheme = &target.as_bytes()[..colon];
    let is_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'));
    if is_scheme { &target[colon + 1..] } else { target }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 3).and_then(|hex| {
            let hex = std::str::from_utf8(hex).ok()?;
            u8::from_str_radix(hex, 16).ok()
        });
        match (bytes[index], escape) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    decoded
}

/// Rejects bodies the decoders cannot read whole: cut by the framer, larger
/// than the limit, or compressed.
fn check_body(request: &HttpRequest, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if request.body_truncated {
        return Err(DecodeError::Truncated(request.body.len()));
    }
    if request.body.len() > limits.max_body_bytes {
        return Err(DecodeError::Truncated(limits.max_body_bytes));
    }
    let encoding = request.headers.get_str("Content-Encoding").map(str::trim).unwrap_or("");
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
        return Err(DecodeError::UnsupportedEncoding(encoding.chars().take(32).collect()));
    }
    Ok(())
}

/// Makes an `X-Odoogate-Token` header the call's credential. A value that is
/// not UTF-8 is flagged instead, since it cannot match any token.
fn add_odoogate_token(call: &mut Call, request: &HttpRequest) {
    let Some(value) = request.headers.get("X-Odoogate-Token") else {
        return;
    };
    match std::str::from_utf8(value).map(str::trim) {
        Ok(token) if !token.is_empty() => {
            call.credential = Some(Credential::new(CredentialSlot::OdoogateHeader, Secret::new(token)));
        }
        _ => call.mismatches.push("X-Odoogate-Token header is empty or not UTF-8".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::{Headers, HttpVersion};
    use bytes::Bytes;

    fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> HttpRequest {
        HttpRequest {
            method: method.to_owned(),
            target: target.to_owned(),
            version: HttpVersion::Http11,
            headers: Headers(headers.iter().map(|(n, v)| ((*n).into(), Bytes::from(v.to_string()))).collect()),
            body: Bytes::from(body.to_owned()),
            body_truncated: false,
            anomalies: Vec::new(),
            first_byte_ns: 0,
            last_byte_ns: 0,
        }
    }

    const EXECUTE: &str = r#"{"params":{"service":"object","method":"execute","args":["db",2,"pw","res.partner","read",[1]]}}"#;

    #[test]
    fn percent_encoded_path_is_routed() {
        let call = decode_request(&request("POST", "/json%72pc?x=1", &[], EXECUTE), &DecodeLimits::default()).unwrap();
        assert_eq!(call.map(|c| c.protocol), Some(Protocol::JsonRpc));
    }

    #[test]
    fn absolute_form_target_is_routed() {
        let call = decode_request(&request("POST", "http://odoo:8069/jsonrpc", &[], EXECUTE), &DecodeLimits::default()).unwrap();
        assert_eq!(call.map(|c| c.protocol), Some(Protocol::JsonRpc));
    }

    /// werkzeug routes each of these targets to `/jsonrpc`, because
    /// `urlsplit` drops any scheme and the authority after it, and
    /// `Request.path` adds a missing leading `/`.
    #[test]
    fn non_origin_targets_are_routed() {
        let targets = [
            "jsonrpc",
            "jsonrpc?debug=1",
            "x:/jsonrpc",
            "x:jsonrpc",
            "http:/jsonrpc",
            "http:jsonrpc",
            "ftp://odoo/jsonrpc",
            "h+t.t-p://odoo:8069/jsonrpc",
            "x:%2Fjsonrpc",
            "%2Fjsonrpc",
        ];
        for target in targets {
            let call = decode_request(&request("POST", target, &[], EXECUTE), &DecodeLimits::default()).unwrap();
            assert_eq!(call.map(|c| c.protocol), Some(Protocol::JsonRpc), "target {target:?}");
            assert!(is_rpc_surface("POST", target), "target {target:?}");
        }
        assert_eq!(surface_protocol("x:/xmlrpc/2/object"), Some(Protocol::XmlRpc));
        assert_eq!(surface_protocol("json/2/res.partner/unlink"), Some(Protocol::Json2));
    }

    /// A colon after a character that cannot start or continue a scheme
    /// leaves the target a relative path, as `urlsplit` leaves it.
    #[test]
    fn colon_without_scheme_stays_in_path() {
        for target in ["1x:/jsonrpc", "x_y:/jsonrpc", ":/jsonrpc"] {
            assert!(!is_rpc_surface("POST", target), "target {target:?}");
        }
    }

    /// Python's `unquote` turns escapes that are not UTF-8 into U+FFFD, so
    /// the rest of the path still routes.
    #[test]
    fn invalid_utf8_escape_still_routes() {
        let body = r#"{"params":{"model":"res.partner","method":"unlink","args":[[1]],"kwargs":{}}}"#;
        for target in ["/web/dataset/call%5Fkw/%FF", "/%77eb/dataset/call_kw/%ff%fe"] {
            let call = decode_request(&request("POST", target, &[], body), &DecodeLimits::default()).unwrap().unwrap();
            assert_eq!(call.protocol, Protocol::Web, "target {target:?}");
            assert_eq!(call.method.as_deref(), Some("unlink"), "target {target:?}");
        }
    }

    #[test]
    fn other_paths_are_not_calls() {
        for path in ["/web", "/web/assets/x.js", "/websocket", "/xmlrpc/2/object/x", "/JSONRPC"] {
            let decoded = decode_request(&request("POST", path, &[], EXECUTE), &DecodeLimits::default()).unwrap();
            assert!(decoded.is_none(), "{path} decoded as a call");
        }
    }

    #[test]
    fn extra_slashes_are_routed() {
        for path in ["/jsonrpc/", "//jsonrpc", "/json//rpc/../jsonrpc//"] {
            let decoded = decode_request(&request("POST", path, &[], EXECUTE), &DecodeLimits::default()).unwrap();
            if path.contains("..") {
                assert!(decoded.is_none(), "{path} is not normalised beyond slashes");
            } else {
                assert_eq!(decoded.map(|c| c.protocol), Some(Protocol::JsonRpc), "{path}");
            }
        }
        assert_eq!(surface_protocol("/xmlrpc/2/object/"), Some(Protocol::XmlRpc));
        assert_eq!(surface_protocol("//xmlrpc//2/object"), Some(Protocol::XmlRpc));
        assert_eq!(surface_protocol("/json/2/res.partner/unlink/"), Some(Protocol::Json2));
        assert_eq!(normalize_slashes(Cow::Borrowed("/")), "/");
    }

    #[test]
    fn rpc_surfaces_are_recognised_from_the_request_line() {
        assert!(is_rpc_surface("POST", "/xmlrpc/2/object"));
        assert!(is_rpc_surface("POST", "/xmlrpc/common"));
        assert!(is_rpc_surface("POST", "/json%72pc?debug=1"));
        assert!(is_rpc_surface("POST", "/web/dataset/call_kw/res.partner/read"));
        assert!(is_rpc_surface("GET", "/web/version"));
        assert!(is_rpc_surface("POST", "/json/2/res.partner/search"));
        assert!(!is_rpc_surface("GET", "/json/2/res.partner/search"));
        assert!(!is_rpc_surface("GET", "/web/assets/x.js"));
        assert!(!is_rpc_surface("GET", "/websocket"));
        assert!(!is_rpc_surface("POST", "/web/binary/upload_attachment"));
    }

    #[test]
    fn json2_get_is_not_a_call() {
        let decoded = decode_request(&request("GET", "/json/2/res.partner/read", &[], "{}"), &DecodeLimits::default()).unwrap();
        assert!(decoded.is_none());
    }

    #[test]
    fn get_with_body_on_jsonrpc_is_decoded() {
        let decoded = decode_request(&request("GET", "/jsonrpc", &[], EXECUTE), &DecodeLimits::default()).unwrap();
        assert!(decoded.is_some());
        let decoded = decode_request(&request("GET", "/jsonrpc", &[], ""), &DecodeLimits::default()).unwrap();
        assert!(decoded.is_none());
    }

    #[test]
    fn web_version_get_is_meta() {
        let call = decode_request(&request("GET", "/web/version", &[], ""), &DecodeLimits::default()).unwrap().unwrap();
        assert_eq!(call.kind, CallKind::Meta);
        assert_eq!(call.method.as_deref(), Some("version"));
    }

    #[test]
    fn odoogate_token_replaces_password() {
        let req = request("POST", "/jsonrpc", &[("X-Odoogate-Token", "tok")], EXECUTE);
        let call = decode_request(&req, &DecodeLimits::default()).unwrap().unwrap();
        let credential = call.credential.unwrap();
        assert_eq!(credential.slot, CredentialSlot::OdoogateHeader);
        assert_eq!(credential.secret.expose(), "tok");
    }

    #[test]
    fn oversized_body_is_rejected() {
        let limits = DecodeLimits { max_depth: 64, max_body_bytes: 16 };
        let error = decode_request(&request("POST", "/jsonrpc", &[], EXECUTE), &limits).unwrap_err();
        assert_eq!(error, DecodeError::Truncated(16));
    }

    #[test]
    fn truncated_body_is_rejected() {
        let mut req = request("POST", "/jsonrpc", &[], &EXECUTE[..20]);
        req.body_truncated = true;
        assert_eq!(decode_request(&req, &DecodeLimits::default()).unwrap_err(), DecodeError::Truncated(20));
    }

    #[test]
    fn gzip_body_is_rejected() {
        let req = request("POST", "/jsonrpc", &[("Content-Encoding", "gzip")], EXECUTE);
        assert_eq!(decode_request(&req, &DecodeLimits::default()).unwrap_err().code(), "unsupported_encoding");
    }
}

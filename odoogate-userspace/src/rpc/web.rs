//! The web client's session routes: `/web/session/authenticate`,
//! `/web/dataset/call_kw[/...]`, `/web/dataset/call_button[/...]` and the
//! metadata routes. These calls are authenticated by the session cookie,
//! except the login itself, which carries a password.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::args;
use super::call::{Call, CallKind, Credential, CredentialSlot, DecodeError, Protocol};
use super::jsonrpc;
use super::text::{split_ascii, split_once_ascii, trim, utf8};
use crate::http::HttpRequest;
use crate::secret::Secret;

/// Routes that return metadata and touch no records.
const META_ROUTES: &[&str] = &[
    "/web/session/get_session_info",
    "/web/session/destroy",
    "/web/webclient/version_info",
    "/web/version",
    "/json/version",
];

/// The web route a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Authenticate,
    CallKw,
    CallButton,
    Meta,
}

/// Returns the web route of `path`, or `None` when the path is not one
/// odoogate decodes (pages, assets, other JSON routes).
pub fn route(path: &str) -> Option<Route> {
    if path == "/web/session/authenticate" {
        return Some(Route::Authenticate);
    }
    if has_route_prefix(path, "/web/dataset/call_kw") {
        return Some(Route::CallKw);
    }
    if has_route_prefix(path, "/web/dataset/call_button") {
        return Some(Route::CallButton);
    }
    META_ROUTES.contains(&path).then_some(Route::Meta)
}

/// Matches `prefix` itself or `prefix/<anything>`: Odoo ignores the suffix,
/// which the web client fills with `model/method` for readable logs.
fn has_route_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Decodes a request to a web route. Metadata routes are decoded from the
/// path alone, since their body cannot change what they return; their
/// method is the last path segment (`get_session_info`, `version_info`).
pub fn decode_request(route: Route, path: &str, request: &HttpRequest, max_depth: usize) -> Result<Call, DecodeError> {
    let mut call = Call::new(Protocol::Web, CallKind::Model);
    decode_request_into(route, path, request, max_depth, &mut call)?;
    Ok(call)
}

/// Decodes a request to a web route, as [`decode_request`] does, into
/// `call`, which must be as [`Call::new`] returns it. On an error, `call`
/// is left in an unspecified state.
pub fn decode_request_into(route: Route, path: &str, request: &HttpRequest, max_depth: usize, call: &mut Call) -> Result<(), DecodeError> {
    match route {
        Route::Meta => {
            call.protocol = Protocol::Web;
            call.kind = CallKind::Meta;
            call.method = Some(path.rsplit('/').next().unwrap_or_default().to_owned());
        }
        Route::Authenticate => decode_authenticate(&request.body, max_depth, call)?,
        Route::CallKw | Route::CallButton => decode_call(route, &request.body, max_depth, call)?,
    }
    add_session(call, request);
    Ok(())
}

/// `/web/session/authenticate` with params `db`, `login`, `password`.
fn decode_authenticate(body: &[u8], max_depth: usize, call: &mut Call) -> Result<(), DecodeError> {
    if !super::json_stream::decode_web_authenticate(body, max_depth, call) {
        *call = decode_authenticate_tree(body, max_depth)?;
    }
    Ok(())
}

/// Reads `/web/session/authenticate` through a `serde_json::Value` tree.
pub fn decode_authenticate_tree(body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
    let envelope = jsonrpc::parse_object(body, max_depth)?;
    let params = jsonrpc::params_of(&envelope)?;

    let mut call = Call::new(Protocol::Web, CallKind::Auth);
    call.method = Some("authenticate".to_owned());
    call.db = params.get("db").and_then(Json::as_str).map(str::to_owned);
    call.login = params.get("login").and_then(Json::as_str).map(str::to_owned);
    call.credential = params
        .get("password")
        .and_then(Json::as_str)
        .map(|password| Credential::new(CredentialSlot::Password, Secret::new(password)));
    Ok(call)
}

/// `call_kw` and `call_button` with params `model`, `method`, `args`,
/// `kwargs`, all of which Odoo requires.
fn decode_call(route: Route, body: &[u8], max_depth: usize, call: &mut Call) -> Result<(), DecodeError> {
    if !super::json_stream::decode_web_call(route, body, max_depth, call) {
        *call = decode_call_tree(route, body, max_depth)?;
    }
    Ok(())
}

/// Reads `call_kw` and `call_button` through a `serde_json::Value` tree.
pub fn decode_call_tree(route: Route, body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
    let envelope = jsonrpc::parse_object(body, max_depth)?;
    let params = jsonrpc::params_of(&envelope)?;

    let model = params.get("model").and_then(Json::as_str);
    let method = params.get("method").and_then(Json::as_str);
    let args = params.get("args").and_then(Json::as_array);
    let kwargs = params.get("kwargs").filter(|kwargs| kwargs.is_object());
    let (Some(model), Some(method), Some(args), Some(kwargs)) = (model, method, args, kwargs) else {
        return Err(DecodeError::InvalidJsonRpc(
            "params need model and method strings, an args list and a kwargs object".to_owned(),
        ));
    };

    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.model = Some(model.to_owned());
    call.method = Some(method.to_owned());
    match route {
        Route::CallButton => args::extract_button_arguments(&mut call, args, Some(kwargs)),
        _ => args::extract_model_arguments(&mut call, args, Some(kwargs)),
    }
    Ok(call)
}

/// Sets the session id Odoo 16 uses: the first of [`session_ids`]. Differing
/// values are flagged, because odoogate cannot tell which one a given Odoo
/// version reads.
fn add_session(call: &mut Call, request: &HttpRequest) {
    let mut candidates = session_id_values(request);
    let Some(first) = candidates.next() else {
        return;
    };
    if candidates.any(|other| other != first) {
        call.mismatches.push("session id differs between query, header and cookie".to_owned());
    }
    call.session_id = Some(Secret::new(first.into_owned()));
}

/// Returns every session id a request carries, in the order Odoo 16
/// prefers them: `session_id` query parameters, `X-Openerp-Session-Id`
/// headers, then `session_id` cookies. NOTE: the order was read in Odoo
/// 16's `http.py` only; callers treat differing ids as ambiguous, so
/// another order in a later version cannot slip a session past them. Cookies are read as leniently as
/// werkzeug reads them: spaces around the name and the `=`, and quoted
/// values with backslash escapes.
pub fn session_ids(request: &HttpRequest) -> Vec<String> {
    session_id_values(request).map(Cow::into_owned).collect()
}

/// Yields the ids [`session_ids`] returns, borrowed from the request where
/// they need no decoding, so that a request with one id costs one copy.
fn session_id_values(request: &HttpRequest) -> impl Iterator<Item = Cow<'_, str>> {
    let query = split_once_ascii(&request.target, b'?').map_or("", |(_, query)| query);
    // An empty pair has the name "", so skipping it changes nothing.
    let from_query = split_ascii(query, b'&').filter(|pair| !pair.is_empty()).filter_map(|pair| {
        let (name, value) = split_once_ascii(pair, b'=').unwrap_or((pair, ""));
        (form_decode(name) == "session_id").then(|| form_decode(value))
    });
    let from_headers =
        request.headers.get_all("X-Openerp-Session-Id").filter_map(|value| utf8(value)).map(|value| Cow::Borrowed(trim(value)));
    let from_cookies = request
        .headers
        .get_all("Cookie")
        .filter_map(|value| utf8(value))
        .flat_map(|value| split_ascii(value, b';'))
        .filter_map(|pair| split_once_ascii(pair, b'='))
        .filter(|(name, _)| trim(name) == "session_id")
        .map(|(_, value)| cookie_unquote(trim(value)));
    from_query.chain(from_headers).chain(from_cookies).filter(|id| !id.is_empty())
}

/// Decodes a query string part: `+` is a space, then `%XX` escapes. Text
/// with neither is returned as it is, without a copy.
fn form_decode(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|byte| byte == b'+' || byte == b'%') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(String::from_utf8_lossy(&super::percent_decode(text.replace('+', " ").as_bytes())).into_owned())
}

/// Reads a cookie value as werkzeug does: a value in double quotes loses
/// them, and inside, `\NNN` is an octal byte and `\X` is `X`. A value
/// without quotes is returned as it is, without a copy.
fn cookie_unquote(value: &str) -> Cow<'_, str> {
    let Some(inner) = value.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) else {
        return Cow::Borrowed(value);
    };
    let bytes = inner.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'\\' || index + 1 == bytes.len() {
            out.push(bytes[index]);
            index += 1;
            continue;
        }
        let octal = bytes.get(index + 1..index + 4).filter(|digits| digits.iter().all(|digit| (b'0'..=b'7').contains(digit)));
        match octal.and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                index += 4;
            }
            None => {
                out.push(bytes[index + 1]);
                index += 2;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::{Headers, HttpVersion};
    use bytes::Bytes;

    fn request(path: &str, headers: &[(&str, &str)], body: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".to_owned(),
            target: path.to_owned(),
            version: HttpVersion::Http11,
            headers: Headers(headers.iter().map(|(n, v)| ((*n).into(), Bytes::from(v.to_string()))).collect()),
            body: Bytes::from(body.to_owned()),
            body_truncated: false,
            anomalies: Vec::new(),
            first_byte_ns: 0,
            last_byte_ns: 0,
        }
    }

    #[test]
    fn routes_match_exact_paths_and_suffixes() {
        assert_eq!(route("/web/dataset/call_kw"), Some(Route::CallKw));
        assert_eq!(route("/web/dataset/call_kw/res.partner/read"), Some(Route::CallKw));
        assert_eq!(route("/web/dataset/call_kwargs"), None);
        assert_eq!(route("/web/dataset/call_button/x"), Some(Route::CallButton));
        assert_eq!(route("/web/session/authenticate"), Some(Route::Authenticate));
        assert_eq!(route("/web/version"), Some(Route::Meta));
        assert_eq!(route("/web/action/load"), None);
    }

    #[test]
    fn call_button_takes_ids_from_first_arg() {
        let body = r#"{"params":{"model":"sale.order","method":"action_confirm","args":[[4]],"kwargs":{}}}"#;
        let req = request("/web/dataset/call_button", &[], body);
        let call = decode_request(Route::CallButton, req.path(), &req, 64).unwrap();
        assert_eq!(call.kind, CallKind::Model);
        assert_eq!(call.record_ids, vec![4]);
    }

    #[test]
    fn call_kw_without_kwargs_is_rejected() {
        let body = r#"{"params":{"model":"res.partner","method":"read","args":[[4]]}}"#;
        let req = request("/web/dataset/call_kw", &[], body);
        let error = decode_request(Route::CallKw, req.path(), &req, 64).unwrap_err();
        assert_eq!(error.code(), "invalid_jsonrpc");
    }

    #[test]
    fn session_from_cookie_or_header() {
        let body = r#"{"params":{}}"#;
        let req = request("/web/session/get_session_info", &[("Cookie", "a=b; session_id=abc")], body);
        let call = decode_request(Route::Meta, req.path(), &req, 64).unwrap();
        assert_eq!(call.session_id.as_ref().map(Secret::expose), Some("abc"));
        assert!(call.mismatches.is_empty());

        let req = request("/web/session/get_session_info", &[("X-Openerp-Session-Id", "xyz")], body);
        let call = decode_request(Route::Meta, req.path(), &req, 64).unwrap();
        assert_eq!(call.session_id.as_ref().map(Secret::expose), Some("xyz"));
    }

    #[test]
    fn differing_session_ids_are_flagged() {
        // Odoo 16 and later prefer the header to the cookie.
        let req = request("/web/version", &[("Cookie", "session_id=abc"), ("X-Openerp-Session-Id", "xyz")], "");
        let call = decode_request(Route::Meta, req.path(), &req, 64).unwrap();
        assert_eq!(call.session_id.as_ref().map(Secret::expose), Some("xyz"));
        assert_eq!(call.mismatches.len(), 1);
        assert!(!call.mismatches[0].contains("abc"));
    }

    #[test]
    fn session_ids_found_where_odoo_reads_them() {
        let headers = [
            ("X-Openerp-Session-Id", " hdr "),
            ("Cookie", "a=b; session_id = \"c\\157\\157kie\""),
            ("Cookie", "session_id\t=plain"),
        ];
        let req = request("/web/content/1?x=1&&session%5Fid=qu%65ry&session_id=", &headers, "");
        assert_eq!(session_ids(&req), ["query", "hdr", "cookie", "plain"]);

        let req = request("/web/version?session_id=query", &[("Cookie", "session_id=query")], "");
        let call = decode_request(Route::Meta, req.path(), &req, 64).unwrap();
        assert_eq!(call.session_id.as_ref().map(Secret::expose), Some("query"));
        assert!(call.mismatches.is_empty());

        let req = request("/web/version?session_id=query", &[("Cookie", "session_id=other")], "");
        let call = decode_request(Route::Meta, req.path(), &req, 64).unwrap();
        assert_eq!(call.session_id.as_ref().map(Secret::expose), Some("query"));
        assert_eq!(call.mismatches.len(), 1);
    }
}

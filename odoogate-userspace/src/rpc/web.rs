//! The web client's session routes: `/web/session/authenticate`,
//! `/web/dataset/call_kw[/...]`, `/web/dataset/call_button[/...]` and the
//! metadata routes. These calls are authenticated by the session cookie,
//! except the login itself, which carries a password.

use serde_json::Value as Json;

use super::args;
use super::call::{Call, CallKind, Credential, CredentialSlot, DecodeError, Protocol};
use super::jsonrpc;
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
    let mut call = match route {
        Route::Meta => {
            let mut call = Call::new(Protocol::Web, CallKind::Meta);
            call.method = Some(path.rsplit('/').next().unwrap_or_default().to_owned());
            call
        }
        Route::Authenticate => decode_authenticate(&request.body, max_depth)?,
        Route::CallKw | Route::CallButton => decode_call(route, &request.body, max_depth)?,
    };
    add_session(&mut call, request);
    Ok(call)
}

/// `/web/session/authenticate` with params `db`, `login`, `password`.
fn decode_authenticate(body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
    if let Some(call) = super::json_stream::decode_web_authenticate(body, max_depth) {
        return Ok(call);
    }
    decode_authenticate_tree(body, max_depth)
}

/// Reads `/web/session/authenticate` through a `serde_json::Value` tree.
pub(crate) fn decode_authenticate_tree(body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
    let envelope = jsonrpc::parse_object(body, max_depth)?;
    let params = jsonrpc::params_of(&envelope)?;

    let mut call = Call::new(Protocol::Web, CallKind::Auth);
    call.method = Some("authenticate".to_owned());
    call.db = params.get("db").and_then(Json::as_str).map(str::to_owned);
    call.login = params.get("login").and_then(Json::as_str).map(str::to_owned);
    call.credential = params
        .get("password")
        .and_then(Json::as_str)
        .map(|password| Credential { slot: CredentialSlot::Password, secret: Secret::new(password) });
    Ok(call)
}

/// `call_kw` and `call_button` with params `model`, `method`, `args`,
/// `kwargs`, all of which Odoo requires.
fn decode_call(route: Route, body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
    if let Some(call) = super::json_stream::decode_web_call(route, body, max_depth) {
        return Ok(call);
    }
    decode_call_tree(route, body, max_depth)
}

/// Reads `call_kw` and `call_button` through a `serde_json::Value` tree.
pub(crate) fn decode_call_tree(route: Route, body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
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

/// Sets the session id from the `session_id` cookie, or else from the
/// `X-Openerp-Session-Id` header. Differing values are flagged, because
/// odoogate cannot tell which one Odoo will use.
fn add_session(call: &mut Call, request: &HttpRequest) {
    let cookies = session_cookies(request);
    let header = request.headers.get_str("X-Openerp-Session-Id").map(str::trim).filter(|id| !id.is_empty());

    let mut candidates = cookies.iter().copied().chain(header);
    let Some(first) = candidates.next() else {
        return;
    };
    if candidates.any(|other| other != first) {
        call.mismatches.push("session id differs between cookie and header".to_owned());
    }
    call.session_id = Some(Secret::new(first));
}

/// Returns the session id a request carries (the first `session_id` cookie,
/// else `X-Openerp-Session-Id`), for routes that are not RPC calls, such as
/// the web client's `GET /web/session/logout`.
pub fn request_session_id(request: &HttpRequest) -> Option<Secret> {
    let header = request.headers.get_str("X-Openerp-Session-Id").map(str::trim).filter(|id| !id.is_empty());
    session_cookies(request).into_iter().next().or(header).map(Secret::new)
}

/// Returns the values of every `session_id` cookie, in wire order.
fn session_cookies(request: &HttpRequest) -> Vec<&str> {
    request
        .headers
        .get_all("Cookie")
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("session_id="))
        .map(|id| id.trim_matches('"'))
        .filter(|id| !id.is_empty())
        .collect()
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
            headers: Headers(headers.iter().map(|(n, v)| ((*n).to_owned(), Bytes::from(v.to_string()))).collect()),
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
        let req = request("/web/version", &[("Cookie", "session_id=abc"), ("X-Openerp-Session-Id", "xyz")], "");
        let call = decode_request(Route::Meta, req.path(), &req, 64).unwrap();
        assert_eq!(call.session_id.as_ref().map(Secret::expose), Some("abc"));
        assert_eq!(call.mismatches.len(), 1);
        assert!(!call.mismatches[0].contains("abc"));
    }
}

//! JSON-2 (`POST /json/2/<model>/<method>`, Odoo 19 and later).
//!
//! The model and method come from the path, the API key from
//! `Authorization: bearer <key>`, the database from `X-Odoo-Database`, and
//! the body is an object of named arguments plus `ids` and `context`.

use super::args;
use super::call::{Call, CallKind, Credential, CredentialSlot, DecodeError, Protocol};
use super::json_stream;
use super::jsonrpc;
use super::text::trim;
use crate::http::HttpRequest;
use crate::secret::Secret;
use bytes::Bytes;

/// Body keys that Odoo's JSON-2 dispatcher merges over the path's
/// arguments, so a body carrying one may run another model or method.
const PATH_ARGUMENT_KEYS: [&str; 2] = ["model", "method"];

/// Splits `/json/2/<model>/<method>` into model and method. Any other path
/// under `/json/2/` is not a JSON-2 call.
pub fn route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/json/2/")?;
    // A byte scan, because on paths this short `str::split_once` and
    // `str::contains` with a `char` cost twice as many instructions.
    let slash = rest.bytes().position(|byte| byte == b'/')?;
    let (model, method) = (&rest[..slash], &rest[slash + 1..]);
    let valid = !model.is_empty() && !method.is_empty() && !method.bytes().any(|byte| byte == b'/');
    valid.then_some((model, method))
}

/// Decodes a JSON-2 request to `model`.`method`.
pub fn decode_request(model: &str, method: &str, request: &HttpRequest, max_depth: usize) -> Result<Call, DecodeError> {
    let mut call = Call::new(Protocol::Json2, CallKind::Model);
    decode_request_into(model, method, request, max_depth, &mut call)?;
    Ok(call)
}

/// Decodes a JSON-2 request to `model`.`method`, as [`decode_request`]
/// does, into `call`, which must be as [`Call::new`] returns it. On an
/// error, `call` is left in an unspecified state.
pub fn decode_request_into(model: &str, method: &str, request: &HttpRequest, max_depth: usize, call: &mut Call) -> Result<(), DecodeError> {
    let mut extraction = json_stream::json2_extraction(method);
    if !json_stream::read_json2_body(&mut extraction, &request.body, max_depth) {
        *call = decode_request_tree(model, method, request, max_depth)?;
        return Ok(());
    }
    start_call(call, model, method, request);
    for key in PATH_ARGUMENT_KEYS {
        if extraction.saw_key(key) {
            call.mismatches.push(path_override_mismatch(key));
        }
    }
    extraction.finish(call);
    Ok(())
}

/// Decodes a JSON-2 request through a `serde_json::Value` tree. The
/// one-pass reader falls back to it for the bodies it does not read.
pub fn decode_request_tree(model: &str, method: &str, request: &HttpRequest, max_depth: usize) -> Result<Call, DecodeError> {
    let body = jsonrpc::parse_object(&request.body, max_depth)?;
    let mut call = Call::new(Protocol::Json2, CallKind::Model);
    start_call(&mut call, model, method, request);
    for key in PATH_ARGUMENT_KEYS {
        if body.get(key).is_some() {
            call.mismatches.push(path_override_mismatch(key));
        }
    }
    args::extract_named_arguments(&mut call, &body);
    Ok(call)
}

/// Makes `call` a call to `model`.`method` with the database and API key
/// of the request's headers.
fn start_call(call: &mut Call, model: &str, method: &str, request: &HttpRequest) {
    call.protocol = Protocol::Json2;
    call.kind = CallKind::Model;
    call.model = Some(model.to_owned());
    call.method = Some(method.to_owned());
    let [database, authorization] = request.headers.get_each(["X-Odoo-Database", "Authorization"]);
    call.db = header_text(database).map(trim).filter(|db| !db.is_empty()).map(str::to_owned);
    call.credential = header_text(authorization).and_then(bearer_credential);
}

fn header_text(value: Option<&Bytes>) -> Option<&str> {
    super::text::utf8(value?)
}

fn path_override_mismatch(key: &str) -> String {
    format!("JSON-2 body carries a `{key}` key, which may override the path")
}

/// Reads an `Authorization: Bearer <key>` value; the scheme is
/// case-insensitive, since clients send both `bearer` and `Bearer`.
fn bearer_credential(value: &str) -> Option<Credential> {
    let value = trim(value);
    let space = value.bytes().position(|byte| byte == b' ')?;
    let (scheme, key) = (&value[..space], trim(&value[space + 1..]));
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
        return None;
    }
    Some(Credential::new(CredentialSlot::Bearer, Secret::new(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::{Headers, HttpVersion};
    use bytes::Bytes;

    fn request(headers: &[(&str, &str)], body: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".to_owned(),
            target: "/json/2/res.partner/write".to_owned(),
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
    fn route_needs_model_and_method() {
        assert_eq!(route("/json/2/res.partner/search_read"), Some(("res.partner", "search_read")));
        assert_eq!(route("/json/2/res.partner"), None);
        assert_eq!(route("/json/2/res.partner/read/extra"), None);
        assert_eq!(route("/json/2//read"), None);
        assert_eq!(route("/json/version"), None);
    }

    #[test]
    fn write_reads_headers_and_body() {
        let req = request(
            &[("Authorization", "Bearer k3y"), ("X-Odoo-Database", "odoo19")],
            r#"{"ids": [20], "vals": {"name": "x"}, "context": {"lang": "en_US"}}"#,
        );
        let call = decode_request("res.partner", "write", &req, 64).unwrap();
        assert_eq!(call.protocol, Protocol::Json2);
        assert_eq!(call.db.as_deref(), Some("odoo19"));
        assert_eq!(call.record_ids, vec![20]);
        assert_eq!(call.fields, vec!["name"]);
        let credential = call.credential.unwrap();
        assert_eq!(credential.slot, CredentialSlot::Bearer);
        assert_eq!(credential.secret.expose(), "k3y");
        assert!(call.mismatches.is_empty());
    }

    #[test]
    fn body_override_is_flagged() {
        let req = request(&[], r#"{"model": "res.users", "method": "unlink", "ids": [1]}"#);
        let call = decode_request("res.partner", "read", &req, 64).unwrap();
        assert_eq!(call.model.as_deref(), Some("res.partner"));
        assert_eq!(call.mismatches.len(), 2);
    }

    #[test]
    fn headers_are_trimmed_and_last_wins() {
        let req = request(
            &[
                ("X-Odoo-Database", "first"),
                ("authorization", "Bearer old"),
                ("x-odoo-database", "\u{a0} odoo19\x0B"),
                ("Authorization", " bearer \u{2003}k3y\t"),
            ],
            "{}",
        );
        let call = decode_request("res.partner", "read", &req, 64).unwrap();
        assert_eq!(call.db.as_deref(), Some("odoo19"));
        assert_eq!(call.credential.unwrap().secret.expose(), "k3y");
    }

    #[test]
    fn other_authorization_schemes_are_ignored() {
        let req = request(&[("Authorization", "Basic YTpi")], "{}");
        assert!(decode_request("res.partner", "read", &req, 64).unwrap().credential.is_none());
    }

    #[test]
    fn non_object_body_is_rejected() {
        let req = request(&[], "[]");
        assert_eq!(decode_request("res.partner", "read", &req, 64).unwrap_err().code(), "invalid_jsonrpc");
    }
}

//! Responses: the outcome of a call, the session a login opened, and the uid
//! a login returned.

use serde::Deserialize;
use serde_json::Value as Json;

use super::call::{Call, CallKind, Outcome, Protocol};
use super::value::Value;
use super::{jsonrpc, xmlrpc};
use crate::http::HttpResponse;
use crate::secret::Secret;

/// Depth bound for reading response bodies, which come from Odoo itself.
const RESPONSE_MAX_DEPTH: usize = 64;

/// Reads the outcome of `call` from Odoo's response.
///
/// XML-RPC, JSON-RPC and web calls report errors inside an HTTP 200 body;
/// JSON-2 uses real HTTP statuses with a JSON body naming the error. A body
/// that cannot be read as the protocol's error shape gives
/// [`Outcome::HttpStatus`], even with status 200, so an unreadable answer is
/// never reported as a success.
pub fn decode_response(call: &Call, response: &HttpResponse) -> Outcome {
    match call.protocol {
        Protocol::XmlRpc | Protocol::XmlRpcLegacy => xmlrpc_outcome(response),
        Protocol::JsonRpc | Protocol::Web => jsonrpc_outcome(response),
        Protocol::Json2 => json2_outcome(response),
    }
}

fn xmlrpc_outcome(response: &HttpResponse) -> Outcome {
    if response.status != 200 {
        return Outcome::HttpStatus(response.status);
    }
    match xmlrpc::fault_code(&response.body, RESPONSE_MAX_DEPTH) {
        Ok(None) => Outcome::Ok,
        Ok(Some(code)) => Outcome::Fault(code),
        Err(_) => Outcome::HttpStatus(response.status),
    }
}

/// The part of a JSON-RPC response that separates success from error.
/// serde skips `result` without building it.
#[derive(Deserialize)]
struct Envelope {
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    code: Option<i64>,
    data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    name: Option<String>,
}

fn jsonrpc_outcome(response: &HttpResponse) -> Outcome {
    if response.status != 200 {
        return Outcome::HttpStatus(response.status);
    }
    if response.body_truncated {
        return match jsonrpc::find_top_level_key(&response.body, &["result", "error"]) {
            Some("result") => Outcome::Ok,
            // The error's name may lie past the cut.
            _ => Outcome::HttpStatus(response.status),
        };
    }
    match serde_json::from_slice::<Envelope>(&response.body) {
        Ok(Envelope { error: None }) => Outcome::Ok,
        Ok(Envelope { error: Some(error) }) => Outcome::Error(error_name(&error)),
        Err(_) => Outcome::HttpStatus(response.status),
    }
}

/// Names a JSON-RPC error by `data.name`, or by its code when the name is
/// missing.
fn error_name(error: &RpcError) -> String {
    let name = error.data.as_ref().and_then(|data| data.name.clone());
    name.unwrap_or_else(|| format!("code {}", error.code.unwrap_or_default()))
}

/// The body of a JSON-2 error: `{"name", "message", "arguments", "context",
/// "debug"}`.
#[derive(Deserialize)]
struct Json2Error {
    name: String,
}

fn json2_outcome(response: &HttpResponse) -> Outcome {
    if response.status == 200 {
        return Outcome::Ok;
    }
    match serde_json::from_slice::<Json2Error>(&response.body) {
        Ok(error) if !response.body_truncated => Outcome::Error(error.name),
        _ => Outcome::HttpStatus(response.status),
    }
}

/// Returns the session id a response sets with `Set-Cookie: session_id=...`.
/// When several cookies set it, the last one wins, as in a browser; an empty
/// value (a deleted cookie) gives `None`.
pub fn session_cookie(response: &HttpResponse) -> Option<Secret> {
    let value = response
        .headers
        .get_all("Set-Cookie")
        .filter_map(|header| std::str::from_utf8(header).ok())
        .filter_map(|header| header.split(';').next())
        .filter_map(|pair| pair.trim().strip_prefix("session_id="))
        .last()?;
    let value = value.trim().trim_matches('"');
    (!value.is_empty()).then(|| Secret::new(value))
}

/// Returns the uid a successful login returned: the result of XML-RPC or
/// JSON-RPC `common.login`/`authenticate`, or `result.uid` of
/// `/web/session/authenticate`. `None` for other calls, `False`, and errors.
pub fn login_uid(call: &Call, response: &HttpResponse) -> Option<i64> {
    if call.kind != CallKind::Auth || response.status != 200 || response.body_truncated {
        return None;
    }
    match call.protocol {
        Protocol::XmlRpc | Protocol::XmlRpcLegacy => {
            match xmlrpc::first_result(&response.body, RESPONSE_MAX_DEPTH).ok()?? {
                Value::Int(uid) => Some(uid),
                _ => None,
            }
        }
        Protocol::JsonRpc => json_result(response)?.as_i64(),
        Protocol::Web => json_result(response)?.get("uid")?.as_i64(),
        Protocol::Json2 => None,
    }
}

fn json_result(response: &HttpResponse) -> Option<Json> {
    let mut envelope: Json = serde_json::from_slice(&response.body).ok()?;
    envelope.get_mut("result").map(Json::take)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::{Headers, HttpVersion};
    use bytes::Bytes;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            reason: String::new(),
            version: HttpVersion::Http11,
            headers: Headers(headers.iter().map(|(n, v)| ((*n).into(), Bytes::from(v.to_string()))).collect()),
            body: Bytes::from(body.to_owned()),
            body_truncated: false,
            anomalies: Vec::new(),
            first_byte_ns: 0,
            last_byte_ns: 0,
        }
    }

    fn call(protocol: Protocol, kind: CallKind) -> Call {
        Call::new(protocol, kind)
    }

    #[test]
    fn jsonrpc_error_without_name_uses_code() {
        let resp = response(200, &[], r#"{"jsonrpc": "2.0", "id": 1, "error": {"code": 300, "message": "x"}}"#);
        assert_eq!(decode_response(&call(Protocol::JsonRpc, CallKind::Model), &resp), Outcome::Error("code 300".to_owned()));
    }

    #[test]
    fn truncated_jsonrpc_result_is_ok() {
        let mut resp = response(200, &[], r#"{"jsonrpc": "2.0", "id": 1, "result": [{"name": "#);
        resp.body_truncated = true;
        assert_eq!(decode_response(&call(Protocol::JsonRpc, CallKind::Model), &resp), Outcome::Ok);
    }

    #[test]
    fn json_body_not_json_is_http_status() {
        let resp = response(200, &[], "<html>");
        assert_eq!(decode_response(&call(Protocol::Web, CallKind::Model), &resp), Outcome::HttpStatus(200));
    }

    #[test]
    fn json2_error_without_json_body_is_http_status() {
        let resp = response(303, &[], "");
        assert_eq!(decode_response(&call(Protocol::Json2, CallKind::Model), &resp), Outcome::HttpStatus(303));
    }

    #[test]
    fn deleted_session_cookie_is_none() {
        let resp = response(200, &[("Set-Cookie", "session_id=abc; Path=/"), ("Set-Cookie", "session_id=; Max-Age=0")], "");
        assert_eq!(session_cookie(&resp), None);
        let resp = response(200, &[("Set-Cookie", "cids=1"), ("Set-Cookie", "session_id=abc; HttpOnly")], "");
        assert_eq!(session_cookie(&resp).as_ref().map(Secret::expose), Some("abc"));
    }

    #[test]
    fn login_uid_only_for_auth_calls() {
        let resp = response(200, &[], r#"{"jsonrpc": "2.0", "id": 1, "result": 2}"#);
        assert_eq!(login_uid(&call(Protocol::JsonRpc, CallKind::Auth), &resp), Some(2));
        assert_eq!(login_uid(&call(Protocol::JsonRpc, CallKind::Model), &resp), None);
        let resp = response(200, &[], r#"{"jsonrpc": "2.0", "id": 1, "result": false}"#);
        assert_eq!(login_uid(&call(Protocol::JsonRpc, CallKind::Auth), &resp), None);
    }
}

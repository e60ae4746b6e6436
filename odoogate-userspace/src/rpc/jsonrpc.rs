//! JSON-RPC (`POST /jsonrpc`) and the JSON reading shared by the JSON
//! surfaces.
//!
//! A `/jsonrpc` request is `{"jsonrpc": "2.0", "method": "call", "params":
//! {"service", "method", "args"}, "id"}`. The outer `method` is ignored by
//! Odoo; `params` is the positional service call that XML-RPC carries too.

use serde_json::Value as Json;

use super::call::{Call, CallKind, DecodeError, Protocol};
use super::service;

/// Decodes a `/jsonrpc` request body.
pub fn decode_request(body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
    let mut call = Call::new(Protocol::JsonRpc, CallKind::Model);
    decode_request_into(body, max_depth, &mut call)?;
    Ok(call)
}

/// Decodes a `/jsonrpc` request body into `call`, which must be as
/// [`Call::new`] returns it. On an error, `call` is left in an unspecified
/// state.
pub fn decode_request_into(body: &[u8], max_depth: usize, call: &mut Call) -> Result<(), DecodeError> {
    if super::json_stream::decode_jsonrpc(body, max_depth, call) {
        return Ok(());
    }
    *call = decode_request_tree(body, max_depth)?;
    Ok(())
}

/// Decodes a `/jsonrpc` request body through a `serde_json::Value` tree.
/// The one-pass decoder falls back to it for the bodies it does not read.
pub fn decode_request_tree(body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
    let envelope = parse_object(body, max_depth)?;
    let params = params_of(&envelope)?;

    let service = params.get("service").and_then(Json::as_str);
    let method = params.get("method").and_then(Json::as_str);
    let args = params.get("args").and_then(Json::as_array);
    let (Some(service), Some(method), Some(args)) = (service, method, args) else {
        return Err(DecodeError::InvalidJsonRpc("params need service and method strings and an args list".to_owned()));
    };
    service::decode_service_call(Protocol::JsonRpc, service, method, args)
}

/// Returns the `params` object of a JSON-RPC envelope.
pub fn params_of(envelope: &Json) -> Result<&serde_json::Map<String, Json>, DecodeError> {
    envelope
        .get("params")
        .and_then(Json::as_object)
        .ok_or_else(|| DecodeError::InvalidJsonRpc("params missing or not an object".to_owned()))
}

/// Parses a JSON body that must be an object, after checking its nesting
/// depth so that no parser recursion depends on the input.
pub fn parse_object(body: &[u8], max_depth: usize) -> Result<Json, DecodeError> {
    check_depth(body, max_depth)?;
    let value: Json = serde_json::from_slice(body).map_err(|error| invalid_json(&error))?;
    if !value.is_object() {
        return Err(DecodeError::InvalidJsonRpc("body is not a JSON object".to_owned()));
    }
    Ok(value)
}

/// Describes a serde_json error by category and position, never by the
/// offending bytes.
fn invalid_json(error: &serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    let kind = match error.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "invalid data",
        Category::Io => "read error",
    };
    DecodeError::InvalidJson(format!("{kind} at line {} column {}", error.line(), error.column()))
}

/// Fails with [`DecodeError::TooDeep`] when arrays and objects nest deeper
/// than `max_depth`. Brackets inside strings do not count.
pub fn check_depth(body: &[u8], max_depth: usize) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut index = 0;
    while let Some(&byte) = body.get(index) {
        match byte {
            b'"' => {
                index = after_string(body, index + 1);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(DecodeError::TooDeep(max_depth));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        index += 1;
    }
    Ok(())
}

/// Returns the index after the quote that closes a string whose contents
/// start at `start`, or the body's length when the string is not closed.
/// A backslash escapes the byte after it, as in [`bytes_outside_strings`].
fn after_string(body: &[u8], start: usize) -> usize {
    let mut index = start;
    while let Some(offset) = body.get(index..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
        let found = index + offset;
        if body[found] == b'"' {
            return found + 1;
        }
        index = found + 2;
    }
    body.len()
}

/// Yields the bytes of a JSON text that are not inside a string. A string's
/// opening quote is yielded; its contents and closing quote are not.
pub(crate) fn bytes_outside_strings(body: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut in_string = false;
    let mut escaped = false;
    body.iter().copied().filter(move |&byte| {
        if !in_string {
            in_string = byte == b'"';
            return true;
        }
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => in_string = false,
            _ => {}
        }
        false
    })
}

/// Returns the first top-level key of a JSON object body that is one of
/// `candidates`, for telling `result` from `error` in a response body that
/// may be cut short. Values are skipped without being parsed.
pub fn find_top_level_key(body: &[u8], candidates: &[&'static str]) -> Option<&'static str> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'{' {
        return None;
    }
    let mut depth = 0usize;
    let mut index = start;
    let mut expecting_key = false;
    while index < body.len() {
        match body[index] {
            b'{' => {
                depth += 1;
                expecting_key = depth == 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting_key = true,
            b'"' => {
                let end = string_end(body, index)?;
                if depth == 1 && expecting_key {
                    let key = serde_json::from_slice::<String>(&body[index..=end]).ok()?;
                    if let Some(found) = candidates.iter().find(|candidate| **candidate == key) {
                        return Some(found);
                    }
                    expecting_key = false;
                }
                index = end;
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// Returns the index of the quote that closes the string opening at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut escaped = false;
    for (offset, &byte) in body[start + 1..].iter().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(start + 1 + offset),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::call::CallKind;

    #[test]
    fn bytes_outside_strings_skip_string_contents() {
        let outside: Vec<u8> = bytes_outside_strings(br#"{"a\"[": ["x\\", 1]}"#).collect();
        assert_eq!(outside, br#"{": [", 1]}"#.to_vec());
    }

    #[test]
    fn depth_counts_only_structure() {
        assert!(check_depth(br#"{"a": "[[[[[[[[[["}"#, 2).is_ok());
        assert!(check_depth(br#"{"a": [[1]]}"#, 3).is_ok());
        assert_eq!(check_depth(br#"{"a": [[1]]}"#, 2), Err(DecodeError::TooDeep(2)));
        assert!(check_depth(br#"{"a": "\"[[[["}"#, 1).is_ok());
    }

    #[test]
    fn truncated_json_is_invalid() {
        let error = parse_object(br#"{"domain": ["#, 64).unwrap_err();
        assert_eq!(error.code(), "invalid_json");
        assert!(error.to_string().contains("end of input"));
    }

    #[test]
    fn non_object_body_is_rejected() {
        assert_eq!(parse_object(b"[1, 2]", 64).unwrap_err().code(), "invalid_jsonrpc");
    }

    #[test]
    fn error_messages_never_echo_body() {
        let error = parse_object(br#"{"password": "hunter2" oops}"#, 64).unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn jsonrpc_execute_decodes() {
        let body = br#"{"jsonrpc":"2.0","method":"call","params":{"service":"object","method":"execute","args":["db",2,"pw","res.partner","unlink",[9]]},"id":1}"#;
        let call = decode_request(body, 64).unwrap();
        assert_eq!(call.protocol, Protocol::JsonRpc);
        assert_eq!(call.kind, CallKind::Model);
        assert_eq!(call.service.as_deref(), Some("object"));
        assert_eq!(call.record_ids, vec![9]);
    }

    #[test]
    fn jsonrpc_without_args_is_rejected() {
        let body = br#"{"params":{"service":"object","method":"execute"}}"#;
        assert_eq!(decode_request(body, 64).unwrap_err().code(), "invalid_jsonrpc");
    }

    #[test]
    fn top_level_key_skips_nested_keys() {
        let candidates = ["result", "error"];
        let body = br#"{"jsonrpc": "2.0", "id": {"error": 1}, "result": [{"error": 2}]}"#;
        assert_eq!(find_top_level_key(body, &candidates), Some("result"));
        let body = br#"{"id": null, "error": {"code": 100"#;
        assert_eq!(find_top_level_key(body, &candidates), Some("error"));
        assert_eq!(find_top_level_key(br#"{"x": "\"error\": 1"}"#, &candidates), None);
        assert_eq!(find_top_level_key(b"<html>", &candidates), None);
    }
}

//! Narrowing a read instead of denying it: a `read` or `search_read` that
//! requests fields outside the rule's `read_fields`, under
//! `narrow_reads = true`, is sent to Odoo with its field list cut down to
//! the allowed fields ([`crate::policy::narrowing`]).
//!
//! The rewritten request is decoded again and must name the same model,
//! method and records with only allowed fields; the caller then decides on
//! it again, and that decision, not the rewrite, lets it through.
//!
//! Where the field list goes:
//!
//! | surface | `fields` |
//! |---|---|
//! | `/jsonrpc` `execute_kw` | `args[5][1]` when given there, else `args[6].fields` |
//! | `/jsonrpc` `execute` | `args[6]`, added when the call ends after `args[5]` |
//! | `/web/dataset/call_kw` | `params.args[1]` when given there, else `params.kwargs.fields` |
//! | `/json/2/<model>/<method>` | the body's `fields` |
//! | `/xmlrpc/2/object`, `/xmlrpc/object` `execute_kw` | `params[5][1]` when given there, else `params[6].fields` |
//! | `/xmlrpc/2/object`, `/xmlrpc/object` `execute` | `params[6]`, added when the call ends after `params[5]` |
//!
//! XML-RPC bodies are edited in place: only the `<array>` of the field list
//! changes, and every other byte stays as the client sent it.

use serde_json::{Map, Value as Json};

use crate::http::HttpRequest;
use crate::rpc::{self, Call, DecodeLimits, Protocol};
use crate::token::{RewriteError, edit_json_body, edit_xml_fields};

/// The reason a read could not be narrowed. The call then stays denied.
#[derive(Debug, thiserror::Error)]
pub enum NarrowError {
    #[error("cannot rewrite the field list: {0}")]
    Rewrite(#[from] RewriteError),
    #[error("the narrowed request does not decode: {0}")]
    Redecode(String),
    #[error("the narrowed request decodes to a different call: {0}")]
    Changed(&'static str),
}

/// A read with its field list cut down.
#[derive(Debug)]
pub struct Narrowed {
    pub request: HttpRequest,
    pub call: Call,
}

/// Rewrites `request` (decoded as `call`) to read only `fields`.
pub fn narrow(request: &HttpRequest, call: &Call, fields: &[String], limits: &DecodeLimits) -> Result<Narrowed, NarrowError> {
    let list = Json::Array(fields.iter().cloned().map(Json::String).collect());
    let body = match call.protocol {
        Protocol::JsonRpc => edit_json_body(&request.body, |envelope| set_in_object_call(envelope, list))?,
        Protocol::Web => edit_json_body(&request.body, |envelope| set_in_call_kw(envelope, list))?,
        Protocol::Json2 => edit_json_body(&request.body, |body| {
            object_mut(body, "the body")?.insert("fields".to_owned(), list);
            Ok(())
        })?,
        Protocol::XmlRpc | Protocol::XmlRpcLegacy => edit_xml_fields(&request.body, fields)?,
    };
    let narrowed = HttpRequest { body, body_truncated: false, ..request.clone() };
    let decoded = match rpc::decode_request(&narrowed, limits) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => return Err(NarrowError::Redecode("not an RPC call".to_owned())),
        Err(error) => return Err(NarrowError::Redecode(error.to_string())),
    };
    confirm(call, &decoded, fields)?;
    Ok(Narrowed { request: narrowed, call: decoded })
}

/// Checks that the narrowed call is the original one reading only `fields`.
fn confirm(original: &Call, narrowed: &Call, fields: &[String]) -> Result<(), NarrowError> {
    if narrowed.model != original.model || narrowed.method != original.method {
        return Err(NarrowError::Changed("model or method"));
    }
    if narrowed.record_ids != original.record_ids || narrowed.uid != original.uid || narrowed.db != original.db {
        return Err(NarrowError::Changed("records, user or database"));
    }
    if narrowed.reads_all_fields || narrowed.fields.iter().any(|field| !fields.iter().any(|kept| kept == field)) {
        return Err(NarrowError::Changed("fields"));
    }
    if !narrowed.mismatches.is_empty() {
        return Err(NarrowError::Changed("mismatches"));
    }
    Ok(())
}

/// Sets the field list of a `/jsonrpc` `object.execute_kw` or
/// `object.execute` call.
///
/// `execute_kw` takes the method's positional arguments as a list in
/// `args[5]` and its keyword arguments in `args[6]`. `execute` takes them
/// spread after the method name, so `read(ids, fields)` and
/// `search_read(domain, fields, ...)` have their field list in `args[6]`.
fn set_in_object_call(envelope: &mut Json, fields: Json) -> Result<(), RewriteError> {
    let params = object_mut(envelope, "the request")?.get_mut("params");
    let params = params.and_then(Json::as_object_mut).ok_or_else(|| invalid("params is not an object"))?;
    if params.get("service").and_then(Json::as_str) != Some("object") {
        return Err(invalid("only the object service is narrowed"));
    }
    let method = params.get("method").and_then(Json::as_str).map(str::to_owned);
    let args = params.get_mut("args").and_then(Json::as_array_mut).ok_or_else(|| invalid("params.args is not a list"))?;
    match method.as_deref() {
        Some("execute_kw") => {
            if args.len() < 6 {
                return Err(invalid("execute_kw with fewer than 6 arguments"));
            }
            if args.len() == 6 {
                args.push(Json::Object(Map::new()));
            }
            let (positional, keywords) = args.split_at_mut(6);
            set_fields(&mut positional[5], &mut keywords[0], fields)
        }
        Some("execute") => match args.len() {
            0..=5 => Err(invalid("execute with fewer than 6 arguments")),
            6 => {
                args.push(fields);
                Ok(())
            }
            _ => {
                args[6] = fields;
                Ok(())
            }
        },
        _ => Err(invalid("only object.execute_kw and object.execute are narrowed")),
    }
}

/// `/web/dataset/call_kw`: `params.args` and `params.kwargs`.
fn set_in_call_kw(envelope: &mut Json, fields: Json) -> Result<(), RewriteError> {
    let params = object_mut(envelope, "the request")?.get_mut("params");
    let params = params.and_then(Json::as_object_mut).ok_or_else(|| invalid("params is not an object"))?;
    let mut args = params.remove("args").unwrap_or_else(|| Json::Array(Vec::new()));
    let mut kwargs = params.remove("kwargs").unwrap_or_else(|| Json::Object(Map::new()));
    let result = set_fields(&mut args, &mut kwargs, fields);
    params.insert("args".to_owned(), args);
    params.insert("kwargs".to_owned(), kwargs);
    result
}

/// Sets the field list of `read(ids, fields)` or `search_read(domain,
/// fields)`: both take it second, so it is replaced at position 1 when the
/// call gives it there, and set as the keyword `fields` otherwise (or as
/// well, when the call gives both).
fn set_fields(positional: &mut Json, keywords: &mut Json, fields: Json) -> Result<(), RewriteError> {
    let positional = positional.as_array_mut().ok_or_else(|| invalid("the positional arguments are not a list"))?;
    if !keywords.is_object() {
        *keywords = Json::Object(Map::new());
    }
    let keywords = keywords.as_object_mut().expect("made an object above");
    let in_positional = positional.len() > 1;
    if in_positional {
        positional[1] = fields.clone();
    }
    if !in_positional || keywords.contains_key("fields") {
        keywords.insert("fields".to_owned(), fields);
    }
    Ok(())
}

fn object_mut<'j>(value: &'j mut Json, name: &str) -> Result<&'j mut Map<String, Json>, RewriteError> {
    value.as_object_mut().ok_or_else(|| RewriteError::Json(format!("{name} is not an object")))
}

fn invalid(message: &str) -> RewriteError {
    RewriteError::Json(message.to_owned())
}

#[cfg(test)]
mod tests;

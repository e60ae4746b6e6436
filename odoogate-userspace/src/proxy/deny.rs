//! Odoo-shaped refusals: the answer a client library expects from Odoo 19
//! when a call is not allowed, so it raises its usual error type.
//!
//! | surface | AccessError (policy) | AccessDenied (token) | bad body |
//! |---|---|---|---|
//! | `/xmlrpc/2/*` | fault 4 | fault 3 `Access Denied` | fault 1 |
//! | `/xmlrpc/*` | faultCode `warning -- AccessError\n\n<message>` | faultCode `AccessDenied` | faultCode `<message>` |
//! | `/jsonrpc`, `/web/*` | JSON-RPC error, `data.name` `odoo.exceptions.AccessError` | `odoo.exceptions.AccessDenied` | HTTP 400 |
//! | `/json/2/*` | HTTP 403, five-key body | HTTP 401 with `WWW-Authenticate` | HTTP 400, five-key body |
//!
//! Odoo has no rate limits of its own, so a call over a `rate` limit gets
//! the AccessError shape with a message naming the limit, except on JSON-2,
//! whose clients read HTTP statuses: there it is HTTP 429 with the five-key
//! body and `Retry-After` in whole seconds.
//!
//! XML-RPC and JSON-RPC errors travel in an HTTP 200 response, as Odoo
//! sends them. Odoo 19's JSON-RPC dispatcher gives every error code 0
//! except not-found (404) and session expiry (100); older releases used
//! 200. The `debug` member, where Odoo puts its traceback, stays empty.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::rpc::{Outcome, Protocol};

/// The error format a client of one surface understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `/xmlrpc/2/*`: faults with integer codes.
    XmlRpc,
    /// `/xmlrpc/*`: faults with string codes.
    XmlRpcLegacy,
    /// `/jsonrpc` and the web client's routes: JSON-RPC error objects.
    JsonRpc,
    /// `/json/2/*`: HTTP statuses with a JSON body.
    Json2,
}

impl Shape {
    pub fn of_protocol(protocol: Protocol) -> Self {
        match protocol {
            Protocol::XmlRpc => Self::XmlRpc,
            Protocol::XmlRpcLegacy => Self::XmlRpcLegacy,
            Protocol::JsonRpc | Protocol::Web => Self::JsonRpc,
            Protocol::Json2 => Self::Json2,
        }
    }

    /// Returns the shape for a request path, for requests that did not
    /// decode into a call. Paths of no RPC surface get JSON-RPC errors.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/xmlrpc/2/") {
            Self::XmlRpc
        } else if path.starts_with("/xmlrpc/") {
            Self::XmlRpcLegacy
        } else if path.starts_with("/json/2/") {
            Self::Json2
        } else {
            Self::JsonRpc
        }
    }
}

/// Why odoogate answers a call itself instead of forwarding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// The policy denies the call; Odoo's `AccessError`. The message names
    /// the integration and what it may not do.
    AccessError { message: &'a str },
    /// The scoped token is unknown, expired or revoked; Odoo's
    /// `AccessDenied`, as for a wrong password or API key.
    AccessDenied,
    /// The body could not be decoded, so there is no call to decide on.
    BadRequest { message: &'a str },
    /// A `rate` limit refused the call. The message names the limit, and
    /// `retry_after` is how long until it lets a call through.
    RateLimited { message: &'a str, retry_after: Duration },
}

/// A complete answer to send to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    /// The reason phrase, upper case as werkzeug writes it.
    pub reason: &'static str,
    pub content_type: &'static str,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// What the client sees, for the audit record.
    pub outcome: Outcome,
}

/// Builds the answer to a request of `shape` that odoogate refuses.
/// `request_body` supplies the JSON-RPC request id to echo.
pub fn denial(shape: Shape, refusal: Refusal<'_>, request_body: &[u8]) -> Denial {
    match shape {
        Shape::XmlRpc => xmlrpc(refusal),
        Shape::XmlRpcLegacy => xmlrpc_legacy(refusal),
        Shape::JsonRpc => jsonrpc(refusal, request_id(request_body)),
        Shape::Json2 => json2(refusal),
    }
}

const ACCESS_ERROR: &str = "odoo.exceptions.AccessError";
const ACCESS_DENIED: &str = "odoo.exceptions.AccessDenied";
const ACCESS_DENIED_MESSAGE: &str = "Access Denied";
const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

// === XML-RPC ===

fn xmlrpc(refusal: Refusal<'_>) -> Denial {
    let (code, message) = match refusal {
        Refusal::AccessError { message } | Refusal::RateLimited { message, .. } => (4, message),
        Refusal::AccessDenied => (3, ACCESS_DENIED_MESSAGE),
        Refusal::BadRequest { message } => (1, message),
    };
    let body = fault_body(&format!("<int>{code}</int>"), message);
    xml_denial(body, Outcome::Fault(code.to_string()))
}

fn xmlrpc_legacy(refusal: Refusal<'_>) -> Denial {
    let (code, string) = match refusal {
        Refusal::AccessError { message } | Refusal::RateLimited { message, .. } => {
            (format!("warning -- AccessError\n\n{message}"), "")
        }
        Refusal::AccessDenied => ("AccessDenied".to_owned(), ACCESS_DENIED_MESSAGE),
        Refusal::BadRequest { message } => (message.to_owned(), ""),
    };
    let body = fault_body(&format!("<string>{}</string>", xml_text(&code)), string);
    let first_line = code.lines().next().unwrap_or_default().to_owned();
    xml_denial(body, Outcome::Fault(first_line))
}

fn xml_denial(body: String, outcome: Outcome) -> Denial {
    Denial {
        status: 200,
        reason: "OK",
        content_type: XML_CONTENT_TYPE,
        extra_headers: Vec::new(),
        body: body.into_bytes(),
        outcome,
    }
}

/// Writes a fault response laid out as Odoo 19 writes it; `code` is the
/// already-typed faultCode value.
fn fault_body(code: &str, fault_string: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n\
         <value>{code}</value>\n</member>\n<member>\n<name>faultString</name>\n\
         <value><string>{}</string></value>\n</member>\n</struct></value>\n</fault>\n\n</methodResponse>\n",
        xml_text(fault_string)
    )
}

/// Escapes text for an XML element, replacing the control characters that
/// XML 1.0 forbids, since messages may quote model or method names taken
/// from the request.
fn xml_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if c < ' ' => escaped.push('?'),
            c => escaped.push(c),
        }
    }
    escaped
}

// === JSON-RPC ===

/// The part of a JSON-RPC request whose `id` the answer echoes.
#[derive(Deserialize)]
struct RequestId {
    #[serde(default)]
    id: Json,
}

fn request_id(body: &[u8]) -> Json {
    serde_json::from_slice::<RequestId>(body).map_or(Json::Null, |request| request.id)
}

fn jsonrpc(refusal: Refusal<'_>, id: Json) -> Denial {
    let (name, message) = match refusal {
        Refusal::AccessError { message } | Refusal::RateLimited { message, .. } => (ACCESS_ERROR, message),
        Refusal::AccessDenied => (ACCESS_DENIED, ACCESS_DENIED_MESSAGE),
        Refusal::BadRequest { message } => return bad_request_page(message),
    };
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": 0,
            "message": "Odoo Server Error",
            "data": {"name": name, "message": message, "arguments": [message], "context": {}, "debug": ""},
        },
    });
    Denial {
        status: 200,
        reason: "OK",
        content_type: JSON_CONTENT_TYPE,
        extra_headers: Vec::new(),
        body: body.to_string().into_bytes(),
        outcome: Outcome::Error(name.to_owned()),
    }
}

/// werkzeug's `BadRequest` page, which Odoo sends for a JSON body it
/// cannot parse.
fn bad_request_page(message: &str) -> Denial {
    let body = format!(
        "<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>{}</p>\n",
        xml_text(message)
    );
    Denial {
        status: 400,
        reason: "BAD REQUEST",
        content_type: "text/html; charset=utf-8",
        extra_headers: Vec::new(),
        body: body.into_bytes(),
        outcome: Outcome::HttpStatus(400),
    }
}

// === JSON-2 ===

fn json2(refusal: Refusal<'_>) -> Denial {
    let (status, reason, name, arguments, extra_headers) = match refusal {
        Refusal::AccessError { message } => (403, "FORBIDDEN", ACCESS_ERROR, json!([message]), Vec::new()),
        Refusal::AccessDenied => (
            401,
            "UNAUTHORIZED",
            "werkzeug.exceptions.Unauthorized",
            json!(["Invalid apikey", 401]),
            vec![("WWW-Authenticate", "Bearer".to_owned())],
        ),
        Refusal::RateLimited { message, retry_after } => (
            429,
            "TOO MANY REQUESTS",
            "werkzeug.exceptions.TooManyRequests",
            json!([message, 429]),
            vec![("Retry-After", retry_after_seconds(retry_after).to_string())],
        ),
        Refusal::BadRequest { message } => {
            (400, "BAD REQUEST", "werkzeug.exceptions.BadRequest", json!([message, 400]), Vec::new())
        }
    };
    let message = match refusal {
        Refusal::AccessError { message } | Refusal::BadRequest { message } | Refusal::RateLimited { message, .. } => {
            message
        }
        Refusal::AccessDenied => "Invalid apikey",
    };
    let body = json!({"name": name, "message": message, "arguments": arguments, "context": {}, "debug": ""});
    Denial {
        status,
        reason,
        content_type: JSON_CONTENT_TYPE,
        extra_headers,
        body: body.to_string().into_bytes(),
        outcome: Outcome::Error(name.to_owned()),
    }
}

/// Rounds a wait up to whole seconds, at least 1, since `Retry-After`
/// counts whole seconds and 0 would invite an immediate retry.
fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests;

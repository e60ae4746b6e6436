//! Each refusal is compared with a real Odoo 19 answer from the captures in
//! `tests/fixtures/odoo19-captures` at the workspace root.

use std::path::Path;

use serde_json::Value as Json;

use super::*;
use crate::rpc::xmlrpc;

/// A captured response: status, header fields and body.
struct Captured {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).expect("captured body is JSON")
    }
}

fn capture(name: &str) -> Captured {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/odoo19-captures").join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("capture has a head");
    let head = std::str::from_utf8(&raw[..split]).expect("head is UTF-8");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap_or(0);
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    Captured { status, headers, body: raw[split + 4..].to_vec() }
}

fn request_body(name: &str) -> Vec<u8> {
    capture(name).body
}

fn keys(value: &Json) -> Vec<&str> {
    value.as_object().expect("an object").keys().map(String::as_str).collect()
}

fn json_body(denial: &Denial) -> Json {
    serde_json::from_slice(&denial.body).expect("denial body is JSON")
}

const MESSAGE: &str = "odoogate denied res.partner.unlink for integration website-form: no rule allows it";

// === XML-RPC ===

#[test]
fn xmlrpc_access_denied_is_byte_identical() {
    let real = capture("xmlrpc_stdlib/022-resp.http");
    let ours = denial(Shape::XmlRpc, Refusal::AccessDenied, b"");
    assert_eq!(ours.status, real.status);
    assert_eq!(Some(ours.content_type), real.header("Content-Type"));
    assert_eq!(String::from_utf8(ours.body).unwrap(), String::from_utf8(real.body).unwrap());
    assert_eq!(ours.outcome, Outcome::Fault("3".to_owned()));
}

#[test]
fn xmlrpc_access_error_matches_fault_layout() {
    let real = capture("xmlrpc_stdlib/023-resp.http");
    let real_text = String::from_utf8(real.body).unwrap();
    assert!(real_text.contains("<int>2</int>"), "capture 023 is a UserError fault");
    let expected = real_text
        .replace("<int>2</int>", "<int>4</int>")
        .replace("Object no.such.model doesn't exist", MESSAGE);

    let ours = denial(Shape::XmlRpc, Refusal::AccessError { message: MESSAGE }, b"");
    assert_eq!(String::from_utf8(ours.body.clone()).unwrap(), expected);
    assert_eq!(xmlrpc::fault_code(&ours.body, 8).unwrap(), Some("4".to_owned()));
    assert_eq!(ours.outcome, Outcome::Fault("4".to_owned()));
}

#[test]
fn legacy_access_error_uses_string_code() {
    let real = capture("xmlrpc_stdlib/024-resp.http");
    let real_text = String::from_utf8(real.body).unwrap();
    let expected = real_text.replace(
        "warning -- UserError\n\nObject no.such.model doesn't exist",
        &format!("warning -- AccessError\n\n{MESSAGE}"),
    );

    let ours = denial(Shape::XmlRpcLegacy, Refusal::AccessError { message: MESSAGE }, b"");
    assert_eq!(String::from_utf8(ours.body.clone()).unwrap(), expected);
    assert_eq!(xmlrpc::fault_code(&ours.body, 8).unwrap(), Some("warning -- AccessError".to_owned()));
    assert_eq!(ours.outcome, Outcome::Fault("warning -- AccessError".to_owned()));
}

#[test]
fn legacy_access_denied_code_is_access_denied() {
    let ours = denial(Shape::XmlRpcLegacy, Refusal::AccessDenied, b"");
    assert_eq!(xmlrpc::fault_code(&ours.body, 8).unwrap(), Some("AccessDenied".to_owned()));
}

#[test]
fn xmlrpc_bad_request_is_fault_1() {
    let ours = denial(Shape::XmlRpc, Refusal::BadRequest { message: "invalid XML" }, b"");
    assert_eq!(ours.status, 200);
    assert_eq!(xmlrpc::fault_code(&ours.body, 8).unwrap(), Some("1".to_owned()));
}

#[test]
fn fault_text_is_escaped() {
    let ours = denial(Shape::XmlRpc, Refusal::AccessError { message: "a<b>&c\u{1}d" }, b"");
    let text = String::from_utf8(ours.body).unwrap();
    assert!(text.contains("<string>a&lt;b&gt;&amp;c?d</string>"), "{text}");
}

// === JSON-RPC ===

#[test]
fn jsonrpc_access_error_matches_error_object() {
    let real = capture("odoorpc/030-resp.http");
    let real_json = real.json();
    let request = request_body("odoorpc/030-req.http");

    let ours = denial(Shape::JsonRpc, Refusal::AccessError { message: MESSAGE }, &request);
    assert_eq!(ours.status, real.status);
    assert_eq!(Some(ours.content_type), real.header("Content-Type"));
    let ours_json = json_body(&ours);

    assert_eq!(keys(&ours_json), keys(&real_json));
    assert_eq!(ours_json["jsonrpc"], real_json["jsonrpc"]);
    assert_eq!(ours_json["id"], real_json["id"], "the request id is echoed");
    let (ours_error, real_error) = (&ours_json["error"], &real_json["error"]);
    assert_eq!(keys(ours_error), keys(real_error));
    assert_eq!(ours_error["code"], real_error["code"]);
    assert_eq!(ours_error["message"], real_error["message"]);
    assert_eq!(keys(&ours_error["data"]), keys(&real_error["data"]));
    assert_eq!(ours_error["data"]["name"], "odoo.exceptions.AccessError");
    assert_eq!(ours_error["data"]["message"], MESSAGE);
    assert_eq!(ours_error["data"]["arguments"], serde_json::json!([MESSAGE]));
    assert_eq!(ours_error["data"]["context"], real_error["data"]["context"]);
    assert_eq!(ours.outcome, Outcome::Error("odoo.exceptions.AccessError".to_owned()));
}

#[test]
fn jsonrpc_access_denied_names_access_denied() {
    let ours = denial(Shape::JsonRpc, Refusal::AccessDenied, br#"{"id": "abc"}"#);
    let body = json_body(&ours);
    assert_eq!(body["id"], "abc");
    assert_eq!(body["error"]["data"]["name"], "odoo.exceptions.AccessDenied");
    assert_eq!(body["error"]["data"]["message"], "Access Denied");
}

#[test]
fn jsonrpc_without_id_echoes_null() {
    let ours = denial(Shape::JsonRpc, Refusal::AccessDenied, b"not json");
    assert_eq!(json_body(&ours)["id"], Json::Null);
}

#[test]
fn jsonrpc_bad_request_is_http_400() {
    let ours = denial(Shape::JsonRpc, Refusal::BadRequest { message: "invalid JSON" }, b"{");
    assert_eq!((ours.status, ours.reason), (400, "BAD REQUEST"));
    assert_eq!(ours.outcome, Outcome::HttpStatus(400));
}

// === JSON-2 ===

#[test]
fn json2_access_error_matches_403_body() {
    let real = capture("json2_requests_docstyle/009-resp.http");
    let real_json = real.json();
    let ours = denial(Shape::Json2, Refusal::AccessError { message: MESSAGE }, b"{}");
    let ours_json = json_body(&ours);

    assert_eq!(ours.status, real.status);
    assert_eq!(Some(ours.content_type), real.header("Content-Type"));
    assert_eq!(keys(&ours_json), keys(&real_json));
    assert_eq!(ours_json["name"], real_json["name"]);
    assert_eq!(ours_json["message"], MESSAGE);
    assert_eq!(ours_json["arguments"], serde_json::json!([MESSAGE]));
    assert_eq!(ours_json["context"], real_json["context"]);
    assert!(ours.extra_headers.is_empty());
}

#[test]
fn json2_access_denied_matches_401() {
    let real = capture("json2_requests_docstyle/012-resp.http");
    let real_json = real.json();
    let ours = denial(Shape::Json2, Refusal::AccessDenied, b"{}");
    let ours_json = json_body(&ours);

    assert_eq!(ours.status, real.status);
    assert_eq!(keys(&ours_json), keys(&real_json));
    for key in ["name", "message", "arguments", "context"] {
        assert_eq!(ours_json[key], real_json[key], "{key}");
    }
    let www_authenticate = ours.extra_headers.iter().find(|(name, _)| *name == "WWW-Authenticate");
    assert_eq!(www_authenticate.map(|(_, value)| value.as_str()), real.header("WWW-Authenticate"));
}

#[test]
fn json2_bad_request_matches_400() {
    let real = capture("json2_requests_docstyle/011-resp.http");
    let real_json = real.json();
    let ours = denial(Shape::Json2, Refusal::BadRequest { message: "invalid JSON" }, b"{");
    let ours_json = json_body(&ours);

    assert_eq!(ours.status, real.status);
    assert_eq!(keys(&ours_json), keys(&real_json));
    assert_eq!(ours_json["name"], real_json["name"]);
    assert_eq!(ours_json["arguments"][1], real_json["arguments"][1]);
}

#[test]
fn shape_of_path_follows_surfaces() {
    assert_eq!(Shape::of_path("/xmlrpc/2/object"), Shape::XmlRpc);
    assert_eq!(Shape::of_path("/xmlrpc/object"), Shape::XmlRpcLegacy);
    assert_eq!(Shape::of_path("/json/2/res.partner/read"), Shape::Json2);
    assert_eq!(Shape::of_path("/web/dataset/call_kw"), Shape::JsonRpc);
    assert_eq!(Shape::of_path("/jsonrpc"), Shape::JsonRpc);
}

#[test]
fn rate_limited_json2_is_429() {
    let message = "rate limit erp.rate = 10/s, burst 10 exceeded; retry after 0.250 s";
    let refusal = Refusal::RateLimited { message, retry_after: std::time::Duration::from_millis(250) };
    let ours = denial(Shape::Json2, refusal, b"{}");
    let body = json_body(&ours);

    assert_eq!(ours.status, 429);
    assert_eq!(ours.reason, "TOO MANY REQUESTS");
    assert_eq!(ours.extra_headers, vec![("Retry-After", "1".to_owned())]);
    let mut body_keys = keys(&body);
    body_keys.sort_unstable();
    assert_eq!(body_keys, ["arguments", "context", "debug", "message", "name"]);
    assert_eq!(body["name"], "werkzeug.exceptions.TooManyRequests");
    assert_eq!(body["message"], message);
    assert_eq!(body["arguments"], serde_json::json!([message, 429]));
}

#[test]
fn rate_limited_rpc_names_limit() {
    let message = "rate limit erp.rate = 1/h, burst 1 exceeded; retry after 3600.000 s";
    let refusal = Refusal::RateLimited { message, retry_after: std::time::Duration::from_secs(3600) };

    let xml = denial(Shape::XmlRpc, refusal, b"");
    assert_eq!(xml.status, 200);
    assert_eq!(xml.outcome, Outcome::Fault("4".to_owned()));
    assert!(String::from_utf8_lossy(&xml.body).contains("rate limit erp.rate = 1/h"));

    let json = denial(Shape::JsonRpc, refusal, br#"{"id": 9}"#);
    let body = json_body(&json);
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["data"]["name"], "odoo.exceptions.AccessError");
    assert_eq!(body["error"]["data"]["message"], message);
}

#[test]
fn retry_after_rounds_up() {
    assert_eq!(retry_after_seconds(std::time::Duration::ZERO), 1);
    assert_eq!(retry_after_seconds(std::time::Duration::from_millis(1500)), 2);
    assert_eq!(retry_after_seconds(std::time::Duration::from_secs(60)), 60);
}

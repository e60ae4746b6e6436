//! Request bodies for the decoder benchmarks: the real Odoo 19 captures
//! and generated `execute_kw` `create` calls of a chosen size.
//!
//! The generated bodies follow the layout each client library writes:
//! XML-RPC as Python's `xmlrpc.client.dumps` does (one element per line),
//! JSON-RPC as OdooRPC sends it, and JSON-2 as odoo-client-lib does.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use odoogate::http::message::{Headers, HttpRequest, HttpVersion};
use odoogate::rpc::{DecodeLimits, decode_request};

/// The surface a bench case is sent to, which also picks the Python
/// function the comparison times (`xmlrpc.client.loads` or `json.loads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    XmlRpc,
    JsonRpc,
    Web,
    Json2,
}

impl Surface {
    pub fn name(self) -> &'static str {
        match self {
            Self::XmlRpc => "xmlrpc",
            Self::JsonRpc => "jsonrpc",
            Self::Web => "web",
            Self::Json2 => "json2",
        }
    }

    /// Returns the Python decoder that reads this surface's bodies in Odoo.
    pub fn python_decoder(self) -> &'static str {
        match self {
            Self::XmlRpc => "xmlrpc",
            Self::JsonRpc | Self::Web | Self::Json2 => "json",
        }
    }

    /// Returns the surface a capture's request path belongs to, or `None`
    /// for requests that carry no RPC body (`GET /doc-bearer/…`).
    fn of_path(path: &str) -> Option<Self> {
        if path.starts_with("/xmlrpc/") {
            Some(Self::XmlRpc)
        } else if path == "/jsonrpc" {
            Some(Self::JsonRpc)
        } else if path.starts_with("/json/2/") {
            Some(Self::Json2)
        } else if path.starts_with("/web/dataset/") || path == "/web/session/authenticate" {
            Some(Self::Web)
        } else {
            None
        }
    }
}

/// One benchmark case: requests of one surface, decoded together in each
/// iteration.
pub struct Case {
    pub surface: Surface,
    /// `captures`, `1KiB`, `100KiB` or `10MiB`.
    pub label: String,
    pub requests: Vec<HttpRequest>,
}

impl Case {
    pub fn body_bytes(&self) -> u64 {
        self.requests.iter().map(|request| request.body.len() as u64).sum()
    }
}

/// Body sizes of the generated cases, with their labels.
pub const GENERATED_SIZES: [(&str, usize); 3] = [("1KiB", 1024), ("100KiB", 100 * 1024), ("10MiB", 10 * 1024 * 1024)];

/// Returns every case: per surface, the captured requests, then for
/// XML-RPC, JSON-RPC and JSON-2 one generated request of each size.
pub fn cases() -> Vec<Case> {
    cases_where(|_, _| true)
}

/// Returns the cases for which `keep(surface, label)` is true, generating
/// only their bodies.
pub fn cases_where(keep: impl Fn(Surface, &str) -> bool) -> Vec<Case> {
    let captured = captured_requests();
    let mut cases = Vec::new();
    for surface in [Surface::XmlRpc, Surface::JsonRpc, Surface::Json2, Surface::Web] {
        if keep(surface, "captures") {
            let requests: Vec<HttpRequest> =
                captured.iter().filter(|(s, _)| *s == surface).map(|(_, request)| request.clone()).collect();
            cases.push(Case { surface, label: "captures".to_owned(), requests });
        }
        if surface == Surface::Web {
            continue;
        }
        for (label, size) in GENERATED_SIZES {
            if keep(surface, label) {
                let request = generated_request(surface, size);
                cases.push(Case { surface, label: label.to_owned(), requests: vec![request] });
            }
        }
    }
    cases
}

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/odoo19-captures")
}

/// Reads every captured request that decodes to a call, sorted by file
/// name so each run decodes the same sequence. The captures that are
/// malformed on purpose (a cut JSON body that Odoo rejects with 400) are
/// left out, because the time of an early error tells nothing about
/// throughput.
fn captured_requests() -> Vec<(Surface, HttpRequest)> {
    let mut files: Vec<PathBuf> = fs::read_dir(captures_dir())
        .expect("the captures directory is readable")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .flat_map(|folder| fs::read_dir(folder.path()).expect("a capture folder is readable"))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with("-req.http"))
        .collect();
    files.sort();

    files
        .iter()
        .filter_map(|file| {
            let request = parse_request(&fs::read(file).expect("a capture file is readable"));
            let surface = Surface::of_path(request.path())?;
            let decodes = matches!(decode_request(&request, &DecodeLimits::default()), Ok(Some(_)));
            (decodes && !request.body.is_empty()).then_some((surface, request))
        })
        .collect()
}

/// Splits a captured request with `httparse`, independently of odoogate's
/// own framer.
fn parse_request(raw: &[u8]) -> HttpRequest {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut storage);
    let httparse::Status::Complete(head_len) = parsed.parse(raw).expect("a capture head parses") else {
        panic!("a capture head is incomplete");
    };
    let headers = parsed.headers.iter().map(|h| (h.name.into(), Bytes::copy_from_slice(h.value))).collect();
    request(parsed.method.unwrap_or("POST"), parsed.path.unwrap_or("/"), Headers(headers), Bytes::copy_from_slice(&raw[head_len..]))
}

fn request(method: &str, target: &str, headers: Headers, body: Bytes) -> HttpRequest {
    HttpRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        version: HttpVersion::Http11,
        headers,
        body,
        body_truncated: false,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    }
}

// === generated bodies ===

/// Builds one partner record of a generated `create` call: text that needs XML
/// escaping, non-ASCII text, a float, a boolean, and two x2many commands
/// whose nested fields the decoder records as `parent.child`.
fn record_json(index: usize) -> serde_json::Value {
    serde_json::json!({
        "name": format!("Partner {index} & Söhne <GmbH>"),
        "email": format!("contact{index}@example.com"),
        "phone": "+49 30 1234567",
        "is_company": index % 2 == 0,
        "credit_limit": index as f64 * 1.5,
        "comment": "Line one\nLine two with \"quotes\" and ünïcödé 🚀",
        "category_id": [[6, 0, [1, 2, 3]]],
        "child_ids": [[0, 0, {"name": format!("Contact {index}"), "function": "Buyer"}]],
    })
}

/// Returns enough records for a body of about `target_bytes`.
fn records_for(target_bytes: usize, bytes_per_record: usize) -> Vec<serde_json::Value> {
    let count = (target_bytes / bytes_per_record).max(1);
    (0..count).map(record_json).collect()
}

fn generated_request(surface: Surface, target_bytes: usize) -> HttpRequest {
    match surface {
        Surface::XmlRpc => {
            let body = xmlrpc_create_body(&records_for(target_bytes, 1500));
            request("POST", "/xmlrpc/2/object", Headers::default(), Bytes::from(body))
        }
        Surface::JsonRpc => {
            let records = records_for(target_bytes, 400);
            let body = serde_json::json!({
                "jsonrpc": "2.0",
                "method": "call",
                "params": {
                    "service": "object",
                    "method": "execute_kw",
                    "args": ["odoo19", 2, "APIKEY_PLACEHOLDER", "res.partner", "create", [records], {"context": {"lang": "en_US"}}],
                },
                "id": 1,
            });
            request("POST", "/jsonrpc", Headers::default(), Bytes::from(body.to_string()))
        }
        Surface::Json2 | Surface::Web => {
            let records = records_for(target_bytes, 400);
            let body = serde_json::json!({"vals_list": records, "context": {"lang": "en_US"}});
            let headers = Headers(vec![
                ("Authorization".into(), Bytes::from_static(b"bearer APIKEY_PLACEHOLDER")),
                ("X-Odoo-Database".into(), Bytes::from_static(b"odoo19")),
            ]);
            request("POST", "/json/2/res.partner/create", headers, Bytes::from(body.to_string()))
        }
    }
}

/// Writes `execute_kw(db, uid, password, "res.partner", "create", [records])`
/// as Python's `xmlrpc.client.dumps` does.
fn xmlrpc_create_body(records: &[serde_json::Value]) -> String {
    let mut xml = String::from("<?xml version='1.0'?>\n<methodCall>\n<methodName>execute_kw</methodName>\n<params>\n");
    let args = serde_json::json!([records]);
    for param in [serde_json::json!("odoo19"), serde_json::json!(2), serde_json::json!("APIKEY_PLACEHOLDER"),
        serde_json::json!("res.partner"), serde_json::json!("create"), args]
    {
        xml.push_str("<param>\n");
        write_xml_value(&mut xml, &param);
        xml.push_str("</param>\n");
    }
    xml.push_str("</params>\n</methodCall>\n");
    xml
}

fn write_xml_value(xml: &mut String, value: &serde_json::Value) {
    use serde_json::Value as Json;
    xml.push_str("<value>");
    match value {
        Json::Null => xml.push_str("<nil/>"),
        Json::Bool(flag) => {
            let _ = write!(xml, "<boolean>{}</boolean>", u8::from(*flag));
        }
        Json::Number(number) if number.is_i64() => {
            let _ = write!(xml, "<int>{number}</int>");
        }
        Json::Number(number) => {
            let _ = write!(xml, "<double>{}</double>", number.as_f64().unwrap_or(0.0));
        }
        Json::String(text) => {
            let _ = write!(xml, "<string>{}</string>", escape_xml(text));
        }
        Json::Array(items) => {
            xml.push_str("<array><data>\n");
            items.iter().for_each(|item| write_xml_value(xml, item));
            xml.push_str("</data></array>");
        }
        Json::Object(members) => {
            xml.push_str("<struct>\n");
            for (name, member) in members {
                let _ = write!(xml, "<member>\n<name>{}</name>\n", escape_xml(name));
                write_xml_value(xml, member);
                xml.push_str("</member>\n");
            }
            xml.push_str("</struct>");
        }
    }
    xml.push_str("</value>\n");
}

/// Escapes as `xmlrpc.client.escape` does: `&`, `<` and `>`.
fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

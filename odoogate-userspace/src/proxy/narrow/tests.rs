use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::http::message::{Headers, HttpVersion};

fn request(target: &str, headers: &[(&str, &str)], body: &Json) -> HttpRequest {
    HttpRequest {
        method: "POST".to_owned(),
        target: target.to_owned(),
        version: HttpVersion::Http11,
        headers: Headers(headers.iter().map(|(n, v)| ((*n).into(), Bytes::from(v.to_string()))).collect()),
        body: Bytes::from(body.to_string()),
        body_truncated: false,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    }
}

fn decode(request: &HttpRequest) -> Call {
    rpc::decode_request(request, &DecodeLimits::default()).unwrap().unwrap()
}

fn body(narrowed: &Narrowed) -> Json {
    serde_json::from_slice(&narrowed.request.body).unwrap()
}

fn allowed() -> Vec<String> {
    vec!["name".to_owned()]
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

#[test]
fn jsonrpc_positional_fields_replaced() {
    let original = request(
        "/jsonrpc",
        JSON,
        &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
            "args": ["odoo19", 2, "pw", "res.partner", "read", [[7], ["name", "email"]]]}}),
    );
    let narrowed = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap();

    assert_eq!(narrowed.call.fields, ["name"]);
    assert_eq!(narrowed.call.record_ids, [7]);
    assert_eq!(body(&narrowed)["params"]["args"][5], json!([[7], ["name"]]));
}

#[test]
fn jsonrpc_all_fields_gets_keyword() {
    let original = request(
        "/jsonrpc",
        JSON,
        &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
            "args": ["odoo19", 2, "pw", "res.partner", "search_read", [[]]]}}),
    );
    let call = decode(&original);
    assert!(call.reads_all_fields);
    let narrowed = narrow(&original, &call, &allowed(), &DecodeLimits::default()).unwrap();

    assert!(!narrowed.call.reads_all_fields);
    assert_eq!(narrowed.call.fields, ["name"]);
    assert_eq!(body(&narrowed)["params"]["args"][6], json!({"fields": ["name"]}));
}

#[test]
fn jsonrpc_execute_positional_fields_replaced() {
    let original = request(
        "/jsonrpc",
        JSON,
        &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute",
            "args": ["odoo19", 2, "pw", "res.partner", "search_read", [["is_company", "=", true]], ["name", "email"], 0, 5]}}),
    );
    let narrowed = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap();

    assert_eq!(narrowed.call.fields, ["name"]);
    assert_eq!(
        body(&narrowed)["params"]["args"],
        json!(["odoo19", 2, "pw", "res.partner", "search_read", [["is_company", "=", true]], ["name"], 0, 5])
    );
}

#[test]
fn jsonrpc_execute_all_fields_gets_list() {
    let original = request(
        "/jsonrpc",
        JSON,
        &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute",
            "args": ["odoo19", 2, "pw", "res.partner", "read", [7]]}}),
    );
    let call = decode(&original);
    assert!(call.reads_all_fields);
    let narrowed = narrow(&original, &call, &allowed(), &DecodeLimits::default()).unwrap();

    assert!(!narrowed.call.reads_all_fields);
    assert_eq!(narrowed.call.record_ids, [7]);
    assert_eq!(body(&narrowed)["params"]["args"], json!(["odoo19", 2, "pw", "res.partner", "read", [7], ["name"]]));
}

#[test]
fn jsonrpc_other_service_stays_denied() {
    let original = request(
        "/jsonrpc",
        JSON,
        &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
            "args": ["odoo19", 2, "pw", "res.partner", "read", [[7], ["name", "email"]]]}}),
    );
    let call = decode(&original);
    let mut other = original.clone();
    other.body = Bytes::from(String::from_utf8(original.body.to_vec()).unwrap().replace("execute_kw", "execute_whatever"));
    assert!(matches!(narrow(&other, &call, &allowed(), &DecodeLimits::default()), Err(NarrowError::Rewrite(_))));
}

#[test]
fn web_call_kw_keyword_fields_replaced() {
    let original = request(
        "/web/dataset/call_kw/res.partner/search_read",
        JSON,
        &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"model": "res.partner", "method": "search_read",
            "args": [[]], "kwargs": {"fields": ["name", "phone"], "limit": 5}}}),
    );
    let narrowed = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap();

    assert_eq!(narrowed.call.fields, ["name"]);
    assert_eq!(body(&narrowed)["params"]["kwargs"], json!({"fields": ["name"], "limit": 5}));
}

#[test]
fn json2_body_fields_replaced() {
    let headers = [("Content-Type", "application/json"), ("Authorization", "bearer 0123456789abcdef0123456789abcdef01234567")];
    let original = request("/json/2/res.partner/read", &headers, &json!({"ids": [3], "fields": ["name", "email"]}));
    let narrowed = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap();

    assert_eq!(narrowed.call.fields, ["name"]);
    assert_eq!(narrowed.call.record_ids, [3]);
    assert_eq!(body(&narrowed), json!({"ids": [3], "fields": ["name"]}));
}

fn xml_request(target: &str, params: &[&str]) -> HttpRequest {
    xml_call(target, "execute_kw", params)
}

fn xml_call(target: &str, method: &str, params: &[&str]) -> HttpRequest {
    let params: String = params.iter().map(|param| format!("<param><value>{param}</value></param>")).collect();
    let mut original = request(target, &[("Content-Type", "text/xml")], &json!(null));
    original.body = Bytes::from(format!(
        "<?xml version=\"1.0\"?>\n<methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>"
    ));
    original
}

fn xml_body(narrowed: &Narrowed) -> String {
    String::from_utf8(narrowed.request.body.to_vec()).unwrap()
}

const XML_HEAD: [&str; 5] =
    ["<string>odoo19</string>", "<int>2</int>", "<string>pw</string>", "<string>res.partner</string>", "<string>read</string>"];

const IDS_AND_FIELDS: &str = "<array><data><value><array><data><value><int>1</int></value></data></array></value>\
    <value><array><data><value><string>name</string></value><value><string>email</string></value></data></array></value></data></array>";

#[test]
fn xmlrpc_positional_fields_replaced() {
    let params: Vec<&str> = XML_HEAD.iter().copied().chain([IDS_AND_FIELDS]).collect();
    let original = xml_request("/xmlrpc/2/object", &params);
    let narrowed = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap();

    assert_eq!(narrowed.call.fields, ["name"]);
    assert_eq!(narrowed.call.record_ids, [1]);
    let expected = String::from_utf8(original.body.to_vec())
        .unwrap()
        .replace("<value><string>name</string></value><value><string>email</string></value>", "<value><string>name</string></value>");
    assert_eq!(xml_body(&narrowed), expected);
}

#[test]
fn xmlrpc_legacy_keyword_fields_replaced() {
    let mut params: Vec<&str> = XML_HEAD.to_vec();
    params[4] = "<string>search_read</string>";
    params.push("<array><data><value><array><data></data></array></value></data></array>");
    params.push(
        "<struct><member><name>fields</name><value><array><data><value><string>email</string></value></data></array></value></member>\
         <member><name>limit</name><value><int>5</int></value></member></struct>",
    );
    let original = xml_request("/xmlrpc/object", &params);
    let narrowed = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap();

    assert_eq!(narrowed.call.fields, ["name"]);
    let body = xml_body(&narrowed);
    assert!(!body.contains("email"), "{body}");
    assert!(body.contains("<member><name>limit</name><value><int>5</int></value></member>"), "{body}");
}

#[test]
fn xmlrpc_all_fields_gets_keyword() {
    let params: Vec<&str> = XML_HEAD
        .iter()
        .copied()
        .chain(["<array><data><value><array><data><value><int>1</int></value></data></array></value></data></array>"])
        .collect();
    let original = xml_request("/xmlrpc/2/object", &params);
    let call = decode(&original);
    assert!(call.reads_all_fields);
    let narrowed = narrow(&original, &call, &["a<b".to_owned()], &DecodeLimits::default()).unwrap();

    assert_eq!(narrowed.call.fields, ["a<b"]);
    let body = xml_body(&narrowed);
    assert!(
        body.contains("<param><value><struct><member><name>fields</name><value><array><data><value><string>a&lt;b</string>"),
        "{body}"
    );
}

const READ_IDS: &str = "<array><data><value><int>1</int></value><value><int>2</int></value></data></array>";

const NAME_AND_EMAIL: &str =
    "<array><data><value><string>name</string></value><value><string>email</string></value></data></array>";

#[test]
fn xmlrpc_execute_positional_fields_replaced() {
    let params: Vec<&str> = XML_HEAD.iter().copied().chain([READ_IDS, NAME_AND_EMAIL]).collect();
    let original = xml_call("/xmlrpc/2/object", "execute", &params);
    let narrowed = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap();

    assert_eq!(narrowed.call.fields, ["name"]);
    assert_eq!(narrowed.call.record_ids, [1, 2]);
    let expected = String::from_utf8(original.body.to_vec()).unwrap().replace(NAME_AND_EMAIL, &fields_array_of(&["name"]));
    assert_eq!(xml_body(&narrowed), expected);
}

#[test]
fn xmlrpc_legacy_execute_all_fields_gets_param() {
    let params: Vec<&str> = XML_HEAD.iter().copied().chain([READ_IDS]).collect();
    let original = xml_call("/xmlrpc/object", "execute", &params);
    let call = decode(&original);
    assert!(call.reads_all_fields);
    let narrowed = narrow(&original, &call, &allowed(), &DecodeLimits::default()).unwrap();

    assert!(!narrowed.call.reads_all_fields);
    assert_eq!(narrowed.call.fields, ["name"]);
    let expected = String::from_utf8(original.body.to_vec())
        .unwrap()
        .replace("</params>", &format!("<param><value>{}</value></param></params>", fields_array_of(&["name"])));
    assert_eq!(xml_body(&narrowed), expected);
}

#[test]
fn xmlrpc_execute_without_arguments_stays_denied() {
    let original = xml_call("/xmlrpc/2/object", "execute", &XML_HEAD);
    let error = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap_err();
    assert!(matches!(error, NarrowError::Rewrite(RewriteError::XmlRpc(_))), "{error}");
}

fn fields_array_of(fields: &[&str]) -> String {
    let items: String = fields.iter().map(|field| format!("<value><string>{field}</string></value>")).collect();
    format!("<array><data>{items}</data></array>")
}

#[test]
fn xmlrpc_unusual_layout_stays_denied() {
    let args = IDS_AND_FIELDS.replacen("<array><data>", "<array><data><extra/>", 1);
    let params: Vec<&str> = XML_HEAD.iter().copied().chain([args.as_str()]).collect();
    let original = xml_request("/xmlrpc/2/object", &params);
    let error = narrow(&original, &decode(&original), &allowed(), &DecodeLimits::default()).unwrap_err();
    assert!(matches!(error, NarrowError::Rewrite(RewriteError::XmlRpc(_))), "{error}");
}

#[test]
fn confirm_rejects_other_records() {
    let original = request(
        "/jsonrpc",
        JSON,
        &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
            "args": ["odoo19", 2, "pw", "res.partner", "read", [[7], ["name"]]]}}),
    );
    let call = decode(&original);
    let mut other = call.clone();
    other.record_ids = vec![8];
    assert!(matches!(confirm(&call, &other, &allowed()), Err(NarrowError::Changed(_))));
    other = call.clone();
    other.fields = ["email"].into_iter().collect();
    assert!(matches!(confirm(&call, &other, &allowed()), Err(NarrowError::Changed("fields"))));
    assert!(confirm(&call, &call, &allowed()).is_ok());
}

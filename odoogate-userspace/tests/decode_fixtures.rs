//! The RPC decoders against real Odoo 19 traffic from ten client libraries
//! (`tests/fixtures/odoo19-captures` at the workspace root).
//!
//! Every request must decode, every response's outcome must match the
//! folder's `INDEX.txt`, and a sample of calls per client is checked field
//! by field. The messages are split with `httparse` here, so these tests do
//! not depend on the HTTP framer.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use odoogate::http::message::{Headers, HttpRequest, HttpResponse, HttpVersion};
use odoogate::rpc::{
    Call, CallKind, Context, CredentialSlot, DecodeError, DecodeLimits, Outcome, Protocol, decode_request,
    decode_response, login_uid, session_cookie,
};

const FOLDERS: [&str; 10] = [
    "xmlrpc_stdlib",
    "fernandoslim_odoo_jsonrpc",
    "json2_requests_docstyle",
    "n8n_odoo_node",
    "odoo_await",
    "odoo_xmlrpc_js",
    "odoolib_json2",
    "odoolib_jsonrpc",
    "odoolib_xmlrpc",
    "odoorpc",
];

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/odoo19-captures")
}

/// Lists every client folder on disk, so that a new folder is covered too.
fn folders() -> Vec<String> {
    let mut folders: Vec<String> = fs::read_dir(captures_dir())
        .expect("captures directory is readable")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    folders
}

fn read(folder: &str, file: &str) -> Vec<u8> {
    fs::read(captures_dir().join(folder).join(file)).unwrap_or_else(|e| panic!("{folder}/{file}: {e}"))
}

/// Numbers of the request/response pairs in a folder, in order.
fn exchanges(folder: &str) -> Vec<String> {
    let mut numbers: Vec<String> = fs::read_dir(captures_dir().join(folder))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_string_lossy().strip_suffix("-req.http").map(str::to_owned))
        .collect();
    numbers.sort();
    numbers
}

fn headers_of(parsed: &[httparse::Header<'_>]) -> Headers {
    Headers(parsed.iter().map(|h| (h.name.into(), Bytes::copy_from_slice(h.value))).collect())
}

fn body_after(raw: &[u8], head_len: usize, headers: &Headers) -> Bytes {
    let body = &raw[head_len..];
    let declared = headers.get_str("Content-Length").map(|v| v.trim().parse::<usize>().unwrap());
    assert_eq!(declared.unwrap_or(body.len()), body.len(), "fixture Content-Length matches its body");
    Bytes::copy_from_slice(body)
}

fn parse_request(raw: &[u8]) -> HttpRequest {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut storage);
    let httparse::Status::Complete(head_len) = parsed.parse(raw).expect("fixture request head parses") else {
        panic!("fixture request head is incomplete");
    };
    let headers = headers_of(parsed.headers);
    HttpRequest {
        method: parsed.method.unwrap().to_owned(),
        target: parsed.path.unwrap().to_owned(),
        version: HttpVersion::Http11,
        body: body_after(raw, head_len, &headers),
        headers,
        body_truncated: false,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    }
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut storage);
    let httparse::Status::Complete(head_len) = parsed.parse(raw).expect("fixture response head parses") else {
        panic!("fixture response head is incomplete");
    };
    let headers = headers_of(parsed.headers);
    HttpResponse {
        status: parsed.code.unwrap(),
        reason: parsed.reason.unwrap_or_default().to_owned(),
        version: HttpVersion::Http11,
        body: body_after(raw, head_len, &headers),
        headers,
        body_truncated: false,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    }
}

fn request(folder: &str, number: &str) -> HttpRequest {
    parse_request(&read(folder, &format!("{number}-req.http")))
}

fn response(folder: &str, number: &str) -> HttpResponse {
    parse_response(&read(folder, &format!("{number}-resp.http")))
}

fn decode(folder: &str, number: &str) -> Result<Option<Call>, DecodeError> {
    decode_request(&request(folder, number), &DecodeLimits::default())
}

fn call(folder: &str, number: &str) -> Call {
    decode(folder, number)
        .unwrap_or_else(|e| panic!("{folder}/{number}: {e}"))
        .unwrap_or_else(|| panic!("{folder}/{number} is not a call"))
}

/// Requests that are not calls or that Odoo itself rejected, with why.
fn expected_non_call(folder: &str, number: &str) -> Option<Result<(), &'static str>> {
    match (folder, number) {
        // GET /json/2/...: Odoo returns 404 "Did you mean POST".
        ("json2_requests_docstyle", "015") => Some(Ok(())),
        // GET /doc-bearer/res.partner.json: documentation, not RPC.
        ("odoolib_json2", "007") => Some(Ok(())),
        // A JSON-2 body cut after `{"domain": [`: Odoo returns 400.
        ("json2_requests_docstyle", "011") => Some(Err("invalid_json")),
        _ => None,
    }
}

// === every request and response ===

#[test]
fn fixture_folders_are_all_present() {
    let found = folders();
    for folder in FOLDERS {
        assert!(found.iter().any(|f| f == folder), "{folder} missing");
    }
    assert!(found.len() >= 10, "found only {found:?}");
}

#[test]
fn every_request_decodes() {
    let mut decoded = 0;
    let mut total = 0;
    for folder in folders() {
        for number in exchanges(&folder) {
            total += 1;
            let result = decode(&folder, &number);
            match (expected_non_call(&folder, &number), result) {
                (None, Ok(Some(_))) => decoded += 1,
                (Some(Ok(())), Ok(None)) => {}
                (Some(Err(code)), Err(error)) => assert_eq!(error.code(), code, "{folder}/{number}"),
                (expected, result) => panic!("{folder}/{number}: expected {expected:?}, got {result:?}"),
            }
        }
    }
    assert_eq!(decoded, total - 3, "every request but the three listed is a call");
    assert!(total >= 172, "only {total} exchanges found");
}

#[test]
fn every_call_names_its_method() {
    for folder in folders() {
        for number in exchanges(&folder) {
            let Ok(Some(call)) = decode(&folder, &number) else { continue };
            assert!(call.method.is_some(), "{folder}/{number} has no method");
            if call.kind == CallKind::Model {
                assert!(call.model.is_some(), "{folder}/{number} has no model");
            }
            assert!(call.mismatches.is_empty(), "{folder}/{number}: {:?}", call.mismatches);
        }
    }
}

/// Reads the outcome `INDEX.txt` records for each response, by exchange
/// number.
fn indexed_outcomes(folder: &str) -> Vec<(String, Outcome)> {
    let index = String::from_utf8(read(folder, "INDEX.txt")).unwrap();
    index
        .lines()
        .filter_map(|line| line.trim_start().split_once("-resp.http: "))
        .map(|(number, rest)| (number.to_owned(), outcome_from_index(rest)))
        .collect()
}

fn outcome_from_index(entry: &str) -> Outcome {
    let status: u16 = entry.split_whitespace().next().unwrap().parse().unwrap();
    if let Some(fault) = entry.split_once("FAULT code=").map(|(_, f)| f) {
        let code = fault.trim_start_matches("<int>").trim_start_matches("<string>");
        let code = code.split("</").next().unwrap().trim_end();
        return Outcome::Fault(code.to_owned());
    }
    for marker in ["data.name=", "JSON2-ERROR name="] {
        if let Some((_, rest)) = entry.split_once(marker) {
            return Outcome::Error(rest.split_whitespace().next().unwrap().to_owned());
        }
    }
    if status == 200 { Outcome::Ok } else { Outcome::HttpStatus(status) }
}

/// Returns the decoded call, or a call of the right protocol for requests
/// that did not decode, so their responses can still be checked.
fn call_for_response(folder: &str, number: &str) -> Option<Call> {
    match decode(folder, number) {
        Ok(Some(call)) => Some(call),
        Ok(None) if request(folder, number).path().starts_with("/json/2/") => Some(Call::new(Protocol::Json2, CallKind::Model)),
        Err(_) => Some(Call::new(Protocol::Json2, CallKind::Model)),
        Ok(None) => None,
    }
}

#[test]
fn every_response_outcome_matches_index() {
    let mut checked = 0;
    let mut total = 0;
    for folder in folders() {
        let outcomes = indexed_outcomes(&folder);
        assert_eq!(outcomes.len(), exchanges(&folder).len(), "{folder}: INDEX.txt lists every response");
        for (number, expected) in outcomes {
            total += 1;
            let Some(call) = call_for_response(&folder, &number) else { continue };
            let outcome = decode_response(&call, &response(&folder, &number));
            assert_eq!(outcome, expected, "{folder}/{number}");
            checked += 1;
        }
    }
    // Only the documentation request (GET /doc-bearer/...) has no call.
    assert_eq!(checked, total - 1);
}

#[test]
fn legacy_fault_keeps_first_line() {
    let call = call("odoolib_xmlrpc", "014");
    assert_eq!(call.protocol, Protocol::XmlRpcLegacy);
    let outcome = decode_response(&call, &response("odoolib_xmlrpc", "014"));
    assert_eq!(outcome, Outcome::Fault("warning -- UserError".to_owned()));
    assert_eq!(outcome.to_field(), "fault:warning -- UserError");
}

#[test]
fn html_500_is_http_status() {
    let call = call("odoorpc", "026");
    assert_eq!(decode_response(&call, &response("odoorpc", "026")), Outcome::HttpStatus(500));
}

#[test]
fn session_expired_with_null_id_is_error() {
    let call = call("fernandoslim_odoo_jsonrpc", "012");
    let outcome = decode_response(&call, &response("fernandoslim_odoo_jsonrpc", "012"));
    assert_eq!(outcome, Outcome::Error("odoo.http.SessionExpiredException".to_owned()));
}

// === calls, client by client ===

fn assert_password(call: &Call, password: &str) {
    let credential = call.credential.as_ref().expect("call has a credential");
    assert_eq!(credential.slot, CredentialSlot::Password);
    assert_eq!(credential.secret.expose(), password);
}

fn assert_bearer(call: &Call) {
    let credential = call.credential.as_ref().expect("call has a credential");
    assert_eq!(credential.slot, CredentialSlot::Bearer);
    assert_eq!(credential.secret.expose(), "APIKEY_PLACEHOLDER_000000000000000000000");
}

#[test]
fn xmlrpc_stdlib_search_read() {
    let call = call("xmlrpc_stdlib", "003");
    assert_eq!(call.protocol, Protocol::XmlRpc);
    assert_eq!(call.kind, CallKind::Model);
    assert_eq!(call.service.as_deref(), Some("object"));
    assert_eq!(call.db.as_deref(), Some("odoo19"));
    assert_eq!(call.uid, Some(2));
    assert_eq!(call.model.as_deref(), Some("res.partner"));
    assert_eq!(call.method.as_deref(), Some("search_read"));
    assert!(call.record_ids.is_empty());
    assert_eq!(call.fields, vec!["name", "email", "is_company", "category_id", "write_date"]);
    assert!(!call.reads_all_fields);
    assert_eq!(
        call.context,
        Some(Context::Json(serde_json::json!({"lang": "en_US", "tz": "Europe/Brussels", "active_test": false})))
    );
    assert_password(&call, "PASSWORD_PLACEHOLDER");
    assert!(call.session_id.is_none());
}

#[test]
fn xmlrpc_stdlib_version_and_authenticate() {
    let version = call("xmlrpc_stdlib", "001");
    assert_eq!(version.kind, CallKind::Meta);
    assert_eq!(version.method.as_deref(), Some("version"));
    assert!(version.credential.is_none());

    let auth = call("xmlrpc_stdlib", "002");
    assert_eq!(auth.kind, CallKind::Auth);
    assert_eq!(auth.method.as_deref(), Some("authenticate"));
    assert_eq!(auth.db.as_deref(), Some("odoo19"));
    assert_eq!(auth.login.as_deref(), Some("admin"));
    assert_password(&auth, "PASSWORD_PLACEHOLDER");
    assert_eq!(login_uid(&auth, &response("xmlrpc_stdlib", "002")), Some(2));
}

#[test]
fn xmlrpc_stdlib_base64_create_and_unlink() {
    let create = call("xmlrpc_stdlib", "016");
    assert_eq!(create.model.as_deref(), Some("ir.attachment"));
    assert_eq!(create.fields, vec!["name", "datas", "res_model", "res_id"]);

    let unlink = call("xmlrpc_stdlib", "020");
    assert_eq!(unlink.method.as_deref(), Some("unlink"));
    assert_eq!(unlink.record_ids.len(), 1);
}

#[test]
fn xmlrpc_stdlib_legacy_path() {
    let call = call("xmlrpc_stdlib", "024");
    assert_eq!(call.protocol, Protocol::XmlRpcLegacy);
    assert_eq!(call.model.as_deref(), Some("no.such.model"));
    assert_eq!(call.method.as_deref(), Some("search"));
}

#[test]
fn odoolib_xmlrpc_login_and_unlink() {
    let login = call("odoolib_xmlrpc", "001");
    assert_eq!(login.protocol, Protocol::XmlRpcLegacy);
    assert_eq!(login.kind, CallKind::Auth);
    assert_eq!(login.method.as_deref(), Some("login"));
    assert_password(&login, "PASSWORD_PLACEHOLDER");

    let unlink = call("odoolib_xmlrpc", "012");
    assert_eq!(unlink.record_ids, vec![12]);
    assert_eq!(unlink.context, None);
}

#[test]
fn odoo_await_cdata_create() {
    let call = call("odoo_await", "005");
    assert_eq!(call.protocol, Protocol::XmlRpc);
    assert_eq!(call.model.as_deref(), Some("res.partner"));
    assert_eq!(call.method.as_deref(), Some("create"));
    assert_eq!(
        call.fields,
        vec![
            "name",
            "comment",
            "is_company",
            "active",
            "email",
            "phone",
            "partner_latitude",
            "partner_longitude",
            "ref",
            "category_id",
            "image_1920"
        ]
    );
    assert_password(&call, "PASSWORD_PLACEHOLDER");
}

#[test]
fn odoo_await_big_id_and_double_id() {
    let big = call("odoo_await", "009");
    assert_eq!(big.method.as_deref(), Some("read"));
    assert_eq!(big.record_ids, vec![1 << 40]);

    // A double where an id belongs is not an id, but the fields keep their
    // place after the ids slot.
    let double = call("odoo_await", "010");
    assert!(double.record_ids.is_empty());
    assert_eq!(double.fields, vec!["name"]);
}

#[test]
fn odoo_await_wrong_password_login_returns_no_uid() {
    let auth = call("odoo_await", "015");
    assert_eq!(auth.kind, CallKind::Auth);
    assert_eq!(login_uid(&auth, &response("odoo_await", "015")), None);
}

#[test]
fn odoo_xmlrpc_js_write() {
    let call = call("odoo_xmlrpc_js", "004");
    assert_eq!(call.method.as_deref(), Some("write"));
    assert_eq!(call.uid, Some(2));
    assert!(!call.record_ids.is_empty());
    assert!(!call.fields.is_empty());
}

#[test]
fn odoorpc_version_info_and_db_list() {
    let meta = call("odoorpc", "001");
    assert_eq!(meta.protocol, Protocol::Web);
    assert_eq!(meta.kind, CallKind::Meta);
    assert_eq!(meta.method.as_deref(), Some("version_info"));
    assert!(session_cookie(&response("odoorpc", "001")).is_some());

    let list = call("odoorpc", "002");
    assert_eq!(list.protocol, Protocol::JsonRpc);
    assert_eq!(list.kind, CallKind::Meta);
    assert_eq!(list.method.as_deref(), Some("list"));
    // /jsonrpc is authenticated by its password, never by the cookie.
    assert!(list.session_id.is_none());
}

#[test]
fn odoorpc_execute_write_with_commands() {
    let call = call("odoorpc", "012");
    assert_eq!(call.protocol, Protocol::JsonRpc);
    assert_eq!(call.service.as_deref(), Some("object"));
    assert_eq!(call.method.as_deref(), Some("write"));
    assert_eq!(call.record_ids, vec![8]);
    assert_eq!(call.fields, vec!["category_id", "partner_latitude", "is_company", "phone"]);
    assert_password(&call, "PASSWORD_PLACEHOLDER");
}

#[test]
fn odoorpc_execute_read_with_big_id() {
    let call = call("odoorpc", "017");
    assert_eq!(call.method.as_deref(), Some("read"));
    assert_eq!(call.record_ids, vec![1 << 40]);
    assert_eq!(call.fields, vec!["name"]);
    assert!(!call.reads_all_fields);
}

#[test]
fn odoolib_jsonrpc_login_uid() {
    let login = call("odoolib_jsonrpc", "001");
    assert_eq!(login.protocol, Protocol::JsonRpc);
    assert_eq!(login.kind, CallKind::Auth);
    assert_eq!(login.method.as_deref(), Some("login"));
    assert_eq!(login_uid(&login, &response("odoolib_jsonrpc", "001")), Some(2));
}

#[test]
fn n8n_json2_and_execute() {
    let search = call("n8n_odoo_node", "001");
    assert_eq!(search.protocol, Protocol::Json2);
    assert_eq!(search.kind, CallKind::Model);
    assert_eq!(search.model.as_deref(), Some("res.partner"));
    assert_eq!(search.method.as_deref(), Some("search_read"));
    assert_eq!(search.db.as_deref(), Some("odoo19"));
    assert_eq!(search.fields, vec!["name", "email"]);
    assert!(search.context.is_none());
    assert_bearer(&search);

    let execute = call("n8n_odoo_node", "008");
    assert_eq!(execute.protocol, Protocol::JsonRpc);
    assert_eq!(execute.method.as_deref(), Some("search_read"));
    assert_eq!(execute.fields, vec!["name", "email"]);
    assert!(execute.record_ids.is_empty());

    let create = call("n8n_odoo_node", "010");
    assert_eq!(create.method.as_deref(), Some("create"));
    assert_eq!(create.fields, vec!["name", "email", "partner_latitude", "is_company", "comment"]);

    let login = call("n8n_odoo_node", "007");
    assert_eq!(login_uid(&login, &response("n8n_odoo_node", "007")), Some(2));
}

#[test]
fn json2_docstyle_write_and_private_method() {
    let write = call("json2_requests_docstyle", "004");
    assert_eq!(write.record_ids, vec![20]);
    assert_eq!(write.fields, vec!["category_id", "partner_latitude", "is_company"]);
    assert_bearer(&write);

    let private = call("json2_requests_docstyle", "009");
    assert_eq!(private.method.as_deref(), Some("_read_format"));

    let no_key = call("json2_requests_docstyle", "013");
    assert!(no_key.credential.is_none());

    let upper = call("json2_requests_docstyle", "014");
    assert_bearer(&upper);

    let no_db = call("json2_requests_docstyle", "018");
    assert_eq!(no_db.db, None);
}

#[test]
fn json2_docstyle_create_context() {
    let create = call("json2_requests_docstyle", "003");
    assert_eq!(create.context, Some(Context::Json(serde_json::json!({"tracking_disable": true}))));
    assert!(create.fields.contains(&"image_1920".to_owned()));
}

#[test]
fn odoolib_json2_read() {
    let read = call("odoolib_json2", "006");
    assert_eq!(read.method.as_deref(), Some("read"));
    assert_eq!(read.record_ids, vec![11]);
    assert_eq!(read.fields, vec!["name", "category_id", "partner_latitude"]);
    assert!(!read.reads_all_fields);
    assert_bearer(&read);
}

#[test]
fn fernandoslim_web_session_flow() {
    let auth = call("fernandoslim_odoo_jsonrpc", "001");
    assert_eq!(auth.protocol, Protocol::Web);
    assert_eq!(auth.kind, CallKind::Auth);
    assert_eq!(auth.db.as_deref(), Some("odoo19"));
    assert_eq!(auth.login.as_deref(), Some("admin"));
    assert_password(&auth, "PASSWORD_PLACEHOLDER");
    let auth_response = response("fernandoslim_odoo_jsonrpc", "001");
    assert_eq!(login_uid(&auth, &auth_response), Some(2));
    let session = session_cookie(&auth_response).expect("login sets a session");

    let search = call("fernandoslim_odoo_jsonrpc", "002");
    assert_eq!(search.kind, CallKind::Model);
    assert_eq!(search.model.as_deref(), Some("res.partner"));
    assert_eq!(search.method.as_deref(), Some("search_read"));
    assert_eq!(search.fields, vec!["name", "email"]);
    assert_eq!(search.context, Some(Context::Json(serde_json::json!({"lang": "en_US", "active_test": false}))));
    assert!(search.credential.is_none());
    assert_eq!(search.session_id.as_ref(), Some(&session));

    let destroy = call("fernandoslim_odoo_jsonrpc", "009");
    assert_eq!(destroy.kind, CallKind::Meta);
    assert_eq!(destroy.method.as_deref(), Some("destroy"));

    let api_key = call("fernandoslim_odoo_jsonrpc", "010");
    assert_eq!(api_key.protocol, Protocol::JsonRpc);
    assert_eq!(api_key.kind, CallKind::Auth);
    assert_eq!(api_key.method.as_deref(), Some("authenticate"));
    assert_password(&api_key, "APIKEY_PLACEHOLDER_000000000000000000000");
}

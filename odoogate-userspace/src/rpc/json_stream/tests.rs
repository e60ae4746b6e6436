//! The one-pass JSON decoders against the value-tree decoders they replace:
//! on every body where the one-pass decoder returns a call, the tree
//! decoder must return the same call.

use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::rpc::call::Context;
use crate::rpc::web::Route;
use crate::rpc::{json2, jsonrpc, web};

/// Returns the call [`super::decode_jsonrpc`] decodes, or `None` when it
/// leaves the body to the tree decoder.
fn decode_jsonrpc(body: &[u8], max_depth: usize) -> Option<Call> {
    let mut call = Call::new(Protocol::JsonRpc, CallKind::Model);
    super::decode_jsonrpc(body, max_depth, &mut call).then_some(call)
}

/// Returns the call [`super::decode_web_call`] decodes, or `None` when it
/// leaves the body to the tree decoder.
fn decode_web_call(route: Route, body: &[u8], max_depth: usize) -> Option<Call> {
    let mut call = Call::new(Protocol::Web, CallKind::Model);
    super::decode_web_call(route, body, max_depth, &mut call).then_some(call)
}

/// Returns the call [`super::decode_web_authenticate`] decodes, or `None`
/// when it leaves the body to the tree decoder.
fn decode_web_authenticate(body: &[u8], max_depth: usize) -> Option<Call> {
    let mut call = Call::new(Protocol::Web, CallKind::Model);
    super::decode_web_authenticate(body, max_depth, &mut call).then_some(call)
}

/// Tells whether [`super::read_json2_body`] reads a JSON-2 body for `method`.
fn reads_json2_body(method: &str, body: &[u8], max_depth: usize) -> bool {
    super::read_json2_body(&mut json2_extraction(method), body, max_depth)
}

/// A JSON value whose objects may repeat keys, written by hand because
/// `serde_json::Value` cannot hold a repeated key.
#[derive(Clone, Debug)]
enum Doc {
    Raw(&'static str),
    Int(i64),
    Str(String),
    List(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl Doc {
    fn write(&self, out: &mut String) {
        match self {
            Self::Raw(raw) => out.push_str(raw),
            Self::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Self::Str(text) => out.push_str(&serde_json::to_string(text).unwrap()),
            Self::List(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Self::Object(members) => {
                out.push('{');
                for (index, (key, value)) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).unwrap());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

const KEYS: &[&str] = &[
    "name", "email", "line_ids", "child_ids", "fields", "vals", "vals_list", "default", "specification",
    "fields_to_export", "context", "ids", "model", "method", "lang", "n\u{e4}me", "esc\"aped",
];
const SCALARS: &[&str] = &[
    "null", "true", "false", "0", "1", "7", "-3", "5.0", "1.5", "1e3", "9223372036854775807", "9223372036854775808",
    "18446744073709551616", "-9223372036854775809", "\"x\"", "\"\\u00e9\\n\"", "\"\\ud83d\\ude80\"", "[]", "{}",
];
const METHODS: &[&str] = &[
    "create", "write", "copy", "web_save", "read", "load", "search_read", "read_group", "export_data", "web_read",
    "web_search_read", "unlink", "action_confirm", "search", "name_search",
];

fn doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        proptest::sample::select(SCALARS).prop_map(Doc::Raw),
        (-5i64..600).prop_map(Doc::Int),
        proptest::sample::select(KEYS).prop_map(|key| Doc::Str(key.to_owned())),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Doc::List),
            // An x2many command with values.
            (0i64..3, inner.clone(), inner.clone()).prop_map(|(code, id, values)| Doc::List(vec![Doc::Int(code), id, values])),
            proptest::collection::vec((proptest::sample::select(KEYS).prop_map(str::to_owned), inner), 0..5).prop_map(Doc::Object),
        ]
    })
}

/// Generates a keyword arguments object of named slots, sometimes with a repeat.
fn kwargs() -> impl Strategy<Value = Doc> {
    proptest::collection::vec((proptest::sample::select(KEYS).prop_map(str::to_owned), doc()), 0..5).prop_map(Doc::Object)
}

/// Members in a random order, sometimes with a shadowed earlier copy.
fn shuffled(members: Vec<(String, Doc)>, order: Vec<usize>, shadow: Option<usize>) -> Doc {
    let mut ordered: Vec<(String, Doc)> = order.iter().filter_map(|index| members.get(*index).cloned()).collect();
    for (index, member) in members.iter().enumerate() {
        if !order.contains(&index) {
            ordered.push(member.clone());
        }
    }
    if let Some(shadow) = shadow
        && let Some((key, _)) = members.get(shadow % members.len().max(1))
    {
        ordered.insert(0, (key.clone(), Doc::Str("shadowed".to_owned())));
    }
    Doc::Object(ordered)
}

fn order() -> impl Strategy<Value = Vec<usize>> {
    Just(vec![0usize, 1, 2, 3]).prop_shuffle()
}

fn jsonrpc_body() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("object"), Just("common"), Just("db"), Just("report")],
        prop_oneof![Just("execute_kw"), Just("execute"), Just("login"), Just("drop"), Just("version")],
        proptest::sample::select(METHODS),
        proptest::collection::vec(doc(), 0..4),
        proptest::option::of(kwargs()),
        (order(), proptest::option::weighted(0.1, 0usize..3)),
        doc(),
    )
        .prop_map(|(service, method, model_method, args, kwargs, (order, shadow), uid)| {
            let mut params =
                vec![Doc::Str("odoo19".to_owned()), uid, Doc::Str("pw".to_owned()), Doc::Str("res.partner".to_owned()), Doc::Str(model_method.to_owned())];
            if method == "execute_kw" {
                params.push(Doc::List(args));
                params.extend(kwargs);
            } else {
                params.extend(args);
            }
            let members = vec![
                ("service".to_owned(), Doc::Str(service.to_owned())),
                ("method".to_owned(), Doc::Str(method.to_owned())),
                ("args".to_owned(), Doc::List(params)),
            ];
            let envelope = Doc::Object(vec![
                ("jsonrpc".to_owned(), Doc::Str("2.0".to_owned())),
                ("params".to_owned(), shuffled(members, order, shadow)),
                ("id".to_owned(), Doc::Int(1)),
            ]);
            envelope.text()
        })
}

fn web_body() -> impl Strategy<Value = String> {
    (proptest::sample::select(METHODS), proptest::collection::vec(doc(), 0..4), kwargs(), order(), proptest::option::weighted(0.1, 0usize..4))
        .prop_map(|(method, args, kwargs, order, shadow)| {
            let members = vec![
                ("model".to_owned(), Doc::Str("res.partner".to_owned())),
                ("method".to_owned(), Doc::Str(method.to_owned())),
                ("args".to_owned(), Doc::List(args)),
                ("kwargs".to_owned(), kwargs),
            ];
            Doc::Object(vec![("params".to_owned(), shuffled(members, order, shadow))]).text()
        })
}

/// Compares the one-pass and tree decoders on a `/jsonrpc` body.
fn assert_jsonrpc_agrees(body: &str) {
    let tree = jsonrpc::decode_request_tree(body.as_bytes(), 64);
    if let Some(call) = decode_jsonrpc(body.as_bytes(), 64) {
        assert_eq!(tree.as_ref(), Ok(&call), "body: {body}");
    }
}

fn assert_web_agrees(route: Route, body: &str) {
    let tree = web::decode_call_tree(route, body.as_bytes(), 64);
    if let Some(call) = decode_web_call(route, body.as_bytes(), 64) {
        assert_eq!(tree.as_ref(), Ok(&call), "body: {body}");
    }
}

fn json2_request(method: &str, body: &str) -> crate::http::HttpRequest {
    use crate::http::message::{Headers, HttpVersion};
    crate::http::HttpRequest {
        method: "POST".to_owned(),
        target: format!("/json/2/res.partner/{method}"),
        version: HttpVersion::Http11,
        headers: Headers(vec![("Authorization".into(), bytes::Bytes::from_static(b"bearer k"))]),
        body: bytes::Bytes::from(body.to_owned()),
        body_truncated: false,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    }
}

fn assert_json2_agrees(method: &str, body: &str) {
    let request = json2_request(method, body);
    let tree = json2::decode_request_tree("res.partner", method, &request, 64);
    let streamed = json2::decode_request("res.partner", method, &request, 64);
    assert_eq!(tree, streamed, "body: {body}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn jsonrpc_matches_tree_decoder(body in jsonrpc_body()) {
        assert_jsonrpc_agrees(&body);
    }

    #[test]
    fn web_call_matches_tree_decoder(body in web_body(), button in any::<bool>()) {
        assert_web_agrees(if button { Route::CallButton } else { Route::CallKw }, &body);
    }

    #[test]
    fn json2_matches_tree_decoder(method in proptest::sample::select(METHODS), body in kwargs()) {
        assert_json2_agrees(method, &body.text());
    }

    #[test]
    fn json2_any_value_matches_tree_decoder(method in proptest::sample::select(METHODS), body in doc()) {
        assert_json2_agrees(method, &body.text());
    }
}

#[test]
fn canonical_bodies_take_the_one_pass_path() {
    let body = r#"{"jsonrpc":"2.0","method":"call","params":{"service":"object","method":"execute_kw","args":["db",2,"pw","res.partner","create",[[{"name":"a","line_ids":[[0,0,{"qty":1}]]}]],{"context":{"lang":"en_US"}}]},"id":1}"#;
    let call = decode_jsonrpc(body.as_bytes(), 64).expect("the one-pass decoder reads a canonical body");
    assert_eq!(call.fields, vec!["name", "line_ids", "line_ids.qty"]);
    assert_jsonrpc_agrees(body);

    let body = r#"{"params":{"model":"res.partner","method":"read","args":[[4]],"kwargs":{"fields":["name"]}}}"#;
    let call = decode_web_call(Route::CallKw, body.as_bytes(), 64).expect("the one-pass decoder reads call_kw");
    assert_eq!(call.record_ids, vec![4]);
    assert_web_agrees(Route::CallKw, body);

    let body = r#"{"ids":[3],"vals":{"name":"x"},"context":{"lang":"en_US"}}"#;
    assert!(reads_json2_body("write", body.as_bytes(), 64));
    assert_json2_agrees("write", body);
}

#[test]
fn last_params_key_wins() {
    let execute = r#"{"service":"object","method":"execute","args":["db",2,"pw","res.partner","write",[7],{"name":"x"}]}"#;
    let read = r#"{"service":"object","method":"execute","args":["db",2,"pw","res.partner","read",[8]]}"#;
    let body = format!(r#"{{"params":{execute},"params":{read}}}"#);
    let call = decode_jsonrpc(body.as_bytes(), 64).expect("the last params is an object");
    assert_eq!(call.method.as_deref(), Some("read"));
    assert_eq!(call.record_ids, vec![8]);
    assert_jsonrpc_agrees(&body);

    let body = format!(r#"{{"params":{execute},"params":1}}"#);
    assert!(decode_jsonrpc(body.as_bytes(), 64).is_none());
    assert!(jsonrpc::decode_request_tree(body.as_bytes(), 64).is_err());

    let call_kw = r#"{"model":"res.partner","method":"read","args":[[4]],"kwargs":{}}"#;
    let body = format!(r#"{{"params":{call_kw},"params":[]}}"#);
    assert!(decode_web_call(Route::CallKw, body.as_bytes(), 64).is_none());
    let body = format!(r#"{{"params":[],"params":{call_kw}}}"#);
    assert_eq!(decode_web_call(Route::CallKw, body.as_bytes(), 64).map(|call| call.record_ids), Some(vec![4]));
    assert_web_agrees(Route::CallKw, &body);

    let body = r#"{"params":{"db":"a","login":"u","password":"p"},"params":{"db":"b"}}"#;
    let call = decode_web_authenticate(body.as_bytes(), 64).expect("the last params is an object");
    assert_eq!(call.db.as_deref(), Some("b"));
    assert_eq!(call.login, None);
    assert!(call.credential.is_none());
}

#[test]
fn args_before_method_is_read_again() {
    let body = r#"{"params":{"args":["db",2,"pw","res.partner","write",[7],{"name":"x"}],"service":"object","method":"execute"}}"#;
    let call = decode_jsonrpc(body.as_bytes(), 64).expect("a second pass reads the args");
    assert_eq!(call.record_ids, vec![7]);
    assert_eq!(call.fields, vec!["name"]);
    assert_jsonrpc_agrees(body);

    let body = r#"{"params":{"kwargs":{},"args":[[4],{"name":"x"}],"method":"write","model":"res.partner"}}"#;
    assert!(decode_web_call(Route::CallKw, body.as_bytes(), 64).is_some());
    assert_web_agrees(Route::CallKw, body);
}

#[test]
fn repeated_record_key_falls_back_to_tree() {
    let body = r#"{"params":{"service":"object","method":"execute_kw","args":["db",2,"pw","res.partner","create",[{"a":[[0,0,{"x":1}]],"b":1,"a":2}]]}}"#;
    assert!(decode_jsonrpc(body.as_bytes(), 64).is_none());
    let call = jsonrpc::decode_request(body.as_bytes(), 64).unwrap();
    assert_eq!(call.fields, vec!["a", "b"]);
}

#[test]
fn invalid_bodies_fall_back_to_tree_errors() {
    for body in [
        r#"{"params":{"service":"object","method":"execute","args":["db",2,"pw","m","read",1e400]}}"#,
        r#"{"params":{"service":"object","method":"execute","args":["db",2,"pw","m","read","\ud800"]}}"#,
        r#"{"params":{"service":"object","method":"execute","args":["db",2,"pw","m","read"]} x"#,
        r#"{"params":{"service":"object","method":"execute_kw","args":["db",2,"pw","m","read"]}}"#,
    ] {
        assert!(decode_jsonrpc(body.as_bytes(), 64).is_none(), "{body}");
        assert!(jsonrpc::decode_request(body.as_bytes(), 64).is_err(), "{body}");
    }
}

/// Every JSON request body of the Odoo 19 captures decodes the same both ways.
#[test]
fn captures_match_tree_decoder() {
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/odoo19-captures");
    let mut compared = 0;
    for folder in std::fs::read_dir(&captures).unwrap().filter_map(Result::ok) {
        for file in std::fs::read_dir(folder.path()).into_iter().flatten().filter_map(Result::ok) {
            let name = file.file_name().to_string_lossy().into_owned();
            if !name.ends_with("-req.http") {
                continue;
            }
            let raw = std::fs::read(file.path()).unwrap();
            let Some(split) = raw.windows(4).position(|window| window == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..split]).into_owned();
            let body = String::from_utf8_lossy(&raw[split + 4..]).into_owned();
            let target = head.split_whitespace().nth(1).unwrap_or("");
            if target == "/jsonrpc" {
                assert_jsonrpc_agrees(&body);
                compared += 1;
            } else if let Some(route @ (Route::CallKw | Route::CallButton)) = web::route(target) {
                assert_web_agrees(route, &body);
                compared += 1;
            } else if let Some((_, method)) = json2::route(target) {
                assert_json2_agrees(method, &body);
                compared += 1;
            }
        }
    }
    assert!(compared > 50, "only {compared} captured JSON bodies were compared");
}

#[test]
fn repeated_key_in_large_object_is_found() {
    let object = |keys: &[usize]| keys.iter().map(|key| format!("\"k{key}\":1")).collect::<Vec<_>>().join(",");
    let body = |values: String| {
        format!(r#"{{"params":{{"service":"object","method":"execute","args":["db",2,"pw","m","write",[1],{{{values}}}]}}}}"#)
    };
    let distinct: Vec<usize> = (0..40).collect();
    let call = decode_jsonrpc(body(object(&distinct)).as_bytes(), 64).expect("distinct keys stream");
    assert_eq!(call.fields.len(), 40);

    let mut repeated = distinct.clone();
    repeated.push(3);
    assert!(decode_jsonrpc(body(object(&repeated)).as_bytes(), 64).is_none());
    assert_jsonrpc_agrees(&body(object(&repeated)));
}

#[test]
fn false_position_hides_keyword() {
    let body = r#"{"params":{"model":"res.partner","method":"export_data","args":[null, false],"kwargs":{"fields_to_export":["name"]}}}"#;
    let call = decode_web_call(Route::CallKw, body.as_bytes(), 64).expect("the one-pass decoder reads the body");
    assert!(call.fields.is_empty());
    assert!(call.reads_all_fields);
    assert_web_agrees(Route::CallKw, body);
}

#[test]
fn repeated_key_found_across_field_set_growth() {
    // `k0` is first met while the field set is short and scanned, and again
    // once it is hashed.
    let keys: Vec<String> = (0..20).map(|key| format!("\"k{key}\":1")).collect();
    let body = format!(
        r#"{{"params":{{"service":"object","method":"execute","args":["db",2,"pw","m","write",[1],{{{},"k0":2}}]}}}}"#,
        keys.join(",")
    );
    assert!(decode_jsonrpc(body.as_bytes(), 64).is_none());
    assert_jsonrpc_agrees(&body);
}

#[test]
fn rolled_back_nested_name_is_not_a_repeat() {
    // The four-item list is not a command, so `a.b` is rolled back, and the
    // key `a.b` that follows is new to its object.
    let body = r#"{"params":{"service":"object","method":"execute","args":["db",2,"pw","m","write",[1],{"a":[[0,0,{"b":1},9]],"a.b":1,"c":[[1,5,{"b":2}]]}]}}"#;
    let call = decode_jsonrpc(body.as_bytes(), 64).expect("no key repeats");
    assert_eq!(call.fields, vec!["a", "a.b", "c", "c.b"]);
    assert_jsonrpc_agrees(body);

    let repeated = body.replace(r#""c":"#, r#""a.b":2,"c":"#);
    assert!(decode_jsonrpc(repeated.as_bytes(), 64).is_none());
    assert_jsonrpc_agrees(&repeated);
}

#[test]
fn long_field_lists_match_tree_decoder() {
    // Lists past the linear scan and past the fast hasher, with repeats,
    // escaped names and items that are not names.
    for count in [3, 17, 54, 200, 1400] {
        let mut names: Vec<String> = (0..count).map(|index| format!("\"f{}\"", index % (count * 3 / 4 + 1))).collect();
        names.extend(["\"f\\u0031\"".to_owned(), "7".to_owned(), "[\"nested\"]".to_owned(), "null".to_owned()]);
        let list = names.join(",");
        for args in
            [format!(r#"[[1],[{list}]]"#), format!(r#"[[1]],{{"fields":[{list}]}}"#), format!(r#"[[1],["x"]],{{"fields":[{list}]}}"#)]
        {
            let body = format!(r#"{{"params":{{"service":"object","method":"execute_kw","args":["db",2,"pw","m","read",{args}]}}}}"#);
            let call = decode_jsonrpc(body.as_bytes(), 64).expect("the one-pass decoder reads a field list");
            assert!(call.fields.contains("f1"), "{body}");
            assert_jsonrpc_agrees(&body);
        }
    }
}

#[test]
fn fields_keyword_values_match_tree_decoder() {
    // The `fields` keyword both fills `read`'s slot and adds names of its
    // own, as a list, as `false` or `null`, or as another value.
    for fields in ["[\"a\",\"b\"]", "[]", "[1]", "false", "null", "true", "\"a\"", "{\"a\":1}", "7"] {
        for method in ["read", "search_read", "write", "web_read", "export_data"] {
            for args in ["[[1]]", "[[1],[\"c\"]]", "[[1],false]", "[[1],[\"c\"],[\"d\"]]"] {
                let body = format!(r#"{{"params":{{"model":"m","method":"{method}","args":{args},"kwargs":{{"fields":{fields}}}}}}}"#);
                assert!(decode_web_call(Route::CallKw, body.as_bytes(), 64).is_some(), "{body}");
                assert_web_agrees(Route::CallKw, &body);
            }
            assert_json2_agrees(method, &format!(r#"{{"ids":[1],"fields":{fields}}}"#));
        }
    }
}

/// Context values with repeated keys, escapes, non-ASCII text, numbers that
/// serde_json reads as floats, nesting, and values that are no objects.
const CONTEXTS: [&str; 12] = [
    r#"{"lang":"en_US"}"#,
    r#"{"lang":"en_US","tz":"UTC","lang":"fr_BE"}"#,
    r#"{"a":-0,"b":1e5,"c":18446744073709551616,"d":1.5,"e":-12,"f":123456789012345678901234567890}"#,
    r#"{"\u0066ields":"caf\u00e9 \ud83d\ude80","t":"Söhne 🚀","q":"a\"b\\c\n"}"#,
    r#"{"n":[[[{"d":{"e":[{}]}}]]],"m":{"m":{"m":null}}}"#,
    r#" { "spaced" : [ 1 , 2 ] , "x" : { } } "#,
    "{}",
    "[1]",
    r#""text""#,
    "null",
    "false",
    "7",
];

#[test]
fn context_text_matches_tree_decoder() {
    for context in CONTEXTS {
        let jsonrpc = format!(
            r#"{{"params":{{"service":"object","method":"execute_kw","args":["db",2,"pw","res.partner","read",[[1]],{{"fields":["name"],"context":{context}}}]}}}}"#
        );
        assert!(decode_jsonrpc(jsonrpc.as_bytes(), 64).is_some(), "{jsonrpc}");
        assert_jsonrpc_agrees(&jsonrpc);

        let web = format!(
            r#"{{"params":{{"model":"res.partner","method":"write","args":[[4],{{"name":"x"}}],"kwargs":{{"context":{context}}}}}}}"#
        );
        assert!(decode_web_call(Route::CallKw, web.as_bytes(), 64).is_some(), "{web}");
        assert_web_agrees(Route::CallKw, &web);

        let json2 = format!(r#"{{"ids":[3],"vals":{{"name":"x"}},"context":{context}}}"#);
        assert!(reads_json2_body("write", json2.as_bytes(), 64), "{json2}");
        assert_json2_agrees("write", &json2);
    }
}

#[test]
fn context_object_is_kept_as_its_text() {
    let body = br#"{"params":{"model":"res.partner","method":"search","args":[[]],"kwargs":{"context": {"lang" : "fr_BE"} }}}"#;
    let call = decode_web_call(Route::CallKw, body, 64).expect("the one-pass decoder reads call_kw");
    assert_eq!(call.context, Some(Context::Text(r#"{"lang" : "fr_BE"}"#.into())));
    assert_eq!(call.context, Some(Context::Json(serde_json::json!({"lang": "fr_BE"}))));
}

#[test]
fn context_key_sent_twice_keeps_last() {
    let cases = [
        (r#"{"context":{"a":1},"context":{"b":2}}"#, Some(serde_json::json!({"b": 2}))),
        (r#"{"context":{"a":1},"context":false}"#, None),
        (r#"{"context":[1],"\u0063ontext":{"c":3}}"#, Some(serde_json::json!({"c": 3}))),
        (r#"{"\u0063ontext":{"c":3},"context":"x"}"#, None),
    ];
    for (body, expected) in cases {
        assert!(reads_json2_body("search", body.as_bytes(), 64), "{body}");
        assert_json2_agrees("search", body);
        let call = json2::decode_request("res.partner", "search", &json2_request("search", body), 64).expect("the body decodes");
        assert_eq!(call.context, expected.map(Context::Json), "{body}");
    }
}

#[test]
fn too_deep_context_falls_back_to_tree_error() {
    let context = format!("{}{}", r#"{"a":"#.repeat(70), "}".repeat(70));
    let body = format!(r#"{{"ids":[3],"context":{context}}}"#);
    assert!(!reads_json2_body("write", body.as_bytes(), 64));
    assert_json2_agrees("write", &body);
    let jsonrpc = format!(
        r#"{{"params":{{"service":"object","method":"execute_kw","args":["db",2,"pw","m","search",[[]],{{"context":{context}}}]}}}}"#
    );
    assert!(decode_jsonrpc(jsonrpc.as_bytes(), 64).is_none());
}

#[test]
fn context_equality_compares_values() {
    let text = |text: &str| Context::Text(text.into());
    assert_eq!(text(r#"{"a":1,"b":[2]}"#), Context::Json(serde_json::json!({"b": [2], "a": 1})));
    assert_eq!(text(r#"{"a":1}"#), text(r#"{ "a" : 1 }"#));
    assert_eq!(text(r#"{"a":1,"a":2}"#), text(r#"{"a":2}"#));
    assert_ne!(text(r#"{"a":1}"#), text(r#"{"a":2}"#));
    assert_ne!(text(r#"{"a":1}"#), Context::Json(serde_json::json!({"a": 1.0})));
    assert_ne!(text("{"), Context::Json(serde_json::json!({})));
}

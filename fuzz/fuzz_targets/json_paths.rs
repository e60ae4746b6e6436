//! The one-pass JSON decoders against the `serde_json::Value` tree decoders
//! they stand in for, on arbitrary bodies for `/jsonrpc`, the web session
//! routes and JSON-2. Each surface's `decode_request` (one pass, falling
//! back to the tree for the bodies it leaves) must return exactly what the
//! tree decoder returns: the same call, or the same error.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use odoogate::http::message::{Headers, HttpRequest, HttpVersion};
use odoogate::rpc::web::{self, Route};
use odoogate::rpc::{json2, jsonrpc};

const MAX_DEPTH: usize = 64;

/// JSON-2 methods with different argument slots.
const JSON2_METHODS: [&str; 10] =
    ["write", "create", "copy", "web_save", "read", "search_read", "export_data", "web_read", "web_search_read", "unlink"];

/// Separates the body from the header values in `decode_json`'s inputs.
const SEPARATOR: &[u8] = b"\xff\xff";

fn request(target: &str, body: &[u8]) -> HttpRequest {
    HttpRequest {
        method: "POST".to_owned(),
        target: target.to_owned(),
        version: HttpVersion::Http11,
        headers: Headers(Vec::new()),
        body: Bytes::copy_from_slice(body),
        body_truncated: false,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    }
}

// The input layout is `decode_json`'s, so its corpus seeds this target:
// byte 0 picks the surface (and the JSON-2 method), bytes 1 and 2 are
// unused, and the body runs up to the first `SEPARATOR`.
fuzz_target!(|data: &[u8]| {
    let [selector, _, _, rest @ ..] = data else {
        return;
    };
    let body = rest.windows(SEPARATOR.len()).position(|window| window == SEPARATOR).map_or(rest, |end| &rest[..end]);
    match selector % 5 {
        0 => assert_eq!(jsonrpc::decode_request(body, MAX_DEPTH), jsonrpc::decode_request_tree(body, MAX_DEPTH)),
        1 => {
            let request = request("/web/session/authenticate", body);
            let decoded = web::decode_request(Route::Authenticate, "/web/session/authenticate", &request, MAX_DEPTH);
            assert_eq!(decoded, web::decode_authenticate_tree(body, MAX_DEPTH));
        }
        2 | 3 => {
            let (route, path) =
                if selector % 5 == 2 { (Route::CallKw, "/web/dataset/call_kw") } else { (Route::CallButton, "/web/dataset/call_button") };
            let decoded = web::decode_request(route, path, &request(path, body), MAX_DEPTH);
            assert_eq!(decoded, web::decode_call_tree(route, body, MAX_DEPTH));
        }
        _ => {
            let method = JSON2_METHODS[usize::from(selector / 5) % JSON2_METHODS.len()];
            let request = request(&format!("/json/2/res.partner/{method}"), body);
            let decoded = json2::decode_request("res.partner", method, &request, MAX_DEPTH);
            assert_eq!(decoded, json2::decode_request_tree("res.partner", method, &request, MAX_DEPTH));
        }
    }
});

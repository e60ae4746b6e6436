//! `rpc::decode_request` on arbitrary XML-RPC bodies, and the response
//! decoder on the same bytes. Checks: no panic, and record ids within
//! their bound.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use odoogate::http::message::{Headers, HttpRequest, HttpResponse, HttpVersion};
use odoogate::rpc::call::MAX_RECORD_IDS;
use odoogate::rpc::{DecodeLimits, decode_request, decode_response};

const PATHS: [&str; 4] = ["/xmlrpc/2/object", "/xmlrpc/2/common", "/xmlrpc/db", "/xmlrpc/object"];
const LIMITS: DecodeLimits = DecodeLimits { max_depth: 64, max_body_bytes: 1 << 20 };

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let request = HttpRequest {
        method: "POST".to_owned(),
        target: PATHS[usize::from(selector) % PATHS.len()].to_owned(),
        version: HttpVersion::Http11,
        headers: Headers::default(),
        body: Bytes::copy_from_slice(body),
        body_truncated: false,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    };
    let Ok(Some(call)) = decode_request(&request, &LIMITS) else {
        return;
    };
    assert!(call.record_ids.len() <= MAX_RECORD_IDS);

    let response = HttpResponse {
        status: 200,
        reason: "OK".to_owned(),
        version: HttpVersion::Http11,
        headers: Headers::default(),
        body: request.body.clone(),
        body_truncated: selector & 0x80 != 0,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    };
    let _ = decode_response(&call, &response);
});

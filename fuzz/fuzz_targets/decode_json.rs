//! `rpc::decode_request` on arbitrary JSON bodies sent to `/jsonrpc`, the
//! web session routes and JSON-2, with arbitrary credential headers, and
//! the response decoder on the same bytes. Checks: no panic, and record
//! ids within their bound.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use odoogate::http::message::{HeaderName, Headers, HttpRequest, HttpResponse, HttpVersion};
use odoogate::rpc::call::MAX_RECORD_IDS;
use odoogate::rpc::{DecodeLimits, decode_request, decode_response};

const PATHS: [&str; 7] = [
    "/jsonrpc",
    "/web/session/authenticate",
    "/web/dataset/call_kw/res.partner/read",
    "/web/dataset/call_button",
    "/json/2/res.partner/write",
    "/json/2/sale.order/search_read",
    "/web/webclient/version_info",
];
const HEADER_NAMES: [&str; 6] =
    ["Authorization", "X-Odoo-Database", "Cookie", "X-Openerp-Session-Id", "X-Odoogate-Token", "Content-Encoding"];
const LIMITS: DecodeLimits = DecodeLimits { max_depth: 64, max_body_bytes: 1 << 20 };

/// Separates the body from the header values in the input.
const SEPARATOR: &[u8] = b"\xff\xff";

/// The input layout. Byte 0 picks the path. Bit 0 of byte 1 picks the
/// method (POST or GET), and bits 1 to 6 the headers present. Byte 2 is
/// the response status minus 200. The body and the header values follow,
/// separated by `SEPARATOR`, so a captured body with three bytes in front
/// is a seed.
struct Input<'a> {
    path: u8,
    flags: u8,
    status: u16,
    body: &'a [u8],
    header_values: Vec<&'a [u8]>,
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let [path, flags, status, rest @ ..] = data else {
            return None;
        };
        let mut parts = split(rest);
        let body = parts.remove(0);
        Some(Self { path: *path, flags: *flags, status: 200 + u16::from(*status), body, header_values: parts })
    }

    fn headers(&self) -> Vec<(HeaderName, Bytes)> {
        let present = HEADER_NAMES.iter().enumerate().filter(|(index, _)| self.flags & (2 << index) != 0);
        present
            .zip(self.header_values.iter().chain(std::iter::repeat(&&b""[..])))
            .map(|((_, name), value)| ((*name).into(), Bytes::copy_from_slice(value)))
            .collect()
    }
}

fn split(bytes: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while let Some(index) = rest.windows(SEPARATOR.len()).position(|window| window == SEPARATOR) {
        parts.push(&rest[..index]);
        rest = &rest[index + SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let request = HttpRequest {
        method: if input.flags & 1 == 1 { "POST" } else { "GET" }.to_owned(),
        target: PATHS[usize::from(input.path) % PATHS.len()].to_owned(),
        version: HttpVersion::Http11,
        headers: Headers(input.headers()),
        body: Bytes::copy_from_slice(input.body),
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
        status: input.status,
        reason: String::new(),
        version: HttpVersion::Http11,
        headers: request.headers.clone(),
        body: request.body.clone(),
        body_truncated: input.status % 2 == 1,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    };
    let _ = decode_response(&call, &response);
});

//! HTTP request smuggling and desync cases, run against both modes.
//!
//! Each case is a byte stream that a strict HTTP/1.1 parser and Odoo's
//! werkzeug server could split into requests differently, or that hides
//! a second request where one parser reads only a body. For every case:
//!
//! - enforce mode (the listen-mode proxy in front of the Odoo-like
//!   upstream, which needs python3) must answer 400, or deny the call, or
//!   close, and must forward no call: the upstream logs no request to an
//!   RPC route and never answers the client;
//! - observe mode (the in-memory pipeline, fed synthetic TCP segments)
//!   must write a `framing_anomaly`, `decode_error` or `would_deny` record
//!   and no `allow` call record.
//!
//! Except in the last few cases, which try to pass a call outside its scope
//! off as no call, every call in these streams is one the `reader`
//! integration may make, so a request that slipped through unflagged would
//! show up as `allow`.
//!
//! Left out, because odoogate and werkzeug read them the same way, so
//! there is nothing to smuggle:
//! - `Content-Length: 05`: both read 5 (Python's `int()` accepts leading
//!   zeros, and odoogate reads the digits as decimal);
//! - chunk sizes with leading zeros (`0005`): both read 5;
//! - `Transfer-Encoding: chunked` alone in an HTTP/1.0 request: werkzeug
//!   dechunks regardless of the version, and so does odoogate;
//! - `Transfer-Encoding: CHUNKED` or `chunked ` alone: werkzeug 3.1 finds
//!   `chunked` in the field's list ignoring case and spaces, as odoogate
//!   does;
//! - `Expect: 100-continue` with a sound body: odoogate answers the 100
//!   itself and forwards the request framed by `Content-Length`, which
//!   werkzeug reads the same way.

mod support;

use support::{Records, Upstream};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use odoogate::audit::{AuditEvent, AuditRecord, Decision};
use odoogate::capture::{CaptureEvent, Segment, TcpFlags};
use odoogate::pipeline::Pipeline;
use odoogate::proxy::{DirectConnector, Proxy};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const API_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";
const DB: &str = "odoo19";

/// The `Server` field of the upstream's responses, which the responses
/// odoogate writes itself never carry.
const UPSTREAM_SERVER: &str = "odoogate Odoo-like upstream";

// === the cases ===

/// What enforce mode must do with a case, besides forwarding nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Enforce {
    /// Answer `400 BAD REQUEST` and close.
    BadRequest,
    /// Answer with its own error (a denial or an undecodable-call error),
    /// or close without an answer.
    NotForwarded,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    enforce: Enforce,
    /// Closes the client's sending side after the bytes.
    half_close: bool,
}

fn case(name: &'static str, bytes: Vec<u8>) -> Case {
    Case { name, bytes, enforce: Enforce::BadRequest, half_close: false }
}

/// A case that ends in the middle of a request, or that odoogate answers
/// itself on a connection it keeps open, so the client closes its side.
fn not_forwarded(name: &'static str, bytes: Vec<u8>) -> Case {
    Case { name, bytes, enforce: Enforce::NotForwarded, half_close: true }
}

/// Returns a JSON-RPC `execute_kw` body for `res.partner.<method>` with the key.
fn call_body(method: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "method": "call", "id": 7,
        "params": {"service": "object", "method": "execute_kw", "args": [DB, 2, API_KEY, "res.partner", method, [[]], {}]},
    })
    .to_string()
}

/// Returns a sound request with an allowed call, the one smuggled behind
/// another.
fn hidden() -> Vec<u8> {
    let body = call_body("read");
    format!("POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

/// `POST /jsonrpc` with the given header lines (each ending in CRLF) and
/// body bytes, without any framing field of its own.
fn jsonrpc(fields: &str, body: &[u8]) -> Vec<u8> {
    raw_request("POST /jsonrpc HTTP/1.1", fields, body)
}

fn raw_request(request_line: &str, fields: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{request_line}\r\nHost: odoo\r\nContent-Type: application/json\r\n{fields}\r\n").into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `data` as one chunk and the last chunk.
fn chunked(data: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{:x}\r\n", data.len()).into_bytes();
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(b"\r\n0\r\n\r\n");
    bytes
}

/// Returns the allowed call chunked, followed by the hidden request. A
/// reader that honours the chunked framing reads two requests, and one that
/// uses a `Content-Length` covering all of it reads one.
fn chunked_then_hidden() -> Vec<u8> {
    let mut bytes = chunked(call_body("search_read").as_bytes());
    bytes.extend(hidden());
    bytes
}

/// Returns a request with the framing `fields` and the body of
/// [`chunked_then_hidden`], where `{len}` in `fields` stands for its
/// length.
fn ambiguous(fields: &str) -> Vec<u8> {
    let body = chunked_then_hidden();
    jsonrpc(&fields.replace("{len}", &body.len().to_string()), &body)
}

/// Returns the allowed call framed by a `Content-Length` written as `value`, with
/// the hidden request after it.
fn content_length(value: &str) -> Vec<u8> {
    let mut body = call_body("search_read").into_bytes();
    body.extend(hidden());
    jsonrpc(&format!("Content-Length: {value}\r\n"), &body)
}

/// Returns a chunked request to `path` whose body is `chunk_stream` verbatim.
fn chunk_stream(path: &str, chunk_stream: &[u8]) -> Vec<u8> {
    raw_request(&format!("POST {path} HTTP/1.1"), "Transfer-Encoding: chunked\r\n", chunk_stream)
}

/// A streamed (not decoded) route, whose body odoogate passes through.
const UPLOAD: &str = "/mail/attachment/upload";

fn cases() -> Vec<Case> {
    let call = call_body("search_read");
    let len = call.len();
    let hidden = String::from_utf8(hidden()).unwrap();
    let mut cases = Vec::new();

    // CL.CL: two lengths, werkzeug takes the last.
    cases.push(case("CL.CL same value twice", content_length(&format!("{len}\r\nContent-Length: {len}"))));
    cases.push(case(
        "CL.CL different values",
        content_length(&format!("{len}\r\nContent-Length: {}", len + hidden.len())),
    ));
    cases.push(case("CL list of equal values", content_length(&format!("{len}, {len}"))));
    cases.push(case("CL list of different values", content_length(&format!("{len}, {}", len + hidden.len()))));

    // CL.TE and TE.CL.
    cases.push(case("CL.TE", ambiguous("Content-Length: {len}\r\nTransfer-Encoding: chunked\r\n")));
    cases.push(case("TE.CL", ambiguous("Transfer-Encoding: chunked\r\nContent-Length: {len}\r\n")));
    cases.push(case("TE.CL with zero length", ambiguous("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n")));

    // TE.TE: obfuscated Transfer-Encoding, with and without a length.
    cases.push(case("TE trailing space with CL", ambiguous("Content-Length: {len}\r\nTransfer-Encoding: chunked \r\n")));
    cases.push(case("TE tab before value with CL", ambiguous("Content-Length: {len}\r\nTransfer-Encoding:\tchunked\r\n")));
    cases.push(case("TE uppercase with CL", ambiguous("Content-Length: {len}\r\nTransfer-Encoding: CHUNKED\r\n")));
    cases.push(case("TE chunked, identity", ambiguous("Transfer-Encoding: chunked, identity\r\n")));
    cases.push(case("TE identity, chunked", ambiguous("Transfer-Encoding: identity, chunked\r\n")));
    cases.push(case("TE x-chunked", ambiguous("Transfer-Encoding: x-chunked\r\n")));
    cases.push(case("TE chunkedx with CL", ambiguous("Content-Length: {len}\r\nTransfer-Encoding: chunkedx\r\n")));
    cases.push(case("TE vertical tab with CL", ambiguous("Content-Length: {len}\r\nTransfer-Encoding:\x0bchunked\r\n")));
    cases.push(case("TE fields identity then chunked", ambiguous("Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n")));
    cases.push(case("TE fields chunked twice", ambiguous("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")));
    cases.push(case("TE value in obs-fold", ambiguous("Transfer-Encoding:\r\n chunked\r\n")));
    cases.push(case("TE folded into another field", ambiguous("Content-Length: {len}\r\nX-Note: a\r\n Transfer-Encoding: chunked\r\n")));
    cases.push(case("TE with underscore name", ambiguous("Content-Length: {len}\r\nTransfer_Encoding: chunked\r\n")));
    cases.push(case(
        "CL with underscore name",
        content_length(&format!("{}\r\nContent_Length: {len}", len + hidden.len())),
    ));
    cases.push(case("TE name with space before colon", ambiguous("Content-Length: {len}\r\nTransfer-Encoding : chunked\r\n")));
    cases.push(case("CL name with space before colon", content_length(&format!("{len}\r\nContent-Length : {}", len + hidden.len()))));
    cases.push(case("TE on first line as fold", ambiguous(" Transfer-Encoding: chunked\r\nContent-Length: {len}\r\n")));
    let http10 = chunked_then_hidden();
    let fields = format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", http10.len());
    cases.push(case("HTTP/1.0 with TE and CL", raw_request("POST /jsonrpc HTTP/1.0", &fields, &http10)));

    // Bare CR and bare LF in the head.
    cases.push(case(
        "bare LF line ends",
        format!("POST /jsonrpc HTTP/1.1\nHost: odoo\nContent-Length: {len}\n\n{call}{hidden}").into_bytes(),
    ));
    cases.push(case("bare LF before TE", ambiguous("Content-Length: {len}\nTransfer-Encoding: chunked\r\n")));
    cases.push(case("bare CR hiding TE", ambiguous("Content-Length: {len}\r\nX-A: a\rTransfer-Encoding: chunked\r\n")));
    cases.push(case("bare CR in request line", raw_request("POST /jsonrpc\rX HTTP/1.1", &format!("Content-Length: {len}\r\n"), call.as_bytes())));
    cases.push(case("CR CR LF after CL", content_length(&format!("{len}\r"))));

    // NUL bytes in the head.
    cases.push(case("NUL in header name", ambiguous("Content-Length: {len}\r\nTransfer-Encoding\0: chunked\r\n")));
    cases.push(case("NUL in TE value", ambiguous("Content-Length: {len}\r\nTransfer-Encoding: chunked\0\r\n")));
    cases.push(case("NUL in CL value", content_length(&format!("{len}\0"))));
    cases.push(case("NUL in target", raw_request("POST /jsonrpc\0 HTTP/1.1", &format!("Content-Length: {len}\r\n"), call.as_bytes())));
    cases.push(case("NUL in method", raw_request("PO\0ST /jsonrpc HTTP/1.1", &format!("Content-Length: {len}\r\n"), call.as_bytes())));

    // Content-Length values that are not plain decimal.
    cases.push(case("CL with plus sign", content_length(&format!("+{len}"))));
    cases.push(case("CL in hex", content_length(&format!("{len:#x}"))));
    cases.push(case("CL two numbers", content_length(&format!("{len} {len}"))));
    cases.push(case("CL negative", content_length("-1")));
    cases.push(case("CL with underscore", content_length(&format!("{}_{}", len / 10, len % 10))));
    cases.push(case("CL empty", content_length("")));
    cases.push(case("CL with trailing letter", content_length(&format!("{len}a"))));
    cases.push(not_forwarded("CL huge", content_length("99999999999999999999999999")));

    // Chunk-size lines.
    let stream = |size_line: &str, data: &str| format!("{size_line}\r\n{data}\r\n0\r\n\r\n{hidden}").into_bytes();
    let size = format!("{len:x}");
    cases.push(case("chunk extension", chunk_stream("/jsonrpc", &stream(&format!("{size};x=1"), &call))));
    cases.push(case("chunk extension on streamed route", chunk_stream(UPLOAD, &stream(&format!("{:x};x=1", hidden.len()), &hidden))));
    cases.push(case("chunk size with 0x prefix", chunk_stream("/jsonrpc", &stream(&format!("0x{size}"), &call))));
    cases.push(case("chunk size with underscore", chunk_stream("/jsonrpc", &stream(&format!("{}_{}", &size[..1], &size[1..]), &call))));
    cases.push(case("chunk size with plus sign", chunk_stream("/jsonrpc", &stream(&format!("+{size}"), &call))));
    cases.push(case("chunk size negative", chunk_stream("/jsonrpc", &stream("-5", &call))));
    cases.push(case("chunk size of 17 digits", chunk_stream("/jsonrpc", &stream("1ffffffffffffffff", &call))));
    cases.push(case(
        "bare LF after chunk data",
        chunk_stream(UPLOAD, format!("{:x}\r\n{hidden}\n0\r\n\r\n", hidden.len()).as_bytes()),
    ));
    cases.push(case("chunk longer than its size", chunk_stream("/jsonrpc", &stream("3", &call))));
    cases.push(not_forwarded("missing final CRLF", chunk_stream("/jsonrpc", format!("{size}\r\n{call}\r\n0\r\n").as_bytes())));

    // Trailer sections: werkzeug reads one line after the last chunk and
    // fails on anything but an empty one, so what follows it is read as
    // the next request.
    cases.push(case("trailer with CL", chunk_stream("/jsonrpc", format!("{size}\r\n{call}\r\n0\r\nContent-Length: 5\r\n\r\n").as_bytes())));
    cases.push(case("trailer with TE on streamed route", chunk_stream(UPLOAD, b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n")));
    cases.push(case(
        "trailer hiding a request",
        chunk_stream(UPLOAD, format!("5\r\nhello\r\n0\r\nX: y\r\n{}", hidden.replace("\r\n\r\n", "\r\nX-End: 1\r\n\r\n")).as_bytes()),
    ));

    // Requests hidden in bodies and behind malformed requests.
    cases.push(not_forwarded("second request hidden in body", content_length(&(len + hidden.len()).to_string())));
    let mut after_malformed = raw_request("POST /jsonrpc HTTP/1.1 extra", &format!("Content-Length: {len}\r\n"), call.as_bytes());
    after_malformed.extend(hidden.as_bytes());
    cases.push(case("pipelined after malformed request line", after_malformed));
    let mut after_ambiguous = content_length(&format!("{len}\r\nContent-Length: {len}"));
    after_ambiguous.truncate(after_ambiguous.len() - hidden.len());
    after_ambiguous.extend(hidden.as_bytes());
    cases.push(case("pipelined after duplicate CL", after_ambiguous));
    cases.push(case(
        "Expect 100-continue with CL and TE",
        ambiguous("Expect: 100-continue\r\nContent-Length: {len}\r\nTransfer-Encoding: chunked\r\n"),
    ));

    // Request lines.
    cases.push(case("request line with two spaces", raw_request("POST  /jsonrpc HTTP/1.1", &format!("Content-Length: {len}\r\n"), call.as_bytes())));
    cases.push(case("HTTP/1.2", raw_request("POST /jsonrpc HTTP/1.2", &format!("Content-Length: {len}\r\n"), call.as_bytes())));
    cases.push(case("header line without colon", ambiguous("Content-Length: {len}\r\nTransfer-Encoding chunked\r\n")));
    let long = format!("X-Padding: {}\r\nContent-Length: {len}\r\n", "a".repeat(128 * 1024));
    cases.push(case("very long header line", jsonrpc(&long, call.as_bytes())));

    // Calls outside the integration's scope, in forms a strict router
    // might not see as calls.
    let unlink = call_body("unlink");
    let fields = format!("Content-Length: {}\r\n", unlink.len());
    cases.push(not_forwarded(
        "absolute-form target to another host",
        raw_request("POST http://other.example/jsonrpc HTTP/1.1", &fields, unlink.as_bytes()),
    ));
    // werkzeug routes each of these targets to /jsonrpc: urlsplit drops any
    // scheme and the authority after it, and Request.path adds the missing
    // leading slash.
    let unusual_targets = [
        ("target without leading slash", "jsonrpc"),
        ("target with unknown scheme", "x:/jsonrpc"),
        ("target with scheme and no slash", "http:jsonrpc"),
        ("target with ftp URL", "ftp://odoo/jsonrpc"),
    ];
    for (name, target) in unusual_targets {
        cases.push(case(name, raw_request(&format!("POST {target} HTTP/1.1"), &fields, unlink.as_bytes())));
    }
    cases.push(not_forwarded("lowercase method", raw_request("post /jsonrpc HTTP/1.1", &fields, unlink.as_bytes())));
    let json2 = format!("Authorization: bearer {API_KEY}\r\nContent-Length: 10\r\n");
    cases.push(not_forwarded(
        "lowercase method on JSON-2",
        raw_request("post /json/2/res.partner/unlink HTTP/1.1", &json2, br#"{"ids":[]}"#),
    ));
    cases.push(not_forwarded(
        "mixed-case method on JSON-2",
        raw_request("Post /json/2/res.partner/unlink HTTP/1.1", &json2, br#"{"ids":[]}"#),
    ));

    cases
}

// === enforce mode ===

impl Records {
    fn take(&self) -> Vec<AuditRecord> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Upstream {
    /// The requests the upstream logged to routes that carry calls: all
    /// but [`UPLOAD`], whose head odoogate streams to Odoo before it has
    /// seen the body that it then rejects.
    fn call_requests(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|line| !line.contains(&format!("\"path\": \"{UPLOAD}\""))).map(str::to_owned).collect()
    }
}

fn config(mode: &str, upstream_port: u16) -> odoogate::config::Config {
    let fingerprint = hex::encode(Sha256::digest(API_KEY.as_bytes()));
    let text = format!(
        r#"
[odoo]
ports = [{upstream_port}]
interfaces = ["lo"]

[policy]
mode = "{mode}"
unidentified = "deny"

[proxy]
upstream = "127.0.0.1:{upstream_port}"
request_timeout_secs = 5
upstream_timeout_secs = 5

[[integration]]
name = "reader"
match = {{ api_key_sha256 = ["{fingerprint}"] }}
allow = [{{ models = ["res.partner"], methods = ["search", "search_read", "read", "fields_get"] }}]
"#
    );
    odoogate::config::parse(&text, "smuggling.toml").expect("test config is valid")
}

/// Sends `case` on a new connection and reads until the proxy closes it.
async fn send(port: u16, case: &Case) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The proxy may answer and close before it has read everything.
    let _ = stream.write_all(&case.bytes).await;
    if case.half_close {
        let _ = stream.shutdown().await;
    }
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "{}: the proxy kept the connection open", case.name);
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_rejects_every_case() {
    let dir = support::temp_dir("smuggling");
    let upstream = Upstream::start(&dir, API_KEY);
    let config = Arc::new(config("enforce", upstream.port));
    let records = Records::default();
    let connector = DirectConnector::new(config.proxy.upstream);
    let proxy = Proxy::new(config, connector, Box::new(records.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        proxy.serve(listener, async { stopped.await.unwrap_or(()) }).await.unwrap();
    });

    let mut failures = Vec::new();
    for case in cases() {
        let before = upstream.call_requests().len();
        let response = send(port, &case).await;
        let forwarded = upstream.call_requests().len() - before;
        // odoogate answers `Expect: 100-continue` before it reads a body,
        // but never for a head it rejects.
        if case.name == "Expect 100-continue with CL and TE" && response.starts_with("HTTP/1.1 100") {
            failures.push(format!("{}: 100 Continue sent before the rejection", case.name));
        }
        let response = response.strip_prefix("HTTP/1.1 100 Continue\r\n\r\n").unwrap_or(&response);
        let status_line = response.lines().next().unwrap_or("(connection closed without a response)").to_owned();

        if forwarded > 0 {
            failures.push(format!("{}: {forwarded} call(s) reached the upstream ({status_line})", case.name));
        }
        if response.contains(UPSTREAM_SERVER) {
            failures.push(format!("{}: the upstream answered ({status_line})", case.name));
        }
        let rejected = response.starts_with("HTTP/1.1 400 BAD REQUEST\r\n");
        if case.enforce == Enforce::BadRequest && !rejected {
            failures.push(format!("{}: expected 400, got {status_line}", case.name));
        }
        let allowed: Vec<AuditRecord> =
            records.take().into_iter().filter(|r| r.event == AuditEvent::Call && r.decision == Some(Decision::Allow)).collect();
        if !allowed.is_empty() {
            failures.push(format!("{}: allowed {:?}", case.name, allowed.iter().map(|r| &r.method).collect::<Vec<_>>()));
        }
    }
    let calls = upstream.call_requests();
    if !calls.is_empty() {
        failures.push(format!("calls reached the upstream: {calls:?}"));
    }
    let _ = stop.send(());
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

// === observe mode ===

/// One client connection to Odoo, as the capture would see it.
struct Conn {
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
    client_seq: u32,
    server_seq: u32,
    clock: u64,
}

impl Conn {
    fn new(client_port: u16) -> Self {
        Self {
            client: format!("10.0.0.2:{client_port}").parse().unwrap(),
            server: "10.0.0.1:8069".parse().unwrap(),
            client_seq: 1000,
            server_seq: 5000,
            clock: 1_000_000,
        }
    }

    fn segment(&mut self, to_server: bool, flags: u8, payload: &[u8]) -> CaptureEvent {
        self.clock += 1_000;
        let (src, dst, seq, ack) = if to_server {
            (self.client, self.server, self.client_seq, self.server_seq)
        } else {
            (self.server, self.client, self.server_seq, self.client_seq)
        };
        let advance = payload.len() as u32 + u32::from(flags & (TcpFlags::SYN | TcpFlags::FIN) != 0);
        if to_server {
            self.client_seq = self.client_seq.wrapping_add(advance);
        } else {
            self.server_seq = self.server_seq.wrapping_add(advance);
        }
        CaptureEvent::Segment(Segment {
            src,
            dst,
            seq,
            ack,
            flags: TcpFlags(flags),
            payload: Bytes::copy_from_slice(payload),
            wire_len: payload.len() as u32,
            timestamp_ns: self.clock,
            ingress_ifindex: None,
            first_fragment: false,
        })
    }

    /// Opens the connection, sends `bytes` from the client in segments of
    /// at most 1400 bytes, and closes it.
    fn run(&mut self, pipeline: &mut Pipeline, bytes: &[u8]) {
        pipeline.handle(self.segment(true, TcpFlags::SYN, b""));
        pipeline.handle(self.segment(false, TcpFlags::SYN | TcpFlags::ACK, b""));
        pipeline.handle(self.segment(true, TcpFlags::ACK, b""));
        for piece in bytes.chunks(1400) {
            pipeline.handle(self.segment(true, TcpFlags::ACK | TcpFlags::PSH, piece));
        }
        pipeline.handle(self.segment(true, TcpFlags::FIN | TcpFlags::ACK, b""));
        pipeline.handle(self.segment(false, TcpFlags::FIN | TcpFlags::ACK, b""));
        pipeline.handle(self.segment(true, TcpFlags::ACK, b""));
    }
}

#[test]
fn observe_flags_every_case() {
    let config = Arc::new(config("observe", 8069));
    let mut failures = Vec::new();
    for (index, case) in cases().into_iter().enumerate() {
        let records = Records::default();
        let mut pipeline = Pipeline::new(config.clone(), None, Box::new(records.clone()));
        Conn::new(40_000 + index as u16).run(&mut pipeline, &case.bytes);
        let records = records.take();

        let flagged = records.iter().any(|r| match r.event {
            AuditEvent::FramingAnomaly | AuditEvent::DecodeError => true,
            AuditEvent::Call => r.decision == Some(Decision::WouldDeny),
            _ => false,
        });
        if !flagged {
            failures.push(format!("{}: nothing flagged", case.name));
        }
        let allowed: Vec<&AuditRecord> =
            records.iter().filter(|r| r.event == AuditEvent::Call && r.decision == Some(Decision::Allow)).collect();
        if !allowed.is_empty() {
            failures.push(format!("{}: allowed {:?}", case.name, allowed.iter().map(|r| &r.method).collect::<Vec<_>>()));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn table_has_at_least_fifty_cases() {
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|case| case.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
}

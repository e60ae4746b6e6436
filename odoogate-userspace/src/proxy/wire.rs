//! The heads odoogate writes: requests forwarded to Odoo, responses passed
//! back to clients, and odoogate's own short answers.
//!
//! Heads are written anew from the parsed fields, never copied, so what Odoo
//! reads is exactly what odoogate decided on. Bodies are copied as they
//! came, except RPC bodies, which are sent whole with a fresh
//! `Content-Length`.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::Bytes;

use crate::http::{HeaderName, Headers, HttpVersion};

/// Hop-by-hop fields (RFC 9110 §7.6.1) and fields odoogate sets itself.
/// `Expect` is answered by odoogate, `X-Odoogate-Token` must never reach
/// Odoo, and `X-Forwarded-For` is rewritten.
const DROPPED_REQUEST_FIELDS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "expect",
    "x-odoogate-token",
    "x-forwarded-for",
];

const DROPPED_RESPONSE_FIELDS: &[&str] = &["connection", "keep-alive", "proxy-connection", "upgrade"];

/// How the body of a forwarded request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ForwardedBody {
    /// A body read whole, sent with this `Content-Length` and no
    /// `Transfer-Encoding`.
    Whole(usize),
    /// A body copied as it arrives, framed as the client framed it.
    AsSent,
}

/// The start line of a request to forward.
#[derive(Clone, Copy, Debug)]
pub(super) struct RequestLine<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: HttpVersion,
}

/// Returns the header fields of a request to Odoo: hop-by-hop fields
/// dropped, `X-Forwarded-For` extended with `client`, and a `Connection`
/// field of odoogate's own. An HTTP/1.1 request gets `keep-alive`, so
/// the connection can go back to the pool (see [`super::pool`]), and an
/// HTTP/1.0 request for `close`. An upgrade request keeps its `Upgrade`
/// field and asks for `Connection: Upgrade` instead.
pub(super) fn forwarded_headers(headers: &Headers, client: IpAddr, version: HttpVersion, body: ForwardedBody) -> Headers {
    let upgrade = upgrade_protocol(headers).map(Bytes::copy_from_slice);
    let connection_named = connection_options(headers);
    let mut had_framing = false;
    let mut fields = Vec::with_capacity(headers.0.len() + 3);

    for (name, value) in &headers.0 {
        let is_any = |names: &[&str]| names.iter().any(|field| name.eq_ignore_ascii_case(field));
        let framing = is_any(&["content-length", "transfer-encoding"]);
        had_framing |= framing;
        let dropped = is_any(DROPPED_REQUEST_FIELDS)
            || connection_named.iter().any(|option| name.eq_ignore_ascii_case(option))
            || (name.eq_ignore_ascii_case("authorization") && carries_scoped_token(value));
        if dropped || (framing && matches!(body, ForwardedBody::Whole(_))) {
            continue;
        }
        fields.push((name.clone(), value.clone()));
    }

    fields.push((HeaderName::from_static("X-Forwarded-For"), Bytes::from(forwarded_for(headers, client))));
    if let ForwardedBody::Whole(length) = body {
        // A bodiless GET stays without Content-Length, as the client sent it.
        if length > 0 || had_framing {
            fields.push((HeaderName::from_static("Content-Length"), Bytes::copy_from_slice(itoa::Buffer::new().format(length).as_bytes())));
        }
    }
    match upgrade {
        Some(protocol) => {
            fields.push((HeaderName::from_static("Upgrade"), protocol));
            fields.push((HeaderName::from_static("Connection"), Bytes::from_static(b"Upgrade")));
        }
        None if upstream_keeps_alive(version, None) => fields.push((HeaderName::from_static("Connection"), Bytes::from_static(b"keep-alive"))),
        None => fields.push((HeaderName::from_static("Connection"), Bytes::from_static(b"close"))),
    }
    Headers(fields)
}

/// Tells whether a request forwarded with [`forwarded_headers`] requests
/// that Odoo keep the connection open: HTTP/1.1 without an upgrade.
pub(super) fn upstream_keeps_alive(version: HttpVersion, upgrade: Option<&[u8]>) -> bool {
    version == HttpVersion::Http11 && upgrade.is_none()
}

/// Tells whether an `Authorization` value is a bearer scoped token. Calls
/// carrying one are rewritten with the service credential before this
/// point, so one left here is on a route odoogate does not decide on, and
/// Odoo must not see it: dropped, the request reaches Odoo without a
/// credential and gets only what an anonymous visitor gets.
fn carries_scoped_token(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else { return false };
    let Some((scheme, credential)) = text.trim().split_once(' ') else { return false };
    scheme.eq_ignore_ascii_case("bearer") && crate::token::TokenStore::looks_like_token(credential.trim())
}

/// Writes a request head from its start line and fields.
pub(super) fn request_head(line: RequestLine<'_>, headers: &Headers) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    for part in [line.method, " ", line.target, " ", line.version.as_str(), "\r\n"] {
        head.extend_from_slice(part.as_bytes());
    }
    for (name, value) in &headers.0 {
        push_field(&mut head, name, value);
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// What the `Connection` field of a response to the client says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ClientConnection {
    KeepAlive,
    Close,
    /// A `101 Switching Protocols`: the upstream's `Upgrade` is kept.
    Upgrade,
}

/// The status line of a response to pass back.
#[derive(Clone, Copy, Debug)]
pub(super) struct StatusLine<'a> {
    pub status: u16,
    pub reason: &'a str,
}

/// Writes the head of Odoo's response for the client, with `Connection`
/// set by odoogate: Odoo closes after every response, but the client's
/// connection to odoogate may stay open when the body is framed.
pub(super) fn client_response_head(line: StatusLine<'_>, headers: &Headers, connection: ClientConnection) -> Vec<u8> {
    let connection_named = connection_options(headers);
    let mut head = Vec::with_capacity(512);
    push_status_line(&mut head, line.status, line.reason);
    for (name, value) in &headers.0 {
        let dropped = DROPPED_RESPONSE_FIELDS.iter().any(|field| name.eq_ignore_ascii_case(field));
        if dropped || connection_named.iter().any(|option| name.eq_ignore_ascii_case(option)) {
            continue;
        }
        push_field(&mut head, name, value);
    }
    match connection {
        ClientConnection::KeepAlive => push_field(&mut head, "Connection", b"keep-alive"),
        ClientConnection::Close => push_field(&mut head, "Connection", b"close"),
        ClientConnection::Upgrade => {
            if let Some(protocol) = headers.get("upgrade") {
                push_field(&mut head, "Upgrade", protocol);
            }
            push_field(&mut head, "Connection", b"Upgrade");
        }
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A complete response written by odoogate itself.
#[derive(Clone, Copy, Debug)]
pub(super) struct OwnResponse<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub content_type: &'a str,
    pub extra_headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Writes one of odoogate's own responses, complete with its body.
pub(super) fn own_response(response: OwnResponse<'_>, keep_alive: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256 + response.body.len());
    push_status_line(&mut bytes, response.status, response.reason);
    push_field(&mut bytes, "Content-Type", response.content_type.as_bytes());
    push_field(&mut bytes, "Content-Length", itoa::Buffer::new().format(response.body.len()).as_bytes());
    for (name, value) in response.extra_headers {
        push_field(&mut bytes, name, value.as_bytes());
    }
    push_field(&mut bytes, "Connection", if keep_alive { b"keep-alive" } else { b"close" });
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(response.body);
    bytes
}

/// Writes a plain-text error that closes the connection: for requests odoogate
/// cannot read (framing, size, time) or cannot pass on (Odoo unreachable).
pub(super) fn plain_error(status: u16, reason: &str, message: &str) -> Vec<u8> {
    let body = format!("{message}\n");
    let response = OwnResponse {
        status,
        reason,
        content_type: "text/plain; charset=utf-8",
        extra_headers: &[],
        body: body.as_bytes(),
    };
    own_response(response, false)
}

/// Returns the `503` a connection gets when `max_connections` client
/// connections are open and none is idle.
pub(super) fn service_unavailable(max_connections: usize) -> Vec<u8> {
    let message = format!("odoogate is serving its maximum of {max_connections} connections (proxy.max_connections); try again");
    let body = format!("{message}\n");
    let response = OwnResponse {
        status: 503,
        reason: "SERVICE UNAVAILABLE",
        content_type: "text/plain; charset=utf-8",
        extra_headers: &[("Retry-After", "1")],
        body: body.as_bytes(),
    };
    own_response(response, false)
}

/// `100 Continue`, sent by odoogate to a client that waits for it before
/// sending its body; odoogate does not pass `Expect` to Odoo.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Tells whether the client keeps its connection open after this request
/// (RFC 9112 §9.3).
pub(super) fn client_keeps_alive(version: HttpVersion, headers: &Headers) -> bool {
    match version {
        HttpVersion::Http11 => !has_connection_option(headers, "close"),
        HttpVersion::Http10 => has_connection_option(headers, "keep-alive"),
    }
}

/// Tells whether the request asks for `100 Continue`.
pub(super) fn expects_continue(headers: &Headers) -> bool {
    headers.get_all("expect").any(|value| value.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
}

/// Returns the protocol a request asks to upgrade to, when it does so
/// properly: an `Upgrade` field and `upgrade` among the `Connection` options.
pub(super) fn upgrade_protocol(headers: &Headers) -> Option<&[u8]> {
    let protocol = headers.get("upgrade")?;
    has_connection_option(headers, "upgrade").then_some(protocol.as_ref())
}

fn has_connection_option(headers: &Headers, option: &str) -> bool {
    connection_options(headers).iter().any(|named| named == option)
}

/// Returns the lower-case options of every `Connection` field.
fn connection_options(headers: &Headers) -> Vec<String> {
    headers
        .get_all("connection")
        .flat_map(|value| value.split(|&b| b == b','))
        .map(|option| String::from_utf8_lossy(option.trim_ascii()).to_ascii_lowercase())
        .filter(|option| !option.is_empty())
        .collect()
}

/// Returns `X-Forwarded-For` with `client` appended to the values the
/// request carried, so Odoo in `proxy_mode` (which takes the last entry)
/// sees the address odoogate received the request from.
fn forwarded_for(headers: &Headers, client: IpAddr) -> String {
    let mut text = String::with_capacity(16);
    for value in headers.get_all("x-forwarded-for").map(|value| value.trim_ascii()).filter(|value| !value.is_empty()) {
        text.push_str(&String::from_utf8_lossy(value));
        text.push_str(", ");
    }
    match client.to_canonical() {
        // An IPv4 address is the common case; its octets need no `fmt`.
        IpAddr::V4(address) => {
            for (index, octet) in address.octets().into_iter().enumerate() {
                if index > 0 {
                    text.push('.');
                }
                text.push_str(itoa::Buffer::new().format(octet));
            }
        }
        IpAddr::V6(address) => {
            let _ = write!(text, "{address}");
        }
    }
    text
}

/// Writes `HTTP/1.1 status reason` and its line end.
fn push_status_line(head: &mut Vec<u8>, status: u16, reason: &str) {
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    head.push(b' ');
    head.extend_from_slice(reason.as_bytes());
    head.extend_from_slice(b"\r\n");
}

fn push_field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        Headers(fields.iter().map(|(n, v)| ((*n).into(), Bytes::copy_from_slice(v.as_bytes()))).collect())
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    const LINE: RequestLine<'static> = RequestLine { method: "POST", target: "/jsonrpc", version: HttpVersion::Http11 };

    #[test]
    fn whole_body_is_reframed() {
        let fields = headers(&[
            ("Host", "odoo"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "1"),
            ("X-Odoogate-Token", "ogt_secret"),
            ("Expect", "100-continue"),
        ]);
        let forwarded = forwarded_headers(&fields, "192.0.2.7".parse().unwrap(), HttpVersion::Http11, ForwardedBody::Whole(12));
        let head = text(request_head(LINE, &forwarded));
        assert_eq!(
            head,
            "POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nX-Forwarded-For: 192.0.2.7\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn scoped_bearer_token_never_reaches_odoo() {
        let token = format!("odg_{}", "a".repeat(49));
        let fields = headers(&[("Authorization", &format!("bearer {token}")), ("Cookie", "a=b")]);
        let forwarded = forwarded_headers(&fields, "192.0.2.7".parse().unwrap(), HttpVersion::Http11, ForwardedBody::AsSent);
        let head = text(request_head(LINE, &forwarded));
        assert!(!head.contains(&token), "{head}");
        assert!(head.contains("Cookie: a=b\r\n"), "{head}");

        let key = headers(&[("Authorization", "Bearer 0123456789abcdef0123456789abcdef01234567")]);
        let forwarded = forwarded_headers(&key, "192.0.2.7".parse().unwrap(), HttpVersion::Http11, ForwardedBody::AsSent);
        assert!(text(request_head(LINE, &forwarded)).contains("Authorization: Bearer 0123"), "an API key is Odoo's to check");
    }

    #[test]
    fn streamed_body_keeps_its_framing() {
        let fields = headers(&[("Content-Length", "5"), ("X-Forwarded-For", "203.0.113.9")]);
        let forwarded = forwarded_headers(&fields, "::ffff:192.0.2.7".parse().unwrap(), HttpVersion::Http11, ForwardedBody::AsSent);
        let head = text(request_head(LINE, &forwarded));
        assert!(head.contains("Content-Length: 5\r\n"), "{head}");
        assert!(head.contains("X-Forwarded-For: 203.0.113.9, 192.0.2.7\r\n"), "{head}");
    }

    #[test]
    fn start_lines_match_format() {
        for (status, reason) in [(0, ""), (100, "Continue"), (200, "OK"), (404, "NOT FOUND"), (u16::MAX, "x y")] {
            let mut line = Vec::new();
            push_status_line(&mut line, status, reason);
            assert_eq!(line, format!("HTTP/1.1 {status} {reason}\r\n").into_bytes());
        }
        for version in [HttpVersion::Http10, HttpVersion::Http11] {
            let head = request_head(RequestLine { method: "POST", target: "/web/dataset/call_kw?a=1", version }, &Headers::default());
            assert_eq!(head, format!("POST /web/dataset/call_kw?a=1 {}\r\n\r\n", version.as_str()).into_bytes());
        }
    }

    #[test]
    fn forwarded_for_writes_addresses_as_display_does() {
        for client in ["0.0.0.0", "10.200.3.255", "255.255.255.255", "::ffff:10.0.0.9", "2001:db8::7", "::1"] {
            let client: IpAddr = client.parse().unwrap();
            assert_eq!(forwarded_for(&Headers::default(), client), client.to_canonical().to_string());
        }
    }

    #[test]
    fn forwarded_for_joins_every_field() {
        let fields = headers(&[("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", " "), ("x-forwarded-for", " 203.0.113.9 ")]);
        let forwarded = forwarded_headers(&fields, "2001:db8::7".parse().unwrap(), HttpVersion::Http11, ForwardedBody::AsSent);
        let head = text(request_head(LINE, &forwarded));
        assert!(head.contains("X-Forwarded-For: 198.51.100.1, 203.0.113.9, 2001:db8::7\r\n"), "{head}");
    }

    #[test]
    fn upgrade_request_keeps_upgrade() {
        let fields = headers(&[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "k")]);
        let line = RequestLine { method: "GET", target: "/websocket", version: HttpVersion::Http11 };
        let forwarded = forwarded_headers(&fields, "192.0.2.7".parse().unwrap(), HttpVersion::Http11, ForwardedBody::AsSent);
        let head = text(request_head(line, &forwarded));
        assert!(head.contains("Sec-WebSocket-Key: k\r\nX-Forwarded-For: 192.0.2.7\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), "{head}");
    }

    #[test]
    fn bodiless_get_gets_no_length() {
        let line = RequestLine { method: "GET", target: "/web/login", version: HttpVersion::Http11 };
        let forwarded = forwarded_headers(&headers(&[("Host", "odoo")]), "192.0.2.7".parse().unwrap(), HttpVersion::Http11, ForwardedBody::Whole(0));
        let head = text(request_head(line, &forwarded));
        assert_eq!(head, "GET /web/login HTTP/1.1\r\nHost: odoo\r\nX-Forwarded-For: 192.0.2.7\r\nConnection: keep-alive\r\n\r\n");
    }

    #[test]
    fn http10_request_asks_for_close() {
        let line = RequestLine { method: "GET", target: "/web/login", version: HttpVersion::Http10 };
        let fields = headers(&[("Host", "odoo"), ("Connection", "keep-alive")]);
        let forwarded = forwarded_headers(&fields, "192.0.2.7".parse().unwrap(), HttpVersion::Http10, ForwardedBody::Whole(0));
        let head = text(request_head(line, &forwarded));
        assert_eq!(head, "GET /web/login HTTP/1.0\r\nHost: odoo\r\nX-Forwarded-For: 192.0.2.7\r\nConnection: close\r\n\r\n");
        assert!(!upstream_keeps_alive(HttpVersion::Http10, None));
        assert!(!upstream_keeps_alive(HttpVersion::Http11, Some(b"websocket")));
        assert!(upstream_keeps_alive(HttpVersion::Http11, None));
    }

    #[test]
    fn response_connection_is_replaced() {
        let fields = headers(&[("Content-Length", "2"), ("Connection", "close")]);
        let line = StatusLine { status: 200, reason: "OK" };
        let head = text(client_response_head(line, &fields, ClientConnection::KeepAlive));
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
    }

    #[test]
    fn keep_alive_follows_version() {
        assert!(client_keeps_alive(HttpVersion::Http11, &headers(&[])));
        assert!(!client_keeps_alive(HttpVersion::Http11, &headers(&[("Connection", "Close")])));
        assert!(!client_keeps_alive(HttpVersion::Http10, &headers(&[])));
        assert!(client_keeps_alive(HttpVersion::Http10, &headers(&[("Connection", "keep-alive")])));
    }

    #[test]
    fn upgrade_needs_connection_option() {
        assert_eq!(upgrade_protocol(&headers(&[("Upgrade", "websocket")])), None);
        let fields = headers(&[("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade")]);
        assert_eq!(upgrade_protocol(&fields), Some(&b"websocket"[..]));
    }

    #[test]
    fn own_response_is_framed() {
        let response = OwnResponse { status: 403, reason: "FORBIDDEN", content_type: "application/json", extra_headers: &[], body: b"{}" };
        assert_eq!(
            text(own_response(response, true)),
            "HTTP/1.1 403 FORBIDDEN\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
        );
    }
}

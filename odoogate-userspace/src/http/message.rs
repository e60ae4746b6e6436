//! Framed HTTP messages.

use bytes::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    Http10,
    Http11,
}

impl HttpVersion {
    /// Returns the version as a request or status line writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http10 => "HTTP/1.0",
            Self::Http11 => "HTTP/1.1",
        }
    }
}

/// Header fields in wire order. Names keep their case; lookups ignore it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(HeaderName, Bytes)>);

/// A header field's name as sent, which reads as a `str`.
///
/// The framer takes names from the message head without copying them:
/// the name shares the head's buffer, as the value does. That spares an
/// allocation per field, a dozen for each proxied call.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderName(Bytes);

impl HeaderName {
    /// Takes `name`, whose bytes the caller checked to be token characters
    /// (RFC 9110), so ASCII.
    pub(crate) fn from_token(name: Bytes) -> Self {
        debug_assert!(name.is_ascii(), "header names are token characters");
        Self(name)
    }

    /// Returns a name known when the program is built, without a copy.
    pub const fn from_static(name: &'static str) -> Self {
        Self(Bytes::from_static(name.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes either a `str` or bytes checked to
        // be ASCII (`from_token`), so the bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl std::ops::Deref for HeaderName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for HeaderName {
    fn from(name: &str) -> Self {
        Self(Bytes::copy_from_slice(name.as_bytes()))
    }
}

impl From<String> for HeaderName {
    fn from(name: String) -> Self {
        Self(Bytes::from(name.into_bytes()))
    }
}

impl PartialEq<str> for HeaderName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for HeaderName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Headers {
    /// Returns the value of the last field named `name` (case-insensitive),
    /// which is the one werkzeug uses.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0.iter().rev().find(|(n, _)| name_matches(n, name)).map(|(_, v)| v)
    }

    /// Returns the value of the last field named `name` as UTF-8 text.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Returns the value of the last field of each of `names`
    /// (case-insensitive), as [`Headers::get`] does, in one pass that stops
    /// once every name was found.
    pub fn get_each<const N: usize>(&self, names: [&str; N]) -> [Option<&Bytes>; N] {
        let mut values = [None; N];
        let mut missing = N;
        for (name, value) in self.0.iter().rev() {
            for (expected, slot) in names.iter().zip(&mut values) {
                if slot.is_none() && name_matches(name, expected) {
                    *slot = Some(value);
                    missing -= 1;
                }
            }
            if missing == 0 {
                break;
            }
        }
        values
    }

    /// Returns every value of the fields named `name`, in wire order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.0.iter().filter(move |(n, _)| name_matches(n, name)).map(|(_, v)| v)
    }
}

/// Compares header names case-insensitively. Most clients send the
/// canonical case, so a plain byte comparison runs first, and
/// `eq_ignore_ascii_case`, which lowers each byte, only when it fails.
fn name_matches(name: &str, expected: &str) -> bool {
    name == expected || name.eq_ignore_ascii_case(expected)
}

/// A framing that Odoo's lenient parser could read differently from a
/// strict one. In observe mode each one is recorded; enforce mode rejects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FramingAnomaly {
    /// More than one `Content-Length` field (werkzeug uses the last).
    DuplicateContentLength,
    /// A `Content-Length` that is not a plain decimal number.
    InvalidContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthWithTransferEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    UnsupportedTransferCoding,
    /// A line ended by LF without CR.
    BareLf,
    /// A CR not followed by LF inside the head. Python's header parser,
    /// which Odoo's server uses, may end a line there, so the fields after
    /// it could be read as separate headers.
    BareCr,
    /// A header line continued on the next line (obs-fold).
    ObsFold,
    /// A header name containing `_`, which werkzeug drops.
    UnderscoreInHeaderName,
    /// A chunk-size line or chunk end not terminated by CRLF.
    ChunkLineNotCrlf,
    /// A `Content-Encoding` (such as gzip) on a request body, which the
    /// decoders cannot read.
    EncodedBody,
    /// A request target that is neither a path starting with `/`, an
    /// absolute `http://` or `https://` URL, nor `*`. werkzeug still
    /// routes such targets (`jsonrpc`, `x:/jsonrpc`, `ftp://host/jsonrpc`
    /// all reach `/jsonrpc`), but no HTTP client sends them.
    UnusualTarget,
    /// A request that follows, on the same connection, a request with
    /// ambiguous framing or one that could not be parsed. Where it starts
    /// depends on how that earlier request was read, so it may be a request
    /// smuggled inside the earlier one's body.
    FollowsAmbiguousRequest,
}

impl FramingAnomaly {
    /// Returns the bounded code used in audit records.
    pub fn code(self) -> &'static str {
        match self {
            Self::DuplicateContentLength => "duplicate_content_length",
            Self::InvalidContentLength => "invalid_content_length",
            Self::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Self::UnsupportedTransferCoding => "unsupported_transfer_coding",
            Self::BareLf => "bare_lf",
            Self::BareCr => "bare_cr",
            Self::ObsFold => "obs_fold",
            Self::UnderscoreInHeaderName => "underscore_in_header_name",
            Self::ChunkLineNotCrlf => "chunk_line_not_crlf",
            Self::EncodedBody => "encoded_body",
            Self::UnusualTarget => "unusual_target",
            Self::FollowsAmbiguousRequest => "follows_ambiguous_request",
        }
    }
}

/// A complete request. The body is the decoded payload (chunked framing
/// removed), cut at the configured maximum when `body_truncated` is set.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub version: HttpVersion,
    pub headers: Headers,
    pub body: Bytes,
    pub body_truncated: bool,
    pub anomalies: Vec<FramingAnomaly>,
    /// Kernel timestamps (ns) of the first and last byte of the request.
    pub first_byte_ns: u64,
    pub last_byte_ns: u64,
}

impl HttpRequest {
    /// Returns the path part of the target, without the query.
    pub fn path(&self) -> &str {
        // A byte scan, because a `char` pattern decodes every character.
        let end = self.target.bytes().position(|byte| byte == b'?' || byte == b'#').unwrap_or(self.target.len());
        &self.target[..end]
    }
}

/// A complete response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub version: HttpVersion,
    pub headers: Headers,
    pub body: Bytes,
    pub body_truncated: bool,
    pub anomalies: Vec<FramingAnomaly>,
    pub first_byte_ns: u64,
    pub last_byte_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".to_owned(),
            target: target.to_owned(),
            version: HttpVersion::Http11,
            headers: Headers::default(),
            body: Bytes::new(),
            body_truncated: false,
            anomalies: Vec::new(),
            first_byte_ns: 0,
            last_byte_ns: 0,
        }
    }

    #[test]
    fn get_each_returns_last_values() {
        let headers = Headers(
            [("Authorization", "first"), ("x-odoo-database", "db"), ("AUTHORIZATION", "last"), ("Host", "h")]
                .iter()
                .map(|(name, value)| (HeaderName::from(*name), Bytes::from_static(value.as_bytes())))
                .collect(),
        );
        let [authorization, database, cookie] = headers.get_each(["authorization", "X-Odoo-Database", "Cookie"]);
        assert_eq!(authorization, headers.get("Authorization"));
        assert_eq!(authorization.map(|value| &value[..]), Some(&b"last"[..]));
        assert_eq!(database.map(|value| &value[..]), Some(&b"db"[..]));
        assert_eq!(cookie, None);
    }

    #[test]
    fn path_ends_at_query_or_fragment() {
        let cases = [
            ("/jsonrpc", "/jsonrpc"),
            ("/jsonrpc?debug=1#top", "/jsonrpc"),
            ("/web#action?x", "/web"),
            ("/caf\u{e9}/x?y", "/caf\u{e9}/x"),
            ("?only=query", ""),
            ("", ""),
        ];
        for (target, path) in cases {
            assert_eq!(request(target).path(), path, "target {target:?}");
        }
    }
}

//! A lenient parser for HTTP/1.x message heads (start line and header
//! fields) that reads them the way Odoo's server does.
//!
//! Odoo runs werkzeug's development server on Python's `http.server`, which
//! reads the head line by line up to LF, ends it at an empty line, joins
//! obs-fold continuation lines and drops header names containing `_`.
//! `httparse` rejects obs-fold in requests and keeps `_` names, so it would
//! see a different set of headers. This parser follows werkzeug instead and
//! records each such divergence as a [`FramingAnomaly`]. It stays strict
//! where werkzeug's reading is too irregular to follow: a start line that is
//! not exactly `METHOD SP target SP HTTP/1.x` or `HTTP/1.x SP 3DIGIT`, and a
//! header line without a valid field name, are rejected.

use crate::http::{FramingAnomaly, HeaderName, Headers, HttpVersion};
use bytes::Bytes;

/// The side of the connection that sent the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Request,
    Response,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum StartLine {
    Request { method: String, target: String },
    Response { status: u16, reason: String },
}

/// A parsed message head.
#[derive(Clone, Debug)]
pub(super) struct Head {
    pub start: StartLine,
    pub version: HttpVersion,
    pub headers: Headers,
    pub anomalies: Vec<FramingAnomaly>,
}

/// An error that makes a head unparseable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum HeadError {
    #[error("invalid request line")]
    InvalidRequestLine,
    #[error("invalid status line")]
    InvalidStatusLine,
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    #[error("invalid header field name")]
    InvalidFieldName,
    #[error("continuation line without a header field")]
    FoldWithoutField,
}

impl HeadError {
    /// Returns the bounded reason reported in [`super::FramerEvent::Malformed`].
    pub fn reason(self) -> &'static str {
        match self {
            Self::InvalidRequestLine => "invalid request line",
            Self::InvalidStatusLine => "invalid status line",
            Self::UnsupportedVersion => "unsupported HTTP version",
            Self::InvalidFieldName => "invalid header field name",
            Self::FoldWithoutField => "continuation line without a header field",
        }
    }
}

/// Looks for the end of a head in `buf`, starting at `line_start`, the
/// start of a line not yet examined. Returns `Ok(end)`, the index after the
/// LF of the empty line that ends the head, or `Err(line_start)` of the
/// incomplete last line, to resume from when more bytes arrive. Like
/// Python's `http.client.parse_headers`, a line of only LF or CR LF ends the
/// head.
pub(super) fn find_head_end(buf: &[u8], mut line_start: usize) -> Result<usize, usize> {
    while let Some(lf) = buf[line_start..].iter().position(|&b| b == b'\n') {
        let line = &buf[line_start..line_start + lf];
        let end = line_start + lf + 1;
        if line_start > 0 && (line.is_empty() || line == b"\r") {
            return Ok(end);
        }
        line_start = end;
    }
    Err(line_start)
}

/// Parses a complete head (as found by [`find_head_end`]) sent by `role`.
/// Header values are slices of `head`, not copies.
pub(super) fn parse_head(head: &Bytes, role: Role) -> Result<Head, HeadError> {
    let mut anomalies = Vec::new();
    let mut lines = split_lines(head, &mut anomalies);
    let first = lines.next().unwrap_or_default();
    let (start, version) = match role {
        Role::Request => parse_request_line(first)?,
        Role::Response => parse_status_line(first)?,
    };
    if let StartLine::Request { target, .. } = &start
        && !is_usual_target(target.as_bytes())
    {
        anomalies.push(FramingAnomaly::UnusualTarget);
    }
    let headers = parse_fields(head, lines, role, &mut anomalies)?;
    Ok(Head {
        start,
        version,
        headers,
        anomalies,
    })
}

/// Splits a head into its lines without their line ends, leaving out the
/// empty last line, and flags LF line ends without CR and CRs without LF.
fn split_lines<'a>(
    head: &'a [u8],
    anomalies: &mut Vec<FramingAnomaly>,
) -> impl Iterator<Item = &'a [u8]> + use<'a> {
    // Every LF and CR belongs to a CR LF pair exactly when the three counts
    // agree. Sums without branches, as these, compile to vector code.
    let count = |byte: u8| head.iter().map(|&b| u32::from(b == byte)).sum::<u32>();
    let next = head.get(1..).unwrap_or_default();
    let pairs = head.iter().zip(next).map(|(&b, &after)| u32::from((b == b'\r') & (after == b'\n'))).sum::<u32>();
    if count(b'\n') != pairs {
        push_once(anomalies, FramingAnomaly::BareLf);
    }
    if count(b'\r') != pairs {
        push_once(anomalies, FramingAnomaly::BareCr);
    }
    let body = head.strip_suffix(b"\n").unwrap_or(head);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let text = rest?;
        let (line, after) = match memchr::memchr(b'\n', text) {
            Some(lf) => (&text[..lf], Some(&text[lf + 1..])),
            None => (text, None),
        };
        rest = after;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// Parses `method SP request-target SP HTTP-version` (RFC 9112 §3).
fn parse_request_line(line: &[u8]) -> Result<(StartLine, HttpVersion), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::InvalidRequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::InvalidRequestLine);
    }
    if target.is_empty() || !target.iter().all(|&b| b > b' ' && b != 0x7f) {
        return Err(HeadError::InvalidRequestLine);
    }
    let version = parse_version(version).ok_or(HeadError::UnsupportedVersion)?;
    // werkzeug's `Request.method` and its router upper-case the method, so
    // Odoo runs `post` as `POST`.
    let start = StartLine::Request {
        method: String::from_utf8_lossy(method).to_ascii_uppercase(),
        target: String::from_utf8_lossy(target).into_owned(),
    };
    Ok((start, version))
}

/// Tells whether a request target has a form that clients send: a path
/// starting with `/` (origin-form), an absolute URL with the `http` or
/// `https` scheme (absolute-form), or `*` (asterisk-form, for `OPTIONS`).
fn is_usual_target(target: &[u8]) -> bool {
    let has_prefix = |prefix: &[u8]| target.get(..prefix.len()).is_some_and(|start| start.eq_ignore_ascii_case(prefix));
    target.first() == Some(&b'/') || target == b"*" || has_prefix(b"http://") || has_prefix(b"https://")
}

/// Parses `HTTP-version SP 3DIGIT SP reason-phrase` (RFC 9112 §4); the
/// reason may be missing, with or without its space.
fn parse_status_line(line: &[u8]) -> Result<(StartLine, HttpVersion), HeadError> {
    if line.len() < 12 || line[8] != b' ' {
        return Err(HeadError::InvalidStatusLine);
    }
    if !line.starts_with(b"HTTP/") {
        return Err(HeadError::InvalidStatusLine);
    }
    let version = parse_version(&line[..8]).ok_or(HeadError::UnsupportedVersion)?;
    let digits = &line[9..12];
    if !digits.iter().all(u8::is_ascii_digit) || line.get(12).is_some_and(|&b| b != b' ') {
        return Err(HeadError::InvalidStatusLine);
    }
    let status = digits
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    let reason = line.get(13..).unwrap_or_default();
    let start = StartLine::Response {
        status,
        reason: String::from_utf8_lossy(reason).into_owned(),
    };
    Ok((start, version))
}

fn parse_version(text: &[u8]) -> Option<HttpVersion> {
    match text {
        b"HTTP/1.1" => Some(HttpVersion::Http11),
        b"HTTP/1.0" => Some(HttpVersion::Http10),
        _ => None,
    }
}

/// Parses the header field lines of `head`. Continuation lines (obs-fold)
/// are joined to the previous value with one space. In requests, fields
/// whose name contains `_` are dropped, as werkzeug drops them from the
/// WSGI environ, together with their continuation lines.
fn parse_fields<'a>(
    head: &'a Bytes,
    lines: impl Iterator<Item = &'a [u8]>,
    role: Role,
    anomalies: &mut Vec<FramingAnomaly>,
) -> Result<Headers, HeadError> {
    let mut fields: Vec<(HeaderName, Bytes)> = Vec::with_capacity(16);
    // Whether a field came before, and whether the last one was dropped:
    // a continuation line belongs to the last field, kept or not.
    let mut last_dropped = None;
    for line in lines {
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if !last_dropped.ok_or(HeadError::FoldWithoutField)? {
                if let Some((_, value)) = fields.last_mut() {
                    let mut joined = Vec::with_capacity(value.len() + line.len());
                    joined.extend_from_slice(value);
                    joined.push(b' ');
                    joined.extend_from_slice(trim(line));
                    *value = Bytes::from(joined);
                }
            }
            push_once(anomalies, FramingAnomaly::ObsFold);
            continue;
        }
        let colon = memchr::memchr(b':', line).ok_or(HeadError::InvalidFieldName)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::InvalidFieldName);
        }
        let dropped = role == Role::Request && name.contains(&b'_');
        last_dropped = Some(dropped);
        if dropped {
            push_once(anomalies, FramingAnomaly::UnderscoreInHeaderName);
            continue;
        }
        // The name passed the token-character check above, so it is ASCII.
        fields.push((HeaderName::from_token(head.slice_ref(name)), head.slice_ref(trim(&line[colon + 1..]))));
    }
    Ok(Headers(fields))
}

/// Returns `value` without leading and trailing spaces and tabs.
pub(super) fn trim(value: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Returns whether `b` is a token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// [`is_tchar`] for each byte value, so a header name costs one lookup per
/// byte.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(b, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        byte += 1;
    }
    table
};

pub(super) fn push_once(anomalies: &mut Vec<FramingAnomaly>, anomaly: FramingAnomaly) {
    if !anomalies.contains(&anomaly) {
        anomalies.push(anomaly);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits and flags a head as the byte-at-a-time version did.
    fn split_lines_bytewise(head: &[u8]) -> (Vec<Vec<u8>>, Vec<FramingAnomaly>) {
        let mut anomalies = Vec::new();
        if head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r')) {
            anomalies.push(FramingAnomaly::BareLf);
        }
        if head.iter().enumerate().any(|(i, &b)| b == b'\r' && head.get(i + 1) != Some(&b'\n')) {
            anomalies.push(FramingAnomaly::BareCr);
        }
        let body = head.strip_suffix(b"\n").unwrap_or(head);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        let lines = body.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line).to_vec()).collect();
        (lines, anomalies)
    }

    /// Parses field lines as the version that copied each value did.
    fn parse_fields_copying(lines: &[&[u8]], role: Role) -> Result<(Headers, Vec<FramingAnomaly>), HeadError> {
        let mut anomalies = Vec::new();
        let mut fields: Vec<(String, Vec<u8>, bool)> = Vec::new();
        for line in lines {
            if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                let (_, value, _) = fields.last_mut().ok_or(HeadError::FoldWithoutField)?;
                value.push(b' ');
                value.extend_from_slice(trim(line));
                push_once(&mut anomalies, FramingAnomaly::ObsFold);
                continue;
            }
            let colon = line.iter().position(|&b| b == b':').ok_or(HeadError::InvalidFieldName)?;
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(HeadError::InvalidFieldName);
            }
            let dropped = role == Role::Request && name.contains(&b'_');
            if dropped {
                push_once(&mut anomalies, FramingAnomaly::UnderscoreInHeaderName);
            }
            fields.push((String::from_utf8_lossy(name).into_owned(), trim(&line[colon + 1..]).to_vec(), dropped));
        }
        let kept = fields.into_iter().filter(|(_, _, dropped)| !dropped).map(|(name, value, _)| (name.into(), Bytes::from(value)));
        Ok((Headers(kept.collect()), anomalies))
    }

    /// Every sequence of up to four field lines drawn from folds, dropped
    /// names, empty values, bad names and non-ASCII values parses as the
    /// copying version parsed it, in both roles.
    #[test]
    fn parse_fields_matches_copying_version() {
        let pool: [&[u8]; 9] =
            [b"A: one", b"X_B: two", b" fold", b"\t \t", b"E:", b"N: caf\xc3\xa9 \xff ", b"Bad Name: x", b"no colon", b"C:\t x y\t"];
        for role in [Role::Request, Role::Response] {
            for length in 0..=4u32 {
                for mut code in 0..pool.len().pow(length) {
                    let mut lines: Vec<&[u8]> = Vec::new();
                    for _ in 0..length {
                        lines.push(pool[code % pool.len()]);
                        code /= pool.len();
                    }
                    let mut text = b"X / HTTP/1.1".to_vec();
                    for line in &lines {
                        text.extend_from_slice(b"\r\n");
                        text.extend_from_slice(line);
                    }
                    text.extend_from_slice(b"\r\n\r\n");
                    let head = Bytes::from(text);
                    let mut anomalies = Vec::new();
                    let mut split = split_lines(&head, &mut anomalies);
                    split.next();
                    let parsed = parse_fields(&head, split, role, &mut anomalies).map(|headers| (headers, anomalies));
                    assert_eq!(parsed, parse_fields_copying(&lines, role), "{role:?} {:?}", head.escape_ascii().to_string());
                }
            }
        }
    }

    #[test]
    fn split_lines_matches_bytewise() {
        // Every head of up to 8 bytes over `a`, CR and LF.
        for length in 0..=8u32 {
            for mut code in 0..3usize.pow(length) {
                let mut head = Vec::new();
                for _ in 0..length {
                    head.push([b'a', b'\r', b'\n'][code % 3]);
                    code /= 3;
                }
                let mut anomalies = Vec::new();
                let lines: Vec<Vec<u8>> = split_lines(&head, &mut anomalies).map(<[u8]>::to_vec).collect();
                assert_eq!((lines, anomalies), split_lines_bytewise(&head), "{:?}", head.escape_ascii().to_string());
            }
        }
    }

    #[test]
    fn line_end_edge_cases() {
        let anomalies = |head: &[u8]| {
            let mut anomalies = Vec::new();
            split_lines(head, &mut anomalies).for_each(drop);
            anomalies
        };
        assert_eq!(anomalies(b""), vec![]);
        assert_eq!(anomalies(b"\n"), vec![FramingAnomaly::BareLf]);
        assert_eq!(anomalies(b"\r"), vec![FramingAnomaly::BareCr]);
        assert_eq!(anomalies(b"\r\n"), vec![]);
        assert_eq!(anomalies(b"\n\r"), vec![FramingAnomaly::BareLf, FramingAnomaly::BareCr]);
        assert_eq!(anomalies(b"GET / HTTP/1.1\r\nA: b\r\n\r"), vec![FramingAnomaly::BareCr]);
        assert_eq!(anomalies(b"GET / HTTP/1.1\r\r\n\n"), vec![FramingAnomaly::BareLf, FramingAnomaly::BareCr]);
    }

    #[test]
    fn tchar_table_matches_rfc() {
        for byte in 0..=u8::MAX {
            let expected = byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
            assert_eq!(is_tchar(byte), expected, "byte {byte:#04x}");
        }
    }
}

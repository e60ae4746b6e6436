//! Where a message body ends (RFC 9112 §6), read the way werkzeug reads it,
//! and the decoding of chunked bodies.

use super::head::{push_once, trim};
use crate::http::{FramingAnomaly, Headers};
use bytes::{Bytes, BytesMut};

/// Maximum length of a chunk-size line.
const MAX_CHUNK_LINE: usize = 4096;

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// Exactly this many bytes (0 for no body).
    Length(u64),
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// Returns the framing of a request body, as werkzeug's development server
/// reads it: `chunked` anywhere in `Transfer-Encoding` selects chunked
/// framing, otherwise the last `Content-Length` read like Python's `int()`
/// gives the length, and a missing or unreadable one means no body.
pub(super) fn request_framing(
    headers: &Headers,
    anomalies: &mut Vec<FramingAnomaly>,
) -> BodyFraming {
    check_content_encoding(headers, anomalies);
    let chunked = transfer_coding(headers, anomalies);
    let length = content_length(headers, anomalies);
    if chunked == Some(true) {
        return BodyFraming::Chunked;
    }
    BodyFraming::Length(length.unwrap_or(0))
}

/// Returns the framing of a response body (RFC 9112 §6.3). `status` is the
/// final status and `request_method` the method of the request it answers.
pub(super) fn response_framing(
    status: u16,
    request_method: Option<&str>,
    headers: &Headers,
    anomalies: &mut Vec<FramingAnomaly>,
) -> BodyFraming {
    let bodiless_status = (100..200).contains(&status) || status == 204 || status == 304;
    let connect_accepted = request_method == Some("CONNECT") && (200..300).contains(&status);
    if bodiless_status || request_method == Some("HEAD") || connect_accepted {
        return BodyFraming::Length(0);
    }
    match (
        transfer_coding(headers, anomalies),
        content_length(headers, anomalies),
    ) {
        (Some(true), _) => BodyFraming::Chunked,
        (Some(false), _) => BodyFraming::UntilClose,
        (None, Some(length)) => BodyFraming::Length(length),
        (None, None) => BodyFraming::UntilClose,
    }
}

/// Reads `Transfer-Encoding`: `None` when absent, else whether `chunked` is
/// among the codings. Anything but the single coding `chunked` is flagged,
/// because werkzeug honours `chunked` anywhere in the list.
fn transfer_coding(headers: &Headers, anomalies: &mut Vec<FramingAnomaly>) -> Option<bool> {
    headers.get("transfer-encoding")?;
    let mut codings = Vec::new();
    for value in headers.get_all("transfer-encoding") {
        for coding in value.split(|&b| b == b',') {
            let coding = trim(coding);
            if !coding.is_empty() {
                codings.push(coding.to_ascii_lowercase());
            }
        }
    }
    if codings.len() != 1 || codings[0] != b"chunked" {
        push_once(anomalies, FramingAnomaly::UnsupportedTransferCoding);
    }
    if headers.get("content-length").is_some() {
        push_once(anomalies, FramingAnomaly::ContentLengthWithTransferEncoding);
    }
    Some(codings.iter().any(|coding| coding == b"chunked"))
}

/// Reads the last `Content-Length`, the one werkzeug uses, the way Python's
/// `int()` reads it: surrounding whitespace, a sign and `_` between digits
/// are accepted, and a negative value counts as 0. Duplicate fields and
/// values that are not plain decimal digits are flagged. Returns `None` when
/// the field is absent or unreadable.
// NOTE: stricter werkzeug releases reject the sign and `_` forms that `int()`
// accepts, so which length Odoo uses for them depends on its werkzeug. They
// are flagged as InvalidContentLength either way.
fn content_length(headers: &Headers, anomalies: &mut Vec<FramingAnomaly>) -> Option<u64> {
    let mut last = None;
    for (count, value) in headers.get_all("content-length").enumerate() {
        if count == 1 {
            push_once(anomalies, FramingAnomaly::DuplicateContentLength);
        }
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            push_once(anomalies, FramingAnomaly::InvalidContentLength);
        }
        last = Some(value);
    }
    python_int(last?).map(|n| n.max(0) as u64)
}

/// Parses `text` like Python's `int(text)` for ASCII input. Values beyond
/// `i128` saturate, which no real body reaches.
fn python_int(text: &[u8]) -> Option<i128> {
    let text = text.trim_ascii();
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let valid = !digits.is_empty()
        && digits.first().is_some_and(u8::is_ascii_digit)
        && digits.last().is_some_and(u8::is_ascii_digit)
        && !digits.windows(2).any(|w| w == b"__")
        && digits.iter().all(|&b| b.is_ascii_digit() || b == b'_');
    if !valid {
        return None;
    }
    let value = digits
        .iter()
        .filter(|b| b.is_ascii_digit())
        .fold(0i128, |n, &d| {
            n.saturating_mul(10).saturating_add(i128::from(d - b'0'))
        });
    Some(if negative { -value } else { value })
}

/// Flags a `Content-Encoding` other than `identity` on a request.
fn check_content_encoding(headers: &Headers, anomalies: &mut Vec<FramingAnomaly>) {
    let encoded = headers.get_all("content-encoding").any(|value| {
        let value = trim(value);
        !value.is_empty() && !value.eq_ignore_ascii_case(b"identity")
    });
    if encoded {
        push_once(anomalies, FramingAnomaly::EncodedBody);
    }
}

// === impl BodySink ===

/// The kept part of a body: at most `max` bytes, while the framing goes on
/// counting the rest.
#[derive(Debug)]
pub(super) struct BodySink {
    bytes: BytesMut,
    max: usize,
    truncated: bool,
}

impl BodySink {
    pub fn new(max: usize) -> Self {
        Self {
            bytes: BytesMut::new(),
            max,
            truncated: false,
        }
    }

    pub fn extend(&mut self, data: &[u8]) {
        let room = self.max - self.bytes.len();
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    pub fn finish(self) -> (Bytes, bool) {
        (self.bytes.freeze(), self.truncated)
    }
}

// === impl ChunkedDecoder ===

/// An error that stops the decoding of a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum ChunkError {
    #[error("invalid chunk size")]
    InvalidSize,
    #[error("missing line end after chunk data")]
    MissingDataEnd,
    #[error("trailer section too large")]
    TrailerTooLarge,
    #[error("chunk extension")]
    Extension,
    #[error("trailer field after the last chunk")]
    TrailerField,
}

impl ChunkError {
    /// Returns the bounded reason reported in [`super::FramerEvent::Malformed`].
    pub fn reason(self) -> &'static str {
        match self {
            Self::InvalidSize => "invalid chunk size",
            Self::MissingDataEnd => "missing line end after chunk data",
            Self::TrailerTooLarge => "trailer section too large",
            Self::Extension => "chunk extension",
            Self::TrailerField => "trailer field after the last chunk",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data { remaining: u64 },
    DataEnd,
    Trailers,
    Done,
}

/// Decodes a chunked body (RFC 9112 §7.1) incrementally, as werkzeug's
/// `DechunkedInput` reads it. Lines may end in LF alone, which werkzeug
/// accepts and odoogate flags.
///
/// Chunk extensions and trailer fields are errors. RFC 9112 allows both,
/// but werkzeug (2.x and 3.x) parses the whole size line with
/// `int(line.strip(), 16)` and, after the last chunk, reads exactly one
/// more line that must be empty. With either, werkzeug stops reading the
/// body at that line, and Odoo's server then reads the bytes after it as
/// the next request, which odoogate would have read as part of this body.
#[derive(Debug)]
pub(super) struct ChunkedDecoder {
    state: ChunkState,
    line: Vec<u8>,
    /// Bound of the line read after the last chunk, which must be empty.
    max_trailer_bytes: usize,
}

impl ChunkedDecoder {
    pub fn new(max_trailer_bytes: usize) -> Self {
        Self {
            state: ChunkState::Size,
            line: Vec::new(),
            max_trailer_bytes,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input` into `body`, stopping early when the body ends.
    /// Returns how many bytes it used, and the error that stopped it, if any.
    pub fn feed(
        &mut self,
        input: &[u8],
        body: &mut BodySink,
        anomalies: &mut Vec<FramingAnomaly>,
    ) -> (usize, Result<(), ChunkError>) {
        let mut used = 0;
        while used < input.len() && !self.is_done() {
            let rest = &input[used..];
            let (step, result) = match self.state {
                ChunkState::Data { remaining } => (self.feed_data(rest, remaining, body), Ok(())),
                _ => self.feed_line(rest, anomalies),
            };
            used += step;
            if result.is_err() {
                return (used, result);
            }
        }
        (used, Ok(()))
    }

    fn feed_data(&mut self, input: &[u8], remaining: u64, body: &mut BodySink) -> usize {
        let take = input
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        body.extend(&input[..take]);
        let remaining = remaining - take as u64;
        self.state = if remaining == 0 {
            ChunkState::DataEnd
        } else {
            ChunkState::Data { remaining }
        };
        take
    }

    /// Collects a line from `input` and, once it is complete, acts on it.
    fn feed_line(
        &mut self,
        input: &[u8],
        anomalies: &mut Vec<FramingAnomaly>,
    ) -> (usize, Result<(), ChunkError>) {
        let limit = match self.state {
            ChunkState::Trailers => self.max_trailer_bytes,
            _ => MAX_CHUNK_LINE,
        };
        let lf = input.iter().position(|&b| b == b'\n');
        let used = lf.map_or(input.len(), |lf| lf + 1);
        self.line
            .extend_from_slice(&input[..lf.unwrap_or(input.len())]);
        if self.line.len() > limit {
            return (used, Err(self.line_too_long()));
        }
        if lf.is_none() {
            return (used, Ok(()));
        }

        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        } else {
            push_once(anomalies, FramingAnomaly::ChunkLineNotCrlf);
        }
        (used, self.end_line(&line))
    }

    fn line_too_long(&self) -> ChunkError {
        match self.state {
            ChunkState::Trailers => ChunkError::TrailerTooLarge,
            _ => ChunkError::InvalidSize,
        }
    }

    fn end_line(&mut self, line: &[u8]) -> Result<(), ChunkError> {
        self.state = match self.state {
            ChunkState::Size => match parse_chunk_size(line)? {
                0 => ChunkState::Trailers,
                size => ChunkState::Data { remaining: size },
            },
            ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
            ChunkState::DataEnd => return Err(ChunkError::MissingDataEnd),
            ChunkState::Trailers if line.is_empty() => ChunkState::Done,
            ChunkState::Trailers => return Err(ChunkError::TrailerField),
            state @ (ChunkState::Data { .. } | ChunkState::Done) => state,
        };
        Ok(())
    }
}

/// Parses a chunk-size line: hex digits, with spaces or tabs around them.
/// The forms Python's `int(text, 16)` also accepts (`0x`, a sign, `_`) are
/// rejected, which only makes odoogate stricter than werkzeug.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    if line.contains(&b';') {
        return Err(ChunkError::Extension);
    }
    let size = trim(line);
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(ChunkError::InvalidSize);
    }
    let text = std::str::from_utf8(size).map_err(|_| ChunkError::InvalidSize)?;
    u64::from_str_radix(text, 16).map_err(|_| ChunkError::InvalidSize)
}

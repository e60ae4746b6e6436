//! Reads a saved raw HTTP request with the same framer the observe path
//! uses.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::http::HttpRequest;
use crate::http::framer::{FramerEvent, FramerLimits, RequestFramer};

/// Largest request file read: a head of at most 64 KiB and a body of at
/// most the decoders' default 16 MiB, with room to spare.
pub const MAX_REQUEST_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Bounds passed to the framer, the same as the observe path's defaults.
const LIMITS: FramerLimits = FramerLimits { max_header_bytes: 64 * 1024, max_body_bytes: 16 * 1024 * 1024 };

/// An error reading a request file.
#[derive(Debug, thiserror::Error)]
pub enum RequestFileError {
    #[error("failed to read the request file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the request file {} is larger than {max} bytes", path.display(), max = MAX_REQUEST_FILE_BYTES)]
    TooLarge { path: PathBuf },
    #[error(
        "the request file {} holds no complete HTTP request ({reason}); check the request line \
         and that Content-Length matches the body",
        path.display()
    )]
    Incomplete { path: PathBuf, reason: &'static str },
}

/// Reads the first request in the file at `path`.
///
/// A file whose head uses LF line ends only (typed by hand, or saved by a
/// tool that rewrites line ends) gets CRLF line ends in its head before
/// framing, so the file's format is not reported as a `bare_lf` framing
/// anomaly. The body is kept byte for byte, and `Content-Length` must
/// match it.
pub fn read_request(path: &Path) -> Result<HttpRequest, RequestFileError> {
    let bytes = read_bounded(path)?;
    let bytes = crlf_head(&bytes);
    frame_first(&bytes).map_err(|reason| RequestFileError::Incomplete { path: path.to_owned(), reason })
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, RequestFileError> {
    let read_error = |source| RequestFileError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_REQUEST_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_REQUEST_FILE_BYTES {
        return Err(RequestFileError::TooLarge { path: path.to_owned() });
    }
    Ok(bytes)
}

/// Frames `bytes` and returns the first request.
pub(super) fn frame_first(bytes: &[u8]) -> Result<HttpRequest, &'static str> {
    let mut framer = RequestFramer::new(LIMITS);
    let mut events = Vec::new();
    framer.push(bytes, 0, &mut events);
    framer.finish(&mut events);

    let mut problem = "the file is empty";
    for event in events {
        match event {
            FramerEvent::Request(request) => return Ok(request),
            FramerEvent::Malformed { reason } => problem = reason,
            FramerEvent::Desync { .. } => problem = "bytes before the request line",
            _ => {}
        }
    }
    Err(problem)
}

/// Returns `bytes` with CRLF line ends in the head when the head has no CR
/// at all; otherwise returns `bytes` unchanged.
pub(super) fn crlf_head(bytes: &[u8]) -> Vec<u8> {
    let Some(head_end) = find(bytes, b"\n\n") else {
        return bytes.to_vec();
    };
    let head = &bytes[..head_end];
    if head.contains(&b'\r') {
        return bytes.to_vec();
    }

    let mut out = Vec::with_capacity(bytes.len() + head.len() / 16 + 2);
    for &byte in head {
        if byte == b'\n' {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&bytes[head_end + 2..]);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_head_rewrites_lf_only_head() {
        let converted = crlf_head(b"POST /jsonrpc HTTP/1.1\nContent-Length: 3\n\na\nb");
        assert_eq!(converted, b"POST /jsonrpc HTTP/1.1\r\nContent-Length: 3\r\n\r\na\nb");
    }

    #[test]
    fn crlf_head_keeps_crlf_file() {
        let raw = b"POST /jsonrpc HTTP/1.1\r\nContent-Length: 3\r\n\r\na\n\nb";
        assert_eq!(crlf_head(raw), raw);
    }

    #[test]
    fn frame_first_reads_lf_only_request() {
        let request = frame_first(&crlf_head(b"POST /jsonrpc HTTP/1.1\nContent-Length: 2\n\n{}")).unwrap();
        assert_eq!(request.target, "/jsonrpc");
        assert_eq!(&request.body[..], b"{}");
        assert!(request.anomalies.is_empty(), "{:?}", request.anomalies);
    }

    #[test]
    fn frame_first_rejects_short_body() {
        let error = frame_first(b"POST /jsonrpc HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}").unwrap_err();
        assert!(!error.is_empty());
    }

    #[test]
    fn frame_first_rejects_empty_file() {
        assert_eq!(frame_first(b"").unwrap_err(), "the file is empty");
    }
}

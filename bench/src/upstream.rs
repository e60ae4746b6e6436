//! A fast Odoo-like upstream: it sends one canned Odoo 19 response to every
//! request and keeps connections open, so the benchmarks measure
//! the proxy in front of it rather than the upstream itself.
//!
//! The request head is parsed with httparse and the body is skipped by its
//! `Content-Length`. Chunked bodies are rejected, because the benchmark
//! clients never send them. A request with `Connection: close` gets its response and
//! then the connection is closed.
//!
//! With `close_after_response`, every response carries `Connection: close`
//! and the connection is closed after it, as Odoo 19's werkzeug server does,
//! so every proxy in front of it opens one upstream connection per call.

use anyhow::{Context as _, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head the upstream accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Builds the response to send from a captured response (`NNN-resp.http`):
/// its status, `Content-Type` and body, with a fresh `Content-Length`, and
/// `Connection: close` only when `close` is set.
pub fn canned_response(captured: &[u8], close: bool) -> anyhow::Result<Vec<u8>> {
    let split = captured.windows(4).position(|window| window == b"\r\n\r\n").context("the captured response has no end of head")?;
    let (head, body) = (&captured[..split], &captured[split + 4..]);
    let head = std::str::from_utf8(head).context("the captured response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("the captured response is empty")?;
    let content_type = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim())
        .context("the captured response has no Content-Type")?;
    let connection = if close { "Connection: close\r\n" } else { "" };
    let mut response = format!(
        "{status_line}\r\nServer: odoogate-bench\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{connection}\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    Ok(response)
}

/// Serves `response` on `listen` until the process is killed. Writes
/// `ready_file` once the socket listens.
pub fn serve(listen: SocketAddr, response_file: &Path, ready_file: &Path, close_after_response: bool) -> anyhow::Result<()> {
    let captured = std::fs::read(response_file).with_context(|| format!("failed to read {}", response_file.display()))?;
    let response: Arc<[u8]> = canned_response(&captured, close_after_response)?.into();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.with_context(|| format!("failed to listen on {listen}"))?;
        std::fs::write(ready_file, b"ready\n").with_context(|| format!("failed to write {}", ready_file.display()))?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("upstream: failed to accept a connection: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let response = response.clone();
            tokio::spawn(async move {
                if let Err(error) = serve_connection(stream, &response, close_after_response).await {
                    eprintln!("upstream: connection ended with an error: {error:#}");
                }
            });
        }
    })
}

/// Sends `response` to each request on `stream` until the client closes the
/// connection or requests its close, or after the first response when
/// `close_after_response` is set.
async fn serve_connection(mut stream: TcpStream, response: &[u8], close_after_response: bool) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let Some((head_len, body_len, close)) = read_head(&mut stream, &mut buffer).await? else {
            return Ok(());
        };
        skip_body(&mut stream, &mut buffer, head_len, body_len).await?;
        stream.write_all(response).await?;
        if close || close_after_response {
            return Ok(());
        }
    }
}

/// Reads until `buffer` contains a whole request head. Returns its length, the
/// body's `Content-Length` and whether the client asked to close, or `None`
/// when the client closed the connection between requests.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<Option<(usize, usize, bool)>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = request.parse(buffer)? {
            let mut body_len = 0;
            let mut close = false;
            for header in request.headers.iter() {
                if header.name.eq_ignore_ascii_case("content-length") {
                    body_len = std::str::from_utf8(header.value)?.trim().parse().context("invalid Content-Length")?;
                } else if header.name.eq_ignore_ascii_case("connection") {
                    close = header.value.eq_ignore_ascii_case(b"close");
                } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked request bodies are not supported");
                }
            }
            return Ok(Some((head_len, body_len, close)));
        }
        if buffer.len() >= MAX_HEAD_BYTES {
            bail!("request head larger than {MAX_HEAD_BYTES} bytes");
        }
        if !read_more(stream, buffer).await? {
            if buffer.is_empty() {
                return Ok(None);
            }
            bail!("the client closed the connection inside a request head");
        }
    }
}

/// Drops the request's head and body from `buffer`, reading the rest of the
/// body from `stream` first. Bytes past the body stay for the next request.
async fn skip_body(stream: &mut TcpStream, buffer: &mut Vec<u8>, head_len: usize, body_len: usize) -> anyhow::Result<()> {
    let end = head_len + body_len;
    if buffer.len() >= end {
        buffer.drain(..end);
        return Ok(());
    }
    let mut missing = end - buffer.len();
    buffer.clear();
    let mut chunk = vec![0u8; 64 * 1024];
    while missing > 0 {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("the client closed the connection inside a request body");
        }
        if read > missing {
            buffer.extend_from_slice(&chunk[missing..read]);
            missing = 0;
        } else {
            missing -= read;
        }
    }
    Ok(())
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let read = stream.read(&mut chunk).await?;
    buffer.extend_from_slice(&chunk[..read]);
    Ok(read > 0)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &[u8] = b"HTTP/1.1 200 OK\r\nServer: Werkzeug/2.2.2\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\n<ok/>";

    #[test]
    fn canned_response_keeps_alive() {
        let response = String::from_utf8(canned_response(CAPTURED, false).unwrap()).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("Content-Type: text/xml; charset=utf-8\r\n"), "{response}");
        assert!(response.contains("Content-Length: 5\r\n"), "{response}");
        assert!(!response.to_ascii_lowercase().contains("connection:"), "{response}");
        assert!(response.ends_with("\r\n\r\n<ok/>"), "{response}");
    }

    #[test]
    fn canned_response_can_close() {
        let response = String::from_utf8(canned_response(CAPTURED, true).unwrap()).unwrap();
        assert!(response.contains("Connection: close\r\n"), "{response}");
    }

    #[test]
    fn upstream_serves_kept_alive_requests() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A response that never comes fails the test instead of hanging it.
        let exchange = async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let response: Vec<u8> = canned_response(CAPTURED, false).unwrap();
            let expected = response.clone();
            let server = tokio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                serve_connection(stream, &response, false).await
            });

            let mut client = TcpStream::connect(address).await.unwrap();
            // The first request and the start of the second in one write, so
            // the upstream must keep the second's head and read the rest of
            // its body later.
            let head = "POST /xmlrpc/2/object HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n";
            client.write_all(format!("{head}abc{head}a").as_bytes()).await.unwrap();
            let mut received = vec![0; expected.len()];
            client.read_exact(&mut received).await.unwrap();
            client.write_all(b"bc").await.unwrap();
            received.resize(expected.len() * 2, 0);
            client.read_exact(&mut received[expected.len()..]).await.unwrap();
            assert_eq!(&received[..expected.len()], expected.as_slice());
            assert_eq!(&received[expected.len()..], expected.as_slice());

            drop(client);
            assert!(server.await.unwrap().is_ok());
        };
        runtime.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await.expect("the upstream did not respond") });
    }
}

//! A small HTTP/1.1 server for `GET /metrics`, on its own thread.
//!
//! It serves one connection at a time: scrapes come from one Prometheus
//! every few seconds, and a bounded read timeout keeps a stalled client
//! from holding the thread for long. Each response closes its connection.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::Metrics;

/// Largest request head read; a scrape request is a few hundred bytes.
const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;

/// How long a client may take to send its request head, and to read the
/// response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Content type of the OpenMetrics text format that [`Metrics::encode`]
/// writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An error from starting the metrics server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to listen on {address} (metrics.listen): {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("failed to start the metrics thread: {0}")]
    Thread(#[source] io::Error),
}

/// The running metrics server. The thread serves until the process exits.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `address` and serves `metrics` from a new thread.
    pub fn start(address: SocketAddr, metrics: Arc<Metrics>) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(address).map_err(|source| ServerError::Bind { address, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { address, source })?;
        std::thread::Builder::new()
            .name("odoogate-metrics".into())
            .spawn(move || serve(&listener, &metrics))
            .map_err(ServerError::Thread)?;
        tracing::info!(listen = %local_addr, "Serving metrics on /metrics");
        Ok(Self { local_addr })
    }

    /// The bound address, with the port the kernel chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

fn serve(listener: &TcpListener, metrics: &Metrics) {
    for stream in listener.incoming() {
        let result = stream.and_then(|stream| answer(stream, metrics));
        if let Err(error) = result {
            tracing::debug!(%error, "Metrics request failed");
        }
    }
}

fn answer(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let response = match route(&head) {
        Route::Metrics { with_body } => {
            let body = metrics.encode();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if with_body { head + &body } else { head }
        }
        Route::Error(status) => {
            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
    };
    stream.write_all(response.as_bytes())
}

/// Reads up to the blank line that ends the request head, at most
/// [`MAX_REQUEST_HEAD_BYTES`]. A longer or unterminated head is returned
/// as read and rejected by [`route`].
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while head.len() < MAX_REQUEST_HEAD_BYTES && !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    Ok(head)
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { with_body: bool },
    Error(&'static str),
}

/// Picks the response for a request head.
fn route(head: &[u8]) -> Route {
    if !head.windows(4).any(|window| window == b"\r\n\r\n") {
        return Route::Error("400 Bad Request");
    }
    let request_line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::Error("400 Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Error("400 Bad Request");
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics { with_body: true },
        ("HEAD", "/metrics") => Route::Metrics { with_body: false },
        (_, "/metrics") => Route::Error("405 Method Not Allowed"),
        _ => Route::Error("404 Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_accepts_get_and_head() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics { with_body: true });
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics { with_body: true });
        assert_eq!(route(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Route::Metrics { with_body: false });
    }

    #[test]
    fn route_rejects_other_requests() {
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::Error("405 Method Not Allowed"));
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::Error("404 Not Found"));
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::Error("400 Bad Request"));
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::Error("400 Bad Request"));
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Route::Error("400 Bad Request"));
    }

    #[test]
    fn server_answers_scrape() {
        let metrics = Arc::new(Metrics::new());
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), metrics).unwrap();
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains(CONTENT_TYPE), "{response}");
        assert!(response.ends_with("# EOF\n"), "{response}");
    }

    #[test]
    fn server_rejects_oversized_head() {
        let metrics = Arc::new(Metrics::new());
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), metrics).unwrap();
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        // Exactly the limit, with no blank line, so the server reads all of
        // it and its close sends no reset.
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        request.resize(MAX_REQUEST_HEAD_BYTES, b'a');
        stream.write_all(&request).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{response}");
    }

    #[test]
    fn start_reports_busy_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = MetricsServer::start(address, Arc::new(Metrics::new())).unwrap_err();
        assert!(error.to_string().contains("metrics.listen"), "{error}");
    }
}

//! Reuse of upstream connections by the enforce-mode proxy, against a
//! scripted upstream that responds to each request as its `X-Reply` header
//! requests: kept open, closed, HTTP/1.0, unframed, with bytes after the
//! response, hung up without a response, or kept open with no response.
//! Needs no root.
//!
//! A connection may carry another request only after a clean HTTP/1.1
//! response read to its framed end. A pooled connection that Odoo closed
//! must not lose a request, and nothing of one request or its response may
//! reach another.

mod support;

use support::{Records, temp_dir};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use odoogate::audit::{AuditEvent, AuditRecord, Decision};
use odoogate::proxy::{DirectConnector, Proxy, Shards, Tokens};
use odoogate::secret::Secret;
use odoogate::token::{ServiceCredentials, TokenStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const SERVICE_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";
const CLIENT_PASSWORD: &str = "the-local-clients-password";

/// The body of every normal upstream response.
const REPLY_BODY: &str = r#"{"jsonrpc": "2.0", "id": 7, "result": []}"#;

/// Bytes the `extra` reply sends after its response: a second response
/// without a request.
const SMUGGLED: &str = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";

/// One request as the scripted upstream read it.
#[derive(Clone, Debug)]
struct Seen {
    /// The upstream connection, numbered from 0 in accept order.
    conn: usize,
    /// The request's place on its connection, from 0.
    index: usize,
    head: String,
    body: String,
}

/// A scripted upstream on 127.0.0.1.
struct ScriptedUpstream {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedUpstream {
    async fn start() -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for conn in 0.. {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve_scripted(stream, conn, log.clone()));
            }
        });
        ScriptedUpstream { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Returns the upstream connection each request arrived on, in order.
    fn connections(&self) -> Vec<usize> {
        self.seen().iter().map(|seen| seen.conn).collect()
    }
}

/// Serves one upstream connection until the script or the proxy ends it.
async fn serve_scripted(mut stream: TcpStream, conn: usize, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buffer = Vec::new();
    for index in 0.. {
        let Some((head, body)) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let reply = head.lines().find_map(|line| line.strip_prefix("X-Reply: ")).unwrap_or("keep").trim().to_owned();
        log.lock().unwrap().push(Seen { conn, index, head, body });

        let framed = format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{REPLY_BODY}", REPLY_BODY.len());
        let (response, close) = match reply.as_str() {
            "keep" => (format!("HTTP/1.1 200 OK\r\n{framed}"), false),
            "keep-then-close" => (format!("HTTP/1.1 200 OK\r\n{framed}"), true),
            "close" => (format!("HTTP/1.1 200 OK\r\nConnection: close\r\n{framed}"), true),
            // Stays open, so only the version keeps the proxy from reusing it.
            "http10" => (format!("HTTP/1.0 200 OK\r\n{framed}"), false),
            "unframed" => (format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{REPLY_BODY}"), true),
            "extra" => (format!("HTTP/1.1 200 OK\r\n{framed}{SMUGGLED}"), false),
            "continue" => (format!("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n{framed}"), false),
            "hangup-if-reused" if index > 0 => return,
            "hangup-if-reused" => (format!("HTTP/1.1 200 OK\r\n{framed}"), false),
            // Keeps the connection open and never responds.
            "hold" => return std::future::pending().await,
            other => panic!("unknown X-Reply {other}"),
        };
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// Reads one request framed by `Content-Length` (or without a body).
/// Returns `None` at the close.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, String)> {
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length: ").map(|value| value.trim().parse().unwrap()))
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = String::from_utf8(buffer[head_end..head_end + length].to_vec()).unwrap();
    buffer.drain(..head_end + length);
    Some((head, body))
}

fn config(upstream_port: u16) -> odoogate::config::Config {
    let text = format!(
        r#"
[odoo]
ports = [{upstream_port}]
interfaces = ["lo"]

[policy]
mode = "enforce"
unidentified = "deny"

[proxy]
upstream = "127.0.0.1:{upstream_port}"
request_timeout_secs = 10
upstream_timeout_secs = 10

[[integration]]
name = "assistant"
match = {{ token = true }}
allow = [{{ models = ["res.partner"], methods = ["search_read"] }}]

[[integration]]
name = "local"
match = {{ ip = ["127.0.0.1/32"] }}
allow = [{{ models = ["res.partner"], methods = ["search_read"] }}]
"#
    );
    odoogate::config::parse(&text, "proxy-pool-test.toml").expect("test config is valid")
}

/// The proxy in front of the scripted upstream.
struct Site {
    upstream: ScriptedUpstream,
    records: Records,
    port: u16,
    token: Secret,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The token store and credentials, kept while the proxy runs.
    _dir: support::ScratchDir,
}

impl Site {
    async fn start(name: &str) -> Site {
        Site::start_on(name, None).await
    }

    /// Starts the site with its client connections served on `shards`
    /// when given, as `odoogate run` serves them.
    async fn start_on(name: &str, shards: Option<Arc<Shards>>) -> Site {
        let dir = temp_dir(&format!("proxy-pool-{name}"));
        let upstream = ScriptedUpstream::start().await;
        let config = Arc::new(config(upstream.port));
        let store_path = dir.join("tokens.json");
        let (_, token) = TokenStore::create(&store_path, "assistant", None, std::time::SystemTime::now()).unwrap();
        let store = TokenStore::load(&store_path).unwrap();
        let credentials = ServiceCredentials::parse(&format!("default = \"{SERVICE_KEY}\"\n"), &dir.join("credentials.toml")).unwrap();
        let records = Records::default();
        let connector = DirectConnector::new(config.proxy.upstream);
        let mut proxy = Proxy::with_tokens(config, connector, Box::new(records.clone()), Tokens { store, credentials });
        if let Some(shards) = shards {
            proxy = proxy.with_shards(shards);
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            proxy.serve(listener, async { stopped.await.unwrap_or(()) }).await.unwrap();
        });
        Site { upstream, records, port, token, stop: Some(stop), _dir: dir }
    }

    /// Sends one request on a new client connection and reads until the
    /// proxy closes it.
    async fn exchange(&self, request: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Returns the call records once there are `count`, or after 5
    /// seconds.
    async fn calls_when(&self, count: usize) -> Vec<AuditRecord> {
        for _ in 0..50 {
            let calls: Vec<_> = self.records.0.lock().unwrap().iter().filter(|r| r.event == AuditEvent::Call).cloned().collect();
            if calls.len() >= count {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.records.0.lock().unwrap().iter().filter(|r| r.event == AuditEvent::Call).cloned().collect()
    }

    /// Sends a `search_read` call with `password` and the upstream reply
    /// `reply`, on a new client connection.
    async fn call(&self, password: &str, reply: &str) -> String {
        self.exchange(&call_request(password, reply)).await
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn call_request(password: &str, reply: &str) -> String {
    format!("{}Connection: close\r\n\r\n{}", call_head(password, reply), call_body(password))
}

/// Returns a `search_read` call that keeps the client connection open.
fn kept_alive_call_request(password: &str, reply: &str) -> String {
    format!("{}\r\n{}", call_head(password, reply), call_body(password))
}

/// Returns the head of a `search_read` call up to its last field,
/// without the blank line that ends it.
fn call_head(password: &str, reply: &str) -> String {
    let length = call_body(password).len();
    format!("POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nX-Reply: {reply}\r\nContent-Length: {length}\r\n")
}

fn call_body(password: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "method": "call", "id": 7,
        "params": {"service": "object", "method": "execute_kw",
                   "args": ["odoo19", 2, password, "res.partner", "search_read", [[]], {}]},
    })
    .to_string()
}

fn get_request(reply: &str) -> String {
    format!("GET /web/login HTTP/1.1\r\nHost: odoo\r\nX-Reply: {reply}\r\nConnection: close\r\n\r\n")
}

/// Asserts that `response` is the upstream's normal reply and nothing more.
fn assert_clean_reply(response: &str, context: &str) {
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{context}: {response}");
    assert!(response.ends_with(REPLY_BODY), "{context}: {response}");
    assert!(!response.contains("smuggled"), "{context}: {response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_upstream_is_reused() {
    let site = Site::start("reuse").await;
    for round in 0..3 {
        assert_clean_reply(&site.call(CLIENT_PASSWORD, "keep").await, &format!("call {round}"));
    }

    assert_eq!(site.upstream.connections(), vec![0, 0, 0], "one upstream connection for three calls");
    for seen in site.upstream.seen() {
        assert!(seen.head.contains("\r\nConnection: keep-alive\r\n"), "{}", seen.head);
    }
    let calls = site.calls_when(3).await;
    assert_eq!(calls.len(), 3, "one record per call");
    assert!(calls.iter().all(|call| call.decision == Some(Decision::Allow) && call.http_status == Some(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclean_responses_end_reuse() {
    let site = Site::start("no-reuse").await;
    for reply in ["close", "http10", "unframed", "extra", "continue"] {
        let response = site.call(CLIENT_PASSWORD, reply).await;
        assert!(response.contains(REPLY_BODY), "{reply}: {response}");
        assert_clean_reply(&site.call(CLIENT_PASSWORD, "keep").await, &format!("after {reply}"));

        // The call may reuse the connection of the call before it, but the
        // next call must open a new one.
        let connections = site.upstream.connections();
        let [.., unclean, next] = connections[..] else { panic!("two calls seen: {connections:?}") };
        assert!(next > unclean, "after {reply}: {connections:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_idle_connection_is_skipped() {
    let site = Site::start("closed-idle").await;
    assert_clean_reply(&site.call(CLIENT_PASSWORD, "keep-then-close").await, "first call");
    // Lets the upstream's FIN arrive before the next call.
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_clean_reply(&site.call(CLIENT_PASSWORD, "keep").await, "second call");
    assert_eq!(site.upstream.connections(), vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_connection_retries_idempotent() {
    let site = Site::start("stale-get").await;
    assert!(site.exchange(&get_request("keep")).await.starts_with("HTTP/1.1 200 OK\r\n"));

    // The upstream hangs up on the pooled connection after reading the
    // request; a GET may go again on a new connection.
    let response = site.exchange(&get_request("hangup-if-reused")).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert_eq!(site.upstream.connections(), vec![0, 0, 1], "sent again on a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_connection_fails_post() {
    let site = Site::start("stale-post").await;
    assert_clean_reply(&site.call(CLIENT_PASSWORD, "keep").await, "first call");

    // A call that reached Odoo whole may have run, so it is not sent again.
    let response = site.call(CLIENT_PASSWORD, "hangup-if-reused").await;
    assert!(response.starts_with("HTTP/1.1 502 BAD GATEWAY\r\n"), "{response}");
    assert_eq!(site.upstream.connections(), vec![0, 0], "sent once");
    // The record is written once the proxy has closed the client
    // connection, which may come after the client read the 502.
    let calls = site.calls_when(2).await;
    assert_eq!(calls.len(), 2, "one record per call");
    assert!(calls[1].message.contains("no response"), "{}", calls[1].message);

    // The pool is not left holding the broken connection.
    assert_clean_reply(&site.call(CLIENT_PASSWORD, "keep").await, "call after the failure");
    assert_eq!(site.upstream.connections(), vec![0, 0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_request_carries_only_its_credential() {
    let site = Site::start("credential").await;
    let token_response = site.call(site.token.expose(), "keep").await;
    assert_clean_reply(&token_response, "token call");
    assert_clean_reply(&site.call(CLIENT_PASSWORD, "keep").await, "password call");

    let seen = site.upstream.seen();
    assert_eq!(site.upstream.connections(), vec![0, 0], "both on one connection");
    assert_eq!(seen[0].index, 0);
    assert_eq!(seen[1].index, 1);
    assert!(seen[0].body.contains(SERVICE_KEY), "the token was swapped: {}", seen[0].body);
    assert!(!seen[0].body.contains(site.token.expose()), "{}", seen[0].body);
    assert!(!seen[1].head.contains(SERVICE_KEY), "{}", seen[1].head);
    assert!(!seen[1].body.contains(SERVICE_KEY), "{}", seen[1].body);
    assert!(seen[1].body.contains(CLIENT_PASSWORD), "{}", seen[1].body);
    assert!(!token_response.contains(SERVICE_KEY), "{token_response}");
}

/// `odoogate run` serves connections on two threads. A kept-alive upstream
/// connection is reused only by connections of the thread that opened it:
/// its readiness comes from that thread's reactor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_proxy_reuses_connections_per_thread() {
    let shards = Arc::new(Shards::start(2, || {}).unwrap());
    let site = Site::start_on("sharded", Some(shards)).await;
    // The first client stays connected, so the second goes to the other
    // thread, which has the fewest open connections.
    let mut first = TcpStream::connect(("127.0.0.1", site.port)).await.unwrap();
    let mut second = TcpStream::connect(("127.0.0.1", site.port)).await.unwrap();
    let mut buffers = [Vec::new(), Vec::new()];
    for round in 0..2 {
        for (client, buffer) in [&mut first, &mut second].into_iter().zip(buffers.iter_mut()) {
            client.write_all(kept_alive_call_request(CLIENT_PASSWORD, "keep").as_bytes()).await.unwrap();
            let (head, body) = tokio::time::timeout(Duration::from_secs(10), read_request(client, buffer)).await.unwrap().unwrap();
            assert_clean_reply(&format!("{head}{body}"), &format!("round {round}"));
        }
    }

    assert_eq!(site.upstream.connections(), vec![0, 1, 0, 1], "one upstream connection per thread, each reused");
    let calls = site.calls_when(4).await;
    assert!(calls.iter().all(|call| call.decision == Some(Decision::Allow)), "{calls:?}");
}

/// A call still waiting for Odoo when its connection is stopped, as at the
/// end of the shutdown grace period, may have reached Odoo, so it still
/// gets its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_stopped_before_response_is_recorded() {
    let shards = Arc::new(Shards::start(2, || {}).unwrap());
    let upstream = ScriptedUpstream::start().await;
    let config = Arc::new(config(upstream.port));
    let records = Records::default();
    let connector = DirectConnector::new(config.proxy.upstream);
    let proxy = Proxy::new(config, connector, Box::new(records.clone())).with_shards(shards);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = tokio::spawn(async move { proxy.serve(listener, std::future::pending()).await });

    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    client.write_all(call_request(CLIENT_PASSWORD, "hold").as_bytes()).await.unwrap();
    for _ in 0..1000 {
        if !upstream.seen().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.seen().len(), 1, "the call reached the upstream");
    assert!(records.0.lock().unwrap().is_empty(), "a record was written before the call ended");

    // Dropping the accept loop stops its connections, as the end of the
    // grace period does.
    serving.abort();
    assert!(serving.await.unwrap_err().is_cancelled());
    let mut calls = Vec::new();
    for _ in 0..1000 {
        calls = records.0.lock().unwrap().iter().filter(|record| record.event == AuditEvent::Call).cloned().collect::<Vec<_>>();
        if !calls.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::Allow));
    assert_eq!(calls[0].http_status, None);
    assert!(calls[0].message.contains("no response"), "{}", calls[0].message);
}

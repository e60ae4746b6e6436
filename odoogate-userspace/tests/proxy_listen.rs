//! The enforce-mode proxy in listen mode, in front of the Odoo-like
//! upstream (Python, standard library), driven by real clients and raw
//! sockets. Needs python3; no root.
//!
//! Allowed calls must reach the upstream (its request log has them),
//! denied calls and ambiguous framings must not, and clients must see the
//! errors their libraries expect.

mod support;

use support::{Records, Upstream, temp_dir};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use odoogate::audit::{AuditEvent, AuditRecord, Decision};
use odoogate::proxy::{DirectConnector, Proxy, Tokens};
use odoogate::secret::Secret;
use odoogate::token::{ServiceCredentials, TokenStore};
use serde_json::Value as Json;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const API_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";
const DB: &str = "odoo19";

impl Records {
    fn calls(&self) -> Vec<AuditRecord> {
        self.0.lock().unwrap().iter().filter(|r| r.event == AuditEvent::Call).cloned().collect()
    }

    fn of_event(&self, event: AuditEvent) -> Vec<AuditRecord> {
        self.0.lock().unwrap().iter().filter(|r| r.event == event).cloned().collect()
    }
}

impl Upstream {
    fn received(&self, model_method: &str) -> bool {
        self.requests().iter().any(|entry| {
            entry["params"]["model_method"] == model_method || entry["method"] == model_method
        })
    }
}

/// Builds the proxy's configuration, with its sessions file in `dir`.
fn config(upstream_port: u16, dir: &Path) -> odoogate::config::Config {
    let fingerprint = hex::encode(Sha256::digest(API_KEY.as_bytes()));
    let sessions_file = dir.join("sessions.json").display().to_string();
    let text = format!(
        r#"
[odoo]
ports = [{upstream_port}]
interfaces = ["lo"]

[policy]
mode = "enforce"
unidentified = "deny"
sessions_file = "{sessions_file}"

[proxy]
upstream = "127.0.0.1:{upstream_port}"
request_timeout_secs = 10
upstream_timeout_secs = 10

[[integration]]
name = "reader"
match = {{ api_key_sha256 = ["{fingerprint}"] }}
allow = [
  {{ models = ["res.partner"], methods = ["search", "search_read", "read", "fields_get"] }},
  {{ models = ["ir.model"], methods = ["search", "read", "search_read"] }},
  {{ models = ["res.users"], methods = ["context_get"] }},
]

[[integration]]
name = "assistant"
match = {{ token = true }}
allow = [{{ models = ["res.partner"], methods = ["search_read"] }}]
web_routes = ["/web/image/res.partner/*/avatar_128"]

[[integration]]
name = "local"
match = {{ ip = ["127.0.0.1/32"] }}
"#
    );
    odoogate::config::parse(&text, "proxy-test.toml").expect("test config is valid")
}

/// A running proxy in front of a running upstream.
struct Site {
    upstream: Upstream,
    records: Records,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: support::ScratchDir,
}

impl Site {
    async fn start(name: &str) -> Site {
        Self::start_with(name, |_| None).await.0
    }

    /// Starts a site whose proxy accepts scoped tokens, and returns a valid
    /// token of integration `assistant`.
    async fn start_with_token(name: &str) -> (Site, Secret) {
        let (site, token) = Self::start_with(name, |dir| {
            let store_path = dir.join("tokens.json");
            let (_, token) = TokenStore::create(&store_path, "assistant", None, std::time::SystemTime::now()).unwrap();
            let store = TokenStore::load(&store_path).unwrap();
            let credentials = ServiceCredentials::parse(&format!("default = \"{API_KEY}\"\n"), &dir.join("credentials.toml")).unwrap();
            Some((Tokens { store, credentials }, token))
        })
        .await;
        (site, token.unwrap())
    }

    async fn start_with(name: &str, tokens: impl FnOnce(&Path) -> Option<(Tokens, Secret)>) -> (Site, Option<Secret>) {
        let dir = temp_dir(&format!("proxy-{name}"));
        let upstream = Upstream::start(&dir, API_KEY);
        let config = Arc::new(config(upstream.port, &dir));
        let records = Records::default();
        let connector = DirectConnector::new(config.proxy.upstream);
        let (proxy, token) = match tokens(&dir) {
            Some((tokens, token)) => (Proxy::with_tokens(config, connector, Box::new(records.clone()), tokens), Some(token)),
            None => (Proxy::new(config, connector, Box::new(records.clone())), None),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            proxy.serve(listener, async { stopped.await.unwrap_or(()) }).await.unwrap();
        });
        (Site { upstream, records, port, stop: Some(stop), _dir: dir }, token)
    }

    /// Runs a Python client with `python` and returns its JSON lines.
    fn python(&self, python: &Path, code: &str) -> Vec<Json> {
        let output = Command::new(python)
            .args(["-c", code, &self.port.to_string()])
            .output()
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "client failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// Sends raw bytes on a new connection and reads until the proxy
    /// closes it.
    async fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn jsonrpc_body(method: &str, password: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "method": "call", "id": 7,
        "params": {"service": "object", "method": "execute_kw", "args": [DB, 2, password, "res.partner", method, [[]], {}]},
    })
    .to_string()
}

fn post(path: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn python3() -> PathBuf {
    PathBuf::from("python3")
}

const XMLRPC_CLIENT: &str = r#"
import json, sys, xmlrpc.client
url = "http://127.0.0.1:%s" % sys.argv[1]
models = xmlrpc.client.ServerProxy(url + "/xmlrpc/2/object")
rows = models.execute_kw("odoo19", 2, "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345", "res.partner", "search_read", [[]], {"fields": ["name"]})
print(json.dumps({"call": "search_read", "rows": len(rows)}))
try:
    models.execute_kw("odoo19", 2, "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345", "res.partner", "unlink", [[1]])
    print(json.dumps({"call": "unlink", "fault": None}))
except xmlrpc.client.Fault as fault:
    print(json.dumps({"call": "unlink", "fault": fault.faultCode, "message": fault.faultString}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmlrpc_client_allowed_and_denied() {
    let site = Site::start("xmlrpc").await;
    let lines = tokio::task::block_in_place(|| site.python(&python3(), XMLRPC_CLIENT));

    assert_eq!(lines[0]["rows"], 3, "search_read went through: {lines:?}");
    assert_eq!(lines[1]["fault"], 4, "unlink is an AccessError fault: {lines:?}");
    let message = lines[1]["message"].as_str().unwrap();
    assert!(message.contains("reader") && message.contains("res.partner.unlink"), "{message}");
    assert!(!message.contains(API_KEY), "the fault never names the key");

    assert!(site.upstream.received("search_read"));
    assert!(!site.upstream.received("unlink"), "a denied call never reaches Odoo");

    let calls = site.records.calls();
    let unlink = calls.iter().find(|r| r.method.as_deref() == Some("unlink")).expect("unlink recorded");
    assert_eq!(unlink.decision, Some(Decision::Deny));
    assert_eq!(unlink.outcome.as_deref(), Some("fault:4"));
    assert_eq!(unlink.integration.as_deref(), Some("reader"));
    let read = calls.iter().find(|r| r.method.as_deref() == Some("search_read")).expect("search_read recorded");
    assert_eq!(read.decision, Some(Decision::Allow));
    assert_eq!(read.outcome.as_deref(), Some("ok"));
    assert!(read.latency_us.is_some());
}

const ODOORPC_CLIENT: &str = r#"
import json, sys, odoorpc
odoo = odoorpc.ODOO("127.0.0.1", port=int(sys.argv[1]))
odoo.login("odoo19", "admin", "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345")
partners = odoo.env["res.partner"]
print(json.dumps({"call": "search", "count": len(partners.search([]))}))
try:
    partners.unlink([3])
    print(json.dumps({"call": "unlink", "error": None}))
except odoorpc.error.RPCError as error:
    print(json.dumps({"call": "unlink", "error": error.info["data"]["name"], "message": str(error)}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoorpc_client_gets_access_error() {
    let python = odoogate_venv_python();
    if !python.exists() {
        eprintln!("skipped: {} not found (run `cargo xtask setup`)", python.display());
        return;
    }
    let site = Site::start("odoorpc").await;
    let lines = tokio::task::block_in_place(|| site.python(&python, ODOORPC_CLIENT));

    assert_eq!(lines[0]["count"], 3, "{lines:?}");
    assert_eq!(lines[1]["error"], "odoo.exceptions.AccessError", "{lines:?}");
    assert!(!site.upstream.received("unlink"));
}

fn odoogate_venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/.venv/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json2_denial_is_403() {
    let site = Site::start("json2").await;
    let extra = format!("Authorization: bearer {API_KEY}\r\nConnection: close\r\n");
    let response = site.raw(&post("/json/2/res.partner/unlink", r#"{"ids": [1]}"#, &extra)).await;

    assert!(response.starts_with("HTTP/1.1 403 FORBIDDEN\r\n"), "{response}");
    let body: Json = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["name"], "odoo.exceptions.AccessError");
    assert!(!site.upstream.received("unlink"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framings_are_rejected() {
    let site = Site::start("framing").await;
    let body = jsonrpc_body("search", API_KEY);
    let len = body.len();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("duplicate content-length", post("/jsonrpc", &body, &format!("Content-Length: {len}\r\n"))),
        ("content-length with chunked", post("/jsonrpc", &body, "Transfer-Encoding: chunked\r\n")),
        (
            "obs-fold",
            format!("POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nX-Note: a\r\n b\r\nContent-Length: {len}\r\n\r\n{body}").into_bytes(),
        ),
        ("bare LF", format!("POST /jsonrpc HTTP/1.1\nHost: odoo\nContent-Length: {len}\n\n{body}").into_bytes()),
        ("underscore header", post("/jsonrpc", &body, "X_Odoo_Db: odoo19\r\n")),
        ("bare CR hiding a header", post("/jsonrpc", &body, "X-A: a\rTransfer-Encoding: chunked\r\n")),
        (
            "chunk line without CRLF",
            format!("POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\n{body}\r\n0\r\n\r\n").into_bytes(),
        ),
        (
            "chunked on a streamed route",
            b"POST /web/binary/upload HTTP/1.1\r\nHost: odoo\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n".to_vec(),
        ),
    ];

    for (name, request) in cases {
        let response = site.raw(&request).await;
        assert!(response.starts_with("HTTP/1.1 400 BAD REQUEST\r\n"), "{name}: {response}");
        assert!(response.contains("Connection: close\r\n"), "{name}: {response}");
    }
    assert!(site.upstream.requests().is_empty(), "nothing reached Odoo: {:?}", site.upstream.requests());

    let anomalies: Vec<String> = site.records.of_event(AuditEvent::FramingAnomaly).iter().filter_map(|r| r.error_code.clone()).collect();
    for code in [
        "duplicate_content_length",
        "content_length_with_transfer_encoding",
        "obs_fold",
        "bare_lf",
        "bare_cr",
        "underscore_in_header_name",
        "chunk_line_not_crlf",
    ] {
        assert!(anomalies.iter().any(|found| found == code), "{code} recorded: {anomalies:?}");
    }
    let denied = site.records.calls().into_iter().filter(|r| r.decision == Some(Decision::Deny)).count();
    // Only the chunked body is read (its head is sound), so only that call
    // decodes and is recorded.
    assert_eq!(denied, 1, "the decoded call is recorded as denied");
}

/// Reads one response framed by `Content-Length` from a kept-alive
/// connection.
/// A call rejected for its framing that presents a token the proxy
/// refuses is recorded with the token's error code, as its own refusal
/// would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_rejection_names_refused_token() {
    let site = Site::start("framing-token").await;
    let body = jsonrpc_body("search", "odg_notatoken");
    let len = body.len();
    let request = format!("POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\n{body}\r\n0\r\n\r\n");

    let response = site.raw(request.as_bytes()).await;

    assert!(response.starts_with("HTTP/1.1 400 BAD REQUEST\r\n"), "{response}");
    let calls = site.records.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::Deny));
    assert_eq!(calls[0].error_code.as_deref(), Some("unknown_token"), "{:?}", calls[0]);
}

async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "connection stayed open");
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("framed response")
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_carries_several_calls() {
    let site = Site::start("keepalive").await;
    let mut stream = TcpStream::connect(("127.0.0.1", site.port)).await.unwrap();

    for (method, allowed) in [("search", true), ("unlink", false), ("search_read", true)] {
        stream.write_all(&post("/jsonrpc", &jsonrpc_body(method, API_KEY), "")).await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{method}: {head}");
        assert!(head.contains("Connection: keep-alive\r\n"), "{method}: {head}");
        let body: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(body["id"], 7);
        assert_eq!(body.get("result").is_some(), allowed, "{method}: {body}");
    }

    assert!(site.upstream.received("search"));
    assert!(site.upstream.received("search_read"));
    assert!(!site.upstream.received("unlink"));
    let conn_ids: Vec<Option<u64>> = site.records.calls().iter().map(|r| r.conn_id).collect();
    assert_eq!(conn_ids.len(), 3);
    assert!(conn_ids.iter().all(|id| *id == conn_ids[0]), "one connection: {conn_ids:?}");
}

/// A client that sends TCP urgent data in the middle of a body. Linux ends
/// a read at the urgent mark and leaves the rest queued. The proxy must go
/// on reading it and, like Odoo's server, leave the urgent byte out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_byte_inside_body_is_left_out() {
    use std::os::fd::AsRawFd as _;

    let site = Site::start("urgent").await;
    let stream = TcpStream::connect(("127.0.0.1", site.port)).await.unwrap();
    let request = post("/jsonrpc", &jsonrpc_body("search", API_KEY), "");
    let (before, after) = request.split_at(request.len() - 20);
    let send = |bytes: &[u8], flags: libc::c_int| {
        // SAFETY: `bytes` is a valid buffer of its length, and the
        // descriptor is the client's open socket.
        let sent = unsafe { libc::send(stream.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), flags) };
        assert_eq!(sent, bytes.len() as isize);
    };
    send(before, 0);
    // Not counted in Content-Length: Odoo's server never reads it.
    send(b"!", libc::MSG_OOB);
    send(after, 0);

    let mut stream = stream;
    let response = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream)).await;
    let (head, body) = response.expect("the bytes after the urgent mark were not read");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(serde_json::from_str::<Json>(&body).unwrap().get("result").is_some(), "{body}");
    assert!(site.upstream.received("search"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_routes_pass_through() {
    let site = Site::start("passthrough").await;

    let page = site.raw(b"GET /web/login HTTP/1.1\r\nHost: odoo\r\nConnection: close\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(page.ends_with("</html>"), "{page}");

    let upload = b"POST /mail/attachment/upload HTTP/1.1\r\nHost: odoo\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let response = site.raw(upload).await;
    assert!(response.starts_with("HTTP/1.1 404 "), "the upstream answered: {response}");

    let requests = site.upstream.requests();
    assert!(requests.iter().any(|r| r["path"] == "/web/login"), "{requests:?}");
    assert!(requests.iter().any(|r| r["path"] == "/mail/attachment/upload" && r["http_method"] == "POST"), "{requests:?}");
    assert!(site.records.calls().is_empty(), "pages are not calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_xmlrpc_gets_fault_1() {
    let site = Site::start("decode").await;
    let body = "<?xml version=\"1.0\"?><methodCall><methodName>execute_kw</methodName><params>";
    let request = format!(
        "POST /xmlrpc/2/object HTTP/1.1\r\nHost: odoo\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = site.raw(request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("<name>faultCode</name>\n<value><int>1</int></value>"), "{response}");
    assert!(site.upstream.requests().is_empty());
    assert_eq!(site.records.of_event(AuditEvent::DecodeError).len(), 1);
}

const TOKEN_CLIENT: &str = r#"
import json, sys, xmlrpc.client
models = xmlrpc.client.ServerProxy("http://127.0.0.1:%s/xmlrpc/2/object" % sys.argv[1])
for credential in (sys.argv[2], sys.argv[3]):
    try:
        rows = models.execute_kw("odoo19", 2, credential, "res.partner", "search_read", [[]], {"fields": ["name"]})
        print(json.dumps({"rows": len(rows)}))
    except xmlrpc.client.Fault as fault:
        print(json.dumps({"fault": fault.faultCode}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_swapped_for_credential() {
    let (site, token) = Site::start_with_token("token").await;
    let unknown = odoogate::token::format::generate().unwrap();
    let output = tokio::task::block_in_place(|| {
        let args = ["-c", TOKEN_CLIENT, &site.port.to_string(), token.expose(), unknown.expose()];
        Command::new("python3").args(args).output().unwrap()
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Json> = stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();

    assert_eq!(lines[0]["rows"], 3, "the valid token works: {stdout}");
    assert_eq!(lines[1]["fault"], 3, "an unknown token is AccessDenied: {stdout}");

    let key_prefix = &hex::encode(Sha256::digest(API_KEY.as_bytes()))[..12];
    let seen: Vec<Json> = site.upstream.requests().iter().map(|r| r["params"]["credential_sha256_prefix"].clone()).collect();
    assert_eq!(seen, vec![Json::from(key_prefix)], "Odoo saw only the service credential");

    let calls = site.records.calls();
    assert_eq!(calls[0].integration.as_deref(), Some("assistant"));
    assert_eq!(calls[0].identity, Some(odoogate::audit::Identity::Token));
    assert_eq!(calls[1].decision, Some(Decision::Deny));
    assert_eq!(calls[1].outcome.as_deref(), Some("fault:3"));
}

/// Returns an `execute_kw` `search_read` of `res.partner`, whose parameters from
/// the password to the model are `password_and_model`.
fn xmlrpc_search_read(password_and_model: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>execute_kw</methodName><params>\
         <param><value><string>odoo19</string></value></param><param><value><int>2</int></value></param>\
         {password_and_model}<param><value><string>search_read</string></value></param>\
         <param><value><array><data><value><array><data/></array></value></data></array></value></param>\
         </params></methodCall>"
    )
}

/// A valid token that the swap cannot write over gets 500 and a record
/// saying why. Here one `<value>` contains both the token and the model,
/// which Python reads as two parameters, so replacing the `<value>` would
/// drop the model. Odoo receives nothing, and the proxy serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unswappable_token_gets_500() {
    let (site, token) = Site::start_with_token("unswappable").await;
    let escaped = format!("{}&#95;{}", &token.expose()[..3], &token.expose()[4..]);
    let body = xmlrpc_search_read(&format!(
        "<param><value><fault><string>{escaped}</string><value><string>res.partner</string></value></fault></value></param>"
    ));
    let mut stream = TcpStream::connect(("127.0.0.1", site.port)).await.unwrap();
    stream.write_all(&post("/xmlrpc/2/object", &body, "")).await.unwrap();
    let (head, message) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 500 "), "{head}{message}");
    assert!(message.contains("could not prepare the request"), "{message}");
    assert!(site.upstream.requests().is_empty(), "Odoo received the call");

    let calls = site.records.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].http_status, Some(500));
    assert!(calls[0].message.contains("not forwarded: cannot rewrite the XML-RPC body"), "{}", calls[0].message);

    let mut stream = TcpStream::connect(("127.0.0.1", site.port)).await.unwrap();
    let body = xmlrpc_search_read(&format!(
        "<param><value><string>{}</string></value></param><param><value><string>res.partner</string></value></param>",
        token.expose()
    ));
    stream.write_all(&post("/xmlrpc/2/object", &body, "")).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(site.upstream.requests().len(), 1);
}

/// Returns the value of the `session_id` cookie a response sets.
fn session_cookie(response: &str) -> &str {
    let header = response.lines().find_map(|line| line.strip_prefix("Set-Cookie: session_id=")).expect("a session cookie");
    header.split(';').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_session_opens_listed_routes_only() {
    let (site, token) = Site::start_with_token("web-routes").await;
    let login = serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 1,
        "params": {"db": DB, "login": "admin", "password": token.expose()}});
    let response = site.raw(&post("/web/session/authenticate", &login.to_string(), "Connection: close\r\n")).await;
    assert!(response.contains("\"uid\": 2"), "the token logs in: {response}");
    let cookie = session_cookie(&response).to_owned();

    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: odoo\r\nCookie: session_id={cookie}\r\nConnection: close\r\n\r\n");
    let denied = site.raw(get("/web/content/ir.attachment/5/datas").as_bytes()).await;
    assert!(denied.starts_with("HTTP/1.1 403 "), "{denied}");
    assert!(denied.contains("odoogate denied /web/content/ir.attachment/5/datas to integration assistant"), "{denied}");
    let escaped = site.raw(get("/web/image/res.partner/3/%61vatar_128").as_bytes()).await;
    assert!(escaped.starts_with("HTTP/1.1 403 "), "{escaped}");
    for allowed in ["/web/image/res.partner/3/avatar_128", "/web/static/img/logo.png"] {
        let response = site.raw(get(allowed).as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 404 "), "the upstream answered {allowed}: {response}");
    }
    // The session wherever Odoo may read it, and a logout of another one.
    let octal_first = format!("\\{:03o}{}", cookie.as_bytes()[0], &cookie[1..]);
    let content = "/web/content/ir.attachment/5/datas";
    let destroy = serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 2, "params": {}}).to_string();
    let extra = format!("Cookie: session_id={cookie}\r\nConnection: close\r\n");
    let bogus_logout = site.raw(&post("/web/session/destroy?session_id=bogus", &destroy, &extra)).await;
    assert!(bogus_logout.contains("\"error\""), "a logout naming two sessions is denied: {bogus_logout}");
    for (target, headers) in [
        (format!("{content}?session_id={cookie}"), String::new()),
        (content.to_owned(), format!("Cookie: session_id=bogus\r\nX-Openerp-Session-Id: {cookie}\r\n")),
        (content.to_owned(), format!("Cookie: session_id = {cookie}\r\n")),
        (content.to_owned(), format!("Cookie: session_id=\"{octal_first}\"\r\n")),
        (content.to_owned(), format!("Cookie: session_id={cookie}\r\n")),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: odoo\r\n{headers}Connection: close\r\n\r\n");
        let response = site.raw(request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 403 "), "{request}\n{response}");
    }

    let anonymous = site.raw(b"GET /web/content/ir.attachment/5/datas HTTP/1.1\r\nHost: odoo\r\nConnection: close\r\n\r\n").await;
    assert!(anonymous.starts_with("HTTP/1.1 404 "), "a request without a session is Odoo's to check: {anonymous}");

    let paths: Vec<Json> = site.upstream.requests().iter().map(|request| request["path"].clone()).collect();
    assert_eq!(
        paths,
        [
            "/web/session/authenticate",
            "/web/image/res.partner/3/avatar_128",
            "/web/static/img/logo.png",
            "/web/content/ir.attachment/5/datas"
        ],
        "only the listed and static routes, and the request without a session, reached Odoo"
    );
    let refusals = site.records.of_event(AuditEvent::WebRoute);
    assert_eq!(refusals.len(), 7, "{refusals:?}");
    assert_eq!(refusals[0].decision, Some(Decision::Deny));
    assert_eq!(refusals[0].integration.as_deref(), Some("assistant"));
    assert_eq!(refusals[0].http_status, Some(403));
    assert_eq!(refusals[0].path.as_deref(), Some("/web/content/ir.attachment/5/datas"));
    assert!(refusals[0].reason.as_deref().unwrap().contains("is not in assistant.web_routes"), "{refusals:?}");
    assert!(refusals[1].reason.as_deref().unwrap().contains("percent-escapes"), "{refusals:?}");

    // A restarted proxy reads the binding back from policy.sessions_file.
    let config = Arc::new(config(site.upstream.port, &site._dir));
    let records = Records::default();
    let restarted = Proxy::new(config.clone(), DirectConnector::new(config.proxy.upstream), Box::new(records.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        restarted.serve(listener, async { stopped.await.unwrap_or(()) }).await.unwrap();
    });
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(get(content).as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 403 "), "the session is still assistant's after a restart: {response}");
    assert_eq!(records.of_event(AuditEvent::WebRoute).len(), 1);
    let _ = stop.send(());
}

/// Sends raw bytes from 127.0.0.2, an address no integration of the test
/// configuration matches, and reads until the proxy closes the connection.
async fn raw_from_other_address(port: u16, request: Vec<u8>) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_ends_its_session() {
    let (site, token) = Site::start_with_token("revoked-session").await;
    let raw = |request: Vec<u8>| raw_from_other_address(site.port, request);
    let login = serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 1,
        "params": {"db": DB, "login": "admin", "password": token.expose()}});
    let response = raw(post("/web/session/authenticate", &login.to_string(), "Connection: close\r\n")).await;
    let cookie = session_cookie(&response).to_owned();
    let extra = format!("Cookie: session_id={cookie}\r\nConnection: close\r\n");
    let search_read = serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 2,
        "params": {"model": "res.partner", "method": "search_read", "args": [[]], "kwargs": {"fields": ["name"]}}})
    .to_string();
    let call = || post("/web/dataset/call_kw/res.partner/search_read", &search_read, &extra);

    let allowed = raw(call()).await;
    assert!(allowed.contains("\"result\""), "the session works while its token does: {allowed}");

    let store = site._dir.join("tokens.json");
    let id = TokenStore::load(&store).unwrap().records().next().unwrap().id.clone();
    TokenStore::revoke(&store, &id, std::time::SystemTime::now()).unwrap();
    // The proxy loads the changed store on its next maintenance tick.
    let mut refused = String::new();
    for _ in 0..50 {
        refused = raw(call()).await;
        if refused.contains("\"error\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused.contains("AccessDenied"), "the revoked token's session is refused: {refused}");
    // A call after the refusal does not reach Odoo either.
    let call_kw = || {
        let paths = site.upstream.requests();
        paths.iter().filter(|request| request["path"].as_str().is_some_and(|path| path.starts_with("/web/dataset/call_kw"))).count()
    };
    let before = call_kw();
    let again = raw(call()).await;
    assert!(again.contains("AccessDenied"), "{again}");
    assert_eq!(call_kw(), before, "a refused call reached Odoo");

    let image = format!("GET /web/image/res.partner/3/avatar_128 HTTP/1.1\r\nHost: odoo\r\n{extra}\r\n");
    let route = raw(image.into_bytes()).await;
    assert!(route.starts_with("HTTP/1.1 403 "), "a listed route is closed too: {route}");
    let destroy = serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 3, "params": {}}).to_string();
    let logout = raw(post("/web/session/destroy", &destroy, &extra)).await;
    assert!(logout.contains("\"result\""), "the session can still log out: {logout}");

    let records = site.records.calls();
    let last_search = records.iter().rev().find(|record| record.method.as_deref() == Some("search_read")).unwrap();
    assert_eq!(last_search.decision, Some(Decision::Deny));
    assert_eq!(last_search.error_code.as_deref(), Some("revoked_token"));
    assert!(last_search.reason.as_deref().unwrap().starts_with("web session of a revoked token"), "{last_search:?}");
    assert_eq!(last_search.integration.as_deref(), Some("assistant"), "{last_search:?}");
    assert_eq!(last_search.identity, Some(odoogate::audit::Identity::Session), "{last_search:?}");
}

/// A refused token's call is recorded under the integration the token was
/// issued for, never under `local`, whose address match holds for
/// 127.0.0.1. A token of `local`, whose match has no `token = true`, is
/// refused from any address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_name_their_integration() {
    let (site, assistant_token) = Site::start_with_token("refused-names").await;
    let store = site._dir.join("tokens.json");
    let now = std::time::SystemTime::now();
    let (_, local_token) = TokenStore::create(&store, "local", None, now).unwrap();
    let assistant_id = TokenStore::load(&store).unwrap().records().next().unwrap().id.clone();
    TokenStore::revoke(&store, &assistant_id, now).unwrap();
    let call = |token: &Secret| post("/jsonrpc", &jsonrpc_body("search_read", token.expose()), "Connection: close\r\n");

    // The proxy loads the changed store on its next maintenance tick.
    let mut refused = String::new();
    for _ in 0..50 {
        refused = site.raw(&call(&assistant_token)).await;
        if refused.contains("\"error\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused.contains("AccessDenied"), "the revoked token is refused: {refused}");
    // Calls before the reload were allowed and reached Odoo.
    let forwarded = site.upstream.requests().len();
    let from_local = site.raw(&call(&local_token)).await;
    assert!(from_local.contains("AccessDenied"), "a token of local is refused from its own address: {from_local}");
    let from_other = raw_from_other_address(site.port, call(&local_token)).await;
    assert!(from_other.contains("AccessDenied"), "a token of local is refused from elsewhere: {from_other}");

    let records = site.records.calls();
    let [.., revoked, local, other] = &records[..] else { panic!("expected three refused calls: {records:?}") };
    assert_eq!(revoked.decision, Some(Decision::Deny), "{revoked:?}");
    assert_eq!(revoked.error_code.as_deref(), Some("revoked_token"), "{revoked:?}");
    assert!(revoked.reason.as_deref().unwrap().starts_with("revoked token (sha256 "), "{revoked:?}");
    assert_eq!(revoked.integration.as_deref(), Some("assistant"), "{revoked:?}");
    assert_eq!(revoked.identity, Some(odoogate::audit::Identity::Token), "{revoked:?}");
    for record in [local, other] {
        assert_eq!(record.decision, Some(Decision::Deny), "{record:?}");
        assert_eq!(record.error_code.as_deref(), Some("token_outside_match"), "{record:?}");
        assert_eq!(record.integration.as_deref(), Some("local"), "{record:?}");
        assert_eq!(record.identity, Some(odoogate::audit::Identity::Token), "{record:?}");
    }
    assert_eq!(site.upstream.requests().len(), forwarded, "a refused call reached Odoo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_spliced() {
    let site = Site::start("websocket").await;
    let mut stream = TcpStream::connect(("127.0.0.1", site.port)).await.unwrap();
    let request = "GET /websocket HTTP/1.1\r\nHost: odoo\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();

    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455's example key gives this accept value.
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");

    // After the 101 both directions are spliced byte for byte.
    for message in [&b"first frame"[..], &[0x81, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 0][..]] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
        assert_eq!(echoed, message);
    }
    assert!(site.records.calls().is_empty(), "a WebSocket is no RPC call");
}

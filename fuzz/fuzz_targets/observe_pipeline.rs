//! The observe-mode pipeline end to end, on segment sequences decoded from
//! the input. A few TCP connections from two clients to Odoo's port get
//! segments with arbitrary flags, and sequence and acknowledgement numbers
//! near the ones each side expects. Their payloads are cut from
//! real-looking requests and responses or taken from the input. Forged
//! sources, first fragments, flow origins, reused ports and ticks that
//! expire flows come in between.
//!
//! The pipeline must not panic, and it must never write a call record that
//! is allowed while it carries the code of a conflict: such a call was
//! decided on bytes that Odoo may not have read.

#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use odoogate::audit::{AuditEvent, AuditRecord, AuditSink, Decision};
use odoogate::capture::{CaptureEvent, FlowOrigin, Segment, TcpFlags};
use odoogate::pipeline::Pipeline;

const CONFIG: &str = r#"
[odoo]
ports = [8069]
interfaces = ["lo"]

[policy]
mode = "observe"
unidentified = "deny"

[[integration]]
name = "website-form"
match = { ip = ["10.0.0.2/32"] }
allow = [{ models = ["crm.lead"], methods = ["create", "read"] }]
"#;

const SERVER: &str = "10.0.0.1:8069";
const CLIENTS: [&str; 2] = ["10.0.0.2", "10.0.0.3"];
const CONNECTIONS: usize = 4;

/// The codes of records whose bytes may not be those Odoo read.
const CONFLICT_CODES: [&str; 5] = ["conflicting_copies", "unverifiable_copy", "data_after_fin", "urgent_data", "ip_fragments"];

#[derive(Arbitrary, Debug)]
enum Payload {
    Empty,
    /// Bytes `start..start + len` of message `which` (wrapping).
    Message { which: u8, start: u16, len: u16 },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Segment {
        conn: u8,
        to_server: bool,
        flags: u8,
        seq_shift: i16,
        ack_shift: i16,
        payload: Payload,
        /// Seen arriving on this interface index (1 is `lo`), or leaving.
        ingress: Option<u8>,
        first_fragment: bool,
    },
    Origin {
        conn: u8,
    },
    /// Starts a new connection on the same ports with new initial sequence
    /// numbers (the client reused its port).
    Reuse {
        conn: u8,
        client_isn: u32,
        server_isn: u32,
    },
    Tick {
        seconds: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    isns: [(u32, u32); CONNECTIONS],
    ops: Vec<Op>,
}

/// The sequence number each side of one connection sends next.
struct Connection {
    client: SocketAddr,
    client_next: u32,
    server_next: u32,
}

/// Fails on a call allowed with a conflict code.
struct CheckingSink;

impl AuditSink for CheckingSink {
    fn write(&mut self, record: &AuditRecord) {
        if record.event != AuditEvent::Call || record.decision != Some(Decision::Allow) {
            return;
        }
        if let Some(code) = record.error_code.as_deref() {
            assert!(!CONFLICT_CODES.contains(&code), "allowed call with conflict code {code}: {record:?}");
        }
    }
}

fn messages() -> Vec<Vec<u8>> {
    let jsonrpc = |method: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"call","id":7,"params":{{"service":"object","method":"execute_kw","args":["odoo19",2,"pw","crm.lead","{method}",[{{"name":"x"}}]]}}}}"#
        );
        format!("POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .into_bytes()
    };
    let xmlrpc = {
        let body = "<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params><param><value><string>odoo19</string></value></param><param><value><int>2</int></value></param><param><value><string>pw</string></value></param><param><value><string>crm.lead</string></value></param><param><value><string>read</string></value></param><param><value><array><data><value><int>1</int></value></data></array></value></param></params></methodCall>";
        format!("POST /xmlrpc/2/object HTTP/1.1\r\nHost: odoo\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    let response = {
        let body = r#"{"jsonrpc":"2.0","id":7,"result":42}"#;
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec();
    vec![jsonrpc("create"), jsonrpc("unlink"), xmlrpc, response, chunked]
}

fn payload_bytes(payload: &Payload, messages: &[Vec<u8>]) -> Vec<u8> {
    match payload {
        Payload::Empty => Vec::new(),
        Payload::Message { which, start, len } => {
            let message = &messages[usize::from(*which) % messages.len()];
            let start = usize::from(*start) % message.len();
            let end = (start + usize::from(*len)).min(message.len());
            message[start..end].to_vec()
        }
        Payload::Raw(bytes) => bytes.iter().copied().take(2048).collect(),
    }
}

fuzz_target!(|input: Input| {
    let config = Arc::new(odoogate::config::parse(CONFIG, "fuzz.toml").expect("the fuzz config is valid"));
    let mut pipeline = Pipeline::new(config, None, Box::new(CheckingSink));
    let server: SocketAddr = SERVER.parse().unwrap();
    pipeline.set_local_addresses([server.ip()]);
    let messages = messages();
    let mut connections: Vec<Connection> = (0..CONNECTIONS)
        .map(|index| Connection {
            client: format!("{}:{}", CLIENTS[index % CLIENTS.len()], 40_000 + index).parse().unwrap(),
            client_next: input.isns[index].0,
            server_next: input.isns[index].1,
        })
        .collect();
    let mut clock: u64 = 1_000_000_000;

    for op in input.ops.iter().take(512) {
        clock += 1_000;
        match op {
            Op::Segment { conn, to_server, flags, seq_shift, ack_shift, payload, ingress, first_fragment } => {
                let connection = &mut connections[usize::from(*conn) % CONNECTIONS];
                let bytes = payload_bytes(payload, &messages);
                let flags = TcpFlags(*flags);
                let (src, dst, next, peer_next) = if *to_server {
                    (connection.client, server, &mut connection.client_next, connection.server_next)
                } else {
                    (server, connection.client, &mut connection.server_next, connection.client_next)
                };
                let seq = next.wrapping_add_signed(i32::from(*seq_shift));
                if *seq_shift == 0 {
                    let control = u32::from(flags.syn()) + u32::from(flags.fin());
                    *next = next.wrapping_add(bytes.len() as u32 + control);
                }
                let segment = Segment {
                    src,
                    dst,
                    seq,
                    ack: peer_next.wrapping_add_signed(i32::from(*ack_shift)),
                    flags,
                    wire_len: bytes.len() as u32,
                    payload: Bytes::from(bytes),
                    timestamp_ns: clock,
                    ingress_ifindex: ingress.map(u32::from),
                    first_fragment: *first_fragment,
                };
                pipeline.handle(CaptureEvent::Segment(segment));
            }
            Op::Origin { conn } => {
                let connection = &connections[usize::from(*conn) % CONNECTIONS];
                pipeline.handle(CaptureEvent::Origin(FlowOrigin {
                    client: connection.client,
                    server,
                    cgroup_id: 0,
                    pid: Some(4242),
                    uid: None,
                    comm: Some("fuzz".to_owned()),
                    timestamp_ns: clock,
                }));
            }
            Op::Reuse { conn, client_isn, server_isn } => {
                let connection = &mut connections[usize::from(*conn) % CONNECTIONS];
                connection.client_next = *client_isn;
                connection.server_next = *server_isn;
            }
            Op::Tick { seconds } => {
                clock += u64::from(*seconds) * 1_000_000_000;
                pipeline.tick(clock, None);
            }
        }
    }
    pipeline.finish();
});

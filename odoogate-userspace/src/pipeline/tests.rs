//! The pipeline end to end in memory: synthetic TCP segments in, audit
//! records out, with the real flow table, framers, decoders and policy.

use super::*;
use crate::audit::{AuditEvent, Decision, Identity};
use crate::capture::{Segment, TcpFlags};
use crate::scratch::ScratchDir;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Mutex;

/// A sink that keeps records in memory for assertions.
#[derive(Clone, Default)]
struct MemorySink(Arc<Mutex<Vec<AuditRecord>>>);

impl AuditSink for MemorySink {
    fn write(&mut self, record: &AuditRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

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
allow = [{ models = ["crm.lead"], methods = ["create"] }]
"#;

fn pipeline() -> (Pipeline, MemorySink) {
    let config = Arc::new(crate::config::parse(CONFIG, "test.toml").expect("test config is valid"));
    let sink = MemorySink::default();
    (Pipeline::new(config, None, Box::new(sink.clone())), sink)
}

/// One TCP connection whose segments the test sends in order.
struct Conn {
    client: SocketAddr,
    server: SocketAddr,
    client_seq: u32,
    server_seq: u32,
    clock: u64,
}

impl Conn {
    fn new(client: &str) -> Self {
        Self {
            client: client.parse().unwrap(),
            server: "10.0.0.1:8069".parse().unwrap(),
            client_seq: 1000,
            server_seq: 5000,
            clock: 1_000_000,
        }
    }

    fn segment(&mut self, to_server: bool, flags: u8, payload: &[u8]) -> CaptureEvent {
        self.clock += 1_000;
        let (src, dst, seq, ack) = if to_server {
            (self.client, self.server, self.client_seq, self.server_seq)
        } else {
            (self.server, self.client, self.server_seq, self.client_seq)
        };
        let advance = payload.len() as u32 + u32::from(flags & (TcpFlags::SYN | TcpFlags::FIN) != 0);
        if to_server {
            self.client_seq = self.client_seq.wrapping_add(advance);
        } else {
            self.server_seq = self.server_seq.wrapping_add(advance);
        }
        CaptureEvent::Segment(Segment {
            src,
            dst,
            seq,
            ack,
            flags: TcpFlags(flags),
            payload: Bytes::copy_from_slice(payload),
            wire_len: payload.len() as u32,
            timestamp_ns: self.clock,
            ingress_ifindex: None,
            first_fragment: false,
        })
    }

    fn open(&mut self, pipeline: &mut Pipeline) {
        pipeline.handle(self.segment(true, TcpFlags::SYN, b""));
        pipeline.handle(self.segment(false, TcpFlags::SYN | TcpFlags::ACK, b""));
        pipeline.handle(self.segment(true, TcpFlags::ACK, b""));
    }

    fn send(&mut self, pipeline: &mut Pipeline, payload: &[u8]) {
        pipeline.handle(self.segment(true, TcpFlags::ACK | TcpFlags::PSH, payload));
    }

    fn answer(&mut self, pipeline: &mut Pipeline, payload: &[u8]) {
        pipeline.handle(self.segment(false, TcpFlags::ACK | TcpFlags::PSH, payload));
    }

    fn close(&mut self, pipeline: &mut Pipeline) {
        pipeline.handle(self.segment(true, TcpFlags::FIN | TcpFlags::ACK, b""));
        pipeline.handle(self.segment(false, TcpFlags::FIN | TcpFlags::ACK, b""));
        pipeline.handle(self.segment(true, TcpFlags::ACK, b""));
    }
}

fn jsonrpc_request(model: &str, method: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"call","id":7,"params":{{"service":"object","method":"execute_kw","args":["odoo19",2,"pw","{model}","{method}",[{{"name":"x"}}]]}}}}"#
    );
    format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn jsonrpc_response(result: &str) -> Vec<u8> {
    let body = format!(r#"{{"jsonrpc": "2.0", "id": 7, "result": {result}}}"#);
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn calls(sink: &MemorySink) -> Vec<AuditRecord> {
    sink.0.lock().unwrap().iter().filter(|r| r.event == AuditEvent::Call).cloned().collect()
}

#[test]
fn allowed_call_gets_outcome_and_latency() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40000");
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let records = calls(&sink);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.decision, Some(Decision::Allow));
    assert_eq!(record.integration.as_deref(), Some("website-form"));
    assert_eq!(record.identity, Some(Identity::Ip));
    assert_eq!(record.model.as_deref(), Some("crm.lead"));
    assert_eq!(record.method.as_deref(), Some("create"));
    assert_eq!(record.outcome.as_deref(), Some("ok"));
    assert_eq!(record.latency_us, Some(1));
    assert_eq!(record.fields, vec!["name".to_owned()]);
}

#[test]
fn pipelined_responses_pair_in_order() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40001");
    conn.open(&mut pipeline);
    let mut both = jsonrpc_request("crm.lead", "create");
    both.extend(jsonrpc_request("res.partner", "unlink"));
    conn.send(&mut pipeline, &both);
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    let error = r#"{"jsonrpc": "2.0", "id": 7, "error": {"code": 200, "message": "Odoo Server Error", "data": {"name": "odoo.exceptions.AccessError", "message": "no", "arguments": [], "context": {}, "debug": ""}}}"#;
    let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{error}", error.len());
    conn.answer(&mut pipeline, response.as_bytes());
    conn.close(&mut pipeline);

    let records = calls(&sink);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].method.as_deref(), Some("create"));
    assert_eq!(records[0].outcome.as_deref(), Some("ok"));
    assert_eq!(records[1].method.as_deref(), Some("unlink"));
    assert_eq!(records[1].decision, Some(Decision::WouldDeny));
    assert_eq!(records[1].outcome.as_deref(), Some("error:odoo.exceptions.AccessError"));
}

#[test]
fn unidentified_call_would_be_denied() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.9:40002");
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let records = calls(&sink);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].decision, Some(Decision::WouldDeny));
    assert_eq!(records[0].identity, Some(Identity::None));
    assert_eq!(records[0].integration, None);
}

#[test]
fn call_without_response_is_recorded_at_close() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40003");
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.close(&mut pipeline);

    let records = calls(&sink);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, None);
    assert!(records[0].message.contains("no response"), "{}", records[0].message);
    // The server's FIN acknowledged the request.
    assert_eq!(records[0].error_code, None, "{}", records[0].message);
}

/// A request segment replayed after its connection closed reaches a server
/// with no socket for it, which replies with a RST and never acknowledges
/// the bytes. Its call record is marked.
#[test]
fn replayed_request_is_marked_unacknowledged() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40020");
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    // Linux resets with the sequence number the segment acknowledged, and
    // without the ACK flag.
    pipeline.handle(conn.segment(false, TcpFlags::RST, b""));

    let records = calls(&sink);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].error_code.as_deref(), Some(records::UNACKNOWLEDGED));
    assert!(records[0].message.contains("never acknowledged"), "{}", records[0].message);
}

/// Segments that the server's or the client's kernel ignores (a forged
/// server segment from the network, a RST at the wrong sequence number)
/// leave a record each, and the call goes on.
#[test]
fn ignored_segments_are_recorded() {
    let (mut pipeline, sink) = pipeline();
    pipeline.set_local_addresses(["10.0.0.1".parse().unwrap()]);
    let mut conn = Conn::new("10.0.0.2:40023");
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));

    let CaptureEvent::Segment(segment) = conn.segment(false, TcpFlags::ACK, b"") else { unreachable!() };
    pipeline.handle(CaptureEvent::Segment(Segment { ingress_ifindex: Some(3), ..segment }));
    let blind = conn.client_seq.wrapping_add(1000);
    let CaptureEvent::Segment(segment) = conn.segment(true, TcpFlags::RST, b"") else { unreachable!() };
    pipeline.handle(CaptureEvent::Segment(Segment { seq: blind, ..segment }));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let spoofed: Vec<_> = records.iter().filter(|r| r.error_code.as_deref() == Some(records::SPOOFED_SEGMENT)).collect();
    assert_eq!(spoofed.len(), 1, "{records:?}");
    assert_eq!(spoofed[0].event, AuditEvent::FramingAnomaly);
    assert!(spoofed[0].message.contains("10.0.0.1:8069 to 10.0.0.2:40023"), "{}", spoofed[0].message);
    assert!(spoofed[0].message.contains("interface 3"), "{}", spoofed[0].message);

    let resets: Vec<_> = records.iter().filter(|r| r.error_code.as_deref() == Some(records::IGNORED_RESET)).collect();
    assert_eq!(resets.len(), 1, "{records:?}");
    assert_eq!(resets[0].event, AuditEvent::FramingAnomaly);
    assert_eq!(resets[0].src_port, Some(40023));
    assert!(resets[0].conn_id.is_some());

    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::Allow), "{:?}", calls[0]);
    assert_eq!(calls[0].error_code, None, "{:?}", calls[0]);
}

fn origin_of(client: &str, comm: &str) -> CaptureEvent {
    CaptureEvent::Origin(crate::capture::FlowOrigin {
        client: client.parse().unwrap(),
        server: "10.0.0.1:8069".parse().unwrap(),
        cgroup_id: 0,
        pid: Some(4242),
        uid: None,
        comm: Some(comm.to_owned()),
        timestamp_ns: 0,
    })
}

/// A client reuses the port of a connection whose end the capture did not
/// see. The new connection's origin comes before its SYN, while the old
/// flow is still in the table, and must go to the new connection.
#[test]
fn reused_port_gets_its_own_origin() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40030");
    pipeline.handle(origin_of("10.0.0.2:40030", "old-job"));
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("41"));

    pipeline.handle(origin_of("10.0.0.2:40030", "new-job"));
    conn.client_seq = 900_000;
    conn.server_seq = 700_000;
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].comm.as_deref(), Some("old-job"));
    assert_eq!(calls[1].comm.as_deref(), Some("new-job"));
    assert_ne!(calls[0].conn_id, calls[1].conn_id);
}

/// An origin that comes after its SYN (the SYN was sent again) goes to
/// the flow that SYN opened.
#[test]
fn origin_after_syn_reaches_its_flow() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40031");
    pipeline.handle(conn.segment(true, TcpFlags::SYN, b""));
    pipeline.handle(origin_of("10.0.0.2:40031", "late-job"));
    pipeline.handle(conn.segment(false, TcpFlags::SYN | TcpFlags::ACK, b""));
    pipeline.handle(conn.segment(true, TcpFlags::ACK, b""));
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].comm.as_deref(), Some("late-job"));
}

/// The RSTs that ordinary clients and servers send are accepted, or come
/// after their flow closed, so they leave no ignored_reset record.
#[test]
fn ordinary_resets_are_not_recorded() {
    let (mut pipeline, sink) = pipeline();
    let reset_at = |conn: &mut Conn, to_server: bool, seq: u32| {
        let CaptureEvent::Segment(segment) = conn.segment(to_server, TcpFlags::RST, b"") else { unreachable!() };
        CaptureEvent::Segment(Segment { seq, ..segment })
    };

    // An abortive close after a call.
    let mut abort = Conn::new("10.0.0.2:40040");
    abort.open(&mut pipeline);
    abort.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    abort.answer(&mut pipeline, &jsonrpc_response("42"));
    pipeline.handle(abort.segment(true, TcpFlags::RST | TcpFlags::ACK, b""));
    // A second RST, for a segment that was in flight, finds no flow.
    pipeline.handle(abort.segment(true, TcpFlags::RST, b""));

    // The client's kernel resets data that came after its FIN, at the
    // acknowledgement of a segment sent before the FIN arrived, then of
    // one sent after.
    for (port, fin_acked) in [(40041, false), (40042, true)] {
        let mut closed = Conn::new(&format!("10.0.0.2:{port}"));
        closed.open(&mut pipeline);
        closed.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
        pipeline.handle(closed.segment(true, TcpFlags::FIN | TcpFlags::ACK, b""));
        let seq = if fin_acked { closed.client_seq } else { closed.client_seq - 1 };
        pipeline.handle(reset_at(&mut closed, true, seq));
    }

    // Odoo resets after its own FIN.
    let mut server_reset = Conn::new("10.0.0.2:40043");
    server_reset.open(&mut pipeline);
    pipeline.handle(server_reset.segment(false, TcpFlags::FIN | TcpFlags::ACK, b""));
    pipeline.handle(server_reset.segment(false, TcpFlags::RST, b""));

    // A client that gave up connecting resets the SYN-ACK.
    let mut given_up = Conn::new("10.0.0.2:40044");
    pipeline.handle(given_up.segment(true, TcpFlags::SYN, b""));
    pipeline.handle(given_up.segment(false, TcpFlags::SYN | TcpFlags::ACK, b""));
    pipeline.handle(given_up.segment(true, TcpFlags::RST, b""));

    // A RST after both FINs finds no flow.
    let mut finished = Conn::new("10.0.0.2:40045");
    finished.open(&mut pipeline);
    finished.close(&mut pipeline);
    pipeline.handle(finished.segment(true, TcpFlags::RST, b""));

    let records = sink.0.lock().unwrap().clone();
    let resets: Vec<_> = records.iter().filter(|r| r.error_code.as_deref() == Some(records::IGNORED_RESET)).collect();
    assert!(resets.is_empty(), "{resets:?}");
    assert_eq!(pipeline.reassembly().ignored_resets.load(Ordering::Relaxed), 0);
}

/// Only the requests past the server's last acknowledgement are marked.
#[test]
fn acknowledged_request_before_unacknowledged_one() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40021");
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    pipeline.handle(conn.segment(false, TcpFlags::ACK, b""));
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "write"));
    pipeline.handle(conn.segment(false, TcpFlags::RST, b""));

    let records = calls(&sink);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].method.as_deref(), Some("create"));
    assert_eq!(records[0].error_code, None, "{}", records[0].message);
    assert_eq!(records[1].method.as_deref(), Some("write"));
    assert_eq!(records[1].error_code.as_deref(), Some(records::UNACKNOWLEDGED));
}

/// A connection still open when the daemon stops may go on, and the server
/// may still acknowledge its request, so its calls are not marked.
#[test]
fn calls_at_shutdown_are_not_marked() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40022");
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    pipeline.finish();

    let records = calls(&sink);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].error_code, None, "{}", records[0].message);
}

/// The server acknowledged every request here, so none is marked, whether
/// the client resets or the flow times out. The cases are sequence numbers
/// that wrap past 2^32 inside a request, a flow joined mid-stream by a
/// server segment, and a request segment that the capture lost.
#[test]
fn acknowledged_requests_are_not_marked() {
    let (mut pipeline, sink) = pipeline();

    let mut wrapping = Conn::new("10.0.0.2:40030");
    wrapping.client_seq = u32::MAX - 20;
    wrapping.open(&mut pipeline);
    wrapping.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    pipeline.handle(wrapping.segment(false, TcpFlags::ACK, b""));
    pipeline.handle(wrapping.segment(true, TcpFlags::RST, b""));

    // The first segment captured is the tail of a response.
    let mut joined = Conn::new("10.0.0.2:40031");
    joined.answer(&mut pipeline, b"tail of a response");
    joined.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    pipeline.handle(joined.segment(false, TcpFlags::ACK, b""));
    pipeline.handle(joined.segment(true, TcpFlags::RST, b""));

    let mut lossy = Conn::new("10.0.0.2:40032");
    lossy.open(&mut pipeline);
    let _ = lossy.segment(true, TcpFlags::ACK | TcpFlags::PSH, b"lost request bytes");
    lossy.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    pipeline.handle(lossy.segment(false, TcpFlags::ACK, b""));
    pipeline.tick(lossy.clock + 301_000_000_000, None);

    let records = calls(&sink);
    assert_eq!(records.len(), 3, "{records:?}");
    for record in &records {
        assert!(record.message.contains("no response"), "{}", record.message);
        assert_eq!(record.error_code, None, "{}", record.message);
    }
}

/// A flow that the capture ends on its idle timeout is checked too: the
/// server never acknowledged a request that its kernel dropped (a bad
/// checksum, say), so it sent no RST either.
#[test]
fn unacknowledged_request_is_marked_at_idle_timeout() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40033");
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    pipeline.tick(conn.clock + 301_000_000_000, None);

    let records = calls(&sink);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].error_code.as_deref(), Some(records::UNACKNOWLEDGED));
}

/// A client that crafts packets sends a SYN and, after the SYN-ACK, a
/// request whose acknowledgement is past the server's data. The server's
/// kernel drops the request with a RST, because the handshake did not
/// complete, and Odoo never reads it. The capture takes the acknowledgement
/// as proof that it lost server bytes, and that gap in the response stream
/// records the call at once, as one whose response was lost. The server
/// never acknowledged the request, so the call must still be marked.
#[test]
fn request_before_response_gap_is_marked() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40034");
    pipeline.handle(conn.segment(true, TcpFlags::SYN, b""));
    pipeline.handle(conn.segment(false, TcpFlags::SYN | TcpFlags::ACK, b""));
    let beyond = conn.server_seq.wrapping_add(1000);
    let request = jsonrpc_request("crm.lead", "create");
    let CaptureEvent::Segment(segment) = conn.segment(true, TcpFlags::ACK | TcpFlags::PSH, &request) else { unreachable!() };
    pipeline.handle(CaptureEvent::Segment(Segment { ack: beyond, ..segment }));
    // Linux resets at the acknowledgement of the segment it drops.
    let CaptureEvent::Segment(reset) = conn.segment(false, TcpFlags::RST, b"") else { unreachable!() };
    pipeline.handle(CaptureEvent::Segment(Segment { seq: beyond, ..reset }));

    let records = calls(&sink);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].error_code.as_deref(), Some(records::UNACKNOWLEDGED), "{}", records[0].message);
}

/// A call whose response is lost in a capture gap is written as soon as
/// the server has acknowledged its request. That is at once when the
/// acknowledgement came first. When it comes later in a segment without
/// data, it is at the next tick.
#[test]
fn response_gap_call_written_once_acknowledged() {
    let (mut pipeline, sink) = pipeline();
    let mut first = Conn::new("10.0.0.2:40036");
    first.open(&mut pipeline);
    first.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    pipeline.handle(first.segment(false, TcpFlags::ACK, b""));
    // The client acknowledges response bytes the capture never saw.
    let CaptureEvent::Segment(segment) = first.segment(true, TcpFlags::ACK, b"") else { unreachable!() };
    pipeline.handle(CaptureEvent::Segment(Segment { ack: first.server_seq.wrapping_add(500), ..segment }));
    let records = calls(&sink);
    assert_eq!(records.len(), 1, "written at once: {records:?}");
    assert_eq!(records[0].error_code, None, "{}", records[0].message);

    let mut second = Conn::new("10.0.0.2:40037");
    second.open(&mut pipeline);
    second.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    let CaptureEvent::Segment(segment) = second.segment(true, TcpFlags::ACK, b"") else { unreachable!() };
    pipeline.handle(CaptureEvent::Segment(Segment { ack: second.server_seq.wrapping_add(500), ..segment }));
    assert_eq!(calls(&sink).len(), 1, "not written before the server acknowledges the request");
    pipeline.handle(second.segment(false, TcpFlags::ACK, b""));
    pipeline.tick(second.clock, None);
    let records = calls(&sink);
    assert_eq!(records.len(), 2, "written at the tick: {records:?}");
    assert_eq!(records[1].error_code, None, "{}", records[1].message);
}

/// Calls completed without a response wait for the server's
/// acknowledgement in a bounded list, whose oldest record is written
/// marked when it is full.
#[test]
fn unconfirmed_calls_are_bounded() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40038");
    conn.open(&mut pipeline);
    let mut payload = Vec::new();
    for _ in 0..64 + 17 {
        payload.extend_from_slice(&jsonrpc_request("crm.lead", "create"));
    }
    conn.send(&mut pipeline, &payload);

    let records = calls(&sink);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].error_code.as_deref(), Some(records::UNACKNOWLEDGED), "{}", records[0].message);
    assert!(records[0].message.contains("too many pipelined requests"), "{}", records[0].message);
}

/// A replayed request followed, in the same segment, by enough pipelined
/// requests to overflow the calls waiting for a response, which records the
/// oldest at once. The server never acknowledged any of them, so the call
/// must still be marked.
#[test]
fn replay_before_pipelined_requests_is_marked() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40035");
    let mut payload = jsonrpc_request("crm.lead", "create");
    for _ in 0..64 {
        payload.extend_from_slice(b"GET / HTTP/1.1\r\nHost: odoo\r\n\r\n");
    }
    conn.send(&mut pipeline, &payload);
    pipeline.handle(conn.segment(false, TcpFlags::RST, b""));

    let records = calls(&sink);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].error_code.as_deref(), Some(records::UNACKNOWLEDGED), "{}", records[0].message);
}

/// Sends a client segment that acknowledges 500 response bytes the capture
/// never saw, which gives a gap in the response stream.
fn acknowledge_lost_response(conn: &mut Conn, pipeline: &mut Pipeline) {
    conn.server_seq = conn.server_seq.wrapping_add(500);
    pipeline.handle(conn.segment(true, TcpFlags::ACK, b""));
}

/// A client that crafts packets sends an allowed call in a copy the
/// server's kernel drops, then acknowledges response bytes that were
/// never sent, so the call waits for the server's acknowledgement. The
/// real copy of the request, another call, conflicts with the first, and
/// the server acknowledges it. The waiting call must not be written as
/// allowed.
#[test]
fn conflict_marks_call_waiting_for_acknowledgement() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40046");
    conn.open(&mut pipeline);

    let fake = jsonrpc_request("crm.lead", "create");
    let real = jsonrpc_request("crm.lead", "unlink");
    let start = conn.client_seq;
    conn.send(&mut pipeline, &fake);
    acknowledge_lost_response(&mut conn, &mut pipeline);
    conn.client_seq = start;
    conn.send(&mut pipeline, &real);
    pipeline.handle(conn.segment(false, TcpFlags::ACK, b""));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny), "{}", calls[0].message);
    assert_eq!(calls[0].error_code.as_deref(), Some("conflicting_copies"), "{}", calls[0].message);
}

/// The same trick with 64 pipelined requests after the fake call, which
/// push it out of the calls waiting for a response.
#[test]
fn conflict_marks_call_pushed_out_by_pipelining() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40047");
    conn.open(&mut pipeline);

    let pipelined = b"GET / HTTP/1.1\r\nHost: odoo\r\n\r\n".repeat(64);
    let mut fake = jsonrpc_request("crm.lead", "create");
    fake.extend_from_slice(&pipelined);
    let mut real = jsonrpc_request("crm.lead", "unlink");
    real.extend_from_slice(&pipelined);
    let start = conn.client_seq;
    conn.send(&mut pipeline, &fake);
    conn.client_seq = start;
    conn.send(&mut pipeline, &real);
    pipeline.handle(conn.segment(false, TcpFlags::ACK, b""));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny), "{}", calls[0].message);
    assert_eq!(calls[0].error_code.as_deref(), Some("conflicting_copies"), "{}", calls[0].message);
}

/// A conflict past the end of a waiting call's request leaves that call
/// as it was.
#[test]
fn later_conflict_leaves_earlier_waiting_call() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40048");
    conn.open(&mut pipeline);

    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    acknowledge_lost_response(&mut conn, &mut pipeline);
    let start = conn.client_seq;
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.client_seq = start;
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "unlink"));
    pipeline.handle(conn.segment(false, TcpFlags::ACK, b""));
    conn.answer(&mut pipeline, &jsonrpc_response("true"));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::Allow), "{}", calls[0].message);
    assert_eq!(calls[0].error_code, None, "{}", calls[0].message);
    assert_eq!(calls[1].decision, Some(Decision::WouldDeny), "{}", calls[1].message);
}

/// Pipelined calls whose requests the server acknowledged lose their
/// responses in a capture gap. They are more than the calls that may wait
/// for an acknowledgement, and none of them may be marked, because the
/// server acknowledged them all.
#[test]
fn acknowledged_calls_before_response_gap_are_not_marked() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40049");
    conn.open(&mut pipeline);

    let payload = jsonrpc_request("crm.lead", "create").repeat(20);
    conn.send(&mut pipeline, &payload);
    pipeline.handle(conn.segment(false, TcpFlags::ACK, b""));
    acknowledge_lost_response(&mut conn, &mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 20, "{calls:?}");
    for call in &calls {
        assert_eq!(call.error_code, None, "{}", call.message);
        assert!(call.message.contains("response lost in a capture gap"), "{}", call.message);
    }
}

/// A client's SYN got no reply, so its flow stays in the table, and
/// the client connects again from the same port. The second SYN has a new
/// initial sequence number and replaces the flow, and the new connection
/// keeps the origin that came before that SYN. The same holds when the
/// first connection was established but carried no data, and its end was
/// missed.
#[test]
fn replaced_flow_without_data_passes_origin_on() {
    let (mut pipeline, sink) = pipeline();

    let mut unanswered = Conn::new("10.0.0.2:40050");
    pipeline.handle(origin_of("10.0.0.2:40050", "first-try"));
    pipeline.handle(unanswered.segment(true, TcpFlags::SYN, b""));
    pipeline.handle(origin_of("10.0.0.2:40050", "second-try"));
    unanswered.client_seq = 900_000;
    unanswered.open(&mut pipeline);
    unanswered.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    unanswered.answer(&mut pipeline, &jsonrpc_response("42"));
    unanswered.close(&mut pipeline);

    let mut idle = Conn::new("10.0.0.2:40051");
    pipeline.handle(origin_of("10.0.0.2:40051", "idle-job"));
    idle.open(&mut pipeline);
    pipeline.handle(origin_of("10.0.0.2:40051", "new-job"));
    idle.client_seq = 900_000;
    idle.server_seq = 700_000;
    idle.open(&mut pipeline);
    idle.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    idle.answer(&mut pipeline, &jsonrpc_response("43"));
    idle.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].comm.as_deref(), Some("second-try"));
    assert_eq!(calls[1].comm.as_deref(), Some("new-job"));
}

#[test]
fn lost_segment_gives_gap_and_later_calls_still_decode() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40004");
    conn.open(&mut pipeline);

    // The first request's segment is lost in the capture; the server's ACK
    // proves it was delivered.
    let lost = jsonrpc_request("crm.lead", "create");
    let _ = conn.segment(true, TcpFlags::ACK | TcpFlags::PSH, &lost);
    conn.answer(&mut pipeline, &jsonrpc_response("41"));
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let gaps: Vec<_> = records.iter().filter(|r| r.event == AuditEvent::CaptureGap).collect();
    assert!(!gaps.is_empty(), "the missing bytes are recorded: {records:?}");
    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "the call after the gap is recorded: {calls:?}");
    assert_eq!(calls[0].method.as_deref(), Some("create"));
}

/// A client that crafts packets sends an allowed call first, in a copy the
/// server's kernel drops (a bad checksum, say), then another call in the
/// copy the server reads. The capture copies both.
#[test]
fn conflicting_copies_are_never_allowed() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40005");
    conn.open(&mut pipeline);

    let fake = jsonrpc_request("crm.lead", "create");
    let real = jsonrpc_request("crm.lead", "unlink");
    assert_eq!(fake.len(), real.len());
    let start = conn.client_seq;
    conn.send(&mut pipeline, &fake);
    conn.client_seq = start;
    conn.send(&mut pipeline, &real);
    conn.answer(&mut pipeline, &jsonrpc_response("true"));
    conn.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let conflicts: Vec<_> = records.iter().filter(|r| r.error_code.as_deref() == Some("conflicting_copies") && r.event == AuditEvent::FramingAnomaly).collect();
    assert_eq!(conflicts.len(), 1, "{records:?}");
    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny));
    assert_eq!(calls[0].error_code.as_deref(), Some("conflicting_copies"));
    assert_eq!(calls[0].reason.as_deref(), Some(records::conflict_reason(crate::capture::reassembly::ConflictKind::Differs)));
    assert!(calls[0].message.starts_with("would_deny website-form crm.lead.create via jsonrpc: "), "{}", calls[0].message);

    let counters = pipeline.reassembly();
    assert_eq!(counters.conflicting_copies.load(Ordering::Relaxed), 1);
    assert_eq!(counters.unverifiable_copies.load(Ordering::Relaxed), 0);
    assert_eq!(counters.unverified_bytes.load(Ordering::Relaxed), 0);
}

/// A client that crafts packets sends a FIN that the server's kernel drops
/// (a bad checksum, say), then its next call. The call is recorded, with
/// the doubt, instead of being cut off as data after the end of the stream.
#[test]
fn call_after_crafted_fin_is_recorded() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40010");
    conn.open(&mut pipeline);

    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("41"));
    let fin_seq = conn.client_seq;
    pipeline.handle(conn.segment(true, TcpFlags::FIN | TcpFlags::ACK, b""));
    // The server's kernel dropped the FIN, so the real next byte takes its
    // sequence number.
    conn.client_seq = fin_seq;
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let anomalies: Vec<_> = records.iter().filter(|r| r.error_code.as_deref() == Some("data_after_fin") && r.event == AuditEvent::FramingAnomaly).collect();
    assert_eq!(anomalies.len(), 1, "{records:?}");
    let calls = calls(&sink);
    assert_eq!(calls.len(), 2, "the call after the FIN is recorded: {calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::Allow), "the call before the FIN stands");
    assert_eq!(calls[1].method.as_deref(), Some("create"));
    assert_eq!(calls[1].decision, Some(Decision::WouldDeny), "an allowed call after the FIN is held in doubt");
    assert_eq!(calls[1].error_code.as_deref(), Some("data_after_fin"));
    assert_eq!(calls[1].reason.as_deref(), Some(records::conflict_reason(crate::capture::reassembly::ConflictKind::DataAfterFin)));
    assert_eq!(pipeline.reassembly().data_after_fin.load(Ordering::Relaxed), 1);
}

/// Linux takes a request's urgent byte out of what Odoo reads, so a call
/// sent with the URG flag is never recorded as allowed.
#[test]
fn call_with_urgent_data_is_never_allowed() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40011");
    conn.open(&mut pipeline);

    let request = jsonrpc_request("crm.lead", "create");
    pipeline.handle(conn.segment(true, TcpFlags::ACK | TcpFlags::PSH | TcpFlags::URG, &request));
    conn.answer(&mut pipeline, &jsonrpc_response("41"));
    conn.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let anomalies: Vec<_> = records.iter().filter(|r| r.error_code.as_deref() == Some("urgent_data") && r.event == AuditEvent::FramingAnomaly).collect();
    assert_eq!(anomalies.len(), 1, "{records:?}");
    assert!(anomalies[0].message.starts_with("TCP urgent data: the request stream of connection "), "{}", anomalies[0].message);
    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny));
    assert_eq!(calls[0].error_code.as_deref(), Some("urgent_data"));
    assert_eq!(pipeline.reassembly().urgent_data.load(Ordering::Relaxed), 1);
}

/// A client waits until the capture expires its idle connection, then
/// sends its next request with `MSG_OOB`. The URG flag comes on the first
/// segment of the flow joined mid-stream, and the call is still held in
/// doubt.
#[test]
fn urgent_call_after_idle_expiry() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40012");
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("41"));

    conn.clock += 301 * 1_000_000_000;
    pipeline.tick(conn.clock, None);
    let request = jsonrpc_request("crm.lead", "create");
    pipeline.handle(conn.segment(true, TcpFlags::ACK | TcpFlags::PSH | TcpFlags::URG, &request));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::Allow));
    assert_eq!(calls[1].decision, Some(Decision::WouldDeny), "{:?}", calls[1]);
    assert_eq!(calls[1].error_code.as_deref(), Some("urgent_data"));
}

/// Conflicting copies put every later request of the connection in doubt.
/// The TCP connection outlives its flow when the capture expires it while
/// idle, so the calls on the flow joined mid-stream after it are in doubt
/// too.
#[test]
fn doubt_outlives_idle_expiry() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40013");
    conn.open(&mut pipeline);

    let fake = jsonrpc_request("crm.lead", "create");
    let real = jsonrpc_request("crm.lead", "unlink");
    let start = conn.client_seq;
    conn.send(&mut pipeline, &fake);
    conn.client_seq = start;
    conn.send(&mut pipeline, &real);
    conn.answer(&mut pipeline, &jsonrpc_response("true"));

    conn.clock += 301 * 1_000_000_000;
    pipeline.tick(conn.clock, None);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny));
    assert_eq!(calls[1].decision, Some(Decision::WouldDeny), "{:?}", calls[1]);
}

/// A new TCP connection on the same ports, opened by a SYN after the one in
/// doubt closed, starts without doubt.
#[test]
fn doubt_ends_with_its_connection() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40014");
    conn.open(&mut pipeline);
    let start = conn.client_seq;
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.client_seq = start;
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "unlink"));
    conn.answer(&mut pipeline, &jsonrpc_response("true"));
    conn.close(&mut pipeline);

    conn.client_seq = conn.client_seq.wrapping_add(100_000);
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &jsonrpc_request("crm.lead", "create"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny));
    assert_eq!(calls[1].decision, Some(Decision::Allow), "{:?}", calls[1]);
}

/// A copy of bytes whose first copy was dropped unacknowledged, to bound
/// memory, cannot be checked, so its call is not recorded as allowed
/// either, under an error code of its own.
#[test]
fn uncheckable_copy_is_never_allowed() {
    let text = format!("{CONFIG}\n[capture]\nmax_flow_buffer_bytes = 1024\n");
    let config = Arc::new(crate::config::parse(&text, "test.toml").expect("test config is valid"));
    let sink = MemorySink::default();
    let mut pipeline = Pipeline::new(config, None, Box::new(sink.clone()));
    let mut conn = Conn::new("10.0.0.2:40009");
    conn.open(&mut pipeline);

    let request = jsonrpc_request("crm.lead", "create");
    let start = conn.client_seq;
    conn.send(&mut pipeline, &request);
    let after = conn.client_seq;
    // Never acknowledged, these push the request out of the kept bytes.
    conn.send(&mut pipeline, &[b'\n'; 2048]);
    conn.client_seq = start;
    conn.send(&mut pipeline, &request);
    conn.client_seq = after;
    conn.answer(&mut pipeline, &jsonrpc_response("41"));
    conn.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let anomalies: Vec<_> = records.iter().filter(|r| r.error_code.as_deref() == Some("unverifiable_copy") && r.event == AuditEvent::FramingAnomaly).collect();
    assert_eq!(anomalies.len(), 1, "{records:?}");
    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny));
    assert_eq!(calls[0].error_code.as_deref(), Some("unverifiable_copy"));

    let counters = pipeline.reassembly();
    assert_eq!(counters.unverifiable_copies.load(Ordering::Relaxed), 1);
    assert_eq!(counters.conflicting_copies.load(Ordering::Relaxed), 0);
    let unverified = counters.unverified_bytes.load(Ordering::Relaxed);
    assert!(unverified >= request.len() as u64, "the request's first copy was dropped: {unverified}");
}

/// A retransmission with the same bytes is no conflict.
#[test]
fn identical_retransmission_is_allowed() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40006");
    conn.open(&mut pipeline);

    let request = jsonrpc_request("crm.lead", "create");
    let start = conn.client_seq;
    conn.send(&mut pipeline, &request);
    conn.client_seq = start;
    conn.send(&mut pipeline, &request);
    conn.answer(&mut pipeline, &jsonrpc_response("41"));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].decision, Some(Decision::Allow));
    assert!(sink.0.lock().unwrap().iter().all(|r| r.error_code.as_deref() != Some("conflicting_copies")));
    assert_eq!(pipeline.reassembly().conflicting_copies.load(Ordering::Relaxed), 0);
}

#[test]
fn malformed_body_gives_decode_error_record() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40005");
    conn.open(&mut pipeline);
    let body = br#"{"jsonrpc": "2.0", "params": {"service": "object""#;
    let request = format!("POST /jsonrpc HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    conn.send(&mut pipeline, &bytes);
    conn.answer(&mut pipeline, b"HTTP/1.1 400 BAD REQUEST\r\nContent-Length: 0\r\n\r\n");
    conn.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let errors: Vec<_> = records.iter().filter(|r| r.event == AuditEvent::DecodeError).collect();
    assert_eq!(errors.len(), 1, "{records:?}");
    assert_eq!(errors[0].error_code.as_deref(), Some("invalid_json"));
    assert_eq!(errors[0].integration.as_deref(), Some("website-form"));

    // Odoo may read what odoogate could not, so the call is recorded too.
    let calls = calls(&sink);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny));
    assert_eq!(calls[0].integration.as_deref(), Some("website-form"));
    assert_eq!(calls[0].protocol, Some("jsonrpc"));
    assert_eq!(calls[0].error_code.as_deref(), Some("invalid_json"));
    assert_eq!(calls[0].outcome.as_deref(), Some("http:400"));
}

#[test]
fn capture_losses_become_records() {
    let (mut pipeline, sink) = pipeline();
    let stats = CaptureStats { ring_full: 3, truncated: 1, ..CaptureStats::default() };
    pipeline.tick(10, Some(stats));
    pipeline.tick(20, Some(stats));

    let records = sink.0.lock().unwrap().clone();
    let losses: Vec<_> = records.iter().filter(|r| r.event == AuditEvent::CaptureLoss).collect();
    assert_eq!(losses.len(), 2, "one record per grown counter, none when unchanged: {records:?}");
    assert_eq!(losses[0].error_code.as_deref(), Some("ring_buffer_full"));
    assert_eq!(losses[0].count, Some(3));
    assert_eq!(losses[1].error_code.as_deref(), Some("payload_truncated"));
}

#[test]
fn ambiguous_framing_is_flagged_and_would_deny() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40006");
    conn.open(&mut pipeline);
    let request = jsonrpc_request("crm.lead", "create");
    let text = String::from_utf8(request).unwrap();
    let length_line = text.lines().find(|l| l.starts_with("Content-Length")).unwrap().to_owned();
    let doubled = text.replacen(&length_line, &format!("{length_line}\r\n{length_line}"), 1);
    conn.send(&mut pipeline, doubled.as_bytes());
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let anomalies: Vec<_> = records.iter().filter(|r| r.event == AuditEvent::FramingAnomaly).collect();
    assert_eq!(anomalies.len(), 1, "{records:?}");
    assert_eq!(anomalies[0].error_code.as_deref(), Some("duplicate_content_length"));
    let calls = calls(&sink);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].decision, Some(Decision::WouldDeny));
    assert!(calls[0].reason.as_deref().unwrap_or("").contains("duplicate_content_length"));
}

#[test]
fn web_logout_ends_session_identity() {
    let (mut pipeline, sink) = pipeline();
    let authenticate = br#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"db":"odoo19","login":"admin","password":"pw"}}"#;
    let call_kw = br#"{"jsonrpc":"2.0","method":"call","id":2,"params":{"model":"crm.lead","method":"create","args":[{"name":"x"}],"kwargs":{}}}"#;
    let post = |path: &str, body: &[u8], cookie: Option<&str>| {
        let cookie = cookie.map(|c| format!("Cookie: session_id={c}\r\n")).unwrap_or_default();
        let mut bytes = format!("POST {path} HTTP/1.1\r\nContent-Type: application/json\r\n{cookie}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        bytes
    };
    let ok = |body: &str, cookie: Option<&str>| {
        let cookie = cookie.map(|c| format!("Set-Cookie: session_id={c}; Path=/\r\n")).unwrap_or_default();
        format!("HTTP/1.1 200 OK\r\n{cookie}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };

    // The website form (matched by IP) logs in and gets a session.
    let mut form = Conn::new("10.0.0.2:40011");
    form.open(&mut pipeline);
    form.send(&mut pipeline, &post("/web/session/authenticate", authenticate, None));
    form.answer(&mut pipeline, &ok(r#"{"jsonrpc":"2.0","id":1,"result":{"uid":2}}"#, Some("s3ss10n")));
    form.close(&mut pipeline);

    // Another host reuses the session: identified by it.
    let mut other = Conn::new("10.0.0.7:40012");
    other.open(&mut pipeline);
    other.send(&mut pipeline, &post("/web/dataset/call_kw", call_kw, Some("s3ss10n")));
    other.answer(&mut pipeline, &ok(r#"{"jsonrpc":"2.0","id":2,"result":5}"#, None));
    other.send(&mut pipeline, b"GET /web/session/logout HTTP/1.1\r\nCookie: session_id=s3ss10n\r\n\r\n");
    other.answer(&mut pipeline, b"HTTP/1.1 303 SEE OTHER\r\nLocation: /web/login\r\nContent-Length: 0\r\n\r\n");
    other.send(&mut pipeline, &post("/web/dataset/call_kw", call_kw, Some("s3ss10n")));
    other.answer(&mut pipeline, &ok(r#"{"jsonrpc":"2.0","id":2,"result":6}"#, None));
    other.close(&mut pipeline);

    let records = calls(&sink);
    let creates: Vec<_> = records.iter().filter(|r| r.method.as_deref() == Some("create")).collect();
    assert_eq!(creates.len(), 2, "{records:?}");
    assert_eq!(creates[0].identity, Some(Identity::Session));
    assert_eq!(creates[0].integration.as_deref(), Some("website-form"));
    assert_eq!(creates[1].identity, Some(Identity::None), "the logout ended the session");
}

#[test]
fn call_with_a_session_keeps_it_alive() {
    use crate::secret::Secret;
    let (mut pipeline, sink) = pipeline();
    let now = std::time::SystemTime::now();
    let logged_in = now - std::time::Duration::from_secs(8 * 24 * 3600);
    for session in ["used", "idle"] {
        pipeline.sessions.bind(&Secret::new(session), "website-form", None, logged_in);
    }
    send_answered(&mut pipeline, "10.0.0.7:40013", &create_lead_call_kw("Cookie: session_id=used"));
    assert_eq!(calls(&sink)[0].identity, Some(Identity::Session));

    pipeline.sessions.expire_old(now);
    assert!(pipeline.sessions.lookup(&Secret::new("used")).is_some(), "the call kept the session alive");
    assert!(pipeline.sessions.lookup(&Secret::new("idle")).is_none(), "a week unused ends it");
}

#[test]
fn reload_sets_session_lifetime() {
    use crate::secret::Secret;
    let (mut pipeline, _sink) = pipeline();
    let now = std::time::SystemTime::now();
    let hour = std::time::Duration::from_secs(3600);
    pipeline.sessions.bind(&Secret::new("idle"), "website-form", None, now - 2 * hour);
    pipeline.tick(0, None);
    assert!(pipeline.sessions.lookup(&Secret::new("idle")).is_some(), "within the default 7 days");

    let text = CONFIG.replacen("[policy]\n", "[policy]\nsession_lifetime_secs = 3600\n", 1);
    pipeline.set_config(Arc::new(crate::config::parse(&text, "test.toml").expect("test config is valid")));
    pipeline.tick(0, None);
    assert!(pipeline.sessions.lookup(&Secret::new("idle")).is_none(), "unused for two hours of a one-hour lifetime");
}

/// The pipeline writes a compacted sessions file on a thread of its own,
/// and a binding made meanwhile reaches the new file.
#[test]
fn tick_compacts_sessions_file() {
    use crate::secret::Secret;
    let dir = ScratchDir::new("pipeline-compact");
    let file = dir.join("sessions.json");
    let text = CONFIG.replacen("[policy]\n", &format!("[policy]\nsessions_file = \"{}\"\n", file.display()), 1);
    let config = Arc::new(crate::config::parse(&text, "test.toml").expect("test config is valid"));
    let mut pipeline = Pipeline::new(config, None, Box::new(MemorySink::default()));
    let now = std::time::SystemTime::now();
    pipeline.sessions.bind(&Secret::new("kept"), "website-form", None, now);
    pipeline.sessions.churn("website-form", 20_000, now);

    pipeline.tick(0, None);
    assert!(pipeline.compaction.is_some(), "the file is past its slack");
    pipeline.sessions.bind(&Secret::new("late"), "website-form", None, now);
    let lines = || std::fs::read_to_string(&file).unwrap().lines().count();
    // Each tick checks whether the thread is done, as the pipeline's loop does.
    for _ in 0..500 {
        pipeline.tick(0, None);
        if pipeline.compaction.is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(pipeline.compaction.is_none(), "the compaction finished");
    assert_eq!(lines(), 2, "the binding, then the one made meanwhile");

    // Dropping the pipeline waits for a compaction under way.
    pipeline.sessions.churn("website-form", 20_000, now);
    pipeline.tick(0, None);
    assert!(pipeline.compaction.is_some());
    pipeline.sessions.bind(&Secret::new("last"), "website-form", None, now);
    drop(pipeline);
    assert_eq!(lines(), 3, "kept, late and last");
}

#[test]
fn session_web_route_would_deny() {
    let (mut pipeline, sink) = pipeline();
    let authenticate = br#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"db":"odoo19","login":"admin","password":"pw"}}"#;
    let mut login = format!(
        "POST /web/session/authenticate HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        authenticate.len()
    )
    .into_bytes();
    login.extend_from_slice(authenticate);
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"uid":2}}"#;
    let logged_in = format!("HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s3ss10n; Path=/\r\nContent-Length: {}\r\n\r\n{answer}", answer.len());
    let not_found = b"HTTP/1.1 404 NOT FOUND\r\nContent-Length: 0\r\n\r\n";

    let mut form = Conn::new("10.0.0.2:40013");
    form.open(&mut pipeline);
    form.send(&mut pipeline, &login);
    form.answer(&mut pipeline, logged_in.as_bytes());
    form.send(&mut pipeline, b"GET /web/content/ir.attachment/5/datas HTTP/1.1\r\nCookie: session_id=s3ss10n\r\n\r\n");
    form.answer(&mut pipeline, not_found);
    form.send(&mut pipeline, b"GET /web/static/img/logo.png HTTP/1.1\r\nCookie: session_id=s3ss10n\r\n\r\n");
    form.answer(&mut pipeline, not_found);
    form.send(&mut pipeline, b"GET /web/content/ir.attachment/5/datas HTTP/1.1\r\n\r\n");
    form.answer(&mut pipeline, not_found);
    form.close(&mut pipeline);

    let records = sink.0.lock().unwrap().clone();
    let routes: Vec<_> = records.iter().filter(|r| r.event == AuditEvent::WebRoute).collect();
    assert_eq!(routes.len(), 1, "only the session's unlisted route: {records:?}");
    assert_eq!(routes[0].decision, Some(Decision::WouldDeny));
    assert_eq!(routes[0].integration.as_deref(), Some("website-form"));
    assert_eq!(routes[0].identity, Some(Identity::Session));
    assert_eq!(routes[0].path.as_deref(), Some("/web/content/ir.attachment/5/datas"));
}

// === grants, rate limits and reload ===

/// Returns a configuration whose grant file, `grants.json`, lives in the
/// fresh directory returned with it. `rule` is the allow list of the
/// integration `erp` at 10.0.0.3.
fn policy_config(name: &str, rule: &str) -> (Arc<Config>, ScratchDir) {
    let dir = ScratchDir::new(&format!("pipeline-{name}"));
    let grants_file = dir.join("grants.json");
    let text = format!(
        r#"
[odoo]
ports = [8069]
interfaces = ["lo"]

[policy]
mode = "observe"
unidentified = "deny"
grants_file = "{}"

[[integration]]
name = "erp"
match = {{ ip = ["10.0.0.3/32"] }}
allow = {rule}

[[integration]]
name = "night-import"
enabled = false
match = {{ ip = ["10.0.0.4/32"] }}
allow = [{{ models = ["crm.lead"], methods = ["create"] }}]
"#,
        grants_file.display()
    );
    (Arc::new(crate::config::parse(&text, "test.toml").expect("valid test config")), dir)
}

/// Sends one call on a fresh connection and answers it.
fn one_call(pipeline: &mut Pipeline, client: &str, model: &str, method: &str) {
    send_answered(pipeline, client, &jsonrpc_request(model, method));
}

/// Sends `request` on a fresh connection, answers it with a result and
/// closes the connection.
fn send_answered(pipeline: &mut Pipeline, client: &str, request: &[u8]) {
    let mut conn = Conn::new(client);
    conn.open(pipeline);
    conn.send(pipeline, request);
    conn.answer(pipeline, &jsonrpc_response("42"));
    conn.close(pipeline);
}

/// Returns a web client's `call_kw` request that creates a lead, with the
/// header field line `header` (no line end) among its headers.
fn create_lead_call_kw(header: &str) -> Vec<u8> {
    let body =
        r#"{"jsonrpc":"2.0","method":"call","id":2,"params":{"model":"crm.lead","method":"create","args":[{"name":"x"}],"kwargs":{}}}"#;
    format!(
        "POST /web/dataset/call_kw HTTP/1.1\r\nContent-Type: application/json\r\n{header}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Returns an observe pipeline that allows unidentified calls and whose
/// token store cannot be loaded, its sink, and its scratch directory.
fn pipeline_without_store(name: &str) -> (Pipeline, MemorySink, ScratchDir) {
    let dir = fresh_dir(name);
    let store = dir.join("tokens.json");
    std::fs::write(&store, "not json").unwrap();
    let text = CONFIG.replace("unidentified = \"deny\"", "unidentified = \"allow\"");
    let text = format!("{text}\n[tokens]\nstore = \"{}\"\n", store.display());
    let config = Arc::new(crate::config::parse(&text, "test.toml").expect("test config is valid"));
    let sink = MemorySink::default();
    (Pipeline::new(config, None, Box::new(sink.clone())), sink, dir)
}

#[test]
fn rate_limit_turns_allow_into_would_deny() {
    let rule = r#"[{ models = ["crm.lead"], methods = ["create"], rate = "1/h", burst = 2 }]"#;
    let (config, _dir) = policy_config("rate", rule);
    let sink = MemorySink::default();
    let mut pipeline = Pipeline::new(config, None, Box::new(sink.clone()));

    for port in 41000..41003 {
        one_call(&mut pipeline, &format!("10.0.0.3:{port}"), "crm.lead", "create");
    }

    let records = calls(&sink);
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].decision, Some(Decision::Allow));
    assert_eq!(records[1].decision, Some(Decision::Allow));
    assert_eq!(records[2].decision, Some(Decision::WouldDeny));
    assert_eq!(records[2].rule.as_deref(), Some("erp.allow[0]"));
    let reason = records[2].reason.as_deref().unwrap();
    assert!(reason.contains("rate limit erp.allow[0].rate = 1/h, burst 2 exceeded"), "{reason}");

    let counts = pipeline.counts().snapshot();
    assert_eq!(counts["erp"].allow, 2);
    assert_eq!(counts["erp"].would_deny, 1);
}

#[test]
fn grant_enables_disabled_integration() {
    let (config, dir) = policy_config("grant", r#"[{ models = ["crm.lead"], methods = ["read"] }]"#);
    let grants_file = dir.join("grants.json");
    let sink = MemorySink::default();
    let mut pipeline = Pipeline::new(config, None, Box::new(sink.clone()));

    one_call(&mut pipeline, "10.0.0.4:42000", "crm.lead", "create");
    let request = crate::grant::store::GrantRequest {
        integration: "night-import".to_owned(),
        rule: None,
        duration: Duration::from_secs(3600),
        reason: Some("monthly import".to_owned()),
    };
    let grant = crate::grant::store::add(&grants_file, request, std::time::SystemTime::now()).unwrap();
    // The message `odoogate grant` sends through the control socket.
    lock(&pipeline.policy()).reread_grants();
    one_call(&mut pipeline, "10.0.0.4:42001", "crm.lead", "create");

    let records = calls(&sink);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].decision, Some(Decision::WouldDeny));
    assert_eq!(records[0].grant, None);
    assert_eq!(records[1].decision, Some(Decision::Allow));
    assert_eq!(records[1].grant.as_deref(), Some(grant.id.as_str()));
    let active = lock(&pipeline.policy()).active_grants(std::time::SystemTime::now());
    assert_eq!(active, vec![grant]);
}

#[test]
fn set_config_changes_next_decision() {
    let (config, _dir) = policy_config("reload", r#"[{ models = ["crm.lead"], methods = ["read"] }]"#);
    let sink = MemorySink::default();
    let mut pipeline = Pipeline::new(config, None, Box::new(sink.clone()));

    one_call(&mut pipeline, "10.0.0.3:43000", "crm.lead", "create");
    let (reloaded, _reloaded_dir) = policy_config("reload", r#"[{ models = ["crm.lead"], methods = ["create"] }]"#);
    pipeline.set_config(reloaded);
    one_call(&mut pipeline, "10.0.0.3:43001", "crm.lead", "create");

    let records = calls(&sink);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].decision, Some(Decision::WouldDeny));
    assert_eq!(records[1].decision, Some(Decision::Allow));
}

/// `tokens_changed` on the control socket has the pipeline load a changed
/// store before its next event, not at the check a second later.
#[test]
fn tokens_changed_loads_store_before_next_event() {
    let dir = ScratchDir::new("pipeline-tokens-changed");
    let store = dir.join("tokens.json");
    let now = std::time::SystemTime::now();
    let (record, token) = crate::token::TokenStore::create(&store, "website-form", None, now).unwrap();
    let text = format!("{CONFIG}\n[tokens]\nstore = \"{}\"\n", store.display());
    let config = Arc::new(crate::config::parse(&text, "test.toml").expect("test config is valid"));
    let mut pipeline = Pipeline::new(config, None, Box::new(MemorySink::default()));
    let fingerprint = crate::identity::Fingerprint::of(&token);
    let state = |pipeline: &Pipeline| pipeline.tokens.store().and_then(|store| store.state_of(&fingerprint, now));
    assert_eq!(state(&pipeline), Some(crate::token::TokenState::Active));

    crate::token::TokenStore::revoke(&store, &record.id, now).unwrap();
    pipeline.load_tokens_on_notice();
    assert_eq!(state(&pipeline), Some(crate::token::TokenState::Active), "no notice yet");

    pipeline.tokens_changed().store(true, std::sync::atomic::Ordering::SeqCst);
    pipeline.load_tokens_on_notice();
    assert_eq!(state(&pipeline), Some(crate::token::TokenState::Revoked));
}

#[test]
fn observe_mode_identifies_scoped_tokens() {
    let dir = ScratchDir::new("pipeline-tokens");
    let store = dir.join("tokens.json");
    let (_, token) = crate::token::TokenStore::create(&store, "website-form", None, std::time::SystemTime::now()).unwrap();
    // A token identifies only an integration whose match has `token = true`.
    let text = CONFIG.replace(r#"match = { ip = ["10.0.0.2/32"] }"#, r#"match = { token = true, ip = ["10.0.0.0/24"] }"#);
    let text = format!("{text}\n[tokens]\nstore = \"{}\"\n", store.display());
    let config = Arc::new(crate::config::parse(&text, "test.toml").expect("test config is valid"));
    let sink = MemorySink::default();
    let mut pipeline = Pipeline::new(config, None, Box::new(sink.clone()));

    // From an address only the token's match takes, with the token in the header
    // Odoo ignores, and then with a token that was never issued.
    let mut conn = Conn::new("10.0.0.9:40020");
    conn.open(&mut pipeline);
    // Changing one character of the random part breaks the checksum.
    let mut tampered: Vec<char> = token.expose().chars().collect();
    tampered[10] = if tampered[10] == 'a' { 'b' } else { 'a' };
    let tampered: String = tampered.into_iter().collect();
    for presented in [token.expose().to_owned(), tampered] {
        let request = String::from_utf8(jsonrpc_request("crm.lead", "create")).unwrap();
        let request = request.replacen("Host: odoo\r\n", &format!("Host: odoo\r\nX-Odoogate-Token: {presented}\r\n"), 1);
        conn.send(&mut pipeline, request.as_bytes());
        conn.answer(&mut pipeline, &jsonrpc_response("42"));
    }
    conn.close(&mut pipeline);
    pipeline.finish();

    let records = calls(&sink);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].identity, Some(Identity::Token));
    assert_eq!(records[0].integration.as_deref(), Some("website-form"));
    assert_eq!(records[0].decision, Some(Decision::Allow));
    assert_eq!(records[1].identity, Some(Identity::None), "{:?}", records[1]);
    assert_eq!(records[1].decision, Some(Decision::WouldDeny));
    assert!(records[1].error_code.as_deref().is_some_and(|code| code.ends_with("token")), "{:?}", records[1]);
    for record in &records {
        assert!(!format!("{record:?}").contains(token.expose()), "no record holds the token");
    }
}

#[test]
fn observe_refused_token_names_integration() {
    use crate::token::TokenStore;
    let dir = fresh_dir("refused-token");
    let store = dir.join("tokens.json");
    let now = std::time::SystemTime::now();
    let (revoked_record, revoked) = TokenStore::create(&store, "mcp-assistant", None, now).unwrap();
    TokenStore::revoke(&store, &revoked_record.id, now).unwrap();
    let (_, valid) = TokenStore::create(&store, "mcp-assistant", None, now).unwrap();
    let assistant = r#"
[[integration]]
name = "mcp-assistant"
match = { token = true }
allow = [{ models = ["crm.lead"], methods = ["create"], rate = "1/h", burst = 1 }]
"#;
    let text = format!("{CONFIG}{assistant}\n[tokens]\nstore = \"{}\"\n", store.display());
    let config = Arc::new(crate::config::parse(&text, "test.toml").expect("test config is valid"));
    let sink = MemorySink::default();
    let mut pipeline = Pipeline::new(config, None, Box::new(sink.clone()));

    // From website-form's address: the revoked token, then a valid one,
    // which still finds the one call of its rate limit.
    for (port, token) in [(40030, &revoked), (40031, &valid)] {
        let header = format!("X-Odoogate-Token: {}", token.expose());
        send_answered(&mut pipeline, &format!("10.0.0.2:{port}"), &create_lead_call_kw(&header));
    }
    pipeline.finish();

    let records = calls(&sink);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].integration.as_deref(), Some("mcp-assistant"), "{:?}", records[0]);
    assert_eq!(records[0].identity, Some(Identity::Token), "{:?}", records[0]);
    assert_eq!(records[0].decision, Some(Decision::WouldDeny), "{:?}", records[0]);
    assert_eq!(records[0].error_code.as_deref(), Some("revoked_token"), "{:?}", records[0]);
    assert!(records[0].reason.as_deref().is_some_and(|reason| reason.starts_with("revoked token (sha256 ")), "{:?}", records[0]);
    assert_eq!(records[1].integration.as_deref(), Some("mcp-assistant"), "{:?}", records[1]);
    assert_eq!(records[1].decision, Some(Decision::Allow), "a refused call used up the rate limit: {:?}", records[1]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Returns an empty directory named after `name` and this process.
fn fresh_dir(name: &str) -> ScratchDir {
    ScratchDir::new(&format!("pipeline-{name}"))
}

/// Frames `bytes`, which must hold exactly one complete request.
fn frame_request(bytes: &[u8]) -> crate::http::HttpRequest {
    use crate::http::framer::{FramerEvent, FramerLimits, RequestFramer};
    let mut events = Vec::new();
    RequestFramer::new(FramerLimits { max_header_bytes: 8192, max_body_bytes: 1024 }).push(bytes, 0, &mut events);
    let Some(FramerEvent::Request(request)) = events.pop() else { panic!("not a request: {events:?}") };
    request
}

/// The test configuration with `website-form` opening `/web/image/**`.
fn web_routes_config() -> crate::config::Config {
    crate::config::parse(&format!("{CONFIG}web_routes = [\"/web/image/**\"]\n"), "test.toml").expect("test config is valid")
}

/// [`web_routes_config`] with `website-form` accepting scoped tokens.
fn web_routes_token_config() -> crate::config::Config {
    let text = CONFIG.replace("match = { ip = ", "match = { token = true, ip = ");
    crate::config::parse(&format!("{text}web_routes = [\"/web/image/**\"]\n"), "test.toml").expect("test config is valid")
}

#[test]
fn revoked_token_session_opens_no_route() {
    use crate::secret::Secret;
    let dir = fresh_dir("token-session");
    let path = dir.join("tokens.json");
    let now = std::time::SystemTime::now();
    let (record, token) = crate::token::TokenStore::create(&path, "website-form", None, now).unwrap();
    let config = web_routes_token_config();
    let mut sessions = crate::identity::SessionTable::default();
    let digest = crate::identity::Fingerprint::of(&token);
    sessions.bind(&Secret::new("s3ss10n"), "website-form", Some(digest), now);
    let request = frame_request(b"GET /web/image/res.partner/3/avatar_128 HTTP/1.1\r\nCookie: session_id=s3ss10n\r\n\r\n");

    let store = crate::token::TokenStore::load(&path).unwrap();
    assert_eq!(web_route_refusal(&config, &sessions, Some(&store), &request), None, "a listed route");
    // A reload that takes `token = true` away refuses the token, and so
    // its session.
    let without_tokens = web_routes_config();
    let (_, reason) = web_route_refusal(&without_tokens, &sessions, Some(&store), &request).expect("the route is refused");
    assert!(reason.contains("no longer accepts"), "{reason}");

    crate::token::TokenStore::revoke(&path, &record.id, now).unwrap();
    let store = crate::token::TokenStore::load(&path).unwrap();
    let (integration, reason) = web_route_refusal(&config, &sessions, Some(&store), &request).expect("the route is refused");
    assert_eq!(integration, "website-form");
    assert!(reason.contains("revoked"), "{reason}");
    assert!(web_route_refusal(&config, &sessions, None, &request).is_some(), "without a store no token is valid");

    let logout = frame_request(b"GET /web/session/logout HTTP/1.1\r\nCookie: session_id=s3ss10n\r\n\r\n");
    assert_eq!(web_route_refusal(&config, &sessions, Some(&store), &logout), None, "the logout stays open");
}

/// Asserts that `sink` got one call record, `would_deny` for an unknown
/// token.
fn assert_one_unknown_token(sink: &MemorySink) {
    let records = calls(sink);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].decision, Some(Decision::WouldDeny), "{:?}", records[0]);
    assert_eq!(records[0].error_code.as_deref(), Some("unknown_token"), "{:?}", records[0]);
}

#[test]
fn observe_mode_without_store_flags_ended_token_session() {
    // Enforce mode without a token store refuses a model call whose web
    // session a token logged in (proxy::session resolve), so observe mode
    // must record would_deny too, even when unidentified calls are allowed.
    let (mut pipeline, sink, _dir) = pipeline_without_store("no-store");
    let digest = crate::identity::Fingerprint::of(&crate::secret::Secret::new("odg_gone"));
    pipeline.sessions.bind(&crate::secret::Secret::new("s3ss10n"), "website-form", Some(digest), std::time::SystemTime::now());

    send_answered(&mut pipeline, "10.0.0.9:40021", &create_lead_call_kw("Cookie: session_id=s3ss10n"));
    pipeline.finish();

    assert_one_unknown_token(&sink);
}

#[test]
fn observe_mode_without_store_flags_presented_token() {
    // Enforce mode without a token store rejects a presented token with
    // AccessDenied, so observe mode records would_deny for it too.
    let (mut pipeline, sink, _dir) = pipeline_without_store("no-store-token");

    send_answered(&mut pipeline, "10.0.0.9:40022", &create_lead_call_kw("X-Odoogate-Token: odg_2C9mbw3wJ9fhP5EXAMPLExx"));
    pipeline.finish();

    assert_one_unknown_token(&sink);
}

#[test]
fn ended_token_session_refused_on_every_route_slot() {
    use crate::secret::Secret;
    let config = web_routes_config();
    let mut sessions = crate::identity::SessionTable::default();
    let now = std::time::SystemTime::now();
    let gone = crate::identity::Fingerprint::of(&Secret::new("odg_gone"));
    sessions.bind(&Secret::new("ended"), "website-form", Some(gone), now);
    sessions.bind(&Secret::new("plain"), "website-form", None, now);

    // A session that no token opened is untouched.
    let plain = frame_request(b"GET /web/image/res.partner/3/avatar_128 HTTP/1.1\r\nCookie: session_id=plain\r\n\r\n");
    assert_eq!(web_route_refusal(&config, &sessions, None, &plain), None);

    // The ended session in the query, the header or second behind a plain one.
    for request in [
        &b"GET /web/image/res.partner/3/avatar_128?session_id=ended HTTP/1.1\r\n\r\n"[..],
        b"GET /web/image/res.partner/3/avatar_128 HTTP/1.1\r\nX-Openerp-Session-Id: ended\r\n\r\n",
        b"GET /web/image/res.partner/3/avatar_128 HTTP/1.1\r\nCookie: session_id=plain; session_id=ended\r\n\r\n",
        b"GET /web/image/res.partner/3/avatar_128?session_id=plain HTTP/1.1\r\nCookie: session_id=ended\r\n\r\n",
    ] {
        let request = frame_request(request);
        assert!(web_route_refusal(&config, &sessions, None, &request).is_some(), "{}", request.target);
    }

    // A static file stays open, but not a path that only looks like one.
    let asset = frame_request(b"GET /web/static/src/img/logo.png HTTP/1.1\r\nCookie: session_id=ended\r\n\r\n");
    assert_eq!(web_route_refusal(&config, &sessions, None, &asset), None);
    let escaped = frame_request(b"GET /web/static/%2e%2e/%2e%2e/web/image/res.partner/3 HTTP/1.1\r\nCookie: session_id=ended\r\n\r\n");
    assert!(web_route_refusal(&config, &sessions, None, &escaped).is_some());
}

#[test]
fn ended_token_session_in_use_outlives_a_week() {
    use crate::secret::Secret;
    use std::time::Duration;
    let config = crate::config::parse(CONFIG, "test.toml").expect("test config is valid");
    let mut sessions = crate::identity::SessionTable::default();
    let now = std::time::SystemTime::now();
    // Eight days ago, past the seven-day lifetime after which unused
    // bindings expire.
    let logged_in = now - Duration::from_secs(8 * 24 * 3600);
    let gone = crate::identity::Fingerprint::of(&Secret::new("odg_gone"));
    sessions.bind(&Secret::new("ended"), "website-form", Some(gone), logged_in);
    sessions.bind(&Secret::new("idle"), "website-form", Some(gone), logged_in);
    let in_use = frame_request(b"GET /web/content/ir.attachment/7/datas HTTP/1.1\r\nCookie: session_id=ended\r\n\r\n");
    let idle = frame_request(b"GET /web/content/ir.attachment/7/datas HTTP/1.1\r\nCookie: session_id=idle\r\n\r\n");
    assert!(web_route_refusal(&config, &sessions, None, &in_use).is_some(), "refused while the binding lasts");

    // A call used the first session two days ago.
    assert!(sessions.touch(&Secret::new("ended"), now - Duration::from_secs(2 * 24 * 3600)));
    // The maintenance tick of the pipeline and the proxy.
    sessions.expire_old(now);
    assert!(web_route_refusal(&config, &sessions, None, &in_use).is_some(), "the session of a revoked token still reaches Odoo");
    // Odoo has deleted the idle session, and odoogate drops its binding.
    assert_eq!(web_route_refusal(&config, &sessions, None, &idle), None);
}

/// In observe mode Odoo still gets a login whose token is refused, and may
/// accept its password. Enforce mode would have denied that login, so the
/// session it opens belongs to no integration, not to the token's.
#[test]
fn refused_token_login_binds_no_session() {
    use crate::token::TokenStore;
    let dir = fresh_dir("refused-login");
    let store = dir.join("tokens.json");
    let now = std::time::SystemTime::now();
    let (revoked_record, revoked) = TokenStore::create(&store, "mcp-assistant", None, now).unwrap();
    TokenStore::revoke(&store, &revoked_record.id, now).unwrap();
    let assistant = "\n[[integration]]\nname = \"mcp-assistant\"\nmatch = { token = true }\n\
                     allow = [{ models = [\"crm.lead\"], methods = [\"create\"] }]\n";
    let text = format!("{CONFIG}{assistant}\n[tokens]\nstore = \"{}\"\n", store.display());
    let config = Arc::new(crate::config::parse(&text, "test.toml").expect("test config is valid"));
    let sink = MemorySink::default();
    let mut pipeline = Pipeline::new(config, None, Box::new(sink.clone()));

    let authenticate = br#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"db":"odoo19","login":"admin","password":"pw"}}"#;
    let mut login = format!(
        "POST /web/session/authenticate HTTP/1.1\r\nContent-Type: application/json\r\nX-Odoogate-Token: {}\r\nContent-Length: {}\r\n\r\n",
        revoked.expose(),
        authenticate.len()
    )
    .into_bytes();
    login.extend_from_slice(authenticate);
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"uid":2}}"#;
    let accepted = format!("HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s3ss10n; Path=/\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut conn = Conn::new("10.0.0.7:40040");
    conn.open(&mut pipeline);
    conn.send(&mut pipeline, &login);
    conn.answer(&mut pipeline, accepted.as_bytes());
    conn.send(&mut pipeline, &create_lead_call_kw("Cookie: session_id=s3ss10n"));
    conn.answer(&mut pipeline, &jsonrpc_response("42"));
    conn.close(&mut pipeline);
    pipeline.finish();

    let records = calls(&sink);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].error_code.as_deref(), Some("revoked_token"), "{:?}", records[0]);
    assert_eq!(records[1].integration, None, "the refused login bound its session: {:?}", records[1]);
    assert_eq!(records[1].decision, Some(Decision::WouldDeny), "{:?}", records[1]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The forged copy of a second request waits in the out-of-order buffer
/// while the first request is incomplete. The real copy conflicts with it,
/// and both requests complete after the conflict.
#[test]
fn conflict_before_two_requests_marks_both() {
    let (mut pipeline, sink) = pipeline();
    let mut conn = Conn::new("10.0.0.2:40007");
    conn.open(&mut pipeline);

    let first = jsonrpc_request("crm.lead", "create");
    let fake = jsonrpc_request("crm.lead", "create");
    let real = jsonrpc_request("crm.lead", "unlink");
    let start = conn.client_seq;
    conn.send(&mut pipeline, &first[..10]);
    conn.client_seq = start.wrapping_add(first.len() as u32);
    conn.send(&mut pipeline, &fake);
    conn.client_seq = start.wrapping_add(first.len() as u32);
    conn.send(&mut pipeline, &real);
    conn.client_seq = start.wrapping_add(10);
    conn.send(&mut pipeline, &first[10..]);
    conn.client_seq = start.wrapping_add((first.len() + real.len()) as u32);
    conn.answer(&mut pipeline, &jsonrpc_response("41"));
    conn.answer(&mut pipeline, &jsonrpc_response("true"));
    conn.close(&mut pipeline);

    let calls = calls(&sink);
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_ne!(call.decision, Some(Decision::Allow), "{}", call.message);
    }
}


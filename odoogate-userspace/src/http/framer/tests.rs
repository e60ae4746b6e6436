use super::*;
use crate::http::FramingAnomaly;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const LIMITS: FramerLimits = FramerLimits {
    max_header_bytes: 1024,
    max_body_bytes: 64,
};

fn frame_requests(chunks: &[&[u8]]) -> Vec<FramerEvent> {
    let mut framer = RequestFramer::new(LIMITS);
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        framer.push(chunk, i as u64, &mut out);
    }
    framer.finish(&mut out);
    out
}

fn frame_responses(methods: &[&str], chunks: &[&[u8]]) -> Vec<FramerEvent> {
    let mut framer = ResponseFramer::new(LIMITS);
    for method in methods {
        framer.expect_response(method);
    }
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        framer.push(chunk, i as u64, &mut out);
    }
    framer.finish(&mut out);
    out
}

fn requests(events: &[FramerEvent]) -> Vec<&HttpRequest> {
    events
        .iter()
        .filter_map(|event| match event {
            FramerEvent::Request(request) => Some(request),
            _ => None,
        })
        .collect()
}

fn responses(events: &[FramerEvent]) -> Vec<&HttpResponse> {
    events
        .iter()
        .filter_map(|event| match event {
            FramerEvent::Response(response) => Some(response),
            _ => None,
        })
        .collect()
}

fn only_request(events: &[FramerEvent]) -> &HttpRequest {
    let found = requests(events);
    assert_eq!(found.len(), 1, "events: {events:?}");
    found[0]
}

fn malformed(events: &[FramerEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|event| match event {
            FramerEvent::Malformed { reason } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn desyncs(events: &[FramerEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            FramerEvent::Desync { skipped_bytes } => Some(*skipped_bytes),
            _ => None,
        })
        .collect()
}

// --- request bodies ---

#[test]
fn content_length_body() {
    let events = frame_requests(&[b"POST /jsonrpc HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"]);
    let request = only_request(&events);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path(), "/jsonrpc");
    assert_eq!(request.version, HttpVersion::Http11);
    assert_eq!(&request.body[..], b"hello");
    assert!(request.anomalies.is_empty());
}

#[test]
fn request_without_length_has_no_body() {
    let events = frame_requests(&[b"GET /web/version HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"]);
    let found = requests(&events);
    assert_eq!(found.len(), 2);
    assert!(found[0].body.is_empty());
    assert_eq!(found[1].target, "/b");
}

#[test]
fn chunk_extension_is_malformed() {
    // werkzeug fails on `5;ext=1` and reads the chunk data as the next
    // request, so the request inside it must not go unflagged.
    let wire = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        18;ext=1\r\nGET /hidden HTTP/1.1\r\n\r\n0\r\n\r\n";
    let events = frame_requests(&[wire]);
    // The last chunk, read as a request line after the hidden request, is
    // no request either.
    assert_eq!(malformed(&events), vec!["chunk extension", "invalid request line"]);
    let hidden = only_request(&events);
    assert_eq!(hidden.target, "/hidden");
    assert_eq!(hidden.anomalies, vec![FramingAnomaly::FollowsAmbiguousRequest]);
}

#[test]
fn trailer_field_is_malformed() {
    // werkzeug reads one line after the last chunk and fails unless it is
    // empty, so a trailer field never reaches Odoo as a header.
    let wire = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n0\r\nContent-Type: evil\r\n\r\n";
    let events = frame_requests(&[wire]);
    assert_eq!(malformed(&events), vec!["trailer field after the last chunk"]);
    assert!(requests(&events).is_empty(), "{events:?}");
}

#[test]
fn request_after_ambiguous_one_is_flagged() {
    let wire = b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx\
        GET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
    let events = frame_requests(&[wire]);
    let all = requests(&events);
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].anomalies, vec![FramingAnomaly::DuplicateContentLength]);
    assert_eq!(all[1].anomalies, vec![FramingAnomaly::FollowsAmbiguousRequest]);
    assert_eq!(all[2].anomalies, vec![FramingAnomaly::FollowsAmbiguousRequest]);
}

#[test]
fn lowercase_method_reads_as_uppercase() {
    let events = frame_requests(&[b"post /x HTTP/1.1\r\n\r\n"]);
    assert_eq!(only_request(&events).method, "POST");
}

#[test]
fn unusual_targets_are_flagged() {
    for target in ["jsonrpc", "x:/jsonrpc", "http:jsonrpc", "ftp://odoo/jsonrpc", "odoo:8069"] {
        let head = format!("POST {target} HTTP/1.1\r\nHost: odoo\r\n\r\n");
        let events = frame_requests(&[head.as_bytes()]);
        assert_eq!(only_request(&events).anomalies, vec![FramingAnomaly::UnusualTarget], "target {target:?}");
    }
    for target in ["/jsonrpc", "//jsonrpc", "http://odoo/jsonrpc", "HTTPS://odoo/jsonrpc", "*"] {
        let head = format!("OPTIONS {target} HTTP/1.1\r\nHost: odoo\r\n\r\n");
        let events = frame_requests(&[head.as_bytes()]);
        assert!(only_request(&events).anomalies.is_empty(), "target {target:?}");
    }
}

#[test]
fn chunk_line_with_bare_lf_is_flagged() {
    let events =
        frame_requests(&[b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"]);
    let request = only_request(&events);
    assert_eq!(&request.body[..], b"abc");
    assert_eq!(request.anomalies, vec![FramingAnomaly::ChunkLineNotCrlf]);
}

#[test]
fn invalid_chunk_size_resyncs() {
    let wire =
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /next HTTP/1.1\r\n\r\n";
    let events = frame_requests(&[wire]);
    assert_eq!(malformed(&events), vec!["invalid chunk size"]);
    assert_eq!(only_request(&events).target, "/next");
    assert_eq!(desyncs(&events), vec![48 + 4]);
}

#[test]
fn chunk_data_without_line_end_is_malformed() {
    let events =
        frame_requests(&[b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n"]);
    assert_eq!(
        malformed(&events),
        vec!["missing line end after chunk data"]
    );
    assert!(requests(&events).is_empty());
}

#[test]
fn keep_alive_pipelined_requests() {
    let wire = b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nAPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nBB";
    let events = frame_requests(&[wire]);
    let found = requests(&events);
    assert_eq!(found.len(), 2);
    assert_eq!(&found[0].body[..], b"A");
    assert_eq!(&found[1].body[..], b"BB");
}

#[test]
fn empty_lines_between_requests_are_skipped() {
    let events = frame_requests(&[b"\r\nGET /a HTTP/1.1\r\n\r\n\r\n\nGET /b HTTP/1.1\r\n\r\n"]);
    assert_eq!(requests(&events).len(), 2);
    assert!(malformed(&events).is_empty());
}

#[test]
fn body_over_limit_is_truncated_but_framed() {
    let body = vec![b'x'; 100];
    let head = b"POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
    let next = b"GET /b HTTP/1.1\r\n\r\n";
    let events = frame_requests(&[head, &body, next]);
    let found = requests(&events);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].body.len(), 64);
    assert!(found[0].body_truncated);
    assert!(!found[1].body_truncated);
}

#[test]
fn chunked_body_over_limit_is_truncated() {
    let mut wire = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n".to_vec();
    wire.extend([b'y'; 0x50]);
    wire.extend(b"\r\n0\r\n\r\n");
    let events = frame_requests(&[&wire]);
    let request = only_request(&events);
    assert_eq!(request.body.len(), 64);
    assert!(request.body_truncated);
}

#[test]
fn timestamps_span_first_and_last_push() {
    let events = frame_requests(&[b"POST /a HTTP/1.1\r\nContent-", b"Length: 2\r\n\r\nA", b"B"]);
    let request = only_request(&events);
    assert_eq!(request.first_byte_ns, 0);
    assert_eq!(request.last_byte_ns, 2);
}

// --- anomalies (werkzeug's reading) ---

#[test]
fn duplicate_content_length_uses_last() {
    let events =
        frame_requests(&[b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 3\r\n\r\nabc"]);
    let request = only_request(&events);
    assert_eq!(&request.body[..], b"abc");
    assert_eq!(
        request.anomalies,
        vec![FramingAnomaly::DuplicateContentLength]
    );
}

#[test]
fn content_length_with_chunked_uses_chunked() {
    let wire = b"POST /a HTTP/1.1\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n";
    let events = frame_requests(&[wire]);
    let request = only_request(&events);
    assert_eq!(&request.body[..], b"Z");
    assert_eq!(
        request.anomalies,
        vec![FramingAnomaly::ContentLengthWithTransferEncoding]
    );
}

#[test]
fn chunked_anywhere_in_list_is_honoured() {
    let wire = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n1\r\nZ\r\n0\r\n\r\n";
    let events = frame_requests(&[wire]);
    let request = only_request(&events);
    assert_eq!(&request.body[..], b"Z");
    assert_eq!(
        request.anomalies,
        vec![FramingAnomaly::UnsupportedTransferCoding]
    );
}

#[test]
fn transfer_coding_without_chunked_uses_length() {
    let wire = b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nab";
    let events = frame_requests(&[wire]);
    let request = only_request(&events);
    assert_eq!(&request.body[..], b"ab");
    assert!(
        request
            .anomalies
            .contains(&FramingAnomaly::UnsupportedTransferCoding)
    );
    assert!(
        request
            .anomalies
            .contains(&FramingAnomaly::ContentLengthWithTransferEncoding)
    );
}

#[test]
fn bare_lf_head_is_flagged() {
    let events = frame_requests(&[b"POST /a HTTP/1.1\nContent-Length: 2\n\nab"]);
    let request = only_request(&events);
    assert_eq!(&request.body[..], b"ab");
    assert_eq!(request.anomalies, vec![FramingAnomaly::BareLf]);
}

#[test]
fn bare_cr_in_header_is_flagged() {
    let events = frame_requests(&[b"POST /a HTTP/1.1\r\nX-A: a\rTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nab"]);
    let request = only_request(&events);
    assert!(request.anomalies.contains(&FramingAnomaly::BareCr), "{:?}", request.anomalies);
}

#[test]
fn obs_fold_is_joined_and_flagged() {
    let events = frame_requests(&[b"GET /a HTTP/1.1\r\nX-Long: one\r\n\t two\r\n\r\n"]);
    let request = only_request(&events);
    assert_eq!(request.headers.get_str("x-long"), Some("one two"));
    assert_eq!(request.anomalies, vec![FramingAnomaly::ObsFold]);
}

#[test]
fn dropped_field_drops_its_continuation() {
    let wire = b"GET /a HTTP/1.1\r\nX-A: one\r\nX_B: two\r\n three\r\nX-Empty:\r\nX-C:  four \r\n five\r\n\r\n";
    let events = frame_requests(&[wire]);
    let request = only_request(&events);
    let fields: Vec<(&str, &[u8])> = request.headers.0.iter().map(|(name, value)| (name.as_str(), &value[..])).collect();
    assert_eq!(fields, [("X-A", &b"one"[..]), ("X-Empty", b""), ("X-C", b"four five")]);
    assert_eq!(request.anomalies, vec![FramingAnomaly::UnderscoreInHeaderName, FramingAnomaly::ObsFold]);
}

#[test]
fn continuation_before_any_field_is_malformed() {
    let events = frame_requests(&[b"GET /a HTTP/1.1\r\n folded\r\nX-A: one\r\n\r\n"]);
    assert_eq!(malformed(&events), ["continuation line without a header field"]);
}

#[test]
fn underscore_header_is_dropped() {
    let wire = b"POST /a HTTP/1.1\r\nContent_Length: 9\r\nX_Odoo_Database: other\r\nContent-Length: 1\r\n\r\nz";
    let events = frame_requests(&[wire]);
    let request = only_request(&events);
    assert_eq!(&request.body[..], b"z");
    assert_eq!(request.headers.get("x_odoo_database"), None);
    assert_eq!(request.headers.0.len(), 1);
    assert_eq!(
        request.anomalies,
        vec![FramingAnomaly::UnderscoreInHeaderName]
    );
}

#[test]
fn invalid_content_length_reads_like_python() {
    let cases: [(&[u8], usize); 5] = [
        (b" 3", 3),
        (b"+3", 3),
        (b"1_2", 12),
        (b"-5", 0),
        (b"abc", 0),
    ];
    for (value, expected_len) in cases {
        let mut wire = b"POST /a HTTP/1.1\r\nContent-Length:".to_vec();
        wire.extend(value);
        wire.extend(b"\r\n\r\n");
        wire.extend(vec![b'b'; expected_len]);
        let events = frame_requests(&[&wire]);
        let request = only_request(&events);
        assert_eq!(
            request.body.len(),
            expected_len,
            "value {:?}",
            String::from_utf8_lossy(value)
        );
        let expected_anomalies = if value == b" 3" {
            vec![]
        } else {
            vec![FramingAnomaly::InvalidContentLength]
        };
        assert_eq!(
            request.anomalies,
            expected_anomalies,
            "value {:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn encoded_request_body_is_flagged() {
    let events = frame_requests(&[
        b"POST /a HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nz",
    ]);
    assert_eq!(
        only_request(&events).anomalies,
        vec![FramingAnomaly::EncodedBody]
    );
}

// --- connection handling ---

#[test]
fn connection_close_ignores_following_bytes() {
    let wire = b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
    let events = frame_requests(&[wire]);
    assert_eq!(only_request(&events).target, "/a");
    assert_eq!(
        malformed(&events),
        vec!["data after the last message of the connection"]
    );
}

#[test]
fn http10_without_keep_alive_is_last() {
    let events = frame_requests(&[b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n"]);
    assert_eq!(only_request(&events).version, HttpVersion::Http10);
    let kept = frame_requests(&[
        b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
    ]);
    assert_eq!(requests(&kept).len(), 2);
}

#[test]
fn incomplete_message_at_close_is_malformed() {
    let events = frame_requests(&[b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"]);
    assert!(requests(&events).is_empty());
    assert_eq!(
        malformed(&events),
        vec!["message incomplete at connection close"]
    );
}

#[test]
fn request_upgrade_header_does_not_stop_decoding() {
    let wire = b"POST /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 1\r\n\r\nz\
        POST /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    let events = frame_requests(&[wire]);
    assert_eq!(requests(&events).len(), 2);
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, FramerEvent::Upgraded))
    );
}

// --- responses ---

#[test]
fn response_without_length_ends_at_close() {
    let events = frame_responses(&["GET"], &[b"HTTP/1.0 200 OK\r\n\r\n<html>", b"</html>"]);
    let found = responses(&events);
    assert_eq!(found.len(), 1);
    assert_eq!(&found[0].body[..], b"<html></html>");
}

#[test]
fn bodiless_statuses_and_head_have_no_body() {
    let wire = b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n\
        HTTP/1.1 304 Not Modified\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let events = frame_responses(&["GET", "GET", "HEAD", "GET"], &[wire]);
    let statuses: Vec<(u16, usize)> = responses(&events)
        .iter()
        .map(|r| (r.status, r.body.len()))
        .collect();
    assert_eq!(statuses, vec![(204, 0), (304, 0), (200, 0), (200, 2)]);
}

#[test]
fn expect_continue_gets_interim_then_final() {
    let request = frame_requests(&[
        b"POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        b"ok",
    ]);
    assert_eq!(&only_request(&request).body[..], b"ok");

    let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let events = frame_responses(&["POST"], &[wire]);
    assert!(matches!(events[0], FramerEvent::Interim { status: 100 }));
    assert_eq!(responses(&events)[0].status, 200);
}

#[test]
fn switching_protocols_upgrades() {
    let wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    let events = frame_responses(&["GET"], &[wire]);
    assert_eq!(events.len(), 2, "events: {events:?}");
    assert_eq!(responses(&events)[0].status, 101);
    assert!(matches!(events[1], FramerEvent::Upgraded));
}

#[test]
fn accepted_connect_upgrades() {
    let events = frame_responses(
        &["CONNECT"],
        &[b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01"],
    );
    assert_eq!(responses(&events).len(), 1);
    assert!(matches!(events.last(), Some(FramerEvent::Upgraded)));
}

#[test]
fn status_line_without_reason_is_accepted() {
    let events = frame_responses(&["GET"], &[b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"]);
    let found = responses(&events);
    assert_eq!(found[0].status, 200);
    assert_eq!(found[0].reason, "");
}

// --- malformed input and resync ---

#[test]
fn malformed_request_line_resyncs() {
    let events = frame_requests(&[b"GET  /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"]);
    assert_eq!(malformed(&events), vec!["invalid request line"]);
    assert_eq!(only_request(&events).target, "/b");
    assert_eq!(desyncs(&events), vec![20]);
}

#[test]
fn invalid_field_name_is_malformed() {
    for wire in [
        &b"GET /a HTTP/1.1\r\nBad Name: 1\r\n\r\n"[..],
        b"GET /a HTTP/1.1\r\n no-field\r\n\r\n",
    ] {
        let events = frame_requests(&[wire]);
        assert_eq!(malformed(&events).len(), 1);
        assert!(requests(&events).is_empty());
    }
}

#[test]
fn oversized_head_is_malformed() {
    let mut wire = b"GET /a HTTP/1.1\r\nX-Big: ".to_vec();
    wire.extend(vec![b'a'; 2000]);
    wire.extend(b"\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    let events = frame_requests(&[&wire]);
    assert_eq!(malformed(&events), vec!["header section too large"]);
    assert_eq!(only_request(&events).target, "/b");
}

#[test]
fn gap_inside_known_body_stays_in_step() {
    let mut framer = RequestFramer::new(LIMITS);
    let mut out = Vec::new();
    // The rest of the body contains a line that looks like a request.
    framer.push(
        b"POST /a HTTP/1.1\r\nContent-Length: 30\r\n\r\n0123",
        0,
        &mut out,
    );
    framer.gap(6, &mut out);
    framer.push(b"GET /fake HTTP/1.1\r\n", 1, &mut out);
    assert_eq!(desyncs(&out), vec![40 + 4 + 20]);
    assert!(requests(&out).is_empty());
    framer.push(b"POST /b HTTP/1.1\r\n\r\n", 2, &mut out);
    assert_eq!(only_request(&out).target, "/b");
}

#[test]
fn gap_in_head_resyncs_at_next_request() {
    let mut framer = RequestFramer::new(LIMITS);
    let mut out = Vec::new();
    framer.push(b"POST /a HTTP/1.1\r\nContent-Le", 0, &mut out);
    framer.gap(100, &mut out);
    framer.push(
        b"ngth: 10\r\n\r\n{\"x\": 1}\r\nPOST /b HTTP/1.1\r\n\r\n",
        1,
        &mut out,
    );
    assert_eq!(only_request(&out).target, "/b");
    assert_eq!(desyncs(&out), vec![28 + 12 + 10]);
}

#[test]
fn gap_at_boundary_keeps_next_request() {
    let mut framer = RequestFramer::new(LIMITS);
    let mut out = Vec::new();
    framer.gap(50, &mut out);
    framer.push(b"GET /b HTTP/1.1\r\n\r\n", 1, &mut out);
    assert_eq!(only_request(&out).target, "/b");
    assert!(desyncs(&out).is_empty());
}

#[test]
fn mid_stream_start_skips_to_request() {
    let mut framer = RequestFramer::new(LIMITS);
    let mut out = Vec::new();
    framer.gap(0, &mut out);
    framer.push(b"rest of a body\r\nGET /b HTTP/1.1\r\n\r\n", 1, &mut out);
    assert_eq!(only_request(&out).target, "/b");
    assert_eq!(desyncs(&out), vec![16]);
}

#[test]
fn gap_in_chunked_body_resyncs() {
    let mut framer = RequestFramer::new(LIMITS);
    let mut out = Vec::new();
    framer.push(
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        0,
        &mut out,
    );
    framer.gap(3, &mut out);
    framer.push(b"\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 1, &mut out);
    assert_eq!(only_request(&out).target, "/b");
    assert_eq!(desyncs(&out).len(), 1);
}

#[test]
fn response_resyncs_at_status_line() {
    let mut framer = ResponseFramer::new(LIMITS);
    let mut out = Vec::new();
    framer.push(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab",
        0,
        &mut out,
    );
    framer.gap(10, &mut out);
    framer.push(
        b"xx\r\nHTTP/1.1 404 NOT FOUND\r\nContent-Length: 0\r\n\r\n",
        1,
        &mut out,
    );
    assert_eq!(responses(&out)[0].status, 404);
}

#[test]
fn gap_in_body_until_close_skips_to_close() {
    let mut framer = ResponseFramer::new(LIMITS);
    let mut out = Vec::new();
    framer.push(b"HTTP/1.0 200 OK\r\n\r\nabc", 0, &mut out);
    framer.gap(5, &mut out);
    framer.push(b"HTTP/1.1 200 OK\r\n\r\n", 1, &mut out);
    framer.finish(&mut out);
    assert!(responses(&out).is_empty());
    assert_eq!(desyncs(&out), vec![19 + 3 + 19]);
}

// --- fixtures: real Odoo 19 traffic ---

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/odoo19-captures")
}

/// Returns the `Content-Length` the file's head declares, or the chunked
/// body's decoded length, as a second reading to check the framer against.
fn declared_body_len(wire: &[u8]) -> usize {
    let head_end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("fixture has a head")
        + 4;
    let head = String::from_utf8_lossy(&wire[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .map(|v| v.trim().parse().unwrap())
    });
    length.unwrap_or(wire.len() - head_end)
}

#[test]
fn fixtures_frame_into_one_message_each() {
    let mut checked = 0;
    let mut folders: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut methods = VecDeque::new();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let wire = std::fs::read(&file).unwrap();
            if name.ends_with("-req.http") {
                let framer = RequestFramer::new(FramerLimits {
                    max_header_bytes: 64 * 1024,
                    max_body_bytes: 1 << 24,
                });
                let request = frame_whole(framer, &wire);
                assert_eq!(
                    request.body.len(),
                    declared_body_len(&wire),
                    "{}",
                    file.display()
                );
                assert!(
                    request.anomalies.is_empty(),
                    "{}: {:?}",
                    file.display(),
                    request.anomalies
                );
                methods.push_back(request.method.clone());
            } else if name.ends_with("-resp.http") {
                let method = methods.pop_front().unwrap_or_else(|| "POST".into());
                let limits = FramerLimits {
                    max_header_bytes: 64 * 1024,
                    max_body_bytes: 1 << 24,
                };
                let mut framer = ResponseFramer::new(limits);
                framer.expect_response(&method);
                let mut out = Vec::new();
                framer.push(&wire, 0, &mut out);
                framer.finish(&mut out);
                assert_eq!(responses(&out).len(), 1, "{}: {out:?}", file.display());
                let response = responses(&out)[0];
                assert_eq!(
                    response.body.len(),
                    declared_body_len(&wire),
                    "{}",
                    file.display()
                );
                assert!(
                    response.anomalies.is_empty(),
                    "{}: {:?}",
                    file.display(),
                    response.anomalies
                );
            } else {
                continue;
            }
            checked += 1;
        }
    }
    assert!(checked >= 300, "only {checked} fixture files found");
}

fn frame_whole(mut framer: RequestFramer, wire: &[u8]) -> HttpRequest {
    let mut out = Vec::new();
    framer.push(wire, 0, &mut out);
    framer.finish(&mut out);
    let [FramerEvent::Request(request)] = &out[..] else {
        panic!("expected one request, got {out:?}")
    };
    request.clone()
}

// --- properties ---

/// Builds a keep-alive stream of requests, some with chunked bodies.
fn request_stream(bodies: &[(Vec<u8>, bool)]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, (body, chunked)) in bodies.iter().enumerate() {
        wire.extend(format!("POST /call/{i} HTTP/1.1\r\nHost: odoo\r\n").as_bytes());
        if *chunked {
            wire.extend(b"Transfer-Encoding: chunked\r\n\r\n");
            for piece in body.chunks(7) {
                wire.extend(format!("{:x}\r\n", piece.len()).as_bytes());
                wire.extend(piece);
                wire.extend(b"\r\n");
            }
            wire.extend(b"0\r\n\r\n");
        } else {
            wire.extend(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            wire.extend(body);
        }
    }
    wire
}

proptest! {
    #[test]
    fn keep_alive_stream_splits_anywhere(
        bodies in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..100), any::<bool>()), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
    ) {
        let wire = request_stream(&bodies);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % wire.len()).collect();
        points.extend([0, wire.len()]);
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &wire[w[0]..w[1]]).collect();

        let limits = FramerLimits { max_header_bytes: 1024, max_body_bytes: 1024 };
        let mut framer = RequestFramer::new(limits);
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            framer.push(chunk, i as u64, &mut out);
        }
        framer.finish(&mut out);

        let found = requests(&out);
        prop_assert_eq!(found.len(), bodies.len(), "events: {:?}", out);
        for (i, (request, (body, _))) in found.iter().zip(&bodies).enumerate() {
            prop_assert_eq!(&request.target, &format!("/call/{i}"));
            prop_assert_eq!(&request.body[..], &body[..]);
            prop_assert!(request.anomalies.is_empty());
        }
    }

    #[test]
    fn arbitrary_input_and_gaps_never_panic(
        pieces in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..200), 0u64..50), 0..20),
        response in any::<bool>(),
    ) {
        let limits = FramerLimits { max_header_bytes: 64, max_body_bytes: 16 };
        let mut requests = RequestFramer::new(limits);
        let mut responses = ResponseFramer::new(limits);
        let mut out = Vec::new();
        for (bytes, missing) in &pieces {
            if response {
                responses.push(bytes, 0, &mut out);
                responses.gap(*missing, &mut out);
            } else {
                requests.push(bytes, 0, &mut out);
                requests.gap(*missing, &mut out);
            }
        }
        requests.finish(&mut out);
        responses.finish(&mut out);
    }
}

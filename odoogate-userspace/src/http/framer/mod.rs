//! HTTP/1.x framing of one direction of a flow.
//!
//! A [`RequestFramer`] reads what the client sends and a [`ResponseFramer`]
//! what Odoo sends back. Both take reassembled bytes in any split, report
//! whole messages as [`FramerEvent`]s, and follow werkzeug's reading of the
//! framing where it differs from a strict one, flagging each divergence on
//! the message as a [`FramingAnomaly`](crate::http::FramingAnomaly), so
//! observe mode sees the call Odoo executes.
//!
//! After a capture gap the partial message is dropped. When the gap fell
//! inside a body of known length the framer skips the rest of it and stays
//! in step; otherwise it scans for the next request or status line and
//! reports the bytes it skipped as [`FramerEvent::Desync`].

mod body;
mod head;
mod resync;
#[cfg(test)]
mod tests;

use crate::http::{FramingAnomaly, Headers, HttpRequest, HttpResponse, HttpVersion};
use bytes::Bytes;
use body::{BodyFraming, BodySink, ChunkedDecoder};
use head::{Head, Role, StartLine};
use resync::{Resync, Scan};
use std::collections::VecDeque;

/// Maximum number of request methods a [`ResponseFramer`] keeps for
/// responses still to come. Beyond it the oldest is forgotten.
const MAX_EXPECTED_RESPONSES: usize = 1024;

/// Bounds of one framer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramerLimits {
    /// Maximum size of a head (start line and header fields), and of the
    /// line after a chunked body's last chunk.
    pub max_header_bytes: usize,
    /// Maximum body bytes kept per message. Longer bodies are cut and
    /// marked `body_truncated`, and framing goes on past the cut.
    pub max_body_bytes: usize,
}

/// An event of a framer, in stream order.
#[derive(Clone, Debug)]
pub enum FramerEvent {
    Request(HttpRequest),
    /// A final response. A `101 Switching Protocols` is reported here too,
    /// followed by [`FramerEvent::Upgraded`].
    Response(HttpResponse),
    /// An interim (1xx) response other than 101, such as `100 Continue`.
    Interim {
        status: u16,
    },
    /// The connection switched protocols (a 101 response, or a 2xx response
    /// to CONNECT): the framer ignores the rest of the flow. Only the
    /// response side emits it.
    Upgraded,
    /// Captured bytes that belong to no framed message: the rest of a
    /// message broken by a gap, and the bytes skipped up to the next start
    /// line.
    Desync {
        skipped_bytes: u64,
    },
    /// Bytes the framer cannot read as HTTP: an unparseable head or chunk
    /// line (the framer then resyncs), a message cut by the connection's
    /// end, or data after the connection's last message (then ignored).
    Malformed {
        reason: &'static str,
    },
}

/// The head of a request whose body a [`RequestFramer`] is still reading,
/// so an inline proxy can decide on the request, and check its framing,
/// before the body arrives.
#[derive(Clone, Copy, Debug)]
pub struct OpenRequest<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: HttpVersion,
    pub headers: &'a Headers,
    /// The anomalies found so far: those of the head and those of the
    /// chunk lines read up to now.
    pub anomalies: &'a [FramingAnomaly],
}

/// The head of a response whose body a [`ResponseFramer`] is still reading.
#[derive(Clone, Copy, Debug)]
pub struct OpenResponse<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub version: HttpVersion,
    pub headers: &'a Headers,
    pub anomalies: &'a [FramingAnomaly],
    /// True when the body lasts until the connection closes, so the end of
    /// the response is only known once the server closes.
    pub delimited_by_close: bool,
}

/// Frames the requests a client sends.
///
/// The request side never emits [`FramerEvent::Upgraded`] by itself: a
/// client that merely asks for an upgrade must not stop the decoding of its
/// requests. The response side reports an upgrade once the server grants it.
#[derive(Debug)]
pub struct RequestFramer {
    framer: Framer,
}

/// Frames the responses Odoo sends back.
#[derive(Debug)]
pub struct ResponseFramer {
    framer: Framer,
}

// === impl RequestFramer ===

impl RequestFramer {
    pub fn new(limits: FramerLimits) -> Self {
        Self {
            framer: Framer::new(Role::Request, limits),
        }
    }

    /// Frames `bytes`, which arrived at `timestamp_ns` (kernel clock).
    pub fn push(&mut self, bytes: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) {
        self.framer.push(bytes, timestamp_ns, out);
    }

    /// Frames `bytes` up to the next boundary and returns how many it used:
    /// the end of a head whose body follows, the end of a message, or an
    /// error ([`FramerEvent::Malformed`]). An inline proxy calls it to learn
    /// which bytes belong to the current message before passing them on.
    pub fn push_to_boundary(&mut self, bytes: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) -> usize {
        self.framer.push_to_boundary(bytes, timestamp_ns, out)
    }

    /// Returns the head of the request whose body is being read, or `None`
    /// between requests.
    pub fn open_request(&self) -> Option<OpenRequest<'_>> {
        let message = self.framer.open_message()?;
        let StartLine::Request { method, target } = &message.head.start else {
            return None;
        };
        Some(OpenRequest {
            method,
            target,
            version: message.head.version,
            headers: &message.head.headers,
            anomalies: &message.head.anomalies,
        })
    }

    /// Records that `missing` bytes of the stream were lost. `gap(0, ..)`
    /// starts a framer out of sync, for a flow joined mid-stream.
    pub fn gap(&mut self, missing: u64, out: &mut Vec<FramerEvent>) {
        self.framer.gap(missing, out);
    }

    /// Ends the stream: the connection closed.
    pub fn finish(&mut self, out: &mut Vec<FramerEvent>) {
        self.framer.finish(out);
    }
}

// === impl ResponseFramer ===

impl ResponseFramer {
    pub fn new(limits: FramerLimits) -> Self {
        Self {
            framer: Framer::new(Role::Response, limits),
        }
    }

    /// Records the method of a request sent on this connection, in order,
    /// so the response to `HEAD` is read without a body and a 2xx response
    /// to `CONNECT` as an upgrade.
    pub fn expect_response(&mut self, request_method: &str) {
        let expected = &mut self.framer.expected;
        if expected.len() >= MAX_EXPECTED_RESPONSES {
            expected.pop_front();
        }
        expected.push_back(request_method.to_owned());
    }

    /// Frames `bytes`, which arrived at `timestamp_ns` (kernel clock).
    pub fn push(&mut self, bytes: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) {
        self.framer.push(bytes, timestamp_ns, out);
    }

    /// Frames `bytes` up to the next boundary and returns how many it used,
    /// like [`RequestFramer::push_to_boundary`]. Interim responses are not
    /// boundaries: they are reported and framing goes on.
    pub fn push_to_boundary(&mut self, bytes: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) -> usize {
        self.framer.push_to_boundary(bytes, timestamp_ns, out)
    }

    /// Returns the head of the response whose body is being read, or `None`
    /// between responses.
    pub fn open_response(&self) -> Option<OpenResponse<'_>> {
        let message = self.framer.open_message()?;
        let StartLine::Response { status, reason } = &message.head.start else {
            return None;
        };
        Some(OpenResponse {
            status: *status,
            reason,
            version: message.head.version,
            headers: &message.head.headers,
            anomalies: &message.head.anomalies,
            delimited_by_close: matches!(self.framer.state, State::Body(BodyReader::UntilClose)),
        })
    }

    /// Records that `missing` bytes of the stream were lost. The methods of
    /// requests still waiting for a response are forgotten, since the gap
    /// may have held some of their responses.
    pub fn gap(&mut self, missing: u64, out: &mut Vec<FramerEvent>) {
        self.framer.expected.clear();
        self.framer.gap(missing, out);
    }

    /// Ends the stream: the connection closed, which ends a response
    /// delimited by the close.
    pub fn finish(&mut self, out: &mut Vec<FramerEvent>) {
        self.framer.finish(out);
    }
}

// === impl Framer ===

/// The framer's position in the stream.
#[derive(Debug)]
enum State {
    /// Collecting a head in `head_buf`.
    Head,
    Body(BodyReader),
    /// Skipping the rest of a known-length body whose message a gap broke.
    SkipBody {
        remaining: u64,
    },
    Resync(Resync),
    Ignore(Ignore),
}

#[derive(Debug)]
enum BodyReader {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// The reason the framer ignores the rest of the stream.
#[derive(Debug)]
enum Ignore {
    Upgraded,
    /// The last message announced that the connection closes after it.
    AfterLastMessage {
        reported: bool,
    },
    /// A gap broke a body that lasts until the connection closes.
    BrokenBody {
        skipped: u64,
    },
    Finished,
}

/// A message whose head is parsed and whose body is being read.
#[derive(Debug)]
struct Message {
    head: Head,
    body: BodySink,
    first_byte_ns: u64,
    last_byte_ns: u64,
    closes_connection: bool,
    upgrades: bool,
}

/// The framing state machine shared by both directions.
#[derive(Debug)]
struct Framer {
    role: Role,
    limits: FramerLimits,
    state: State,
    head_buf: Vec<u8>,
    /// Start of the first line in `head_buf` not yet searched for the end
    /// of the head.
    head_line_start: usize,
    head_first_byte_ns: u64,
    message: Option<Message>,
    /// Bytes of the current message read so far, head included.
    message_bytes: u64,
    /// Bytes skipped while in [`State::SkipBody`].
    skipped: u64,
    /// Methods of the requests whose responses are still to come
    /// (response side only).
    expected: VecDeque<String>,
    /// Set once a request had ambiguous framing or could not be parsed:
    /// every later request is flagged
    /// [`FramingAnomaly::FollowsAmbiguousRequest`] (request side only).
    after_ambiguous: bool,
}

impl Framer {
    fn new(role: Role, limits: FramerLimits) -> Self {
        Self {
            role,
            limits,
            state: State::Head,
            head_buf: Vec::new(),
            head_line_start: 0,
            head_first_byte_ns: 0,
            message: None,
            message_bytes: 0,
            skipped: 0,
            expected: VecDeque::new(),
            after_ambiguous: false,
        }
    }

    fn push(&mut self, mut input: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) {
        while !input.is_empty() {
            let used = self.step(input, timestamp_ns, out);
            input = &input[used..];
        }
    }

    fn push_to_boundary(&mut self, mut input: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) -> usize {
        let total = input.len();
        while !input.is_empty() {
            let in_head = matches!(self.state, State::Head);
            let reported = out.len();
            let used = self.step(input, timestamp_ns, out);
            input = &input[used..];

            let ended = out[reported..].iter().any(|event| {
                matches!(
                    event,
                    FramerEvent::Request(_) | FramerEvent::Response(_) | FramerEvent::Malformed { .. }
                )
            });
            let head_ended = in_head && matches!(self.state, State::Body(_));
            if ended || head_ended {
                break;
            }
        }
        total - input.len()
    }

    /// Runs the state machine on `input` and returns how many bytes it used.
    fn step(&mut self, input: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) -> usize {
        match self.state {
            State::Head => self.read_head(input, timestamp_ns, out),
            State::Body(_) => self.read_body(input, timestamp_ns, out),
            State::SkipBody { .. } => self.skip_body(input, out),
            State::Resync(_) => self.resync(input, timestamp_ns, out),
            State::Ignore(_) => self.ignore(input, out),
        }
    }

    /// Returns the message whose body is being read.
    fn open_message(&self) -> Option<&Message> {
        match self.state {
            State::Body(_) => self.message.as_ref(),
            _ => None,
        }
    }

    fn gap(&mut self, missing: u64, out: &mut Vec<FramerEvent>) {
        match &mut self.state {
            State::Ignore(Ignore::BrokenBody { .. } | Ignore::Upgraded | Ignore::Finished) => {}
            State::Ignore(Ignore::AfterLastMessage { .. }) => {}
            State::Body(BodyReader::Length { remaining }) if missing <= *remaining => {
                let remaining = *remaining - missing;
                self.skipped = self.drop_message();
                self.state = State::SkipBody { remaining };
                self.end_skip_if_done(out);
            }
            State::Body(BodyReader::UntilClose) => {
                let skipped = self.drop_message();
                self.state = State::Ignore(Ignore::BrokenBody { skipped });
            }
            State::SkipBody { remaining } if missing <= *remaining => {
                *remaining -= missing;
                self.end_skip_if_done(out);
            }
            State::Resync(scan) => scan.restart_after_gap(),
            State::Head | State::Body(_) | State::SkipBody { .. } => {
                let skipped = self.drop_message() + std::mem::take(&mut self.skipped);
                self.start_resync(skipped, true);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<FramerEvent>) {
        let state = std::mem::replace(&mut self.state, State::Ignore(Ignore::Finished));
        let skipped = match state {
            State::Body(BodyReader::UntilClose) => {
                self.complete(out);
                self.state = State::Ignore(Ignore::Finished);
                0
            }
            State::Body(_) => {
                out.push(FramerEvent::Malformed {
                    reason: "message incomplete at connection close",
                });
                self.drop_message()
            }
            State::Head if !self.head_buf.is_empty() => {
                out.push(FramerEvent::Malformed {
                    reason: "message incomplete at connection close",
                });
                self.drop_message()
            }
            State::Resync(scan) => scan.skipped(),
            State::SkipBody { .. } => self.skipped,
            State::Ignore(Ignore::BrokenBody { skipped }) => skipped,
            State::Head | State::Ignore(_) => 0,
        };
        if skipped > 0 {
            out.push(FramerEvent::Desync {
                skipped_bytes: skipped,
            });
        }
    }

    /// Collects head bytes and parses the head once its empty line arrives.
    fn read_head(&mut self, input: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) -> usize {
        let mut newlines = 0;
        if self.head_buf.is_empty() {
            // Empty lines between messages are skipped (RFC 9112 §2.2).
            newlines = input
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if newlines == input.len() {
                return newlines;
            }
            self.head_first_byte_ns = timestamp_ns;
        }

        let input = &input[newlines..];
        let max = self.limits.max_header_bytes;
        let before = self.head_buf.len();
        let take = input.len().min((max + 1).saturating_sub(before));
        // Header values become slices of the head, which they keep alive
        // for as long as the request lives, so the head is kept at its own
        // size, without the body bytes that came with it.
        if before == 0 {
            // The common case: the whole head in one piece, copied once.
            match head::find_head_end(&input[..take], 0) {
                Ok(end) if end <= max => {
                    self.head_line_start = 0;
                    let head = Bytes::copy_from_slice(&input[..end]);
                    self.on_head(&head, timestamp_ns, out);
                    return newlines + end;
                }
                Ok(_) => {}
                Err(line_start) => self.head_line_start = line_start,
            }
        }
        self.head_buf.extend_from_slice(&input[..take]);

        match head::find_head_end(&self.head_buf, self.head_line_start) {
            Ok(end) if end <= max => {
                self.head_buf.truncate(end);
                self.head_buf.shrink_to_fit();
                self.head_line_start = 0;
                let head = Bytes::from(std::mem::take(&mut self.head_buf));
                self.on_head(&head, timestamp_ns, out);
                newlines + end - before
            }
            Err(line_start) if self.head_buf.len() <= max => {
                self.head_line_start = line_start;
                newlines + take
            }
            _ => {
                out.push(FramerEvent::Malformed {
                    reason: "header section too large",
                });
                self.after_ambiguous = true;
                let skipped = self.drop_message();
                self.start_resync(skipped, false);
                newlines + take
            }
        }
    }

    /// Starts the message whose head is `bytes`.
    fn on_head(&mut self, bytes: &Bytes, timestamp_ns: u64, out: &mut Vec<FramerEvent>) {
        let mut head = match head::parse_head(bytes, self.role) {
            Ok(head) => head,
            Err(error) => {
                out.push(FramerEvent::Malformed {
                    reason: error.reason(),
                });
                self.after_ambiguous = true;
                self.start_resync(bytes.len() as u64, true);
                return;
            }
        };
        self.message_bytes = bytes.len() as u64;

        let (framing, upgrades) = match head.start {
            StartLine::Request { .. } => {
                if self.after_ambiguous {
                    head::push_once(&mut head.anomalies, FramingAnomaly::FollowsAmbiguousRequest);
                }
                (body::request_framing(&head.headers, &mut head.anomalies), false)
            }
            StartLine::Response { status, .. } if (100..200).contains(&status) && status != 101 => {
                out.push(FramerEvent::Interim { status });
                self.message_bytes = 0;
                return;
            }
            StartLine::Response { status, .. } => {
                let method = self.expected.pop_front();
                let framing = body::response_framing(
                    status,
                    method.as_deref(),
                    &head.headers,
                    &mut head.anomalies,
                );
                let connect_accepted =
                    method.as_deref() == Some("CONNECT") && (200..300).contains(&status);
                (framing, status == 101 || connect_accepted)
            }
        };

        self.message = Some(Message {
            closes_connection: closes_connection(&head),
            head,
            body: BodySink::new(self.limits.max_body_bytes),
            first_byte_ns: self.head_first_byte_ns,
            last_byte_ns: timestamp_ns,
            upgrades,
        });
        self.state = match framing {
            BodyFraming::Length(0) => return self.complete(out),
            BodyFraming::Length(remaining) => State::Body(BodyReader::Length { remaining }),
            BodyFraming::Chunked => State::Body(BodyReader::Chunked(ChunkedDecoder::new(
                self.limits.max_header_bytes,
            ))),
            BodyFraming::UntilClose => State::Body(BodyReader::UntilClose),
        };
    }

    fn read_body(&mut self, input: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) -> usize {
        let (State::Body(reader), Some(message)) = (&mut self.state, self.message.as_mut()) else {
            self.state = State::Head;
            return 0;
        };
        message.last_byte_ns = timestamp_ns;
        let (used, done, error) = match reader {
            BodyReader::Length { remaining } => {
                let take = input
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                message.body.extend(&input[..take]);
                *remaining -= take as u64;
                (take, *remaining == 0, None)
            }
            BodyReader::Chunked(decoder) => {
                let (used, result) =
                    decoder.feed(input, &mut message.body, &mut message.head.anomalies);
                (used, decoder.is_done(), result.err())
            }
            BodyReader::UntilClose => {
                message.body.extend(input);
                (input.len(), false, None)
            }
        };
        self.message_bytes += used as u64;

        if let Some(error) = error {
            out.push(FramerEvent::Malformed {
                reason: error.reason(),
            });
            self.after_ambiguous = true;
            let skipped = self.drop_message();
            self.start_resync(skipped, input[..used].ends_with(b"\n"));
        } else if done {
            self.complete(out);
        }
        used
    }

    fn skip_body(&mut self, input: &[u8], out: &mut Vec<FramerEvent>) -> usize {
        let State::SkipBody { remaining } = &mut self.state else {
            return 0;
        };
        let take = input
            .len()
            .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
        *remaining -= take as u64;
        self.skipped += take as u64;
        self.end_skip_if_done(out);
        take
    }

    /// Returns to reading heads once a skipped body has ended.
    fn end_skip_if_done(&mut self, out: &mut Vec<FramerEvent>) {
        if let State::SkipBody { remaining: 0 } = self.state {
            let skipped = std::mem::take(&mut self.skipped);
            if skipped > 0 {
                out.push(FramerEvent::Desync {
                    skipped_bytes: skipped,
                });
            }
            self.state = State::Head;
        }
    }

    fn resync(&mut self, input: &[u8], timestamp_ns: u64, out: &mut Vec<FramerEvent>) -> usize {
        let State::Resync(scan) = &mut self.state else {
            return 0;
        };
        match scan.scan(input) {
            Scan::NeedMore => input.len(),
            Scan::Found { end, line } => {
                let skipped = scan.skipped();
                if skipped > 0 {
                    out.push(FramerEvent::Desync {
                        skipped_bytes: skipped,
                    });
                }
                self.state = State::Head;
                self.head_buf = line;
                self.head_line_start = 0;
                self.head_first_byte_ns = timestamp_ns;
                end
            }
        }
    }

    fn ignore(&mut self, input: &[u8], out: &mut Vec<FramerEvent>) -> usize {
        match &mut self.state {
            State::Ignore(Ignore::AfterLastMessage { reported }) if !*reported => {
                *reported = true;
                out.push(FramerEvent::Malformed {
                    reason: "data after the last message of the connection",
                });
            }
            State::Ignore(Ignore::BrokenBody { skipped }) => *skipped += input.len() as u64,
            _ => {}
        }
        input.len()
    }

    /// Emits the finished message and moves on to what follows it.
    fn complete(&mut self, out: &mut Vec<FramerEvent>) {
        let Some(message) = self.message.take() else {
            return;
        };
        self.message_bytes = 0;
        let Message {
            head,
            body,
            first_byte_ns,
            last_byte_ns,
            closes_connection,
            upgrades,
        } = message;
        let Head {
            start,
            version,
            headers,
            anomalies,
        } = head;
        let (body, body_truncated) = body.finish();

        // A `Content-Encoding` changes how the body reads, never where it
        // ends, so it leaves later requests where they are.
        let ambiguous = anomalies.iter().any(|anomaly| *anomaly != FramingAnomaly::EncodedBody);
        self.after_ambiguous |= self.role == Role::Request && ambiguous;

        out.push(match start {
            StartLine::Request { method, target } => FramerEvent::Request(HttpRequest {
                method,
                target,
                version,
                headers,
                body,
                body_truncated,
                anomalies,
                first_byte_ns,
                last_byte_ns,
            }),
            StartLine::Response { status, reason } => FramerEvent::Response(HttpResponse {
                status,
                reason,
                version,
                headers,
                body,
                body_truncated,
                anomalies,
                first_byte_ns,
                last_byte_ns,
            }),
        });

        self.state = if upgrades {
            out.push(FramerEvent::Upgraded);
            State::Ignore(Ignore::Upgraded)
        } else if closes_connection {
            State::Ignore(Ignore::AfterLastMessage { reported: false })
        } else {
            State::Head
        };
    }

    /// Drops the message in progress and returns how many of its bytes
    /// were read.
    fn drop_message(&mut self) -> u64 {
        self.message = None;
        self.head_line_start = 0;
        let head_bytes = std::mem::take(&mut self.head_buf).len() as u64;
        std::mem::take(&mut self.message_bytes) + head_bytes
    }

    fn start_resync(&mut self, skipped: u64, at_line_start: bool) {
        let scan = Resync::new(
            self.role,
            self.limits.max_header_bytes,
            skipped,
            at_line_start,
        );
        self.state = State::Resync(scan);
    }
}

/// Returns whether the connection closes after this message (RFC 9112
/// §9.3): `Connection: close`, or HTTP/1.0 without `keep-alive`.
fn closes_connection(head: &Head) -> bool {
    let has_token = |token: &str| {
        head.headers
            .get_all("connection")
            .flat_map(|value| value.split(|&b| b == b','))
            .any(|option| head::trim(option).eq_ignore_ascii_case(token.as_bytes()))
    };
    match head.version {
        HttpVersion::Http11 => has_token("close"),
        HttpVersion::Http10 => !has_token("keep-alive"),
    }
}

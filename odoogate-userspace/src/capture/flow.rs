//! The flow table: one entry per TCP connection to Odoo, each with a
//! reassembler per direction.
//!
//! [`FlowTable::push`] takes captured segments and emits [`FlowEvent`]s:
//! a flow opens, ordered bytes and gaps arrive per direction, and the flow
//! closes. Every resource is bounded: the number of flows (the least
//! recently active one is evicted), the bytes buffered per direction, and
//! the bytes buffered in all flows together (the largest buffers give up
//! their holes first).

use super::event::{Endpoint, FlowKey, Segment};
use super::reassembly::{ConflictKind, Delivery, Reassembler};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// The direction of a byte stream within a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to Odoo: requests.
    ToServer,
    /// From Odoo to the client: responses.
    ToClient,
}

impl Direction {
    pub fn reverse(self) -> Self {
        match self {
            Self::ToServer => Self::ToClient,
            Self::ToClient => Self::ToServer,
        }
    }
}

/// Bounds of the flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLimits {
    pub max_flows: usize,
    pub max_buffered_bytes_per_direction: usize,
    pub max_buffered_bytes_total: usize,
    /// A flow with no segment for this long (kernel clock, ns) is closed by
    /// [`FlowTable::expire`].
    pub idle_timeout_ns: u64,
}

/// The reason a flow was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides sent FIN.
    Fin,
    Rst,
    IdleTimeout,
    /// The table was full and this flow was the least recently active.
    Evicted,
    /// A SYN with a new initial sequence number reused the 4-tuple, so the
    /// old connection is over.
    TupleReused,
}

/// An event of the flow table. Events of one direction come in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowEvent {
    /// A new flow. `mid_stream` is set when it was joined without its SYN,
    /// so its first bytes may sit inside an HTTP message.
    Opened {
        conn_id: u64,
        key: FlowKey,
        mid_stream: bool,
        timestamp_ns: u64,
    },
    /// Bytes of one direction. `server_acked`, here and in `Gap`, is the
    /// offset in the client's stream up to which the server had
    /// acknowledged the client's bytes when the event was made.
    Data {
        conn_id: u64,
        direction: Direction,
        bytes: Bytes,
        timestamp_ns: u64,
        server_acked: u64,
    },
    /// `missing_bytes` of the stream will never be seen.
    Gap {
        conn_id: u64,
        direction: Direction,
        missing_bytes: u64,
        server_acked: u64,
    },
    /// A later copy of the bytes at stream `offset` differed from the first,
    /// or its first copy was dropped unacknowledged, so which one the
    /// receiver read is unknown.
    Conflict {
        conn_id: u64,
        direction: Direction,
        offset: u64,
        kind: ConflictKind,
    },
    /// A segment from `src` to `dst` that the flow table ignored, as the
    /// receiver's kernel would, and that a host crafting packets may have
    /// sent. Counted in [`FlowStats`] as well.
    Ignored {
        src: SocketAddr,
        dst: SocketAddr,
        kind: IgnoredKind,
    },
    /// The flow ended; no event with this `conn_id` follows.
    /// `server_acked` is the offset in the client's stream up to which the
    /// server acknowledged the client's bytes: a request that ends beyond
    /// it never reached Odoo as far as the capture saw.
    Closed {
        conn_id: u64,
        reason: CloseReason,
        server_acked: u64,
    },
}

/// The reason a segment was ignored ([`FlowEvent::Ignored`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoredKind {
    /// It arrived on interface `ifindex`, not `lo`, with a source address
    /// of this host, which this host did not send
    /// ([`FlowStats::spoofed_segments`]).
    Spoofed { ifindex: u32 },
    /// A RST on the flow `conn_id` of `client` whose sequence number was
    /// not the one the receiver expects ([`FlowStats::ignored_resets`]).
    Reset { conn_id: u64, client: Endpoint },
}

/// Counters of the flow table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows in the table now.
    pub flows: usize,
    pub opened: u64,
    /// Flows opened without their SYN.
    pub mid_stream_opens: u64,
    pub closed: u64,
    pub evictions: u64,
    pub idle_timeouts: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Later copies of bytes that differed from the first copy
    /// ([`ConflictKind::Differs`]).
    pub conflicting_copies: u64,
    /// Later copies of bytes whose first copy was dropped unacknowledged, so
    /// they could not be compared ([`ConflictKind::Unverifiable`]).
    pub unverifiable_copies: u64,
    /// Data seen after a FIN of the same direction, or a FIN before data
    /// already seen ([`ConflictKind::DataAfterFin`]).
    pub data_after_fin: u64,
    /// Streams with a segment that carried the URG flag
    /// ([`ConflictKind::UrgentData`]).
    pub urgent_data: u64,
    /// Delivered bytes dropped before the peer acknowledged them, in all
    /// flows since start, closed flows included.
    pub unverified_bytes: u64,
    /// Bytes held in out-of-order buffers now.
    pub bytes_buffered: usize,
    /// Segments that matched no flow and could not open one (not to or from
    /// a server port, or a lone ACK, FIN or RST), client SYNs ignored on an
    /// established flow, and client segments with SYN and ACK.
    pub ignored_segments: u64,
    /// Segments that arrived from the network with a source address of
    /// this host, which this host did not send, so they were ignored.
    pub spoofed_segments: u64,
    /// RSTs whose sequence number was not the one the receiver expects, for
    /// which its kernel sends a challenge ACK instead of resetting.
    pub ignored_resets: u64,
    /// First fragments of fragmented IP packets, whose segments the
    /// capture cannot read whole and ignores ([`ConflictKind::IpFragment`]).
    pub ip_fragments: u64,
}

/// One TCP connection.
#[derive(Debug)]
struct Flow {
    conn_id: u64,
    key: FlowKey,
    client_isn: Option<u32>,
    /// The initial sequence number of a client SYN that came on this
    /// established flow. The flow gives way to a new connection only when
    /// the server acknowledges that SYN with a SYN-ACK.
    pending_isn: Option<u32>,
    to_server: Reassembler,
    to_client: Reassembler,
    last_active_ns: u64,
}

/// The table of flows to Odoo's ports.
#[derive(Debug)]
pub struct FlowTable {
    limits: FlowLimits,
    server_ports: Vec<u16>,
    flows: HashMap<FlowKey, Flow>,
    keys_by_id: HashMap<u64, FlowKey>,
    /// `(last_active_ns, conn_id)` of every flow, least recent first.
    activity: BTreeSet<(u64, u64)>,
    next_conn_id: u64,
    buffered_total: usize,
    stats: FlowStats,
    deliveries: Vec<Delivery>,
    /// The addresses of this host's network namespace (see
    /// [`FlowTable::set_local_addresses`]).
    local_addresses: HashSet<IpAddr>,
}

// === impl Flow ===

impl Flow {
    fn new(conn_id: u64, key: FlowKey, limits: &FlowLimits, timestamp_ns: u64) -> Self {
        let per_direction = limits.max_buffered_bytes_per_direction;
        Self {
            conn_id,
            key,
            client_isn: None,
            pending_isn: None,
            to_server: Reassembler::new(per_direction),
            to_client: Reassembler::new(per_direction),
            last_active_ns: timestamp_ns,
        }
    }

    fn stream(&mut self, direction: Direction) -> &mut Reassembler {
        match direction {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }

    /// Bytes both streams hold: out-of-order pieces, and delivered bytes
    /// kept until they are acknowledged.
    fn buffered_bytes(&self) -> usize {
        self.to_server.held_bytes() + self.to_client.held_bytes()
    }

    fn unverified_bytes(&self) -> u64 {
        self.to_server.stats().unverified_bytes + self.to_client.stats().unverified_bytes
    }

    /// Applies a segment sent in `direction` to both streams.
    fn apply(
        &mut self,
        direction: Direction,
        segment: Segment,
        deliveries: &mut Vec<Delivery>,
        out: &mut Vec<FlowEvent>,
    ) {
        let flags = segment.flags;
        if !flags.syn() && !flags.ack() && !flags.rst() {
            // Every segment after the SYN carries ACK (RFC 9293, section
            // 3.10.7.4), and Linux drops one without it, data and FIN
            // included. Reading its data would record bytes Odoo never got.
            return;
        }
        if flags.syn() && flags.ack() && direction == Direction::ToClient {
            self.to_client.start_after_syn(segment.seq);
            self.to_server.start_at(segment.ack, false);
        }

        let data_seq = segment.data_seq();
        let fin_seq = data_seq.wrapping_add(segment.wire_len);
        if flags.urg() && !flags.rst() {
            self.stream(direction).report_segment(ConflictKind::UrgentData, data_seq, deliveries);
            self.emit(direction, deliveries, out);
        }
        // The receiver never reads the payload of a RST (RFC 9293 allows it
        // only as diagnostic text), so it is not stream data.
        if segment.wire_len > 0 && !flags.rst() {
            let stream = self.stream(direction);
            stream.push(
                data_seq,
                segment.payload,
                segment.wire_len,
                segment.timestamp_ns,
                deliveries,
            );
            self.emit(direction, deliveries, out);
        }
        if flags.ack() {
            self.stream(direction.reverse())
                .ack(segment.ack, deliveries);
            self.emit(direction.reverse(), deliveries, out);
        }
        if flags.fin() {
            self.stream(direction).fin(fin_seq, deliveries);
            self.emit(direction, deliveries, out);
        }
    }

    /// Delivers everything both streams buffered, declaring holes as gaps.
    fn flush(&mut self, deliveries: &mut Vec<Delivery>, out: &mut Vec<FlowEvent>) {
        for direction in [Direction::ToServer, Direction::ToClient] {
            self.stream(direction).flush(deliveries);
            self.emit(direction, deliveries, out);
        }
    }

    /// Turns the reassembler's deliveries into flow events.
    fn emit(&self, direction: Direction, deliveries: &mut Vec<Delivery>, out: &mut Vec<FlowEvent>) {
        let conn_id = self.conn_id;
        let server_acked = self.to_server.acked();
        out.extend(deliveries.drain(..).map(|delivery| match delivery {
            Delivery::Data {
                bytes,
                timestamp_ns,
            } => FlowEvent::Data {
                conn_id,
                direction,
                bytes,
                timestamp_ns,
                server_acked,
            },
            Delivery::Gap { missing_bytes } => FlowEvent::Gap {
                conn_id,
                direction,
                missing_bytes,
                server_acked,
            },
            Delivery::Conflict { offset, kind } => FlowEvent::Conflict {
                conn_id,
                direction,
                offset,
                kind,
            },
        }));
    }

    fn is_finished(&self) -> bool {
        self.to_server.is_finished() && self.to_client.is_finished()
    }

    /// Tells whether a RST with sequence number `seq` sent in `direction`
    /// would reset the connection (see [`Reassembler::accepts_reset`]).
    fn accepts_reset(&self, direction: Direction, seq: u32) -> bool {
        match direction {
            Direction::ToServer => self.to_server.accepts_reset(seq),
            Direction::ToClient => self.to_client.accepts_reset(seq),
        }
    }
}

// === impl FlowTable ===

impl FlowTable {
    /// Creates an empty table for connections to any of `server_ports`.
    pub fn new(limits: FlowLimits, server_ports: Vec<u16>) -> Self {
        Self {
            limits,
            server_ports,
            flows: HashMap::new(),
            keys_by_id: HashMap::new(),
            activity: BTreeSet::new(),
            next_conn_id: 1,
            buffered_total: 0,
            stats: FlowStats::default(),
            deliveries: Vec::new(),
            local_addresses: HashSet::new(),
        }
    }

    /// Sets the addresses of this host's network namespace. A segment that
    /// arrives on an interface other than `lo` with one of them as its
    /// source was not sent by this host, so it is ignored, as the kernel
    /// ignores it. Without that check a client could forge the server's
    /// acknowledgement of a request copy that the kernel dropped, which
    /// makes the reassembler forget the copy before the real one comes.
    pub fn set_local_addresses(&mut self, addresses: impl IntoIterator<Item = IpAddr>) {
        self.local_addresses = addresses.into_iter().map(|address| address.to_canonical()).collect();
    }

    /// Tells whether `segment` came in from the network with a source
    /// address of this host. Packets between local sockets pass `lo` only,
    /// and `lo` is index 1 in every network namespace. Every loopback
    /// address counts as the host's, because `lo` takes all of 127.0.0.0/8
    /// although only 127.0.0.1 is listed among the interface addresses.
    fn is_spoofed(&self, segment: &Segment) -> bool {
        const LOOPBACK_IFINDEX: u32 = 1;
        let source = segment.src.ip().to_canonical();
        segment.ingress_ifindex.is_some_and(|index| index != LOOPBACK_IFINDEX)
            && (source.is_loopback() || self.local_addresses.contains(&source))
    }

    /// Processes one captured segment and appends the events it causes.
    pub fn push(&mut self, segment: Segment, out: &mut Vec<FlowEvent>) {
        if self.is_spoofed(&segment) {
            self.stats.spoofed_segments += 1;
            let ifindex = segment.ingress_ifindex.unwrap_or_default();
            out.push(FlowEvent::Ignored { src: segment.src, dst: segment.dst, kind: IgnoredKind::Spoofed { ifindex } });
            return;
        }
        if segment.first_fragment {
            self.report_fragment(&segment, out);
            return;
        }
        let (key, direction) = match self.locate(&segment) {
            Some(found) => found,
            None => match self.open(&segment, out) {
                Some(opened) => opened,
                None => {
                    self.stats.ignored_segments += 1;
                    return;
                }
            },
        };
        let Some(key) = self.replace_if_reused(key, direction, &segment, out) else {
            self.stats.ignored_segments += 1;
            return;
        };

        let timestamp_ns = segment.timestamp_ns;
        let rst = segment.flags.rst();
        if rst {
            let flow = self.flows.get(&key);
            if !flow.is_some_and(|flow| flow.accepts_reset(direction, segment.seq)) {
                // The receiver's kernel ignores it, so a RST crafted or sent
                // blind by another host does not end the flow here either.
                self.stats.ignored_resets += 1;
                if let Some(flow) = flow {
                    out.push(FlowEvent::Ignored {
                        src: segment.src,
                        dst: segment.dst,
                        kind: IgnoredKind::Reset { conn_id: flow.conn_id, client: key.client },
                    });
                }
                return;
            }
        }
        self.touch(&key, timestamp_ns);
        self.with_flow(&key, out, |flow, deliveries, out| {
            flow.apply(direction, segment, deliveries, out)
        });

        let finished = self.flows.get(&key).is_some_and(Flow::is_finished);
        if rst {
            self.close(&key, CloseReason::Rst, out);
        } else if finished {
            self.close(&key, CloseReason::Fin, out);
        }
        self.enforce_total_bound(out);
    }

    /// Closes every flow idle since before `now_ns - idle_timeout_ns`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<FlowEvent>) {
        let deadline = now_ns.saturating_sub(self.limits.idle_timeout_ns);
        while let Some(&(last_active_ns, conn_id)) = self.activity.first() {
            if last_active_ns > deadline {
                break;
            }
            let Some(key) = self.keys_by_id.get(&conn_id).copied() else {
                self.activity.pop_first();
                continue;
            };
            self.stats.idle_timeouts += 1;
            self.close(&key, CloseReason::IdleTimeout, out);
        }
    }

    /// Returns the key of the open flow `conn_id`.
    pub fn key(&self, conn_id: u64) -> Option<FlowKey> {
        self.keys_by_id.get(&conn_id).copied()
    }

    /// Returns the offset in the client's stream of flow `conn_id` up to
    /// which the server acknowledged the client's bytes, or `None` when no
    /// such flow is open.
    pub fn server_acked(&self, conn_id: u64) -> Option<u64> {
        let key = self.keys_by_id.get(&conn_id)?;
        Some(self.flows.get(key)?.to_server.acked())
    }

    pub fn stats(&self) -> FlowStats {
        FlowStats {
            flows: self.flows.len(),
            bytes_buffered: self.buffered_total,
            ..self.stats
        }
    }

    /// Reports a segment that came as IP fragments on its flow, if it has
    /// one. The capture has only the first fragment's part of the segment,
    /// so its data, acknowledgement and flags are all left unread. The
    /// receiver's kernel reads them only if every fragment arrives.
    fn report_fragment(&mut self, segment: &Segment, out: &mut Vec<FlowEvent>) {
        self.stats.ip_fragments += 1;
        let Some((key, direction)) = self.locate(segment) else {
            return;
        };
        let data_seq = segment.data_seq();
        self.touch(&key, segment.timestamp_ns);
        self.with_flow(&key, out, |flow, deliveries, out| {
            flow.stream(direction).report_segment(ConflictKind::IpFragment, data_seq, deliveries);
            flow.emit(direction, deliveries, out);
        });
    }

    /// Finds the existing flow a segment belongs to, and its direction.
    fn locate(&self, segment: &Segment) -> Option<(FlowKey, Direction)> {
        let forward = FlowKey {
            client: segment.src,
            server: segment.dst,
        };
        if self.flows.contains_key(&forward) {
            return Some((forward, Direction::ToServer));
        }
        let backward = FlowKey {
            client: segment.dst,
            server: segment.src,
        };
        self.flows
            .contains_key(&backward)
            .then_some((backward, Direction::ToClient))
    }

    /// Tells which end of a segment's connection is the server. It is the
    /// end on a server port. When both ends are on one, it is the SYN's
    /// destination, else the lower port (the destination on a tie).
    fn orient(&self, segment: &Segment) -> Option<(FlowKey, Direction)> {
        let src_is_server = self.server_ports.contains(&segment.src.port());
        let dst_is_server = self.server_ports.contains(&segment.dst.port());
        let to_server = match (src_is_server, dst_is_server) {
            (false, false) => return None,
            (false, true) => true,
            (true, false) => false,
            (true, true) if segment.flags.syn() => !segment.flags.ack(),
            (true, true) => segment.dst.port() <= segment.src.port(),
        };
        Some(if to_server {
            (
                FlowKey {
                    client: segment.src,
                    server: segment.dst,
                },
                Direction::ToServer,
            )
        } else {
            (
                FlowKey {
                    client: segment.dst,
                    server: segment.src,
                },
                Direction::ToClient,
            )
        })
    }

    /// Opens a flow for a segment that matched none, if the segment can
    /// start one: a SYN, a SYN-ACK (the SYN was missed), or a segment with
    /// payload (joined mid-stream). A lone ACK, FIN or RST opens nothing,
    /// because it is usually the tail of a flow already closed.
    fn open(
        &mut self,
        segment: &Segment,
        out: &mut Vec<FlowEvent>,
    ) -> Option<(FlowKey, Direction)> {
        let (key, direction) = self.orient(segment)?;
        let flags = segment.flags;
        let mid_stream = !flags.syn();
        if flags.rst() || (mid_stream && (segment.wire_len == 0 || !flags.ack())) {
            return None;
        }
        if self.flows.len() >= self.limits.max_flows.max(1) {
            self.evict_least_recent(out);
        }

        let conn_id = self.next_conn_id;
        self.next_conn_id += 1;
        let mut flow = Flow::new(conn_id, key, &self.limits, segment.timestamp_ns);
        if flags.syn() && direction == Direction::ToServer {
            flow.client_isn = Some(segment.seq);
            flow.to_server.start_after_syn(segment.seq);
        }
        if mid_stream && flags.ack() {
            // The sender has received everything before `ack`, so the other
            // direction's next data starts there.
            flow.stream(direction.reverse()).start_at(segment.ack, true);
        }

        self.flows.insert(key, flow);
        self.keys_by_id.insert(conn_id, key);
        self.activity.insert((segment.timestamp_ns, conn_id));
        self.stats.opened += 1;
        self.stats.mid_stream_opens += u64::from(mid_stream);
        out.push(FlowEvent::Opened {
            conn_id,
            key,
            mid_stream,
            timestamp_ns: segment.timestamp_ns,
        });
        Some((key, direction))
    }

    /// Handles a SYN on the existing flow `key`, and returns the key of the
    /// flow the segment belongs to, or `None` when it is to be ignored.
    ///
    /// A client SYN with another initial sequence number reuses the 4-tuple
    /// for a new connection. Before the server has sent anything on the flow,
    /// it replaces the flow at once. On an established flow, Linux replies
    /// to such a SYN with a challenge ACK and keeps the connection (RFC
    /// 5961, section 4), unless the old socket is already closing. A client
    /// could send one to make the capture drop the real connection. The SYN
    /// is then ignored, and the flow gives way only when the server's
    /// SYN-ACK acknowledges it.
    ///
    /// A client segment with both SYN and ACK is ignored with its payload:
    /// a client never sends one, and Linux discards it in every state of
    /// the server's socket, so its bytes would be a copy Odoo never reads.
    fn replace_if_reused(
        &mut self,
        key: FlowKey,
        direction: Direction,
        segment: &Segment,
        out: &mut Vec<FlowEvent>,
    ) -> Option<FlowKey> {
        let flags = segment.flags;
        if !flags.syn() {
            return Some(key);
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return Some(key);
        };
        if direction == Direction::ToClient {
            let accepted = flags.ack() && flow.pending_isn.is_some_and(|isn| segment.ack == isn.wrapping_add(1));
            if !accepted {
                return Some(key);
            }
            let isn = flow.pending_isn;
            self.close(&key, CloseReason::TupleReused, out);
            let (key, _) = self.open(segment, out)?;
            if let Some(flow) = self.flows.get_mut(&key) {
                flow.client_isn = isn;
            }
            return Some(key);
        }
        if flags.ack() {
            return None;
        }
        match flow.client_isn {
            Some(isn) if isn == segment.seq => Some(key),
            None if !flow.to_server.is_started() => {
                flow.client_isn = Some(segment.seq);
                flow.to_server.start_after_syn(segment.seq);
                Some(key)
            }
            _ if flow.to_client.is_started() => {
                flow.pending_isn = Some(segment.seq);
                None
            }
            _ => {
                self.close(&key, CloseReason::TupleReused, out);
                self.open(segment, out).map(|(key, _)| key)
            }
        }
    }

    /// Runs `apply` on the flow `key`, keeping the total of buffered bytes.
    fn with_flow(
        &mut self,
        key: &FlowKey,
        out: &mut Vec<FlowEvent>,
        apply: impl FnOnce(&mut Flow, &mut Vec<Delivery>, &mut Vec<FlowEvent>),
    ) {
        let Self {
            flows,
            deliveries,
            buffered_total,
            stats,
            ..
        } = self;
        let Some(flow) = flows.get_mut(key) else {
            return;
        };
        let before = flow.buffered_bytes();
        let unverified_before = flow.unverified_bytes();
        let first_new = out.len();
        apply(flow, deliveries, out);
        *buffered_total = *buffered_total - before + flow.buffered_bytes();
        stats.unverified_bytes += flow.unverified_bytes() - unverified_before;
        count_events(stats, &out[first_new..]);
    }

    /// Records activity on the flow `key` at `timestamp_ns`. Timestamps from
    /// different CPUs may come slightly out of order, so the latest wins.
    fn touch(&mut self, key: &FlowKey, timestamp_ns: u64) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        let latest = flow.last_active_ns.max(timestamp_ns);
        self.activity.remove(&(flow.last_active_ns, flow.conn_id));
        self.activity.insert((latest, flow.conn_id));
        flow.last_active_ns = latest;
    }

    /// Removes the flow `key`, delivering what it buffered, and emits Closed.
    fn close(&mut self, key: &FlowKey, reason: CloseReason, out: &mut Vec<FlowEvent>) {
        self.with_flow(key, out, |flow, deliveries, out| {
            flow.flush(deliveries, out)
        });
        let Some(flow) = self.flows.remove(key) else {
            return;
        };
        self.buffered_total -= flow.buffered_bytes();
        self.keys_by_id.remove(&flow.conn_id);
        self.activity.remove(&(flow.last_active_ns, flow.conn_id));
        self.stats.closed += 1;
        out.push(FlowEvent::Closed {
            conn_id: flow.conn_id,
            reason,
            server_acked: flow.to_server.acked(),
        });
    }

    fn evict_least_recent(&mut self, out: &mut Vec<FlowEvent>) {
        let Some(&(_, conn_id)) = self.activity.first() else {
            return;
        };
        let Some(key) = self.keys_by_id.get(&conn_id).copied() else {
            return;
        };
        self.stats.evictions += 1;
        self.close(&key, CloseReason::Evicted, out);
    }

    /// While all flows together buffer more than allowed, makes the largest
    /// buffer drop the bytes it keeps for comparison, or when it keeps none,
    /// give up its first hole.
    fn enforce_total_bound(&mut self, out: &mut Vec<FlowEvent>) {
        while self.buffered_total > self.limits.max_buffered_bytes_total {
            // NOTE: a linear scan over all flows. It runs only while the
            // total bound is exceeded, which should be rare with sane limits.
            let largest = self
                .flows
                .values()
                .flat_map(|flow| {
                    [Direction::ToServer, Direction::ToClient].map(|direction| {
                        let bytes = match direction {
                            Direction::ToServer => flow.to_server.held_bytes(),
                            Direction::ToClient => flow.to_client.held_bytes(),
                        };
                        (bytes, flow.key, direction)
                    })
                })
                .max_by_key(|&(bytes, ..)| bytes);
            let Some((bytes, key, direction)) = largest else {
                return;
            };
            if bytes == 0 {
                return;
            }
            self.with_flow(&key, out, |flow, deliveries, out| {
                flow.stream(direction).shed(deliveries);
                flow.emit(direction, deliveries, out);
            });
        }
    }
}

/// Counts the gaps and conflicts among `events`.
fn count_events(stats: &mut FlowStats, events: &[FlowEvent]) {
    for event in events {
        match event {
            FlowEvent::Gap { missing_bytes, .. } => {
                stats.gaps += 1;
                stats.gap_bytes += missing_bytes;
            }
            FlowEvent::Conflict { kind: ConflictKind::Differs, .. } => stats.conflicting_copies += 1,
            FlowEvent::Conflict { kind: ConflictKind::Unverifiable, .. } => stats.unverifiable_copies += 1,
            FlowEvent::Conflict { kind: ConflictKind::DataAfterFin, .. } => stats.data_after_fin += 1,
            FlowEvent::Conflict { kind: ConflictKind::UrgentData, .. } => stats.urgent_data += 1,
            // Counted in `ip_fragments` with the fragments outside any flow.
            FlowEvent::Conflict { kind: ConflictKind::IpFragment, .. } => {}
            // Counted where they are ignored.
            FlowEvent::Ignored { .. } => {}
            FlowEvent::Opened { .. } | FlowEvent::Data { .. } | FlowEvent::Closed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::TcpFlags;

    const CLIENT: &str = "127.0.0.1:40000";
    const SERVER: &str = "127.0.0.1:8069";
    const CLIENT_ISN: u32 = 100;
    const SERVER_ISN: u32 = 5000;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn limits() -> FlowLimits {
        FlowLimits {
            max_flows: 16,
            max_buffered_bytes_per_direction: 1024,
            max_buffered_bytes_total: 4096,
            idle_timeout_ns: 1_000,
        }
    }

    fn table() -> FlowTable {
        FlowTable::new(limits(), vec![8069])
    }

    fn segment(src: &str, dst: &str, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Segment {
        Segment {
            src: addr(src),
            dst: addr(dst),
            seq,
            ack,
            flags: TcpFlags(flags),
            payload: Bytes::copy_from_slice(payload),
            wire_len: payload.len() as u32,
            timestamp_ns: 10,
            ingress_ifindex: None,
            first_fragment: false,
        }
    }

    /// Runs the three-way handshake between `client` and `server`.
    fn handshake(table: &mut FlowTable, client: &str, server: &str, out: &mut Vec<FlowEvent>) {
        table.push(
            segment(client, server, CLIENT_ISN, 0, TcpFlags::SYN, b""),
            out,
        );
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        table.push(
            segment(server, client, SERVER_ISN, CLIENT_ISN + 1, syn_ack, b""),
            out,
        );
        table.push(
            segment(
                client,
                server,
                CLIENT_ISN + 1,
                SERVER_ISN + 1,
                TcpFlags::ACK,
                b"",
            ),
            out,
        );
    }

    fn data(out: &[FlowEvent], expected: Direction) -> Vec<u8> {
        out.iter()
            .filter_map(|event| match event {
                FlowEvent::Data {
                    direction, bytes, ..
                } if *direction == expected => Some(bytes.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn closes(out: &[FlowEvent]) -> Vec<(u64, CloseReason)> {
        out.iter()
            .filter_map(|event| match event {
                FlowEvent::Closed { conn_id, reason, .. } => Some((*conn_id, *reason)),
                _ => None,
            })
            .collect()
    }

    fn opened(out: &[FlowEvent]) -> Vec<(u64, FlowKey, bool)> {
        out.iter()
            .filter_map(|event| match event {
                FlowEvent::Opened {
                    conn_id,
                    key,
                    mid_stream,
                    ..
                } => Some((*conn_id, *key, *mid_stream)),
                _ => None,
            })
            .collect()
    }

    fn gaps(out: &[FlowEvent]) -> Vec<(Direction, u64)> {
        out.iter()
            .filter_map(|event| match event {
                FlowEvent::Gap {
                    direction,
                    missing_bytes,
                    ..
                } => Some((*direction, *missing_bytes)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn handshake_opens_flow_with_both_directions() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(
            segment(
                CLIENT,
                SERVER,
                CLIENT_ISN + 1,
                SERVER_ISN + 1,
                TcpFlags::ACK,
                b"GET /",
            ),
            &mut out,
        );
        table.push(
            segment(
                SERVER,
                CLIENT,
                SERVER_ISN + 1,
                CLIENT_ISN + 6,
                TcpFlags::ACK,
                b"HTTP/1.1",
            ),
            &mut out,
        );

        let key = FlowKey {
            client: addr(CLIENT),
            server: addr(SERVER),
        };
        assert_eq!(opened(&out), vec![(1, key, false)]);
        assert_eq!(data(&out, Direction::ToServer), b"GET /");
        assert_eq!(data(&out, Direction::ToClient), b"HTTP/1.1");
        assert_eq!(table.key(1), Some(key));
        assert!(gaps(&out).is_empty());
    }

    #[test]
    fn segment_between_other_ports_is_ignored() {
        let mut table = table();
        let mut out = Vec::new();
        table.push(
            segment("127.0.0.1:1000", "127.0.0.1:2000", 1, 0, TcpFlags::SYN, b""),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(table.stats().ignored_segments, 1);
    }

    #[test]
    fn both_server_ports_use_syn_destination() {
        let mut table = FlowTable::new(limits(), vec![8069, 8072]);
        let mut out = Vec::new();
        table.push(
            segment("127.0.0.1:8072", "127.0.0.1:8069", 1, 0, TcpFlags::SYN, b""),
            &mut out,
        );
        assert_eq!(opened(&out)[0].1.server, addr("127.0.0.1:8069"));
    }

    #[test]
    fn both_server_ports_without_syn_use_lower_port() {
        let mut table = FlowTable::new(limits(), vec![8069, 8072]);
        let mut out = Vec::new();
        table.push(
            segment(
                "127.0.0.1:8069",
                "127.0.0.1:8072",
                1,
                0,
                TcpFlags::ACK,
                b"x",
            ),
            &mut out,
        );
        let (_, key, mid_stream) = opened(&out)[0];
        assert_eq!(key.server, addr("127.0.0.1:8069"));
        assert!(mid_stream);
    }

    #[test]
    fn payload_without_syn_joins_mid_stream() {
        let mut table = table();
        let mut out = Vec::new();
        table.push(
            segment(SERVER, CLIENT, 900, 300, TcpFlags::ACK, b"tail of response"),
            &mut out,
        );
        table.push(
            segment(CLIENT, SERVER, 300, 916, TcpFlags::ACK, b"POST /"),
            &mut out,
        );
        assert!(opened(&out)[0].2);
        assert_eq!(data(&out, Direction::ToClient), b"tail of response");
        assert_eq!(data(&out, Direction::ToServer), b"POST /");
        assert_eq!(table.stats().mid_stream_opens, 1);
    }

    #[test]
    fn lone_ack_fin_or_rst_opens_nothing() {
        let mut table = table();
        let mut out = Vec::new();
        for flags in [TcpFlags::ACK, TcpFlags::FIN | TcpFlags::ACK, TcpFlags::RST] {
            table.push(segment(CLIENT, SERVER, 1, 1, flags, b""), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(table.stats().ignored_segments, 3);
    }

    #[test]
    fn both_fins_close_flow() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        let fin_ack = TcpFlags::FIN | TcpFlags::ACK;
        table.push(
            segment(
                CLIENT,
                SERVER,
                CLIENT_ISN + 1,
                SERVER_ISN + 1,
                fin_ack,
                b"bye",
            ),
            &mut out,
        );
        assert!(closes(&out).is_empty());
        table.push(
            segment(SERVER, CLIENT, SERVER_ISN + 1, CLIENT_ISN + 5, fin_ack, b""),
            &mut out,
        );
        assert_eq!(closes(&out), vec![(1, CloseReason::Fin)]);
        assert_eq!(data(&out, Direction::ToServer), b"bye");
        assert_eq!(table.key(1), None);
        assert_eq!(table.stats().flows, 0);
    }

    #[test]
    fn rst_closes_flow_and_flushes_buffers() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(
            segment(
                CLIENT,
                SERVER,
                CLIENT_ISN + 4,
                SERVER_ISN + 1,
                TcpFlags::ACK,
                b"late",
            ),
            &mut out,
        );
        table.push(
            segment(SERVER, CLIENT, SERVER_ISN + 1, 0, TcpFlags::RST, b""),
            &mut out,
        );
        assert_eq!(gaps(&out), vec![(Direction::ToServer, 3)]);
        assert_eq!(data(&out, Direction::ToServer), b"late");
        assert_eq!(closes(&out), vec![(1, CloseReason::Rst)]);
        assert_eq!(table.stats().bytes_buffered, 0);
    }

    #[test]
    fn data_and_fin_without_ack_are_ignored() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        let no_ack = TcpFlags::PSH | TcpFlags::FIN;
        table.push(
            segment(CLIENT, SERVER, CLIENT_ISN + 1, 0, no_ack, b"fake"),
            &mut out,
        );
        table.push(
            segment(
                CLIENT,
                SERVER,
                CLIENT_ISN + 1,
                SERVER_ISN + 1,
                TcpFlags::ACK,
                b"real",
            ),
            &mut out,
        );
        assert_eq!(data(&out, Direction::ToServer), b"real");
        assert!(closes(&out).is_empty());
    }

    #[test]
    fn rst_payload_is_not_data() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        let rst = TcpFlags::RST | TcpFlags::ACK;
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, rst, b"fake"), &mut out);
        assert!(data(&out, Direction::ToServer).is_empty(), "{out:?}");
        assert_eq!(closes(&out).len(), 1);
    }

    #[test]
    fn data_without_ack_opens_no_flow() {
        let mut table = table();
        let mut out = Vec::new();
        table.push(
            segment(CLIENT, SERVER, CLIENT_ISN + 1, 0, TcpFlags::PSH, b"fake"),
            &mut out,
        );
        assert!(opened(&out).is_empty());
        assert_eq!(table.stats().ignored_segments, 1);
    }

    #[test]
    fn retransmitted_syn_keeps_flow() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(
            segment(CLIENT, SERVER, CLIENT_ISN, 0, TcpFlags::SYN, b""),
            &mut out,
        );
        assert_eq!(opened(&out).len(), 1);
        assert!(closes(&out).is_empty());
    }

    /// A client on another host forges the server's acknowledgement of a
    /// request copy that the server's kernel dropped. The capture records
    /// it arriving on the network interface with the server's address.
    #[test]
    fn forged_server_segment_is_ignored() {
        let mut table = table();
        table.set_local_addresses([addr(SERVER).ip()]);
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"fake"), &mut out);
        let forged = Segment { ingress_ifindex: Some(2), ..segment(SERVER, CLIENT, SERVER_ISN + 1, CLIENT_ISN + 5, TcpFlags::ACK, b"") };
        table.push(forged, &mut out);
        assert_eq!(table.stats().spoofed_segments, 1);
        let ignored = FlowEvent::Ignored { src: addr(SERVER), dst: addr(CLIENT), kind: IgnoredKind::Spoofed { ifindex: 2 } };
        assert_eq!(out.iter().filter(|event| **event == ignored).count(), 1, "{out:?}");

        // The real copy is still compared with the kept one.
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"real"), &mut out);
        let conflicts = out.iter().filter(|event| matches!(event, FlowEvent::Conflict { kind: ConflictKind::Differs, .. })).count();
        assert_eq!(conflicts, 1, "{out:?}");
    }

    /// The real request goes as IP fragments, which the capture does not
    /// reassemble, beside a crafted unfragmented copy that the kernel drops.
    #[test]
    fn fragmented_segment_is_reported_not_read() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        let fragment = Segment {
            first_fragment: true,
            ..segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK | TcpFlags::FIN, b"real")
        };
        table.push(fragment, &mut out);
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"fake"), &mut out);

        let conflicts: Vec<_> = out.iter().filter(|event| matches!(event, FlowEvent::Conflict { kind: ConflictKind::IpFragment, .. })).collect();
        assert_eq!(conflicts.len(), 1, "{out:?}");
        assert_eq!(data(&out, Direction::ToServer), b"fake", "the fragment's bytes and FIN are not read");
        assert_eq!(table.stats().ip_fragments, 1);

        let lone = Segment { first_fragment: true, ..segment("10.9.9.9:50000", SERVER, 1, 1, TcpFlags::ACK, b"x") };
        table.push(lone, &mut out);
        assert_eq!(table.stats().ip_fragments, 2, "a fragment outside any flow is counted");
        assert_eq!(opened(&out).len(), 1, "a fragment opens no flow");
    }

    /// Linux routes all of 127.0.0.0/8 through `lo`, but only 127.0.0.1 is
    /// an interface address. A server on another loopback address, such as
    /// the 127.0.1.1 that Debian maps the host name to, is local as well.
    #[test]
    fn forged_loopback_segment_is_ignored() {
        let mut table = table();
        table.set_local_addresses(["127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap()]);
        let mut out = Vec::new();
        let client = "127.0.0.1:40000";
        let server = "127.0.1.1:8069";
        handshake(&mut table, client, server, &mut out);
        let forged = Segment {
            ingress_ifindex: Some(2),
            ..segment(server, client, SERVER_ISN + 1, CLIENT_ISN + 1, TcpFlags::ACK, b"HTTP/1.1 200 OK\r\n")
        };
        table.push(forged, &mut out);
        assert_eq!(table.stats().spoofed_segments, 1);
        assert!(data(&out, Direction::ToClient).is_empty(), "{out:?}");
    }

    /// A crafted client segment with SYN and ACK carries bytes that the
    /// server's kernel discards, so the real copy after it is read alone.
    #[test]
    fn client_syn_ack_is_ignored() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, syn_ack, b"fake"), &mut out);
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"real"), &mut out);

        assert_eq!(data(&out, Direction::ToServer), b"real");
        assert!(!out.iter().any(|event| matches!(event, FlowEvent::Conflict { .. })), "{out:?}");
        assert!(closes(&out).is_empty(), "{out:?}");
        assert_eq!(table.stats().ignored_segments, 1);
    }

    /// Linux resets a connection only on a RST at exactly the next
    /// sequence number, so one sent blind or crafted at another number
    /// does not end the flow.
    #[test]
    fn reset_needs_expected_sequence_number() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"abc"), &mut out);
        for seq in [CLIENT_ISN + 1, CLIENT_ISN + 3, CLIENT_ISN + 5000] {
            table.push(segment(CLIENT, SERVER, seq, 0, TcpFlags::RST, b""), &mut out);
        }
        table.push(segment(SERVER, CLIENT, SERVER_ISN + 7, 0, TcpFlags::RST, b""), &mut out);
        assert!(closes(&out).is_empty(), "{out:?}");
        assert_eq!(table.stats().ignored_resets, 4);
        let ignored: Vec<_> = out
            .iter()
            .filter_map(|event| match event {
                FlowEvent::Ignored { src, kind: IgnoredKind::Reset { conn_id, client }, .. } => Some((*src, *conn_id, *client)),
                _ => None,
            })
            .collect();
        let from_client = (addr(CLIENT), 1, addr(CLIENT));
        let from_server = (addr(SERVER), 1, addr(CLIENT));
        assert_eq!(ignored, vec![from_client, from_client, from_client, from_server]);

        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 4, 0, TcpFlags::RST, b""), &mut out);
        assert_eq!(closes(&out), vec![(1, CloseReason::Rst)]);
    }

    #[test]
    fn reset_after_fin_closes_flow() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(segment(SERVER, CLIENT, SERVER_ISN + 1, CLIENT_ISN + 1, TcpFlags::ACK | TcpFlags::FIN, b"bye"), &mut out);
        table.push(segment(SERVER, CLIENT, SERVER_ISN + 5, 0, TcpFlags::RST, b""), &mut out);
        assert_eq!(closes(&out), vec![(1, CloseReason::Rst)]);
    }

    #[test]
    fn local_segments_on_loopback_are_kept() {
        let mut table = table();
        table.set_local_addresses([addr(SERVER).ip(), addr(CLIENT).ip()]);
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        let on_loopback = Segment { ingress_ifindex: Some(1), ..segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"abc") };
        table.push(on_loopback, &mut out);
        let leaving = Segment { ingress_ifindex: None, ..segment(SERVER, CLIENT, SERVER_ISN + 1, CLIENT_ISN + 4, TcpFlags::ACK, b"de") };
        table.push(leaving, &mut out);
        assert_eq!(table.stats().spoofed_segments, 0);
        assert_eq!(data(&out, Direction::ToServer), b"abc");
        assert_eq!(data(&out, Direction::ToClient), b"de");
    }

    #[test]
    fn remote_client_segment_is_kept() {
        let mut table = table();
        table.set_local_addresses(["10.0.0.1".parse().unwrap()]);
        let mut out = Vec::new();
        let client = "10.0.0.2:40000";
        let server = "10.0.0.1:8069";
        handshake(&mut table, client, server, &mut out);
        let arriving = Segment { ingress_ifindex: Some(2), ..segment(client, server, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"abc") };
        table.push(arriving, &mut out);
        assert_eq!(table.stats().spoofed_segments, 0);
        assert_eq!(data(&out, Direction::ToServer), b"abc");
    }

    #[test]
    fn syn_accepted_by_server_replaces_flow() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(segment(CLIENT, SERVER, 90_000, 0, TcpFlags::SYN, b""), &mut out);
        assert!(closes(&out).is_empty(), "the SYN alone keeps the established flow");

        table.push(segment(SERVER, CLIENT, 70_000, 90_001, TcpFlags::SYN | TcpFlags::ACK, b""), &mut out);
        table.push(segment(CLIENT, SERVER, 90_001, 70_001, TcpFlags::ACK, b"new"), &mut out);
        assert_eq!(closes(&out), vec![(1, CloseReason::TupleReused)]);
        let ids: Vec<u64> = opened(&out).iter().map(|o| o.0).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(data(&out, Direction::ToServer), b"new");
    }

    #[test]
    fn syn_before_server_answer_replaces_flow() {
        let mut table = table();
        let mut out = Vec::new();
        table.push(segment(CLIENT, SERVER, CLIENT_ISN, 0, TcpFlags::SYN, b""), &mut out);
        table.push(segment(CLIENT, SERVER, 90_000, 0, TcpFlags::SYN, b""), &mut out);
        assert_eq!(closes(&out), vec![(1, CloseReason::TupleReused)]);
        let ids: Vec<u64> = opened(&out).iter().map(|o| o.0).collect();
        assert_eq!(ids, vec![1, 2]);
    }

    /// Linux replies to a SYN on an established connection with a challenge
    /// ACK, so the connection's bytes go on where they were.
    #[test]
    fn crafted_syn_on_established_flow_is_ignored() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"abc"), &mut out);
        let ignored = table.stats().ignored_segments;
        table.push(segment(CLIENT, SERVER, 90_000, 0, TcpFlags::SYN, b"SYNDATA"), &mut out);
        assert_eq!(table.stats().ignored_segments, ignored + 1);

        // The challenge ACK, then the connection goes on.
        table.push(segment(SERVER, CLIENT, SERVER_ISN + 1, CLIENT_ISN + 4, TcpFlags::ACK, b""), &mut out);
        table.push(segment(CLIENT, SERVER, CLIENT_ISN + 4, SERVER_ISN + 1, TcpFlags::ACK, b"def"), &mut out);
        assert!(closes(&out).is_empty(), "{out:?}");
        assert_eq!(opened(&out).len(), 1);
        assert_eq!(data(&out, Direction::ToServer), b"abcdef");
    }

    #[test]
    fn full_table_evicts_least_recent_flow() {
        let mut table = FlowTable::new(
            FlowLimits {
                max_flows: 2,
                ..limits()
            },
            vec![8069],
        );
        let mut out = Vec::new();
        for (port, timestamp_ns) in [(40001, 30), (40002, 10), (40003, 20)] {
            let mut syn = segment(
                &format!("127.0.0.1:{port}"),
                SERVER,
                1,
                0,
                TcpFlags::SYN,
                b"",
            );
            syn.timestamp_ns = timestamp_ns;
            table.push(syn, &mut out);
        }
        assert_eq!(closes(&out), vec![(2, CloseReason::Evicted)]);
        assert_eq!(table.stats().flows, 2);
        assert_eq!(table.stats().evictions, 1);
    }

    /// A client can make the capture join its connection mid-stream (an
    /// idle timeout, or a RST the kernel drops) and then send its next
    /// request with `MSG_OOB`. The URG flag on the first segment of the
    /// joined flow must still be reported.
    #[test]
    fn urgent_on_joined_flow_is_reported() {
        let mut table = table();
        let mut out = Vec::new();
        let flags = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::URG;
        table.push(segment(CLIENT, SERVER, 7_000, 9_000, flags, b"POST / HTTP/1.1\r\n"), &mut out);
        assert_eq!(opened(&out).len(), 1);
        let urgent: Vec<_> = out
            .iter()
            .filter(|event| matches!(event, FlowEvent::Conflict { kind: ConflictKind::UrgentData, direction: Direction::ToServer, .. }))
            .collect();
        assert_eq!(urgent.len(), 1, "{out:?}");
        assert_eq!(table.stats().urgent_data, 1);
    }

    #[test]
    fn idle_flow_expires() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.expire(10 + 999, &mut out);
        assert!(closes(&out).is_empty());
        table.expire(10 + 1_000, &mut out);
        assert_eq!(closes(&out), vec![(1, CloseReason::IdleTimeout)]);
        assert_eq!(table.stats().idle_timeouts, 1);
    }

    #[test]
    fn server_ack_beyond_hole_declares_request_gap() {
        let mut table = table();
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        table.push(
            segment(
                CLIENT,
                SERVER,
                CLIENT_ISN + 1,
                SERVER_ISN + 1,
                TcpFlags::ACK,
                b"ab",
            ),
            &mut out,
        );
        table.push(
            segment(
                SERVER,
                CLIENT,
                SERVER_ISN + 1,
                CLIENT_ISN + 11,
                TcpFlags::ACK,
                b"",
            ),
            &mut out,
        );
        assert_eq!(gaps(&out), vec![(Direction::ToServer, 8)]);
        assert_eq!(table.stats().gaps, 1);
        assert_eq!(table.stats().gap_bytes, 8);
    }

    proptest::proptest! {
        #[test]
        fn dropped_request_segments_become_gaps(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..2000),
            cuts in proptest::collection::vec(0usize..2000, 0..20),
            dropped in proptest::collection::vec(proptest::prelude::any::<bool>(), 21),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c % payload.len()).collect();
            points.extend([0, payload.len()]);
            points.sort_unstable();
            points.dedup();

            let mut table = table();
            let mut out = Vec::new();
            handshake(&mut table, CLIENT, SERVER, &mut out);
            let mut expected = Vec::new();
            let mut dropped_bytes = 0;
            for (i, range) in points.windows(2).enumerate() {
                let piece = &payload[range[0]..range[1]];
                if dropped[i] {
                    dropped_bytes += piece.len() as u64;
                    continue;
                }
                expected.extend_from_slice(piece);
                let seq = CLIENT_ISN + 1 + range[0] as u32;
                table.push(segment(CLIENT, SERVER, seq, SERVER_ISN + 1, TcpFlags::ACK, piece), &mut out);
            }
            let acked = CLIENT_ISN + 1 + payload.len() as u32;
            table.push(segment(SERVER, CLIENT, SERVER_ISN + 1, acked, TcpFlags::ACK, b""), &mut out);

            let gap_total: u64 = gaps(&out).iter().map(|(_, missing)| missing).sum();
            proptest::prop_assert_eq!(gap_total, dropped_bytes);
            proptest::prop_assert_eq!(data(&out, Direction::ToServer), expected);
            proptest::prop_assert_eq!(table.stats().bytes_buffered, 0);
        }
    }

    #[test]
    fn stats_count_conflicts_by_kind() {
        let bounded = FlowLimits { max_buffered_bytes_per_direction: 8, ..limits() };
        let mut table = FlowTable::new(bounded, vec![8069]);
        let mut out = Vec::new();
        handshake(&mut table, CLIENT, SERVER, &mut out);
        let request =
            |offset: u32, payload: &[u8]| segment(CLIENT, SERVER, CLIENT_ISN + 1 + offset, SERVER_ISN + 1, TcpFlags::ACK, payload);

        table.push(request(0, b"abcd"), &mut out);
        table.push(request(0, b"abXd"), &mut out);
        assert_eq!(table.stats().conflicting_copies, 1);
        assert_eq!(table.stats().unverifiable_copies, 0);
        assert_eq!(table.stats().unverified_bytes, 0);

        // Odoo acknowledges nothing, so 12 more bytes push the first 8 out
        // of the 8-byte bound before they can be compared.
        for offset in [4, 8, 12] {
            table.push(request(offset, b"efgh"), &mut out);
        }
        assert_eq!(table.stats().unverified_bytes, 8);
        table.push(request(0, b"abcd"), &mut out);
        assert_eq!(table.stats().unverifiable_copies, 1);
        assert_eq!(table.stats().conflicting_copies, 1);

        let conflicts = out.iter().filter(|event| matches!(event, FlowEvent::Conflict { .. })).count();
        assert_eq!(conflicts, 2, "{out:?}");
    }

    /// The pipeline places requests on the client's stream by counting the
    /// bytes of its Data and Gap events, and compares that offset with
    /// `server_acked`. Bytes before the stream start, urgent data, an IP
    /// fragment, a hole, data after a FIN and a sequence number wrap must
    /// not make the two disagree.
    #[test]
    fn server_acked_matches_delivered_offset() {
        let mut table = table();
        let mut out = Vec::new();
        let isn = u32::MAX - 3;
        let origin = isn.wrapping_add(1);
        let at = |offset: u32| origin.wrapping_add(offset);
        let ack = TcpFlags::ACK;
        table.push(segment(CLIENT, SERVER, isn, 0, TcpFlags::SYN, b""), &mut out);
        table.push(segment(SERVER, CLIENT, SERVER_ISN, origin, TcpFlags::SYN | ack, b""), &mut out);
        let to_server = |seq: u32, flags: u8, payload: &[u8]| segment(CLIENT, SERVER, seq, SERVER_ISN + 1, flags, payload);
        table.push(to_server(origin.wrapping_sub(2), ack, b"xxab"), &mut out);
        table.push(to_server(at(2), ack | TcpFlags::URG, b"cd"), &mut out);
        table.push(Segment { first_fragment: true, ..to_server(at(4), ack, b"ef") }, &mut out);
        table.push(to_server(at(6), ack, b"ghij"), &mut out);
        table.push(to_server(at(10), ack | TcpFlags::FIN, b""), &mut out);
        table.push(to_server(at(10), ack, b"kl"), &mut out);
        table.push(to_server(at(12), ack | TcpFlags::FIN, b""), &mut out);
        table.push(segment(SERVER, CLIENT, SERVER_ISN + 1, at(13), ack, b""), &mut out);
        table.push(to_server(at(13), TcpFlags::RST, b""), &mut out);

        assert_eq!(closes(&out), vec![(1, CloseReason::Rst)]);
        let delivered: u64 = out
            .iter()
            .map(|event| match event {
                FlowEvent::Data { direction: Direction::ToServer, bytes, .. } => bytes.len() as u64,
                FlowEvent::Gap { direction: Direction::ToServer, missing_bytes, .. } => *missing_bytes,
                _ => 0,
            })
            .sum();
        let server_acked = out.iter().find_map(|event| match event {
            FlowEvent::Closed { server_acked, .. } => Some(*server_acked),
            _ => None,
        });
        assert_eq!(data(&out, Direction::ToServer), b"abcdghijkl");
        assert_eq!(delivered, 12);
        assert_eq!(server_acked, Some(12), "the FIN takes a sequence number but no stream offset");
    }

    #[test]
    fn total_bound_sheds_kept_bytes() {
        let bounded = FlowLimits {
            max_buffered_bytes_total: 10,
            ..limits()
        };
        let mut table = FlowTable::new(bounded, vec![8069]);
        let mut out = Vec::new();
        let other = "127.0.0.1:40001";
        handshake(&mut table, CLIENT, SERVER, &mut out);
        handshake(&mut table, other, SERVER, &mut out);
        for client in [CLIENT, other] {
            table.push(segment(client, SERVER, CLIENT_ISN + 1, SERVER_ISN + 1, TcpFlags::ACK, b"12345678"), &mut out);
        }

        assert!(table.stats().bytes_buffered <= 10, "{}", table.stats().bytes_buffered);
        assert!(gaps(&out).is_empty(), "delivered bytes are not lost: {out:?}");
        assert_eq!(table.stats().unverified_bytes, 16 - table.stats().bytes_buffered as u64);
    }

    #[test]
    fn total_bound_skips_largest_buffer_first() {
        let bounded = FlowLimits {
            max_buffered_bytes_total: 10,
            ..limits()
        };
        let mut table = FlowTable::new(bounded, vec![8069]);
        let mut out = Vec::new();
        let other = "127.0.0.1:40001";
        handshake(&mut table, CLIENT, SERVER, &mut out);
        handshake(&mut table, other, SERVER, &mut out);
        table.push(
            segment(CLIENT, SERVER, CLIENT_ISN + 2, SERVER_ISN + 1, TcpFlags::ACK, b"1234"),
            &mut out,
        );
        table.push(
            segment(other, SERVER, CLIENT_ISN + 3, SERVER_ISN + 1, TcpFlags::ACK, b"abcdefg"),
            &mut out,
        );

        let gap_events: Vec<(u64, u64)> = out
            .iter()
            .filter_map(|event| match event {
                FlowEvent::Gap {
                    conn_id,
                    missing_bytes,
                    ..
                } => Some((*conn_id, *missing_bytes)),
                _ => None,
            })
            .collect();
        assert_eq!(gap_events, vec![(2, 2)]);
        assert_eq!(table.stats().bytes_buffered, 4);
    }
}

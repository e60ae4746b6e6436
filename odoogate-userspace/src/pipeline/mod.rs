//! The observe path's pipeline: capture events in, audit records out.
//!
//! Each captured segment goes through the flow table and reassembly, then
//! HTTP framing in both directions. Each request is decoded, tied to its
//! integration and decided on. Its audit record is written once Odoo's
//! response (or the end of the connection) is seen. It is synchronous
//! and single-threaded: the capture reader thread feeds it through a bounded
//! channel, so a slow pipeline makes the kernel ring buffer fill up, which
//! the kernel counts, instead of growing memory here.

mod connection;
pub(crate) mod records;
mod tokens;

pub(crate) use connection::{login_token, track_session, web_route_refusal};

use crate::audit::ratelimit::ErrorRateLimiter;
use crate::audit::{AuditEvent, AuditRecord, AuditSink};
use crate::capture::cgroup::CgroupResolver;
use crate::capture::flow::{CloseReason, FlowEvent, FlowLimits, FlowStats, FlowTable};
use crate::capture::reassembly::ConflictKind;
use crate::capture::{CaptureEvent, CaptureStats, Endpoint, FlowOrigin};
use crate::config::Config;
use crate::identity::SessionTable;
use crate::identity::session_file::Compacted;
use crate::policy::runtime::{CallCounts, PolicyRuntime};
use connection::{CallContext, Connection, Origin};
use tokens::ObservedTokens;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Origins older than this without a matching flow are dropped: the SYN they
/// describe was never captured (another interface, or a refused connect).
const ORIGIN_TTL: Duration = Duration::from_secs(60);

/// Upper bound on origins waiting for their flow.
const MAX_PENDING_ORIGINS: usize = 65_536;

/// Maximum (client, server) pairs whose closed flow left its requests in
/// doubt, kept for a flow joined mid-stream on the same pair.
const MAX_DOUBTS: usize = 65_536;

/// How long a closed flow's doubt waits for a flow joined mid-stream on
/// the same pair: well beyond `capture.idle_timeout_secs`' default of 300 s,
/// after which the capture ends a flow whose connection may go on.
const DOUBT_MEMORY: Duration = Duration::from_secs(3600);

/// Counters of what the pipeline did, for status output and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub calls: u64,
    pub decode_errors: u64,
    pub framing_anomalies: u64,
    pub capture_gaps: u64,
    /// Connections dropped from the flow table because it was full.
    pub flows_evicted: u64,
}

/// Counters of the flow table's reassembly since start, shared with the
/// status response. The pipeline updates them after each segment and tick.
#[derive(Debug, Default)]
pub struct ReassemblyCounters {
    /// Later copies of bytes that differed from the first copy, as
    /// [`FlowStats::conflicting_copies`].
    pub conflicting_copies: AtomicU64,
    /// Later copies that could not be compared, as
    /// [`FlowStats::unverifiable_copies`].
    pub unverifiable_copies: AtomicU64,
    /// FINs and data after them, as [`FlowStats::data_after_fin`].
    pub data_after_fin: AtomicU64,
    /// Streams with urgent data, as [`FlowStats::urgent_data`].
    pub urgent_data: AtomicU64,
    /// Segments from the network with a source address of this host, as
    /// [`FlowStats::spoofed_segments`].
    pub spoofed_segments: AtomicU64,
    /// First fragments of fragmented IP packets, as
    /// [`FlowStats::ip_fragments`].
    pub ip_fragments: AtomicU64,
    /// RSTs ignored for their sequence number, as
    /// [`FlowStats::ignored_resets`].
    pub ignored_resets: AtomicU64,
    /// TCP connections in the flow table now.
    pub open_flows: AtomicU64,
    /// Delivered bytes dropped before their acknowledgement, as
    /// [`FlowStats::unverified_bytes`].
    pub unverified_bytes: AtomicU64,
}

impl ReassemblyCounters {
    fn publish(&self, stats: &FlowStats) {
        self.conflicting_copies.store(stats.conflicting_copies, Ordering::Relaxed);
        self.unverifiable_copies.store(stats.unverifiable_copies, Ordering::Relaxed);
        self.data_after_fin.store(stats.data_after_fin, Ordering::Relaxed);
        self.urgent_data.store(stats.urgent_data, Ordering::Relaxed);
        self.spoofed_segments.store(stats.spoofed_segments, Ordering::Relaxed);
        self.ip_fragments.store(stats.ip_fragments, Ordering::Relaxed);
        self.ignored_resets.store(stats.ignored_resets, Ordering::Relaxed);
        self.open_flows.store(stats.flows as u64, Ordering::Relaxed);
        self.unverified_bytes.store(stats.unverified_bytes, Ordering::Relaxed);
    }
}

pub struct Pipeline {
    config: Arc<Config>,
    flows: FlowTable,
    connections: HashMap<u64, Connection>,
    /// Connection ids by (client, server), to join flow origins.
    by_endpoints: HashMap<(Endpoint, Endpoint), u64>,
    pending_origins: HashMap<(Endpoint, Endpoint), (Origin, Instant)>,
    /// The doubt of closed flows whose requests were in doubt, by (client,
    /// server), for a flow joined mid-stream on the same pair. The capture
    /// ends a flow on an idle timeout, an eviction or a RST that the kernel
    /// may have dropped, while the TCP connection goes on.
    doubts: HashMap<(Endpoint, Endpoint), (ConflictKind, Instant)>,
    cgroups: Option<CgroupResolver>,
    sessions: SessionTable,
    /// The thread writing a compacted sessions file, while one is.
    compaction: Option<std::thread::JoinHandle<std::io::Result<Compacted>>>,
    tokens: ObservedTokens,
    /// Grants and rate-limit buckets, shared with the control socket's
    /// status response.
    policy: Arc<Mutex<PolicyRuntime>>,
    counts: Arc<CallCounts>,
    /// [`PipelineStats::flows_evicted`], shared with the status response.
    flows_evicted: Arc<AtomicU64>,
    reassembly: Arc<ReassemblyCounters>,
    /// Set by the control socket's `tokens_changed`: the token store is
    /// checked before the next event instead of at the next tick.
    tokens_changed: Arc<AtomicBool>,
    sink: Box<dyn AuditSink>,
    limiter: ErrorRateLimiter,
    last_capture_stats: CaptureStats,
    stats: PipelineStats,
    flow_events: Vec<FlowEvent>,
}

impl Pipeline {
    /// Builds a pipeline for `config` that writes to `sink`. `cgroups`
    /// resolves the cgroup ids of flow origins; without it, origins carry
    /// only pid and command.
    pub fn new(config: Arc<Config>, cgroups: Option<CgroupResolver>, sink: Box<dyn AuditSink>) -> Self {
        let capture = &config.capture;
        let limits = FlowLimits {
            max_flows: capture.max_flows,
            max_buffered_bytes_per_direction: capture.max_flow_buffer_bytes,
            max_buffered_bytes_total: capture.max_flow_buffer_bytes.saturating_mul(64),
            idle_timeout_ns: u64::try_from(capture.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
        };
        let flows = FlowTable::new(limits, config.odoo.ports.clone());
        let limiter = ErrorRateLimiter::new(config.audit.error_records_per_minute);
        let policy = Arc::new(Mutex::new(PolicyRuntime::new(&config.policy.grants_file)));
        let tokens = ObservedTokens::new(&config.tokens.store);
        let sessions = SessionTable::open_or_in_memory(config.policy.sessions_file.as_deref(), config.policy.session_lifetime);
        Self {
            policy,
            counts: Arc::new(CallCounts::new()),
            flows_evicted: Arc::new(AtomicU64::new(0)),
            reassembly: Arc::new(ReassemblyCounters::default()),
            tokens_changed: Arc::new(AtomicBool::new(false)),
            config,
            flows,
            connections: HashMap::new(),
            by_endpoints: HashMap::new(),
            pending_origins: HashMap::new(),
            doubts: HashMap::new(),
            cgroups,
            sessions,
            compaction: None,
            tokens,
            sink,
            limiter,
            last_capture_stats: CaptureStats::default(),
            stats: PipelineStats::default(),
            flow_events: Vec::new(),
        }
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// Puts a compacted sessions file in place once its thread has written
    /// it, and starts the next compaction when the file has grown long. A
    /// full table makes a file of up to about 18 MB, which the capture must
    /// not wait for.
    fn compact_sessions(&mut self) {
        if let Some(thread) = self.compaction.take_if(|thread| thread.is_finished()) {
            self.finish_compaction(thread);
        }
        if self.compaction.is_some() {
            return;
        }
        let Some(compaction) = self.sessions.start_compaction() else {
            return;
        };
        match std::thread::Builder::new().name("odoogate-sessions".to_owned()).spawn(move || compaction.write()) {
            Ok(thread) => self.compaction = Some(thread),
            Err(error) => self.sessions.finish_compaction(Err(error)),
        }
    }

    fn finish_compaction(&mut self, thread: std::thread::JoinHandle<std::io::Result<Compacted>>) {
        let written = thread.join().unwrap_or_else(|_| Err(std::io::Error::other("the sessions compaction thread panicked")));
        self.sessions.finish_compaction(written);
    }

    /// Returns the grants and rate-limit buckets the pipeline decides with.
    pub fn policy(&self) -> Arc<Mutex<PolicyRuntime>> {
        self.policy.clone()
    }

    /// Returns the calls per integration and decision since start.
    pub fn counts(&self) -> Arc<CallCounts> {
        self.counts.clone()
    }

    /// Returns the count of connections dropped from the full flow table
    /// since start, which the pipeline keeps current.
    pub fn flows_evicted(&self) -> Arc<AtomicU64> {
        self.flows_evicted.clone()
    }

    /// Returns the reassembly counters, which the pipeline keeps current.
    pub fn reassembly(&self) -> Arc<ReassemblyCounters> {
        self.reassembly.clone()
    }

    /// Returns the flag that makes the pipeline check the token store
    /// before its next event.
    pub fn tokens_changed(&self) -> Arc<AtomicBool> {
        self.tokens_changed.clone()
    }

    /// Loads the token store now when the flag of [`Pipeline::tokens_changed`]
    /// was set and the file changed. Called before each batch of events.
    pub fn load_tokens_on_notice(&mut self) {
        if self.tokens_changed.swap(false, Ordering::SeqCst) {
            self.tokens.check_now();
        }
    }

    /// Puts a reloaded configuration in force for the next event. Calls
    /// already decided keep their records; flows and their bounds keep the
    /// values they were created with, since `odoo.ports` and the capture
    /// bounds need a restart.
    pub fn set_config(&mut self, config: Arc<Config>) {
        if Arc::ptr_eq(&self.config, &config) {
            return;
        }
        lock(&self.policy).set_config(&config);
        self.sessions.set_lifetime(config.policy.session_lifetime);
        self.config = config;
    }

    /// Sets the addresses of this host's network namespace, which a segment
    /// arriving from the network cannot have as its source (see
    /// [`FlowTable::set_local_addresses`]).
    pub fn set_local_addresses(&mut self, addresses: impl IntoIterator<Item = std::net::IpAddr>) {
        self.flows.set_local_addresses(addresses);
    }

    /// Processes one capture event.
    pub fn handle(&mut self, event: CaptureEvent) {
        match event {
            CaptureEvent::Segment(segment) => {
                let mut events = std::mem::take(&mut self.flow_events);
                self.flows.push(segment, &mut events);
                self.reassembly.publish(&self.flows.stats());
                for event in events.drain(..) {
                    self.handle_flow_event(event);
                }
                self.flow_events = events;
            }
            CaptureEvent::Origin(origin) => self.handle_origin(origin),
            CaptureEvent::GuardRefusal(refusal) => {
                let cgroup = self.cgroups.as_mut().and_then(|resolver| resolver.path(refusal.cgroup_id));
                self.write_error_record(crate::steer::guard::refusal_record(&refusal, cgroup));
            }
        }
    }

    /// Runs the periodic work: idle flows, expired origins, capture loss
    /// records and rate-limit summaries. `now_ns` is the kernel monotonic
    /// clock (the clock of segment timestamps).
    pub fn tick(&mut self, now_ns: u64, capture_stats: Option<CaptureStats>) {
        let mut events = std::mem::take(&mut self.flow_events);
        self.flows.expire(now_ns, &mut events);
        self.reassembly.publish(&self.flows.stats());
        for event in events.drain(..) {
            self.handle_flow_event(event);
        }
        self.flow_events = events;
        // An acknowledgement without data makes no flow event.
        let awaiting: Vec<u64> =
            self.connections.iter().filter(|(_, connection)| connection.awaits_acknowledgement()).map(|(id, _)| *id).collect();
        for conn_id in awaiting {
            self.write_acknowledged(conn_id);
        }

        let now = Instant::now();
        self.tokens.refresh(now);
        self.pending_origins.retain(|_, (_, seen)| now.duration_since(*seen) < ORIGIN_TTL);
        self.sessions.expire_old(std::time::SystemTime::now());
        self.compact_sessions();

        if let Some(stats) = capture_stats {
            for record in records::capture_loss(&self.last_capture_stats, &stats) {
                self.write_error_record(record);
            }
            self.last_capture_stats = stats;
        }
        for record in self.limiter.flush(now) {
            self.sink.write(&record);
        }
    }

    /// Ends every connection, writing the records of calls still waiting
    /// for a response. Called on shutdown.
    pub fn finish(&mut self) {
        let ids: Vec<u64> = self.connections.keys().copied().collect();
        for conn_id in ids {
            self.close_connection(conn_id, "daemon stopped", None);
        }
        for record in self.limiter.flush(Instant::now() + Duration::from_secs(3600)) {
            self.sink.write(&record);
        }
        self.tokens.flush();
    }

    /// Files the origin of the connection that a client SYN opens. The
    /// origin comes through the ring buffer before its SYN, so it waits in
    /// `pending_origins` for the flow that the SYN opens. A connection
    /// already on the same endpoints that has carried nothing gets it too,
    /// because the SYN may have been sent again. When the SYN has a new
    /// initial sequence number instead, it replaces that flow, and the new
    /// flow takes the origin from `pending_origins`. A connection that has
    /// carried data is an older one whose end the capture did not see, and
    /// the client reused its port, so it keeps its own origin.
    fn handle_origin(&mut self, origin: FlowOrigin) {
        let cgroup = self.cgroups.as_mut().and_then(|resolver| resolver.path(origin.cgroup_id));
        let info = Origin { cgroup, pid: origin.pid, comm: origin.comm.clone() };
        let key = (origin.client, origin.server);
        if let Some(connection) = self.by_endpoints.get(&key).and_then(|id| self.connections.get_mut(id))
            && !connection.carried_data()
        {
            connection.set_origin(info.clone());
        }
        if self.pending_origins.len() >= MAX_PENDING_ORIGINS {
            self.pending_origins.clear();
        }
        self.pending_origins.insert(key, (info, Instant::now()));
    }

    fn handle_flow_event(&mut self, event: FlowEvent) {
        match event {
            FlowEvent::Opened { conn_id, key, mid_stream, .. } => {
                let mut connection = Connection::new(conn_id, key, mid_stream, &self.config);
                if let Some((origin, _)) = self.pending_origins.remove(&(key.client, key.server)) {
                    connection.set_origin(origin);
                }
                // A flow opened by a SYN is a new TCP connection, which
                // starts without doubt.
                let doubt = self.doubts.remove(&(key.client, key.server));
                if let Some((kind, since)) = doubt
                    && mid_stream
                    && since.elapsed() < DOUBT_MEMORY
                {
                    connection.inherit_doubt(kind);
                }
                self.connections.insert(conn_id, connection);
                self.by_endpoints.insert((key.client, key.server), conn_id);
            }
            FlowEvent::Data { conn_id, direction, bytes, timestamp_ns, server_acked } => {
                let Some(connection) = self.connections.get_mut(&conn_id) else { return };
                // Calls acknowledged since the last event go before the
                // records that this one completes, and the connection
                // releases those it completes already acknowledged.
                let mut output = connection.take_acknowledged(server_acked);
                let mut policy = lock(&self.policy);
                let mut context = CallContext {
                    config: &self.config,
                    sessions: &mut self.sessions,
                    policy: &mut policy,
                    tokens: self.tokens.store(),
                };
                output.extend(connection.push(direction, &bytes, timestamp_ns, &mut context));
                drop(policy);
                self.write_output(output);
            }
            FlowEvent::Gap { conn_id, direction, missing_bytes, server_acked } => {
                let Some(connection) = self.connections.get_mut(&conn_id) else { return };
                let mut output = connection.take_acknowledged(server_acked);
                output.extend(connection.gap(direction, missing_bytes));
                self.write_output(output);
            }
            FlowEvent::Conflict { conn_id, direction, offset, kind } => {
                let Some(connection) = self.connections.get_mut(&conn_id) else { return };
                let output = connection.conflict(direction, offset, kind);
                self.write_output(output);
            }
            FlowEvent::Ignored { src, dst, kind } => {
                self.write_output(vec![records::ignored_segment(src, dst, kind)]);
            }
            FlowEvent::Closed { conn_id, reason: CloseReason::Evicted, .. } => {
                self.stats.flows_evicted += 1;
                self.flows_evicted.store(self.stats.flows_evicted, Ordering::Relaxed);
                if let Some(connection) = self.connections.get(&conn_id) {
                    let (client, _) = connection.endpoints();
                    self.write_error_record(records::flow_evicted(conn_id, client, self.config.capture.max_flows));
                }
                // The server may still acknowledge the last request.
                self.close_connection(conn_id, "dropped from the full flow table", None);
            }
            FlowEvent::Closed { conn_id, server_acked, .. } => {
                self.close_connection(conn_id, "connection closed", Some(server_acked));
            }
        }
    }

    /// Passes how far the server acknowledged the client's stream to
    /// connection `conn_id`, and writes the records of its calls that were
    /// completed without a response and whose request the server has
    /// acknowledged since (see [`Connection::take_acknowledged`]).
    fn write_acknowledged(&mut self, conn_id: u64) {
        let Some(connection) = self.connections.get_mut(&conn_id) else { return };
        let Some(server_acked) = self.flows.server_acked(conn_id) else { return };
        let output = connection.take_acknowledged(server_acked);
        self.write_output(output);
    }

    /// Ends the connection `conn_id` and writes the records of its calls
    /// still waiting for a response, saying `why` there was none.
    /// `server_acked`, when the connection is over, is how far the server
    /// acknowledged the client's stream (see [`Connection::finish`]).
    fn close_connection(&mut self, conn_id: u64, why: &str, server_acked: Option<u64>) {
        if let Some(mut connection) = self.connections.remove(&conn_id) {
            let endpoints = connection.endpoints();
            if self.by_endpoints.get(&endpoints) == Some(&conn_id) {
                self.by_endpoints.remove(&endpoints);
            }
            if let Some(kind) = connection.requests_in_doubt() {
                if self.doubts.len() >= MAX_DOUBTS {
                    self.doubts.retain(|_, (_, since)| since.elapsed() < DOUBT_MEMORY);
                }
                if self.doubts.len() < MAX_DOUBTS {
                    self.doubts.insert(endpoints, (kind, Instant::now()));
                }
            }
            let mut policy = lock(&self.policy);
            let mut context = CallContext {
                config: &self.config,
                sessions: &mut self.sessions,
                policy: &mut policy,
                tokens: self.tokens.store(),
            };
            let output = connection.finish(why, server_acked, &mut context);
            drop(policy);
            self.write_output(output);
        }
    }

    fn write_output(&mut self, output: Vec<AuditRecord>) {
        for record in output {
            match record.event {
                AuditEvent::Call => {
                    self.stats.calls += 1;
                    self.counts.count(&record);
                    records::trace_decision(&record);
                    self.sink.write(&record);
                }
                AuditEvent::DecodeError => {
                    self.stats.decode_errors += 1;
                    self.write_error_record(record);
                }
                AuditEvent::FramingAnomaly => {
                    self.stats.framing_anomalies += 1;
                    self.write_error_record(record);
                }
                AuditEvent::CaptureGap => {
                    self.stats.capture_gaps += 1;
                    self.write_error_record(record);
                }
                AuditEvent::CaptureLoss | AuditEvent::GuardRefusal | AuditEvent::ConnectionRefused => {
                    self.write_error_record(record)
                }
                AuditEvent::WebRoute => {
                    tracing::info!(
                        integration = record.integration.as_deref().unwrap_or_default(),
                        path = record.path.as_deref().unwrap_or_default(),
                        reason = record.reason.as_deref().unwrap_or_default(),
                        "Web route would be denied"
                    );
                    self.sink.write(&record);
                }
            }
        }
    }

    fn write_error_record(&mut self, record: AuditRecord) {
        if let Some(record) = self.limiter.admit(record, Instant::now()) {
            self.sink.write(&record);
        }
    }
}

/// Locks the policy state. Its buckets and grants stay valid whatever a
/// panicking holder left, so a poisoned lock is taken over.
fn lock(policy: &Mutex<PolicyRuntime>) -> std::sync::MutexGuard<'_, PolicyRuntime> {
    policy.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits for a compaction under way, so that the lines appended to the
/// sessions file meanwhile reach the compacted file before the process
/// ends.
impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(thread) = self.compaction.take() {
            self.finish_compaction(thread);
        }
    }
}

#[cfg(test)]
mod tests;

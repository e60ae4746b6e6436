//! Prometheus metrics, served on `[metrics] listen` when it is set.
//!
//! One [`Metrics`] is shared by every thread of the daemon. The audit sink
//! of both paths is wrapped in a [`MeteredSink`], which calls
//! [`Metrics::observe`] for each record written. The run paths copy in the
//! capture's kernel counters and the attached eBPF programs. Every label value
//! comes from a bounded set: integration names from the configuration (or,
//! for a call refused for its scoped token, from the token store or the
//! session table), protocols, decisions, error codes and reasons from the
//! code.
//!
//! Metric names, all prefixed `odoogate_`:
//!
//! | Metric | Type | Labels |
//! |---|---|---|
//! | `calls_total` | counter | `integration`, `protocol`, `decision` |
//! | `call_duration_seconds` | histogram | `protocol` |
//! | `decode_errors_total` | counter | `code` |
//! | `framing_anomalies_total` | counter | `code` |
//! | `capture_gaps_total` | counter | |
//! | `capture_losses_total` | counter | `reason` |
//! | `flows_evicted_total` | counter | |
//! | `connections_refused_total` | counter | `code` |
//! | `ebpf_packets_total` | counter | |
//! | `ebpf_ring_records_total` | counter | |
//! | `ebpf_unparsed_packets_total` | counter | `reason` |
//! | `ebpf_connects_total` | counter | |
//! | `ebpf_guard_refusals_total` | counter | |
//! | `ebpf_program_attached` | gauge | `attachment` |
//! | `steering_connections_total` | counter | `outcome` |

pub mod server;
mod sink;

pub use server::{MetricsServer, ServerError};
pub use sink::MeteredSink;

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::steer::SteerStats;
use crate::audit::{AuditEvent, AuditRecord};
use crate::capture::CaptureStats;
use crate::pipeline::records::FLOW_TABLE_FULL;

/// Bucket upper bounds of `odoogate_call_duration_seconds`, from 1 ms to
/// Odoo's default `limit_time_real` of 120 seconds.
const DURATION_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    /// The integration name; empty for unidentified calls.
    integration: String,
    protocol: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachmentLabels {
    attachment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// A function that updates metrics from their source just before a scrape.
type Refresh = Box<dyn Fn(&Metrics) + Send + Sync>;

/// The daemon's metrics and the registry that encodes them.
///
/// Every method takes `&self` (the metric types are atomics), so one
/// `Arc<Metrics>` is shared between threads.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    durations: Family<ProtocolLabels, Histogram>,
    decode_errors: Family<CodeLabels, Counter>,
    framing_anomalies: Family<CodeLabels, Counter>,
    capture_gaps: Counter,
    capture_losses: Family<ReasonLabels, Counter>,
    /// Counted from the pipeline's records, not from a kernel counter.
    flows_evicted: Counter,
    connections_refused: Family<CodeLabels, Counter>,
    packets: Counter,
    ring_records: Counter,
    unparsed_packets: Family<ReasonLabels, Counter>,
    connects: Counter,
    guard_refusals: Counter,
    attached: Family<AttachmentLabels, Gauge>,
    steering: Family<OutcomeLabels, Counter>,
    refresh: Mutex<Option<Refresh>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds the metrics, all at zero, and registers them.
    pub fn new() -> Self {
        let durations =
            Family::<ProtocolLabels, Histogram>::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let metrics = Self {
            registry: Registry::with_prefix("odoogate"),
            calls: Family::default(),
            durations,
            decode_errors: Family::default(),
            framing_anomalies: Family::default(),
            capture_gaps: Counter::default(),
            capture_losses: Family::default(),
            flows_evicted: Counter::default(),
            connections_refused: Family::default(),
            packets: Counter::default(),
            ring_records: Counter::default(),
            unparsed_packets: Family::default(),
            connects: Counter::default(),
            guard_refusals: Counter::default(),
            attached: Family::default(),
            steering: Family::default(),
            refresh: Mutex::new(None),
        };
        metrics.register()
    }

    fn register(mut self) -> Self {
        let registry = &mut self.registry;
        registry.register("calls", "RPC calls by integration, protocol and decision", self.calls.clone());
        registry.register(
            "call_duration_seconds",
            "Time from the end of a call's request to the start of Odoo's response",
            self.durations.clone(),
        );
        registry.register("decode_errors", "RPC request bodies that did not decode, by error code", self.decode_errors.clone());
        registry.register(
            "framing_anomalies",
            "HTTP framings Odoo could read differently, by anomaly code",
            self.framing_anomalies.clone(),
        );
        registry.register("capture_gaps", "Captured flows with bytes missing", self.capture_gaps.clone());
        registry.register("capture_losses", "Capture records lost or cut in the kernel, by reason", self.capture_losses.clone());
        registry.register("flows_evicted", "Connections dropped from the full flow table of the observe path", self.flows_evicted.clone());
        registry.register(
            "connections_refused",
            "Client connections enforce mode closed unserved, by reason",
            self.connections_refused.clone(),
        );
        registry.register("ebpf_packets", "Packets to or from Odoo's ports that the TC programs saw", self.packets.clone());
        registry.register("ebpf_ring_records", "Records the eBPF programs wrote to the ring buffer", self.ring_records.clone());
        registry.register(
            "ebpf_unparsed_packets",
            "Packets the TC programs did not parse, by reason",
            self.unparsed_packets.clone(),
        );
        registry.register("ebpf_connects", "Connects to Odoo's ports that the cgroup programs saw", self.connects.clone());
        registry.register("ebpf_guard_refusals", "Connects to Odoo's ports that the cgroup guard refused", self.guard_refusals.clone());
        registry.register("ebpf_program_attached", "1 for each attached eBPF program", self.attached.clone());
        registry.register(
            "steering_connections",
            "New connections to Odoo's ports the sk_lookup program saw (enforce mode), by outcome",
            self.steering.clone(),
        );
        self
    }

    /// Counts what one written audit record reports. An error record counts
    /// as its `count` (the events it stands for, rate-limited ones included)
    /// or 1.
    pub fn observe(&self, record: &AuditRecord) {
        let events = record.count.unwrap_or(1);
        match record.event {
            AuditEvent::Call => self.observe_call(record),
            AuditEvent::DecodeError => {
                self.decode_errors.get_or_create(&code_labels(record)).inc_by(events);
            }
            AuditEvent::FramingAnomaly => {
                self.framing_anomalies.get_or_create(&code_labels(record)).inc_by(events);
            }
            AuditEvent::CaptureGap => {
                self.capture_gaps.inc_by(events);
            }
            AuditEvent::ConnectionRefused => {
                self.connections_refused.get_or_create(&code_labels(record)).inc_by(events);
            }
            // Losses in the kernel come from its counters, and guard
            // refusals from `ebpf_guard_refusals_total`.
            AuditEvent::CaptureLoss if record.error_code.as_deref() == Some(FLOW_TABLE_FULL) => {
                self.flows_evicted.inc_by(events);
            }
            // Web route denials are in the audit records only.
            AuditEvent::CaptureLoss | AuditEvent::GuardRefusal | AuditEvent::WebRoute => {}
        }
    }

    fn observe_call(&self, record: &AuditRecord) {
        let protocol = record.protocol.unwrap_or("unknown").to_owned();
        let labels = CallLabels {
            integration: record.integration.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            decision: record.decision.map_or("none", |decision| decision.as_str()).to_owned(),
        };
        self.calls.get_or_create(&labels).inc();
        if let Some(latency_us) = record.latency_us {
            let seconds = latency_us as f64 / 1_000_000.0;
            self.durations.get_or_create(&ProtocolLabels { protocol }).observe(seconds);
        }
    }

    /// Copies the capture's kernel counters, which count from the moment the
    /// programs were loaded.
    pub fn set_capture_stats(&self, stats: &CaptureStats) {
        let losses = [
            ("ring_full", stats.ring_full),
            ("truncated", stats.truncated),
            ("load_error", stats.load_errors),
            ("malformed_record", stats.malformed_records),
        ];
        for (reason, value) in losses {
            store(&self.capture_losses.get_or_create(&ReasonLabels { reason }), value);
        }
        let unparsed = [("skipped", stats.skipped_packets), ("header_error", stats.header_errors)];
        for (reason, value) in unparsed {
            store(&self.unparsed_packets.get_or_create(&ReasonLabels { reason }), value);
        }
        store(&self.packets, stats.packets);
        store(&self.ring_records, stats.records);
        store(&self.connects, stats.connects);
        store(&self.guard_refusals, stats.guard_refusals);
    }

    /// Marks each of `attachments` (such as `"tc ingress on lo"`) attached.
    pub fn set_attached(&self, attachments: &[String]) {
        self.attached.clear();
        for attachment in attachments {
            self.attached.get_or_create(&AttachmentLabels { attachment: attachment.clone() }).set(1);
        }
    }

    /// Copies the steering program's counters, which count from the moment
    /// its pinned maps were created, so they carry over a restart that
    /// reuses the pins.
    pub fn set_steer_stats(&self, stats: &SteerStats) {
        let outcomes = [("steered", stats.steered), ("bypassed", stats.bypassed), ("dropped", stats.dropped)];
        for (outcome, value) in outcomes {
            store(&self.steering.get_or_create(&OutcomeLabels { outcome }), value);
        }
    }

    /// Sets the function that [`Metrics::encode`] runs first, such as one
    /// that reads the capture's kernel counters, so a scrape sees current
    /// values.
    pub fn refresh_with(&self, refresh: impl Fn(&Metrics) + Send + Sync + 'static) {
        *self.refresh.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(refresh));
    }

    /// Encodes every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        if let Some(refresh) = self.refresh.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            refresh(self);
        }
        let mut text = String::new();
        // Writing to a String cannot fail, and every label value is
        // encodable, so an error here is a bug in the encoder.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "Failed to encode the metrics");
        }
        text
    }
}

fn code_labels(record: &AuditRecord) -> CodeLabels {
    CodeLabels { code: record.error_code.clone().unwrap_or_else(|| "unknown".to_owned()) }
}

/// Sets a counter to a kernel counter's value. The kernel counters only
/// grow while the programs stay loaded, so the counter stays monotonic.
fn store(counter: &Counter, value: u64) {
    counter.inner().store(value, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;

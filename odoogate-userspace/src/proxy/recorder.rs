//! Where the proxy's audit records go: one sink shared by every connection,
//! with the same rate limit on error records as the observe path.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::audit::ratelimit::ErrorRateLimiter;
use crate::audit::sink::EncoderPanics;
use crate::audit::{AuditEvent, AuditRecord, AuditSink, Decision, Encoder};
use crate::pipeline::records;
use crate::policy::runtime::CallCounts;

/// Counters of what the proxy did, for the log at shutdown and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Call records written.
    pub calls: u64,
    /// Calls denied (answered by odoogate, never forwarded).
    pub denied: u64,
    /// Requests rejected for their HTTP framing.
    pub framing_rejections: u64,
    /// Requests to an RPC surface whose body did not decode.
    pub decode_errors: u64,
    /// Client connections closed unserved at `proxy.max_connections`.
    pub connections_refused: u64,
    /// Idle client connections closed to make room at
    /// `proxy.max_connections`.
    pub idle_connections_closed: u64,
}

/// Writes audit records for every connection of the proxy.
///
/// The lock is held while the record is handed to the sink. The daemon's
/// sink queues it for a writer thread ([`crate::audit::background`]), so a
/// call waits for a write only when that queue is full. A call record is
/// encoded before the lock, which every proxy thread takes, when the sink
/// has an encoder.
///
/// NOTE: a JSON line takes its timestamp when it is encoded, so records of
/// different connections can reach the file slightly out of timestamp
/// order, which `odoogate audit --file` sorts back. A connection's own
/// records keep their order.
pub struct Recorder {
    state: Mutex<State>,
    /// The sink's encoder, if it has one.
    encoder: Option<Arc<dyn Encoder>>,
    /// Reports the call records lost to a panicking encoder.
    encoder_panics: EncoderPanics,
}

struct State {
    sink: Box<dyn AuditSink>,
    counts: Arc<CallCounts>,
    limiter: ErrorRateLimiter,
    stats: ProxyStats,
}

impl Recorder {
    /// Builds a recorder that writes to `sink`, letting through at most
    /// `error_records_per_minute` error records of each kind.
    pub fn new(sink: Box<dyn AuditSink>, error_records_per_minute: u32) -> Self {
        Self::with_counts(sink, error_records_per_minute, Arc::new(CallCounts::new()))
    }

    /// Builds a recorder like [`Recorder::new`] that also counts call
    /// records by integration and decision in `counts`.
    pub fn with_counts(sink: Box<dyn AuditSink>, error_records_per_minute: u32, counts: Arc<CallCounts>) -> Self {
        let encoder = sink.encoder();
        let state = State { sink, counts, limiter: ErrorRateLimiter::new(error_records_per_minute), stats: ProxyStats::default() };
        Self { state: Mutex::new(state), encoder, encoder_panics: EncoderPanics::default() }
    }

    /// Writes a record: call records always, error records within the
    /// rate limit.
    pub fn write(&self, record: AuditRecord) {
        if record.event == AuditEvent::Call {
            // A record whose encoder panicked is lost and counted nowhere,
            // as the metrics count records when they are encoded. The sink's
            // own encoding would panic again.
            let entry = match self.encoder.as_deref() {
                Some(encoder) => match self.encoder_panics.encode(encoder, &record) {
                    Some(entry) => Some(entry),
                    None => return,
                },
                None => None,
            };
            let mut state = self.lock();
            state.stats.calls += 1;
            state.counts.count(&record);
            if record.decision == Some(Decision::Deny) {
                state.stats.denied += 1;
            }
            records::trace_decision(&record);
            match entry {
                Some(entry) => state.sink.write_entry(entry),
                None => state.sink.write_owned(record),
            }
            // The lock is released before the record is freed.
            return;
        }

        let mut state = self.lock();

        match record.event {
            AuditEvent::DecodeError => state.stats.decode_errors += 1,
            AuditEvent::FramingAnomaly => state.stats.framing_rejections += 1,
            AuditEvent::ConnectionRefused => state.stats.connections_refused += 1,
            _ => {}
        }
        if let Some(record) = state.limiter.admit(record, Instant::now()) {
            state.sink.write_owned(record);
        }
    }

    /// Returns a guard on `record`, the record of a call forwarded to Odoo,
    /// that writes it when dropped before the caller takes it back.
    pub(super) fn pending(&self, record: AuditRecord) -> PendingRecord<'_> {
        PendingRecord { recorder: self, record: Some(record) }
    }

    /// Writes the summaries of error records held back by the rate limit.
    pub fn flush(&self, now: Instant) {
        let mut state = self.lock();
        for record in state.limiter.flush(now) {
            state.sink.write_owned(record);
        }
    }

    pub fn stats(&self) -> ProxyStats {
        self.lock().stats
    }

    /// Counts an idle connection closed to make room for a new one.
    pub fn count_idle_closed(&self) {
        self.lock().stats.idle_connections_closed += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters and a sink that
        // are still usable, so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The record of a call that was sent, or is being sent, to Odoo.
///
/// The connection's task may stop before Odoo responds: at the end of the
/// shutdown grace period, or when the proxy is dropped. The call may then
/// have reached Odoo, so the drop writes its record with no outcome.
pub(super) struct PendingRecord<'r> {
    recorder: &'r Recorder,
    /// `None` only once [`PendingRecord::into_record`] took it.
    record: Option<AuditRecord>,
}

impl PendingRecord<'_> {
    /// Returns the record for the caller to complete and write.
    pub fn into_record(mut self) -> AuditRecord {
        self.record.take().expect("the record is taken only here and on drop")
    }
}

impl Drop for PendingRecord<'_> {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.message.push_str(" (no response: odoogate stopped the connection before Odoo responded)");
            self.recorder.write(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{self, Sender};

    use super::*;
    use crate::audit::background::BackgroundSink;
    use crate::audit::sink::test_support::{EncodedMessages, PanicsOnEncode};
    use crate::metrics::{MeteredSink, Metrics};

    /// A write that reached the sink: an entry the recorder encoded, or a
    /// record.
    #[derive(Debug, PartialEq, Eq)]
    enum Written {
        Entry(String),
        Record(String),
    }

    /// A sink with [`PanicsOnEncode`] that sends what it is given.
    struct Sent(Sender<Written>);

    impl AuditSink for Sent {
        fn write(&mut self, record: &AuditRecord) {
            let _ = self.0.send(Written::Record(record.message.clone()));
        }

        fn encoder(&self) -> Option<Arc<dyn Encoder>> {
            Some(Arc::new(PanicsOnEncode))
        }

        fn write_encoded(&mut self, entries: &[Vec<u8>]) {
            for entry in entries {
                let _ = self.0.send(Written::Entry(String::from_utf8(entry.clone()).unwrap()));
            }
        }
    }

    fn call(message: &str) -> AuditRecord {
        let mut record = AuditRecord::new(AuditEvent::Call, message);
        record.decision = Some(Decision::Allow);
        record
    }

    /// Call records reach a sink with an encoder already encoded, and other
    /// records whole. A call whose encoding panicked is lost and not
    /// counted.
    #[test]
    fn calls_are_encoded_before_the_lock() {
        let (sender, written) = mpsc::channel();
        let recorder = Recorder::new(Box::new(Sent(sender)), 10);
        recorder.write(call("first"));
        recorder.write(AuditRecord::new(AuditEvent::CaptureLoss, "loss"));
        recorder.write(call("panic"));

        let written: Vec<Written> = written.try_iter().collect();
        assert_eq!(written, [Written::Entry("first".to_owned()), Written::Record("loss".to_owned())]);
        assert_eq!(recorder.lock().stats.calls, 1);
    }

    /// Sums the values of the `odoogate_calls_total` series.
    fn calls_total(metrics: &Metrics) -> u64 {
        let text = metrics.encode();
        let series = text.lines().filter(|line| line.starts_with("odoogate_calls_total{"));
        series.map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum()
    }

    /// In the daemon's chain (a writer thread in front of the metered
    /// sink), a call record lost to a panicking encoder is counted by
    /// neither the metrics nor the recorder's counters.
    #[test]
    fn encoder_panic_counted_nowhere() {
        let metrics = Arc::new(Metrics::new());
        let (sender, written) = mpsc::channel();
        let metered = MeteredSink::new(Box::new(EncodedMessages(sender)), metrics.clone());
        let sink = BackgroundSink::start(Box::new(metered)).unwrap();
        let counts = Arc::new(CallCounts::new());
        let recorder = Recorder::with_counts(Box::new(sink), 10, counts.clone());

        recorder.write(call("panic"));
        recorder.write(call("after"));
        let stats = recorder.stats();
        drop(recorder);

        assert_eq!(written.try_iter().collect::<Vec<_>>().concat(), ["after"]);
        assert_eq!(calls_total(&metrics), 1, "metrics");
        assert_eq!(stats.calls, 1, "ProxyStats::calls");
        let allowed: u64 = counts.snapshot().values().map(|counts| counts.allow).sum();
        assert_eq!(allowed, 1, "CallCounts");
    }
}

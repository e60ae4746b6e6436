//! An audit sink that counts each record before it writes it.

use std::sync::Arc;

use super::Metrics;
use crate::audit::{AuditRecord, AuditSink};

/// Wraps the daemon's audit sink, so the metrics count exactly the records
/// that are written, on the observe and the enforce path alike.
///
/// Error records arrive after the rate limit: a record that passes it, and
/// the summary written when its window ends, carry in `count` the records
/// held back, so the error counters reach the full total within one
/// window (60 seconds).
pub struct MeteredSink {
    inner: Box<dyn AuditSink>,
    metrics: Arc<Metrics>,
}

impl MeteredSink {
    pub fn new(inner: Box<dyn AuditSink>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl AuditSink for MeteredSink {
    fn write(&mut self, record: &AuditRecord) {
        self.metrics.observe(record);
        self.inner.write(record);
    }

    fn write_owned(&mut self, record: AuditRecord) {
        self.metrics.observe(&record);
        self.inner.write_owned(record);
    }

    fn write_batch(&mut self, records: &[AuditRecord]) {
        for record in records {
            self.metrics.observe(record);
        }
        self.inner.write_batch(records);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::audit::AuditEvent;

    /// A sink that keeps the messages it was given.
    struct Collect(Arc<Mutex<Vec<String>>>);

    impl AuditSink for Collect {
        fn write(&mut self, record: &AuditRecord) {
            self.0.lock().unwrap().push(record.message.clone());
        }
    }

    #[test]
    fn sink_counts_and_forwards() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::new());
        let mut sink = MeteredSink::new(Box::new(Collect(written.clone())), metrics.clone());

        let mut summary = AuditRecord::new(AuditEvent::DecodeError, "summary");
        summary.error_code = Some("invalid_json".to_owned());
        summary.count = Some(5);
        sink.write(&summary);

        assert_eq!(*written.lock().unwrap(), ["summary"]);
        assert!(metrics.encode().contains("odoogate_decode_errors_total{code=\"invalid_json\"} 5\n"), "{}", metrics.encode());
    }
}

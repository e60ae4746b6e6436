//! An audit sink that counts each record before it writes it.

use std::sync::Arc;

use super::Metrics;
use crate::audit::{AuditRecord, AuditSink, Encoder};

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

    /// Counts each record when it is encoded, since the entries that reach
    /// [`AuditSink::write_encoded`] are bytes.
    fn encoder(&self) -> Option<Arc<dyn Encoder>> {
        let inner = self.inner.encoder()?;
        Some(Arc::new(MeteredEncoder { inner, metrics: self.metrics.clone() }))
    }

    fn write_encoded(&mut self, entries: &[Vec<u8>]) {
        self.inner.write_encoded(entries);
    }

    fn write_entry(&mut self, entry: Vec<u8>) {
        self.inner.write_entry(entry);
    }
}

/// The inner sink's encoder, counting each record it encodes.
struct MeteredEncoder {
    inner: Arc<dyn Encoder>,
    metrics: Arc<Metrics>,
}

impl Encoder for MeteredEncoder {
    /// Counts the record once it is encoded, so that a record whose
    /// encoding panicked is not counted.
    fn encode(&self, record: &AuditRecord) -> Vec<u8> {
        let entry = self.inner.encode(record);
        self.metrics.observe(record);
        entry
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::audit::AuditEvent;
    use crate::audit::jsonl::JsonLinesSink;

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

    /// Records written through the encoder are counted once, when encoded.
    #[test]
    fn encoded_records_are_counted() {
        let metrics = Arc::new(Metrics::new());
        let mut sink = MeteredSink::new(Box::new(JsonLinesSink::new(Vec::new())), metrics.clone());
        let encoder = sink.encoder().expect("the inner sink has an encoder");

        let mut summary = AuditRecord::new(AuditEvent::DecodeError, "summary");
        summary.error_code = Some("invalid_json".to_owned());
        summary.count = Some(5);
        let entry = encoder.encode(&summary);
        assert!(metrics.encode().contains("odoogate_decode_errors_total{code=\"invalid_json\"} 5\n"), "{}", metrics.encode());
        sink.write_encoded(&[entry]);
        assert!(
            metrics.encode().contains("odoogate_decode_errors_total{code=\"invalid_json\"} 5\n"),
            "counted twice: {}",
            metrics.encode()
        );
    }
}

//! Where audit records go.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::AuditRecord;
use super::ratelimit::FailureReportThrottle;

/// A destination for audit records (journald, JSON lines, or a test buffer).
pub trait AuditSink: Send {
    /// Writes one record. Errors are handled by the sink (counted and logged
    /// rate-limited), never returned, so that a failing sink cannot stop the
    /// pipeline.
    fn write(&mut self, record: &AuditRecord);

    /// Writes one record the caller no longer needs, so that a sink that
    /// keeps records (a queue) takes it without a copy.
    fn write_owned(&mut self, record: AuditRecord) {
        self.write(&record);
    }

    /// Writes records in order. A sink that can write several at once (a
    /// file) does so.
    fn write_batch(&mut self, records: &[AuditRecord]) {
        for record in records {
            self.write(record);
        }
    }

    /// Returns the encoder of the entries that [`AuditSink::write_encoded`]
    /// takes, for a sink that writes records as bytes. A queue in front of
    /// the sink then encodes each record on the thread that made it, while
    /// its fields are still in that core's cache. It frees the record there
    /// too, so only the entry crosses to the writer thread.
    fn encoder(&self) -> Option<Arc<dyn Encoder>> {
        None
    }

    /// Writes entries made by this sink's [`AuditSink::encoder`], in order.
    /// Only a sink that has an encoder is given entries.
    fn write_encoded(&mut self, entries: &[Vec<u8>]) {
        tracing::error!(records = entries.len(), "An audit sink without an encoder was given encoded records; they are lost");
    }

    /// Writes one entry made by this sink's [`AuditSink::encoder`], which
    /// a queue takes without a copy.
    fn write_entry(&mut self, entry: Vec<u8>) {
        self.write_encoded(std::slice::from_ref(&entry));
    }
}

/// Turns a record into the bytes its sink writes: one JSON line, or one
/// journald entry.
pub trait Encoder: Send + Sync {
    fn encode(&self, record: &AuditRecord) -> Vec<u8>;
}

/// Runs encoders on the threads that make records, where a panic must not
/// reach the caller, and reports the records lost to panics, rate-limited.
/// Clones share one report throttle.
#[derive(Clone, Debug, Default)]
pub(crate) struct EncoderPanics(Arc<Mutex<FailureReportThrottle>>);

impl EncoderPanics {
    /// Encodes `record` with `encoder`. Returns `None` when the encoder
    /// panicked: the record is lost, and the loss is reported.
    pub(crate) fn encode(&self, encoder: &dyn Encoder, record: &AuditRecord) -> Option<Vec<u8>> {
        if let Ok(entry) = catch_unwind(AssertUnwindSafe(|| encoder.encode(record))) {
            return Some(entry);
        }
        let mut throttle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lost) = throttle.failure(Instant::now()) {
            tracing::error!(lost_records = lost, "The audit encoder panicked; audit records were not written");
        }
        None
    }
}

/// Encoders and sinks shared by the tests of the modules that queue and
/// record entries.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::mpsc::Sender;

    use super::*;

    /// Encodes a record as its message, and panics on the one whose
    /// message is "panic".
    pub(crate) struct PanicsOnEncode;

    impl Encoder for PanicsOnEncode {
        fn encode(&self, record: &AuditRecord) -> Vec<u8> {
            assert_ne!(record.message, "panic", "an encoder bug");
            record.message.clone().into_bytes()
        }
    }

    /// A sink of entries from [`PanicsOnEncode`], which sends the messages
    /// of each batch it is given.
    pub(crate) struct EncodedMessages(pub(crate) Sender<Vec<String>>);

    impl AuditSink for EncodedMessages {
        fn write(&mut self, _record: &AuditRecord) {
            panic!("records reach this sink encoded");
        }

        fn encoder(&self) -> Option<Arc<dyn Encoder>> {
            Some(Arc::new(PanicsOnEncode))
        }

        fn write_encoded(&mut self, entries: &[Vec<u8>]) {
            let _ = self.0.send(entries.iter().map(|entry| String::from_utf8(entry.clone()).unwrap()).collect());
        }
    }
}

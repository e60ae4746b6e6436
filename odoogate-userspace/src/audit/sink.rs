//! Where audit records go.

use std::sync::Arc;

use super::AuditRecord;

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

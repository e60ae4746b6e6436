//! Where audit records go.

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
}

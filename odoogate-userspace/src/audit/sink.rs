//! Where audit records go.

use super::AuditRecord;

/// A destination for audit records (journald, JSON lines, or a test buffer).
pub trait AuditSink: Send {
    /// Writes one record. Errors are handled by the sink (counted and logged
    /// rate-limited), never returned, so that a failing sink cannot stop the
    /// pipeline.
    fn write(&mut self, record: &AuditRecord);
}

//! Audit records: one per call, plus records for decode errors, framing
//! anomalies, capture gaps and capture losses.
//!
//! `record` defines the record and its journald fields, `journald` writes
//! records with journald's native protocol, `jsonl` writes them as JSON lines
//! when there is no journald, `background` writes them on a thread of its
//! own, `ratelimit` bounds the error records, and `reader` reads records back
//! for `odoogate audit`.

pub mod background;
pub mod journald;
pub mod jsonl;
pub mod ratelimit;
pub mod reader;
pub mod record;
pub mod sink;

pub use record::{AuditEvent, AuditRecord, Decision, Identity};
pub use sink::{AuditSink, Encoder};

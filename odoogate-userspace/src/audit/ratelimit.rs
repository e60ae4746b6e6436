//! Rate limits for audit output.
//!
//! [`ErrorRateLimiter`] bounds the records about bad input and lost capture
//! (`decode_error`, `framing_anomaly`, `capture_gap`, `capture_loss`), which a
//! hostile or broken client can produce at line rate, while keeping the
//! number of events they stand for exact through `ODOOGATE_COUNT`.
//! [`FailureReportThrottle`] bounds how often a sink logs its own write
//! failures. Both are pure: the caller passes the current time.

use super::{AuditEvent, AuditRecord};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Length of one rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Maximum distinct (event, error code) keys tracked at once. Error codes are
/// a bounded set by contract. If a caller breaks that contract, the keys past
/// this bound share one bucket per event.
pub const MAX_KEYS: usize = 256;

/// The rate-limit bucket a record counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Code(AuditEvent, Option<String>),
    /// Records whose key arrived while the table was full.
    Overflow(AuditEvent),
}

impl Key {
    fn event(&self) -> AuditEvent {
        match self {
            Self::Code(event, _) | Self::Overflow(event) => *event,
        }
    }
}

/// The state of one key in its current window.
#[derive(Debug)]
struct Bucket {
    window_start: Instant,
    admitted: u32,
    /// Events suppressed and not yet reported by a passing or summary record.
    suppressed: u64,
}

/// Admits at most `per_minute` error records per event kind and error code
/// in each 60-second window.
///
/// A suppressed record adds its `count` (or 1) to its key's tally. The next
/// record of that key that passes carries the tally in its own `count`, and
/// [`ErrorRateLimiter::flush`] turns the tallies of ended windows into
/// summary records. `call` records always pass unchanged.
#[derive(Debug)]
pub struct ErrorRateLimiter {
    per_minute: u32,
    buckets: HashMap<Key, Bucket>,
}

// === impl ErrorRateLimiter ===

impl ErrorRateLimiter {
    /// Creates a limiter that admits `per_minute` records per key and window.
    /// With 0 every error record is suppressed and only summaries come out.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: HashMap::new(),
        }
    }

    /// Returns `record` if it may be written now, with `count` raised by the
    /// events suppressed before it, or `None` if it is suppressed.
    pub fn admit(&mut self, mut record: AuditRecord, now: Instant) -> Option<AuditRecord> {
        if record.event == AuditEvent::Call {
            return Some(record);
        }

        let key = self.key_for(&record);
        let per_minute = self.per_minute;
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            window_start: now,
            admitted: 0,
            suppressed: 0,
        });

        if now.saturating_duration_since(bucket.window_start) >= WINDOW {
            bucket.window_start = now;
            bucket.admitted = 0;
        }

        let own_count = record.count.unwrap_or(1);
        if bucket.admitted >= per_minute {
            bucket.suppressed = bucket.suppressed.saturating_add(own_count);
            return None;
        }

        bucket.admitted += 1;
        if bucket.suppressed > 0 {
            record.count = Some(own_count.saturating_add(bucket.suppressed));
            bucket.suppressed = 0;
        }
        Some(record)
    }

    /// Ends the windows that are over at `now`. Returns one summary record per
    /// key with suppressed events, and removes the keys of ended windows.
    pub fn flush(&mut self, now: Instant) -> Vec<AuditRecord> {
        let mut summaries = Vec::new();
        self.buckets.retain(|key, bucket| {
            if now.saturating_duration_since(bucket.window_start) < WINDOW {
                return true;
            }
            if bucket.suppressed > 0 {
                summaries.push(summary_record(key, bucket.suppressed));
            }
            false
        });
        summaries
    }

    fn key_for(&self, record: &AuditRecord) -> Key {
        let key = Key::Code(record.event, record.error_code.clone());
        if self.buckets.contains_key(&key) || self.buckets.len() < MAX_KEYS {
            key
        } else {
            Key::Overflow(record.event)
        }
    }
}

/// Builds the record that reports `suppressed` events of `key`.
fn summary_record(key: &Key, suppressed: u64) -> AuditRecord {
    let event = key.event();
    let (code, message) = match key {
        Key::Code(_, Some(code)) => (
            Some(code.clone()),
            format!(
                "{suppressed} {} events with code {code} suppressed by the rate limit",
                event.as_str()
            ),
        ),
        Key::Code(_, None) => (
            None,
            format!(
                "{suppressed} {} events suppressed by the rate limit",
                event.as_str()
            ),
        ),
        Key::Overflow(_) => (
            None,
            format!(
                "{suppressed} {} events with codes beyond the first {MAX_KEYS} suppressed by the rate limit",
                event.as_str()
            ),
        ),
    };

    let mut record = AuditRecord::new(event, message);
    record.error_code = code;
    record.count = Some(suppressed);
    record
}

/// Bounds how often a sink reports its write failures: at most one report per
/// [`WINDOW`], which gives the number of failures since the previous report.
#[derive(Clone, Debug, Default)]
pub struct FailureReportThrottle {
    last_report: Option<Instant>,
    unreported: u64,
}

// === impl FailureReportThrottle ===

impl FailureReportThrottle {
    /// Counts one failure at `now`. Returns the failures to report (this one
    /// included) if a report is due, or `None` if this one stays counted for
    /// the next report.
    pub fn failure(&mut self, now: Instant) -> Option<u64> {
        self.failures(1, now)
    }

    /// Counts `count` failures at `now`, as [`FailureReportThrottle::failure`]
    /// counts one.
    pub fn failures(&mut self, count: u64, now: Instant) -> Option<u64> {
        self.unreported = self.unreported.saturating_add(count);
        let due = match self.last_report {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= WINDOW,
        };
        if !due {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(event: AuditEvent, code: &str) -> AuditRecord {
        let mut record = AuditRecord::new(event, "bad input");
        record.error_code = Some(code.to_owned());
        record
    }

    #[test]
    fn call_records_are_never_limited() {
        let mut limiter = ErrorRateLimiter::new(0);
        let now = Instant::now();
        let call = AuditRecord::new(AuditEvent::Call, "allow");
        assert_eq!(limiter.admit(call.clone(), now), Some(call));
        assert!(limiter.flush(now + WINDOW).is_empty());
    }

    #[test]
    fn admits_per_minute_then_suppresses() {
        let mut limiter = ErrorRateLimiter::new(2);
        let now = Instant::now();
        let record = error(AuditEvent::DecodeError, "invalid_xml");
        assert!(limiter.admit(record.clone(), now).is_some());
        assert!(limiter.admit(record.clone(), now).is_some());
        assert_eq!(limiter.admit(record.clone(), now), None);
        assert_eq!(limiter.admit(record, now + Duration::from_secs(59)), None);
    }

    #[test]
    fn keys_are_event_and_code() {
        let mut limiter = ErrorRateLimiter::new(1);
        let now = Instant::now();
        assert!(
            limiter
                .admit(error(AuditEvent::DecodeError, "invalid_xml"), now)
                .is_some()
        );
        assert!(
            limiter
                .admit(error(AuditEvent::DecodeError, "invalid_json"), now)
                .is_some()
        );
        assert!(
            limiter
                .admit(error(AuditEvent::FramingAnomaly, "invalid_xml"), now)
                .is_some()
        );
        assert_eq!(
            limiter.admit(error(AuditEvent::DecodeError, "invalid_xml"), now),
            None
        );
    }

    #[test]
    fn next_passing_record_carries_count() {
        let mut limiter = ErrorRateLimiter::new(1);
        let start = Instant::now();
        let record = error(AuditEvent::DecodeError, "invalid_xml");
        assert_eq!(limiter.admit(record.clone(), start).unwrap().count, None);
        for _ in 0..3 {
            assert_eq!(
                limiter.admit(record.clone(), start + Duration::from_secs(1)),
                None
            );
        }

        let next = limiter
            .admit(record, start + WINDOW)
            .expect("new window admits");
        assert_eq!(next.count, Some(4), "itself plus the three suppressed");
        assert!(
            limiter.flush(start + WINDOW * 3).is_empty(),
            "count was already carried"
        );
    }

    #[test]
    fn suppressed_counts_add_up() {
        let mut limiter = ErrorRateLimiter::new(1);
        let now = Instant::now();
        let mut loss = AuditRecord::new(AuditEvent::CaptureLoss, "ring buffer records lost");
        loss.count = Some(10);
        assert_eq!(limiter.admit(loss.clone(), now).unwrap().count, Some(10));
        assert_eq!(limiter.admit(loss.clone(), now), None);
        assert_eq!(limiter.admit(loss.clone(), now), None);

        let next = limiter.admit(loss, now + WINDOW).unwrap();
        assert_eq!(next.count, Some(30));
    }

    #[test]
    fn flush_emits_summary_after_window() {
        let mut limiter = ErrorRateLimiter::new(1);
        let start = Instant::now();
        let record = error(AuditEvent::FramingAnomaly, "duplicate_content_length");
        limiter.admit(record.clone(), start);
        limiter.admit(record.clone(), start);
        limiter.admit(record, start);

        assert!(
            limiter.flush(start + Duration::from_secs(30)).is_empty(),
            "window still open"
        );

        let summaries = limiter.flush(start + WINDOW);
        assert_eq!(summaries.len(), 1);
        let summary = &summaries[0];
        assert_eq!(summary.event, AuditEvent::FramingAnomaly);
        assert_eq!(
            summary.error_code.as_deref(),
            Some("duplicate_content_length")
        );
        assert_eq!(summary.count, Some(2));
        assert!(
            summary.message.contains("suppressed"),
            "{}",
            summary.message
        );
        assert!(
            limiter.flush(start + WINDOW * 2).is_empty(),
            "summary is emitted once"
        );
    }

    #[test]
    fn flush_without_suppression_is_empty() {
        let mut limiter = ErrorRateLimiter::new(5);
        let start = Instant::now();
        limiter.admit(error(AuditEvent::CaptureGap, "missing_bytes"), start);
        assert!(limiter.flush(start + WINDOW).is_empty());
    }

    #[test]
    fn zero_per_minute_reports_only_summaries() {
        let mut limiter = ErrorRateLimiter::new(0);
        let start = Instant::now();
        let record = error(AuditEvent::DecodeError, "invalid_json");
        assert_eq!(limiter.admit(record.clone(), start), None);
        assert_eq!(
            limiter.admit(record, start + WINDOW + Duration::from_secs(1)),
            None
        );

        let summaries = limiter.flush(start + WINDOW * 3);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].count, Some(2));
    }

    #[test]
    fn key_table_is_bounded() {
        let mut limiter = ErrorRateLimiter::new(1);
        let now = Instant::now();
        for i in 0..MAX_KEYS {
            assert!(
                limiter
                    .admit(error(AuditEvent::DecodeError, &format!("code_{i}")), now)
                    .is_some()
            );
        }
        assert!(
            limiter
                .admit(error(AuditEvent::DecodeError, "one_more"), now)
                .is_some()
        );
        assert_eq!(
            limiter.admit(error(AuditEvent::DecodeError, "and_another"), now),
            None
        );
        assert_eq!(limiter.buckets.len(), MAX_KEYS + 1);

        let summaries = limiter.flush(now + WINDOW);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].error_code, None);
        assert_eq!(summaries[0].count, Some(1));
        assert!(limiter.buckets.is_empty());
    }

    #[test]
    fn failure_reports_at_most_once_per_window() {
        let mut throttle = FailureReportThrottle::default();
        let start = Instant::now();
        assert_eq!(throttle.failure(start), Some(1));
        assert_eq!(throttle.failure(start + Duration::from_secs(1)), None);
        assert_eq!(throttle.failure(start + Duration::from_secs(59)), None);
        assert_eq!(throttle.failure(start + WINDOW), Some(3));
        assert_eq!(
            throttle.failure(start + WINDOW + Duration::from_secs(1)),
            None
        );
    }
}

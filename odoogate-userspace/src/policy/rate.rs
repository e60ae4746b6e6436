//! Rate limits: `rate = "10/s"` with an optional `burst = N`, on an
//! integration or on one of its rules, enforced by token buckets.
//!
//! A bucket holds up to `burst` calls and refills at `rate`, so over any
//! interval of length `t` it lets through at most `rate * t + burst` calls.
//! Without `burst`, the bucket holds one second's worth of calls, rounded
//! up (`"600/min"` holds 10, `"10000/h"` holds 3).
//!
//! [`decide`](super::decide) stays pure: the caller keeps a [`RateLimiter`]
//! and asks it after an allow verdict, so a denied call never uses up a
//! token. Arithmetic is exact in integer nanoseconds, because a property
//! test checks the bound above.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::Integration;

/// The largest count of a rate or a burst; far above any Odoo's throughput.
pub const MAX_COUNT: u32 = 1_000_000_000;

/// Why a `rate` value is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("expected COUNT/UNIT with a unit among s, min, h (such as \"10/s\" or \"600/min\"), found {0:?}")]
    Shape(String),
    #[error("expected a count from 1 to {MAX_COUNT}, found {0:?}")]
    Count(String),
}

/// A rate with its burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls per `period`.
    pub count: u32,
    pub period: Period,
    /// Calls the bucket holds when full.
    pub burst: u32,
}

/// The unit of a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Second,
    Minute,
    Hour,
}

/// A call refused by a rate limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limit {limit} exceeded; retry after {:.3} s", retry_after.as_secs_f64())]
pub struct RateLimited {
    /// The limit, named by its key and value:
    /// `erp.allow[2].rate = 10/s, burst 10`.
    pub limit: String,
    /// How long until the bucket holds a call again.
    pub retry_after: Duration,
}

// === impl RateLimit ===

impl RateLimit {
    /// Parses `COUNT/UNIT`; `burst` defaults to one second's worth.
    pub fn parse(text: &str, burst: Option<u32>) -> Result<Self, RateError> {
        let shape = || RateError::Shape(text.to_owned());
        let (count, unit) = text.trim().split_once('/').ok_or_else(shape)?;
        let period = match unit.trim() {
            "s" => Period::Second,
            "min" => Period::Minute,
            "h" => Period::Hour,
            _ => return Err(shape()),
        };
        let count = parse_count(count.trim())?;
        let burst = match burst {
            Some(0) => return Err(RateError::Count("0".to_owned())),
            Some(burst) if burst > MAX_COUNT => return Err(RateError::Count(burst.to_string())),
            Some(burst) => burst,
            None => count.div_ceil(period.seconds()).max(1),
        };
        Ok(Self { count, period, burst })
    }

    fn period_nanos(self) -> u128 {
        u128::from(self.period.seconds()) * 1_000_000_000
    }
}

fn parse_count(text: &str) -> Result<u32, RateError> {
    match text.parse::<u32>() {
        Ok(count) if (1..=MAX_COUNT).contains(&count) => Ok(count),
        _ => Err(RateError::Count(text.to_owned())),
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}, burst {}", self.count, self.period.as_str(), self.burst)
    }
}

impl Period {
    pub fn seconds(self) -> u32 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "min",
            Self::Hour => "h",
        }
    }
}

/// A token bucket. The level counts in units where one call costs
/// `period_nanos` and each nanosecond adds `count`, so refills are exact.
#[derive(Clone, Debug)]
struct Bucket {
    limit: RateLimit,
    level: u128,
    last: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Self {
        Self { limit, level: Self::capacity(limit), last: now }
    }

    fn capacity(limit: RateLimit) -> u128 {
        u128::from(limit.burst) * limit.period_nanos()
    }

    /// Adds what accrued since the last refill. A `now` before it adds
    /// nothing, so a caller's clock going back cannot mint calls.
    fn refill(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.last) else {
            return;
        };
        let accrued = elapsed.as_nanos().saturating_mul(u128::from(self.limit.count));
        self.level = self.level.saturating_add(accrued).min(Self::capacity(self.limit));
        self.last = now;
    }

    /// Returns how long until one call fits, zero when it fits now.
    fn wait(&self) -> Duration {
        let cost = self.limit.period_nanos();
        let missing = cost.saturating_sub(self.level);
        let nanos = missing.div_ceil(u128::from(self.limit.count));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn take(&mut self) {
        self.level -= self.limit.period_nanos();
    }
}

/// A bucket's fill level, as `odoogate status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketLevel {
    /// The limit, named as in [`RateLimited::limit`].
    pub limit: String,
    /// Calls the bucket lets through now.
    pub available: u32,
    /// Calls the bucket holds when full.
    pub burst: u32,
}

/// Which bucket: an integration's own (`rule` = `None`) or one rule's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BucketKey {
    integration: String,
    rule: Option<usize>,
}

/// The token buckets of every rate limit, created on first use. Owned by
/// the pipeline or the proxy; one bucket per configured limit, so its size
/// is bounded by the configuration.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<BucketKey, Bucket>,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one call from the buckets of `integration` and of its rule
    /// `rule` (the index in `allow`), when both have one. When one is
    /// empty, nothing is taken and the error names the limit with the
    /// longest wait. A bucket whose limit changed in the configuration
    /// starts again full.
    pub fn check_and_take(
        &mut self,
        integration: &Integration,
        rule: Option<usize>,
        now: Instant,
    ) -> Result<(), RateLimited> {
        let mut limits = Vec::with_capacity(2);
        if let Some(limit) = integration.rate {
            limits.push((None, limit));
        }
        if let Some(index) = rule
            && let Some(limit) = integration.rules.get(index).and_then(|rule| rule.rate)
        {
            limits.push((Some(index), limit));
        }

        let mut refused: Option<RateLimited> = None;
        for &(index, limit) in &limits {
            let bucket = self.bucket(&integration.name, index, limit, now);
            bucket.refill(now);
            let wait = bucket.wait();
            let longer = refused.as_ref().is_none_or(|refused| wait > refused.retry_after);
            if !wait.is_zero() && longer {
                refused = Some(RateLimited { limit: limit_name(&integration.name, index, limit), retry_after: wait });
            }
        }
        if let Some(refused) = refused {
            return Err(refused);
        }

        for &(index, limit) in &limits {
            self.bucket(&integration.name, index, limit, now).take();
        }
        Ok(())
    }

    /// Drops the buckets of integrations no longer in `integrations`, after
    /// a configuration reload.
    pub fn retain(&mut self, integrations: &[Integration]) {
        self.buckets.retain(|key, _| integrations.iter().any(|integration| integration.name == key.integration));
    }

    /// Returns every bucket with the whole calls it holds at `now`, sorted
    /// by limit name, for `odoogate status`.
    pub fn buckets(&self, now: Instant) -> Vec<BucketLevel> {
        let mut levels: Vec<BucketLevel> = self
            .buckets
            .iter()
            .map(|(key, bucket)| {
                let mut bucket = bucket.clone();
                bucket.refill(now);
                let available = bucket.level / bucket.limit.period_nanos();
                BucketLevel {
                    limit: limit_name(&key.integration, key.rule, bucket.limit),
                    available: u32::try_from(available).unwrap_or(u32::MAX),
                    burst: bucket.limit.burst,
                }
            })
            .collect();
        levels.sort_by(|a, b| a.limit.cmp(&b.limit));
        levels
    }

    fn bucket(&mut self, integration: &str, rule: Option<usize>, limit: RateLimit, now: Instant) -> &mut Bucket {
        let key = BucketKey { integration: integration.to_owned(), rule };
        let bucket = self.buckets.entry(key).or_insert_with(|| Bucket::full(limit, now));
        if bucket.limit != limit {
            *bucket = Bucket::full(limit, now);
        }
        bucket
    }
}

fn limit_name(integration: &str, rule: Option<usize>, limit: RateLimit) -> String {
    match rule {
        Some(index) => format!("{integration}.allow[{index}].rate = {limit}"),
        None => format!("{integration}.rate = {limit}"),
    }
}

#[cfg(test)]
mod tests;

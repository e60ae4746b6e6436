//! The state decisions consult while a daemon runs: the temporary grants
//! from the grant file and the rate-limit buckets. [`decide`](super::decide)
//! stays pure; this is the part of the observe pipeline and of the enforce
//! proxy that owns the state and feeds it to
//! [`decide_with_grants`](super::decide_with_grants).
//!
//! [`CallCounts`] keeps the calls per integration and decision since start,
//! for `odoogate status`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::rate::{BucketLevel, RateLimited, RateLimiter};
use super::{Verdict, decide_with_grants};
use crate::audit::{AuditEvent, AuditRecord, Decision};
use crate::config::Config;
use crate::grant::store::{GrantError, GrantFile};
use crate::grant::{Grant, Grants};
use crate::identity::Resolution;
use crate::rpc::Call;

/// How often a daemon checks the grant file for changes it received no
/// message about. `odoogate grant` and `odoogate revoke-grant` send one over
/// the control socket ([`PolicyRuntime::reread_grants`]), so their changes
/// apply to the next call. This interval bounds the delay of changes made
/// any other way.
pub const GRANT_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A verdict with the rate limit that turned an allow into a denial, whose
/// `retry_after` the enforce proxy sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub verdict: Verdict,
    pub rate_limited: Option<RateLimited>,
}

/// The grants and rate-limit buckets of one daemon.
#[derive(Debug)]
pub struct PolicyRuntime {
    grants: GrantSource,
    limiter: RateLimiter,
}

impl PolicyRuntime {
    /// Opens the grant file at `grants_file`. An unreadable or invalid file
    /// is logged and means no grants until it is fixed, since a grant can
    /// only widen what the configuration allows.
    pub fn new(grants_file: &Path) -> Self {
        Self { grants: GrantSource::open(grants_file), limiter: RateLimiter::new() }
    }

    /// Follows a reloaded configuration: opens another grant file when
    /// `policy.grants_file` changed, and drops the buckets of integrations
    /// that are gone.
    pub fn set_config(&mut self, config: &Config) {
        if self.grants.path != config.policy.grants_file {
            self.grants = GrantSource::open(&config.policy.grants_file);
        }
        self.limiter.retain(&config.integrations);
    }

    /// Decides on `call` with the grants in force at `now`, rereading the
    /// grant file when it changed (checked at most every
    /// [`GRANT_FILE_CHECK_INTERVAL`], at `instant`); then, for an allowed
    /// call of an integration, takes one call from its rate-limit buckets at
    /// `instant`, which turns the allow into a denial when one is empty.
    pub fn decide(
        &mut self,
        call: &Call,
        resolution: &Resolution,
        config: &Config,
        now: SystemTime,
        instant: Instant,
    ) -> Decided {
        self.grants.refresh_when_due(instant);
        let mut verdict = decide_with_grants(call, resolution, config, self.grants.grants(), now);
        let integration = resolution.integration.as_deref().and_then(|name| config.integration(name));
        let rate_limited = match integration {
            Some(integration) if verdict.allowed => {
                self.limiter.check_and_take(integration, verdict.rule_index, instant).err()
            }
            _ => None,
        };
        if let Some(limited) = &rate_limited {
            verdict.rate_limited(limited);
        }
        Decided { verdict, rate_limited }
    }

    /// Rereads the grant file now, if it changed. `odoogate grant` requests
    /// this after it changed the file, so the next call is decided with it.
    pub fn reread_grants(&mut self) {
        self.grants.refresh();
    }

    /// Returns the grants active at `now`, as last read.
    pub fn active_grants(&self, now: SystemTime) -> Vec<Grant> {
        let Ok(now) = jiff::Timestamp::try_from(now) else {
            return Vec::new();
        };
        self.grants.grants().iter().filter(|grant| grant.is_active(now)).cloned().collect()
    }

    /// Returns the rate-limit buckets in use and their levels at `now`.
    pub fn buckets(&self, now: Instant) -> Vec<BucketLevel> {
        self.limiter.buckets(now)
    }
}

/// The grant file, or why it could not be read.
#[derive(Debug)]
struct GrantSource {
    path: PathBuf,
    file: Option<GrantFile>,
    /// The last error logged, so a broken file is logged once per change
    /// of the error and not once per call.
    last_error: Option<String>,
    /// When the file is next checked without a request.
    next_check: Option<Instant>,
}

impl GrantSource {
    fn open(path: &Path) -> Self {
        let mut source = Self { path: path.to_owned(), file: None, last_error: None, next_check: None };
        source.refresh();
        source
    }

    /// Checks the file when [`GRANT_FILE_CHECK_INTERVAL`] has passed since
    /// the last check that was due.
    fn refresh_when_due(&mut self, now: Instant) {
        if self.next_check.is_some_and(|due| now < due) {
            return;
        }
        self.next_check = now.checked_add(GRANT_FILE_CHECK_INTERVAL);
        self.refresh();
    }

    fn refresh(&mut self) {
        let result = match &mut self.file {
            Some(file) => file.refresh(),
            None => GrantFile::open(&self.path).map(|file| self.file = Some(file)),
        };
        match result {
            Ok(()) => self.last_error = None,
            Err(error) => self.log_error(&error),
        }
    }

    fn log_error(&mut self, error: &GrantError) {
        let text = error.to_string();
        if self.last_error.as_deref() == Some(text.as_str()) {
            return;
        }
        match self.file {
            Some(_) => tracing::error!(%error, "Failed to reread the grant file; the grants read before stay in force"),
            None => tracing::error!(%error, "Failed to read the grant file; no grant is in force until it is fixed"),
        }
        self.last_error = Some(text);
    }

    fn grants(&self) -> &Grants {
        static NONE: std::sync::OnceLock<Grants> = std::sync::OnceLock::new();
        match &self.file {
            Some(file) => file.grants(),
            None => NONE.get_or_init(Grants::default),
        }
    }
}

/// Most integrations [`CallCounts`] keeps apart. Names come from the
/// configuration, so this is reached only after many reloads that rename
/// integrations; later names are counted under [`OTHER`].
pub const MAX_COUNTED_INTEGRATIONS: usize = 1024;

/// The name calls of no integration are counted under.
pub const UNIDENTIFIED: &str = "unidentified";

/// The name calls beyond [`MAX_COUNTED_INTEGRATIONS`] are counted under.
pub const OTHER: &str = "(other)";

/// Calls by decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecisionCounts {
    pub allow: u64,
    pub deny: u64,
    pub would_deny: u64,
}

/// Calls per integration and decision since the daemon started, shared by
/// the thread that writes call records and the control socket.
#[derive(Debug, Default)]
pub struct CallCounts {
    counts: Mutex<BTreeMap<String, DecisionCounts>>,
}

impl CallCounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `record` when it is a call record with a decision.
    pub fn count(&self, record: &AuditRecord) {
        let (AuditEvent::Call, Some(decision)) = (record.event, record.decision) else {
            return;
        };
        let name = record.integration.as_deref().unwrap_or(UNIDENTIFIED);
        let mut counts = self.lock();
        let key = match counts.contains_key(name) || counts.len() < MAX_COUNTED_INTEGRATIONS {
            true => name,
            false => OTHER,
        };
        let entry = counts.entry(key.to_owned()).or_default();
        match decision {
            Decision::Allow => entry.allow += 1,
            Decision::Deny => entry.deny += 1,
            Decision::WouldDeny => entry.would_deny += 1,
        }
    }

    /// Returns the counts by integration name.
    pub fn snapshot(&self) -> BTreeMap<String, DecisionCounts> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, DecisionCounts>> {
        // Counters stay valid whatever a panicking writer left.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;

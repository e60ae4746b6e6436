//! The proxy's configuration and policy state, which `odoogate reload` and
//! SIGHUP change while connections are open.
//!
//! Each request takes the configuration in force when it starts with
//! [`LivePolicy::config`] and is decided and answered under it, even when
//! a reload lands in between.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::grant::Grant;
use crate::http::HttpRequest;
use crate::identity::Resolution;
use crate::pipeline::records;
use crate::policy::rate::BucketLevel;
use crate::policy::runtime::{CallCounts, Decided, PolicyRuntime};
use crate::rpc::Call;

/// The configuration in force, the grants and rate-limit buckets, and the
/// call counts, shared by every connection and by the control socket.
#[derive(Debug)]
pub struct LivePolicy {
    config: RwLock<Arc<Config>>,
    runtime: Mutex<PolicyRuntime>,
    counts: Arc<CallCounts>,
}

impl LivePolicy {
    pub fn new(config: Arc<Config>) -> Self {
        let runtime = PolicyRuntime::new(&config.policy.grants_file);
        Self { config: RwLock::new(config), runtime: Mutex::new(runtime), counts: Arc::new(CallCounts::new()) }
    }

    /// Returns the configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts `config` in force for requests that start from now on.
    pub fn set_config(&self, config: Arc<Config>) {
        self.runtime().set_config(&config);
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// Decides on `call` under `config`, with the grants and rate limits;
    /// see [`records::decide_call`].
    pub fn decide(&self, call: &Call, request: &HttpRequest, resolution: &Resolution, config: &Config) -> Decided {
        records::decide_call(call, request, resolution, config, &mut self.runtime())
    }

    pub fn counts(&self) -> Arc<CallCounts> {
        self.counts.clone()
    }

    /// Returns the grants active at `now`.
    pub fn active_grants(&self, now: SystemTime) -> Vec<Grant> {
        self.runtime().active_grants(now)
    }

    /// Returns the rate-limit buckets in use and their levels at `now`.
    pub fn buckets(&self, now: Instant) -> Vec<BucketLevel> {
        self.runtime().buckets(now)
    }

    /// Rereads the grant file now; see [`PolicyRuntime::reread_grants`].
    pub fn reread_grants(&self) {
        self.runtime().reread_grants();
    }

    fn runtime(&self) -> MutexGuard<'_, PolicyRuntime> {
        // Buckets and grants stay valid whatever a panicking holder left.
        self.runtime.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

//! The token store as the running proxy sees it: loaded again when the
//! file changes, so `odoogate token create`, `revoke` and `rotate` take
//! effect without a restart, and with `last_used` written back now and then.
//! The service credentials are read again on each configuration reload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::session::Tokens;
use crate::config::Config;
use crate::token::{CredentialsError, ServiceCredentials, TokenStore};

/// How often token uses are written back to the store file.
const LAST_USED_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// The loaded store and the service credentials, each replaced as a whole
/// on reload.
pub(super) struct LiveTokens {
    store: RwLock<Arc<TokenStore>>,
    credentials: RwLock<Arc<ServiceCredentials>>,
    last_flush: Mutex<Instant>,
    /// Set after a failed reload, so the failure is logged once and not on
    /// every maintenance tick.
    reload_failed: AtomicBool,
}

impl LiveTokens {
    pub fn new(tokens: Tokens) -> Self {
        Self {
            store: RwLock::new(Arc::new(tokens.store)),
            credentials: RwLock::new(Arc::new(tokens.credentials)),
            last_flush: Mutex::new(Instant::now()),
            reload_failed: AtomicBool::new(false),
        }
    }

    /// Returns the store as loaded now. A reload does not change the store
    /// a caller already holds.
    pub fn store(&self) -> Arc<TokenStore> {
        self.store.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Returns the service credentials as loaded now.
    pub fn credentials(&self) -> Arc<ServiceCredentials> {
        self.credentials.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads the service credentials that `config` points to and puts them
    /// in force. On error the credentials loaded before stay in force.
    pub fn reload_credentials(&self, config: &Config) -> Result<(), CredentialsError> {
        let credentials = ServiceCredentials::load(config)?;
        *self.credentials.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(credentials);
        Ok(())
    }

    /// Writes token uses back when they are due and loads the store again
    /// when its file changed. Uses seen by the old store are written before
    /// the new one is loaded, so none is lost.
    ///
    /// A store that fails to load leaves the old one in place and is tried
    /// again on the next call.
    // NOTE: until the reload succeeds, a token revoked in the broken file
    // stays valid; the failure is logged as an error.
    pub fn refresh(&self, now: Instant) {
        let current = self.store();
        let due = {
            let mut last_flush = self.last_flush.lock().unwrap_or_else(PoisonError::into_inner);
            let due = now.duration_since(*last_flush) >= LAST_USED_FLUSH_INTERVAL;
            if due {
                *last_flush = now;
            }
            due
        };
        let stale = current.is_stale();
        if due || stale {
            flush(&current);
        }
        if !stale {
            return;
        }
        let path = current.path().to_path_buf();
        match TokenStore::load(&path) {
            Ok(store) => {
                *self.store.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(store);
                self.reload_failed.store(false, Ordering::Relaxed);
                tracing::info!(store = %path.display(), "Loaded the changed token store");
            }
            Err(error) => {
                if !self.reload_failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(store = %path.display(), %error, "Failed to load the changed token store; keeping the tokens loaded before");
                }
            }
        }
    }

    /// Writes the token uses not yet written; called on shutdown.
    pub fn flush(&self) {
        flush(&self.store());
    }
}

fn flush(store: &TokenStore) {
    if let Err(error) = store.flush_last_used() {
        tracing::warn!(store = %store.path().display(), %error, "Failed to write token uses to the store");
    }
}

/// A handle on the running proxy's service credentials, for the
/// configuration reload.
#[derive(Clone)]
pub struct CredentialsReloader(pub(super) Arc<LiveTokens>);

impl CredentialsReloader {
    /// Reads the service credentials that `config` points to again. On
    /// error the proxy keeps forwarding with the credentials loaded before.
    pub fn reload(&self, config: &Config) -> Result<(), CredentialsError> {
        self.0.reload_credentials(config)
    }
}

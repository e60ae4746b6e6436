//! Scoped tokens on the observe path. A token sent as `X-Odoogate-Token`
//! (which Odoo ignores) or in a call's credential slot identifies its
//! integration as in enforce mode, so a site can hand out tokens while it
//! still observes.

use crate::token::TokenStore;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the store file is checked for changes (`odoogate token …`).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often the in-memory last-used times are written back.
const FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// The token store the pipeline identifies with, reloaded when its file
/// changes.
pub struct ObservedTokens {
    path: PathBuf,
    store: Option<TokenStore>,
    last_check: Instant,
    last_flush: Instant,
}

impl ObservedTokens {
    /// Loads the store at `path`. A store that cannot be read is logged and
    /// left out, so calls are identified by the other match kinds; the next
    /// change of the file is tried again.
    pub fn new(path: &Path) -> Self {
        let now = Instant::now();
        Self { path: path.to_owned(), store: load(path), last_check: now, last_flush: now }
    }

    pub fn store(&self) -> Option<&TokenStore> {
        self.store.as_ref()
    }

    /// Reloads the store when its file changed and flushes last-used times
    /// now and then. Cheap enough to call on every pipeline tick.
    pub fn refresh(&mut self, now: Instant) {
        if now.duration_since(self.last_check) >= CHECK_INTERVAL {
            self.check_now();
        }
        if now.duration_since(self.last_flush) >= FLUSH_INTERVAL {
            self.last_flush = now;
            self.flush();
        }
    }

    /// Loads the store now when its file changed, whatever the time since
    /// the last check.
    pub fn check_now(&mut self) {
        self.last_check = Instant::now();
        if self.store.as_ref().is_none_or(TokenStore::is_stale) {
            self.flush();
            if let Some(store) = load(&self.path) {
                self.store = Some(store);
            }
        }
    }

    /// Writes last-used times back; called on shutdown too.
    pub fn flush(&self) {
        if let Some(store) = &self.store {
            if let Err(error) = store.flush_last_used() {
                tracing::warn!(path = %self.path.display(), %error, "Failed to write token last-used times");
            }
        }
    }
}

fn load(path: &Path) -> Option<TokenStore> {
    match TokenStore::load(path) {
        Ok(store) => Some(store),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "Failed to load the token store: tokens do not identify calls");
            None
        }
    }
}

//! Web sessions tied to the integration that logged them in.
//!
//! A browser-style client logs in once with `/web/session/authenticate`
//! and then sends only its `session_id` cookie, which carries no API key.
//! When the login was matched to an integration, later calls with that
//! cookie belong to it too.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::Fingerprint;
use super::session_file::{SessionFileError, SessionLog};
use crate::secret::Secret;
use crate::token::TokenStore;

/// Default capacity of a [`SessionTable`].
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// Bindings older than this are forgotten. Odoo's own session cookie
/// lives 7 days (`Max-Age=604800`).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Session bindings, keyed by the SHA-256 of the session id so the table
/// never stores a usable session id.
///
/// Bounded: when full, a new binding evicts the binding made least
/// recently. Lookups do not refresh an entry, so the order is that of
/// binding, not of use.
#[derive(Debug)]
pub struct SessionTable {
    capacity: usize,
    entries: HashMap<[u8; 32], Binding>,
    /// Binding sequence number -> key, oldest first, for eviction.
    order: BTreeMap<u64, [u8; 32]>,
    next_sequence: u64,
    /// `policy.sessions_file`, when bindings outlive the process.
    log: Option<SessionLog>,
}

/// The integration a web session belongs to, as [`SessionTable::lookup`]
/// returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOwner<'a> {
    pub integration: &'a str,
    /// The scoped token that logged the session in, if one did.
    pub token: Option<Fingerprint>,
}

impl SessionOwner<'_> {
    /// Tells whether a scoped token opened the session and may no longer be
    /// used at `now`: revoked, expired or not in `tokens`. Without a token
    /// store no token may be used.
    pub fn token_ended(&self, tokens: Option<&TokenStore>, now: SystemTime) -> bool {
        self.token.is_some_and(|token| !tokens.is_some_and(|store| store.is_usable(&token, now)))
    }
}

#[derive(Debug)]
struct Binding {
    integration: String,
    /// The scoped token that logged the session in, if one did.
    token: Option<Fingerprint>,
    bound_at: SystemTime,
    sequence: u64,
}

impl SessionTable {
    /// Creates a table holding at most `capacity` sessions (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), entries: HashMap::new(), order: BTreeMap::new(), next_sequence: 0, log: None }
    }

    /// Opens a table kept in `path` (see [`super::session_file`]) with the
    /// bindings made at or after `cutoff`. Lines that cannot be read are
    /// logged and skipped.
    pub fn open(path: &Path, capacity: usize, cutoff: SystemTime) -> Result<Self, SessionFileError> {
        let (log, bindings, unreadable) = SessionLog::open(path, cutoff)?;
        if unreadable > 0 {
            tracing::warn!(file = %path.display(), lines = unreadable, "Skipped unreadable lines of the sessions file");
        }
        let mut table = Self::new(capacity);
        for binding in bindings {
            table.insert(binding.key, binding.integration, binding.token, binding.bound_at);
        }
        table.log = Some(log);
        Ok(table)
    }

    /// Opens the table kept in `path` without the bindings older than
    /// [`SESSION_LIFETIME`], or an in-memory one without `path` or when the
    /// file cannot be used (logged: bindings then end with the process).
    pub fn open_or_in_memory(path: Option<&Path>) -> Self {
        let Some(path) = path else {
            return Self::default();
        };
        match Self::open(path, DEFAULT_MAX_SESSIONS, lifetime_cutoff(SystemTime::now())) {
            Ok(table) => {
                tracing::info!(file = %path.display(), sessions = table.len(), "Loaded the web session bindings");
                table
            }
            Err(error) => {
                tracing::warn!(%error, "Keeping web session bindings in memory only");
                Self::default()
            }
        }
    }

    /// Ties `session` to `integration`, replacing any earlier binding of the
    /// same session. `token` is the scoped token that logged it in, if one
    /// did, whose end also ends the session ([`SessionOwner::token_ended`]).
    pub fn bind(&mut self, session: &Secret, integration: &str, token: Option<Fingerprint>, now: SystemTime) {
        let key = session_key(session);
        self.insert(key, integration.to_owned(), token, now);
        let written = self.log.as_mut().map(|log| log.bind(&key, integration, token.as_ref(), now));
        self.after_write(written);
    }

    fn insert(&mut self, key: [u8; 32], integration: String, token: Option<Fingerprint>, bound_at: SystemTime) {
        self.remove_key(&key);
        while self.entries.len() >= self.capacity {
            self.evict_oldest();
        }

        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.order.insert(sequence, key);
        self.entries.insert(key, Binding { integration, token, bound_at, sequence });
    }

    /// Stops writing the file after a failed write, with one warning: the
    /// bindings then end with the process.
    fn after_write(&mut self, written: Option<std::io::Result<()>>) {
        if let Some(Err(error)) = written {
            let file = self.log.take().map(|log| log.path().display().to_string()).unwrap_or_default();
            tracing::warn!(%file, %error, "Failed to write the sessions file; keeping web session bindings in memory only");
        }
    }

    /// Returns the owner of `session`: its integration and the scoped token
    /// that logged it in, if one did. The caller checks that token, since a
    /// session lasts only as long as its token.
    pub fn lookup(&self, session: &Secret) -> Option<SessionOwner<'_>> {
        let binding = self.entries.get(&session_key(session))?;
        Some(SessionOwner { integration: &binding.integration, token: binding.token })
    }

    /// Forgets `session`, after a logout. Returns whether it was bound.
    pub fn unbind(&mut self, session: &Secret) -> bool {
        let key = session_key(session);
        let removed = self.remove_key(&key);
        if removed {
            let written = self.log.as_mut().map(|log| log.unbind(&key));
            self.after_write(written);
        }
        removed
    }

    /// Forgets every binding made before `cutoff`, which the caller sets
    /// from Odoo's session lifetime. Returns how many were removed.
    pub fn expire_before(&mut self, cutoff: SystemTime) -> usize {
        let expired: Vec<[u8; 32]> =
            self.entries.iter().filter(|(_, binding)| binding.bound_at < cutoff).map(|(key, _)| *key).collect();
        for key in &expired {
            self.remove_key(key);
        }
        expired.len()
    }

    /// Forgets every binding older than [`SESSION_LIFETIME`] at `now`.
    pub fn expire_old(&mut self, now: SystemTime) -> usize {
        self.expire_before(lifetime_cutoff(now))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn remove_key(&mut self, key: &[u8; 32]) -> bool {
        let Some(binding) = self.entries.remove(key) else {
            return false;
        };
        self.order.remove(&binding.sequence);
        true
    }

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_first() {
            self.entries.remove(&key);
        }
    }
}

impl Default for SessionTable {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SESSIONS)
    }
}

/// Returns the instant before which a binding is older than
/// [`SESSION_LIFETIME`].
fn lifetime_cutoff(now: SystemTime) -> SystemTime {
    now.checked_sub(SESSION_LIFETIME).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn session_key(session: &Secret) -> [u8; 32] {
    Sha256::digest(session.expose().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Returns the integration that owns `session`.
    fn owner<'a>(table: &'a SessionTable, session: &str) -> Option<&'a str> {
        table.lookup(&Secret::new(session)).map(|owner| owner.integration)
    }

    #[test]
    fn binding_keeps_its_token() {
        let mut table = SessionTable::new(4);
        let token = Fingerprint::of(&Secret::new("odg_example"));
        table.bind(&Secret::new("s1"), "n8n", Some(token), at(1));
        table.bind(&Secret::new("s2"), "n8n", None, at(1));
        assert_eq!(table.lookup(&Secret::new("s1")), Some(SessionOwner { integration: "n8n", token: Some(token) }));
        assert_eq!(table.lookup(&Secret::new("s2")), Some(SessionOwner { integration: "n8n", token: None }));
    }

    #[test]
    fn bound_session_is_found() {
        let mut table = SessionTable::new(4);
        table.bind(&Secret::new("s1"), "n8n", None, at(1));
        assert_eq!(owner(&table, "s1"), Some("n8n"));
        assert_eq!(owner(&table, "s2"), None);
    }

    #[test]
    fn rebinding_replaces_integration() {
        let mut table = SessionTable::new(4);
        table.bind(&Secret::new("s1"), "n8n", None, at(1));
        table.bind(&Secret::new("s1"), "stats", None, at(2));
        assert_eq!(owner(&table, "s1"), Some("stats"));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn full_table_evicts_oldest_binding() {
        let mut table = SessionTable::new(2);
        table.bind(&Secret::new("s1"), "a", None, at(1));
        table.bind(&Secret::new("s2"), "b", None, at(2));
        table.bind(&Secret::new("s1"), "a", None, at(3));
        table.bind(&Secret::new("s3"), "c", None, at(4));
        assert_eq!(table.len(), 2);
        assert_eq!(owner(&table, "s2"), None);
        assert_eq!(owner(&table, "s1"), Some("a"));
        assert_eq!(owner(&table, "s3"), Some("c"));
    }

    #[test]
    fn unbind_and_expire_remove_entries() {
        let mut table = SessionTable::new(8);
        table.bind(&Secret::new("s1"), "a", None, at(10));
        table.bind(&Secret::new("s2"), "b", None, at(20));
        table.bind(&Secret::new("s3"), "c", None, at(30));

        assert!(table.unbind(&Secret::new("s3")));
        assert!(!table.unbind(&Secret::new("s3")));
        assert_eq!(table.expire_before(at(15)), 1);
        assert_eq!(owner(&table, "s1"), None);
        assert_eq!(owner(&table, "s2"), Some("b"));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn opened_table_keeps_bindings_across_reopen() {
        let dir = std::env::temp_dir().join(format!("odoogate-sessions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sessions.json");

        let mut table = SessionTable::open(&path, 8, at(0)).unwrap();
        table.bind(&Secret::new("s1"), "n8n", None, at(100));
        table.bind(&Secret::new("s2"), "erp", None, at(100));
        table.unbind(&Secret::new("s2"));
        table.bind(&Secret::new("s3"), "old", None, at(5));
        drop(table);

        let table = SessionTable::open(&path, 8, at(50)).unwrap();
        assert_eq!(owner(&table, "s1"), Some("n8n"));
        assert_eq!(owner(&table, "s2"), None, "the logout is kept");
        assert_eq!(owner(&table, "s3"), None, "bindings before the cutoff expire");
        assert!(!std::fs::read_to_string(&path).unwrap().contains("s1"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn table_stores_no_session_id() {
        let mut table = SessionTable::new(2);
        table.bind(&Secret::new("very-secret-session"), "a", None, at(1));
        assert!(!format!("{table:?}").contains("very-secret-session"));
    }
}

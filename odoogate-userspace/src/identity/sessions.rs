//! Web sessions tied to the integration that logged them in.
//!
//! A browser-style client logs in once with `/web/session/authenticate`
//! and then sends only its `session_id` cookie, which carries no API key.
//! When the login was matched to an integration, later calls with that
//! cookie belong to it too, for as long as Odoo keeps the session: Odoo
//! reaps a session after a lifetime without use ([`SESSION_LIFETIME`] by
//! default), so a binding ends that long after the last call that used it
//! ([`SessionTable::touch`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::Fingerprint;
use super::session_file::{Compacted, Compaction, SavedBinding, SessionFileError, SessionLog};
use crate::config::Config;
use crate::secret::Secret;
use crate::token::TokenStore;

/// Default capacity of a [`SessionTable`].
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// Bindings unused for this long are dropped unless
/// `policy.session_lifetime_secs` sets another lifetime. Odoo's session cookie
/// lives 7 days (`Max-Age=604800`), and Odoo deletes sessions unused for
/// as long (`sessions.max_inactivity_seconds`, by default 7 days).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a binding in use goes without a new line in the sessions
/// file. Each line records the binding's last use, so after a restart a
/// binding in use is dropped at most this much earlier than Odoo deletes
/// its session, and a session used all day adds 24 lines a day.
pub const USE_SAVE_INTERVAL: Duration = Duration::from_secs(3600);

/// The sessions file is compacted once it has this many lines more than
/// twice the bindings it holds.
const COMPACT_SLACK_LINES: usize = 10_000;

/// Session bindings, keyed by the SHA-256 of the session id so the table
/// never stores a usable session id.
///
/// Bounded: when full, a new binding evicts the binding least recently
/// made or touched ([`SessionTable::touch`]).
#[derive(Debug)]
pub struct SessionTable {
    capacity: usize,
    entries: HashMap<[u8; 32], Binding>,
    /// Binding or touch sequence number -> key, oldest first, for
    /// eviction.
    order: BTreeMap<u64, [u8; 32]>,
    next_sequence: u64,
    /// `policy.sessions_file`, when bindings outlive the process.
    log: Option<SessionLog>,
    /// How long a binding lasts after its last use.
    lifetime: Duration,
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
    /// used at `now`: revoked, expired or not in `tokens`, or refused by
    /// `config` because the session's integration is gone or its match has
    /// no `token = true` any more. Without a token store no token may be
    /// used.
    pub fn token_ended(&self, config: &Config, tokens: Option<&TokenStore>, now: SystemTime) -> bool {
        let accepts_tokens = super::token_acceptance(config, self.integration).is_ok();
        self.token.is_some_and(|token| !accepts_tokens || !tokens.is_some_and(|store| store.is_usable(&token, now)))
    }
}

#[derive(Debug)]
struct Binding {
    integration: String,
    /// The scoped token that logged the session in, if one did.
    token: Option<Fingerprint>,
    /// The login, or the last call with the session since.
    last_used: SystemTime,
    /// The last use the sessions file records.
    saved_use: SystemTime,
    sequence: u64,
}

impl SessionTable {
    /// Creates a table holding at most `capacity` sessions (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_sequence: 0,
            log: None,
            lifetime: SESSION_LIFETIME,
        }
    }

    /// Makes bindings last `lifetime` after their last use instead of
    /// [`SESSION_LIFETIME`], from the next [`SessionTable::expire_old`] on.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Makes bindings last `lifetime` after their last use from the next
    /// [`SessionTable::expire_old`] on, as a reloaded configuration sets it.
    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
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
            table.insert(binding.key, binding.integration, binding.token, binding.last_used);
        }
        table.log = Some(log);
        Ok(table)
    }

    /// Opens the table kept in `path` without the bindings unused for
    /// `lifetime`, or an in-memory one without `path` or when the file
    /// cannot be used (logged: bindings then end with the process).
    /// Bindings last `lifetime` after their last use.
    pub fn open_or_in_memory(path: Option<&Path>, lifetime: Duration) -> Self {
        let Some(path) = path else {
            return Self::default().with_lifetime(lifetime);
        };
        match Self::open(path, DEFAULT_MAX_SESSIONS, lifetime_cutoff(SystemTime::now(), lifetime)) {
            Ok(table) => {
                tracing::info!(file = %path.display(), sessions = table.len(), "Loaded the web session bindings");
                table.with_lifetime(lifetime)
            }
            Err(error) => {
                tracing::warn!(%error, "Keeping web session bindings in memory only");
                Self::default().with_lifetime(lifetime)
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

    fn insert(&mut self, key: [u8; 32], integration: String, token: Option<Fingerprint>, last_used: SystemTime) {
        self.remove_key(&key);
        while self.entries.len() >= self.capacity {
            self.evict_oldest();
        }

        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.order.insert(sequence, key);
        self.entries.insert(key, Binding { integration, token, last_used, saved_use: last_used, sequence });
    }

    /// Records that a call used `session` at `now`, which keeps its binding
    /// for the table's lifetime from then and makes it the last to be
    /// evicted. The sessions file gets a line at most every
    /// [`USE_SAVE_INTERVAL`] per session. Returns whether `session` is
    /// bound.
    pub fn touch(&mut self, session: &Secret, now: SystemTime) -> bool {
        let key = session_key(session);
        let Some(binding) = self.entries.get_mut(&key) else {
            return false;
        };
        binding.last_used = binding.last_used.max(now);
        self.order.remove(&binding.sequence);
        binding.sequence = self.next_sequence;
        self.order.insert(self.next_sequence, key);
        self.next_sequence += 1;

        let due = now.duration_since(binding.saved_use).is_ok_and(|since| since >= USE_SAVE_INTERVAL);
        if !due {
            return true;
        }
        binding.saved_use = binding.last_used;
        let written = self.log.as_mut().map(|log| log.bind(&key, &binding.integration, binding.token.as_ref(), binding.last_used));
        self.after_write(written);
        true
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

    /// Forgets every binding last used before `cutoff`, which the caller
    /// sets from Odoo's session lifetime. Returns how many were removed.
    pub fn expire_before(&mut self, cutoff: SystemTime) -> usize {
        let expired: Vec<[u8; 32]> = self.entries.iter().filter(|(_, binding)| binding.last_used < cutoff).map(|(key, _)| *key).collect();
        for key in &expired {
            self.remove_key(key);
        }
        expired.len()
    }

    /// Forgets every binding unused for the table's lifetime at `now`. The
    /// daemon calls it on its maintenance tick.
    pub fn expire_old(&mut self, now: SystemTime) -> usize {
        self.expire_before(lifetime_cutoff(now, self.lifetime))
    }

    /// Returns the compacted sessions file to write, one line per binding
    /// in eviction order, once the file's other lines (replaced bindings,
    /// logouts, uses) outnumber [`COMPACT_SLACK_LINES`] plus the bindings.
    /// The caller writes it without holding the table
    /// ([`Compaction::write`]) and hands the result to
    /// [`SessionTable::finish_compaction`]. Changes made in between reach
    /// both files.
    pub fn start_compaction(&mut self) -> Option<Compaction> {
        let log = self.log.as_mut()?;
        if log.lines() <= 2 * self.entries.len() + COMPACT_SLACK_LINES {
            return None;
        }
        let entries = &mut self.entries;
        let bindings = self.order.values().filter_map(|key| {
            let binding = entries.get_mut(key)?;
            binding.saved_use = binding.last_used;
            Some(SavedBinding { key: *key, integration: binding.integration.clone(), token: binding.token, last_used: binding.last_used })
        });
        log.start_compaction(bindings)
    }

    /// Appends to the compacted file from now on. After a failed
    /// compaction the table stops writing the file, as after a failed
    /// write, and the file keeps every line written before.
    pub fn finish_compaction(&mut self, written: std::io::Result<Compacted>) {
        let finished = self.log.as_mut().map(|log| log.finish_compaction(written));
        self.after_write(finished);
    }

    /// Logs session `churn` in to `integration` at `at` and out again,
    /// `times` times, which adds two lines each to the sessions file, as a
    /// client that logs in for every call does.
    #[cfg(test)]
    pub fn churn(&mut self, integration: &str, times: usize, at: SystemTime) {
        for _ in 0..times {
            self.bind(&Secret::new("churn"), integration, None, at);
            self.unbind(&Secret::new("churn"));
        }
    }

    /// Compacts the sessions file in place when it has grown long, as the
    /// daemons do on a thread of their own.
    #[cfg(test)]
    pub fn compact_if_long(&mut self) {
        if let Some(compaction) = self.start_compaction() {
            self.finish_compaction(compaction.write());
        }
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

/// Returns the instant before which a binding last used is older than
/// `lifetime`.
fn lifetime_cutoff(now: SystemTime, lifetime: Duration) -> SystemTime {
    now.checked_sub(lifetime).unwrap_or(SystemTime::UNIX_EPOCH)
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

    /// Returns an empty directory for test `name`, and the path of a
    /// sessions file in it.
    fn fresh_file(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("odoogate-sessions-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sessions.json");
        (dir, path)
    }

    fn line_count(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
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
        let (dir, path) = fresh_file("reopen");

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
    fn touch_extends_the_binding_and_delays_its_eviction() {
        let mut table = SessionTable::new(2);
        table.bind(&Secret::new("s1"), "a", None, at(10));
        table.bind(&Secret::new("s2"), "b", None, at(20));
        assert!(table.touch(&Secret::new("s1"), at(30)));
        assert!(!table.touch(&Secret::new("s9"), at(30)), "an unbound session stays unbound");
        assert_eq!(table.len(), 2);

        // s2 is now the least recently used.
        table.bind(&Secret::new("s3"), "c", None, at(40));
        assert_eq!(owner(&table, "s2"), None);
        assert_eq!(owner(&table, "s1"), Some("a"));

        // A use counts from its time, an older one changes nothing.
        assert!(table.touch(&Secret::new("s1"), at(25)));
        assert_eq!(table.expire_before(at(30)), 0);
        assert_eq!(table.expire_before(at(41)), 2);
    }

    #[test]
    fn lifetime_sets_when_bindings_expire() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let mut short = SessionTable::new(4).with_lifetime(hour);
        let mut default = SessionTable::new(4);
        for table in [&mut short, &mut default] {
            table.bind(&Secret::new("s1"), "a", None, now - 2 * hour);
            table.bind(&Secret::new("s2"), "a", None, now - 2 * hour);
            table.touch(&Secret::new("s2"), now - hour / 2);
            table.expire_old(now);
        }
        assert_eq!(owner(&short, "s1"), None, "unused for two hours");
        assert_eq!(owner(&short, "s2"), Some("a"), "used half an hour ago");
        assert_eq!(owner(&default, "s1"), Some("a"), "within Odoo's 7 days");

        // A reload that shortens the lifetime applies from the next tick.
        default.set_lifetime(hour);
        default.expire_old(now);
        assert_eq!(owner(&default, "s1"), None, "unused for two hours");
        assert_eq!(owner(&default, "s2"), Some("a"), "used half an hour ago");

        // At start, the file's bindings are read with the same lifetime.
        let (dir, path) = fresh_file("lifetime");
        let mut table = SessionTable::open_or_in_memory(Some(&path), hour);
        table.bind(&Secret::new("old"), "a", None, now - 2 * hour);
        table.bind(&Secret::new("new"), "a", None, now - hour / 2);
        drop(table);
        let table = SessionTable::open_or_in_memory(Some(&path), hour);
        assert_eq!(owner(&table, "old"), None);
        assert_eq!(owner(&table, "new"), Some("a"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn uses_reach_the_file_once_per_interval() {
        let (dir, path) = fresh_file("use");
        let hour = USE_SAVE_INTERVAL.as_secs();

        let mut table = SessionTable::open(&path, 8, at(0)).unwrap();
        table.bind(&Secret::new("s1"), "n8n", None, at(1000));
        table.touch(&Secret::new("s1"), at(1000 + hour - 1));
        assert_eq!(line_count(&path), 1, "a use within the interval writes nothing");
        table.touch(&Secret::new("s1"), at(1000 + hour));
        table.touch(&Secret::new("s1"), at(1000 + hour + 5));
        assert_eq!(line_count(&path), 2);
        drop(table);

        // The file keeps the last use it recorded, so a cutoff after the
        // login but before that use keeps the binding.
        let table = SessionTable::open(&path, 8, at(1001)).unwrap();
        assert_eq!(owner(&table, "s1"), Some("n8n"));
        drop(table);
        let table = SessionTable::open(&path, 8, at(1000 + hour + 1)).unwrap();
        assert_eq!(owner(&table, "s1"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn long_file_is_compacted_on_the_tick() {
        let (dir, path) = fresh_file("compact");

        let mut table = SessionTable::open(&path, 8, at(0)).unwrap();
        table.bind(&Secret::new("kept"), "erp", None, at(100));
        table.churn("n8n", COMPACT_SLACK_LINES / 2, at(100));
        table.compact_if_long();
        assert_eq!(line_count(&path), 1 + COMPACT_SLACK_LINES, "not yet past the slack");
        table.bind(&Secret::new("churn"), "n8n", None, at(150));
        table.unbind(&Secret::new("churn"));
        table.bind(&Secret::new("churn"), "n8n", None, at(150));
        table.touch(&Secret::new("kept"), at(100 + USE_SAVE_INTERVAL.as_secs()));
        table.compact_if_long();
        assert_eq!(line_count(&path), 2, "one line per binding");

        // Appends go to the new file, and the last use is kept.
        table.bind(&Secret::new("late"), "stats", None, at(300));
        drop(table);
        let table = SessionTable::open(&path, 8, at(150)).unwrap();
        assert_eq!(owner(&table, "kept"), Some("erp"));
        assert_eq!(owner(&table, "churn"), Some("n8n"));
        assert_eq!(owner(&table, "late"), Some("stats"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The proxy writes the compacted file without the table's lock, so
    /// changes made meanwhile must reach the new file.
    #[test]
    fn changes_during_compaction_reach_new_file() {
        let (dir, path) = fresh_file("compact-meanwhile");
        let mut table = SessionTable::open(&path, 8, at(0)).unwrap();
        table.bind(&Secret::new("kept"), "erp", None, at(100));
        table.bind(&Secret::new("ended"), "erp", None, at(100));
        table.churn("n8n", COMPACT_SLACK_LINES / 2 + 2, at(100));

        let compaction = table.start_compaction().expect("the file is past the slack");
        assert!(table.start_compaction().is_none(), "one compaction at a time");
        table.bind(&Secret::new("late"), "stats", None, at(300));
        table.unbind(&Secret::new("ended"));
        table.finish_compaction(compaction.write());
        assert_eq!(line_count(&path), 4, "two bindings, then the two changes");
        table.bind(&Secret::new("later"), "stats", None, at(400));
        assert_eq!(line_count(&path), 5);

        drop(table);
        let table = SessionTable::open(&path, 8, at(50)).unwrap();
        assert_eq!(owner(&table, "kept"), Some("erp"));
        assert_eq!(owner(&table, "late"), Some("stats"));
        assert_eq!(owner(&table, "later"), Some("stats"));
        assert_eq!(owner(&table, "ended"), None, "the logout during the compaction is kept");
        assert_eq!(owner(&table, "churn"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn table_stores_no_session_id() {
        let mut table = SessionTable::new(2);
        table.bind(&Secret::new("very-secret-session"), "a", None, at(1));
        assert!(!format!("{table:?}").contains("very-secret-session"));
    }

    /// A sessions file line whose `at` does not fit in `SystemTime` is
    /// skipped as unreadable instead of ending the process.
    #[test]
    fn oversized_last_use_is_skipped() {
        let (dir, path) = fresh_file("huge-at");
        std::fs::create_dir_all(&dir).unwrap();
        let line = format!("{{\"bind\":\"{}\",\"integration\":\"erp\",\"at\":18446744073709551615}}\n", "ab".repeat(32));
        std::fs::write(&path, line).unwrap();
        let table = SessionTable::open_or_in_memory(Some(&path), SESSION_LIFETIME);
        assert_eq!(table.len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

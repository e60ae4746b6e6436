use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::AtomicUsize;

use super::*;

/// A fresh directory per test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("odoogate-token-store-{}-{unique}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn store(&self) -> PathBuf {
        self.0.join("state/tokens.json")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000 + seconds)
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn created_token_verifies_for_its_integration() {
    let dir = TempDir::new();
    let (record, token) = TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    let store = TokenStore::load(&dir.store()).unwrap();

    let check = store.verify(token.expose(), at(10));
    assert_eq!(check, TokenCheck::Valid { integration: "n8n".to_owned(), fingerprint: record.sha256.clone() });
    assert_eq!(record.id.len(), 2 * ID_BYTES);
    assert_eq!(record.sha256, Fingerprint::of(&token).to_hex());
}

#[test]
fn file_holds_digest_not_token() {
    let dir = TempDir::new();
    let (_, token) = TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    let text = fs::read_to_string(dir.store()).unwrap();
    assert!(!text.contains(token.expose()));
    assert!(!text.contains(&token.expose()[format::PREFIX.len()..]));
    let mode = fs::metadata(dir.store()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn unknown_and_malformed_tokens_fail() {
    let dir = TempDir::new();
    TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    let store = TokenStore::load(&dir.store()).unwrap();

    let stranger = format::generate().unwrap();
    assert_eq!(store.verify(stranger.expose(), at(1)), TokenCheck::Unknown);
    assert_eq!(store.verify("odg_short", at(1)), TokenCheck::Malformed);
    assert_eq!(store.verify("hunter2", at(1)), TokenCheck::Malformed);
    // A token of the right length whose last digit was mistyped fails its
    // checksum.
    let mut mistyped = stranger.expose().to_owned();
    let last = if mistyped.ends_with('0') { "1" } else { "0" };
    mistyped.replace_range(mistyped.len() - 1.., last);
    assert_eq!(store.verify(&mistyped, at(1)), TokenCheck::Malformed);
}

#[test]
fn token_expires_at_deadline() {
    let dir = TempDir::new();
    let (record, token) = TokenStore::create(&dir.store(), "n8n", Some(DAY), at(0)).unwrap();
    assert_eq!(record.expires, Some(timestamp(at(86_400)).unwrap()));
    let store = TokenStore::load(&dir.store()).unwrap();

    assert!(matches!(store.verify(token.expose(), at(86_399)), TokenCheck::Valid { .. }));
    assert_eq!(store.verify(token.expose(), at(86_400)), TokenCheck::Expired { integration: "n8n".to_owned() });
}

#[test]
fn revoked_token_fails() {
    let dir = TempDir::new();
    let (record, token) = TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    TokenStore::revoke(&dir.store(), &record.id, at(5)).unwrap();

    let store = TokenStore::load(&dir.store()).unwrap();
    assert_eq!(store.verify(token.expose(), at(6)), TokenCheck::Revoked { integration: "n8n".to_owned() });
    assert!(matches!(TokenStore::revoke(&dir.store(), &record.id, at(7)), Err(TokenError::AlreadyRevoked(_))));
    assert!(matches!(TokenStore::revoke(&dir.store(), "nope", at(7)), Err(TokenError::NotFound(_))));
}

#[test]
fn rotation_keeps_old_token_until_grace() {
    let dir = TempDir::new();
    let (old, old_token) = TokenStore::create(&dir.store(), "n8n", Some(30 * DAY), at(0)).unwrap();
    let (rotated, new, new_token) = TokenStore::rotate(&dir.store(), &old.id, DAY, at(100)).unwrap();

    assert_eq!(rotated.replaced_by.as_deref(), Some(new.id.as_str()));
    assert_eq!(new.integration, "n8n");
    assert_eq!(new.expires, Some(timestamp(at(100) + 30 * DAY).unwrap()));

    let store = TokenStore::load(&dir.store()).unwrap();
    assert!(matches!(store.verify(old_token.expose(), at(100 + 86_399)), TokenCheck::Valid { .. }));
    assert_eq!(store.verify(old_token.expose(), at(100 + 86_400)), TokenCheck::Expired { integration: "n8n".to_owned() });
    assert!(matches!(store.verify(new_token.expose(), at(100 + 86_400)), TokenCheck::Valid { .. }));
    assert_eq!(rotated.state(timestamp(at(200)).unwrap()), TokenState::Rotating);
}

#[test]
fn flush_does_not_recreate_removed_store() {
    let dir = TempDir::new();
    let (_, token) = TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    let store = TokenStore::load(&dir.store()).unwrap();
    assert!(matches!(store.verify(token.expose(), at(42)), TokenCheck::Valid { .. }));

    std::fs::remove_file(dir.store()).unwrap();
    store.flush_last_used().unwrap();
    assert!(!dir.store().exists(), "the flush wrote a new store");
}

#[test]
fn last_used_is_flushed_and_merged() {
    let dir = TempDir::new();
    let (record, token) = TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    let store = TokenStore::load(&dir.store()).unwrap();
    assert!(matches!(store.verify(token.expose(), at(42)), TokenCheck::Valid { .. }));

    // A token created by the CLI after the daemon loaded must survive the flush.
    let (later, _) = TokenStore::create(&dir.store(), "cron", None, at(50)).unwrap();
    assert!(store.is_stale());
    store.flush_last_used().unwrap();

    let reloaded = TokenStore::load(&dir.store()).unwrap();
    let records: Vec<_> = reloaded.records().cloned().collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].last_used, Some(timestamp(at(42)).unwrap()));
    assert_eq!(records[1].id, later.id);
    assert_eq!(records[1].last_used, None);
    assert_eq!(reloaded.last_used(&record.id), Some(timestamp(at(42)).unwrap()));
}

#[test]
fn missing_store_is_empty() {
    let dir = TempDir::new();
    let store = TokenStore::load(&dir.store()).unwrap();
    assert_eq!(store.records().count(), 0);
    assert_eq!(store.verify(format::generate().unwrap().expose(), at(0)), TokenCheck::Unknown);
}

#[test]
fn writable_store_is_rejected() {
    let dir = TempDir::new();
    TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    fs::set_permissions(dir.store(), fs::Permissions::from_mode(0o666)).unwrap();
    assert!(matches!(TokenStore::load(&dir.store()), Err(TokenError::Permissions { mode: 0o666, .. })));
}

#[test]
fn corrupt_store_is_rejected() {
    let dir = TempDir::new();
    TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    let text = fs::read_to_string(dir.store()).unwrap();
    fs::write(dir.store(), text.replace("\"version\": 1", "\"version\": 7")).unwrap();
    let error = TokenStore::load(&dir.store()).unwrap_err();
    assert!(error.to_string().contains("expected version 1"), "{error}");

    fs::write(dir.store(), "{\"version\": 1, \"tokens\": [{\"id\": 1}]}").unwrap();
    assert!(matches!(TokenStore::load(&dir.store()), Err(TokenError::Invalid { .. })));
}

#[test]
fn looks_like_token_checks_prefix() {
    assert!(TokenStore::looks_like_token("odg_anything"));
    assert!(!TokenStore::looks_like_token("0123456789abcdef0123456789abcdef01234567"));
}

/// Checks the format first, as `verify` did before it looked the digest up
/// first: the reference for what every presented text must still give.
fn verify_format_first(store: &TokenStore, presented: &str, now: SystemTime) -> TokenCheck {
    match format::parse(presented) {
        Err(_) => TokenCheck::Malformed,
        Ok(_) => store.verify(presented, now),
    }
}

#[test]
fn verify_agrees_with_format_first_check() {
    let dir = TempDir::new();
    let (_, active) = TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    let (revoked_record, revoked) = TokenStore::create(&dir.store(), "n8n", None, at(0)).unwrap();
    TokenStore::revoke(&dir.store(), &revoked_record.id, at(1)).unwrap();
    let (_, expired) = TokenStore::create(&dir.store(), "cron", Some(DAY), at(0)).unwrap();
    let store = TokenStore::load(&dir.store()).unwrap();
    let now = at(2 * 86_400);

    let active = active.expose().to_owned();
    let body = &active[format::PREFIX.len()..];
    let stranger = format::generate().unwrap().expose().to_owned();
    let mut mistyped = active.clone();
    let last = if mistyped.ends_with('0') { "1" } else { "0" };
    mistyped.replace_range(mistyped.len() - 1.., last);
    let inputs = [
        active.clone(),
        revoked.expose().to_owned(),
        expired.expose().to_owned(),
        stranger.clone(),
        mistyped,
        String::new(),
        format::PREFIX.to_owned(),
        "odg_short".to_owned(),
        "hunter2".to_owned(),
        format!("ODG_{body}"),
        format!("{active}\n"),
        format!(" {active}"),
        format!("{active}0"),
        active[..active.len() - 1].to_owned(),
        // 53 bytes, but `é` takes two of them.
        format!("odg_é{}", &body[2..]),
        format!("odg_-{}", &body[1..]),
        // 43 digits above 2^256, with a six-digit tail.
        format!("odg_{}{}", "z".repeat(43), &body[43..]),
        format!("odg_{}", "a".repeat(1 << 20)),
    ];
    for presented in &inputs {
        let excerpt: String = presented.chars().take(60).collect();
        assert_eq!(store.verify(presented, now), verify_format_first(&store, presented, now), "{excerpt:?}");
    }
    assert!(matches!(store.verify(&active, now), TokenCheck::Valid { .. }));
    assert_eq!(store.verify(&inputs[1], now), TokenCheck::Revoked { integration: "n8n".to_owned() });
    assert_eq!(store.verify(&inputs[2], now), TokenCheck::Expired { integration: "cron".to_owned() });
    assert_eq!(store.verify(&stranger, now), TokenCheck::Unknown);
    assert_eq!(store.verify(inputs.last().unwrap(), now), TokenCheck::Malformed);
}

use std::time::SystemTime;

use bytes::Bytes;

use super::*;
use crate::config::parse;
use crate::rpc::call::{CallKind, Credential, Protocol};
use crate::secret::Secret;

const API_KEY: &str = "0123456789abcdef0123456789abcdef01234567";

fn config(integrations: &str) -> Config {
    let head = "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\ntrusted_proxies = [\"127.0.0.1\"]\n\
                [policy]\nmode = \"observe\"\nunidentified = \"allow\"\n";
    parse(&format!("{head}{integrations}"), "test.toml").expect("valid test config")
}

fn integration(name: &str, matcher: &str) -> String {
    format!("[[integration]]\nname = \"{name}\"\nmatch = {matcher}\n")
}

fn key_match(secret: &str) -> String {
    format!("{{ api_key_sha256 = [\"{}\"] }}", Secret::new(secret).sha256_hex())
}

fn source(peer: &str, cgroup: Option<&str>) -> Source {
    Source {
        peer: SocketAddr::new(peer.parse().unwrap(), 40000),
        cgroup: cgroup.map(str::to_owned),
        pid: None,
        comm: None,
        conn_id: 1,
    }
}

fn call_with(slot: CredentialSlot, secret: &str) -> Call {
    let mut call = Call::new(Protocol::XmlRpc, CallKind::Model);
    call.credential = Some(Credential::new(slot, Secret::new(secret)));
    call
}

fn resolve_simple(config: &Config, call: Option<&Call>, source: &Source) -> Resolution {
    resolve(config, call, &Headers::default(), source, &SessionTable::default())
}

#[test]
fn ip_match_ties_call() {
    let config = config(&integration("form", "{ ip = [\"203.0.113.0/24\"] }"));
    let resolution = resolve_simple(&config, None, &source("203.0.113.10", None));
    assert_eq!(resolution.integration.as_deref(), Some("form"));
    assert_eq!(resolution.identity, Identity::Ip);
    assert_eq!(resolution.client_ip, "203.0.113.10".parse::<IpAddr>().unwrap());

    let other = resolve_simple(&config, None, &source("198.51.100.1", None));
    assert_eq!(other.integration, None);
    assert_eq!(other.identity, Identity::None);
}

#[test]
fn cgroup_match_tolerates_leading_slash() {
    let config = config(&integration("n8n", "{ cgroup = \"system.slice/*.service\" }"));
    let resolution = resolve_simple(&config, None, &source("127.0.0.1", Some("/system.slice/n8n.service")));
    assert_eq!(resolution.integration.as_deref(), Some("n8n"));
    assert_eq!(resolution.identity, Identity::Cgroup);

    assert_eq!(resolve_simple(&config, None, &source("127.0.0.1", None)).integration, None);
    let nested = resolve_simple(&config, None, &source("127.0.0.1", Some("system.slice/a/n8n.service")));
    assert_eq!(nested.integration, None);
}

#[test]
fn api_key_match_in_password_and_bearer() {
    let config = config(&integration("mcp", &key_match(API_KEY)));
    for slot in [CredentialSlot::Password, CredentialSlot::Bearer] {
        let call = call_with(slot, API_KEY);
        let resolution = resolve_simple(&config, Some(&call), &source("198.51.100.1", None));
        assert_eq!(resolution.integration.as_deref(), Some("mcp"), "{slot:?}");
        assert_eq!(resolution.identity, Identity::ApiKey);
        assert_eq!(resolution.key_fingerprint, Some(Secret::new(API_KEY).sha256_hex()));
    }
}

#[test]
fn odoogate_header_is_not_an_api_key() {
    let config = config(&integration("mcp", &key_match(API_KEY)));
    let call = call_with(CredentialSlot::OdoogateHeader, API_KEY);
    let resolution = resolve_simple(&config, Some(&call), &source("198.51.100.1", None));
    assert_eq!(resolution.integration, None);
    assert_eq!(resolution.key_fingerprint, None);
}

#[test]
fn fingerprint_only_for_keys() {
    let config = config(&integration("legacy", &key_match("a configured password")));
    let src = source("198.51.100.1", None);

    let password = call_with(CredentialSlot::Password, "hunter2");
    assert_eq!(resolve_simple(&config, Some(&password), &src).key_fingerprint, None);

    let unknown_key = call_with(CredentialSlot::Password, API_KEY);
    let resolution = resolve_simple(&config, Some(&unknown_key), &src);
    assert_eq!(resolution.integration, None);
    assert_eq!(resolution.key_fingerprint, Some(Secret::new(API_KEY).sha256_hex()));

    let configured = call_with(CredentialSlot::Password, "a configured password");
    let resolution = resolve_simple(&config, Some(&configured), &src);
    assert_eq!(resolution.integration.as_deref(), Some("legacy"));
    assert_eq!(resolution.key_fingerprint, Some(Secret::new("a configured password").sha256_hex()));
}

#[test]
fn conjunction_needs_every_key() {
    let matcher = format!("{{ api_key_sha256 = [\"{}\"], ip = [\"10.0.0.0/8\"] }}", Secret::new(API_KEY).sha256_hex());
    let config = config(&integration("mcp", &matcher));
    let call = call_with(CredentialSlot::Password, API_KEY);

    let inside = resolve_simple(&config, Some(&call), &source("10.1.2.3", None));
    assert_eq!(inside.integration.as_deref(), Some("mcp"));
    assert_eq!(inside.identity, Identity::ApiKey);

    let outside = resolve_simple(&config, Some(&call), &source("192.0.2.1", None));
    assert_eq!(outside.integration, None);
    assert_eq!(resolve_simple(&config, None, &source("10.1.2.3", None)).integration, None);
}

#[test]
fn cgroup_outranks_ip_in_conjunction() {
    let config = config(&integration("cron", "{ ip = [\"127.0.0.1\"], cgroup = \"system.slice/**\" }"));
    let resolution = resolve_simple(&config, None, &source("127.0.0.1", Some("system.slice/cron.service")));
    assert_eq!(resolution.identity, Identity::Cgroup);
}

#[test]
fn first_matching_integration_wins() {
    let integrations = format!(
        "{}{}{}",
        integration("narrow", "{ ip = [\"10.0.0.5\"] }"),
        integration("wide", "{ ip = [\"10.0.0.0/8\"] }"),
        integration("also-narrow", "{ ip = [\"10.0.0.6\"] }"),
    );
    let config = config(&integrations);
    let first = resolve_simple(&config, None, &source("10.0.0.5", None));
    assert_eq!(first.integration.as_deref(), Some("narrow"));
    let second = resolve_simple(&config, None, &source("10.0.0.6", None));
    assert_eq!(second.integration.as_deref(), Some("wide"));
}

#[test]
fn trusted_proxy_header_gives_client() {
    let config = config(&integration("form", "{ ip = [\"203.0.113.10\"] }"));
    let headers = Headers(vec![("X-Forwarded-For".into(), Bytes::from_static(b"203.0.113.10"))]);
    let sessions = SessionTable::default();

    let via_proxy = resolve(&config, None, &headers, &source("127.0.0.1", None), &sessions);
    assert_eq!(via_proxy.integration.as_deref(), Some("form"));
    assert_eq!(via_proxy.client_ip, "203.0.113.10".parse::<IpAddr>().unwrap());

    let spoofed = resolve(&config, None, &headers, &source("198.51.100.9", None), &sessions);
    assert_eq!(spoofed.integration, None);
}

#[test]
fn session_ties_unmatched_call() {
    let config = config(&integration("portal", "{ ip = [\"10.0.0.0/8\"] }"));
    let mut sessions = SessionTable::default();
    sessions.bind(&Secret::new("sess-1"), "portal", None, SystemTime::UNIX_EPOCH);

    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.session_id = Some(Secret::new("sess-1"));
    let resolution = resolve(&config, Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions);
    assert_eq!(resolution.integration.as_deref(), Some("portal"));
    assert_eq!(resolution.identity, Identity::Session);

    call.session_id = Some(Secret::new("sess-2"));
    let unknown = resolve(&config, Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions);
    assert_eq!(unknown.integration, None);
}

#[test]
fn match_takes_precedence_over_session() {
    let integrations = format!(
        "{}{}",
        integration("office", "{ ip = [\"10.0.0.0/8\"] }"),
        integration("portal", "{ ip = [\"192.0.2.0/24\"] }")
    );
    let config = config(&integrations);
    let mut sessions = SessionTable::default();
    sessions.bind(&Secret::new("sess-1"), "portal", None, SystemTime::UNIX_EPOCH);

    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.session_id = Some(Secret::new("sess-1"));
    let resolution = resolve(&config, Some(&call), &Headers::default(), &source("10.0.0.1", None), &sessions);
    assert_eq!(resolution.integration.as_deref(), Some("office"));
    assert_eq!(resolution.identity, Identity::Ip);
}

#[test]
fn session_of_removed_integration_is_ignored() {
    let config = config(&integration("office", "{ ip = [\"10.0.0.0/8\"] }"));
    let mut sessions = SessionTable::default();
    sessions.bind(&Secret::new("sess-1"), "gone", None, SystemTime::UNIX_EPOCH);

    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.session_id = Some(Secret::new("sess-1"));
    let resolution = resolve(&config, Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions);
    assert_eq!(resolution.integration, None);
    assert_eq!(resolution.identity, Identity::None);
}

/// A token of integration `portal`, created at `now` in a store file in a
/// fresh directory, and a session table where `sess-1` is the session that
/// token logged in.
struct TokenSession {
    dir: std::path::PathBuf,
    store: std::path::PathBuf,
    token_id: String,
    sessions: SessionTable,
}

fn token_session(name: &str, now: SystemTime) -> TokenSession {
    let dir = std::env::temp_dir().join(format!("odoogate-identity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("tokens.json");
    let (record, token) = crate::token::TokenStore::create(&store, "portal", None, now).unwrap();
    let mut sessions = SessionTable::default();
    sessions.bind(&Secret::new("sess-1"), "portal", Some(Fingerprint::of(&token)), now);
    TokenSession { dir, store, token_id: record.id, sessions }
}

#[test]
fn token_session_ends_when_token_is_revoked() {
    let now = SystemTime::now();
    let TokenSession { dir, store: path, token_id, sessions } = token_session("token-session", now);
    let config = config(&integration("portal", "{ token = true }"));
    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.session_id = Some(Secret::new("sess-1"));
    let resolve_at = |store: &crate::token::TokenStore| {
        resolve_with_tokens(&config, Some(store), Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions, now)
    };

    let active = resolve_at(&crate::token::TokenStore::load(&path).unwrap());
    assert_eq!(active.resolution.integration.as_deref(), Some("portal"));
    assert_eq!(active.resolution.identity, Identity::Session);
    assert_eq!(active.invalid_token, None);

    crate::token::TokenStore::revoke(&path, &token_id, now).unwrap();
    let revoked = resolve_at(&crate::token::TokenStore::load(&path).unwrap());
    assert_eq!(revoked.resolution.integration.as_deref(), Some("portal"), "the record names the token's integration");
    assert_eq!(revoked.resolution.identity, Identity::Session);
    let invalid = revoked.invalid_token.expect("the session of a revoked token is refused");
    assert_eq!(invalid.reason, InvalidTokenReason::Revoked);
    assert!(invalid.via_session);
    assert!(invalid.reason_text().starts_with("web session of a revoked token (sha256 "), "{}", invalid.reason_text());
    let mut logout = Call::new(Protocol::Web, CallKind::Meta);
    logout.session_id = Some(Secret::new("sess-1"));
    let store = crate::token::TokenStore::load(&path).unwrap();
    assert_eq!(ended_session_token(&config, Some(&logout), &sessions, Some(&store), now), None, "a logout is left alone");

    // Without a token store no token can be checked, so neither can its session.
    let unchecked = resolve(&config, Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions);
    assert_eq!(unchecked.integration, None);
    let ended = ended_session_token(&config, Some(&call), &sessions, None, now).expect("refused without a store");
    assert_eq!(ended.reason, InvalidTokenReason::Unknown);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn token_session_lasts_through_rotation_grace_only() {
    let now = SystemTime::now();
    let TokenSession { dir, store: path, token_id, mut sessions } = token_session("rotate-session", now);
    let config = config(&integration("portal", "{ token = true }"));
    sessions.bind(&Secret::new("sess-2"), "portal", None, now);
    crate::token::TokenStore::rotate(&path, &token_id, std::time::Duration::from_secs(3600), now).unwrap();
    let store = crate::token::TokenStore::load(&path).unwrap();
    let resolve_at = |session: &str, at: SystemTime| {
        let mut call = Call::new(Protocol::Web, CallKind::Model);
        call.session_id = Some(Secret::new(session));
        resolve_with_tokens(&config, Some(&store), Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions, at)
    };
    let in_grace = resolve_at("sess-1", now + std::time::Duration::from_secs(60));
    assert_eq!(in_grace.resolution.integration.as_deref(), Some("portal"), "rotating tokens keep their sessions");
    assert_eq!(in_grace.invalid_token, None);
    let after = resolve_at("sess-1", now + std::time::Duration::from_secs(7200));
    assert_eq!(after.invalid_token.map(|invalid| invalid.reason), Some(InvalidTokenReason::Expired));
    let untouched = resolve_at("sess-2", now + std::time::Duration::from_secs(7200));
    assert_eq!(untouched.resolution.integration.as_deref(), Some("portal"), "a session no token opened is untouched");
    assert_eq!(untouched.invalid_token, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The reason and fingerprint of a presented token that does not verify,
/// from each place a token can come: the password argument, the
/// `X-Odoogate-Token` header as the call's credential, and the header of a
/// request that did not decode.
#[test]
fn invalid_token_reasons_by_input() {
    let now = SystemTime::now();
    let dir = std::env::temp_dir().join(format!("odoogate-identity-reasons-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.json");
    crate::token::TokenStore::create(&path, "portal", None, now).unwrap();
    let store = crate::token::TokenStore::load(&path).unwrap();
    let config = config(&integration("portal", "{ token = true }"));
    let stranger = crate::token::format::generate().unwrap().expose().to_owned();
    let long = format!("odg_{}", "a".repeat(1 << 20));
    let resolve_call = |call: Option<&Call>, headers: &Headers| {
        let sessions = SessionTable::default();
        resolve_with_tokens(&config, Some(&store), call, headers, &source("192.0.2.1", None), &sessions, now)
    };

    let cases = [
        (CredentialSlot::Password, "odg_short", Some("malformed_token")),
        (CredentialSlot::Password, long.as_str(), Some("malformed_token")),
        (CredentialSlot::Password, stranger.as_str(), Some("unknown_token")),
        (CredentialSlot::Password, "hunter2", None),
        (CredentialSlot::OdoogateHeader, "hunter2", Some("malformed_token")),
        (CredentialSlot::OdoogateHeader, stranger.as_str(), Some("unknown_token")),
    ];
    for (slot, presented, code) in cases {
        let excerpt: String = presented.chars().take(20).collect();
        let resolved = resolve_call(Some(&call_with(slot, presented)), &Headers::default());
        assert_eq!(resolved.invalid_token.as_ref().map(|invalid| invalid.reason.code()), code, "{slot:?} {excerpt}");
        assert_eq!(resolved.resolution.integration, None, "{slot:?} {excerpt}");
        if let Some(invalid) = resolved.invalid_token {
            assert_eq!(invalid.fingerprint_prefix, Secret::new(presented).sha256_hex()[..12], "{slot:?} {excerpt}");
        }
    }

    let headers = Headers(vec![("X-Odoogate-Token".into(), Bytes::from_static(b" hunter2 "))]);
    let undecoded = resolve_call(None, &headers);
    let invalid = undecoded.invalid_token.expect("a header token that does not verify is invalid");
    assert_eq!(invalid.reason, InvalidTokenReason::Malformed);
    assert_eq!(invalid.fingerprint_prefix, Secret::new("hunter2").sha256_hex()[..12]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Returns a fresh directory named after `name` and the path of a token
/// store file in it, which does not exist yet.
fn fresh_store(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("odoogate-identity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.json");
    (dir, path)
}

/// `local-script` matches by address only; `mcp-assistant` takes tokens
/// from the same address.
fn token_and_ip_config() -> Config {
    config(&format!(
        "{}{}",
        integration("local-script", "{ ip = [\"127.0.0.1\"] }"),
        integration("mcp-assistant", "{ token = true, ip = [\"127.0.0.1\"] }"),
    ))
}

#[test]
fn token_needs_token_match() {
    let now = SystemTime::now();
    let (dir, path) = fresh_store("token-match");
    let (_, local) = crate::token::TokenStore::create(&path, "local-script", None, now).unwrap();
    let (_, assistant) = crate::token::TokenStore::create(&path, "mcp-assistant", None, now).unwrap();
    let store = crate::token::TokenStore::load(&path).unwrap();
    let config = token_and_ip_config();
    let sessions = SessionTable::default();

    let cases = [
        (&local, "127.0.0.1", "local-script", Some(InvalidTokenReason::OutsideMatch)),
        (&local, "127.0.0.2", "local-script", Some(InvalidTokenReason::OutsideMatch)),
        (&assistant, "127.0.0.1", "mcp-assistant", None),
        (&assistant, "127.0.0.2", "mcp-assistant", Some(InvalidTokenReason::OutsideMatch)),
    ];
    for (token, peer, integration, reason) in cases {
        let call = call_with(CredentialSlot::Password, token.expose());
        let resolved = resolve_with_tokens(&config, Some(&store), Some(&call), &Headers::default(), &source(peer, None), &sessions, now);
        assert_eq!(resolved.invalid_token.as_ref().map(|invalid| invalid.reason), reason, "{integration} from {peer}");
        assert_eq!(resolved.resolution.integration.as_deref(), Some(integration), "{integration} from {peer}");
        assert_eq!(resolved.resolution.identity, Identity::Token, "{integration} from {peer}");
        let fingerprint = reason.is_none().then(|| Fingerprint::of(token).to_hex());
        assert_eq!(resolved.resolution.key_fingerprint, fingerprint, "{integration} from {peer}");
    }
    let outside = call_with(CredentialSlot::Password, local.expose());
    let resolved = resolve_with_tokens(&config, Some(&store), Some(&outside), &Headers::default(), &source("127.0.0.2", None), &sessions, now);
    assert_eq!(resolved.invalid_token.map(|invalid| invalid.reason.code()), Some("token_outside_match"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A refused token's call belongs to the integration the store issued the
/// token for, or to none, and never to `local-script`, whose address match
/// holds for every case here.
#[test]
fn refused_token_names_its_integration() {
    let now = SystemTime::now();
    let hour = std::time::Duration::from_secs(3600);
    let (dir, path) = fresh_store("refused-names");
    let (revoked_record, revoked) = crate::token::TokenStore::create(&path, "mcp-assistant", None, now).unwrap();
    crate::token::TokenStore::revoke(&path, &revoked_record.id, now).unwrap();
    let (_, expired) = crate::token::TokenStore::create(&path, "mcp-assistant", Some(hour), now - 2 * hour).unwrap();
    let (_, orphan) = crate::token::TokenStore::create(&path, "gone", None, now).unwrap();
    let (_, valid) = crate::token::TokenStore::create(&path, "mcp-assistant", None, now).unwrap();
    let store = crate::token::TokenStore::load(&path).unwrap();
    let stranger = crate::token::format::generate().unwrap();
    let config = token_and_ip_config();
    let sessions = SessionTable::default();

    let cases = [
        (Some(&store), revoked.expose(), Some("mcp-assistant"), InvalidTokenReason::Revoked),
        (Some(&store), expired.expose(), Some("mcp-assistant"), InvalidTokenReason::Expired),
        (Some(&store), orphan.expose(), Some("gone"), InvalidTokenReason::UnknownIntegration),
        (Some(&store), stranger.expose(), None, InvalidTokenReason::Unknown),
        (Some(&store), "odg_short", None, InvalidTokenReason::Malformed),
        (None, valid.expose(), None, InvalidTokenReason::Unknown),
    ];
    for (tokens, presented, integration, reason) in cases {
        let call = call_with(CredentialSlot::Password, presented);
        let resolved =
            resolve_with_tokens(&config, tokens, Some(&call), &Headers::default(), &source("127.0.0.1", None), &sessions, now);
        let case = format!("{reason:?} with store {}", tokens.is_some());
        assert_eq!(resolved.invalid_token.map(|invalid| invalid.reason), Some(reason), "{case}");
        assert_eq!(resolved.resolution.integration.as_deref(), integration, "{case}");
        let identity = if integration.is_some() { Identity::Token } else { Identity::None };
        assert_eq!(resolved.resolution.identity, identity, "{case}");
        assert_eq!(resolved.resolution.key_fingerprint, None, "{case}");
        assert_eq!(resolved.resolution.token(), None, "{case}: a refused token must not bind a session");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model call whose web session a now revoked token logged in belongs to
/// that session's integration, even from an address another integration
/// matches, and with or without a token store.
#[test]
fn ended_session_names_its_integration() {
    let now = SystemTime::now();
    let TokenSession { dir, store: path, token_id, sessions } = token_session("ended-session-names", now);
    let config = config(&format!("{}{}", integration("office", "{ ip = [\"192.0.2.0/24\"] }"), integration("portal", "{ token = true }")));
    crate::token::TokenStore::revoke(&path, &token_id, now).unwrap();
    let store = crate::token::TokenStore::load(&path).unwrap();
    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.session_id = Some(Secret::new("sess-1"));

    for (tokens, reason) in [(Some(&store), InvalidTokenReason::Revoked), (None, InvalidTokenReason::Unknown)] {
        let resolved =
            resolve_with_tokens(&config, tokens, Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions, now);
        let invalid = resolved.invalid_token.expect("the session of an ended token is refused");
        assert_eq!(invalid.reason, reason);
        assert!(invalid.via_session, "{reason:?}");
        assert_eq!(resolved.resolution.integration.as_deref(), Some("portal"), "{reason:?}");
        assert_eq!(resolved.resolution.identity, Identity::Session, "{reason:?}");
    }

    // Without the session, the address decides as before.
    call.session_id = None;
    let plain = resolve_with_tokens(&config, Some(&store), Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions, now);
    assert_eq!(plain.invalid_token, None);
    assert_eq!(plain.resolution.integration.as_deref(), Some("office"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A web session that a token logged in is that token's credential at
/// Odoo. So a reload that makes the daemon refuse the token (its
/// integration loses `token = true`, or is gone) ends the session too. It
/// ends also for calls from an address another integration matches.
#[test]
fn token_session_ends_with_token_match() {
    let now = SystemTime::now();
    let TokenSession { dir, store: path, sessions, .. } = token_session("session-token-match", now);
    let store = crate::token::TokenStore::load(&path).unwrap();
    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.session_id = Some(Secret::new("sess-1"));
    let office = integration("office", "{ ip = [\"192.0.2.0/24\"] }");

    let cases = [
        (format!("{}{office}", integration("portal", "{ ip = [\"198.51.100.0/24\"] }")), InvalidTokenReason::OutsideMatch),
        (office.clone(), InvalidTokenReason::UnknownIntegration),
    ];
    for (integrations, reason) in cases {
        let config = config(&integrations);
        let resolved =
            resolve_with_tokens(&config, Some(&store), Some(&call), &Headers::default(), &source("192.0.2.1", None), &sessions, now);
        let invalid = resolved.invalid_token.unwrap_or_else(|| panic!("{reason:?}: the session outlived its token's match"));
        assert_eq!(invalid.reason, reason);
        assert!(invalid.via_session, "{reason:?}");
        assert_ne!(resolved.resolution.integration.as_deref(), Some("office"), "{reason:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

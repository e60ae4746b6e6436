//! Why each integration's `match` holds or not for one request.
//!
//! Each key of a match is tested on its own by running the real
//! [`identity::resolve_with_tokens`] (for the `token` key) or
//! [`identity::resolve`] (for the others, which it tests without the
//! token) on a configuration that holds only that integration with only
//! that key. So the explanation cannot drift from the resolver it explains.

use std::time::SystemTime;

use crate::config::{Config, Integration, Match};
use crate::http::message::Headers;
use crate::identity::{self, SessionTable, Source, TokenResolution};
use crate::rpc::call::{Call, CredentialSlot};
use crate::token::TokenStore;

/// One key of an integration's match and whether it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCheck {
    pub holds: bool,
    /// `ip: client 127.0.0.1 is in 127.0.0.0/8`.
    pub detail: String,
}

/// One integration tried, in configuration order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationCheck {
    pub name: String,
    pub holds: bool,
    pub keys: Vec<KeyCheck>,
}

/// What identity resolution sees of one request.
pub struct Request<'a> {
    pub call: Option<&'a Call>,
    pub headers: &'a Headers,
    pub source: &'a Source,
    /// The token store, when the request presents a token and the store
    /// could be read. Without it a presented token is unknown, as in the
    /// daemon.
    pub tokens: Option<&'a TokenStore>,
    pub now: SystemTime,
}

// === impl Request ===

impl Request<'_> {
    /// Resolves the request against `config` as the daemon would, without
    /// a session table (sessions are not known offline).
    pub fn resolve(&self, config: &Config) -> TokenResolution {
        let sessions = SessionTable::default();
        identity::resolve_with_tokens(config, self.tokens, self.call, self.headers, self.source, &sessions, self.now)
    }
}

/// Tries the integrations in configuration order up to the first whose
/// match holds, since that one takes the call and later ones are not tried.
pub fn check_integrations(config: &Config, request: &Request<'_>) -> Vec<IntegrationCheck> {
    let mut checks = Vec::new();
    for integration in &config.integrations {
        let keys = check_keys(config, integration, request);
        let holds = keys.iter().all(|key| key.holds);
        checks.push(IntegrationCheck { name: integration.name.clone(), holds, keys });
        if holds {
            break;
        }
    }
    checks
}

fn check_keys(config: &Config, integration: &Integration, request: &Request<'_>) -> Vec<KeyCheck> {
    let Match { ip, cgroup, api_key_sha256, token } = &integration.matcher;
    let mut keys = Vec::new();
    let only = |matcher: Match| key_holds(config, integration, matcher, request);

    if *token {
        let holds = only(Match { token: true, ..Match::default() });
        keys.push(KeyCheck { holds, detail: token_detail(holds, &integration.name, request) });
    } else if identity::presented_token(request.call, request.headers).is_some() {
        let detail = "token: the call carries a scoped token, and the match has no `token = true` to accept one".to_owned();
        keys.push(KeyCheck { holds: false, detail });
    }
    if !api_key_sha256.is_empty() {
        let holds = only(Match { api_key_sha256: api_key_sha256.clone(), ..Match::default() });
        keys.push(KeyCheck { holds, detail: api_key_detail(holds, request.call) });
    }
    if !cgroup.is_empty() {
        let holds = only(Match { cgroup: cgroup.clone(), ..Match::default() });
        keys.push(KeyCheck { holds, detail: cgroup_detail(holds, cgroup, request.source) });
    }
    if !ip.is_empty() {
        let holds = only(Match { ip: ip.clone(), ..Match::default() });
        let client = request.resolve(config).resolution.client_ip;
        let nets = join(ip);
        let verb = if holds { "is in" } else { "is not in" };
        keys.push(KeyCheck { holds, detail: format!("ip: client {client} {verb} {nets}") });
    }
    keys
}

/// Resolves `request` against a configuration whose only integration is
/// `integration` with `matcher`, and returns whether it took the call. A
/// `matcher` without `token` is tested on the call's address, cgroup and
/// credential alone, because a call that presents a token belongs to the
/// token's integration whatever those give.
fn key_holds(config: &Config, integration: &Integration, matcher: Match, request: &Request<'_>) -> bool {
    let mut probe = config.clone();
    let token = matcher.token;
    probe.integrations = vec![Integration { matcher, rules: Vec::new(), ..integration.clone() }];
    if !token {
        let sessions = SessionTable::default();
        return identity::resolve(&probe, request.call, request.headers, request.source, &sessions).integration.is_some();
    }
    let resolved = request.resolve(&probe);
    resolved.resolution.integration.is_some() && resolved.invalid_token.is_none()
}

fn token_detail(holds: bool, name: &str, request: &Request<'_>) -> String {
    if holds {
        return format!("token: the call carries a valid scoped token of {name}");
    }
    match identity::presented_token(request.call, request.headers) {
        None => "token: the call carries no scoped token".to_owned(),
        Some(_) if request.tokens.is_none() => "token: the token store could not be read, so no token verifies".to_owned(),
        Some(_) => format!("token: the call's token is not a valid token of {name}"),
    }
}

fn api_key_detail(holds: bool, call: Option<&Call>) -> String {
    if holds {
        return "api_key_sha256: the credential's fingerprint is listed".to_owned();
    }
    let has_key = call
        .and_then(|call| call.credential.as_ref())
        .is_some_and(|credential| matches!(credential.slot, CredentialSlot::Password | CredentialSlot::Bearer));
    if has_key {
        "api_key_sha256: the credential's fingerprint is not listed".to_owned()
    } else {
        "api_key_sha256: the call carries no password or API key".to_owned()
    }
}

fn cgroup_detail(holds: bool, globs: &[crate::policy::glob::Glob], source: &Source) -> String {
    let globs = join(globs);
    match (&source.cgroup, holds) {
        (Some(path), true) => format!("cgroup: {path} matches {globs}"),
        (Some(path), false) => format!("cgroup: {path} does not match {globs}"),
        (None, _) => format!("cgroup: the request has no cgroup (give --cgroup), so {globs} cannot match"),
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

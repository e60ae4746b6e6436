//! Ties each call to an integration.
//!
//! A valid scoped token identifies its integration before anything else,
//! when that integration's match has `token = true` and holds
//! ([`resolve_with_tokens`]). A call with any other token belongs to the
//! integration the token was issued for, or to none, and is denied. Without
//! a token, an integration's `match` is a conjunction of its keys
//! (`api_key_sha256`, `cgroup`, `ip`); the first integration in
//! configuration order whose match holds takes the call. A call that no
//! match takes but whose session was logged in by an integration belongs to
//! that integration. Everything else is unidentified and follows
//! `policy.unidentified`.

mod client;
mod fingerprint;
pub mod session_file;
mod sessions;
mod token;

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use crate::audit::record::Identity;
use crate::config::{Config, Match};
use crate::http::message::Headers;
use crate::rpc::call::{Call, CredentialSlot};
use crate::token::TokenStore;

pub use client::{ForwardedHeader, client_ip};
pub use fingerprint::{Fingerprint, FingerprintError};
pub use sessions::{DEFAULT_MAX_SESSIONS, SESSION_LIFETIME, SessionOwner, SessionTable};
pub use token::{
    InvalidToken, InvalidTokenReason, TokenResolution, ended_session_token, presented_token, resolve_with_tokens, token_acceptance,
};

/// The origin of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub peer: SocketAddr,
    /// The client's cgroup v2 path relative to the mount
    /// (`system.slice/n8n.service`), for local clients.
    pub cgroup: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub conn_id: u64,
}

/// The integration a call belongs to, and how that was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub integration: Option<String>,
    /// The strongest key of the match that held, [`Identity::Session`] when
    /// the session table supplied the integration, [`Identity::None`] for
    /// unidentified calls.
    pub identity: Identity,
    /// The client address: the peer, or from a trusted proxy the address
    /// its forwarding headers name.
    pub client_ip: IpAddr,
    /// Hex SHA-256 of the call's credential, set only when the credential
    /// has the shape of an Odoo API key or equals a configured fingerprint.
    /// A password's hash is never exposed, since a weak password could be
    /// recovered from it offline.
    pub key_fingerprint: Option<String>,
}

impl Resolution {
    /// Returns the fingerprint of the scoped token that identified the call,
    /// if a token did.
    pub fn token(&self) -> Option<Fingerprint> {
        let hex = self.key_fingerprint.as_deref().filter(|_| self.identity == Identity::Token)?;
        Fingerprint::from_hex(hex).ok()
    }
}

/// The facts a match is tested against.
struct Facts<'a> {
    client_ip: IpAddr,
    cgroup: Option<&'a str>,
    key: Option<Fingerprint>,
    /// The integration of the call's valid scoped token, if it has one.
    token_integration: Option<&'a str>,
}

/// Finds the integration of a call.
///
/// `call` is `None` for a request that did not decode; it can still match
/// on `ip` and `cgroup`.
pub fn resolve(
    config: &Config,
    call: Option<&Call>,
    headers: &Headers,
    source: &Source,
    sessions: &SessionTable,
) -> Resolution {
    let facts = facts_of(config, call, headers, source, None);
    // Without a token store no token is usable, nor a session it logged in.
    resolve_facts(config, call, &facts, sessions, None, SystemTime::now())
}

fn facts_of<'a>(
    config: &Config,
    call: Option<&Call>,
    headers: &Headers,
    source: &'a Source,
    token_integration: Option<&'a str>,
) -> Facts<'a> {
    Facts {
        // TODO: let the config choose `Forwarded` for proxies that only write it.
        client_ip: client_ip(source.peer.ip(), headers, &config.odoo.trusted_proxies, ForwardedHeader::default()),
        cgroup: source.cgroup.as_deref(),
        key: call.and_then(credential_fingerprint),
        token_integration,
    }
}

/// Resolves a call from its facts, by match and then by session. A session
/// that a scoped token opened counts only while `tokens` has that token
/// usable at `now`.
fn resolve_facts(
    config: &Config,
    call: Option<&Call>,
    facts: &Facts<'_>,
    sessions: &SessionTable,
    tokens: Option<&TokenStore>,
    now: SystemTime,
) -> Resolution {
    let key = facts.key;
    let key_fingerprint = key.filter(|key| is_recordable(config, call, key)).map(|key| key.to_hex());

    let (integration, identity) = match_integration(config, facts)
        .or_else(|| session_integration(config, call, sessions, tokens, now))
        .map_or((None, Identity::None), |(name, identity)| (Some(name.to_owned()), identity));

    Resolution { integration, identity, client_ip: facts.client_ip, key_fingerprint }
}

/// Returns the first integration whose match holds, in configuration order.
fn match_integration<'c>(config: &'c Config, facts: &Facts<'_>) -> Option<(&'c str, Identity)> {
    config.integrations.iter().find_map(|integration| {
        evaluate(&integration.name, &integration.matcher, facts).map(|identity| (integration.name.as_str(), identity))
    })
}

/// Tests the conjunction of integration `name` and returns its strongest
/// key. A token identifies the caller more precisely than an API key, an
/// API key more than a cgroup, and a cgroup more than an address.
fn evaluate(name: &str, matcher: &Match, facts: &Facts<'_>) -> Option<Identity> {
    let Match { ip, cgroup, api_key_sha256, token } = matcher;
    let mut strongest = None;

    if !ip.is_empty() {
        ip.iter().any(|net| net.contains(&facts.client_ip)).then_some(())?;
        strongest = Some(Identity::Ip);
    }
    if !cgroup.is_empty() {
        let path = facts.cgroup?;
        cgroup.iter().any(|glob| glob.matches(path)).then_some(())?;
        strongest = Some(Identity::Cgroup);
    }
    if !api_key_sha256.is_empty() {
        let key = facts.key?;
        api_key_sha256.iter().any(|configured| configured.ct_eq(&key)).then_some(())?;
        strongest = Some(Identity::ApiKey);
    }
    if *token {
        (facts.token_integration == Some(name)).then_some(())?;
        strongest = Some(Identity::Token);
    }
    strongest
}

fn session_integration<'c>(
    config: &'c Config,
    call: Option<&Call>,
    sessions: &SessionTable,
    tokens: Option<&TokenStore>,
    now: SystemTime,
) -> Option<(&'c str, Identity)> {
    let owner = sessions.lookup(call?.session_id.as_ref()?)?;
    if owner.token_ended(config, tokens, now) {
        return None;
    }
    let name = owner.integration;
    // A binding may outlive a reload that removed its integration.
    let integration = config.integration(name)?;
    Some((integration.name.as_str(), Identity::Session))
}

/// Returns the fingerprint of an API key or password credential.
/// `X-Odoogate-Token` credentials are scoped tokens, which
/// [`resolve_with_tokens`] checks against the token store instead.
fn credential_fingerprint(call: &Call) -> Option<Fingerprint> {
    let credential = call.credential.as_ref()?;
    match credential.slot {
        CredentialSlot::Password | CredentialSlot::Bearer => Some(Fingerprint::of(&credential.secret)),
        CredentialSlot::OdoogateHeader => None,
    }
}

fn is_recordable(config: &Config, call: Option<&Call>, key: &Fingerprint) -> bool {
    let looks_like_api_key = call
        .and_then(|call| call.credential.as_ref())
        .is_some_and(|credential| credential.secret.looks_like_odoo_api_key());
    looks_like_api_key
        || config
            .integrations
            .iter()
            .flat_map(|integration| &integration.matcher.api_key_sha256)
            .any(|configured| configured.ct_eq(key))
}

#[cfg(test)]
mod tests;

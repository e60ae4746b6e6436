//! Identification by scoped token, which comes before every match kind.
//!
//! A token is presented in `X-Odoogate-Token`, `Authorization: Bearer` or
//! the password argument of XML-RPC and JSON-RPC calls (the decoders put
//! whichever applies in [`Call::credential`]). Anything in
//! `X-Odoogate-Token`, and any credential with the `odg_` prefix, claims to
//! be a token: when it does not verify, the call gets an [`InvalidToken`]
//! instead of being matched as a password, and enforce mode denies it. A
//! token identifies only an integration whose match has `token = true`.

use std::time::SystemTime;

use super::{Facts, Resolution, Source, evaluate, facts_of, resolve_facts};
use crate::audit::record::Identity;
use crate::config::{Config, Integration};
use crate::http::message::Headers;
use crate::identity::{Fingerprint, SessionTable};
use crate::rpc::call::{Call, CallKind, CredentialSlot};
use crate::secret::Secret;
use crate::token::{TokenCheck, TokenState, TokenStore};

/// Hex characters of a token's SHA-256 shown for an invalid token: enough
/// to find it in `odoogate token list`, too few to matter if leaked.
const FINGERPRINT_PREFIX_LEN: usize = 12;

/// The identity of a call, with the verdict on a presented scoped token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenResolution {
    /// For a valid token, its integration with [`Identity::Token`]. For a
    /// refused token, the integration the token store issued it for with
    /// [`Identity::Token`], or no integration when the store does not know
    /// the token. For a web session whose token ended, the session's
    /// integration with [`Identity::Session`]. Otherwise the result of the
    /// other match kinds.
    pub resolution: Resolution,
    /// Set when the call presented a token that did not verify. Enforce mode
    /// answers such a call with AccessDenied whatever `resolution` says.
    pub invalid_token: Option<InvalidToken>,
}

/// A presented token that did not verify, or the token that logged in the
/// web session a call carries, when that token may no longer be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidToken {
    pub reason: InvalidTokenReason,
    /// The first 12 hex characters of the token's SHA-256.
    pub fingerprint_prefix: String,
    /// The call carried no token, but a web session that this token opened.
    pub via_session: bool,
}

/// Why a presented token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidTokenReason {
    /// Well formed but not in the store.
    Unknown,
    /// Past its expiry or its rotation grace deadline.
    Expired,
    Revoked,
    /// Wrong prefix, length, characters or checksum.
    Malformed,
    /// Valid, but its integration is no longer in the configuration.
    UnknownIntegration,
    /// Valid, but its integration's match has no `token = true`, or has
    /// other keys that the call does not meet.
    OutsideMatch,
}

impl InvalidTokenReason {
    /// Returns the bounded code used in audit records.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_token",
            Self::Expired => "expired_token",
            Self::Revoked => "revoked_token",
            Self::Malformed => "malformed_token",
            Self::UnknownIntegration => "token_of_unknown_integration",
            Self::OutsideMatch => "token_outside_match",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Unknown => "unknown token",
            Self::Expired => "expired token",
            Self::Revoked => "revoked token",
            Self::Malformed => "malformed token",
            Self::UnknownIntegration => "token of an integration missing from the configuration",
            Self::OutsideMatch => "token used outside its integration's match",
        }
    }
}

impl InvalidToken {
    /// Returns the reason for an audit record, such as
    /// `revoked token (sha256 1a2b3c4d5e6f…)`.
    pub fn reason_text(&self) -> String {
        match self.via_session {
            true => format!("web session of a {} (sha256 {}…)", self.reason.describe(), self.fingerprint_prefix),
            false => format!("{} (sha256 {}…)", self.reason.describe(), self.fingerprint_prefix),
        }
    }

    /// Describes the token of a web session that may no longer be used, or
    /// returns `None` while it may. Without a token store, no token may.
    fn of_session(tokens: Option<&TokenStore>, token: &Fingerprint, now: SystemTime) -> Option<Self> {
        let reason = match tokens.and_then(|tokens| tokens.state_of(token, now)) {
            Some(TokenState::Active | TokenState::Rotating) => return None,
            Some(TokenState::Revoked) => InvalidTokenReason::Revoked,
            Some(TokenState::Expired) => InvalidTokenReason::Expired,
            None => InvalidTokenReason::Unknown,
        };
        let fingerprint_prefix = token.to_hex()[..FINGERPRINT_PREFIX_LEN].to_owned();
        Some(Self { reason, fingerprint_prefix, via_session: true })
    }

    /// Describes the usable token of a web session that `config` refuses,
    /// because a reload removed the session's integration or its
    /// `token = true`, or returns `None` while `config` accepts the token.
    fn of_refused_session(config: &Config, integration: &str, token: &Fingerprint) -> Option<Self> {
        let reason = token_acceptance(config, integration).err()?;
        let fingerprint_prefix = token.to_hex()[..FINGERPRINT_PREFIX_LEN].to_owned();
        Some(Self { reason, fingerprint_prefix, via_session: true })
    }
}

/// Returns the token a call presents: its credential when that came from
/// `X-Odoogate-Token` or has the token prefix, or, for a request that did
/// not decode, the `X-Odoogate-Token` header.
pub fn presented_token<'a>(call: Option<&'a Call>, headers: &'a Headers) -> Option<&'a str> {
    match call {
        Some(call) => {
            let credential = call.credential.as_ref()?;
            let value = credential.secret.expose();
            let claims_token =
                credential.slot == CredentialSlot::OdoogateHeader || TokenStore::looks_like_token(value);
            claims_token.then_some(value)
        }
        None => headers.get_str("X-Odoogate-Token").map(str::trim).filter(|value| !value.is_empty()),
    }
}

/// Finds the integration of a call, trying its scoped token first.
///
/// A valid token whose integration's match holds gives that integration
/// with [`Identity::Token`], before every other match kind and whatever the
/// order of integrations. Any other presented token sets
/// [`TokenResolution::invalid_token`], and the call belongs to the token's
/// integration when the store knows it, else to none: the other match kinds
/// never take a call that presents a token. Without a store (`tokens` is
/// `None`, or the store failed to load) no token verifies, and no session
/// that a token logged in may be used.
pub fn resolve_with_tokens(
    config: &Config,
    tokens: Option<&TokenStore>,
    call: Option<&Call>,
    headers: &Headers,
    source: &Source,
    sessions: &SessionTable,
    now: SystemTime,
) -> TokenResolution {
    let Some(presented) = presented_token(call, headers) else {
        let facts = facts_of(config, call, headers, source, None);
        let mut resolution = resolve_facts(config, call, &facts, sessions, tokens, now);
        // The web session is the call's credential at Odoo, so a session
        // whose token was revoked or expired is refused as that token is,
        // and recorded under the integration that token logged in.
        let Some((invalid_token, integration)) = ended_session(config, call, sessions, tokens, now) else {
            return TokenResolution { resolution, invalid_token: None };
        };
        resolution.integration = Some(integration.to_owned());
        resolution.identity = Identity::Session;
        return TokenResolution { resolution, invalid_token: Some(invalid_token) };
    };

    let facts = Facts { key: None, ..facts_of(config, None, headers, source, None) };
    let check = tokens.map_or(TokenCheck::Unknown, |store| store.verify(presented, now));
    let (reason, integration) = match check {
        TokenCheck::Valid { integration, fingerprint } => {
            let facts = Facts { token_integration: Some(integration.as_str()), ..facts };
            match token_identity(config, &integration, &facts) {
                Ok(()) => {
                    let resolution = Resolution {
                        integration: Some(integration.clone()),
                        identity: Identity::Token,
                        client_ip: facts.client_ip,
                        key_fingerprint: Some(fingerprint),
                    };
                    return TokenResolution { resolution, invalid_token: None };
                }
                Err(reason) => (reason, Some(integration)),
            }
        }
        TokenCheck::Expired { integration } => (InvalidTokenReason::Expired, Some(integration)),
        TokenCheck::Revoked { integration } => (InvalidTokenReason::Revoked, Some(integration)),
        TokenCheck::Unknown => (InvalidTokenReason::Unknown, None),
        TokenCheck::Malformed => (InvalidTokenReason::Malformed, None),
    };

    let fingerprint = Fingerprint::of(&Secret::new(presented)).to_hex();
    let invalid_token = InvalidToken { reason, fingerprint_prefix: fingerprint[..FINGERPRINT_PREFIX_LEN].to_owned(), via_session: false };
    // The record names who the token was issued to, never the integration
    // that the call's address or cgroup would give. The fingerprint stays
    // out, so that a refused token cannot bind a web session.
    let identity = if integration.is_some() { Identity::Token } else { Identity::None };
    let resolution = Resolution { integration, identity, client_ip: facts.client_ip, key_fingerprint: None };
    TokenResolution { resolution, invalid_token: Some(invalid_token) }
}

/// Returns the token that logged in the web session `call` carries, when
/// that token may no longer be used: it is revoked, expired or gone from
/// the store, or `config` no longer accepts it (its integration is gone or
/// its match lost `token = true`). The session is the call's credential
/// at Odoo, so such a call is refused as a revoked token is. Logins and
/// metadata calls (session info, logout) are left alone, so a client can
/// still log the session out or log in again.
pub fn ended_session_token(
    config: &Config,
    call: Option<&Call>,
    sessions: &SessionTable,
    tokens: Option<&TokenStore>,
    now: SystemTime,
) -> Option<InvalidToken> {
    ended_session(config, call, sessions, tokens, now).map(|(invalid, _)| invalid)
}

/// Returns [`ended_session_token`] with the integration the session table
/// bound the session to, which is the integration its token was issued for.
fn ended_session<'s>(
    config: &Config,
    call: Option<&Call>,
    sessions: &'s SessionTable,
    tokens: Option<&TokenStore>,
    now: SystemTime,
) -> Option<(InvalidToken, &'s str)> {
    let call = call.filter(|call| matches!(call.kind, CallKind::Model | CallKind::Database))?;
    let owner = sessions.lookup(call.session_id.as_ref()?)?;
    let token = owner.token?;
    let invalid = InvalidToken::of_session(tokens, &token, now)
        .or_else(|| InvalidToken::of_refused_session(config, owner.integration, &token))?;
    Some((invalid, owner.integration))
}

/// Checks that a valid token of `name` may identify the call: the
/// integration exists, its match has `token = true`, and the rest of that
/// match holds too.
fn token_identity(config: &Config, name: &str, facts: &Facts<'_>) -> Result<(), InvalidTokenReason> {
    let integration = token_acceptance(config, name)?;
    evaluate(name, &integration.matcher, facts).map(|_| ()).ok_or(InvalidTokenReason::OutsideMatch)
}

/// Returns integration `name` when `config` lets a token identify it: the
/// integration is defined and its match has `token = true`. Otherwise
/// returns why the daemon refuses the integration's tokens.
pub fn token_acceptance<'c>(config: &'c Config, name: &str) -> Result<&'c Integration, InvalidTokenReason> {
    match config.integration(name) {
        None => Err(InvalidTokenReason::UnknownIntegration),
        Some(integration) if !integration.matcher.token => Err(InvalidTokenReason::OutsideMatch),
        Some(integration) => Ok(integration),
    }
}

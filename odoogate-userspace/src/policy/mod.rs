//! The decision on a call: allowed when a rule of its integration allows
//! its model and method and none of that rule's limits refuses it.
//!
//! [`decide`] is pure (no I/O, no clock, no state): the time is an
//! argument, grants are passed in, and rate limits are checked by the
//! caller's [`rate::RateLimiter`] after an allow. So the observe and the
//! enforce paths share it and tests can drive it exhaustively.

pub mod fields;
pub mod glob;
pub mod guarded;
pub mod rate;
pub mod runtime;
pub mod web_routes;
pub mod window;

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::audit::record::Decision;
use crate::config::{Config, Integration, Mode, Rule, Unidentified};
use crate::grant::Grants;
use crate::identity::Resolution;
use crate::rpc::call::{Call, CallKind, MAX_RECORD_IDS};

/// The model name database-service calls are matched as.
pub const DATABASE_MODEL: &str = "db";

/// The outcome of [`decide`], before the mode turns it into a [`Decision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The rule that allowed the call, or that refused it when it matched
    /// the model and method but one of its limits did not hold, as
    /// `integration.allow[index]`.
    pub rule: Option<String>,
    /// Why, in words for the audit record; a refusal names the limit.
    pub reason: String,
    /// The index of [`Verdict::rule`] in the integration's `allow` list,
    /// for [`rate::RateLimiter::check_and_take`].
    pub rule_index: Option<usize>,
    /// The id of the temporary grant the allow relied on.
    pub grant: Option<String>,
    /// On a denial by `read_fields` with `narrow_reads`: the fields the read
    /// may be narrowed to. See [`narrowing`].
    pub narrowing: Option<Vec<String>>,
}

impl Verdict {
    fn allow(reason: impl Into<String>) -> Self {
        Self { allowed: true, ..Self::deny(reason) }
    }

    fn deny(reason: impl Into<String>) -> Self {
        Self { allowed: false, rule: None, reason: reason.into(), rule_index: None, grant: None, narrowing: None }
    }

    /// Turns an allow into a denial by a rate limit, naming the limit.
    pub fn rate_limited(&mut self, limited: &rate::RateLimited) {
        self.allowed = false;
        self.reason = limited.to_string();
        self.narrowing = None;
    }
}

/// Decides on `call` without temporary grants; see [`decide_with_grants`].
pub fn decide(call: &Call, resolution: &Resolution, config: &Config, now: SystemTime) -> Verdict {
    decide_with_grants(call, resolution, config, &Grants::default(), now)
}

/// Decides on `call`, made by the integration in `resolution`, at `now`.
///
/// The checks run in this order:
/// 1. A call with a mismatch is denied.
/// 2. An unidentified call follows `policy.unidentified`.
/// 3. Authentication and metadata calls are allowed without a rule.
/// 4. A disabled integration denies, unless a grant for it is active.
/// 5. Model and database calls need a rule of their integration that
///    matches both the model (`db` for database calls) and the method, is
///    enabled (or has an active grant), and whose limits all hold: guarded
///    calls, `hours`, `max_records`, `fields`, `read_fields`.
pub fn decide_with_grants(
    call: &Call,
    resolution: &Resolution,
    config: &Config,
    grants: &Grants,
    now: SystemTime,
) -> Verdict {
    if !call.mismatches.is_empty() {
        return Verdict::deny(format!("request mismatch: {}", call.mismatches.join("; ")));
    }

    // Clients ask for the server version before they log in, without a
    // credential (OdooRPC's first call is /web/webclient/version_info), so
    // metadata is allowed even when unidentified calls are denied.
    if call.kind == CallKind::Meta {
        return Verdict::allow("metadata calls need no rule");
    }

    let Some(name) = resolution.integration.as_deref() else {
        return match config.policy.unidentified {
            Unidentified::Allow => Verdict::allow("no integration matches the call; policy.unidentified = \"allow\""),
            Unidentified::Deny => Verdict::deny("no integration matches the call; policy.unidentified = \"deny\""),
        };
    };

    let (model, method) = match call.kind {
        CallKind::Auth => return Verdict::allow("authentication calls need no rule"),
        CallKind::Meta => return Verdict::allow("metadata calls need no rule"),
        CallKind::Model => (call.model.as_deref(), call.method.as_deref()),
        CallKind::Database => (Some(DATABASE_MODEL), call.method.as_deref()),
    };
    let Some(integration) = config.integration(name) else {
        return Verdict::deny(format!("integration {name} is not in the configuration"));
    };
    let Some(model) = model else {
        return Verdict::deny("the call names no model");
    };
    let Some(method) = method else {
        return Verdict::deny("the call names no method");
    };

    let integration_grant = match integration.enabled {
        true => None,
        false => match grants.active(name, None, now) {
            Some(grant) => Some(grant.id.clone()),
            None => return Verdict::deny(format!("integration {name} is disabled (enabled = false) and has no active grant")),
        },
    };
    let mut verdict = decide_by_rules(call, integration, Target { model, method }, grants, now);
    if verdict.allowed && integration_grant.is_some() {
        verdict.grant = integration_grant;
    }
    verdict
}

/// Returns the fields a denied read may be narrowed to, so the enforce
/// proxy can rewrite the request instead of refusing it: set only when the
/// refusing rule has `narrow_reads = true` and the method is `read` or
/// `search_read`. The proxy must decode and decide on the rewritten
/// request again; that decision, not this list, allows it.
pub fn narrowing(call: &Call, verdict: &Verdict) -> Option<Vec<String>> {
    let method = call.method.as_deref()?;
    if verdict.allowed || !fields::NARROWABLE.contains(&method) {
        return None;
    }
    verdict.narrowing.clone()
}

/// Turns a verdict into the recorded decision: observe mode records a denial
/// as `would_deny` because the call went through anyway.
pub fn decision(verdict: &Verdict, mode: Mode) -> Decision {
    match (verdict.allowed, mode) {
        (true, _) => Decision::Allow,
        (false, Mode::Observe) => Decision::WouldDeny,
        (false, Mode::Enforce) => Decision::Deny,
    }
}

/// The model and method a call is decided as.
#[derive(Clone, Copy)]
struct Target<'a> {
    model: &'a str,
    method: &'a str,
}

/// A rule that matched the model and method but refused the call.
struct Refusal {
    index: usize,
    reason: String,
    narrowing: Option<Vec<String>>,
}

/// Returns the verdict of the first rule that allows the call, or names the
/// first rule that matched but refused it.
fn decide_by_rules(call: &Call, integration: &Integration, target: Target<'_>, grants: &Grants, now: SystemTime) -> Verdict {
    let name = &integration.name;
    let Target { model, method } = target;
    let mut refusal: Option<Refusal> = None;

    for (index, rule) in integration.rules.iter().enumerate() {
        if !rule_allows(rule, model, method) {
            continue;
        }
        let grant = match rule.enabled {
            true => None,
            false => match grants.active(name, Some(index), now) {
                Some(grant) => Some(grant.id.clone()),
                None => {
                    let reason = "the rule is disabled (enabled = false) and has no active grant".to_owned();
                    refusal.get_or_insert(Refusal { index, reason, narrowing: None });
                    continue;
                }
            },
        };
        match check_limits(call, rule, target, now) {
            Ok(()) => {
                let label = rule_label(name, index);
                // Every allowed call builds this text, so it is put
                // together without `format!`.
                let mut reason = String::with_capacity(label.len() + model.len() + method.len() + 48);
                for part in [label.as_str(), " allows ", model, ".", method] {
                    reason.push_str(part);
                }
                if let Some(id) = &grant {
                    reason.push_str(" under grant ");
                    reason.push_str(id);
                }
                return Verdict { allowed: true, rule: Some(label), reason, rule_index: Some(index), grant, narrowing: None };
            }
            Err(refused) => {
                refusal.get_or_insert(Refusal { index, reason: refused.reason, narrowing: refused.narrowing });
            }
        }
    }

    match refusal {
        Some(Refusal { index, reason, narrowing }) => {
            let label = rule_label(name, index);
            Verdict {
                allowed: false,
                reason: format!("{label} refuses {model}.{method}: {reason}"),
                rule: Some(label),
                rule_index: Some(index),
                grant: None,
                narrowing,
            }
        }
        None if is_private(method) => {
            Verdict::deny(format!("no rule of {name} names the private method {model}.{method} exactly"))
        }
        None => Verdict::deny(format!("no rule of {name} allows {model}.{method}")),
    }
}

/// Returns `integration.allow[index]`, the name of a rule in audit records.
fn rule_label(integration: &str, index: usize) -> String {
    let mut label = String::with_capacity(integration.len() + 12);
    label.push_str(integration);
    label.push_str(".allow[");
    let _ = write!(label, "{index}");
    label.push(']');
    label
}

/// Checks the limits of a rule that matches the model and method, in the
/// order guarded calls, `hours`, `max_records`, `fields`, `read_fields`.
fn check_limits(call: &Call, rule: &Rule, target: Target<'_>, now: SystemTime) -> Result<(), fields::FieldRefusal> {
    let Target { model, method } = target;
    let refuse = |reason: String| fields::FieldRefusal { reason, narrowing: None };

    if let Some(why) = guarded::guard_of(call, model, method)
        && !names_exactly(rule, model, method)
    {
        return Err(refuse(format!(
            "{model}.{method} is a guarded call because {why}; only a rule naming {model} and {method} exactly, \
             without wildcards, allows it"
        )));
    }
    if let Some(hours) = &rule.hours
        && !hours.contains(now)
    {
        return Err(refuse(format!("the call is outside {hours}")));
    }
    if let Some(max) = rule.max_records {
        let count = call.record_ids.len();
        if count >= MAX_RECORD_IDS {
            return Err(refuse(format!("the call targets at least {count} records, above max_records = {max}")));
        }
        if count > max {
            return Err(refuse(format!("the call targets {count} records, above max_records = {max}")));
        }
    }
    fields::check_writes(call, method, rule)?;
    fields::check_reads(call, method, rule)
}

/// Tells whether `rule` allows `method` on `model`.
///
/// Odoo rejects methods whose name starts with `_` because they are internal
/// helpers, not API. So a wildcard such as `*` must not allow them: if a
/// future Odoo or a custom module exposed one, allowing it should take a
/// deliberate rule that spells out its name.
fn rule_allows(rule: &Rule, model: &str, method: &str) -> bool {
    let model_matches = rule.models.iter().any(|glob| glob.matches(model));
    let method_matches = if is_private(method) {
        rule.methods.iter().any(|glob| glob.literal() == Some(method))
    } else {
        rule.methods.iter().any(|glob| glob.matches(method))
    };
    model_matches && method_matches
}

/// Tells whether `rule` names `model` and `method` without wildcards, as a
/// guarded call needs.
fn names_exactly(rule: &Rule, model: &str, method: &str) -> bool {
    rule.models.iter().any(|glob| glob.literal() == Some(model))
        && rule.methods.iter().any(|glob| glob.literal() == Some(method))
}

fn is_private(method: &str) -> bool {
    method.starts_with('_')
}

#[cfg(test)]
mod tests;

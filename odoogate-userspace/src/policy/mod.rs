//! The decision on a call: allowed when a rule of its integration allows
//! its model and method.
//!
//! [`decide`] is pure (no I/O, no clock, no state), so the observe and the
//! enforce paths share it and tests can drive it exhaustively.

pub mod glob;

use std::time::SystemTime;

use crate::audit::record::Decision;
use crate::config::{Config, Integration, Mode, Rule, Unidentified};
use crate::identity::Resolution;
use crate::rpc::call::{Call, CallKind};

/// The model name database-service calls are matched as.
pub const DATABASE_MODEL: &str = "db";

/// The outcome of [`decide`], before the mode turns it into a [`Decision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The rule that allowed the call, as `integration.allow[index]`.
    pub rule: Option<String>,
    /// Why, in words for the audit record.
    pub reason: String,
}

impl Verdict {
    fn allow(reason: impl Into<String>) -> Self {
        Self { allowed: true, rule: None, reason: reason.into() }
    }

    fn deny(reason: impl Into<String>) -> Self {
        Self { allowed: false, rule: None, reason: reason.into() }
    }
}

/// Decides on `call`, made by the integration in `resolution`.
///
/// The checks run in this order:
/// 1. A call with a mismatch is denied.
/// 2. An unidentified call follows `policy.unidentified`.
/// 3. Authentication and metadata calls are allowed without a rule.
/// 4. Model and database calls need a rule of their integration that
///    matches both the model (`db` for database calls) and the method.
///
/// `now` is unused until rules gain time windows.
pub fn decide(call: &Call, resolution: &Resolution, config: &Config, now: SystemTime) -> Verdict {
    let _ = now;

    if !call.mismatches.is_empty() {
        return Verdict::deny(format!("request mismatch: {}", call.mismatches.join("; ")));
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

    decide_by_rules(integration, model, method)
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

/// Returns the verdict of the first rule that allows `model.method`.
fn decide_by_rules(integration: &Integration, model: &str, method: &str) -> Verdict {
    let name = &integration.name;
    let allowing = integration.rules.iter().position(|rule| rule_allows(rule, model, method));

    match allowing {
        Some(index) => {
            let rule = format!("{name}.allow[{index}]");
            Verdict { allowed: true, reason: format!("{rule} allows {model}.{method}"), rule: Some(rule) }
        }
        None if is_private(method) => {
            Verdict::deny(format!("no rule of {name} names the private method {model}.{method} exactly"))
        }
        None => Verdict::deny(format!("no rule of {name} allows {model}.{method}")),
    }
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

fn is_private(method: &str) -> bool {
    method.starts_with('_')
}

#[cfg(test)]
mod tests;

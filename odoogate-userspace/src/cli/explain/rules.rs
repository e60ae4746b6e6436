//! Why each allow rule of an integration allows a call or not.
//!
//! Each rule is judged by the real [`policy::decide`] on a configuration in
//! which the integration has only that rule, so the explanation uses the
//! engine's own reasons.

use std::time::SystemTime;

use crate::config::{Config, Rule};
use crate::identity::Resolution;
use crate::policy;
use crate::rpc::call::Call;

/// One rule tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCheck {
    /// `integration.allow[index]`.
    pub rule: String,
    /// `models crm.lead, methods read, search*`.
    pub summary: String,
    pub allows: bool,
    pub reason: String,
}

/// Tries every rule of the integration in `resolution` on its own. Returns
/// an empty list when the call is unidentified or the integration is not
/// in `config`.
pub fn check_rules(call: &Call, resolution: &Resolution, config: &Config, now: SystemTime) -> Vec<RuleCheck> {
    let Some(name) = resolution.integration.as_deref() else {
        return Vec::new();
    };
    let Some(position) = config.integrations.iter().position(|integration| integration.name == name) else {
        return Vec::new();
    };

    let rules = &config.integrations[position].rules;
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let mut probe = config.clone();
            probe.integrations[position].rules = vec![rule.clone()];
            let verdict = policy::decide(call, resolution, &probe, now);
            // The probe's only rule is allow[0]; name it by its real index.
            let reason = verdict.reason.replace(&format!("{name}.allow[0]"), &format!("{name}.allow[{index}]"));
            RuleCheck { rule: format!("{name}.allow[{index}]"), summary: summary(rule), allows: verdict.allowed, reason }
        })
        .collect()
}

fn summary(rule: &Rule) -> String {
    let join = |globs: &[crate::policy::glob::Glob]| globs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    format!("models {}, methods {}", join(&rule.models), join(&rule.methods))
}

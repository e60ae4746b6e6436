//! Temporary grants: `odoogate grant NAME --for 2h` enables a disabled
//! integration (`enabled = false`), or with `--rule INDEX` one disabled
//! rule, until the grant expires or `odoogate revoke-grant ID` ends it.
//!
//! Grants live in a state file ([`store`]) so they survive restarts. The
//! policy reads them through [`Grants`], a plain list passed to
//! [`crate::policy::decide_with_grants`], which keeps the decision pure.
//! Each call a grant lets through carries its id in the audit field
//! `ODOOGATE_GRANT`.

pub mod store;

use std::time::SystemTime;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One grant as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// `g-` and 16 hex digits, random.
    pub id: String,
    pub integration: String,
    /// The index in the integration's `allow` list, or `None` for the
    /// integration itself.
    pub rule: Option<usize>,
    pub created: Timestamp,
    pub expires: Timestamp,
    /// Free text from `--reason`, for the people reading `grant --list`.
    pub reason: Option<String>,
}

impl Grant {
    /// Tells whether the grant is in force at `now`: from its creation up
    /// to, not including, its expiry.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.created <= now && now < self.expires
    }

    /// Names what the grant enables: `erp` or `erp.allow[2]`.
    pub fn target(&self) -> String {
        match self.rule {
            Some(index) => format!("{}.allow[{index}]", self.integration),
            None => self.integration.clone(),
        }
    }
}

/// The grants the policy consults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    grants: Vec<Grant>,
}

impl Grants {
    pub fn new(grants: Vec<Grant>) -> Self {
        Self { grants }
    }

    /// Returns the active grant for `integration` (`rule` = `None`) or for
    /// one of its rules, the one expiring last when several are.
    pub fn active(&self, integration: &str, rule: Option<usize>, now: SystemTime) -> Option<&Grant> {
        let now = Timestamp::try_from(now).ok()?;
        self.grants
            .iter()
            .filter(|grant| grant.integration == integration && grant.rule == rule && grant.is_active(now))
            .max_by_key(|grant| grant.expires)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }
}

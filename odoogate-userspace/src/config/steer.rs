//! `[steering]` and `[guard]`: the eBPF side of enforce mode.
//!
//! ```toml
//! [steering]
//! pin_dir = "/sys/fs/bpf/odoogate"   # bpffs directory of the sk_lookup pins
//!
//! [guard]
//! allow_cgroups = ["system.slice/n8n.service", "system.slice/cron-*.service"]
//! ```
//!
//! Both sections are optional and ignored in observe mode. `[steering]`
//! applies when enforce mode steers (no `proxy.listen`). `[guard]` turns on
//! the cgroup guard: local processes may connect to Odoo's ports only from
//! the listed cgroups, from odoogate's own cgroup, and from the cgroups of
//! the processes listening on those ports (Odoo), which are allowed
//! without being listed.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::build::cgroup_glob;
use super::error::Problem;
use crate::policy::glob::Glob;
use crate::steer::DEFAULT_PIN_DIR;

/// `[steering]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteeringConfig {
    /// `pin_dir`: an absolute path on bpffs for the steering link and maps,
    /// which stay pinned while odoogate is down (new connections are then
    /// dropped) until `odoogate uninstall` removes them. Default
    /// `/sys/fs/bpf/odoogate`.
    pub pin_dir: PathBuf,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        Self {
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
        }
    }
}

/// `[guard]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// `allow_cgroups`: cgroup path globs relative to the cgroup v2 mount,
    /// as in `match.cgroup`. Required; may be empty, which leaves only
    /// odoogate and Odoo allowed.
    pub allow_cgroups: Vec<Glob>,
}

/// `[steering]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSteering {
    pub pin_dir: Option<Spanned<PathBuf>>,
}

/// `[guard]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuard {
    pub allow_cgroups: Vec<Spanned<String>>,
}

pub(super) fn build_steering(raw: RawSteering) -> Result<SteeringConfig, Problem> {
    let Some(pin_dir) = raw.pin_dir else {
        return Ok(SteeringConfig::default());
    };
    if !pin_dir.get_ref().is_absolute() {
        let message = format!(
            "expected an absolute path under /sys/fs/bpf, found {:?}",
            pin_dir.get_ref().display().to_string()
        );
        return Err(Problem::new(pin_dir.span(), message));
    }
    Ok(SteeringConfig {
        pin_dir: pin_dir.into_inner(),
    })
}

pub(super) fn build_guard(raw: Option<RawGuard>) -> Result<Option<GuardConfig>, Problem> {
    let Some(RawGuard { allow_cgroups }) = raw else {
        return Ok(None);
    };
    let allow_cgroups = allow_cgroups.iter().map(cgroup_glob).collect::<Result<_, _>>()?;
    Ok(Some(GuardConfig { allow_cgroups }))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n[policy]\nmode = \"enforce\"\nunidentified = \"deny\"\n";

    #[test]
    fn sections_absent_give_defaults() {
        let config = parse(BASE, "test.toml").unwrap();
        assert_eq!(config.steering.pin_dir.to_str(), Some(crate::steer::DEFAULT_PIN_DIR));
        assert_eq!(config.guard, None);
    }

    #[test]
    fn guard_globs_and_pin_dir_load() {
        let text = format!(
            "{BASE}[steering]\npin_dir = \"/sys/fs/bpf/odoo-a\"\n[guard]\nallow_cgroups = [\"system.slice/n8n.service\", \"user.slice/**\"]\n"
        );
        let config = parse(&text, "test.toml").unwrap();
        assert_eq!(config.steering.pin_dir.to_str(), Some("/sys/fs/bpf/odoo-a"));
        let guard = config.guard.unwrap();
        assert_eq!(guard.allow_cgroups.len(), 2);
        assert!(guard.allow_cgroups[1].matches("user.slice/user-1000.slice"));
    }

    #[test]
    fn bad_values_point_at_their_line() {
        let relative = format!("{BASE}[steering]\npin_dir = \"odoogate\"\n");
        let error = parse(&relative, "test.toml").unwrap_err().to_string();
        assert!(error.contains("test.toml:8:") && error.contains("absolute path"), "{error}");

        let glob = format!("{BASE}[guard]\nallow_cgroups = [\"a/**b\"]\n");
        let error = parse(&glob, "test.toml").unwrap_err().to_string();
        assert!(error.contains("test.toml:8:") && error.contains("invalid cgroup glob"), "{error}");

        let missing = format!("{BASE}[guard]\n");
        assert!(parse(&missing, "test.toml").is_err());
    }
}

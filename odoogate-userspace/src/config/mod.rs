//! The configuration file (TOML): Odoo's ports, the policy mode, capture
//! bounds, the audit output and the integrations with their allow rules.
//!
//! ```toml
//! [odoo]
//! ports = [8069]
//! interfaces = ["lo"]
//! trusted_proxies = ["127.0.0.1/32"]
//!
//! [policy]
//! mode = "observe"
//! unidentified = "allow"
//!
//! [[integration]]
//! name = "website-form"
//! match = { ip = ["203.0.113.10/32"] }
//! allow = [{ models = ["crm.lead"], methods = ["create"] }]
//! ```
//!
//! `[odoo]` and `[policy]` are required; `[capture]`, `[audit]`, `[tokens]`,
//! `[steering]`, `[guard]`, `[control]` and the integrations are optional. Unknown keys are errors. Every error names
//! `FILE:LINE:COLUMN`, the key path (`integration[2].match.ip[0]`), what was
//! expected and what was found. The types below document each key.

mod build;
mod error;
mod metrics;
mod proxy;
mod raw;
mod steer;

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::identity::Fingerprint;
use crate::policy::glob::Glob;
use crate::policy::rate::RateLimit;
use crate::policy::window::Schedule;

pub use error::{ConfigError, InvalidConfig};
pub use metrics::MetricsConfig;
pub use steer::{GuardConfig, SteeringConfig};
pub use proxy::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_REQUEST_BYTES, MIN_MAX_REQUEST_BYTES, ProxyConfig};

/// Largest configuration file read, far above any real one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A loaded and checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub odoo: OdooConfig,
    pub policy: PolicyConfig,
    pub capture: CaptureConfig,
    pub audit: AuditConfig,
    /// `[proxy]`, used in enforce mode.
    pub proxy: ProxyConfig,
    pub tokens: TokensConfig,
    /// `[steering]`, used in enforce mode without `proxy.listen`.
    pub steering: SteeringConfig,
    /// `[guard]`: the cgroup guard, enforce mode only; `None` when absent.
    pub guard: Option<GuardConfig>,
    /// `[metrics]`: the Prometheus endpoint, off by default.
    pub metrics: MetricsConfig,
    /// `[control]`.
    pub control: ControlConfig,
    /// The `[[integration]]` tables, in file order: the first whose match
    /// holds takes a call.
    pub integrations: Vec<Integration>,
}

/// `[odoo]`: where Odoo listens and who may speak for clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OdooConfig {
    /// `ports`: Odoo's HTTP ports, at least one, distinct, none 0.
    pub ports: Vec<u16>,
    /// `interfaces`: network interfaces the observe path captures on, at
    /// least one (`lo` for clients on the same host).
    pub interfaces: Vec<String>,
    /// `trusted_proxies`: CIDRs or addresses of reverse proxies whose
    /// `Forwarded` / `X-Forwarded-For` headers name the real client. Empty
    /// by default: those headers are then ignored.
    pub trusted_proxies: Vec<IpNet>,
}

/// `[policy]`: what to do with calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    pub mode: Mode,
    pub unidentified: Unidentified,
    /// `grants_file`: the state file of `odoogate grant`, an absolute path.
    /// Default `/var/lib/odoogate/grants.json`.
    pub grants_file: PathBuf,
    /// `sessions_file`: where web session bindings outlive a restart, an
    /// absolute path; in memory only when absent (the default).
    pub sessions_file: Option<PathBuf>,
    /// `session_lifetime_secs`: how long a web session's binding lasts
    /// after the last call that used it. It should match Odoo's
    /// `sessions.max_inactivity_seconds`, 7 days by default in both.
    pub session_lifetime: Duration,
}

/// `[control]`: the daemon's control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// `socket`: the unix socket `odoogate status` and `odoogate reload`
    /// connect to, an absolute path. Default `/run/odoogate/control.sock`.
    pub socket: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self { socket: PathBuf::from(crate::control::DEFAULT_SOCKET) }
    }
}

/// `policy.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `observe`: record every call with its decision (`would_deny` for
    /// denials) and leave the traffic untouched.
    Observe,
    /// `enforce`: odoogate sits in the path (steered by sk_lookup, or on
    /// `proxy.listen`), and denied calls never reach Odoo.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Enforce => "enforce",
        }
    }
}

/// `policy.unidentified`: the decision on calls that no integration matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unidentified {
    Allow,
    Deny,
}

impl Unidentified {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// `[capture]`: bounds of the observe path. Every key is optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// `ring_buffer_bytes`: size of the kernel-to-userspace ring buffer, a
    /// power of two of at least 4096 (the kernel requires a power-of-two
    /// multiple of the page size). Default 64 MiB.
    pub ring_buffer_bytes: u32,
    /// `max_body_bytes`: request or response body bytes kept per message;
    /// a longer body is cut and its record is marked truncated. Default 16 MiB.
    pub max_body_bytes: usize,
    /// `max_flows`: TCP flows tracked at once; beyond it new flows are
    /// dropped and counted. Default 65536.
    pub max_flows: usize,
    /// `max_flow_buffer_bytes`: out-of-order and unframed bytes buffered per
    /// flow. Default 4 MiB.
    pub max_flow_buffer_bytes: usize,
    /// `idle_timeout_secs`: a flow without packets for this long is
    /// forgotten. Default 300 seconds.
    pub idle_timeout: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: 64 * 1024 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            max_flows: 65_536,
            max_flow_buffer_bytes: 4 * 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// `[audit]`: where audit records go. Every key is optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// `output`, default `auto`.
    pub output: AuditOutput,
    /// `file`: the JSON Lines file for `output = "file"`, an absolute path.
    /// Default `/var/log/odoogate/audit.jsonl`; setting it with another
    /// output is an error, since it would be ignored.
    pub file: PathBuf,
    /// `error_records_per_minute`: decode-error, framing and capture-gap
    /// records written per minute before the rest are only counted; at
    /// least 1. Default 60.
    pub error_records_per_minute: u32,
}

/// Default of `audit.file`.
pub const DEFAULT_AUDIT_FILE: &str = "/var/log/odoogate/audit.jsonl";

impl Default for AuditConfig {
    fn default() -> Self {
        Self { output: AuditOutput::Auto, file: PathBuf::from(DEFAULT_AUDIT_FILE), error_records_per_minute: 60 }
    }
}

/// `audit.output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutput {
    /// `auto`: journald when its socket exists, else stderr.
    Auto,
    /// `journald`: journald, failing when it is missing.
    Journald,
    /// `stderr`: one JSON object per line on stderr.
    Stderr,
    /// `file`: one JSON object per line appended to `audit.file`.
    File,
}

impl AuditOutput {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Journald => "journald",
            Self::Stderr => "stderr",
            Self::File => "file",
        }
    }
}

/// `[tokens]`: scoped tokens and the service credential that replaces them.
/// Every key is optional.
///
/// The service credential itself never appears in this file: a `default`,
/// `credential`, `password` or `api_key` key here is an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokensConfig {
    /// `store`: the token store, an absolute path. Default
    /// `/var/lib/odoogate/tokens.json`.
    pub store: PathBuf,
    /// `credentials_file`: the TOML file with the service credential, an
    /// absolute path. When absent, the systemd credential
    /// `$CREDENTIALS_DIRECTORY/odoogate-credentials` is read instead.
    pub credentials_file: Option<PathBuf>,
    /// `inject_context`: when true, forwarded model calls carry
    /// `context.odoogate_integration = NAME`, so Odoo-side code can tell
    /// integrations apart. Default false.
    pub inject_context: bool,
}

/// Default of `tokens.store`.
pub const DEFAULT_TOKEN_STORE: &str = "/var/lib/odoogate/tokens.json";

impl Default for TokensConfig {
    fn default() -> Self {
        Self { store: PathBuf::from(DEFAULT_TOKEN_STORE), credentials_file: None, inject_context: false }
    }
}

/// One `[[integration]]`: a named consumer of the Odoo API.
#[derive(Clone, Debug)]
pub struct Integration {
    /// `name`: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, unique.
    pub name: String,
    /// `match`: which calls belong to the integration.
    pub matcher: Match,
    /// `allow`: the rules; a model call is allowed when one of them matches.
    /// An integration without rules is identified and its model calls are
    /// all denied.
    pub rules: Vec<Rule>,
    /// `enabled`: false denies every model and database call of the
    /// integration, unless a temporary grant (`odoogate grant NAME`) is
    /// active. Default true.
    pub enabled: bool,
    /// `rate` and `burst`: a limit on all the integration's allowed calls
    /// together, such as `rate = "600/min"`; see [`RateLimit`].
    pub rate: Option<RateLimit>,
    /// `web_routes`: path globs of the web routes other than RPC calls that
    /// the integration's web session may open (`/web/content/**`); see
    /// [`crate::policy::web_routes`]. Empty by default.
    pub web_routes: Vec<Glob>,
}

/// `match`: a conjunction, so every key present must hold. At least one key
/// is required, because an empty match would take every call; use
/// `policy.unidentified` for that. Each list present has at least one entry;
/// an empty list here means the key is absent.
#[derive(Clone, Debug, Default)]
pub struct Match {
    /// `ip`: CIDRs or addresses; holds when the client address is in one.
    /// Behind a trusted proxy the client address comes from its headers.
    pub ip: Vec<IpNet>,
    /// `cgroup`: a path glob or a list of them, relative to the cgroup v2
    /// mount (`system.slice/n8n.service`, `system.slice/*.service`,
    /// `user.slice/**`); holds when the client's cgroup matches one.
    pub cgroup: Vec<Glob>,
    /// `api_key_sha256`: SHA-256 fingerprints (64 hex characters, from
    /// `printf %s KEY | sha256sum`); holds when the call's credential (the
    /// password argument or a bearer key) has one of them.
    pub api_key_sha256: Vec<Fingerprint>,
    /// `token = true`: holds when the call carries a valid scoped token of
    /// this integration. Only such an integration accepts its tokens:
    /// without it, a call with one of its tokens is refused
    /// (`token_outside_match`). With it, a call without a token never
    /// matches, and the other keys become conditions on token calls
    /// (`{ token = true, ip = [...] }`: this integration's tokens, only from
    /// these addresses). `token = false` is the same as leaving it out.
    pub token: bool,
}

impl Match {
    /// Returns the names of the keys present, strongest first.
    pub fn kinds(&self) -> Vec<&'static str> {
        let Self { ip, cgroup, api_key_sha256, token } = self;
        let mut kinds = Vec::new();
        if *token {
            kinds.push("token");
        }
        if !api_key_sha256.is_empty() {
            kinds.push("api_key_sha256");
        }
        if !cgroup.is_empty() {
            kinds.push("cgroup");
        }
        if !ip.is_empty() {
            kinds.push("ip");
        }
        kinds
    }
}

/// One `allow` entry: it allows every method matching one of `methods` on
/// every model matching one of `models`, within its limits.
///
/// Globs take `*` and `?`. Calls to the `db` service (list, create, drop,
/// dump) are matched as model `db`, so a `models = ["*"]` rule allows them
/// too, except for guarded calls. Methods starting with `_` are allowed only
/// by a rule that names them exactly. Guarded calls (privilege changes,
/// code, modules, database management; listed in [`crate::policy::guarded`])
/// are allowed only by a rule that names both their model and their method
/// exactly.
///
/// ```toml
/// allow = [
///   { models = ["res.partner"], methods = ["create", "write"],
///     fields = ["name", "email", "child_ids", "child_ids.name"], max_records = 50 },
///   { models = ["res.partner"], methods = ["read", "search_read"],
///     read_fields = ["name", "email"], narrow_reads = true,
///     hours = ["Mon-Fri 08:00-18:00"], timezone = "Europe/Brussels",
///     rate = "10/s", burst = 20 },
/// ]
/// ```
///
/// When a rule matches the model and method but one of its limits refuses
/// the call, the next rules are still tried; when none allows it, the
/// denial names the first rule that refused and the limit.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `models`: at least one model name glob (`crm.lead`, `sale.*`).
    pub models: Vec<Glob>,
    /// `methods`: at least one method name glob (`read`, `search*`).
    pub methods: Vec<Glob>,
    /// `fields`: globs of the fields `create`, `write`, `copy` and
    /// `web_save` may set. A field set inside one2many or many2many
    /// commands, or in any dict of a `create` list, is named `parent.child`
    /// and must be listed as such (or by a glob such as `child_ids.*`).
    /// With it, `load` and `name_create` are refused, because odoogate
    /// cannot see the fields they set. `None` when absent: no restriction.
    pub fields: Option<Vec<Glob>>,
    /// `read_fields`: globs of the fields `read`, `search_read`, `web_read`,
    /// `web_search_read`, `read_group` and `export_data` may return. A read
    /// without a field list (all fields) is refused, unless `narrow_reads`.
    pub read_fields: Option<Vec<Glob>>,
    /// `narrow_reads`: in enforce mode, a `read` or `search_read` asking for
    /// all fields, or for fields beyond `read_fields`, is narrowed to the
    /// allowed ones instead of refused ([`crate::policy::narrowing`]).
    /// Needs `read_fields`. Default false.
    pub narrow_reads: bool,
    /// `hours` with `timezone`: the rule allows calls only inside these
    /// windows ([`crate::policy::window`]).
    pub hours: Option<Schedule>,
    /// `max_records`: the most record ids one call may target (`write`,
    /// `unlink`, `read`, buttons, any method given ids), from 1 to 999.
    pub max_records: Option<usize>,
    /// `rate` and `burst`: a limit on the calls this rule allows.
    pub rate: Option<RateLimit>,
    /// `enabled`: false makes the rule allow nothing, unless a temporary
    /// grant for it (`odoogate grant NAME --rule INDEX`) is active.
    /// Default true.
    pub enabled: bool,
}

impl Rule {
    /// Compiles a rule from model and method globs, without limits.
    pub fn new(models: &[&str], methods: &[&str]) -> Result<Self, crate::policy::glob::GlobError> {
        Ok(Self {
            models: models.iter().map(|m| Glob::name(m)).collect::<Result<_, _>>()?,
            methods: methods.iter().map(|m| Glob::name(m)).collect::<Result<_, _>>()?,
            fields: None,
            read_fields: None,
            narrow_reads: false,
            hours: None,
            max_records: None,
            rate: None,
            enabled: true,
        })
    }
}

// === impl Config ===

impl Config {
    /// Returns the integration named `name`.
    pub fn integration(&self, name: &str) -> Option<&Integration> {
        self.integrations.iter().find(|integration| integration.name == name)
    }
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_bounded(path)?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks configuration text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|error| error::Problem::from(error).locate(text, origin))?;
    build::build(raw, text).map_err(|problem| problem.locate(text, origin))
}

/// Loads the configuration at `path` and summarises it, for `odoogate check`.
pub fn check(path: &Path) -> Result<CheckSummary, ConfigError> {
    load(path).map(|config| CheckSummary::from(&config))
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read { path: path.to_owned(), source };

    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(read_error)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: path.to_owned(), max: MAX_CONFIG_BYTES });
    }
    Ok(text)
}

/// The summary `odoogate check` prints for a valid configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSummary {
    pub mode: Mode,
    pub unidentified: Unidentified,
    pub ports: Vec<u16>,
    pub interfaces: Vec<String>,
    /// The audit output: `journald`, `file PATH` and so on.
    pub audit: String,
    /// In enforce mode, the way odoogate sits in the path and the address it
    /// forwards to, such as `listen 127.0.0.1:8070, upstream 127.0.0.1:8069`.
    pub proxy: Option<String>,
    /// In enforce mode, the token store.
    pub token_store: Option<PathBuf>,
    /// In enforce mode, a description of the cgroups the guard allows, or
    /// `off` without `[guard]`.
    pub guard: Option<String>,
    pub integrations: Vec<IntegrationSummary>,
}

/// One integration in a [`CheckSummary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationSummary {
    pub name: String,
    /// Keys of its match, strongest first (`api_key_sha256`, `cgroup`, `ip`).
    pub match_kinds: Vec<&'static str>,
    pub rules: usize,
}

impl From<&Config> for CheckSummary {
    fn from(config: &Config) -> Self {
        Self {
            mode: config.policy.mode,
            unidentified: config.policy.unidentified,
            ports: config.odoo.ports.clone(),
            interfaces: config.odoo.interfaces.clone(),
            audit: match config.audit.output {
                AuditOutput::File => format!("file {}", config.audit.file.display()),
                output => output.as_str().to_owned(),
            },
            proxy: (config.policy.mode == Mode::Enforce).then(|| {
                let upstream = config.proxy.upstream;
                match config.proxy.listen {
                    Some(listen) => format!("listen {listen}, upstream {upstream}"),
                    None => format!("sk_lookup steering on ports {:?}, upstream {upstream}", config.odoo.ports),
                }
            }),
            token_store: (config.policy.mode == Mode::Enforce).then(|| config.tokens.store.clone()),
            guard: (config.policy.mode == Mode::Enforce).then(|| guard_summary(config.guard.as_ref())),
            integrations: config
                .integrations
                .iter()
                .map(|integration| IntegrationSummary {
                    name: integration.name.clone(),
                    match_kinds: integration.matcher.kinds(),
                    rules: integration.rules.len(),
                })
                .collect(),
        }
    }
}

/// Describes what the cgroup guard allows, for `odoogate check`.
fn guard_summary(guard: Option<&GuardConfig>) -> String {
    const ALWAYS: &str = "odoogate's own cgroup and the cgroups of the processes listening on Odoo's ports";
    let Some(guard) = guard else {
        return "off (no [guard] section)".to_owned();
    };
    if guard.allow_cgroups.is_empty() {
        return format!("on, allows only {ALWAYS}");
    }
    let globs: Vec<String> = guard.allow_cgroups.iter().map(|glob| format!("{:?}", glob.as_str())).collect();
    format!("on, allows {}, {ALWAYS}", globs.join(", "))
}

impl fmt::Display for CheckSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        writeln!(f, "mode: {}", self.mode.as_str())?;
        writeln!(f, "unidentified calls: {}", self.unidentified.as_str())?;
        writeln!(f, "ports: {}", ports.join(", "))?;
        writeln!(f, "interfaces: {}", self.interfaces.join(", "))?;
        writeln!(f, "audit: {}", self.audit)?;
        if let Some(proxy) = &self.proxy {
            writeln!(f, "proxy: {proxy}")?;
        }
        if let Some(store) = &self.token_store {
            writeln!(f, "token store: {}", store.display())?;
        }
        if let Some(guard) = &self.guard {
            writeln!(f, "guard: {guard}")?;
        }
        writeln!(f, "integrations: {}", self.integrations.len())?;
        for integration in &self.integrations {
            let rules = if integration.rules == 1 { "rule" } else { "rules" };
            writeln!(
                f,
                "  {}: match {}, {} {rules}",
                integration.name,
                integration.match_kinds.join(" + "),
                integration.rules
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

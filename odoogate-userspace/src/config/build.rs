//! Semantic checks that turn the file as written into a [`Config`].
//!
//! Each check reports the span of the value it rejects, so the error names
//! its line and key path.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::error::{Problem, line_and_column};
use super::raw::{
    OneOrMany, RawAudit, RawCapture, RawConfig, RawControl, RawIntegration, RawMatch, RawOdoo, RawPolicy, RawRule, RawTokens,
    SpannedStrings,
};
use super::{
    AuditConfig, AuditOutput, CaptureConfig, Config, ControlConfig, Integration, Match, OdooConfig, PolicyConfig, Rule, TokensConfig,
};
use crate::grant::store::DEFAULT_GRANT_FILE;
use crate::identity::{Fingerprint, FingerprintError};
use crate::policy::glob::Glob;
use crate::policy::rate::{MAX_COUNT, RateLimit};
use crate::policy::window::{Schedule, Window};
use crate::rpc::call::MAX_RECORD_IDS;

/// Maximum integration name length, so names stay readable in records.
const MAX_NAME_LEN: usize = 64;

/// Maximum interface name length the kernel accepts (`IFNAMSIZ` less the NUL).
const MAX_INTERFACE_LEN: usize = 15;

/// Smallest ring buffer: one page on the common 4 KiB-page architectures.
const MIN_RING_BUFFER_BYTES: u32 = 4096;

type Checked<T> = Result<T, Problem>;

/// Checks `raw`, parsed from `text`, and builds the configuration.
pub(super) fn build(raw: RawConfig, text: &str) -> Checked<Config> {
    let RawConfig { odoo, policy, capture, audit, tokens, proxy, steering, guard, metrics, control, integration } = raw;
    let RawPolicy { mode, unidentified, grants_file, sessions_file, session_lifetime_secs } = policy;
    let grants_file = grants_file.map_or_else(|| Ok(PathBuf::from(DEFAULT_GRANT_FILE)), absolute_path)?;
    let sessions_file = sessions_file.map(absolute_path).transpose()?;
    // No upper bound, unlike the proxy's timeouts: the lifetime is only
    // subtracted from the clock, with `checked_sub`.
    let session_lifetime = match session_lifetime_secs {
        None => crate::identity::SESSION_LIFETIME,
        Some(secs) => Duration::from_secs(positive(secs, "seconds")?),
    };

    let odoo = odoo_config(odoo)?;
    let proxy = super::proxy::build(proxy, odoo.ports[0])?;
    Ok(Config {
        odoo,
        proxy,
        policy: PolicyConfig { mode, unidentified, grants_file, sessions_file, session_lifetime },
        capture: capture_config(capture)?,
        audit: audit_config(audit)?,
        tokens: tokens_config(tokens)?,
        steering: super::steer::build_steering(steering)?,
        guard: super::steer::build_guard(guard)?,
        metrics: super::metrics::build(metrics)?,
        control: control_config(control)?,
        integrations: integrations(integration, text)?,
    })
}

// === [odoo] ===

fn odoo_config(raw: RawOdoo) -> Checked<OdooConfig> {
    let RawOdoo { ports, interfaces, trusted_proxies } = raw;
    Ok(OdooConfig {
        ports: ports_list(ports)?,
        interfaces: interface_list(interfaces)?,
        trusted_proxies: trusted_proxies.iter().map(cidr).collect::<Checked<_>>()?,
    })
}

fn ports_list(ports: Spanned<Vec<Spanned<u16>>>) -> Checked<Vec<u16>> {
    if ports.get_ref().is_empty() {
        return Err(Problem::new(ports.span(), "expected at least one port, found an empty list"));
    }

    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for port in ports.into_inner() {
        let value = *port.get_ref();
        if value == 0 {
            return Err(Problem::new(port.span(), "expected a port from 1 to 65535, found 0"));
        }
        if !seen.insert(value) {
            return Err(Problem::new(port.span(), format!("port {value} is listed twice")));
        }
        out.push(value);
    }
    Ok(out)
}

fn interface_list(interfaces: SpannedStrings) -> Checked<Vec<String>> {
    if interfaces.get_ref().is_empty() {
        return Err(Problem::new(interfaces.span(), "expected at least one interface, found an empty list"));
    }

    let mut out = Vec::new();
    for name in interfaces.into_inner() {
        let valid = !name.get_ref().is_empty()
            && name.get_ref().len() <= MAX_INTERFACE_LEN
            && !name.get_ref().contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if !valid {
            let message = format!(
                "expected an interface name of 1 to {MAX_INTERFACE_LEN} bytes without `/`, `:` or spaces, found {:?}",
                name.get_ref()
            );
            return Err(Problem::new(name.span(), message));
        }
        out.push(name.into_inner());
    }
    Ok(out)
}

/// Parses a CIDR, or a bare address as a single-host network.
fn cidr(text: &Spanned<String>) -> Checked<IpNet> {
    let value = text.get_ref().trim();
    if let Ok(net) = value.parse::<IpNet>() {
        return Ok(net);
    }
    if let Ok(addr) = value.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    let message = format!(
        "expected a CIDR such as \"203.0.113.0/24\" or an address such as \"2001:db8::1\", found {:?}",
        text.get_ref()
    );
    Err(Problem::new(text.span(), message))
}

// === [capture] and [audit] ===

fn capture_config(raw: RawCapture) -> Checked<CaptureConfig> {
    let RawCapture { ring_buffer_bytes, max_body_bytes, max_flows, max_flow_buffer_bytes, idle_timeout_secs } = raw;
    let defaults = CaptureConfig::default();

    let ring_buffer_bytes = match ring_buffer_bytes {
        None => defaults.ring_buffer_bytes,
        Some(size) => ring_buffer_size(size)?,
    };
    let idle_timeout = match idle_timeout_secs {
        None => defaults.idle_timeout,
        Some(secs) => Duration::from_secs(positive(secs, "seconds")?),
    };

    Ok(CaptureConfig {
        ring_buffer_bytes,
        max_body_bytes: max_body_bytes.map_or(Ok(defaults.max_body_bytes), |v| positive(v, "bytes"))?,
        max_flows: max_flows.map_or(Ok(defaults.max_flows), |v| positive(v, "flows"))?,
        max_flow_buffer_bytes: max_flow_buffer_bytes
            .map_or(Ok(defaults.max_flow_buffer_bytes), |v| positive(v, "bytes"))?,
        idle_timeout,
    })
}

fn ring_buffer_size(size: Spanned<u32>) -> Checked<u32> {
    let value = *size.get_ref();
    if value < MIN_RING_BUFFER_BYTES || !value.is_power_of_two() {
        let message = format!(
            "expected a power of two of at least {MIN_RING_BUFFER_BYTES} bytes (such as 67108864 for 64 MiB), found {value}"
        );
        return Err(Problem::new(size.span(), message));
    }
    Ok(value)
}

fn positive<T: Copy + Default + PartialEq + std::fmt::Display>(value: Spanned<T>, unit: &str) -> Checked<T> {
    if *value.get_ref() == T::default() {
        return Err(Problem::new(value.span(), format!("expected at least 1 ({unit}), found 0")));
    }
    Ok(*value.get_ref())
}

fn audit_config(raw: RawAudit) -> Checked<AuditConfig> {
    let RawAudit { output, file, error_records_per_minute } = raw;
    let defaults = AuditConfig::default();
    let output = output.unwrap_or(defaults.output);

    let file = match file {
        None => defaults.file,
        Some(path) if output != AuditOutput::File => {
            let message = "audit.file is only used with output = \"file\"; set output = \"file\" or remove it";
            return Err(Problem::new(path.span(), message));
        }
        Some(path) if !path.get_ref().is_absolute() => {
            let message = format!("expected an absolute path, found {:?}", path.get_ref().display().to_string());
            return Err(Problem::new(path.span(), message));
        }
        Some(path) => path.into_inner(),
    };

    Ok(AuditConfig {
        output,
        file,
        error_records_per_minute: error_records_per_minute
            .map_or(Ok(defaults.error_records_per_minute), |v| positive(v, "records"))?,
    })
}

// === [tokens] ===

fn tokens_config(raw: RawTokens) -> Checked<TokensConfig> {
    let RawTokens { store, credentials_file, inject_context, default, credential, password, api_key } = raw;
    if let Some(pasted) = [default, credential, password, api_key].into_iter().flatten().next() {
        let message = "the service credential must not be in the main configuration; \
                       put it in the file named by tokens.credentials_file (mode 0600) \
                       or in the systemd credential odoogate-credentials";
        return Err(Problem::new(pasted.span(), message));
    }

    let defaults = TokensConfig::default();
    Ok(TokensConfig {
        store: store.map_or(Ok(defaults.store), absolute_path)?,
        credentials_file: credentials_file.map(absolute_path).transpose()?,
        inject_context: inject_context.unwrap_or(defaults.inject_context),
    })
}

// === [control] ===

fn control_config(raw: RawControl) -> Checked<ControlConfig> {
    let defaults = ControlConfig::default();
    Ok(ControlConfig { socket: raw.socket.map_or(Ok(defaults.socket), absolute_path)? })
}

fn absolute_path(path: Spanned<PathBuf>) -> Checked<PathBuf> {
    if !path.get_ref().is_absolute() {
        let message = format!("expected an absolute path, found {:?}", path.get_ref().display().to_string());
        return Err(Problem::new(path.span(), message));
    }
    Ok(path.into_inner())
}

// === [[integration]] ===

fn integrations(raw: Vec<Spanned<RawIntegration>>, text: &str) -> Checked<Vec<Integration>> {
    // Name -> byte offset of its first definition, for the duplicate message.
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());

    for entry in raw {
        let RawIntegration { name, matcher, allow, enabled, rate, burst, web_routes } = entry.into_inner();
        check_name(&name)?;
        if let Some(&first) = first_seen.get(name.get_ref()) {
            let (line, _) = line_and_column(text, first);
            let message = format!("duplicate integration name {:?}, first defined on line {line}", name.get_ref());
            return Err(Problem::new(name.span(), message));
        }
        first_seen.insert(name.get_ref().clone(), name.span().start);

        out.push(Integration {
            name: name.into_inner(),
            matcher: match_config(matcher)?,
            rules: allow.into_iter().map(rule).collect::<Checked<_>>()?,
            enabled: enabled.unwrap_or(true),
            rate: rate_limit(rate, burst)?,
            web_routes: web_routes.map(|list| non_empty_list(list, "path glob", |item| route_glob(&item))).transpose()?.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Checks a `web_routes` entry: a URL path glob starting with `/`.
fn route_glob(pattern: &Spanned<String>) -> Checked<Glob> {
    let value = pattern.get_ref();
    if !value.starts_with('/') || value.contains('%') {
        let message = format!("invalid web route {value:?}: expected a URL path glob such as \"/web/content/**\", without escapes");
        return Err(Problem::new(pattern.span(), message));
    }
    Glob::path(value).map_err(|error| Problem::new(pattern.span(), format!("invalid web route {value:?}: {error}")))
}

fn check_name(name: &Spanned<String>) -> Checked<()> {
    let value = name.get_ref();
    let valid = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        return Ok(());
    }
    let message = format!("expected 1 to {MAX_NAME_LEN} ASCII letters, digits, `.`, `_` or `-`, found {value:?}");
    Err(Problem::new(name.span(), message))
}

fn match_config(raw: Spanned<RawMatch>) -> Checked<Match> {
    let span = raw.span();
    let RawMatch { ip, cgroup, api_key_sha256, token } = raw.into_inner();

    let matcher = Match {
        token: token.is_some_and(|token| token.into_inner()),
        ip: ip.map(|list| non_empty_list(list, "CIDR", |item| cidr(&item))).transpose()?.unwrap_or_default(),
        cgroup: cgroup.map(cgroup_globs).transpose()?.unwrap_or_default(),
        api_key_sha256: api_key_sha256
            .map(|list| non_empty_list(list, "fingerprint", fingerprint))
            .transpose()?
            .unwrap_or_default(),
    };

    if matcher.token && !matcher.api_key_sha256.is_empty() {
        let message = "token = true cannot be combined with api_key_sha256: a call that presents a token \
                       carries no API key of its own; use ip or cgroup to restrict where tokens are used";
        return Err(Problem::new(span, message));
    }
    if matcher.kinds().is_empty() {
        let message = "empty match: it would take every call; set token, ip, cgroup or api_key_sha256, \
                       or use policy.unidentified for calls that no integration matches";
        return Err(Problem::new(span, message));
    }
    Ok(matcher)
}

fn cgroup_globs(raw: Spanned<OneOrMany>) -> Checked<Vec<Glob>> {
    let span = raw.span();
    match raw.into_inner() {
        OneOrMany::One(pattern) => Ok(vec![cgroup_glob(&Spanned::new(span, pattern))?]),
        OneOrMany::Many(list) => non_empty_list(Spanned::new(span, list), "cgroup glob", |item| cgroup_glob(&item)),
    }
}

/// Mount points of the cgroup v2 file system, longest first:
/// `/sys/fs/cgroup` on current distributions, `/sys/fs/cgroup/unified` on
/// hybrid hosts. Listed without the leading `/`, which a cgroup glob may
/// leave out.
const CGROUP_MOUNT_POINTS: [&str; 2] = ["sys/fs/cgroup/unified", "sys/fs/cgroup"];

/// Checks a cgroup glob of `match.cgroup` or `guard.allow_cgroups`. Globs
/// match paths relative to the cgroup v2 mount, so one that starts with a
/// mount point, as a path copied from the file system does, would never
/// match and is rejected with the relative form to write instead.
pub(super) fn cgroup_glob(pattern: &Spanned<String>) -> Checked<Glob> {
    let text = pattern.get_ref();
    if let Some((mount, relative)) = split_cgroup_mount(text) {
        let fix = match relative {
            "" => "write the path of a cgroup below it, such as \"system.slice/n8n.service\"".to_owned(),
            relative => format!("write {relative:?}"),
        };
        let message = format!(
            "invalid cgroup glob {text:?}: it starts with the cgroup mount point /{mount}, \
             but cgroup globs are paths relative to the cgroup v2 mount; {fix}"
        );
        return Err(Problem::new(pattern.span(), message));
    }
    Glob::path(text).map_err(|error| Problem::new(pattern.span(), format!("invalid cgroup glob {text:?}: {error}")))
}

/// Splits a cgroup glob that starts with one of [`CGROUP_MOUNT_POINTS`]
/// into that mount point and the rest, without its leading `/`. The rest is
/// empty when the glob names the mount point itself.
fn split_cgroup_mount(pattern: &str) -> Option<(&'static str, &str)> {
    let path = pattern.strip_prefix('/').unwrap_or(pattern);
    CGROUP_MOUNT_POINTS.into_iter().find_map(|mount| {
        let rest = path.strip_prefix(mount)?;
        if rest.is_empty() {
            return Some((mount, rest));
        }
        let relative = rest.strip_prefix('/')?;
        Some((mount, relative.trim_start_matches('/')))
    })
}

fn name_glob(pattern: &Spanned<String>) -> Checked<Glob> {
    Glob::name(pattern.get_ref())
        .map_err(|error| Problem::new(pattern.span(), format!("invalid glob {:?}: {error}", pattern.get_ref())))
}

/// Checks an API key fingerprint without echoing it: a 40-hex value is most
/// likely the key itself pasted by mistake, and must not reach a log.
fn fingerprint(text: Spanned<String>) -> Checked<Fingerprint> {
    Fingerprint::from_hex(text.get_ref()).map_err(|error| {
        let found = match error {
            FingerprintError::Length(40) => {
                "40 characters, the length of an Odoo API key itself: write its SHA-256 instead".to_owned()
            }
            FingerprintError::Length(len) => format!("{len} characters"),
            FingerprintError::NotHex => "a character that is not hexadecimal".to_owned(),
        };
        let message = format!(
            "expected the SHA-256 of an API key as 64 hex characters (printf %s KEY | sha256sum), found {found}"
        );
        Problem::new(text.span(), message)
    })
}

fn rule(raw: Spanned<RawRule>) -> Checked<Rule> {
    let span = raw.span();
    let RawRule {
        models,
        methods,
        fields,
        read_fields,
        narrow_reads,
        hours,
        timezone,
        max_records,
        rate,
        burst,
        enabled,
    } = raw.into_inner();

    let read_fields = read_fields.map(|list| non_empty_list(list, "field glob", |item| name_glob(&item))).transpose()?;
    let narrow_reads = match narrow_reads {
        Some(narrow) if *narrow.get_ref() && read_fields.is_none() => {
            let message = "narrow_reads needs read_fields: list the fields reads are narrowed to";
            return Err(Problem::new(narrow.span(), message));
        }
        Some(narrow) => narrow.into_inner(),
        None => false,
    };

    Ok(Rule {
        models: non_empty_list(models, "model glob", |item| name_glob(&item))?,
        methods: non_empty_list(methods, "method glob", |item| name_glob(&item))?,
        fields: fields.map(|list| non_empty_list(list, "field glob", |item| name_glob(&item))).transpose()?,
        read_fields,
        narrow_reads,
        hours: schedule(hours, timezone, span)?,
        max_records: max_records.map(max_record_count).transpose()?,
        rate: rate_limit(rate, burst)?,
        enabled: enabled.unwrap_or(true),
    })
}

/// Builds `hours` with its `timezone`; each needs the other.
fn schedule(
    hours: Option<SpannedStrings>,
    timezone: Option<Spanned<String>>,
    rule_span: std::ops::Range<usize>,
) -> Checked<Option<Schedule>> {
    let (hours, timezone) = match (hours, timezone) {
        (None, None) => return Ok(None),
        (Some(hours), Some(timezone)) => (hours, timezone),
        (Some(_), None) => {
            let message = "hours needs a timezone, such as timezone = \"Europe/Brussels\" or \"UTC\"";
            return Err(Problem::new(rule_span, message));
        }
        (None, Some(timezone)) => {
            let message = "timezone is only used with hours; add hours = [\"Mon-Fri 08:00-18:00\"] or remove it";
            return Err(Problem::new(timezone.span(), message));
        }
    };

    let windows = non_empty_list(hours, "time window", |item| {
        Window::parse(item.get_ref()).map_err(|error| Problem::new(item.span(), error.to_string()))
    })?;
    Schedule::new(windows, timezone.get_ref()).map(Some).map_err(|error| Problem::new(timezone.span(), error.to_string()))
}

/// Checks `max_records`: a call's ids are kept up to [`MAX_RECORD_IDS`], so
/// a larger maximum could not be checked.
fn max_record_count(value: Spanned<usize>) -> Checked<usize> {
    let count = *value.get_ref();
    let max = MAX_RECORD_IDS - 1;
    if !(1..=max).contains(&count) {
        return Err(Problem::new(value.span(), format!("expected a record count from 1 to {max}, found {count}")));
    }
    Ok(count)
}

/// Builds `rate` with its optional `burst`.
fn rate_limit(rate: Option<Spanned<String>>, burst: Option<Spanned<u32>>) -> Checked<Option<RateLimit>> {
    let rate = match (rate, burst) {
        (None, None) => return Ok(None),
        (None, Some(burst)) => {
            let message = "burst is only used with rate; add rate = \"10/s\" or remove it";
            return Err(Problem::new(burst.span(), message));
        }
        (Some(rate), burst) => (rate, burst),
    };
    let (rate, burst) = rate;
    if let Some(burst) = &burst
        && !(1..=MAX_COUNT).contains(burst.get_ref())
    {
        let message = format!("expected a burst from 1 to {MAX_COUNT}, found {}", burst.get_ref());
        return Err(Problem::new(burst.span(), message));
    }
    RateLimit::parse(rate.get_ref(), burst.map(Spanned::into_inner))
        .map(Some)
        .map_err(|error| Problem::new(rate.span(), error.to_string()))
}

/// Converts each element of a list that must not be empty.
fn non_empty_list<T>(
    list: SpannedStrings,
    what: &str,
    convert: impl FnMut(Spanned<String>) -> Checked<T>,
) -> Checked<Vec<T>> {
    if list.get_ref().is_empty() {
        return Err(Problem::new(list.span(), format!("expected at least one {what}, found an empty list")));
    }
    list.into_inner().into_iter().map(convert).collect()
}

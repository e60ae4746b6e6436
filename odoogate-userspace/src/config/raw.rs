//! The configuration file as written, before semantic checks.
//!
//! Every table rejects unknown keys. Values that a later check may reject
//! keep their span, so that error points at the right line.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use super::{AuditOutput, Mode, Unidentified};

/// A list of strings whose elements keep their spans.
pub(super) type SpannedStrings = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub odoo: RawOdoo,
    pub policy: RawPolicy,
    #[serde(default)]
    pub capture: RawCapture,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub proxy: super::proxy::RawProxy,
    #[serde(default)]
    pub steering: super::steer::RawSteering,
    pub guard: Option<super::steer::RawGuard>,
    #[serde(default)]
    pub metrics: super::metrics::RawMetrics,
    #[serde(default)]
    pub control: RawControl,
    #[serde(default)]
    pub integration: Vec<Spanned<RawIntegration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOdoo {
    pub ports: Spanned<Vec<Spanned<u16>>>,
    pub interfaces: SpannedStrings,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub mode: Mode,
    pub unidentified: Unidentified,
    pub grants_file: Option<Spanned<PathBuf>>,
    pub sessions_file: Option<Spanned<PathBuf>>,
    pub session_lifetime_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub socket: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapture {
    pub ring_buffer_bytes: Option<Spanned<u32>>,
    pub max_body_bytes: Option<Spanned<usize>>,
    pub max_flows: Option<Spanned<usize>>,
    pub max_flow_buffer_bytes: Option<Spanned<usize>>,
    pub idle_timeout_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub output: Option<AuditOutput>,
    pub file: Option<Spanned<PathBuf>>,
    pub error_records_per_minute: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    pub store: Option<Spanned<PathBuf>>,
    pub credentials_file: Option<Spanned<PathBuf>>,
    pub inject_context: Option<bool>,
    /// Keys where a service credential might be pasted by mistake. Each is
    /// rejected with a message that points to `credentials_file` and never
    /// repeats the value.
    pub default: Option<Spanned<toml::Value>>,
    pub credential: Option<Spanned<toml::Value>>,
    pub password: Option<Spanned<toml::Value>>,
    pub api_key: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntegration {
    pub name: Spanned<String>,
    #[serde(rename = "match")]
    pub matcher: Spanned<RawMatch>,
    #[serde(default)]
    pub allow: Vec<Spanned<RawRule>>,
    pub enabled: Option<bool>,
    pub rate: Option<Spanned<String>>,
    pub burst: Option<Spanned<u32>>,
    pub web_routes: Option<SpannedStrings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub ip: Option<SpannedStrings>,
    pub cgroup: Option<Spanned<OneOrMany>>,
    pub api_key_sha256: Option<SpannedStrings>,
    pub token: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub models: SpannedStrings,
    pub methods: SpannedStrings,
    pub fields: Option<SpannedStrings>,
    pub read_fields: Option<SpannedStrings>,
    pub narrow_reads: Option<Spanned<bool>>,
    pub hours: Option<SpannedStrings>,
    pub timezone: Option<Spanned<String>>,
    pub max_records: Option<Spanned<usize>>,
    pub rate: Option<Spanned<String>>,
    pub burst: Option<Spanned<u32>>,
    pub enabled: Option<bool>,
}

/// A string or a list of strings (`cgroup = "a"` or `cgroup = ["a", "b"]`).
#[derive(Debug)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

struct OneOrManyVisitor;

impl<'de> Visitor<'de> for OneOrManyVisitor {
    type Value = OneOrMany;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(OneOrMany::One(value.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OneOrMany::Many(items))
    }
}

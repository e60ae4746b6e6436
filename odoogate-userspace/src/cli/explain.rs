//! `odoogate explain`: decodes a saved HTTP request and prints which
//! integration it resolves to, which rule allows it or why none does, and
//! the decision in observe and enforce mode.
//!
//! Every step runs the daemon's own code: the request framer, the RPC
//! decoders, identity resolution and [`policy::decide`]. What `explain`
//! cannot know offline is the daemon's state: web sessions bound at login
//! are not known, so a call identified only by its session is shown as
//! unidentified.

mod matching;
mod request;
mod rules;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::config::{self, Config};
use crate::http::HttpRequest;
use crate::identity::{self, Resolution, Source};
use crate::policy::{self, Verdict};
use crate::rpc::{self, Call, CallKind, DecodeLimits};
use crate::token::TokenStore;
use matching::IntegrationCheck;
use rules::RuleCheck;

/// Exit status when the call would be denied.
const EXIT_DENIED: u8 = 1;
/// Exit status when the request or the configuration cannot be read.
const EXIT_ERROR: u8 = 2;

/// Nesting depth the decoders accept, as on the observe path.
const MAX_DECODE_DEPTH: usize = 64;

#[derive(clap::Args)]
#[command(after_help = "Exit status: 0 when the call is allowed (or is not an RPC call and passes through), \
                        1 when observe mode would record it as would_deny or enforce mode would reject it, \
                        2 when the configuration or the request cannot be read.")]
pub struct ExplainArgs {
    /// Configuration file.
    #[arg(long, short, default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Address the request comes from, `IP` or `IP:PORT`. Default 127.0.0.1.
    #[arg(long, value_parser = parse_from)]
    from: Option<SocketAddr>,
    /// cgroup v2 path of the client relative to the mount, such as
    /// `system.slice/n8n.service`.
    #[arg(long)]
    cgroup: Option<String>,
    /// Token store to verify a presented scoped token against [default:
    /// `tokens.store` of the configuration file, when it exists].
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// A raw HTTP request, as saved in `NNN-req.http` captures (CRLF or
    /// LF-only line ends; `Content-Length` must match the body).
    request: PathBuf,
}

fn parse_from(value: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Ok(address);
    }
    value
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|_| format!("invalid address {value:?}: expected IP or IP:PORT, such as 10.0.0.5 or [::1]:40000"))
}

pub fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    match run(args) {
        Ok(explanation) => {
            print!("{}", explanation.text);
            Ok(if explanation.denied { ExitCode::from(EXIT_DENIED) } else { ExitCode::SUCCESS })
        }
        Err(error) => {
            eprintln!("odoogate: {error}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

fn run(args: &ExplainArgs) -> anyhow::Result<Explanation> {
    let config = config::load(&args.config).map_err(|error| anyhow::anyhow!("{error}"))?;
    let request = request::read_request(&args.request)?;
    let peer = args.from.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    let source = Source { peer, cgroup: args.cgroup.clone(), pid: None, comm: None, conn_id: 0 };
    let tokens = match &args.tokens {
        Some(path) => Some(load_given_tokens(path)?),
        None => load_tokens(&config),
    };
    Ok(explain_request(&config, &request, &source, tokens.as_ref(), SystemTime::now()))
}

/// Loads the store `--tokens` names. Unlike `tokens.store`, which the
/// daemon reads as empty until it exists, a missing file here is an error,
/// because it is most likely a mistyped path.
fn load_given_tokens(path: &Path) -> anyhow::Result<TokenStore> {
    if !path.exists() {
        anyhow::bail!("the token store {} does not exist (--tokens)", path.display());
    }
    TokenStore::load(path).with_context(|| format!("failed to load the token store {}", path.display()))
}

/// Loads the token store when it exists. A store that cannot be read is
/// reported and treated as absent, so every presented token is invalid,
/// as it would be for a daemon without one.
fn load_tokens(config: &Config) -> Option<TokenStore> {
    let path: &Path = &config.tokens.store;
    if !path.exists() {
        return None;
    }
    match TokenStore::load(path) {
        Ok(store) => Some(store),
        Err(error) => {
            eprintln!("odoogate: {error}; scoped tokens are explained as if no store existed");
            None
        }
    }
}

/// The printed explanation and whether the call would be denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub text: String,
    pub denied: bool,
}

/// Explains `request` from `source` under `config`. `tokens` is the token
/// store of enforce mode, if one exists.
pub fn explain_request(
    config: &Config,
    request: &HttpRequest,
    source: &Source,
    tokens: Option<&TokenStore>,
    now: SystemTime,
) -> Explanation {
    let mut out = String::new();
    let _ = writeln!(out, "request: {} {}", request.method, request.target);
    let anomalies: Vec<&str> = request.anomalies.iter().map(|anomaly| anomaly.code()).collect();
    if !anomalies.is_empty() {
        let _ = writeln!(out, "framing anomalies: {}", anomalies.join(", "));
    }

    let limits = DecodeLimits { max_depth: MAX_DECODE_DEPTH, max_body_bytes: config.capture.max_body_bytes };
    let call = match rpc::decode_request(request, &limits) {
        Ok(Some(call)) => call,
        Ok(None) => return not_a_call(out, &anomalies),
        Err(error) => {
            let _ = writeln!(out, "call: the body could not be decoded: {error}");
            undecodable_call(request, &error)
        }
    };
    write_call(&mut out, &call);

    // Both modes verify a presented token against the store, so one
    // resolution holds for both.
    let presents_token = identity::presented_token(Some(&call), &request.headers).is_some();
    let tokens = tokens.filter(|_| presents_token);
    let identify = matching::Request { call: Some(&call), headers: &request.headers, source, tokens, now };
    let resolved = identify.resolve(config);
    let resolution = resolved.resolution;
    let invalid_token = resolved.invalid_token.map(|invalid| invalid.reason_text());

    let _ = writeln!(out, "client: {} (peer {}), cgroup {}", resolution.client_ip, source.peer, source.cgroup.as_deref().unwrap_or("unknown"));
    write_integrations(&mut out, &matching::check_integrations(config, &identify));
    write_resolution(&mut out, &resolution, config);
    // Only model and database calls are decided by rules.
    if matches!(call.kind, CallKind::Model | CallKind::Database) {
        write_rules(&mut out, &rules::check_rules(&call, &resolution, config, now));
    }

    let mut verdict = policy::decide(&call, &resolution, config, now);
    if let Some(reason) = &invalid_token {
        // As in the daemon: an invalid token is AccessDenied in enforce
        // mode and would_deny in observe mode, whatever the rules say.
        verdict.allowed = false;
        verdict.rule = None;
        verdict.reason = reason.clone();
    }
    let observe_denied = write_observe(&mut out, &verdict);
    let enforce_denied = write_enforce(&mut out, &verdict, &anomalies, presents_token && tokens.is_none());
    Explanation { text: out, denied: observe_denied || enforce_denied }
}

/// Builds the call the daemon records for a request on an RPC surface whose
/// body does not decode: the decode failure is a mismatch, which the policy
/// always denies.
fn undecodable_call(request: &HttpRequest, error: &rpc::DecodeError) -> Call {
    let protocol = rpc::surface_protocol(&request.target).unwrap_or(rpc::Protocol::Web);
    let mut call = Call::new(protocol, CallKind::Model);
    call.mismatches.push(format!("the body could not be decoded ({error})"));
    call
}

fn not_a_call(mut out: String, anomalies: &[&str]) -> Explanation {
    let _ = writeln!(out, "call: none (not an RPC call, so no integration or rule applies)");
    let _ = writeln!(out, "observe: not recorded as a call");
    if anomalies.is_empty() {
        let _ = writeln!(out, "enforce: passed through to Odoo");
        return Explanation { text: out, denied: false };
    }
    let _ = writeln!(out, "enforce: rejected with HTTP 400 (ambiguous framing: {})", anomalies.join(", "));
    Explanation { text: out, denied: true }
}

fn write_call(out: &mut String, call: &Call) {
    let target = match (&call.model, &call.method) {
        (Some(model), Some(method)) => format!("{model}.{method}"),
        (None, Some(method)) => method.clone(),
        (_, None) => "(no method)".to_owned(),
    };
    let kind = match call.kind {
        CallKind::Model => "model",
        CallKind::Auth => "authentication",
        CallKind::Meta => "metadata",
        CallKind::Database => "database",
    };
    let _ = writeln!(out, "call: {} {kind} call {target}", call.protocol.as_str());
    if let Some(db) = &call.db {
        let _ = writeln!(out, "database: {db}");
    }
    if !call.fields.is_empty() {
        let _ = writeln!(out, "fields: {}", call.fields.join(", "));
    }
    if !call.record_ids.is_empty() {
        let _ = writeln!(out, "record ids: {}", call.record_ids.len());
    }
    for mismatch in &call.mismatches {
        let _ = writeln!(out, "mismatch: {mismatch}");
    }
}

fn write_integrations(out: &mut String, checks: &[IntegrationCheck]) {
    if checks.is_empty() {
        let _ = writeln!(out, "integrations tried: none configured");
        return;
    }
    let _ = writeln!(out, "integrations tried (the first whose match holds takes the call):");
    for check in checks {
        let verdict = if check.holds { "match holds" } else { "match does not hold" };
        let _ = writeln!(out, "  {}: {verdict}", check.name);
        for key in &check.keys {
            let mark = if key.holds { "yes" } else { "no" };
            let _ = writeln!(out, "    [{mark}] {}", key.detail);
        }
    }
}

fn write_resolution(out: &mut String, resolution: &Resolution, config: &Config) {
    match &resolution.integration {
        Some(name) => {
            let _ = writeln!(out, "integration: {name} (identity {})", resolution.identity.as_str());
        }
        None => {
            let policy = config.policy.unidentified.as_str();
            let _ = writeln!(out, "integration: none (unidentified, policy.unidentified = \"{policy}\")");
        }
    }
}

fn write_rules(out: &mut String, checks: &[RuleCheck]) {
    for check in checks {
        let verdict = if check.allows { "allows" } else { "does not allow" };
        let _ = writeln!(out, "rule {} ({}): {verdict}: {}", check.rule, check.summary, check.reason);
    }
}

fn write_observe(out: &mut String, verdict: &Verdict) -> bool {
    let decision = policy::decision(verdict, config::Mode::Observe);
    let _ = writeln!(out, "observe: {}: {}", decision.as_str(), verdict.reason);
    !verdict.allowed
}

/// Writes the enforce-mode line: the proxy rejects ambiguous framing and
/// tokens it cannot verify before the policy's verdict counts.
fn write_enforce(out: &mut String, verdict: &Verdict, anomalies: &[&str], token_without_store: bool) -> bool {
    if !anomalies.is_empty() {
        let _ = writeln!(out, "enforce: rejected with HTTP 400 (ambiguous framing: {})", anomalies.join(", "));
        return true;
    }
    if token_without_store {
        let _ = writeln!(out, "enforce: deny: the call presents a scoped token and no token store could be read");
        return true;
    }
    let decision = policy::decision(verdict, config::Mode::Enforce);
    let _ = writeln!(out, "enforce: {}: {}", decision.as_str(), verdict.reason);
    !verdict.allowed
}

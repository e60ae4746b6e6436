//! The running daemon's side of the control socket: the `status` response
//! and the `reload` that puts a new configuration in force.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use crate::capture::CaptureStats;
use crate::config::Config;
use crate::control::{self, ConfigHandle, ControlRequest, ControlServer, Handler};
use crate::grant::Grant;
use crate::pipeline::ReassemblyCounters;
use crate::policy::rate::BucketLevel;
use crate::policy::runtime::{CallCounts, PolicyRuntime};
use crate::proxy::LivePolicy;
use crate::steer::guard::GuardStatus;

/// The grants and rate-limit buckets of a daemon, as status shows them.
pub trait PolicyView: Send + Sync {
    fn active_grants(&self, now: SystemTime) -> Vec<Grant>;
    fn buckets(&self, now: Instant) -> Vec<BucketLevel>;
    /// Rereads the grant file, which `odoogate grant` has just changed.
    fn reread_grants(&self);
}

impl PolicyView for Mutex<PolicyRuntime> {
    fn active_grants(&self, now: SystemTime) -> Vec<Grant> {
        self.lock().unwrap_or_else(PoisonError::into_inner).active_grants(now)
    }

    fn buckets(&self, now: Instant) -> Vec<BucketLevel> {
        self.lock().unwrap_or_else(PoisonError::into_inner).buckets(now)
    }

    fn reread_grants(&self) {
        self.lock().unwrap_or_else(PoisonError::into_inner).reread_grants();
    }
}

impl PolicyView for LivePolicy {
    fn active_grants(&self, now: SystemTime) -> Vec<Grant> {
        LivePolicy::active_grants(self, now)
    }

    fn buckets(&self, now: Instant) -> Vec<BucketLevel> {
        LivePolicy::buckets(self, now)
    }

    fn reread_grants(&self) {
        LivePolicy::reread_grants(self);
    }
}

/// Returns the kernel capture counters, when a capture runs.
pub type CaptureStatsSource = Box<dyn Fn() -> CaptureStats + Send + Sync>;

/// Returns the counters of what the daemon dropped at its limits, as a JSON
/// object.
pub type OverloadSource = Box<dyn Fn() -> Value + Send + Sync>;

/// Returns the state of the running cgroup guard.
pub type GuardSource = Arc<dyn Fn() -> GuardStatus + Send + Sync>;

/// The sources of the `status` response.
pub struct StatusSources {
    pub handle: Arc<ConfigHandle>,
    pub started: SystemTime,
    /// The eBPF programs of the capture, as `tcx ingress lo`.
    pub capture: Vec<String>,
    /// The way clients reach the enforce-mode proxy, as `sk_lookup on ports
    /// [8069]` or `listen 127.0.0.1:8070`. `None` in observe mode.
    pub proxy: Option<String>,
    /// The bpffs directory of the steering pins (`steering.pin_dir`) when
    /// the proxy is steered, or `None` in listen mode and observe mode.
    pub steering_pin_dir: Option<PathBuf>,
    /// The cgroup guard, or `None` when it is off.
    pub guard: Option<GuardSource>,
    pub counts: Arc<CallCounts>,
    pub policy: Arc<dyn PolicyView>,
    pub capture_stats: Option<CaptureStatsSource>,
    /// The observe path's reassembly counters, or `None` in enforce mode,
    /// whose proxy reads requests from its own sockets.
    pub reassembly: Option<Arc<ReassemblyCounters>>,
    pub overload: OverloadSource,
    /// Has the token store loaded again before the next call when its
    /// file changed.
    pub tokens_changed: Box<dyn Fn() + Send + Sync>,
}

impl StatusSources {
    /// Builds the `status` response object.
    pub fn status(&self) -> Value {
        let config = self.handle.current();
        let now = SystemTime::now();
        let grants: Vec<Value> = self.policy.active_grants(now).iter().map(grant_json).collect();
        let buckets: Vec<Value> = self
            .policy
            .buckets(Instant::now())
            .into_iter()
            .map(|bucket| json!({ "limit": bucket.limit, "available": bucket.available, "burst": bucket.burst }))
            .collect();
        let mut status = json!({
            "ok": true,
            "mode": config.policy.mode.as_str(),
            "config": self.handle.path().display().to_string(),
            "config_loaded": timestamp(self.handle.loaded_at()),
            "started": timestamp(self.started),
            "capture": self.capture,
            "proxy": self.proxy.as_deref().unwrap_or("none"),
        });
        if let Some(pin_dir) = &self.steering_pin_dir {
            status["steering"] = json!({ "pin_dir": pin_dir.display().to_string() });
        }
        status["guard"] = guard_json(self.guard.as_ref().map(|source| source()).as_ref());
        status["calls"] = json!(self.counts.snapshot());
        status["grants"] = Value::Array(grants);
        status["rate_limits"] = Value::Array(buckets);
        status["overload"] = (self.overload)();
        if let Some(stats) = &self.capture_stats {
            status["capture_stats"] = capture_stats_json(&stats());
        }
        if let Some(counters) = &self.reassembly {
            status["reassembly"] = reassembly_json(counters);
        }
        status
    }
}

/// Starts the control socket at `control.socket`, which serves `status`
/// from `sources`, handles `reload` with [`reload`], rereads the grant
/// file on `grants_changed` and the token store on `tokens_changed`. A socket that cannot be
/// created is logged and the daemon runs without it, since SIGHUP still
/// reloads.
pub fn start_server(
    sources: StatusSources,
    apply: impl Fn(Arc<Config>) -> Result<(), String> + Send + Sync + 'static,
) -> Option<ControlServer> {
    let path = sources.handle.current().control.socket.clone();
    let sources = Arc::new(sources);
    let handler: Handler = {
        let sources = sources.clone();
        Arc::new(move |request| match request {
            ControlRequest::Status => sources.status(),
            ControlRequest::Reload => reload(&sources.handle, &apply),
            ControlRequest::GrantsChanged => {
                sources.policy.reread_grants();
                json!({ "ok": true })
            }
            ControlRequest::TokensChanged => {
                (sources.tokens_changed)();
                json!({ "ok": true })
            }
        })
    };
    match ControlServer::start(&path, handler) {
        Ok(server) => {
            tracing::info!(socket = %path.display(), "Listening on the control socket");
            Some(server)
        }
        Err(error) => {
            tracing::warn!(
                socket = %path.display(),
                %error,
                "Failed to create the control socket; odoogate status and odoogate reload are unavailable, SIGHUP still reloads"
            );
            None
        }
    }
}

/// Reloads the configuration file, hands the new configuration to `apply`
/// when it is valid, and returns the `reload` response. An invalid file
/// keeps the old configuration; the error is logged and returned. An error
/// from `apply` (service credentials that cannot be read) leaves the new
/// configuration in force, and the response carries it as `not_applied`.
pub fn reload(handle: &ConfigHandle, apply: &dyn Fn(Arc<Config>) -> Result<(), String>) -> Value {
    let mut response = control::reload_response(handle);
    if response["ok"] != true {
        return response;
    }
    if let Err(error) = apply(handle.current()) {
        tracing::error!(config = %handle.path().display(), %error, "Reloaded the configuration, but part of it is not applied");
        response["not_applied"] = Value::String(error);
    }
    response
}

fn grant_json(grant: &Grant) -> Value {
    json!({
        "id": grant.id,
        "target": grant.target(),
        "expires": grant.expires.to_string(),
        "reason": grant.reason,
    })
}

/// Describes the cgroup guard for `status`: `{"on": false}` when it is off.
/// Otherwise `allow_cgroups` contains the configured globs, `allowed` the
/// paths of the cgroups allowed at the last refresh, and `refusals` the
/// connects refused since start.
fn guard_json(guard: Option<&GuardStatus>) -> Value {
    let Some(guard) = guard else {
        return json!({ "on": false });
    };
    json!({
        "on": true,
        "allow_cgroups": guard.allow_cgroups,
        "allowed": guard.allowed,
        "own_cgroup": guard.own_cgroup,
        "refusals": guard.refusals,
    })
}

fn capture_stats_json(stats: &CaptureStats) -> Value {
    json!({
        "packets": stats.packets,
        "records": stats.records,
        "ring_buffer_full": stats.ring_full,
        "payload_truncated": stats.truncated,
        "load_errors": stats.load_errors,
        "malformed_records": stats.malformed_records,
        "skipped_packets": stats.skipped_packets,
        "header_errors": stats.header_errors,
    })
}

/// Describes the reassembly counters for `status`. The conflict counters
/// are named after the `ODOOGATE_ERROR_CODE` of their `framing_anomaly`
/// records. `open_flows` is the only one that can go down.
fn reassembly_json(counters: &ReassemblyCounters) -> Value {
    json!({
        "conflicting_copies": counters.conflicting_copies.load(Ordering::Relaxed),
        "unverifiable_copy": counters.unverifiable_copies.load(Ordering::Relaxed),
        "data_after_fin": counters.data_after_fin.load(Ordering::Relaxed),
        "urgent_data": counters.urgent_data.load(Ordering::Relaxed),
        "spoofed_segments": counters.spoofed_segments.load(Ordering::Relaxed),
        "ip_fragments": counters.ip_fragments.load(Ordering::Relaxed),
        "ignored_resets": counters.ignored_resets.load(Ordering::Relaxed),
        "open_flows": counters.open_flows.load(Ordering::Relaxed),
        "unverified_bytes": counters.unverified_bytes.load(Ordering::Relaxed),
    })
}

fn timestamp(time: SystemTime) -> Value {
    let rounded = jiff::Timestamp::try_from(time).ok().and_then(|time| time.round(jiff::Unit::Second).ok());
    rounded.map_or(Value::Null, |time| Value::String(time.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_guard() -> GuardStatus {
        GuardStatus {
            allow_cgroups: vec!["system.slice/n8n.service".to_owned(), "system.slice/cron-*.service".to_owned()],
            allowed: vec!["system.slice/n8n.service".to_owned(), "system.slice/odoo.service".to_owned()],
            own_cgroup: Some("system.slice/odoogate.service".to_owned()),
            refusals: 3,
        }
    }

    #[test]
    fn reassembly_json_names_error_codes() {
        let counters = ReassemblyCounters::default();
        counters.conflicting_copies.store(2, Ordering::Relaxed);
        counters.unverifiable_copies.store(5, Ordering::Relaxed);
        counters.data_after_fin.store(1, Ordering::Relaxed);
        counters.urgent_data.store(3, Ordering::Relaxed);
        counters.spoofed_segments.store(7, Ordering::Relaxed);
        counters.open_flows.store(12, Ordering::Relaxed);
        counters.ip_fragments.store(4, Ordering::Relaxed);
        counters.ignored_resets.store(2, Ordering::Relaxed);
        counters.unverified_bytes.store(4096, Ordering::Relaxed);

        let reassembly = reassembly_json(&counters);
        assert_eq!(reassembly["conflicting_copies"], 2);
        assert_eq!(reassembly["unverifiable_copy"], 5);
        assert_eq!(reassembly["data_after_fin"], 1);
        assert_eq!(reassembly["urgent_data"], 3);
        assert_eq!(reassembly["spoofed_segments"], 7);
        assert_eq!(reassembly["open_flows"], 12);
        assert_eq!(reassembly["ip_fragments"], 4);
        assert_eq!(reassembly["ignored_resets"], 2);
        assert_eq!(reassembly["unverified_bytes"], 4096);

        let status = json!({ "ok": true, "reassembly": reassembly });
        assert_eq!(
            crate::cli::status::render(&status),
            "reassembly:\n  conflicting_copies: 2\n  unverifiable_copy: 5\n  data_after_fin: 1\n  urgent_data: 3\n  spoofed_segments: 7\n  ip_fragments: 4\n  ignored_resets: 2\n  open_flows: 12\n  unverified_bytes: 4096\n"
        );
    }

    #[test]
    fn guard_json_when_off() {
        assert_eq!(guard_json(None), json!({ "on": false }));
    }

    #[test]
    fn guard_json_lists_globs_and_cgroups() {
        let guard = guard_json(Some(&running_guard()));
        assert_eq!(guard["on"], true);
        assert_eq!(guard["allow_cgroups"], json!(["system.slice/n8n.service", "system.slice/cron-*.service"]));
        assert_eq!(guard["allowed"], json!(["system.slice/n8n.service", "system.slice/odoo.service"]));
        assert_eq!(guard["own_cgroup"], "system.slice/odoogate.service");
        assert_eq!(guard["refusals"], 3);
    }

    #[test]
    fn guard_json_renders_as_status_lines() {
        let status = json!({ "ok": true, "guard": guard_json(Some(&running_guard())) });
        assert_eq!(
            crate::cli::status::render(&status),
            "guard:\n  on: true\n  allow_cgroups: system.slice/n8n.service, system.slice/cron-*.service\n  \
             allowed: system.slice/n8n.service, system.slice/odoo.service\n  own_cgroup: system.slice/odoogate.service\n  refusals: 3\n"
        );
        let unknown_own = GuardStatus { own_cgroup: None, ..running_guard() };
        assert_eq!(guard_json(Some(&unknown_own))["own_cgroup"], Value::Null);
    }
}

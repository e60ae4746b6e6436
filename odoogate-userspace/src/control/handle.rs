//! The daemon's current configuration, swapped whole on reload.
//!
//! A reload builds the new [`Config`] completely before it replaces the
//! old one, so a reader sees either the old or the new configuration and
//! never a mix. Readers take an `Arc<Config>` with [`ConfigHandle::current`]
//! once per call, so a call in flight finishes under the configuration it
//! started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::config::{self, Config, ConfigError};

/// A configuration setting that a running daemon cannot change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartSetting {
    Ports,
    Interfaces,
    RingBufferBytes,
    Mode,
    SessionsFile,
    TokenStore,
    ProxyListen,
    ProxyUpstream,
    ControlSocket,
    /// Every `capture.*` setting other than `ring_buffer_bytes`.
    Capture,
    AuditOutput,
    AuditFile,
    Steering,
    Guard,
    Metrics,
}

impl RestartSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ports => "odoo.ports",
            Self::Interfaces => "odoo.interfaces",
            Self::RingBufferBytes => "capture.ring_buffer_bytes",
            Self::Mode => "policy.mode",
            Self::SessionsFile => "policy.sessions_file",
            Self::TokenStore => "tokens.store",
            Self::ProxyListen => "proxy.listen",
            Self::ProxyUpstream => "proxy.upstream",
            Self::ControlSocket => "control.socket",
            Self::Capture => "capture",
            Self::AuditOutput => "audit.output",
            Self::AuditFile => "audit.file",
            Self::Steering => "steering",
            Self::Guard => "guard",
            Self::Metrics => "metrics",
        }
    }
}

/// The result of a successful reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings that changed in the file but keep their running value until
    /// a restart.
    pub needs_restart: Vec<RestartSetting>,
}

/// The configuration file path, the configuration in force and when it was
/// loaded.
pub struct ConfigHandle {
    path: PathBuf,
    state: RwLock<Loaded>,
}

struct Loaded {
    config: Arc<Config>,
    loaded_at: SystemTime,
}

// === impl ConfigHandle ===

impl ConfigHandle {
    /// Wraps `config`, loaded from `path` at `loaded_at`.
    pub fn new(path: &Path, config: Arc<Config>, loaded_at: SystemTime) -> Self {
        Self { path: path.to_owned(), state: RwLock::new(Loaded { config, loaded_at }) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.read().config.clone()
    }

    /// Returns when the configuration in force was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.read().loaded_at
    }

    /// Re-reads the file and, when it is valid, puts it in force. The
    /// settings in [`RestartSetting`] keep their running values: the new
    /// configuration gets them from the old one, and the report lists those
    /// that changed. An invalid file leaves the old configuration in force.
    pub fn reload(&self) -> Result<ReloadReport, ConfigError> {
        let mut fresh = config::load(&self.path)?;
        let old = self.current();
        let needs_restart = keep_restart_settings(&old, &mut fresh);
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = Loaded { config: Arc::new(fresh), loaded_at: SystemTime::now() };
        Ok(ReloadReport { needs_restart })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        // A writer cannot panic between its steps, so a poisoned lock still
        // holds a whole value.
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Copies into `fresh` the settings of `old` that need a restart, and
/// returns those that differed. The capture, the audit sink, steering, the
/// cgroup guard, the metrics endpoint, the proxy's connector, the control
/// socket, the sessions file and the token store are all opened once at
/// start.
fn keep_restart_settings(old: &Config, fresh: &mut Config) -> Vec<RestartSetting> {
    let mut changed = Vec::new();
    let mut keep = |setting: RestartSetting, differs: bool| {
        if differs {
            changed.push(setting);
        }
        differs
    };
    if keep(RestartSetting::Ports, fresh.odoo.ports != old.odoo.ports) {
        fresh.odoo.ports = old.odoo.ports.clone();
    }
    if keep(RestartSetting::Interfaces, fresh.odoo.interfaces != old.odoo.interfaces) {
        fresh.odoo.interfaces = old.odoo.interfaces.clone();
    }
    if keep(RestartSetting::RingBufferBytes, fresh.capture.ring_buffer_bytes != old.capture.ring_buffer_bytes) {
        fresh.capture.ring_buffer_bytes = old.capture.ring_buffer_bytes;
    }
    if keep(RestartSetting::Capture, fresh.capture != old.capture) {
        fresh.capture = old.capture.clone();
    }
    if keep(RestartSetting::Mode, fresh.policy.mode != old.policy.mode) {
        fresh.policy.mode = old.policy.mode;
    }
    if keep(RestartSetting::SessionsFile, fresh.policy.sessions_file != old.policy.sessions_file) {
        fresh.policy.sessions_file = old.policy.sessions_file.clone();
    }
    if keep(RestartSetting::TokenStore, fresh.tokens.store != old.tokens.store) {
        fresh.tokens.store = old.tokens.store.clone();
    }
    if keep(RestartSetting::ProxyListen, fresh.proxy.listen != old.proxy.listen) {
        fresh.proxy.listen = old.proxy.listen;
    }
    if keep(RestartSetting::ProxyUpstream, fresh.proxy.upstream != old.proxy.upstream) {
        fresh.proxy.upstream = old.proxy.upstream;
    }
    if keep(RestartSetting::ControlSocket, fresh.control.socket != old.control.socket) {
        fresh.control.socket = old.control.socket.clone();
    }
    if keep(RestartSetting::AuditOutput, fresh.audit.output != old.audit.output) {
        fresh.audit.output = old.audit.output;
    }
    if keep(RestartSetting::AuditFile, fresh.audit.file != old.audit.file) {
        fresh.audit.file = old.audit.file.clone();
    }
    if keep(RestartSetting::Steering, fresh.steering != old.steering) {
        fresh.steering = old.steering.clone();
    }
    if keep(RestartSetting::Guard, fresh.guard != old.guard) {
        fresh.guard = old.guard.clone();
    }
    if keep(RestartSetting::Metrics, fresh.metrics != old.metrics) {
        fresh.metrics = old.metrics.clone();
    }
    changed
}

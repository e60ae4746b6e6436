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
    ProxyListen,
    ProxyUpstream,
    ControlSocket,
}

impl RestartSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ports => "odoo.ports",
            Self::Interfaces => "odoo.interfaces",
            Self::RingBufferBytes => "capture.ring_buffer_bytes",
            Self::Mode => "policy.mode",
            Self::ProxyListen => "proxy.listen",
            Self::ProxyUpstream => "proxy.upstream",
            Self::ControlSocket => "control.socket",
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
/// returns those that differed.
fn keep_restart_settings(old: &Config, fresh: &mut Config) -> Vec<RestartSetting> {
    let mut changed = Vec::new();
    if fresh.odoo.ports != old.odoo.ports {
        fresh.odoo.ports = old.odoo.ports.clone();
        changed.push(RestartSetting::Ports);
    }
    if fresh.odoo.interfaces != old.odoo.interfaces {
        fresh.odoo.interfaces = old.odoo.interfaces.clone();
        changed.push(RestartSetting::Interfaces);
    }
    if fresh.capture.ring_buffer_bytes != old.capture.ring_buffer_bytes {
        fresh.capture.ring_buffer_bytes = old.capture.ring_buffer_bytes;
        changed.push(RestartSetting::RingBufferBytes);
    }
    if fresh.policy.mode != old.policy.mode {
        fresh.policy.mode = old.policy.mode;
        changed.push(RestartSetting::Mode);
    }
    if fresh.proxy.listen != old.proxy.listen {
        fresh.proxy.listen = old.proxy.listen;
        changed.push(RestartSetting::ProxyListen);
    }
    // The proxy's connector and the control socket are set up at start.
    if fresh.proxy.upstream != old.proxy.upstream {
        fresh.proxy.upstream = old.proxy.upstream;
        changed.push(RestartSetting::ProxyUpstream);
    }
    if fresh.control.socket != old.control.socket {
        fresh.control.socket = old.control.socket.clone();
        changed.push(RestartSetting::ControlSocket);
    }
    changed
}

//! Enforce mode's steering: every new TCP connection to Odoo's ports goes to
//! odoogate's listener, while clients keep dialing Odoo's address and port.
//!
//! [`Steering::install`] attaches the `steer_to_odoogate` sk_lookup program
//! (see `odoogate-ebpf/src/steer.rs`) to a network namespace and pins its
//! link and maps under a bpffs directory (default [`DEFAULT_PIN_DIR`]), then
//! puts the daemon's listener in the program's SockMap.
//!
//! The pins make the steering outlive the daemon, on purpose:
//!
//! - Fail closed. When the daemon stops or dies, its listener closes and the
//!   kernel removes it from the SockMap; the program then drops every new
//!   connection to Odoo's ports (counted as `dropped`) until a daemon puts a
//!   listener back. Dropping a [`Steering`] therefore unpins nothing.
//!   Connections established earlier are not looked up again and go on.
//! - No gap on restart or upgrade. A new daemon finds the pinned link,
//!   reuses it and its maps, rewrites the port list and stores its listener
//!   at the same SockMap slot. The program that runs stays the one first
//!   pinned; `odoogate uninstall` and a restart load the current one.
//!
//! Only [`uninstall`] (`odoogate uninstall`) removes the pins, which detaches
//! the program: Odoo's port is then reachable directly again.
//!
//! odoogate's own connections to Odoo are exempt through bypass ports: the
//! upstream connector binds a local port, registers it with
//! [`Steering::bypass_port`] (or [`Steering::upstream_socket`], which does
//! both and releases the port when its [`BypassLease`] drops), and the
//! program lets SYNs from that port arriving on the loopback device reach
//! Odoo's own socket.
//!
//! Pins are root-only (directory 0700, pins 0600): no other user can add a
//! bypass port. Root can, like it can detach any program.
//!
//! One pin directory serves one network namespace: a reused link stays
//! attached to the namespace it was first attached to.

mod bpffs;
pub mod guard;
mod holders;
pub mod link;

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, SockMap};
use aya::pin::PinError;
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::{ProgramError, SkLookup};
use aya::{Ebpf, EbpfError, EbpfLoader};
use odoogate_common::steer::{
    BYPASS_MAP, CONFIG_MAP, LINK_PIN, PROGRAM, SOCKET_INDEX, SOCKET_MAP, STATS_MAP, stat,
};
use odoogate_common::{MAX_PORTS, SteerConfig};

pub use bpffs::{BPFFS_MOUNT, BpffsError};
pub use holders::{Holder, holders};

/// The steering object built by `build.rs` (empty when the build skipped it).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/odoogate-steer"));

/// Default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/odoogate";

/// The network namespace of the calling thread, the default attach target.
const CURRENT_NETNS: &str = "/proc/thread-self/ns/net";

/// The pinned maps, by file name in the pin directory.
const MAP_PINS: [&str; 4] = [SOCKET_MAP, BYPASS_MAP, CONFIG_MAP, STATS_MAP];

/// Where and for which ports to steer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteeringOptions {
    /// Odoo's TCP ports (1 to 8 distinct non-zero ports).
    pub ports: Vec<u16>,
    /// bpffs directory for the link and map pins.
    pub pin_dir: PathBuf,
    /// Network namespace file to attach to (such as `/run/netns/odoo`);
    /// `None` is the calling thread's namespace.
    pub netns: Option<PathBuf>,
}

impl SteeringOptions {
    /// Options for `ports` with the default pin directory, in the calling
    /// thread's network namespace.
    pub fn new(ports: Vec<u16>) -> Self {
        Self {
            ports,
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            netns: None,
        }
    }
}

/// Errors of installing, using and removing the steering.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    #[error("no port to steer: set at least one Odoo port")]
    NoPorts,
    #[error("{count} ports configured, but steering handles at most {MAX_PORTS}")]
    TooManyPorts { count: usize },
    #[error("port 0 is not a valid TCP port to steer")]
    InvalidPort,
    #[error(
        "this odoogate binary was built without its eBPF programs (ODOOGATE_SKIP_EBPF_BUILD was set); \
         rebuild it without that variable"
    )]
    ProgramsNotBuilt,
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
    #[error("failed to open the network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{dir} holds a steering link but not the pinned map {missing}; \
         run `odoogate uninstall --pin-dir {dir}` and start again"
    )]
    IncompletePins { dir: PathBuf, missing: &'static str },
    #[error("failed to load the steering object: {0}")]
    Object(#[source] EbpfError),
    #[error("the steering object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("failed to {operation}: {source}")]
    Program {
        operation: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("failed to use map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("failed to pin {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("failed to open the pinned link {path}: {source}")]
    Link {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error("failed to restrict {path} to root: {source}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to put the listener into the steering socket map: {0}")]
    Listener(#[source] MapError),
    #[error("failed to register bypass port {port}: {source}")]
    Bypass {
        port: u16,
        #[source]
        source: MapError,
    },
    #[error("failed to bind a local port for an upstream connection: {0}")]
    UpstreamSocket(#[source] io::Error),
    #[error("failed to remove {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The steering counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerStats {
    /// Connections handed to odoogate's listener.
    pub steered: u64,
    /// Connections from a bypass port, left to Odoo.
    pub bypassed: u64,
    /// Connections dropped because no listener was registered.
    pub dropped: u64,
}

/// The installed steering: handles on the pinned maps.
pub struct Steering {
    pin_dir: PathBuf,
    /// Inode of the network namespace the link steers, when it was read.
    netns_inode: Option<u64>,
    bypass: Mutex<HashMap<MapData, u16, u8>>,
    stats: PerCpuArray<MapData, u64>,
    reused: bool,
}

/// The pinned maps of one install, opened or freshly created.
struct Maps {
    socket: SockMap<MapData>,
    bypass: HashMap<MapData, u16, u8>,
    config: Array<MapData, SteerConfig>,
    stats: PerCpuArray<MapData, u64>,
}

// === impl Steering ===

impl Steering {
    /// Installs the steering for `options.ports` and makes `listener` the
    /// socket that receives the connections.
    ///
    /// Mounts bpffs at [`BPFFS_MOUNT`] if needed. When `options.pin_dir`
    /// holds a pinned link, reuses it and its maps (a restart); otherwise
    /// loads the program, pins the maps, fills them, and only then attaches
    /// and pins the link, so no connection is dropped while installing.
    ///
    /// `listener` must be a listening TCP socket. It takes IPv4 and IPv6
    /// connections when bound to `[::]` without `IPV6_V6ONLY`; an IPv4-only
    /// listener makes IPv6 connections to Odoo's ports fail (dropped).
    pub fn install(
        options: &SteeringOptions,
        listener: &TcpListener,
    ) -> Result<Steering, SteerError> {
        let config = steer_config(&options.ports)?;
        if OBJECT.is_empty() {
            return Err(SteerError::ProgramsNotBuilt);
        }
        bpffs::ensure_mounted()?;
        bpffs::prepare_pin_dir(&options.pin_dir)?;
        let dir = options.pin_dir.as_path();

        let link_pin = dir.join(LINK_PIN);
        let netns_path = options.netns.clone().unwrap_or_else(|| PathBuf::from(CURRENT_NETNS));
        let mut reused = link_pin.exists();
        if reused && !pinned_link_steers(&link_pin, &netns_path) {
            // A link detached by another tool, or attached elsewhere, would
            // be reused as if it steered while clients reach Odoo directly.
            tracing::warn!(
                pin = %link_pin.display(),
                "The pinned steering link is not attached to Odoo's network namespace; installing a new one"
            );
            uninstall(dir)?;
            bpffs::prepare_pin_dir(&options.pin_dir)?;
            reused = false;
        }
        let maps = match reused {
            true => reuse(dir, &link_pin, &config, listener)?,
            false => fresh(options, &netns_path, &link_pin, &config, listener)?,
        };

        tracing::info!(
            pin_dir = %dir.display(),
            ports = ?options.ports,
            reused,
            "Steering connections to odoogate"
        );
        let Maps { bypass, stats, .. } = maps;
        Ok(Steering {
            pin_dir: dir.to_path_buf(),
            netns_inode: std::fs::metadata(&netns_path).map(|metadata| metadata.ino()).ok(),
            bypass: Mutex::new(bypass),
            stats,
            reused,
        })
    }

    /// Tells whether the pinned link still steers: its pin exists, and the
    /// link is attached to the network namespace it was installed for.
    /// `odoogate uninstall --force` or another tool may have removed it.
    pub fn is_attached(&self) -> io::Result<bool> {
        let link = match link::open_pinned(&self.pin_dir.join(LINK_PIN)) {
            Ok(link) => link,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        let attached = u64::from(link::netns_inode(link.as_fd())?);
        Ok(attached != 0 && self.netns_inode.is_none_or(|expected| attached == expected))
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Tells whether the install reused a pinned link (a restart).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Lets connections from local source port `port` (odoogate's own
    /// upstream connection, bound before connect) reach Odoo. Call it before
    /// connect and [`Steering::release_port`] once the connection is closed.
    pub fn bypass_port(&self, port: u16) -> Result<(), SteerError> {
        let mut bypass = self.bypass.lock().unwrap_or_else(PoisonError::into_inner);
        bypass
            .insert(port, 1, 0)
            .map_err(|source| SteerError::Bypass { port, source })
    }

    /// Ends the bypass of `port`. Releasing a port that is not registered
    /// does nothing.
    pub fn release_port(&self, port: u16) -> Result<(), SteerError> {
        let mut bypass = self.bypass.lock().unwrap_or_else(PoisonError::into_inner);
        match bypass.remove(&port) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(source) => Err(SteerError::Bypass { port, source }),
        }
    }

    /// Binds a socket for an upstream connection to `upstream` on a fresh
    /// local port of the unspecified address and registers the port as a
    /// bypass. Keep the [`BypassLease`] as long as the connection: dropping
    /// it releases the port.
    ///
    /// The socket is bound without `SO_REUSEADDR`, so no other socket can
    /// take the same local port while the lease lives.
    pub fn upstream_socket(
        self: &Arc<Self>,
        upstream: SocketAddr,
    ) -> Result<(tokio::net::TcpSocket, BypassLease), SteerError> {
        let (socket, unspecified) = match upstream {
            SocketAddr::V4(_) => (
                tokio::net::TcpSocket::new_v4(),
                SocketAddr::from(([0, 0, 0, 0], 0)),
            ),
            SocketAddr::V6(_) => (
                tokio::net::TcpSocket::new_v6(),
                SocketAddr::from(([0u16; 8], 0)),
            ),
        };
        let socket = socket.map_err(SteerError::UpstreamSocket)?;
        socket
            .bind(unspecified)
            .map_err(SteerError::UpstreamSocket)?;
        let port = socket
            .local_addr()
            .map_err(SteerError::UpstreamSocket)?
            .port();
        self.bypass_port(port)?;
        let lease = BypassLease {
            steering: Arc::clone(self),
            port,
        };
        Ok((socket, lease))
    }

    /// Reads the counters, summed over CPUs.
    pub fn stats(&self) -> Result<SteerStats, SteerError> {
        let read = |index: u32| -> Result<u64, SteerError> {
            let values = self
                .stats
                .get(&index, 0)
                .map_err(|source| SteerError::Map {
                    name: STATS_MAP,
                    source,
                })?;
            Ok(values.iter().sum())
        };
        Ok(SteerStats {
            steered: read(stat::STEERED)?,
            bypassed: read(stat::BYPASSED)?,
            dropped: read(stat::DROPPED)?,
        })
    }
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("pin_dir", &self.pin_dir)
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

/// A registered bypass port; dropping it releases the port.
#[derive(Debug)]
pub struct BypassLease {
    steering: Arc<Steering>,
    port: u16,
}

impl BypassLease {
    /// The bypassed local port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for BypassLease {
    fn drop(&mut self) {
        if let Err(error) = self.steering.release_port(self.port) {
            tracing::warn!(%error, "Failed to release a bypass port");
        }
    }
}

// === impl Maps ===

impl Maps {
    /// Takes the maps out of a freshly loaded object and pins them,
    /// replacing pins a failed install may have left.
    fn create(ebpf: &mut Ebpf, dir: &Path) -> Result<Self, SteerError> {
        let mut take = |name: &'static str| -> Result<Map, SteerError> {
            let map = ebpf.take_map(name).ok_or(SteerError::Missing { kind: "map", name })?;
            let path = dir.join(name);
            remove_if_present(&path)?;
            map.pin(&path)
                .map_err(|source| SteerError::Pin { path: path.clone(), source })?;
            bpffs::restrict_pin(&path).map_err(|source| SteerError::Permissions { path, source })?;
            Ok(map)
        };
        let maps = [take(SOCKET_MAP)?, take(BYPASS_MAP)?, take(CONFIG_MAP)?, take(STATS_MAP)?];
        Self::typed(maps)
    }

    /// Opens the pinned maps of an earlier install.
    fn open(dir: &Path) -> Result<Self, SteerError> {
        let open = |name: &'static str| -> Result<Map, SteerError> {
            let path = dir.join(name);
            if !path.exists() {
                return Err(SteerError::IncompletePins { dir: dir.to_path_buf(), missing: name });
            }
            let map_error = |source| SteerError::Map { name, source };
            Map::from_map_data(MapData::from_pin(&path).map_err(map_error)?).map_err(map_error)
        };
        Self::typed([open(SOCKET_MAP)?, open(BYPASS_MAP)?, open(CONFIG_MAP)?, open(STATS_MAP)?])
    }

    fn typed([socket, bypass, config, stats]: [Map; 4]) -> Result<Self, SteerError> {
        let typed = |name: &'static str| move |source| SteerError::Map { name, source };
        Ok(Self {
            socket: SockMap::try_from(socket).map_err(typed(SOCKET_MAP))?,
            bypass: HashMap::try_from(bypass).map_err(typed(BYPASS_MAP))?,
            config: Array::try_from(config).map_err(typed(CONFIG_MAP))?,
            stats: PerCpuArray::try_from(stats).map_err(typed(STATS_MAP))?,
        })
    }

    /// Writes the ports and stores `listener` at the SockMap slot, which
    /// replaces the socket of an earlier daemon.
    fn prepare(&mut self, config: &SteerConfig, listener: &TcpListener) -> Result<(), SteerError> {
        self.config
            .set(0, *config, 0)
            .map_err(|source| SteerError::Map { name: CONFIG_MAP, source })?;
        self.socket
            .set(SOCKET_INDEX, listener, 0)
            .map_err(SteerError::Listener)
    }
}

/// Opens the pins of an earlier install and points them at `listener`.
fn reuse(
    dir: &Path,
    link_pin: &Path,
    config: &SteerConfig,
    listener: &TcpListener,
) -> Result<Maps, SteerError> {
    open_link(link_pin)?;
    let mut maps = Maps::open(dir)?;
    maps.prepare(config, listener)?;
    Ok(maps)
}

/// Loads the program, pins and fills the maps, then attaches the link to
/// the network namespace at `netns_path` and pins it. On failure, removes
/// what it pinned.
fn fresh(
    options: &SteeringOptions,
    netns_path: &Path,
    link_pin: &Path,
    config: &SteerConfig,
    listener: &TcpListener,
) -> Result<Maps, SteerError> {
    let netns = File::open(netns_path).map_err(|source| SteerError::Netns { path: netns_path.to_path_buf(), source })?;
    let mut ebpf = load_object()?;
    let attached = Maps::create(&mut ebpf, &options.pin_dir).and_then(|mut maps| {
        maps.prepare(config, listener)?;
        attach_and_pin(&mut ebpf, &netns, link_pin)?;
        Ok(maps)
    });
    if attached.is_err() {
        // Leave no half install behind, so the next install starts over.
        if let Err(error) = uninstall(&options.pin_dir) {
            tracing::warn!(%error, "Failed to remove the steering pins after a failed install");
        }
    }
    attached
}

/// Validates the ports and builds the program's configuration.
fn steer_config(ports: &[u16]) -> Result<SteerConfig, SteerError> {
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    if distinct.is_empty() {
        return Err(SteerError::NoPorts);
    }
    if distinct.contains(&0) {
        return Err(SteerError::InvalidPort);
    }
    if distinct.len() > MAX_PORTS {
        return Err(SteerError::TooManyPorts { count: distinct.len() });
    }
    let mut config = SteerConfig::default();
    for (slot, port) in config.ports.iter_mut().zip(distinct) {
        *slot = port;
    }
    Ok(config)
}

fn load_object() -> Result<Ebpf, SteerError> {
    let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(SteerError::Object)?;
    let program: &mut SkLookup = ebpf
        .program_mut(PROGRAM)
        .ok_or(SteerError::Missing { kind: "program", name: PROGRAM })?
        .try_into()
        .map_err(|source| SteerError::Program { operation: "use the sk_lookup program", source })?;
    program
        .load()
        .map_err(|source| SteerError::Program { operation: "load the sk_lookup program", source })?;
    Ok(ebpf)
}

/// Attaches the loaded program to `netns` and pins the link at `link_pin`.
fn attach_and_pin(ebpf: &mut Ebpf, netns: &File, link_pin: &Path) -> Result<(), SteerError> {
    let program: &mut SkLookup = ebpf
        .program_mut(PROGRAM)
        .ok_or(SteerError::Missing { kind: "program", name: PROGRAM })?
        .try_into()
        .map_err(|source| SteerError::Program { operation: "use the sk_lookup program", source })?;
    let attach_error = |source| SteerError::Program { operation: "attach the sk_lookup program", source };
    let link_id = program.attach(netns).map_err(attach_error)?;
    let link = program.take_link(link_id).map_err(attach_error)?;
    let link = FdLink::from(link);
    // The pin holds the link from here on; the returned handle is dropped.
    link.pin(link_pin)
        .map_err(|source| SteerError::Pin { path: link_pin.to_path_buf(), source })?;
    bpffs::restrict_pin(link_pin).map_err(|source| SteerError::Permissions {
        path: link_pin.to_path_buf(),
        source,
    })
}

/// Checks that `path` is a pinned BPF link.
fn open_link(path: &Path) -> Result<(), SteerError> {
    PinnedLink::from_pin(path)
        .map(drop)
        .map_err(|source| SteerError::Link { path: path.to_path_buf(), source })
}

/// Removes the steering pins from `pin_dir`, and the directory when nothing
/// else is left in it. The link is detached once its pin is removed, so new
/// connections reach Odoo directly again when this returns. Returns the
/// removed paths; an absent directory or pin is not an error. Files other
/// than the steering pins are left alone.
pub fn uninstall(pin_dir: &Path) -> Result<Vec<PathBuf>, SteerError> {
    let link_pin = pin_dir.join(LINK_PIN);
    // Opened before the pin goes and detached after: a pin that cannot be
    // removed keeps an attached link, never a detached one that a restarted
    // daemon would reuse as if it steered.
    let link = open_link_to_detach(&link_pin);
    let mut removed = Vec::new();
    // The link first: once it is gone, the maps have no user left.
    for name in std::iter::once(LINK_PIN).chain(MAP_PINS) {
        let path = pin_dir.join(name);
        if remove_if_present(&path)? {
            removed.push(path);
        }
    }
    if let Some(link) = link {
        detach(&link_pin, link.as_fd());
    }
    match std::fs::remove_dir(pin_dir) {
        Ok(()) => removed.push(pin_dir.to_path_buf()),
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTEMPTY)) => {}
        Err(source) => return Err(SteerError::Remove { path: pin_dir.to_path_buf(), source }),
    }
    Ok(removed)
}

/// Tells whether the link pinned at `link_pin` is attached to the network
/// namespace at `netns_path`. When that cannot be read, it answers yes, so
/// the reuse goes on and reports its own errors.
fn pinned_link_steers(link_pin: &Path, netns_path: &Path) -> bool {
    let attached = link::open_pinned(link_pin).and_then(|link| link::netns_inode(link.as_fd()));
    let expected = std::fs::metadata(netns_path).map(|metadata| metadata.ino());
    match (attached, expected) {
        (Ok(attached), Ok(expected)) => u64::from(attached) == expected,
        (Err(error), _) | (_, Err(error)) => {
            tracing::debug!(pin = %link_pin.display(), %error, "Failed to read where the pinned steering link is attached");
            true
        }
    }
}

/// Opens the link pinned at `path`, when there is one, so that it can be
/// detached after its pin is removed.
fn open_link_to_detach(path: &Path) -> Option<OwnedFd> {
    match link::open_pinned(path) {
        Ok(link) => Some(link),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "Failed to open the steering link to detach it");
            None
        }
    }
}

/// Detaches the steering link `link`, whose pin was at `path`.
///
/// Removing the last pin of a link does not detach it at once: the kernel
/// frees the link from a work queue, and until then connections are still
/// steered to a listener that may be gone. `BPF_LINK_DETACH` detaches it
/// before returning. On a failure the link is still freed once the last
/// descriptor closes, so failures are only logged.
fn detach(path: &Path, link: BorrowedFd<'_>) {
    if let Err(error) = link::detach(link) {
        tracing::warn!(path = %path.display(), %error, "Failed to detach the steering link; it is freed shortly");
    }
}

/// Removes a file; returns whether it existed.
fn remove_if_present(path: &Path) -> Result<bool, SteerError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SteerError::Remove { path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_fill_config_slots() {
        let config = steer_config(&[8072, 8069, 8072]).unwrap();
        assert_eq!(config.ports[..3], [8069, 8072, 0]);
    }

    #[test]
    fn port_list_errors() {
        assert!(matches!(steer_config(&[]), Err(SteerError::NoPorts)));
        assert!(matches!(steer_config(&[8069, 0]), Err(SteerError::InvalidPort)));
        let nine: Vec<u16> = (8000..8009).collect();
        assert!(matches!(steer_config(&nine), Err(SteerError::TooManyPorts { count: 9 })));
    }

    #[test]
    fn uninstall_of_absent_dir_removes_nothing() {
        let dir = std::env::temp_dir().join(format!("odoogate-steer-absent-{}", std::process::id()));
        assert!(uninstall(&dir).unwrap().is_empty());
    }

    #[test]
    fn uninstall_keeps_foreign_files() {
        let dir = std::env::temp_dir().join(format!("odoogate-steer-foreign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LINK_PIN), b"").unwrap();
        std::fs::write(dir.join(BYPASS_MAP), b"").unwrap();
        std::fs::write(dir.join("other"), b"").unwrap();
        let removed = uninstall(&dir).unwrap();
        assert_eq!(removed, vec![dir.join(LINK_PIN), dir.join(BYPASS_MAP)]);
        assert!(dir.join("other").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The cgroup guard's userspace half (enforce mode, `[guard]`).
//!
//! The kernel half lives in the capture object's connect4/connect6 programs:
//! a TCP connect to one of Odoo's ports, from a socket in Odoo's network
//! namespace, fails with EPERM unless the calling task's cgroup id is in the
//! `GUARD_ALLOW` map, and each refusal arrives as a
//! [`GuardRefusal`](crate::capture::GuardRefusal) that becomes an audit record
//! with event `guard_refusal`. It stops local processes from going around
//! odoogate by dialing Odoo directly.
//!
//! This module decides which cgroup ids the map holds. [`AllowedCgroups`]
//! resolves them from the live cgroup tree:
//!
//! - every cgroup whose path (relative to the cgroup v2 mount) matches one
//!   of `guard.allow_cgroups`, with the same globs as `match.cgroup`;
//! - odoogate's own cgroup, so its upstream connections to Odoo go through;
//! - the cgroups of the processes that hold a listening socket on one of
//!   Odoo's ports in this network namespace (Odoo itself, which may call its
//!   own port), found through `/proc/thread-self/net/tcp{,6}` and the
//!   processes' descriptors.
//!
//! [`GuardRefresher`] resolves them again every [`REFRESH_INTERVAL`] and
//! syncs the map, so cgroups created later (a restarted service, a timer's
//! run) are allowed without a restart. A new cgroup is refused until the
//! next refresh.
//!
//! Because odoogate's own cgroup is always allowed, every other process in
//! it may connect to Odoo directly. [`own_cgroup_is_shared`] checks whether
//! that cgroup is one that other processes commonly share.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirEntryExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use aya::maps::{HashMap, MapData, MapError};

use crate::audit::{AuditEvent, AuditRecord, Decision};
use crate::capture::GuardRefusal;
use crate::capture::ebpf::ConnectGuard;
use crate::policy::glob::Glob;

/// How often the allowed cgroups are resolved again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Bounds of one walk of the cgroup tree.
const MAX_CGROUPS: usize = 65_536;
const MAX_DEPTH: usize = 32;

/// TCP state `LISTEN` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Errors of the guard's userspace half.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("failed to read the network namespace cookie: {0}")]
    NetnsCookie(#[source] io::Error),
    #[error("failed to update the guard's allow map: {0}")]
    Map(#[source] MapError),
    #[error("failed to start the guard refresh thread: {0}")]
    Thread(#[source] io::Error),
}

/// The cgroups the guard allows: globs resolved against a cgroup v2 tree.
#[derive(Clone, Debug)]
pub struct AllowedCgroups {
    root: PathBuf,
    globs: Vec<Glob>,
    ports: Vec<u16>,
}

/// The cgroups the guard allows at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Allowed cgroup ids, each with its path relative to the cgroup v2
    /// mount (`/` for the root cgroup).
    pub cgroups: BTreeMap<u64, String>,
    /// odoogate's own cgroup path, or `None` when it could not be read.
    pub own_cgroup: Option<String>,
}

/// The state of a running guard, as `odoogate status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardStatus {
    /// The globs of `guard.allow_cgroups` that the guard started with. A
    /// reload does not change them.
    pub allow_cgroups: Vec<String>,
    /// The paths of the cgroups allowed at the last refresh, odoogate's
    /// own and those of the processes listening on Odoo's ports included.
    pub allowed: Vec<String>,
    /// odoogate's own cgroup path, when it could be read.
    pub own_cgroup: Option<String>,
    /// Number of connects that the guard refused since odoogate started.
    pub refusals: u64,
}

/// The latest [`Resolution`] that the allow map holds, shared between the
/// refresh thread and `odoogate status`.
pub type SharedResolution = Arc<Mutex<Resolution>>;

// === impl Resolution ===

impl Resolution {
    /// Returns the allowed cgroup ids.
    pub fn ids(&self) -> BTreeSet<u64> {
        self.cgroups.keys().copied().collect()
    }

    /// Returns the allowed cgroup paths, sorted and without repeats.
    pub fn paths(&self) -> Vec<String> {
        let paths: BTreeSet<&String> = self.cgroups.values().collect();
        paths.into_iter().cloned().collect()
    }
}

// === impl AllowedCgroups ===

impl AllowedCgroups {
    /// `root` is the cgroup v2 mount, `globs` the `allow_cgroups` patterns
    /// and `ports` Odoo's ports.
    pub fn new(root: PathBuf, globs: Vec<Glob>, ports: Vec<u16>) -> Self {
        Self { root, globs, ports }
    }

    /// Returns the globs of `guard.allow_cgroups` as written.
    pub fn globs(&self) -> Vec<String> {
        self.globs.iter().map(|glob| glob.as_str().to_owned()).collect()
    }

    /// Returns the allowed cgroups as the tree is now. A cgroup that cannot
    /// be read is left out (and so refused), never an error.
    pub fn resolve(&self) -> Resolution {
        let mut cgroups = self.matching_cgroups();
        let own = process_cgroup(&self.root, "self");
        if let Some((id, path)) = &own {
            cgroups.insert(*id, path.clone());
        }
        cgroups.extend(listener_cgroups(&self.root, &self.ports));
        Resolution { cgroups, own_cgroup: own.map(|(_, path)| path) }
    }

    /// The guard's starting state for [`crate::capture::ebpf::CaptureOptions`]:
    /// the calling thread's network namespace and the cgroups of `resolution`.
    pub fn connect_guard(resolution: &Resolution) -> Result<ConnectGuard, GuardError> {
        Ok(ConnectGuard {
            netns_cookie: netns_cookie().map_err(GuardError::NetnsCookie)?,
            allowed_cgroups: resolution.ids(),
        })
    }

    /// Walks the tree and keeps the cgroups whose relative path matches,
    /// by id.
    fn matching_cgroups(&self) -> BTreeMap<u64, String> {
        let mut ids = BTreeMap::new();
        let mut seen = 0usize;
        let mut pending = vec![(self.root.clone(), String::new(), 0usize)];
        while let Some((directory, relative, depth)) = pending.pop() {
            let Ok(entries) = fs::read_dir(&directory) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    continue;
                }
                seen += 1;
                if seen > MAX_CGROUPS {
                    tracing::warn!(limit = MAX_CGROUPS, "The cgroup tree is larger than the guard walks");
                    return ids;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = match relative.is_empty() {
                    true => name,
                    false => format!("{relative}/{name}"),
                };
                if self.globs.iter().any(|glob| glob.matches(&path)) {
                    ids.insert(entry.ino(), path.clone());
                }
                if depth + 1 < MAX_DEPTH {
                    pending.push((entry.path(), path, depth + 1));
                }
            }
        }
        ids
    }
}

/// Returns the calling thread's network namespace cookie (`SO_NETNS_COOKIE`,
/// Linux 5.14), the value `bpf_get_netns_cookie` gives the programs.
pub fn netns_cookie() -> io::Result<u64> {
    let socket = std::net::UdpSocket::bind(("127.0.0.1", 0))
        .or_else(|_| std::net::UdpSocket::bind(("::1", 0)))?;
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the descriptor is open for the call, and `cookie` and `len`
    // are valid for writes of the sizes given.
    let status = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Checks whether odoogate's own cgroup, `path` relative to the cgroup v2
/// mount, is one that other processes commonly share: the root cgroup, or
/// a cgroup under `user.slice`, where systemd puts login sessions and user
/// services. An `odoogate run` started by hand from an SSH session runs in
/// the session's scope, such as `user.slice/user-0.slice/session-3.scope`.
pub fn own_cgroup_is_shared(path: &str) -> bool {
    let path = path.trim_start_matches('/');
    path.is_empty() || path == "user.slice" || path.starts_with("user.slice/")
}

/// Returns the cgroup v2 id and path (relative to the mount, `/` for the
/// root cgroup) of process `pid` (a number or `self`), from the `0::/path`
/// line of `/proc/PID/cgroup`.
fn process_cgroup(root: &Path, pid: &str) -> Option<(u64, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let relative = text.lines().find_map(|line| line.strip_prefix("0::"))?.trim_start_matches('/');
    let id = fs::metadata(root.join(relative)).ok()?.ino();
    let path = match relative {
        "" => "/".to_owned(),
        relative => relative.to_owned(),
    };
    Some((id, path))
}

/// Returns the cgroups of the processes holding a TCP socket that listens
/// on one of `ports` in the calling thread's network namespace, by id.
fn listener_cgroups(root: &Path, ports: &[u16]) -> BTreeMap<u64, String> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, ports));
        }
    }
    if inodes.is_empty() {
        return BTreeMap::new();
    }
    let Ok(processes) = fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .filter(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        .filter(|pid| holds_socket(pid, &inodes))
        .filter_map(|pid| process_cgroup(root, &pid))
        .collect()
}

/// Parses a `/proc/net/tcp` table and returns the socket inodes in state
/// LISTEN on one of `ports`.
fn listening_inodes(table: &str, ports: &[u16]) -> BTreeSet<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            (*state == TCP_LISTEN && ports.contains(&port)).then(|| inode.parse().ok())?
        })
        .collect()
}

/// Tells whether process `pid` has a descriptor on one of the `inodes`.
fn holds_socket(pid: &str, inodes: &BTreeSet<u64>) -> bool {
    let Ok(descriptors) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    descriptors.flatten().any(|descriptor| {
        fs::read_link(descriptor.path()).is_ok_and(|target| {
            socket_inode(&target.to_string_lossy()).is_some_and(|inode| inodes.contains(&inode))
        })
    })
}

/// Parses `socket:[INODE]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The guard's allow map and what it holds.
#[derive(Debug)]
pub struct GuardAllowList {
    map: HashMap<MapData, u64, u8>,
    current: BTreeSet<u64>,
}

/// What one sync changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncChange {
    pub added: usize,
    pub removed: usize,
}

// === impl GuardAllowList ===

impl GuardAllowList {
    /// Wraps the map [`crate::capture::ebpf::Capture::take_guard_allow_map`]
    /// hands out; `current` is what it was seeded with.
    pub fn new(map: HashMap<MapData, u64, u8>, current: BTreeSet<u64>) -> Self {
        Self { map, current }
    }

    /// The ids the map holds.
    pub fn current(&self) -> &BTreeSet<u64> {
        &self.current
    }

    /// Makes the map hold exactly `wanted`. Additions go first, so a cgroup
    /// allowed before and after is never refused in between.
    pub fn sync(&mut self, wanted: &BTreeSet<u64>) -> Result<SyncChange, GuardError> {
        let mut change = SyncChange::default();
        for &id in wanted.difference(&self.current.clone()) {
            self.map.insert(id, 1, 0).map_err(GuardError::Map)?;
            self.current.insert(id);
            change.added += 1;
        }
        for id in self.current.difference(wanted).copied().collect::<Vec<_>>() {
            match self.map.remove(&id) {
                Ok(()) => {}
                Err(MapError::SyscallError(error))
                    if error.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(error) => return Err(GuardError::Map(error)),
            }
            self.current.remove(&id);
            change.removed += 1;
        }
        Ok(change)
    }
}

/// A thread that re-resolves the allowed cgroups, syncs the map and
/// publishes what the map holds; dropping it stops the thread.
#[derive(Debug)]
pub struct GuardRefresher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GuardRefresher {
    /// Starts the thread `odoogate-guard`, which syncs `list` to
    /// `allowed.resolve()` every `interval` and stores each resolution it
    /// synced in `published`.
    pub fn spawn(
        mut list: GuardAllowList,
        allowed: AllowedCgroups,
        interval: Duration,
        published: SharedResolution,
    ) -> Result<Self, GuardError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("odoogate-guard".to_owned())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let resolution = allowed.resolve();
                    let synced = list.sync(&resolution.ids());
                    if synced.is_ok() {
                        *published.lock().unwrap_or_else(PoisonError::into_inner) = resolution;
                    }
                    match synced {
                        Ok(SyncChange { added: 0, removed: 0 }) => {}
                        Ok(change) => tracing::info!(
                            added = change.added,
                            removed = change.removed,
                            allowed = list.current().len(),
                            "Updated the cgroups the guard allows"
                        ),
                        Err(error) => tracing::error!(%error, "Failed to update the guard's allow map"),
                    }
                }
            })
            .map_err(GuardError::Thread)?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for GuardRefresher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("The guard refresh thread panicked");
        }
    }
}

/// Builds the `guard_refusal` audit record of a refused connect; `cgroup`
/// is the cgroup's path when it resolved.
pub fn refusal_record(refusal: &GuardRefusal, cgroup: Option<String>) -> AuditRecord {
    let who = cgroup.as_deref().map_or_else(|| format!("cgroup id {}", refusal.cgroup_id), str::to_owned);
    let reason = format!("cgroup {who} is not in guard.allow_cgroups");
    let message = format!(
        "deny connect from {} (pid {}) to {}: {reason}",
        refusal.comm, refusal.pid, refusal.destination
    );
    let mut record = AuditRecord::new(AuditEvent::GuardRefusal, message);
    record.decision = Some(Decision::Deny);
    record.reason = Some(reason);
    record.cgroup = cgroup;
    record.pid = Some(refusal.pid);
    record.comm = Some(refusal.comm.clone());
    record.error_code = Some("cgroup_not_allowed".to_owned());
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP_TABLE: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F85 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 31337 1 0 100 0 0 10 0
   1: 0100007F:1F85 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000   101        0 31338 1 0 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0
";

    #[test]
    fn listening_inodes_keeps_listeners_on_ports() {
        assert_eq!(listening_inodes(TCP_TABLE, &[8069]), BTreeSet::from([31337]));
        assert_eq!(listening_inodes(TCP_TABLE, &[22, 8069]), BTreeSet::from([31337, 4242]));
        assert!(listening_inodes(TCP_TABLE, &[8072]).is_empty());
        assert!(listening_inodes("header only\n", &[8069]).is_empty());
    }

    #[test]
    fn socket_links_parse() {
        assert_eq!(socket_inode("socket:[31337]"), Some(31337));
        assert_eq!(socket_inode("pipe:[31337]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    #[test]
    fn globs_select_cgroups_by_relative_path() {
        let root = std::env::temp_dir().join(format!("odoogate-guard-tree-{}", std::process::id()));
        for dir in ["system.slice/odoo.service", "system.slice/n8n.service", "user.slice/user-1000.slice"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let ino = |dir: &str| fs::metadata(root.join(dir)).unwrap().ino();
        // `**` matches zero segments too, so user.slice itself is allowed.
        let expected_user_slice = ino("user.slice");
        let expected = BTreeSet::from([
            ino("system.slice/odoo.service"),
            expected_user_slice,
            ino("user.slice/user-1000.slice"),
        ]);
        let globs = vec![Glob::path("system.slice/odoo.service").unwrap(), Glob::path("user.slice/**").unwrap()];
        let allowed = AllowedCgroups::new(root.clone(), globs, vec![]);
        let cgroups = allowed.matching_cgroups();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(cgroups.keys().copied().collect::<BTreeSet<_>>(), expected);
        assert_eq!(cgroups.get(&expected_user_slice), Some(&"user.slice".to_owned()));
        assert_eq!(cgroups.values().filter(|path| path.as_str() == "system.slice/odoo.service").count(), 1);
        assert_eq!(allowed.globs(), ["system.slice/odoo.service", "user.slice/**"]);
    }

    #[test]
    fn resolution_lists_paths_sorted() {
        let resolution = Resolution {
            cgroups: BTreeMap::from([
                (30, "system.slice/odoo.service".to_owned()),
                (10, "system.slice/n8n.service".to_owned()),
                (20, "/".to_owned()),
            ]),
            own_cgroup: Some("/".to_owned()),
        };
        assert_eq!(resolution.ids(), BTreeSet::from([10, 20, 30]));
        assert_eq!(resolution.paths(), ["/", "system.slice/n8n.service", "system.slice/odoo.service"]);
    }

    #[test]
    fn own_cgroup_shared_for_root_and_sessions() {
        for shared in ["/", "", "user.slice", "/user.slice/user-0.slice/session-3.scope", "user.slice/user-1000.slice/user@1000.service/app.slice"] {
            assert!(own_cgroup_is_shared(shared), "{shared:?} should count as shared");
        }
        for own in ["system.slice/odoogate.service", "/system.slice/odoogate.service", "user.slices/x", "machine.slice/user.slice"] {
            assert!(!own_cgroup_is_shared(own), "{own:?} should count as odoogate's own");
        }
    }

    #[test]
    fn own_cgroup_resolves_with_path() {
        // The test process's own cgroup, read as the guard reads it, so the
        // check needs a cgroup v2 mount and skips without one.
        let Ok(root) = crate::capture::cgroup::find_cgroup2_mount() else {
            eprintln!("skipped: no cgroup v2 mount");
            return;
        };
        let Some((id, path)) = process_cgroup(&root, "self") else {
            eprintln!("skipped: /proc/self/cgroup names no cgroup v2 path under {}", root.display());
            return;
        };
        let relative = if path == "/" { root.clone() } else { root.join(&path) };
        assert_eq!(fs::metadata(relative).unwrap().ino(), id);
        assert!(!path.is_empty());
        assert!(path == "/" || !path.starts_with('/'), "{path}");
    }

    #[test]
    fn refusal_record_names_process_and_cgroup() {
        let refusal = GuardRefusal {
            destination: "127.0.0.1:8069".parse().unwrap(),
            cgroup_id: 77,
            pid: 4242,
            uid: 1000,
            comm: "curl".to_owned(),
            timestamp_ns: 1,
        };
        let record = refusal_record(&refusal, Some("user.slice/evil.scope".to_owned()));
        assert_eq!(record.event, AuditEvent::GuardRefusal);
        assert_eq!(record.decision, Some(Decision::Deny));
        assert_eq!(record.cgroup.as_deref(), Some("user.slice/evil.scope"));
        assert_eq!(record.pid, Some(4242));
        assert_eq!(
            record.message,
            "deny connect from curl (pid 4242) to 127.0.0.1:8069: cgroup user.slice/evil.scope is not in guard.allow_cgroups"
        );
        let unresolved = refusal_record(&refusal, None);
        assert!(unresolved.message.contains("cgroup id 77"));
        assert_eq!(unresolved.cgroup, None);
    }
}

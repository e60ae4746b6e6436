//! cgroup v2 ids to cgroup paths.
//!
//! The eBPF programs report a cgroup by its id, which on 64-bit kernels is
//! the inode number of the cgroup's directory in the cgroup v2 file system.
//! Integrations name cgroups by path relative to the cgroup v2 mount
//! (`system.slice/n8n.service`), so [`CgroupResolver`] walks the mount and
//! maps inode numbers to paths.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirEntryExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mount table of the calling process's mount namespace.
const MOUNTS_FILE: &str = "/proc/self/mounts";

/// Minimum time between two full walks of the cgroup tree caused by misses.
pub const DEFAULT_MIN_WALK_INTERVAL: Duration = Duration::from_millis(250);

/// Maximum depth and number of cgroups one walk visits, so a pathological
/// tree cannot make the resolver allocate without bound.
const MAX_DEPTH: usize = 64;
const MAX_CGROUPS: usize = 200_000;

/// Errors of cgroup v2 discovery.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to read {MOUNTS_FILE}: {0}")]
    ReadMounts(#[source] io::Error),
    #[error(
        "no cgroup v2 file system is mounted (none listed in {MOUNTS_FILE}); mount one with \
         `mount -t cgroup2 none /sys/fs/cgroup`, or turn off the cgroup programs"
    )]
    NotMounted,
    #[error("failed to read the cgroup v2 root {path}: {source}")]
    ReadRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Returns the mount point of the first cgroup v2 file system in
/// `/proc/self/mounts` (`/sys/fs/cgroup` on current distributions,
/// `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn find_cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let mounts = fs::read_to_string(MOUNTS_FILE).map_err(CgroupError::ReadMounts)?;
    parse_cgroup2_mount(&mounts).ok_or(CgroupError::NotMounted)
}

/// Returns the mount point of the first `cgroup2` entry of a mounts table in
/// the `/proc/mounts` format.
pub fn parse_cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (_source, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
        (fs_type == "cgroup2").then(|| PathBuf::from(unescape_mount_field(mount_point)))
    })
}

/// Decodes the octal escapes (`\040` for a space) the kernel writes for
/// white space and backslashes in `/proc/mounts` fields. An escape above
/// `\377`, which the kernel never writes, becomes `?`.
pub(crate) fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                decoded.push(u8::try_from(value).unwrap_or(b'?'));
                index += 4;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Returns the cgroup id of a cgroup directory (its inode number).
pub fn cgroup_id(path: &Path) -> io::Result<u64> {
    Ok(fs::metadata(path)?.ino())
}

/// Maps cgroup ids to paths relative to the cgroup v2 mount, with a cache.
///
/// A miss re-walks the whole tree, so cgroups created after start (a timer's
/// run, a restarted service) resolve. Misses cause at most one walk per
/// `min_walk_interval`, so ids that never resolve (a cgroup already removed)
/// cannot make the resolver walk the tree at the packet rate.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    root_id: u64,
    paths: HashMap<u64, String>,
    last_walk: Option<Instant>,
    min_walk_interval: Duration,
}

// === impl CgroupResolver ===

impl CgroupResolver {
    /// Creates a resolver for the cgroup v2 mount found in `/proc/self/mounts`.
    pub fn discover() -> Result<Self, CgroupError> {
        Self::new(find_cgroup2_mount()?)
    }

    /// Creates a resolver for the cgroup v2 tree mounted at `root`.
    pub fn new(root: PathBuf) -> Result<Self, CgroupError> {
        Self::with_min_walk_interval(root, DEFAULT_MIN_WALK_INTERVAL)
    }

    /// Creates a resolver that walks the tree at most once per `interval`
    /// on misses.
    pub fn with_min_walk_interval(root: PathBuf, interval: Duration) -> Result<Self, CgroupError> {
        let root_id = cgroup_id(&root).map_err(|source| CgroupError::ReadRoot {
            path: root.clone(),
            source,
        })?;
        Ok(Self {
            root,
            root_id,
            paths: HashMap::new(),
            last_walk: None,
            min_walk_interval: interval,
        })
    }

    /// Returns the cgroup v2 mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the path of cgroup `id` relative to the mount (`"/"` for the
    /// root cgroup), or `None` when no cgroup has that id, or when it is new
    /// and the last walk was less than the minimum interval ago.
    pub fn path(&mut self, id: u64) -> Option<String> {
        if id == self.root_id {
            return Some("/".to_owned());
        }
        if let Some(path) = self.paths.get(&id) {
            return Some(path.clone());
        }
        let walk_allowed = self
            .last_walk
            .is_none_or(|last| last.elapsed() >= self.min_walk_interval);
        if !walk_allowed {
            return None;
        }
        self.walk();
        self.paths.get(&id).cloned()
    }

    /// Replaces the cache with the current tree; entries of removed cgroups
    /// go, which keeps the cache as large as the tree.
    fn walk(&mut self) {
        self.last_walk = Some(Instant::now());
        let mut paths = HashMap::new();
        let mut pending = vec![(self.root.clone(), String::new(), 0usize)];
        while let Some((directory, relative, depth)) = pending.pop() {
            let entries = match fs::read_dir(&directory) {
                Ok(entries) => entries,
                // A cgroup removed during the walk is not an error.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => {
                    tracing::warn!(path = %directory.display(), %error, "Failed to read a cgroup directory");
                    continue;
                }
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    continue;
                }
                if paths.len() >= MAX_CGROUPS {
                    tracing::warn!(
                        limit = MAX_CGROUPS,
                        "The cgroup tree is larger than the resolver's limit"
                    );
                    self.paths = paths;
                    return;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = if relative.is_empty() {
                    name
                } else {
                    format!("{relative}/{name}")
                };
                paths.insert(entry.ino(), path.clone());
                if depth + 1 < MAX_DEPTH {
                    pending.push((entry.path(), path, depth + 1));
                }
            }
        }
        self.paths = paths;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory tree under the system temporary directory, removed on drop.
    struct TempTree(PathBuf);

    impl TempTree {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("odoogate-cgroup-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn mount_found_on_hybrid_host() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(
            parse_cgroup2_mount(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn mount_missing_without_cgroup2() {
        let mounts = "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n";
        assert_eq!(parse_cgroup2_mount(mounts), None);
    }

    #[test]
    fn mount_point_escapes_decoded() {
        let mounts = "none /mnt/my\\040cgroups cgroup2 rw 0 0\n";
        assert_eq!(
            parse_cgroup2_mount(mounts),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
    }

    #[test]
    fn resolver_maps_inodes_to_relative_paths() {
        let tree = TempTree::new("paths");
        let service = tree.0.join("system.slice/n8n.service");
        fs::create_dir_all(&service).unwrap();
        fs::write(tree.0.join("system.slice/cgroup.procs"), b"").unwrap();

        let mut resolver = CgroupResolver::new(tree.0.clone()).unwrap();
        assert_eq!(
            resolver.path(cgroup_id(&tree.0).unwrap()).as_deref(),
            Some("/")
        );
        assert_eq!(
            resolver.path(cgroup_id(&service).unwrap()).as_deref(),
            Some("system.slice/n8n.service")
        );
        assert_eq!(
            resolver
                .path(cgroup_id(&tree.0.join("system.slice")).unwrap())
                .as_deref(),
            Some("system.slice")
        );
    }

    #[test]
    fn resolver_finds_cgroup_created_later() {
        let tree = TempTree::new("later");
        fs::create_dir_all(tree.0.join("a")).unwrap();
        let mut resolver =
            CgroupResolver::with_min_walk_interval(tree.0.clone(), Duration::ZERO).unwrap();
        assert_eq!(
            resolver
                .path(cgroup_id(&tree.0.join("a")).unwrap())
                .as_deref(),
            Some("a")
        );

        let later = tree.0.join("a/timer-run.scope");
        fs::create_dir_all(&later).unwrap();
        assert_eq!(
            resolver.path(cgroup_id(&later).unwrap()).as_deref(),
            Some("a/timer-run.scope")
        );
    }

    #[test]
    fn resolver_rate_limits_walks_on_misses() {
        let tree = TempTree::new("limit");
        let mut resolver =
            CgroupResolver::with_min_walk_interval(tree.0.clone(), Duration::from_secs(3600))
                .unwrap();
        assert_eq!(resolver.path(u64::MAX), None);

        let later = tree.0.join("b");
        fs::create_dir_all(&later).unwrap();
        assert_eq!(
            resolver.path(cgroup_id(&later).unwrap()),
            None,
            "a second walk within the interval must not run"
        );
    }

    #[test]
    fn resolver_forgets_removed_cgroups() {
        let tree = TempTree::new("removed");
        let gone = tree.0.join("gone");
        fs::create_dir_all(&gone).unwrap();
        let gone_id = cgroup_id(&gone).unwrap();
        let mut resolver =
            CgroupResolver::with_min_walk_interval(tree.0.clone(), Duration::ZERO).unwrap();
        assert_eq!(resolver.path(gone_id).as_deref(), Some("gone"));

        // Create the new directory while the old one exists: a regular
        // filesystem may hand a removed inode number to the next directory,
        // whereas cgroup v2 ids are never reused.
        let fresh = tree.0.join("fresh");
        fs::create_dir_all(&fresh).unwrap();
        fs::remove_dir(&gone).unwrap();
        assert_eq!(
            resolver.path(cgroup_id(&fresh).unwrap()).as_deref(),
            Some("fresh")
        );
        assert!(!resolver.paths.values().any(|path| path == "gone"));
    }
}

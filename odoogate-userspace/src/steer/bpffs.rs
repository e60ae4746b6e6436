//! The BPF file system that holds the steering pins.
//!
//! Pins are what keep the sk_lookup link attached while odoogate is down, so
//! the pin directory is made `0700` and each pin `0600`: only root can open
//! the maps through it. Root (or a process with CAP_BPF and CAP_SYS_ADMIN)
//! can still open them by id, so this guards against other users, not
//! against root.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};

/// Where Linux distributions mount bpffs.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// Mode of the pin directory and of each pin.
const DIR_MODE: u32 = 0o700;
const PIN_MODE: u32 = 0o600;

/// Errors of preparing the pin directory.
#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("failed to mount bpffs at {BPFFS_MOUNT}: {source}")]
    Mount {
        #[source]
        source: nix::Error,
    },
    #[error(
        "{path} is not on a BPF file system (bpffs); choose a pin directory under {BPFFS_MOUNT}"
    )]
    NotBpffs { path: PathBuf },
    #[error("failed to prepare the pin directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Tells whether `path` is on bpffs; a missing path is not.
pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|stats| stats.filesystem_type() == BPF_FS_MAGIC)
}

/// Mounts bpffs at [`BPFFS_MOUNT`] unless one is there already.
pub fn ensure_mounted() -> Result<(), BpffsError> {
    let target = Path::new(BPFFS_MOUNT);
    if is_bpffs(target) {
        return Ok(());
    }
    mount(
        Some("bpf"),
        target,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|source| BpffsError::Mount { source })?;
    tracing::info!(path = BPFFS_MOUNT, "Mounted bpffs");
    Ok(())
}

/// Creates `dir` (mode 0700) on bpffs, or checks the one that exists.
pub fn prepare_pin_dir(dir: &Path) -> Result<(), BpffsError> {
    let parent = dir.parent().unwrap_or(dir);
    if !is_bpffs(parent) {
        return Err(BpffsError::NotBpffs {
            path: dir.to_path_buf(),
        });
    }
    let directory_error = |source| BpffsError::Directory {
        path: dir.to_path_buf(),
        source,
    };
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(directory_error)
        }
        Err(error) => Err(directory_error(error)),
    }
}

/// Restricts a pin to its owner (root).
pub fn restrict_pin(pin: &Path) -> io::Result<()> {
    fs::set_permissions(pin, fs::Permissions::from_mode(PIN_MODE))
}

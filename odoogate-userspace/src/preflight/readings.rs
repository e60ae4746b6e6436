//! Host readings for the startup checks: raw file contents, so tests can
//! replace them with fake `/proc` contents.

use std::fmt;
use std::path::PathBuf;

use crate::capture::cgroup::unescape_mount_field;

/// Largest file read from `/proc` or `/sys`: a mount table with thousands
/// of container mounts stays far below it.
const MAX_READING_BYTES: u64 = 4 * 1024 * 1024;

/// A reading that is missing or could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    #[error("failed to read {source_name}: {message}")]
    Unreadable { source_name: &'static str, message: String },
    #[error("invalid kernel release {0:?}: expected MAJOR.MINOR")]
    KernelRelease(String),
    #[error("no CapEff line in /proc/self/status")]
    MissingCapEff,
    #[error("invalid CapEff value {0:?} in /proc/self/status: expected a hex mask")]
    CapEff(String),
    #[error("invalid line {0:?} in a mountinfo file")]
    MountInfoLine(String),
}

/// A kernel `MAJOR.MINOR` version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Parses the start of a release string such as `6.8.0-45-generic`.
    pub fn parse(release: &str) -> Result<Self, ReadingError> {
        let invalid = || ReadingError::KernelRelease(release.trim().to_owned());
        let mut parts = release.trim().split(['.', '-', '+']);
        let major = parts.next().and_then(|part| part.parse().ok()).ok_or_else(invalid)?;
        let minor = parts.next().and_then(|part| part.parse().ok()).ok_or_else(invalid)?;
        Ok(Self { major, minor })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One line of a `/proc/PID/mountinfo` file: where a file system is
/// mounted, and which one (its device number, the same in every mount
/// namespace that sees it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfoEntry {
    /// `MAJOR:MINOR` of the file system.
    pub device: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// The raw host readings. Each is the file's contents, or the error met
/// reading it.
#[derive(Clone, Debug)]
pub struct HostReadings {
    /// `/proc/sys/kernel/osrelease`.
    pub osrelease: Result<String, ReadingError>,
    /// `/proc/self/status`.
    pub status: Result<String, ReadingError>,
    /// The network interfaces of this process's network namespace.
    pub interfaces: Result<Vec<String>, ReadingError>,
    /// `/proc/self/mountinfo`: the mount table of the cgroup v2, bpffs and
    /// pin checks. Linux writes the same mounts, with the same mount points
    /// and file system types escaped the same way, as in
    /// `/proc/self/mounts` (`show_mountinfo` and `show_vfsmnt` in
    /// `fs/proc_namespace.c`).
    pub own_mountinfo: Result<String, ReadingError>,
    /// `/proc/1/mountinfo`: the mounts of the host's init, which outlive
    /// this process.
    pub host_mountinfo: Result<String, ReadingError>,
}

impl HostReadings {
    /// Reads the real files of this process and host.
    pub fn from_host() -> Self {
        Self {
            osrelease: read("/proc/sys/kernel/osrelease"),
            status: read("/proc/self/status"),
            interfaces: list_interfaces(),
            own_mountinfo: read("/proc/self/mountinfo"),
            host_mountinfo: read("/proc/1/mountinfo"),
        }
    }

    pub fn kernel(&self) -> Result<KernelVersion, ReadingError> {
        KernelVersion::parse(self.osrelease.as_ref().map_err(Clone::clone)?)
    }

    /// Parses `/proc/self/mountinfo`.
    pub fn own_mount_info(&self) -> Result<Vec<MountInfoEntry>, ReadingError> {
        parse_mountinfo(self.own_mountinfo.as_ref().map_err(Clone::clone)?)
    }

    /// Parses `/proc/1/mountinfo`.
    pub fn host_mount_info(&self) -> Result<Vec<MountInfoEntry>, ReadingError> {
        parse_mountinfo(self.host_mountinfo.as_ref().map_err(Clone::clone)?)
    }

    /// Returns the `CapEff` mask of `/proc/self/status`.
    pub fn effective_capabilities(&self) -> Result<u64, ReadingError> {
        let status = self.status.as_ref().map_err(Clone::clone)?;
        let value = status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .ok_or(ReadingError::MissingCapEff)?
            .trim();
        u64::from_str_radix(value, 16).map_err(|_| ReadingError::CapEff(value.to_owned()))
    }

    pub fn interfaces(&self) -> Result<&[String], ReadingError> {
        self.interfaces.as_deref().map_err(Clone::clone)
    }
}

/// Parses mountinfo lines (proc(5)): `ID PARENT MAJOR:MINOR ROOT
/// MOUNT-POINT OPTIONS [OPTIONAL...] - FS-TYPE SOURCE SUPER-OPTIONS`.
/// Octal escapes (`\040` for a space) in mount points are decoded. The
/// kernel escapes white space in paths and writes no other field with a
/// space before the separator, so the first ` - ` is the separator.
fn parse_mountinfo(table: &str) -> Result<Vec<MountInfoEntry>, ReadingError> {
    let parse = |line: &str| {
        let invalid = || ReadingError::MountInfoLine(line.to_owned());
        let (before, after) = line.split_once(" - ").ok_or_else(invalid)?;
        let mut fields = before.split_ascii_whitespace();
        let (Some(_id), Some(_parent), Some(device), Some(_root), Some(mount_point)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(invalid());
        };
        let fs_type = after.split_ascii_whitespace().next().ok_or_else(invalid)?;
        Ok(MountInfoEntry {
            device: device.to_owned(),
            mount_point: PathBuf::from(unescape_mount_field(mount_point)),
            fs_type: fs_type.to_owned(),
        })
    };
    table.lines().filter(|line| !line.trim().is_empty()).map(parse).collect()
}

fn read(path: &'static str) -> Result<String, ReadingError> {
    use std::io::Read as _;
    let unreadable = |error: std::io::Error| ReadingError::Unreadable { source_name: path, message: error.to_string() };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut contents = String::new();
    file.take(MAX_READING_BYTES).read_to_string(&mut contents).map_err(unreadable)?;
    Ok(contents)
}

/// Lists the interfaces with `if_nameindex(3)`, which asks the kernel over a
/// socket in this process's network namespace. `/sys/class/net` would show
/// the namespace sysfs was mounted in instead, which differs for a daemon
/// started with `nsenter --net`.
fn list_interfaces() -> Result<Vec<String>, ReadingError> {
    let interfaces = nix::net::if_::if_nameindex().map_err(|error| ReadingError::Unreadable {
        source_name: "if_nameindex",
        message: error.to_string(),
    })?;
    let mut names: Vec<String> =
        interfaces.iter().map(|interface| interface.name().to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}

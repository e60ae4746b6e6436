//! Startup checks of `odoogate run`, before anything is attached.
//!
//! Each check reads the host through [`HostReadings`] (kernel release,
//! mount table, effective capabilities, network interfaces), so the tests
//! inject fake `/proc` contents and the daemon reads the real ones. Every
//! failed check is one [`Failure`]: what is wrong, with the value found,
//! and how to fix it. The daemon prints them all and exits non-zero.

pub mod exposure;
mod readings;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Config, Mode};

pub use readings::{HostReadings, KernelVersion, MountInfoEntry, ReadingError};

/// Oldest kernel with TCX attachment (`BPF_TCX_INGRESS`), added in 6.6.
pub const MIN_KERNEL: KernelVersion = KernelVersion { major: 6, minor: 6 };

/// A Linux capability that the daemon needs, with its number from
/// `linux/capability.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    NetAdmin,
    Perfmon,
    Bpf,
}

impl Capability {
    pub fn number(self) -> u32 {
        match self {
            Self::NetAdmin => 12,
            Self::Perfmon => 38,
            Self::Bpf => 39,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::NetAdmin => "CAP_NET_ADMIN",
            Self::Perfmon => "CAP_PERFMON",
            Self::Bpf => "CAP_BPF",
        }
    }
}

/// Capabilities of the eBPF paths: loading TC and cgroup programs (CAP_BPF,
/// CAP_NET_ADMIN) and reading maps of pointers and stack data
/// (CAP_PERFMON). Attaching to the cgroup v2 root, to the network namespace
/// and pinning in bpffs need no CAP_SYS_ADMIN (tests/tests/capabilities.rs
/// runs the daemon without it).
pub const EBPF_CAPABILITIES: [Capability; 3] =
    [Capability::Bpf, Capability::NetAdmin, Capability::Perfmon];

/// The number of CAP_SYS_ADMIN, which the kernel takes for CAP_BPF and
/// CAP_PERFMON.
const CAP_SYS_ADMIN: u32 = 21;

/// One failed check: the problem with the value found, and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub check: Check,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.check.as_str(), self.problem, self.fix)
    }
}

/// The checks, named in failure messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Kernel,
    CgroupV2,
    Bpffs,
    Interfaces,
    Ports,
    Capabilities,
    Readings,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::CgroupV2 => "cgroup v2",
            Self::Bpffs => "bpffs",
            Self::Interfaces => "interfaces",
            Self::Ports => "ports",
            Self::Capabilities => "capabilities",
            Self::Readings => "host readings",
        }
    }
}

/// Every failed check of one run, in the order they were made.
#[derive(Debug, thiserror::Error)]
#[error("{} startup check(s) failed:{}", .0.len(), list(.0))]
pub struct PreflightError(pub Vec<Failure>);

fn list(failures: &[Failure]) -> String {
    failures.iter().map(|failure| format!("\n  - {failure}")).collect()
}

/// What the daemon will do with `config`, which decides the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Datapath {
    /// Observe mode: TC and cgroup programs on the configured interfaces.
    Observe,
    /// Enforce mode with `proxy.listen`: a plain listener, no eBPF.
    Listen,
    /// Enforce mode without `proxy.listen`: sk_lookup steering pinned in
    /// bpffs, and the cgroup guard when configured.
    Steer,
}

fn path_of(config: &Config) -> Datapath {
    match (config.policy.mode, config.proxy.listen) {
        (Mode::Observe, _) => Datapath::Observe,
        (Mode::Enforce, Some(_)) => Datapath::Listen,
        (Mode::Enforce, None) => Datapath::Steer,
    }
}

/// Reads the host and runs every check that applies to `config`.
pub fn run(config: &Config) -> Result<(), PreflightError> {
    let readings = HostReadings::from_host();
    check(config, &readings)
}

/// Runs every check that applies to `config` against `readings`.
pub fn check(config: &Config, readings: &HostReadings) -> Result<(), PreflightError> {
    let mut failures = Vec::new();
    failures.extend(check_ports(config));
    let path = path_of(config);
    // Parsed once for the cgroup v2, bpffs and pin checks.
    let own_mounts = readings.own_mount_info();
    if path != Datapath::Listen {
        failures.extend(check_kernel(readings));
        failures.extend(check_cgroup_v2(&own_mounts));
        failures.extend(check_capabilities(readings));
    }
    if path == Datapath::Observe {
        failures.extend(check_interfaces(config, readings));
    }
    if path == Datapath::Steer {
        match check_bpffs(&config.steering.pin_dir, &own_mounts) {
            Some(failure) => failures.push(failure),
            None => failures.extend(check_pins_outlive(&config.steering.pin_dir, &own_mounts, readings)),
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(PreflightError(failures)) }
}

fn reading_failure(error: &ReadingError) -> Failure {
    Failure {
        check: Check::Readings,
        problem: error.to_string(),
        fix: "run odoogate on Linux with /proc mounted".to_owned(),
    }
}

fn check_kernel(readings: &HostReadings) -> Option<Failure> {
    let version = match readings.kernel() {
        Ok(version) => version,
        Err(error) => return Some(reading_failure(&error)),
    };
    (version < MIN_KERNEL).then(|| Failure {
        check: Check::Kernel,
        problem: format!("kernel {version} is older than {MIN_KERNEL}, which added TCX attachment"),
        fix: format!("boot a kernel {MIN_KERNEL} or later"),
    })
}

fn check_cgroup_v2(own_mounts: &Result<Vec<MountInfoEntry>, ReadingError>) -> Option<Failure> {
    let mounts = match own_mounts {
        Ok(mounts) => mounts,
        Err(error) => return Some(reading_failure(error)),
    };
    let found = mounts.iter().any(|mount| mount.fs_type == "cgroup2");
    (!found).then(|| Failure {
        check: Check::CgroupV2,
        problem: "no cgroup2 file system is mounted".to_owned(),
        fix: "mount cgroup v2 (`mount -t cgroup2 none /sys/fs/cgroup`) or boot with \
              systemd.unified_cgroup_hierarchy=1; under `ip netns exec`, which mounts a /sys of its own, \
              join only the network namespace instead (`nsenter --net=/run/netns/NAME`)"
            .to_owned(),
    })
}

fn check_bpffs(pin_dir: &Path, own_mounts: &Result<Vec<MountInfoEntry>, ReadingError>) -> Option<Failure> {
    let mounts = match own_mounts {
        Ok(mounts) => mounts,
        Err(error) => return Some(reading_failure(error)),
    };
    // The mount that contains pin_dir is the longest mount point prefix.
    let containing = mounts
        .iter()
        .filter(|mount| pin_dir.starts_with(&mount.mount_point))
        .max_by_key(|mount| mount.mount_point.components().count());
    match containing {
        Some(mount) if mount.fs_type == "bpf" => None,
        other => {
            let found = other.map_or_else(
                || "no file system".to_owned(),
                |mount| format!("{} ({})", mount.mount_point.display(), mount.fs_type),
            );
            Some(Failure {
                check: Check::Bpffs,
                problem: format!("steering.pin_dir {} is not on a bpf file system but on {found}", pin_dir.display()),
                fix: format!(
                    "mount bpffs (`mount -t bpf bpf {}`) or set steering.pin_dir under a bpffs mount; under \
                     `ip netns exec`, which mounts a /sys of its own, join only the network namespace instead \
                     (`nsenter --net=/run/netns/NAME`)",
                    bpffs_mount_hint(pin_dir).display()
                ),
            })
        }
    }
}

/// Checks that the bpf file system of `pin_dir` is also mounted in the
/// host's init's mount namespace. `ip netns exec` gives the command a
/// mount namespace with its own `/sys`, and a bpffs mounted there goes
/// away with the last process in it. The pins would then go with odoogate,
/// the sk_lookup link would be released, and new connections would reach
/// Odoo directly instead of failing closed. When `/proc/1/mountinfo`
/// cannot be read, the check is skipped.
fn check_pins_outlive(pin_dir: &Path, own_mounts: &Result<Vec<MountInfoEntry>, ReadingError>, readings: &HostReadings) -> Option<Failure> {
    let own = match own_mounts {
        Ok(own) => own,
        Err(error) => return Some(reading_failure(error)),
    };
    let host = readings.host_mount_info().ok()?;
    let containing = own
        .iter()
        .filter(|mount| pin_dir.starts_with(&mount.mount_point))
        .max_by_key(|mount| mount.mount_point.components().count())?;
    let shared = host.iter().any(|mount| mount.fs_type == "bpf" && mount.device == containing.device);
    (!shared).then(|| Failure {
        check: Check::Bpffs,
        problem: format!(
            "steering.pin_dir {} is on a bpf file system (at {}) that the host's mount namespace does not see, so the \
             pins would go with odoogate and new connections would then reach Odoo directly instead of being dropped",
            pin_dir.display(),
            containing.mount_point.display()
        ),
        fix: "start odoogate in the host's mount namespace: join only the network namespace \
              (`nsenter --net=/run/netns/NAME odoogate run ...`), since `ip netns exec` mounts a /sys of its own"
            .to_owned(),
    })
}

/// `/sys/fs/bpf` for pins under it, else the pin directory itself.
fn bpffs_mount_hint(pin_dir: &Path) -> PathBuf {
    let standard = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(standard) { standard.to_path_buf() } else { pin_dir.to_path_buf() }
}

fn check_interfaces(config: &Config, readings: &HostReadings) -> Vec<Failure> {
    let present = match readings.interfaces() {
        Ok(present) => present,
        Err(error) => return vec![reading_failure(&error)],
    };
    config
        .odoo
        .interfaces
        .iter()
        .filter(|name| !present.iter().any(|present| present == *name))
        .map(|name| Failure {
            check: Check::Interfaces,
            problem: format!("odoo.interfaces names {name:?}, which does not exist (present: {})", present.join(", ")),
            fix: "list the interfaces Odoo's clients come in on (`ip link`), `lo` for local clients".to_owned(),
        })
        .collect()
}

fn check_ports(config: &Config) -> Vec<Failure> {
    let mut failures = Vec::new();
    for (index, port) in config.odoo.ports.iter().enumerate() {
        if *port == 0 || config.odoo.ports[..index].contains(port) {
            failures.push(Failure {
                check: Check::Ports,
                problem: format!("odoo.ports contains {port} more than once or as 0"),
                fix: "list each of Odoo's HTTP ports once (8069 by default)".to_owned(),
            });
        }
    }
    if config.policy.mode == Mode::Enforce && config.proxy.listen == Some(config.proxy.upstream) {
        failures.push(Failure {
            check: Check::Ports,
            problem: format!("proxy.listen and proxy.upstream are both {}", config.proxy.upstream),
            fix: "make Odoo listen on another port (or address) and set proxy.upstream to it".to_owned(),
        });
    }
    failures
}

fn check_capabilities(readings: &HostReadings) -> Option<Failure> {
    let effective = match readings.effective_capabilities() {
        Ok(effective) => effective,
        Err(error) => return Some(reading_failure(&error)),
    };
    let has = |number: u32| effective & (1u64 << number) != 0;
    // The kernel accepts CAP_SYS_ADMIN in place of CAP_BPF and CAP_PERFMON
    // (`bpf_capable()` and `perfmon_capable()`), so an older unit or
    // container that grants it works too.
    let missing: Vec<&str> = EBPF_CAPABILITIES
        .iter()
        .filter(|capability| {
            let stands_in = matches!(capability, Capability::Bpf | Capability::Perfmon) && has(CAP_SYS_ADMIN);
            !has(capability.number()) && !stands_in
        })
        .map(|capability| capability.name())
        .collect();
    (!missing.is_empty()).then(|| Failure {
        check: Check::Capabilities,
        problem: format!("the effective capability set lacks {}", missing.join(", ")),
        fix: "run as root, or under the packaged systemd unit (AmbientCapabilities), or grant them with \
              `setpriv --inh-caps=+bpf,+net_admin,+perfmon --ambient-caps=+bpf,+net_admin,+perfmon`"
            .to_owned(),
    })
}

//! Loads and attaches odoogate's eBPF programs and runs the ring buffer
//! reader.
//!
//! [`Capture::start`] loads the object embedded at build time, attaches the
//! TC program (with TCX, which the kernel detaches by itself when the process
//! dies, on kernels >= 6.6) to each configured interface and, when asked, the
//! cgroup programs to the cgroup v2 root. Dropping the [`Capture`] stops the
//! reader and detaches everything.
//!
//! With [`CaptureOptions::connect_guard`], the connect programs also act as
//! enforce mode's cgroup guard; `steer::guard` keeps its allow map current
//! through [`Capture::take_guard_allow_map`].
//!
//! Loading and attaching happen in the calling thread, so the TC programs
//! attach to the interfaces of the calling thread's network namespace.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use aya::maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, ProgramError, ProgramInfo,
    SchedClassifier, TcAttachType,
};
use aya::{Ebpf, EbpfError, EbpfLoader};
use odoogate_common::{
    CONFIG_GLOBAL, CONNECT_POLICY_ALLOW_ALL, CONNECT_POLICY_GUARD, CONNECT4_PROGRAM,
    CONNECT6_PROGRAM, CaptureConfig, EVENTS_MAP, FLOW_ORIGIN_PROGRAM, GUARD_ALLOW_MAP,
    GUARD_ALLOW_MAX_ENTRIES, MAX_PORTS, SCRATCH_MAP, STATS_MAP, TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM, stat,
};

use super::cgroup::{self, CgroupError};
use super::event::{CaptureEvent, CaptureStats};
use super::ring::{PACKET_BATCH_WINDOW, RingReader};

/// The eBPF object built by `build.rs` (empty when the build skipped it).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/odoogate"));

/// Lines of the verifier log kept in a load error.
const VERIFIER_LOG_TAIL_LINES: usize = 30;

/// The fix printed with every permission error.
const PRIVILEGE_FIX: &str = "run odoogate as root, or grant it CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8)";

/// Capture settings: ports, interfaces, ring size and cgroup programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Interfaces to attach the TC program to. On `lo` only ingress is
    /// attached, because every packet of both directions passes it once.
    /// May be empty with `cgroup_programs` (enforce mode), which then
    /// reports flow origins and guard refusals but no segments.
    pub interfaces: Vec<String>,
    /// TCP ports to capture (1 to 8 distinct non-zero ports).
    pub ports: Vec<u16>,
    /// Ring buffer size in bytes; rounded up to a power of two of at least
    /// the page size.
    pub ring_buffer_bytes: u32,
    /// cgroup v2 mount to attach the cgroup programs to; `None` finds it in
    /// `/proc/self/mounts`.
    pub cgroup_root: Option<PathBuf>,
    /// Attach the cgroup programs, which report the cgroup and process of
    /// local clients (flow origins).
    pub cgroup_programs: bool,
    /// Turn the connect programs into the cgroup guard (enforce mode only;
    /// needs `cgroup_programs`). `None` lets every connect through.
    pub connect_guard: Option<ConnectGuard>,
    /// Report no flow origin for this process's own connects (enforce
    /// mode, whose connections to Odoo are never accepted by itself).
    // NOTE: the programs compare the process id in the host's pid
    // namespace with this process's own id, so in a pid namespace of its
    // own the daemon's connects are still reported, and their origins
    // expire unused as before.
    pub ignore_own_connects: bool,
}

/// The cgroup guard's starting state: connects to the ports from other
/// cgroups of that namespace fail with EPERM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectGuard {
    /// `SO_NETNS_COOKIE` of the network namespace the guard applies to.
    pub netns_cookie: u64,
    /// cgroup ids allowed from the start, written to the allow map before
    /// the programs are attached, so no allowed connect is ever refused.
    pub allowed_cgroups: BTreeSet<u64>,
}

/// Errors of loading and attaching the programs.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no port to capture: set at least one Odoo port")]
    NoPorts,
    #[error("{count} ports configured, but the capture programs match at most {MAX_PORTS}")]
    TooManyPorts { count: usize },
    #[error("port 0 is not a valid TCP port to capture")]
    InvalidPort,
    #[error("no interface to capture on: set at least one interface (for example \"lo\")")]
    NoInterfaces,
    #[error("ring buffer size of {requested} bytes is too large: the maximum is {max} bytes")]
    RingBufferTooLarge { requested: u32, max: u32 },
    #[error(
        "this odoogate binary was built without its eBPF programs (ODOOGATE_SKIP_EBPF_BUILD was set); \
         rebuild it without that variable"
    )]
    ProgramsNotBuilt,
    #[error("permission denied while {operation}: {PRIVILEGE_FIX}")]
    PermissionDenied {
        operation: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "network interface {interface:?} not found in this network namespace; \
         available interfaces: {available}"
    )]
    InterfaceNotFound {
        interface: String,
        available: String,
    },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(
        "{path} is not a cgroup v2 mount; set the cgroup root to the cgroup2 mount listed in /proc/mounts"
    )]
    NotCgroup2 { path: PathBuf },
    #[error("failed to open the cgroup v2 root {path}: {source}")]
    OpenCgroupRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to load the eBPF object: {0}")]
    Object(#[source] EbpfError),
    #[error("the eBPF object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error(
        "the kernel rejected program {program}: {source}\nverifier log (last lines):\n{verifier_log}"
    )]
    Verifier {
        program: &'static str,
        #[source]
        source: io::Error,
        verifier_log: String,
    },
    #[error("failed to {operation}: {source}")]
    Program {
        operation: String,
        #[source]
        source: ProgramError,
    },
    #[error("failed to open map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("failed to start the ring buffer reader: {0}")]
    Reader(#[source] io::Error),
    #[error("the cgroup guard needs the cgroup programs; enable them with the guard")]
    GuardWithoutCgroupPrograms,
    #[error(
        "{count} cgroups to allow, but the guard's allow map holds at most {GUARD_ALLOW_MAX_ENTRIES}; \
         narrow guard.allow_cgroups"
    )]
    TooManyGuardCgroups { count: usize },
}

/// The loaded and attached programs and the thread that drains their ring
/// buffer.
#[derive(Debug)]
pub struct Capture {
    // Field order matters: the reader stops before the object (and with it
    // every link) is dropped.
    reader: RingReader,
    ebpf: Ebpf,
    attachments: Vec<String>,
    guard_allow: Option<HashMap<MapData, u64, u8>>,
}

// === impl Capture ===

impl Capture {
    /// Loads, attaches, and starts a dedicated reader thread that drains the
    /// ring buffer (poll on its fd) and sends [`CaptureEvent`] values into
    /// `events`. When `events` is full the reader waits, and the kernel
    /// counts the records the ring then cannot take in
    /// [`CaptureStats::ring_full`].
    pub fn start(
        options: &CaptureOptions,
        events: SyncSender<CaptureEvent>,
    ) -> Result<Capture, CaptureError> {
        let mut config = capture_config(&options.ports, options.connect_guard.as_ref())?;
        if options.ignore_own_connects {
            config.ignored_tgid = std::process::id();
        }
        if options.connect_guard.is_some() && !options.cgroup_programs {
            return Err(CaptureError::GuardWithoutCgroupPrograms);
        }
        if options.interfaces.is_empty() && !options.cgroup_programs {
            return Err(CaptureError::NoInterfaces);
        }
        for interface in &options.interfaces {
            check_interface(interface)?;
        }
        let cgroup_root = match options.cgroup_programs {
            true => Some(cgroup_root(options.cgroup_root.as_deref())?),
            false => None,
        };
        let ring_bytes = ring_buffer_size(options.ring_buffer_bytes)?;

        let mut ebpf = load_object(&config, ring_bytes)?;
        let guard_allow = match &options.connect_guard {
            Some(guard) => Some(seed_guard(&mut ebpf, &guard.allowed_cgroups)?),
            None => None,
        };
        let mut attachments = match options.interfaces.is_empty() {
            true => Vec::new(),
            false => attach_tc(&mut ebpf, &options.interfaces)?,
        };
        if let Some(root) = &cgroup_root {
            attachments.extend(attach_cgroup_programs(&mut ebpf, root)?);
        }

        let map = ebpf.take_map(EVENTS_MAP).ok_or(CaptureError::Missing {
            kind: "map",
            name: EVENTS_MAP,
        })?;
        let ring = RingBuf::try_from(map).map_err(|source| CaptureError::Map {
            name: EVENTS_MAP,
            source,
        })?;
        // Only packet records come in bursts. Origins and guard refusals are
        // read at once, because the enforce path waits for a connection's
        // origin before it serves the connection.
        let batch_window = match options.interfaces.is_empty() {
            true => Duration::ZERO,
            false => PACKET_BATCH_WINDOW,
        };
        let reader = RingReader::spawn(ring, events, batch_window).map_err(CaptureError::Reader)?;
        tracing::info!(
            attachments = ?attachments,
            ports = ?options.ports,
            ring_buffer_bytes = ring_bytes,
            "Capture started"
        );
        Ok(Capture {
            reader,
            ebpf,
            attachments,
            guard_allow,
        })
    }

    /// Hands out the guard's allow map (cgroup id to 1) once; `None` without
    /// the guard or on a second call.
    pub fn take_guard_allow_map(&mut self) -> Option<HashMap<MapData, u64, u8>> {
        self.guard_allow.take()
    }

    /// Returns the kernel counters summed over CPUs and the reader's count
    /// of malformed records. A counter that cannot be read is logged and
    /// reported as zero.
    pub fn stats(&self) -> CaptureStats {
        let kernel = self.kernel_counters();
        let read = |index: u32| kernel.as_ref().map_or(0, |values| values[index as usize]);
        CaptureStats {
            packets: read(stat::PACKETS),
            records: read(stat::RECORDS),
            ring_full: read(stat::RING_FULL),
            truncated: read(stat::TRUNCATED),
            load_errors: read(stat::LOAD_ERRORS),
            skipped_packets: read(stat::SKIPPED),
            header_errors: read(stat::HEADER_ERRORS),
            origins: read(stat::ORIGINS),
            connects: read(stat::CONNECTS),
            guard_refusals: read(stat::GUARD_REFUSALS),
            malformed_records: self.reader.malformed_records(),
        }
    }

    /// Human-readable descriptions of what is attached, such as
    /// `"tc ingress on lo"`.
    pub fn attachments(&self) -> Vec<String> {
        self.attachments.clone()
    }

    /// Reads every kernel counter, summed over CPUs.
    fn kernel_counters(&self) -> Option<Vec<u64>> {
        let read = || -> Result<Vec<u64>, MapError> {
            let map = self.ebpf.map(STATS_MAP).ok_or(MapError::InvalidName {
                name: STATS_MAP.to_owned(),
            })?;
            let counters = PerCpuArray::<&MapData, u64>::try_from(map)?;
            (0..stat::COUNT)
                .map(|index| Ok(counters.get(&index, 0)?.iter().sum()))
                .collect()
        };
        read()
            .inspect_err(|error| tracing::warn!(%error, "Failed to read the capture counters"))
            .ok()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.reader.stop();
        tracing::info!(attachments = ?self.attachments, "Capture stopped; detaching the programs");
    }
}

/// Validates the ports and builds the configuration the programs read.
fn capture_config(
    ports: &[u16],
    guard: Option<&ConnectGuard>,
) -> Result<CaptureConfig, CaptureError> {
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    if distinct.is_empty() {
        return Err(CaptureError::NoPorts);
    }
    if distinct.contains(&0) {
        return Err(CaptureError::InvalidPort);
    }
    if distinct.len() > MAX_PORTS {
        return Err(CaptureError::TooManyPorts {
            count: distinct.len(),
        });
    }
    let mut config = match guard {
        Some(guard) => CaptureConfig {
            connect_policy: CONNECT_POLICY_GUARD,
            guard_netns_cookie: guard.netns_cookie,
            ..CaptureConfig::default()
        },
        None => CaptureConfig {
            connect_policy: CONNECT_POLICY_ALLOW_ALL,
            ..CaptureConfig::default()
        },
    };
    for (slot, port) in config.ports.iter_mut().zip(distinct) {
        *slot = port;
    }
    Ok(config)
}

/// Fills the guard's allow map before any program is attached and takes it
/// out of the object.
fn seed_guard(
    ebpf: &mut Ebpf,
    allowed: &BTreeSet<u64>,
) -> Result<HashMap<MapData, u64, u8>, CaptureError> {
    if allowed.len() > GUARD_ALLOW_MAX_ENTRIES as usize {
        return Err(CaptureError::TooManyGuardCgroups {
            count: allowed.len(),
        });
    }
    let map_error = |source| CaptureError::Map {
        name: GUARD_ALLOW_MAP,
        source,
    };
    let map = ebpf.take_map(GUARD_ALLOW_MAP).ok_or(CaptureError::Missing {
        kind: "map",
        name: GUARD_ALLOW_MAP,
    })?;
    let mut map = HashMap::try_from(map).map_err(map_error)?;
    for &id in allowed {
        map.insert(id, 1, 0).map_err(map_error)?;
    }
    Ok(map)
}

/// Rounds the requested ring size up to a power of two of at least one page,
/// as the kernel requires for ring buffer maps.
fn ring_buffer_size(requested: u32) -> Result<u32, CaptureError> {
    const MAX: u32 = 1 << 31;
    let size = requested
        .max(page_size())
        .checked_next_power_of_two()
        .filter(|&size| size <= MAX);
    let size = size.ok_or(CaptureError::RingBufferTooLarge {
        requested,
        max: MAX,
    })?;
    if size != requested {
        tracing::info!(
            requested,
            size,
            "Rounded the ring buffer size up to a power of two of at least one page"
        );
    }
    Ok(size)
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

/// Fails with [`CaptureError::InterfaceNotFound`] when `interface` does not
/// exist in the calling thread's network namespace.
fn check_interface(interface: &str) -> Result<(), CaptureError> {
    if nix::net::if_::if_nametoindex(interface).is_ok() {
        return Ok(());
    }
    let available: BTreeSet<String> = match nix::ifaddrs::getifaddrs() {
        Ok(addresses) => addresses.map(|address| address.interface_name).collect(),
        Err(_) => BTreeSet::new(),
    };
    let available = available.into_iter().collect::<Vec<_>>().join(", ");
    Err(CaptureError::InterfaceNotFound {
        interface: interface.to_owned(),
        available,
    })
}

/// Returns the cgroup v2 root to attach to, checking that it is one.
fn cgroup_root(configured: Option<&Path>) -> Result<PathBuf, CaptureError> {
    let root = match configured {
        Some(root) => root.to_path_buf(),
        None => cgroup::find_cgroup2_mount()?,
    };
    let is_cgroup2 = nix::sys::statfs::statfs(&root)
        .map(|stats| stats.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .map_err(|errno| CaptureError::OpenCgroupRoot {
            path: root.clone(),
            source: errno.into(),
        })?;
    if !is_cgroup2 {
        return Err(CaptureError::NotCgroup2 { path: root });
    }
    Ok(root)
}

/// Loads the object with the configuration, the ring size and one scratch
/// buffer per possible CPU.
fn load_object(config: &CaptureConfig, ring_bytes: u32) -> Result<Ebpf, CaptureError> {
    if OBJECT.is_empty() {
        return Err(CaptureError::ProgramsNotBuilt);
    }
    let cpus = aya::util::nr_cpus().map_err(|(_, error)| {
        CaptureError::Object(EbpfError::FileError {
            path: PathBuf::from("/sys/devices/system/cpu/possible"),
            error,
        })
    })?;
    EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, config, true)
        .map_max_entries(EVENTS_MAP, ring_bytes)
        .map_max_entries(SCRATCH_MAP, cpus as u32)
        .load(OBJECT)
        .map_err(|error| match permission_error(&error) {
            Some(source) => CaptureError::PermissionDenied {
                operation: "creating the eBPF maps".to_owned(),
                source,
            },
            None => CaptureError::Object(error),
        })
}

/// Returns the `io::Error` of a load error caused by missing privileges.
fn permission_error(error: &EbpfError) -> Option<io::Error> {
    let io_error = match error {
        EbpfError::MapError(MapError::CreateError { io_error, .. }) => io_error,
        EbpfError::MapError(MapError::SyscallError(syscall)) => &syscall.io_error,
        _ => return None,
    };
    is_permission_denied(io_error)
        .then(|| io::Error::from_raw_os_error(io_error.raw_os_error().unwrap_or(libc::EPERM)))
}

fn is_permission_denied(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// Loads the TC programs and attaches them: the ingress program on every
/// interface, the egress program on every interface but `lo`, whose packets
/// all pass its ingress.
fn attach_tc(ebpf: &mut Ebpf, interfaces: &[String]) -> Result<Vec<String>, CaptureError> {
    for name in [TC_INGRESS_PROGRAM, TC_EGRESS_PROGRAM] {
        let program: &mut SchedClassifier = program(ebpf, name)?;
        load(program.load(), name)?;
        log_loaded(name, program.info());
    }
    let mut attachments = Vec::new();
    for interface in interfaces.iter().collect::<BTreeSet<_>>() {
        let directions: &[(TcAttachType, &str, &str)] = match interface.as_str() {
            "lo" => &[(TcAttachType::Ingress, "ingress", TC_INGRESS_PROGRAM)],
            _ => &[
                (TcAttachType::Ingress, "ingress", TC_INGRESS_PROGRAM),
                (TcAttachType::Egress, "egress", TC_EGRESS_PROGRAM),
            ],
        };
        for &(attach_type, direction, name) in directions {
            let description = format!("tc {direction} on {interface}");
            let program: &mut SchedClassifier = program(ebpf, name)?;
            program
                .attach(interface, attach_type)
                .map_err(|source| attach_error(&description, source))?;
            attachments.push(description);
        }
    }
    Ok(attachments)
}

/// Loads the cgroup programs and attaches them to the cgroup v2 root.
fn attach_cgroup_programs(ebpf: &mut Ebpf, root: &Path) -> Result<Vec<String>, CaptureError> {
    let cgroup = File::open(root).map_err(|source| match is_permission_denied(&source) {
        true => CaptureError::PermissionDenied {
            operation: format!("opening {}", root.display()),
            source,
        },
        false => CaptureError::OpenCgroupRoot {
            path: root.to_path_buf(),
            source,
        },
    })?;
    let mut attachments = Vec::new();

    // The connect programs go first, so no SYN passes the origin program
    // before the connect that sent it could be recorded.
    for name in [CONNECT4_PROGRAM, CONNECT6_PROGRAM] {
        let program: &mut CgroupSockAddr = program(ebpf, name)?;
        load(program.load(), name)?;
        log_loaded(name, program.info());
        let description = format!("cgroup {name} on {}", root.display());
        // Links on a cgroup are always multi-attach; the kernel rejects any
        // flag, which `Single` leaves unset.
        program
            .attach(&cgroup, CgroupAttachMode::Single)
            .map_err(|source| attach_error(&description, source))?;
        attachments.push(description);
    }

    let program: &mut CgroupSkb = program(ebpf, FLOW_ORIGIN_PROGRAM)?;
    load(program.load(), FLOW_ORIGIN_PROGRAM)?;
    log_loaded(FLOW_ORIGIN_PROGRAM, program.info());
    let description = format!("cgroup_skb egress on {}", root.display());
    program
        .attach(
            &cgroup,
            CgroupSkbAttachType::Egress,
            CgroupAttachMode::Single,
        )
        .map_err(|source| attach_error(&description, source))?;
    attachments.push(description);
    Ok(attachments)
}

/// Looks a program up by name and checks its type.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, CaptureError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(CaptureError::Missing {
        kind: "program",
        name,
    })?;
    program.try_into().map_err(|source| CaptureError::Program {
        operation: format!("use program {name}"),
        source,
    })
}

/// Tells whether a program load failed for missing privileges. The kernel
/// returns `EACCES` both for a caller without them and for a program that
/// the verifier rejects; only the verifier writes a log.
fn is_privilege_error(io_error: &io::Error, verifier_log: &str) -> bool {
    is_permission_denied(io_error) && verifier_log.trim().is_empty()
}

/// Turns a program load result into a typed error with the verifier log tail.
fn load(result: Result<(), ProgramError>, name: &'static str) -> Result<(), CaptureError> {
    match result {
        Ok(()) => Ok(()),
        Err(ProgramError::LoadError { io_error, verifier_log }) if is_privilege_error(&io_error, &verifier_log.to_string()) => {
            Err(CaptureError::PermissionDenied {
                operation: format!("loading program {name}"),
                source: io_error,
            })
        }
        Err(ProgramError::LoadError {
            io_error,
            verifier_log,
        }) => Err(CaptureError::Verifier {
            program: name,
            source: io_error,
            verifier_log: log_tail(&verifier_log.to_string()),
        }),
        Err(source) => Err(CaptureError::Program {
            operation: format!("load program {name}"),
            source,
        }),
    }
}

/// Logs the verifier's work on a loaded program, to track its complexity.
fn log_loaded(name: &str, info: Result<ProgramInfo, ProgramError>) {
    match info {
        Ok(info) => tracing::debug!(
            program = name,
            verified_instructions = ?info.verified_instruction_count(),
            translated_bytes = ?info.size_translated(),
            "Loaded eBPF program"
        ),
        Err(error) => {
            tracing::debug!(program = name, %error, "Loaded eBPF program; its info is unavailable")
        }
    }
}

fn attach_error(description: &str, source: ProgramError) -> CaptureError {
    let io_error = match &source {
        ProgramError::SyscallError(syscall) => Some(&syscall.io_error),
        _ => None,
    };
    match io_error.filter(|error| is_permission_denied(error)) {
        Some(error) => CaptureError::PermissionDenied {
            operation: format!("attaching {description}"),
            source: io::Error::from_raw_os_error(error.raw_os_error().unwrap_or(libc::EPERM)),
        },
        None => CaptureError::Program {
            operation: format!("attach {description}"),
            source,
        },
    }
}

fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(VERIFIER_LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel returns `EACCES` for a program the verifier rejects as
    /// well as for a caller without privileges. Only the first has a log,
    /// and telling its administrator to run as root would mislead.
    #[test]
    fn verifier_rejection_is_not_a_privilege_error() {
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        assert!(!is_privilege_error(&eacces, "255: (7b) *(u64 *)(r10 -104) = r3\nR3 !read_ok\n"));
        assert!(is_privilege_error(&eacces, ""));
        assert!(is_privilege_error(&io::Error::from_raw_os_error(libc::EPERM), "\n"));
        assert!(!is_privilege_error(&io::Error::from_raw_os_error(libc::EINVAL), ""));
    }

    #[test]
    fn ports_fill_config_slots() {
        let config = capture_config(&[8069, 8072, 8069], None).unwrap();
        assert_eq!(config.ports[..3], [8069, 8072, 0]);
        assert!(config.matches_port(8072));
        assert!(!config.matches_port(0));
        assert!(!config.matches_port(80));
    }

    #[test]
    fn port_list_errors() {
        assert!(matches!(capture_config(&[], None), Err(CaptureError::NoPorts)));
        assert!(matches!(
            capture_config(&[0, 8069], None),
            Err(CaptureError::InvalidPort)
        ));
        let nine: Vec<u16> = (8000..8009).collect();
        assert!(matches!(
            capture_config(&nine, None),
            Err(CaptureError::TooManyPorts { count: 9 })
        ));
    }

    #[test]
    fn guard_sets_policy_and_namespace() {
        let guard = ConnectGuard {
            netns_cookie: 4097,
            allowed_cgroups: BTreeSet::from([1, 2]),
        };
        let config = capture_config(&[8069], Some(&guard)).unwrap();
        assert_eq!(config.connect_policy, CONNECT_POLICY_GUARD);
        assert_eq!(config.guard_netns_cookie, 4097);
        let open = capture_config(&[8069], None).unwrap();
        assert_eq!(open.connect_policy, CONNECT_POLICY_ALLOW_ALL);
        assert_eq!(open.guard_netns_cookie, 0);
    }

    #[test]
    fn ring_size_rounded_up() {
        let page = page_size();
        assert_eq!(ring_buffer_size(1).unwrap(), page);
        assert_eq!(ring_buffer_size(64 << 20).unwrap(), 64 << 20);
        assert_eq!(ring_buffer_size((64 << 20) + 1).unwrap(), 128 << 20);
        assert!(matches!(
            ring_buffer_size(u32::MAX),
            Err(CaptureError::RingBufferTooLarge { .. })
        ));
    }

    #[test]
    fn missing_interface_lists_alternatives() {
        let error = check_interface("odoogate-none0").unwrap_err();
        let CaptureError::InterfaceNotFound {
            interface,
            available,
        } = &error
        else {
            panic!("unexpected {error}")
        };
        assert_eq!(interface, "odoogate-none0");
        assert!(
            available.split(", ").any(|name| name == "lo"),
            "lo missing from {available}"
        );
    }

    #[test]
    fn verifier_log_keeps_last_lines() {
        let log: String = (0..100).map(|line| format!("line {line}\n")).collect();
        let tail = log_tail(&log);
        assert_eq!(tail.lines().count(), VERIFIER_LOG_TAIL_LINES);
        assert!(tail.ends_with("line 99"));
    }
}

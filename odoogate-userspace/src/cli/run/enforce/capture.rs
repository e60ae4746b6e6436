//! The capture's cgroup programs in enforce mode: flow origins for the
//! proxy (the cgroup, pid and command of local clients) and, with
//! `[guard]`, the cgroup guard, whose refusals become audit records.
//!
//! No TC program is attached: the proxy reads the traffic itself, so only
//! the connect and cgroup_skb programs run, and the ring buffer carries
//! origin and refusal records only.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::audit::AuditSink;
use crate::capture::cgroup::{self, CgroupResolver};
use crate::capture::ebpf::{Capture, CaptureOptions};
use crate::capture::{CaptureEvent, FlowOrigin};
use crate::config::Config;
use crate::proxy::{LocalOrigin, Origins, Recorder};
use crate::steer::guard::{self, AllowedCgroups, GuardAllowList, GuardRefresher, GuardStatus, Resolution, SharedResolution};

/// Ring buffer size: origin and refusal records are about 100 bytes each,
/// so 1 MiB holds thousands of connects that the reader has not drained.
const RING_BUFFER_BYTES: u32 = 1 << 20;

/// Events queued between the ring buffer reader and the origin thread.
const EVENT_CHANNEL_CAPACITY: usize = 4096;

/// How often held-back refusal records are summarised.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How often the origin thread lists the host's addresses and container
/// networks again, as the guard rereads the cgroups.
const NETWORKS_INTERVAL: Duration = guard::REFRESH_INTERVAL;

/// The running cgroup programs, the thread that files their records and,
/// with the guard, the thread that keeps its allow list current. Dropping
/// it detaches the programs and stops both threads.
pub struct LocalCapture {
    // Field order matters: the refresher stops before the capture (which
    // owns the programs) is dropped, and the capture before the origin
    // thread is joined, since dropping the capture ends the thread's input.
    refresher: Option<GuardRefresher>,
    capture: Option<Arc<Capture>>,
    thread: Option<JoinHandle<()>>,
    /// The guard's globs and the cgroups it allows, for `odoogate status`,
    /// or `None` when the guard is off.
    guard: Option<(Vec<String>, SharedResolution)>,
}

impl LocalCapture {
    /// Returns the attached eBPF programs, for `odoogate status`.
    pub fn attachments(&self) -> Vec<String> {
        self.capture.as_deref().map(Capture::attachments).unwrap_or_default()
    }

    /// Returns a weak reference to the capture, for the metrics to read its
    /// counters without keeping the programs attached after a drop.
    pub fn capture(&self) -> Weak<Capture> {
        self.capture.as_ref().map(Arc::downgrade).unwrap_or_default()
    }

    /// Returns a function that reports the guard's state for `odoogate
    /// status`, or `None` when the guard is off. Its refusal count is 0 once
    /// the capture has been dropped.
    pub fn guard_status(&self) -> Option<impl Fn() -> GuardStatus + Send + Sync + 'static> {
        let (globs, published) = self.guard.clone()?;
        let capture = self.capture();
        Some(move || {
            let resolution = published.lock().unwrap_or_else(PoisonError::into_inner).clone();
            GuardStatus {
                allow_cgroups: globs.clone(),
                allowed: resolution.paths(),
                own_cgroup: resolution.own_cgroup,
                refusals: capture.upgrade().map_or(0, |capture| capture.stats().guard_refusals),
            }
        })
    }

    /// Attaches the cgroup programs (with the guard when `config.guard` is
    /// set) and starts filing origins into `origins` and refusals into
    /// `sink`.
    pub fn start(config: &Config, origins: Origins, sink: Box<dyn AuditSink>) -> anyhow::Result<Self> {
        let root = cgroup::find_cgroup2_mount().context("enforce mode needs cgroup v2")?;
        let allowed = config
            .guard
            .as_ref()
            .map(|guard| AllowedCgroups::new(root.clone(), guard.allow_cgroups.clone(), config.odoo.ports.clone()));
        let resolution = allowed.as_ref().map(AllowedCgroups::resolve);
        let connect_guard = match &resolution {
            Some(resolution) => Some(AllowedCgroups::connect_guard(resolution).context("failed to prepare the cgroup guard")?),
            None => None,
        };
        let options = CaptureOptions {
            interfaces: Vec::new(),
            ports: config.odoo.ports.clone(),
            ring_buffer_bytes: RING_BUFFER_BYTES,
            cgroup_root: Some(root.clone()),
            cgroup_programs: true,
            connect_guard,
            ignore_own_connects: true,
        };

        let (sender, receiver) = mpsc::sync_channel(EVENT_CHANNEL_CAPACITY);
        let mut capture = Capture::start(&options, sender).context("failed to attach the cgroup programs")?;
        let resolver = match CgroupResolver::new(root) {
            Ok(resolver) => Some(resolver),
            Err(error) => {
                tracing::warn!(%error, "cgroup paths cannot be resolved: calls will carry no cgroup");
                None
            }
        };
        let recorder = Recorder::new(sink, config.audit.error_records_per_minute);
        let thread = std::thread::Builder::new()
            .name("odoogate-origins".into())
            .spawn(move || file_events(&receiver, resolver, &origins, &recorder))
            .context("failed to start the origin thread")?;

        let mut guard = None;
        let refresher = match (allowed, resolution, capture.take_guard_allow_map()) {
            (Some(allowed), Some(resolution), Some(map)) => {
                log_guard_start(&allowed, &resolution);
                let list = GuardAllowList::new(map, resolution.ids());
                let published = Arc::new(Mutex::new(resolution));
                guard = Some((allowed.globs(), published.clone()));
                let refresher = GuardRefresher::spawn(list, allowed, guard::REFRESH_INTERVAL, published);
                Some(refresher.context("failed to start the guard")?)
            }
            _ => None,
        };
        tracing::info!(attachments = ?capture.attachments(), "Reporting the origins of local connections");
        Ok(Self { refresher, capture: Some(Arc::new(capture)), thread: Some(thread), guard })
    }
}

/// Logs the cgroups the guard allows at start, and a warning when
/// odoogate's own cgroup, which the guard always allows, is one that
/// other processes share.
fn log_guard_start(allowed: &AllowedCgroups, resolution: &Resolution) {
    let own_cgroup = resolution.own_cgroup.as_deref();
    tracing::info!(
        allow_cgroups = ?allowed.globs(),
        allowed = ?resolution.paths(),
        own_cgroup = own_cgroup.unwrap_or("unknown"),
        "The cgroup guard is on"
    );
    if let Some(own_cgroup) = own_cgroup.filter(|path| guard::own_cgroup_is_shared(path)) {
        tracing::warn!(
            cgroup = own_cgroup,
            "odoogate runs in a cgroup that other processes share (the root cgroup, or one under user.slice such as an SSH session's scope), \
             and the guard always allows odoogate's own cgroup: every process in that cgroup may connect to Odoo directly, around odoogate. \
             Run odoogate as its systemd service (systemctl start odoogate), which gives it a cgroup of its own"
        );
    }
}

impl Drop for LocalCapture {
    fn drop(&mut self) {
        drop(self.refresher.take());
        drop(self.capture.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("The origin thread panicked");
        }
    }
}

/// Files each event until the capture stops: origins into the table,
/// refusals as `guard_refusal` records. Segments do not arrive, as no TC
/// program is attached.
fn file_events(events: &Receiver<CaptureEvent>, mut resolver: Option<CgroupResolver>, origins: &Origins, recorder: &Recorder) {
    let mut cgroup_path = |id: u64| resolver.as_mut().and_then(|resolver| resolver.path(id));
    let mut networks_found = Instant::now();
    loop {
        if networks_found.elapsed() >= NETWORKS_INTERVAL {
            origins.refresh_local_networks();
            networks_found = Instant::now();
        }
        match events.recv_timeout(FLUSH_INTERVAL) {
            Ok(CaptureEvent::Origin(origin)) => {
                let FlowOrigin { client, server, cgroup_id, pid, comm, .. } = origin;
                origins.insert(client, server, LocalOrigin { cgroup: cgroup_path(cgroup_id), pid, comm });
            }
            Ok(CaptureEvent::GuardRefusal(refusal)) => {
                let cgroup = cgroup_path(refusal.cgroup_id);
                recorder.write(guard::refusal_record(&refusal, cgroup));
            }
            Ok(CaptureEvent::Segment(_)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        recorder.flush(Instant::now());
    }
    recorder.flush(Instant::now() + Duration::from_secs(3600));
}

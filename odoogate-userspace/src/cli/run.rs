//! `odoogate run`: the observe-mode daemon, or the enforce-mode proxy
//! (in `enforce`) when `policy.mode = "enforce"`.
//!
//! Threads: the capture reader (inside [`Capture`]) drains the ring buffer
//! into a bounded channel, and the pipeline thread consumes it. The main
//! thread waits for SIGINT/SIGTERM/SIGHUP with `sigwait`, so no signal
//! handler interrupts the other threads' work. SIGHUP and `odoogate reload`
//! (on the control socket's thread) reload the configuration into a
//! [`ConfigHandle`], which the pipeline thread reads between events.

mod control;
mod enforce;
mod fd_limit;

use crate::audit::AuditSink;
use crate::audit::journald::JournaldSink;
use crate::audit::jsonl::JsonLinesSink;
use crate::capture::cgroup::CgroupResolver;
use crate::capture::ebpf::{Capture, CaptureOptions};
use crate::capture::CaptureEvent;
use crate::config::{self, AuditOutput, Config, Mode};
use crate::metrics::{MeteredSink, Metrics, MetricsServer};
use crate::control::ConfigHandle;
use crate::notify::{self, Heartbeat, Notifier};
use crate::pipeline::Pipeline;
use anyhow::Context as _;
use nix::sys::signal::{SigSet, Signal};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// Capacity of the channel between the ring buffer reader and the pipeline,
/// in events. When it is full the reader stops draining and the kernel ring
/// buffer absorbs the burst (and counts what it cannot).
// NOTE: the bound is in events, not bytes. A segment carries up to 256 KiB
// (`MAX_PAYLOAD_BYTES`), so a pipeline that falls behind could queue far
// more here than `capture.ring_buffer_bytes`.
const EVENT_CHANNEL_CAPACITY: usize = 16_384;

/// How often the pipeline expires idle flows and reports capture losses.
const TICK_INTERVAL: Duration = Duration::from_secs(1);

/// How often the pipeline reads this host's addresses again, for the flow
/// table's check of segments that arrive with a local source address.
const HOST_ADDRESSES_INTERVAL: Duration = Duration::from_secs(10);

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    // Absolute, so that the log and `odoogate status` name the file the
    // same way whatever directory the daemon was started in.
    let path = &std::path::absolute(path)
        .with_context(|| format!("failed to make the configuration path {} absolute", path.display()))?;
    let config = Arc::new(config::load(path).map_err(|error| anyhow::anyhow!("{error}"))?);
    crate::preflight::run(&config)?;
    fd_limit::raise(&config);
    let metrics = start_metrics(&config)?;
    let handle = Arc::new(ConfigHandle::new(path, config.clone(), SystemTime::now()));
    if config.policy.mode == Mode::Enforce {
        let sink = metered(open_sink(&config)?, metrics.as_ref());
        return enforce::run(handle, sink, metrics);
    }
    let notifier = Arc::new(Notifier::from_env().context("invalid systemd notify environment")?);

    let signals = block_signals()?;
    let sink = metered(open_sink(&config)?, metrics.as_ref());
    let options = CaptureOptions {
        interfaces: config.odoo.interfaces.clone(),
        ports: config.odoo.ports.clone(),
        ring_buffer_bytes: config.capture.ring_buffer_bytes,
        cgroup_root: None,
        cgroup_programs: true,
        connect_guard: None,
        ignore_own_connects: false,
    };
    let cgroups = match CgroupResolver::discover() {
        Ok(resolver) => Some(resolver),
        Err(error) => {
            tracing::warn!(%error, "cgroup v2 is not available: calls will carry no cgroup");
            None
        }
    };

    let (sender, receiver) = mpsc::sync_channel(EVENT_CHANNEL_CAPACITY);
    let capture = Arc::new(Capture::start(&options, sender).context("failed to start the capture")?);
    tracing::info!(
        ports = ?config.odoo.ports,
        interfaces = ?config.odoo.interfaces,
        attachments = ?capture.attachments(),
        mode = "observe",
        "Observing Odoo traffic"
    );
    if let Some(metrics) = &metrics {
        metrics.set_attached(&capture.attachments());
        // A weak reference, so the programs still detach when `run` drops
        // the capture at shutdown.
        let capture = Arc::downgrade(&capture);
        metrics.refresh_with(move |metrics| {
            if let Some(capture) = capture.upgrade() {
                metrics.set_capture_stats(&capture.stats());
            }
        });
    }
    notify::log_failure(notifier.ready(&format!("observing ports {:?}", config.odoo.ports)));

    let pipeline = Pipeline::new(config.clone(), cgroups, sink);
    let _control = control::start_server(status_sources(&handle, &pipeline, &capture), |_| Ok(()));
    let stopping = Arc::new(AtomicBool::new(false));
    let pipeline_thread = {
        let handle = handle.clone();
        let capture = capture.clone();
        let stopping = stopping.clone();
        let heartbeat = Heartbeat::new(notifier.clone());
        std::thread::Builder::new()
            .name("odoogate-pipeline".into())
            .spawn(move || run_pipeline(pipeline, &handle, receiver, &capture, &stopping, heartbeat))
            .context("failed to start the pipeline thread")?
    };

    crate::memory::release_startup_memory();
    let signal = wait_for_stop(&signals, &handle)?;
    tracing::info!(signal = %signal, "Stopping");
    notify::log_failure(notifier.stopping());
    stopping.store(true, Ordering::SeqCst);
    let stats = pipeline_thread.join().map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
    drop(capture);
    tracing::info!(
        calls = stats.calls,
        decode_errors = stats.decode_errors,
        capture_gaps = stats.capture_gaps,
        "Stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Blocks the termination signals and SIGHUP in every thread (threads
/// inherit the mask), so the main thread can take them with `sigwait`.
fn block_signals() -> anyhow::Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block().context("failed to block SIGINT, SIGTERM and SIGHUP")?;
    Ok(set)
}

/// Waits for SIGINT or SIGTERM and returns it, reloading the configuration
/// on each SIGHUP meanwhile. The pipeline thread picks the new
/// configuration up from `handle`.
fn wait_for_stop(signals: &SigSet, handle: &ConfigHandle) -> anyhow::Result<Signal> {
    loop {
        let signal = signals.wait().context("sigwait failed")?;
        if signal != Signal::SIGHUP {
            return Ok(signal);
        }
        tracing::info!(config = %handle.path().display(), "Reloading the configuration on SIGHUP");
        control::reload(handle, &|_| Ok(()));
    }
}

fn status_sources(handle: &Arc<ConfigHandle>, pipeline: &Pipeline, capture: &Arc<Capture>) -> control::StatusSources {
    let stats = {
        let capture = capture.clone();
        Box::new(move || capture.stats()) as control::CaptureStatsSource
    };
    control::StatusSources {
        handle: handle.clone(),
        started: SystemTime::now(),
        capture: capture.attachments(),
        proxy: None,
        steering_pin_dir: None,
        // Observe mode ignores `[guard]`.
        guard: None,
        counts: pipeline.counts(),
        policy: pipeline.policy(),
        capture_stats: Some(stats),
        reassembly: Some(pipeline.reassembly()),
        overload: {
            let flows_evicted = pipeline.flows_evicted();
            Box::new(move || serde_json::json!({ "flows_evicted": flows_evicted.load(Ordering::Relaxed) }))
        },
        // The pipeline thread owns the token store: it checks the file
        // before its next event.
        tokens_changed: {
            let flag = pipeline.tokens_changed();
            Box::new(move || flag.store(true, Ordering::SeqCst))
        },
    }
}

/// Serves the metrics on `metrics.listen` when it is set.
fn start_metrics(config: &Config) -> anyhow::Result<Option<Arc<Metrics>>> {
    let Some(address) = config.metrics.listen else {
        return Ok(None);
    };
    let metrics = Arc::new(Metrics::new());
    MetricsServer::start(address, metrics.clone())?;
    Ok(Some(metrics))
}

/// Wraps `sink` so that `metrics`, when on, count every record written.
fn metered(sink: Box<dyn AuditSink>, metrics: Option<&Arc<Metrics>>) -> Box<dyn AuditSink> {
    match metrics {
        Some(metrics) => Box::new(MeteredSink::new(sink, metrics.clone())),
        None => sink,
    }
}

fn open_sink(config: &Config) -> anyhow::Result<Box<dyn AuditSink>> {
    let output = config.audit.output;
    let use_journald = match output {
        AuditOutput::Journald => true,
        AuditOutput::Auto => JournaldSink::available(),
        AuditOutput::Stderr | AuditOutput::File => false,
    };
    if use_journald {
        tracing::info!("Writing audit records to journald");
        return Ok(Box::new(JournaldSink::open().context("failed to open the journald socket")?));
    }
    if output == AuditOutput::File {
        let path = &config.audit.file;
        let sink = JsonLinesSink::append_to(path)
            .with_context(|| format!("failed to open the audit file {}", path.display()))?;
        tracing::info!(path = %path.display(), "Writing audit records as JSON lines");
        return Ok(Box::new(sink));
    }
    tracing::info!("No journald found: writing audit records to stderr as JSON lines");
    Ok(Box::new(JsonLinesSink::stderr()))
}

fn run_pipeline(
    mut pipeline: Pipeline,
    handle: &ConfigHandle,
    events: mpsc::Receiver<CaptureEvent>,
    capture: &Capture,
    stopping: &AtomicBool,
    mut heartbeat: Heartbeat,
) -> crate::pipeline::PipelineStats {
    let mut last_tick = std::time::Instant::now();
    let mut host_addresses_read = std::time::Instant::now();
    let mut host_addresses_failed = false;
    refresh_host_addresses(&mut pipeline, &mut host_addresses_failed);
    loop {
        match events.recv_timeout(TICK_INTERVAL) {
            Ok(event) => {
                // A reload replaces the configuration whole. It is taken up
                // after the wait, so that a call arriving just after a
                // reload (which may have come during the wait) is decided
                // under the new configuration.
                pipeline.set_config(handle.current());
                pipeline.load_tokens_on_notice();
                pipeline.handle(event);
                // Drain what is queued before looking at the clock again.
                while let Ok(event) = events.try_recv() {
                    pipeline.handle(event);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => pipeline.set_config(handle.current()),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= TICK_INTERVAL {
            pipeline.tick(monotonic_now_ns(), Some(capture.stats()));
            last_tick = std::time::Instant::now();
        }
        if host_addresses_read.elapsed() >= HOST_ADDRESSES_INTERVAL {
            refresh_host_addresses(&mut pipeline, &mut host_addresses_failed);
            host_addresses_read = std::time::Instant::now();
        }
        crate::memory::release_freed_memory();
        // The loop wakes up at least every TICK_INTERVAL, so the watchdog
        // sees it stall only when the pipeline itself does.
        heartbeat.beat();
        if stopping.load(Ordering::SeqCst) {
            while let Ok(event) = events.try_recv() {
                pipeline.handle(event);
            }
            break;
        }
    }
    pipeline.tick(monotonic_now_ns(), Some(capture.stats()));
    pipeline.finish();
    pipeline.stats()
}

/// Gives `pipeline` the addresses of this network namespace. A failed
/// listing keeps the last addresses, and is logged once until a listing
/// succeeds again (`failed`).
fn refresh_host_addresses(pipeline: &mut Pipeline, failed: &mut bool) {
    match crate::capture::host_addresses() {
        Ok(addresses) => {
            pipeline.set_local_addresses(addresses);
            *failed = false;
        }
        Err(error) if !*failed => {
            *failed = true;
            tracing::warn!(%error, "Failed to list this host's addresses; segments that forge a local source are checked against the last list");
        }
        Err(_) => {}
    }
}

/// Returns CLOCK_MONOTONIC in nanoseconds, the clock `bpf_ktime_get_ns` reads.
fn monotonic_now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(now) => (now.tv_sec() as u64).saturating_mul(1_000_000_000) + now.tv_nsec() as u64,
        Err(_) => 0,
    }
}

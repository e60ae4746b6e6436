//! `odoogate run` with `policy.mode = "enforce"`: the inline proxy.
//!
//! With `proxy.listen`, odoogate listens there and forwards to
//! `proxy.upstream` (listen mode, no eBPF unless `[guard]` is set). Without
//! it, odoogate binds its own listener on an ephemeral port and the
//! `sk_lookup` steering hands it every new connection to Odoo's ports,
//! while Odoo keeps its address; the capture's cgroup programs then report
//! the cgroup and process of each local client (see `capture`).
//!
//! `[guard]` attaches the cgroup guard in both modes.

mod capture;

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::audit::AuditSink;
use crate::audit::background::BackgroundSink;
use crate::config::Config;
use crate::control::ConfigHandle;
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
use crate::proxy::{
    CredentialsReloader, DirectConnector, LivePolicy, Origins, Proxy, ProxyStats, Shards, SteeredConnector, Tokens, UpstreamConnector,
};
use crate::steer::{Steering, SteeringOptions};
use crate::token::{ServiceCredentials, TokenStore};
use super::control::{GuardSource, StatusSources};
use capture::LocalCapture;

/// Threads that serve client connections, each with a runtime of its own
/// (see `proxy::Shards`): proxying is I/O bound, and the host's cores
/// belong to Odoo first.
const PROXY_THREADS: usize = 2;

/// Runs the proxy until SIGINT or SIGTERM. `metrics`, when on, report the
/// attached programs and their counters.
pub fn run(handle: Arc<ConfigHandle>, sink: Box<dyn AuditSink>, metrics: Option<Arc<Metrics>>) -> anyhow::Result<ExitCode> {
    let tokens = load_tokens(&handle.current())?;
    let shards = Arc::new(Shards::start(PROXY_THREADS, crate::memory::release_freed_memory).context("failed to start the proxy threads")?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .on_thread_park(crate::memory::release_freed_memory)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let stats = runtime.block_on(serve(handle, sink, tokens, metrics.as_deref(), shards))?;
    tracing::info!(calls = stats.calls, denied = stats.denied, decode_errors = stats.decode_errors, "Stopped");
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    handle: Arc<ConfigHandle>,
    sink: Box<dyn AuditSink>,
    tokens: Option<Tokens>,
    metrics: Option<&Metrics>,
    shards: Arc<Shards>,
) -> anyhow::Result<ProxyStats> {
    // Watched before anything is announced: a SIGTERM sent once the
    // proxy's start is logged then stops it cleanly, instead of ending
    // the process by the signal's default action.
    let signals = StopSignals::watch()?;
    let config = handle.current();
    let upstream = config.proxy.upstream;
    // The proxy and the origin thread (guard refusals) write through one
    // writer thread, off the calls' path.
    let sink = BackgroundSink::start(sink).context("failed to start the audit writer thread")?;
    match config.proxy.listen {
        Some(address) => {
            // NOTE: in listen mode clients connect to proxy.listen, which
            // the cgroup programs do not watch, so proxied calls carry no
            // cgroup and `match.cgroup` never holds.
            let guard = match config.guard.is_some() {
                true => Some(LocalCapture::start(&config, Origins::for_this_host(), Box::new(sink.clone()))?),
                false => None,
            };
            if let Some(metrics) = metrics {
                report_programs(metrics, guard.as_ref(), None);
            }
            let listener = TcpListener::bind(address).await.map_err(|error| listen_error(address, &error))?;
            tracing::info!(listen = %address, %upstream, mode = "enforce", "Proxying Odoo traffic in listen mode");
            tokio::spawn(warn_if_unreachable(upstream));
            warn_if_exposed(upstream, address);
            let daemon = Daemon {
                handle,
                proxy: format!("listen {address}"),
                steering_pin_dir: None,
                capture: guard.as_ref().map(LocalCapture::attachments).unwrap_or_default(),
                guard: guard.as_ref().and_then(guard_source),
            };
            let parts = ProxyParts { config, sink: Box::new(sink), tokens, shards: shards.clone() };
            serve_with(parts.build(DirectConnector::new(upstream), None), listener, daemon, shards, signals).await
        }
        None => {
            let origins = Origins::for_this_host();
            let local_capture = LocalCapture::start(&config, origins.clone(), Box::new(sink.clone()))?;
            let listener = bind_steering_listener()?;
            let pin_dir = config.steering.pin_dir.clone();
            let options = SteeringOptions {
                pin_dir: pin_dir.clone(),
                ..SteeringOptions::new(config.odoo.ports.clone())
            };
            let steering = Arc::new(Steering::install(&options, &listener).context("failed to install the steering")?);
            tokio::spawn(watch_steering(Arc::downgrade(&steering)));
            let steering_description = format!("sk_lookup on ports {:?}", config.odoo.ports);
            if let Some(metrics) = metrics {
                report_programs(metrics, Some(&local_capture), Some((&steering, steering_description.clone())));
            }
            listener.set_nonblocking(true).context("failed to make the steering listener non-blocking")?;
            let listener = TcpListener::from_std(listener).context("failed to register the steering listener")?;
            tracing::info!(
                ports = ?config.odoo.ports, %upstream, pin_dir = %pin_dir.display(), mode = "enforce",
                "Proxying Odoo traffic steered by sk_lookup"
            );
            let daemon = Daemon {
                handle,
                proxy: steering_description,
                steering_pin_dir: Some(pin_dir),
                capture: local_capture.attachments(),
                guard: guard_source(&local_capture),
            };
            let connector = SteeredConnector::new(steering, upstream);
            let parts = ProxyParts { config, sink: Box::new(sink), tokens, shards: shards.clone() };
            serve_with(parts.build(connector, Some(origins)), listener, daemon, shards, signals).await
        }
    }
}

/// The parts of the proxy that both modes share: all but the connector
/// and the origins.
struct ProxyParts {
    config: Arc<Config>,
    sink: Box<dyn AuditSink>,
    tokens: Option<Tokens>,
    shards: Arc<Shards>,
}

impl ProxyParts {
    /// Builds the proxy that connects to Odoo through `connector`.
    /// `origins` gives the cgroups and processes of local clients
    /// (steering mode only).
    fn build<C: UpstreamConnector>(self, connector: C, origins: Option<Origins>) -> Proxy<C> {
        let proxy = match self.tokens {
            Some(tokens) => Proxy::with_tokens(self.config, connector, self.sink, tokens),
            None => Proxy::new(self.config, connector, self.sink),
        };
        let proxy = proxy.with_shards(self.shards);
        match origins {
            Some(origins) => proxy.with_origins(origins),
            None => proxy,
        }
    }
}

/// The signals that stop or reload the proxy. Watching one replaces its
/// default action, which for all three ends the process.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn watch() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("failed to watch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("failed to watch SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("failed to watch SIGHUP")?,
        })
    }
}

/// Serves `proxy` on `listener` until SIGINT or SIGTERM, with the control
/// socket, SIGHUP reloads and the systemd notifications. The watchdog
/// checks that each of `shards`, the proxy's threads, still runs tasks.
async fn serve_with<C: UpstreamConnector>(
    proxy: Proxy<C>,
    listener: TcpListener,
    daemon: Daemon,
    shards: Arc<Shards>,
    signals: StopSignals,
) -> anyhow::Result<ProxyStats> {
    // Start-up ends here in both modes, on the main thread, which runs
    // this future.
    crate::memory::release_startup_memory();
    let proxy = Arc::new(proxy);
    let live = proxy.live();
    let credentials = proxy.credentials_reloader();
    let apply = move |config: Arc<Config>| reload_into(&live, credentials.as_ref(), config);
    let _control = super::control::start_server(daemon.status_sources(&proxy), apply.clone());
    let StopSignals { mut interrupt, mut terminate, mut hangup } = signals;
    let notifier = Arc::new(Notifier::from_env().context("invalid systemd notify environment")?);
    let watchdog = spawn_watchdog(&notifier, shards);
    let shutdown = async {
        loop {
            tokio::select! {
                _ = interrupt.recv() => break tracing::info!(signal = %nix::sys::signal::Signal::SIGINT, "Stopping"),
                _ = terminate.recv() => break tracing::info!(signal = %nix::sys::signal::Signal::SIGTERM, "Stopping"),
                _ = hangup.recv() => {
                    tracing::info!(config = %daemon.handle.path().display(), "Reloading the configuration on SIGHUP");
                    // Reading and checking the file takes well under a
                    // millisecond, so it runs on the runtime's thread.
                    super::control::reload(&daemon.handle, &apply);
                }
            }
        }
        notify::log_failure(notifier.stopping());
    };
    notify::log_failure(notifier.ready("proxying Odoo traffic"));
    let served = proxy.serve(listener, shutdown).await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
        // Waits until the task has dropped its handle on the proxy
        // threads, so they stop when the proxy drops.
        let _ = watchdog.await;
    }
    served.context("the proxy failed")?;
    Ok(proxy.stats())
}

/// Marks the attached programs in `metrics`: the cgroup programs of
/// `capture` (origins, and the guard when it is on) and the `steering`
/// program with its description. Each scrape then reads the capture's ring
/// buffer and connect counters and the steering counters. Weak references
/// let the programs detach when their owners drop at shutdown.
fn report_programs(metrics: &Metrics, capture: Option<&LocalCapture>, steering: Option<(&Arc<Steering>, String)>) {
    let mut attachments = capture.map(LocalCapture::attachments).unwrap_or_default();
    if let Some((_, description)) = &steering {
        attachments.push(description.clone());
    }
    metrics.set_attached(&attachments);
    let capture = capture.map(LocalCapture::capture);
    let steering = steering.map(|(steering, _)| Arc::downgrade(steering));
    metrics.refresh_with(move |metrics| {
        if let Some(capture) = capture.as_ref().and_then(Weak::upgrade) {
            metrics.set_capture_stats(&capture.stats());
        }
        if let Some(steering) = steering.as_ref().and_then(Weak::upgrade) {
            match steering.stats() {
                Ok(stats) => metrics.set_steer_stats(&stats),
                Err(error) => tracing::warn!(%error, "Failed to read the steering counters"),
            }
        }
    });
}

/// Length of the steering listener's accept queue, as tokio uses for
/// `proxy.listen`: a burst of new connections waits there instead of having
/// its SYNs dropped and retried a second later.
const LISTEN_BACKLOG: u32 = 1024;

/// How long the start-up check waits for Odoo to accept a connection.
const UPSTREAM_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to Odoo once at start and logs a warning when it does not
/// accept, so that the log shows at once why clients will get 502. The
/// connection closes without a request. Steering mode does not check,
/// since its connections to Odoo's port come back to odoogate.
async fn warn_if_unreachable(upstream: SocketAddr) {
    match tokio::time::timeout(UPSTREAM_CHECK_TIMEOUT, tokio::net::TcpStream::connect(upstream)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(
            %upstream, %error,
            "Odoo does not accept connections at proxy.upstream: calls get 502 until it does; check that Odoo runs and listens there"
        ),
        Err(_) => tracing::warn!(
            %upstream, timeout_secs = UPSTREAM_CHECK_TIMEOUT.as_secs(),
            "Odoo did not accept a connection at proxy.upstream in time: calls get 502 until it does; check that Odoo runs and listens there"
        ),
    }
}

/// Logs a warning for each address other than loopback where something,
/// most likely Odoo, listens on the upstream's port in this network
/// namespace. Clients that reach Odoo there bypass odoogate unrecorded.
fn warn_if_exposed(upstream: SocketAddr, listen: SocketAddr) {
    for exposed in crate::preflight::exposure::read_exposed_listeners(upstream.port()) {
        // By address and port only: a link-local `proxy.listen` carries a
        // scope id that the kernel's table does not show.
        if exposed.ip() == listen.ip() && exposed.port() == listen.port() {
            continue;
        }
        tracing::warn!(
            %exposed, %upstream,
            "Odoo's port is open on an address other than loopback: clients that reach it bypass odoogate, and no record is written; \
             bind Odoo to 127.0.0.1 (http_interface in odoo.conf) or block the port with a firewall rule"
        );
    }
}

/// Describes a failure to listen on `proxy.listen`, with the next step for
/// the usual causes.
fn listen_error(address: SocketAddr, error: &std::io::Error) -> anyhow::Error {
    let port = address.port();
    let next = match error.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "; another process listens there, often Odoo itself: find it with `ss -ltnp 'sport = :{port}'`, \
             then set proxy.listen to a free address, or move Odoo to another port (`http_port` in odoo.conf) and set proxy.upstream to it"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            "; no interface of this host has that address: use one that `ip address` lists, or 127.0.0.1".to_owned()
        }
        std::io::ErrorKind::PermissionDenied => {
            "; a port below 1024 needs CAP_NET_BIND_SERVICE, which the packaged unit's CapabilityBoundingSet leaves out".to_owned()
        }
        _ => String::new(),
    };
    anyhow::anyhow!("failed to listen on {address} (proxy.listen): {error}{next}")
}

/// Binds the listener that the steering hands connections to: dual-stack
/// (the kernel's default for `::`), so steered IPv4 and IPv6 connections
/// both land here, on an ephemeral port.
fn bind_steering_listener() -> anyhow::Result<std::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v6().context("failed to create the steering listener")?;
    socket
        .bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
        .context("failed to bind the steering listener")?;
    let listener = socket.listen(LISTEN_BACKLOG).context("failed to listen on the steering listener")?;
    listener.into_std().context("failed to take the steering listener out of the runtime")
}

/// Puts a reloaded configuration in force and reads the service
/// credentials it points to again. Credentials that cannot be read leave
/// the old ones in force, and the error is returned for the reload response.
fn reload_into(live: &LivePolicy, credentials: Option<&CredentialsReloader>, config: Arc<Config>) -> Result<(), String> {
    let reloaded = match credentials {
        Some(credentials) => credentials.reload(&config).map_err(|error| format!("{error}; the service credentials loaded before stay in use")),
        None => Ok(()),
    };
    live.set_config(config);
    if reloaded.is_ok() && credentials.is_some() {
        tracing::info!("Loaded the service credentials again");
    }
    reloaded
}

/// Returns the source of the guard's state for `odoogate status`, or
/// `None` when `capture` runs without the guard.
fn guard_source(capture: &LocalCapture) -> Option<GuardSource> {
    capture.guard_status().map(|status| Arc::new(status) as GuardSource)
}

/// What `odoogate status` reports about the proxy besides its policy state.
struct Daemon {
    handle: Arc<ConfigHandle>,
    /// The way clients reach the proxy, for `status`.
    proxy: String,
    /// `steering.pin_dir` as the steering was installed, or `None` in
    /// listen mode.
    steering_pin_dir: Option<PathBuf>,
    /// The attached cgroup programs.
    capture: Vec<String>,
    /// The cgroup guard, or `None` when it is off.
    guard: Option<GuardSource>,
}

impl Daemon {
    fn status_sources<C: UpstreamConnector>(&self, proxy: &Arc<Proxy<C>>) -> StatusSources {
        let live = proxy.live();
        let overload = {
            let proxy = Arc::downgrade(proxy);
            let live = live.clone();
            Box::new(move || match proxy.upgrade() {
                Some(proxy) => {
                    let stats = proxy.stats();
                    serde_json::json!({
                        "connections_open": proxy.open_connections(),
                        "max_connections": live.config().proxy.max_connections,
                        "connections_refused": stats.connections_refused,
                        "idle_connections_closed": stats.idle_connections_closed,
                    })
                }
                None => serde_json::json!({}),
            }) as super::control::OverloadSource
        };
        StatusSources {
            handle: self.handle.clone(),
            started: SystemTime::now(),
            capture: self.capture.clone(),
            proxy: Some(self.proxy.clone()),
            steering_pin_dir: self.steering_pin_dir.clone(),
            guard: self.guard.clone(),
            counts: live.counts(),
            policy: live,
            capture_stats: None,
            reassembly: None,
            overload,
            tokens_changed: {
                let proxy = Arc::downgrade(proxy);
                Box::new(move || {
                    if let Some(proxy) = proxy.upgrade() {
                        proxy.refresh_tokens();
                    }
                })
            },
        }
    }
}

/// Logs an error when the steering link goes away under the running
/// daemon (`odoogate uninstall --force`, or another tool detaching it): new
/// connections then reach Odoo directly while the daemon seems to enforce.
/// Checks every [`STEERING_CHECK_INTERVAL`] until the steering is dropped.
async fn watch_steering(steering: Weak<Steering>) {
    let mut ticks = tokio::time::interval(STEERING_CHECK_INTERVAL);
    let mut attached = true;
    loop {
        ticks.tick().await;
        let Some(steering) = steering.upgrade() else {
            return;
        };
        let pin_dir = steering.pin_dir().display().to_string();
        match steering.is_attached() {
            Ok(now) if now == attached => {}
            Ok(true) => {
                tracing::info!(pin_dir, "The steering link is attached again");
                attached = true;
            }
            Ok(false) => {
                tracing::error!(
                    pin_dir,
                    "The steering link was removed or detached: new connections reach Odoo directly, unchecked and \
                     unrecorded. Restart odoogate to steer them again"
                );
                attached = false;
            }
            Err(error) => tracing::debug!(pin_dir, %error, "Failed to check the steering link"),
        }
    }
}

/// How often the daemon checks that its steering link is still attached.
const STEERING_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Sends `WATCHDOG=1` at half the watchdog interval from the accept
/// loop's runtime, each time once every proxy thread in `shards` has run a
/// task. So systemd restarts the daemon when the accept loop or a proxy
/// thread is too stuck to run a task, or when a proxy thread has stopped.
fn spawn_watchdog(notifier: &Arc<Notifier>, shards: Arc<Shards>) -> Option<tokio::task::JoinHandle<()>> {
    let interval = notifier.watchdog_interval()?;
    let notifier = notifier.clone();
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            if !shards.run_a_task_on_each().await {
                tracing::error!("A proxy thread has stopped; no longer sending WATCHDOG=1, so that systemd restarts odoogate");
                return;
            }
            notify::log_failure(notifier.watchdog());
        }
    }))
}

/// Loads the token store and the service credentials. Scoped tokens are
/// on when either is configured: a store that does not exist yet is empty,
/// and tokens created later are loaded while the proxy runs. With neither,
/// scoped tokens are off and every presented token gets AccessDenied.
fn load_tokens(config: &Config) -> anyhow::Result<Option<Tokens>> {
    let path: &Path = &config.tokens.store;
    let Some(credentials) = ServiceCredentials::load_for_tokens(config).context("failed to load the service credentials for scoped tokens")?
    else {
        tracing::info!(store = %path.display(), "No token store and no service credential: scoped tokens are off");
        return Ok(None);
    };
    let store = TokenStore::load(path).with_context(|| format!("failed to load the token store {}", path.display()))?;
    tracing::info!(store = %path.display(), tokens = store.records().count(), "Scoped tokens are on");
    Ok(Some(Tokens { store, credentials }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NotifyTarget;

    /// Receives the next notification, or `None` after `timeout`.
    async fn receive(socket: &tokio::net::UnixDatagram, timeout: Duration) -> Option<String> {
        let mut buffer = [0u8; 256];
        let length = tokio::time::timeout(timeout, socket.recv(&mut buffer)).await.ok()?.unwrap();
        Some(String::from_utf8_lossy(&buffer[..length]).into_owned())
    }

    #[test]
    fn watchdog_waits_for_every_proxy_thread() {
        let dir = std::env::temp_dir().join(format!("odoogate-watchdog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        // A 100 ms watchdog, so a ping every 50 ms.
        let notifier = Arc::new(Notifier::new(Some(NotifyTarget::Path(path)), Some(Duration::from_millis(100))).unwrap());
        let shards = Arc::new(Shards::start(2, || {}).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

        runtime.block_on(async {
            let socket = tokio::net::UnixDatagram::from_std(socket).unwrap();
            let watchdog = spawn_watchdog(&notifier, shards.clone()).expect("the watchdog is on");
            assert_eq!(receive(&socket, Duration::from_secs(5)).await.as_deref(), Some("WATCHDOG=1"));

            // Blocks proxy thread 1 as a task stuck in a system call would.
            let (started, running) = std::sync::mpsc::channel::<()>();
            let (release, blocked) = std::sync::mpsc::channel::<()>();
            shards.handle(1).spawn(async move {
                started.send(()).unwrap();
                let _ = blocked.recv();
            });
            running.recv_timeout(Duration::from_secs(5)).unwrap();
            // A probe that ran before the block may still send one ping.
            let mut pings_while_blocked = 0;
            while receive(&socket, Duration::from_millis(300)).await.is_some() {
                pings_while_blocked += 1;
                assert!(pings_while_blocked <= 1, "WATCHDOG=1 went on while a proxy thread was blocked");
            }

            release.send(()).unwrap();
            assert_eq!(receive(&socket, Duration::from_secs(5)).await.as_deref(), Some("WATCHDOG=1"), "no ping once the thread was free");
            watchdog.abort();
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}

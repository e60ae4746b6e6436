//! Loads the real steering program and cgroup guard and checks what they do
//! to connections.
//!
//! Root only: each test skips with a message otherwise. Each test creates its
//! own network namespace and enters it on the test thread with setns (the
//! cgroup v2 mount stays visible), pins under its own bpffs directory
//! (`/sys/fs/bpf/odoogate-test-<tag>-<pid>`), and makes its own cgroups.
//! Guards remove all of them, even when an assertion fails. A TCP server on
//! 127.0.0.1 stands in for Odoo.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use odoogate::capture::CaptureEvent;
use odoogate::capture::cgroup;
use odoogate::capture::ebpf::{Capture, CaptureOptions};
use odoogate::demo::lab::{Placement, place};
use odoogate::policy::glob::Glob;
use odoogate::steer::guard::{AllowedCgroups, GuardAllowList};
use odoogate::steer::{self, Steering, SteeringOptions};

/// Upper bound on waiting for something a test expects; a test that hits it
/// fails instead of hanging. It is no timing assertion.
const WAIT_BOUND: Duration = Duration::from_secs(30);

/// How long a connect to a dropping port is given before it counts as
/// dropped: the SYN is retransmitted after one second, so one attempt is
/// all that happens.
const DROPPED_CONNECT: Duration = Duration::from_millis(1500);

const ODOO_PORT: u16 = 18069;

/// Makes the tests of this file run one at a time. Each forks (`ip`,
/// `bash`), and a child keeps copies of the other test's sockets until it
/// execs. A listener the steering test has closed then stays open a moment
/// longer, and a connect to Odoo's port that must be dropped succeeds.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TESTS: Mutex<()> = Mutex::new(());
    TESTS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn skip_unless_root(test: &str) -> bool {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("skipping {test}: loading eBPF programs needs root");
    true
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(status.success(), "{program} {args:?} failed with {status}");
}

/// A network namespace that the current thread has entered; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn enter(tag: &str) -> Self {
        let name = format!("odoogate-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &name]);
        let netns = Self { name };
        let file = File::open(format!("/run/netns/{}", netns.name)).expect("open the namespace");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
        run("ip", &["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip").args(["netns", "del", &self.name]).status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("failed to delete network namespace {}", self.name);
        }
    }
}

/// A bpffs pin directory for one test; the steering pins in it are removed
/// on drop.
struct PinDir {
    path: PathBuf,
}

impl PinDir {
    fn new(tag: &str) -> Self {
        let path = PathBuf::from(format!("/sys/fs/bpf/odoogate-test-{tag}-{}", std::process::id()));
        let _ = steer::uninstall(&path);
        Self { path }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(error) = steer::uninstall(&self.path) {
            eprintln!("failed to remove pins in {}: {error}", self.path.display());
        }
    }
}

/// A cgroup under the cgroup v2 mount; removed on drop.
struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    fn create(relative: String) -> Self {
        let path = cgroup::find_cgroup2_mount().expect("a cgroup v2 mount").join(&relative);
        fs::create_dir_all(&path).expect("create the test cgroup");
        Self { path }
    }

    fn id(&self) -> u64 {
        fs::metadata(&self.path).expect("stat the cgroup").ino()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if self.path.exists() {
            eprintln!("failed to remove cgroup {}", self.path.display());
        }
    }
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Binds a non-blocking listener, so a test can ask whether anything
/// arrived without waiting.
fn listen(port: u16) -> TcpListener {
    let listener = TcpListener::bind(localhost(port)).expect("bind a listener");
    listener.set_nonblocking(true).expect("make the listener non-blocking");
    listener
}

/// Accepts one connection, waiting at most [`WAIT_BOUND`].
#[track_caller]
fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    match try_accept(listener) {
        Ok(accepted) => accepted,
        Err(error) => panic!("no connection arrived: {error}"),
    }
}

/// Accepts one connection, waiting at most [`WAIT_BOUND`], or returns the
/// error of the last attempt.
fn try_accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    let deadline = Instant::now() + WAIT_BOUND;
    loop {
        match listener.accept() {
            Err(error) if error.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// Accepts the connection `client` made to Odoo's port at the daemon's
/// listener. When none arrives, the panic says whether Odoo's listener got
/// it instead, which tells a steering miss from a lost connection.
fn accept_steered(daemon: &TcpListener, odoo: &TcpListener, client: &TcpStream) -> (TcpStream, SocketAddr) {
    try_accept(daemon).unwrap_or_else(|error| {
        let at_odoo = odoo.accept().map(|(_, peer)| peer);
        let client = client.local_addr();
        panic!("no steered connection from {client:?} arrived at the daemon: {error}; Odoo's listener: {at_odoo:?}")
    })
}

fn assert_nothing_pending(listener: &TcpListener, what: &str) {
    match listener.accept() {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("{what} received a connection from {peer}"),
        Err(error) => panic!("{what}: {error}"),
    }
}

/// Sends a line and reads it back through `server`, proving the two ends
/// are one connection.
fn exchange(client: &mut TcpStream, server: &mut TcpStream) {
    server.set_nonblocking(false).expect("make the stream blocking");
    client.write_all(b"ping").expect("write");
    let mut buffer = [0u8; 4];
    server.read_exact(&mut buffer).expect("read");
    assert_eq!(&buffer, b"ping");
}

fn options(pin_dir: &Path) -> SteeringOptions {
    SteeringOptions {
        ports: vec![ODOO_PORT],
        pin_dir: pin_dir.to_path_buf(),
        netns: None,
    }
}

#[test]
fn steering_redirects_bypasses_fails_closed_and_resumes() {
    if skip_unless_root("steering_redirects_bypasses_fails_closed_and_resumes") {
        return;
    }
    let _serial = one_at_a_time();
    let _netns = Netns::enter("steer");
    let pins = PinDir::new("steer");
    let odoo = listen(ODOO_PORT);
    let daemon = listen(28070);

    let steering = Arc::new(Steering::install(&options(&pins.path), &daemon).expect("install"));
    assert!(!steering.reused());
    for name in ["steer_link", "STEER_SOCKET", "STEER_BYPASS", "STEER_CONFIG", "STEER_STATS"] {
        let mode = fs::metadata(pins.path.join(name)).expect("a pin").mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is readable by others");
    }

    // A client dialing Odoo reaches odoogate, which sees Odoo's address.
    let mut client = TcpStream::connect(localhost(ODOO_PORT)).expect("connect");
    let (mut steered, peer) = accept_steered(&daemon, &odoo, &client);
    assert_eq!(steered.local_addr().unwrap(), localhost(ODOO_PORT));
    assert_eq!(peer, client.local_addr().unwrap());
    exchange(&mut client, &mut steered);
    assert_nothing_pending(&odoo, "Odoo");

    // odoogate's own upstream connection, from a bypass port, reaches Odoo.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (socket, lease) = steering.upstream_socket(localhost(ODOO_PORT)).expect("bind upstream");
    let mut upstream = runtime
        .block_on(socket.connect(localhost(ODOO_PORT)))
        .expect("connect upstream")
        .into_std()
        .expect("a std stream");
    upstream.set_nonblocking(false).unwrap();
    let (mut at_odoo, peer) = accept(&odoo);
    assert_eq!(peer.port(), lease.port());
    exchange(&mut upstream, &mut at_odoo);
    assert_nothing_pending(&daemon, "odoogate");
    drop(lease);
    steering.release_port(1).expect("releasing an unknown port does nothing");

    let stats = steering.stats().expect("stats");
    assert_eq!((stats.steered, stats.bypassed, stats.dropped), (1, 1, 0));

    // The daemon dies: its listener closes, and new connections are dropped
    // rather than let through to Odoo. The established ones go on.
    drop(steering);
    drop(daemon);
    let refused = TcpStream::connect_timeout(&localhost(ODOO_PORT), DROPPED_CONNECT);
    assert!(refused.is_err(), "a connect succeeded while odoogate was down");
    assert_nothing_pending(&odoo, "Odoo");
    exchange(&mut client, &mut steered);

    // A new daemon reuses the pinned link and resumes steering.
    let daemon = listen(28071);
    let steering = Steering::install(&options(&pins.path), &daemon).expect("reinstall");
    assert!(steering.reused());
    let mut client = TcpStream::connect(localhost(ODOO_PORT)).expect("connect after restart");
    let (mut steered, _) = accept_steered(&daemon, &odoo, &client);
    exchange(&mut client, &mut steered);
    assert_nothing_pending(&odoo, "Odoo");
    let stats = steering.stats().expect("stats");
    assert_eq!(stats.steered, 2);
    assert!(stats.dropped >= 1, "the connect while down was not counted: {stats:?}");

    // Uninstall detaches: Odoo is reachable directly again.
    let removed = steer::uninstall(&pins.path).expect("uninstall");
    assert!(removed.contains(&pins.path.join("steer_link")), "{removed:?}");
    assert!(!pins.path.exists());
    let mut direct = TcpStream::connect(localhost(ODOO_PORT)).expect("connect after uninstall");
    let (mut at_odoo, _) = accept(&odoo);
    exchange(&mut direct, &mut at_odoo);
    assert_nothing_pending(&daemon, "odoogate");
}

/// Detaches the link pinned at `pin` and leaves the pin, as
/// `bpftool link detach` does.
fn detach_pinned_link(pin: &Path) {
    let link = steer::link::open_pinned(pin).expect("open the pinned link");
    steer::link::detach(link.as_fd()).expect("detach the link");
}

#[test]
fn detached_pinned_link_is_replaced() {
    if skip_unless_root("detached_pinned_link_is_replaced") {
        return;
    }
    let _serial = one_at_a_time();
    let _netns = Netns::enter("relink");
    let pins = PinDir::new("relink");
    let odoo = listen(ODOO_PORT);
    let daemon = listen(28072);
    drop(Steering::install(&options(&pins.path), &daemon).expect("install"));

    // Detached but still pinned: nothing steers, so Odoo is reached directly.
    detach_pinned_link(&pins.path.join("steer_link"));
    let mut direct = TcpStream::connect(localhost(ODOO_PORT)).expect("connect while detached");
    let (mut at_odoo, _) = accept(&odoo);
    exchange(&mut direct, &mut at_odoo);

    // The next install does not reuse that link: it attaches a new one.
    let steering = Steering::install(&options(&pins.path), &daemon).expect("reinstall");
    assert!(!steering.reused(), "a detached link was reused");
    let mut client = TcpStream::connect(localhost(ODOO_PORT)).expect("connect after reinstall");
    let (mut steered, _) = accept_steered(&daemon, &odoo, &client);
    exchange(&mut client, &mut steered);
    assert_nothing_pending(&odoo, "Odoo");
}

/// Runs `bash -c 'exec 3<>/dev/tcp/127.0.0.1/PORT'` in `cgroup` (and in the
/// test thread's network namespace); returns whether the connect worked and
/// bash's stderr.
fn connect_from(cgroup: &TestCgroup, port: u16) -> (bool, String) {
    let mut command = Command::new("bash");
    command
        .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let placement = Placement {
        cgroup: Some(cgroup.path.clone()),
        ..Placement::default()
    };
    place(&mut command, &placement).expect("place the client");
    let output = command.output().expect("run bash");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn next_refusal(events: &Receiver<CaptureEvent>) -> odoogate::capture::GuardRefusal {
    let deadline = Instant::now() + WAIT_BOUND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(CaptureEvent::GuardRefusal(refusal)) => return refusal,
            Ok(_) => {}
            Err(error) => panic!("no guard refusal arrived: {error}"),
        }
    }
}

#[test]
fn guard_refuses_disallowed_cgroups_and_reports_them() {
    if skip_unless_root("guard_refuses_disallowed_cgroups_and_reports_them") {
        return;
    }
    let _serial = one_at_a_time();
    const PORT: u16 = 18070;
    let _netns = Netns::enter("guard");
    let base = format!("odoogate-guard-{}", std::process::id());
    // Declared first, so it is removed last, once its children are gone.
    let _base = TestCgroup::create(base.clone());
    let allowed = TestCgroup::create(format!("{base}/allowed-a"));
    let denied = TestCgroup::create(format!("{base}/denied"));
    let odoo = listen(PORT);

    let root = cgroup::find_cgroup2_mount().unwrap();
    let globs = vec![Glob::path(&format!("{base}/allowed-*")).unwrap()];
    let resolver = AllowedCgroups::new(root, globs, vec![PORT]);
    let resolution = resolver.resolve();
    assert_eq!(resolution.cgroups.get(&allowed.id()).map(String::as_str), Some(format!("{base}/allowed-a").as_str()));
    assert!(resolution.own_cgroup.is_some(), "odoogate's own cgroup is not named");
    let guard = AllowedCgroups::connect_guard(&resolution).expect("the guard's starting state");
    assert!(guard.allowed_cgroups.contains(&allowed.id()));
    assert!(!guard.allowed_cgroups.contains(&denied.id()));
    let seeded: BTreeSet<u64> = guard.allowed_cgroups.clone();

    let (sender, events) = mpsc::sync_channel(1024);
    let options = CaptureOptions {
        interfaces: vec!["lo".to_owned()],
        ports: vec![PORT],
        ring_buffer_bytes: 1 << 20,
        cgroup_root: None,
        cgroup_programs: true,
        connect_guard: Some(guard),
        ignore_own_connects: false,
    };
    let mut capture = Capture::start(&options, sender).expect("start the capture with the guard");
    let mut list = GuardAllowList::new(capture.take_guard_allow_map().expect("the allow map"), seeded);

    // odoogate's own cgroup is allowed without being listed.
    let own = TcpStream::connect(localhost(PORT)).expect("odoogate's own connect");
    drop(accept(&odoo));
    drop(own);

    let (connected, _) = connect_from(&allowed, PORT);
    assert!(connected, "the allowed cgroup could not connect");
    drop(accept(&odoo));

    let (connected, stderr) = connect_from(&denied, PORT);
    assert!(!connected, "the denied cgroup connected");
    assert!(stderr.contains("Operation not permitted"), "unexpected error: {stderr}");
    assert_nothing_pending(&odoo, "Odoo");
    let refusal = next_refusal(&events);
    assert_eq!(refusal.cgroup_id, denied.id());
    assert_eq!(refusal.destination, localhost(PORT));
    assert_eq!(refusal.comm, "bash");
    assert!(refusal.pid > 0);

    // A cgroup created later is refused until the allow list is resolved
    // again, then allowed.
    let late = TestCgroup::create(format!("{base}/allowed-b"));
    let (connected, _) = connect_from(&late, PORT);
    assert!(!connected, "a cgroup not resolved yet connected");
    assert_eq!(next_refusal(&events).cgroup_id, late.id());
    let change = list.sync(&resolver.resolve().ids()).expect("sync the allow map");
    assert_eq!(change.added, 1);
    let (connected, _) = connect_from(&late, PORT);
    assert!(connected, "the newly allowed cgroup could not connect");
    drop(accept(&odoo));
    assert_eq!(capture.stats().guard_refusals, 2);

    // Connects to other ports are never judged.
    let other = listen(18071);
    let (connected, _) = connect_from(&denied, 18071);
    assert!(connected, "the guard refused a port that is not Odoo's");
    drop(accept(&other));
}

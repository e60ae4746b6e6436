//! The packaged unit under a real systemd: boots the Debian 12 root
//! filesystem in a systemd-nspawn container, with systemd as its PID 1, and
//! runs the package through dpkg and systemctl there.
//!
//! The container gets its own network namespace with only `lo`, where the
//! default configuration observes port 8069. It gets cgroup v2, also on a
//! host with hybrid cgroups (`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`), and a
//! fresh bpffs instance on /sys/fs/bpf. nspawn drops CAP_BPF and
//! CAP_PERFMON and blocks bpf(2) in its seccomp filter by default, so the
//! test adds them back. Odoo is the Odoo-like upstream (odoo_like.py) and
//! the client is xmlrpc.client, both run with the host's python3 inside
//! the container's network namespace.

use super::{Package, remove_dir_if_exists, run_checked, timed, unpack_rootfs};
use crate::run_command;
use anyhow::{Context as _, Result, bail, ensure};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = "/etc/odoogate/odoogate.toml";
const CREDENTIAL: &str = "/etc/credstore/odoogate-credentials";
/// An integration the reload adds; it matches every call from loopback.
const RELOADED_INTEGRATION: &str = "\n[[integration]]\nname = \"packaging-test\"\nmatch = { ip = [\"127.0.0.1/32\"] }\nallow = [{ models = [\"res.partner\"], methods = [\"search_read\"] }]\n";
/// A drop-in that shortens the watchdog, so WATCHDOG=1 arrives within
/// seconds instead of the unit's 15.
const WATCHDOG_DROP_IN: &str = "[Service]\nWatchdogSec=2s\n";

/// Boots the container, runs the checks and stops it.
pub fn run(root: &Path, work_dir: &Path, cache: &Path, first: &Package, second: &Package) -> Result<()> {
    install_nspawn()?;
    let rootfs = work_dir.join("boot-rootfs");
    timed("fresh root filesystem for the container", || unpack_rootfs(cache, &rootfs))?;
    for package in [first, second] {
        let name = package.path.file_name().context("package path has no file name")?;
        fs::copy(&package.path, rootfs.join("root").join(name))
            .with_context(|| format!("failed to copy {} into the container", package.path.display()))?;
    }
    let bpffs = Bpffs::mount(&work_dir.join("boot-bpffs"))?;
    let container = timed("boot the container", || Container::boot(&rootfs, &bpffs.path, &work_dir.join("boot.log")))?;
    let result = timed("the packaged unit under systemd", || exercise(root, &container, first, second));
    if result.is_err() {
        eprintln!("xtask: the unit's journal in the container:\n{}", container.journal_text());
    }
    drop(container);
    drop(bpffs);
    result
}

fn exercise(root: &Path, container: &Container, first: &Package, second: &Package) -> Result<()> {
    container.run(&["dpkg", "-i", &format!("/root/{}", file_name(first)?)])?;
    ensure!(container.stdout(&["systemctl", "is-enabled", "odoogate"])? == "enabled", "postinst did not enable odoogate.service");
    ensure!(container.unit_property("ActiveState")? == "inactive", "dpkg -i started odoogate.service; it must wait for the configuration");

    container.write(&format!("/etc/systemd/system/odoogate.service.d/{}", "watchdog.conf"), WATCHDOG_DROP_IN)?;
    container.run(&["systemctl", "daemon-reload"])?;
    container.run(&["systemd-analyze", "log-level", "debug"])?;
    check_start(container, "observing ports [8069]")?;
    check_structured_logs(container)?;
    let upstream = Upstream::start(root, container)?;
    check_observed_call(container, &upstream, None)?;
    check_reload(container, &upstream)?;
    check_credentials(container, &upstream)?;
    check_upgrade(container, second)?;
    check_stop(container)?;
    drop(upstream);

    container.run(&["dpkg", "-r", "odoogate"])?;
    ensure!(container.unit_property("ActiveState")? == "inactive", "dpkg -r left odoogate.service running");
    let enabled = container.output(&["systemctl", "is-enabled", "odoogate"])?;
    ensure!(!enabled.status.success(), "dpkg -r left odoogate.service enabled");
    container.run(&["dpkg", "-P", "odoogate"])?;
    Ok(())
}

/// Starts the unit, which returns once systemd got READY=1, and checks
/// the state and status text.
fn check_start(container: &Container, status: &str) -> Result<()> {
    container.run(&["systemctl", "start", "odoogate"])?;
    ensure!(container.unit_property("ActiveState")? == "active", "odoogate.service is not active after systemctl start");
    let text = container.unit_property("StatusText")?;
    ensure!(text == status, "odoogate.service reports the status `{text}`, expected `{status}`");
    let main_pid = container.unit_property("MainPID")?;
    container.wait_for_journal("READY=1 from the main process", &["UNIT=odoogate.service"], |entry| {
        notification_from(entry, &main_pid, "READY=1")
    })?;
    container.wait_for_journal("WATCHDOG=1 from the main process", &["UNIT=odoogate.service"], |entry| {
        notification_from(entry, &main_pid, "WATCHDOG=1")
    })?;
    Ok(())
}

/// The daemon's own messages reach the container's journal natively, with
/// their tracing fields as journal fields.
fn check_structured_logs(container: &Container) -> Result<()> {
    let entry = container.wait_for_journal("the daemon's start message", &["SYSLOG_IDENTIFIER=odoogate", "MESSAGE=Observing Odoo traffic"], |_| true)?;
    ensure!(field(&entry, "_TRANSPORT") == "journal", "the start message came over {}, not the native protocol", field(&entry, "_TRANSPORT"));
    ensure!(field(&entry, "MODE") == "observe", "the start message lacks MODE=observe: {entry}");
    ensure!(field(&entry, "PORTS") == "[8069]", "the start message lacks PORTS=[8069]: {entry}");
    ensure!(field(&entry, "PRIORITY") == "5", "the start message has priority {}, expected 5 (tracing's INFO)", field(&entry, "PRIORITY"));
    Ok(())
}

/// Makes an XML-RPC `version` call and waits for its audit record, with
/// `integration` when given.
fn check_observed_call(container: &Container, upstream: &Upstream, integration: Option<&str>) -> Result<()> {
    let main_pid = container.unit_property("MainPID")?;
    let since = container.cursor()?;
    upstream.call_version()?;
    let entry = container.wait_for_journal_after("the audit record of the call", &since, &["ODOOGATE_METHOD=common.version"], |_| true)?;
    // Not _SYSTEMD_UNIT: with systemd's debug log on, journald can keep
    // the metadata it cached for the PID while systemd's forked child
    // still ran in init.scope, before the exec.
    ensure!(field(&entry, "_PID") == main_pid, "the audit record did not come from the main process {main_pid}: {entry}");
    if let Some(integration) = integration {
        ensure!(field(&entry, "ODOOGATE_INTEGRATION") == integration, "the call was not attributed to {integration}: {entry}");
    }
    Ok(())
}

/// `systemctl reload` puts a new integration in force, rejects an invalid
/// configuration while the old one stays, and SIGHUP reloads too.
fn check_reload(container: &Container, upstream: &Upstream) -> Result<()> {
    let main_pid = container.unit_property("MainPID")?;
    let original = container.read(CONFIG)?;
    container.write(CONFIG, &format!("{original}{RELOADED_INTEGRATION}"))?;
    container.run(&["systemctl", "reload", "odoogate"])?;
    check_observed_call(container, upstream, Some("packaging-test"))?;

    container.write(CONFIG, &format!("{original}\n[policy.unknown]\n"))?;
    let rejected = container.output(&["systemctl", "reload", "odoogate"])?;
    ensure!(!rejected.status.success(), "systemctl reload accepted an invalid configuration");
    ensure!(container.unit_property("ActiveState")? == "active", "a rejected reload stopped odoogate.service");
    check_observed_call(container, upstream, Some("packaging-test"))?;

    container.write(CONFIG, &format!("{original}{RELOADED_INTEGRATION}"))?;
    let since = container.cursor()?;
    container.run(&["systemctl", "kill", "--kill-who=main", "--signal=SIGHUP", "odoogate"])?;
    container.wait_for_journal_after("the SIGHUP reload", &since, &["MESSAGE=Reloading the configuration on SIGHUP"], |_| true)?;
    ensure!(container.unit_property("MainPID")? == main_pid, "odoogate.service restarted during the reloads");
    container.write(CONFIG, &original)?;
    container.run(&["systemctl", "reload", "odoogate"])?;
    Ok(())
}

/// In enforce mode the daemon reads the service credentials from
/// `LoadCredential=`: without the credstore file the unit still starts
/// (scoped tokens off), and with it the daemon loads it. A call goes
/// through the steering, so the hardening lets enforce mode pin in bpffs.
fn check_credentials(container: &Container, upstream: &Upstream) -> Result<()> {
    let original = container.read(CONFIG)?;
    let enforce = original.replace("mode = \"observe\"", "mode = \"enforce\"");
    ensure!(enforce != original, "{CONFIG} has no `mode = \"observe\"` line to switch");
    container.write(CONFIG, &enforce)?;

    let since = container.cursor()?;
    container.run(&["systemctl", "restart", "odoogate"])?;
    container.wait_for_journal_after("scoped tokens off without a credential", &since, &["SYSLOG_IDENTIFIER=odoogate"], |entry| {
        field(entry, "MESSAGE").starts_with("No token store and no service credential")
    })?;
    check_observed_call(container, upstream, None)?;

    container.write(CREDENTIAL, "default = \"packaging-test-api-key\"\n")?;
    container.run(&["chmod", "600", CREDENTIAL])?;
    let since = container.cursor()?;
    container.run(&["systemctl", "restart", "odoogate"])?;
    container.wait_for_journal_after("scoped tokens on with the credential", &since, &["MESSAGE=Scoped tokens are on"], |_| true)?;
    check_observed_call(container, upstream, None)?;

    // Stopping leaves the steering pinned, which would drop observe mode's
    // connections to port 8069.
    container.run(&["systemctl", "stop", "odoogate"])?;
    container.run(&["odoogate", "uninstall"])?;
    container.run(&["rm", CREDENTIAL])?;
    container.write(CONFIG, &original)?;
    check_start(container, "observing ports [8069]")
}

/// Upgrading a running service restarts it with the new binary.
fn check_upgrade(container: &Container, second: &Package) -> Result<()> {
    let before = container.unit_property("MainPID")?;
    container.run(&["dpkg", "--force-confold", "-i", &format!("/root/{}", file_name(second)?)])?;
    ensure!(container.unit_property("ActiveState")? == "active", "odoogate.service is not active after the upgrade");
    let after = container.unit_property("MainPID")?;
    ensure!(after != before, "the upgrade did not restart odoogate.service (MainPID {before})");
    let version = container.stdout(&["dpkg-query", "-W", "-f=${Version}", "odoogate"])?;
    ensure!(version == second.version, "dpkg reports odoogate {version} after the upgrade, expected {}", second.version);
    Ok(())
}

/// `systemctl stop` ends the daemon cleanly, after STOPPING=1.
fn check_stop(container: &Container) -> Result<()> {
    let main_pid = container.unit_property("MainPID")?;
    let since = container.cursor()?;
    container.run(&["systemctl", "stop", "odoogate"])?;
    ensure!(container.unit_property("ActiveState")? == "inactive", "odoogate.service is not inactive after systemctl stop");
    ensure!(container.unit_property("Result")? == "success", "odoogate.service stopped with result {}", container.unit_property("Result")?);
    ensure!(container.unit_property("ExecMainStatus")? == "0", "odoogate exited with status {}", container.unit_property("ExecMainStatus")?);
    container.wait_for_journal_after("STOPPING=1 from the main process", &since, &["UNIT=odoogate.service"], |entry| {
        notification_from(entry, &main_pid, "STOPPING=1")
    })?;
    container.wait_for_journal_after("the daemon's last message", &since, &["SYSLOG_IDENTIFIER=odoogate", "MESSAGE=Stopped"], |_| true)?;
    Ok(())
}

/// Tells whether `entry` is systemd's debug message about a notification
/// with `assignment` from process `pid` (container PIDs).
fn notification_from(entry: &serde_json::Value, pid: &str, assignment: &str) -> bool {
    let message = field(entry, "MESSAGE");
    let message = message.strip_prefix("odoogate.service: ").unwrap_or(message);
    message.starts_with(&format!("Got notification message from PID {pid} ("))
        && message.trim_end_matches(')').split(['(', ',']).any(|part| part.trim() == assignment)
}

fn field<'a>(entry: &'a serde_json::Value, name: &str) -> &'a str {
    entry.get(name).and_then(serde_json::Value::as_str).unwrap_or_default()
}

fn file_name(package: &Package) -> Result<String> {
    Ok(package.path.file_name().context("package path has no file name")?.to_string_lossy().into_owned())
}

fn install_nspawn() -> Result<()> {
    if Command::new("systemd-nspawn").arg("--version").output().is_ok_and(|output| output.status.success()) {
        return Ok(());
    }
    eprintln!("xtask: installing systemd-container (systemd-nspawn)");
    run_command(Command::new("apt-get").arg("update"))?;
    run_command(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "systemd-container"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// A bpffs instance of the test's own, unmounted on drop.
struct Bpffs {
    path: PathBuf,
}

impl Bpffs {
    fn mount(path: &Path) -> Result<Self> {
        if path.exists() {
            // A run that was killed may have left its instance mounted.
            let _ = Command::new("umount").arg(path).stderr(Stdio::null()).status();
            remove_dir_if_exists(path)?;
        }
        fs::create_dir_all(path).with_context(|| format!("failed to create {}", path.display()))?;
        run_checked(Command::new("mount").args(["-t", "bpf", "-o", "mode=0700", "bpf"]).arg(path))?;
        Ok(Self { path: path.to_path_buf() })
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status().is_ok_and(|status| status.success());
        if !unmounted {
            eprintln!("xtask: umount {} failed", self.path.display());
        }
    }
}

/// A booted container: the systemd-nspawn process and the host PID of the
/// container's systemd. Dropping it halts the container.
struct Container {
    nspawn: Child,
    leader: u32,
}

impl Container {
    fn boot(rootfs: &Path, bpffs: &Path, log: &Path) -> Result<Self> {
        let log_file = fs::File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
        let mut command = Command::new("systemd-nspawn");
        command
            .arg("--directory")
            .arg(rootfs)
            .args(["--machine=odoogate-packaging", "--boot", "--register=no", "--keep-unit", "--private-network"])
            .args(["--capability=CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf", "--console=read-only"])
            .arg(format!("--bind={}:/sys/fs/bpf", bpffs.display()))
            // Hybrid hosts (cgroup v1 controllers plus cgroup2 at
            // /sys/fs/cgroup/unified) would otherwise give the container
            // the same layout, where systemd mounts no cgroup2 root.
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("failed to share the boot log")?)
            .stderr(log_file);
        let nspawn = command.spawn().with_context(|| format!("failed to start {command:?}"))?;
        let mut container = Self { nspawn, leader: 0 };
        container.leader = container.wait_for_leader(log)?;
        let state = container.wait_for_boot()?;
        if state != "running" {
            let failed = container.output(&["systemctl", "--failed", "--no-pager"])?;
            bail!("the container's systemd reports `{state}`:\n{}", String::from_utf8_lossy(&failed.stdout));
        }
        Ok(container)
    }

    /// Returns the host PID of the container's init, nspawn's only child.
    fn wait_for_leader(&mut self, log: &Path) -> Result<u32> {
        let pid = self.nspawn.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.nspawn.try_wait()? {
                bail!("systemd-nspawn exited with {status}:\n{}", fs::read_to_string(log).unwrap_or_default());
            }
            let listed = fs::read_to_string(&children).unwrap_or_default();
            if let Some(leader) = listed.split_whitespace().next().and_then(|pid| pid.parse::<u32>().ok()) {
                let comm = fs::read_to_string(format!("/proc/{leader}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return Ok(leader);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("systemd did not start in the container within 30 s:\n{}", fs::read_to_string(log).unwrap_or_default())
    }

    /// Waits up to 120 s for the boot to finish and returns the system
    /// state. `systemctl is-system-running --wait` prints nothing until
    /// systemd's bus is up, and `offline` until /run/systemd/system exists,
    /// so it is retried until it prints another state.
    fn wait_for_boot(&self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let output = self.output(&["timeout", "120", "systemctl", "is-system-running", "--wait"])?;
            let state = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if !state.is_empty() && state != "offline" {
                return Ok(state);
            }
            if Instant::now() >= deadline {
                bail!("systemd in the container reported no state within 120 s: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn command(&self, argv: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.leader))
            .args(["--all", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("SYSTEMD_PAGER", "");
        command
    }

    fn output(&self, argv: &[&str]) -> Result<Output> {
        let mut command = self.command(argv);
        command.output().with_context(|| format!("failed to start {command:?}"))
    }

    fn run(&self, argv: &[&str]) -> Result<()> {
        run_checked(&mut self.command(argv)).map(drop)
    }

    fn stdout(&self, argv: &[&str]) -> Result<String> {
        let output = run_checked(&mut self.command(argv))?;
        Ok(String::from_utf8_lossy(&output).trim().to_owned())
    }

    fn unit_property(&self, name: &str) -> Result<String> {
        self.stdout(&["systemctl", "show", "odoogate", "--value", &format!("--property={name}")])
    }

    /// Maps a path inside the container to the host's view of it, through
    /// the container's root.
    fn host_path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.leader))
    }

    fn read(&self, path: &str) -> Result<String> {
        fs::read_to_string(self.host_path(path)).with_context(|| format!("failed to read {path} in the container"))
    }

    fn write(&self, path: &str, text: &str) -> Result<()> {
        let host = self.host_path(path);
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent).with_context(|| format!("failed to create the parent of {path} in the container"))?;
        }
        fs::write(&host, text).with_context(|| format!("failed to write {path} in the container"))
    }

    /// Returns the journal's current end, for reading only newer entries.
    fn cursor(&self) -> Result<String> {
        let output = self.stdout(&["journalctl", "--lines=1", "--output=json", "--no-pager"])?;
        let entry: serde_json::Value = serde_json::from_str(&output).context("journalctl printed invalid JSON")?;
        Ok(field(&entry, "__CURSOR").to_owned())
    }

    fn wait_for_journal(&self, what: &str, matches: &[&str], accept: impl Fn(&serde_json::Value) -> bool) -> Result<serde_json::Value> {
        self.wait_for_journal_after(what, "", matches, accept)
    }

    /// Waits up to 20 s for a journal entry after `cursor` (all entries
    /// when empty) that has the `FIELD=value` `matches` and that `accept`
    /// takes. The matches are applied here, not by journalctl: journalctl
    /// 252 skips the first matching entry after `--after-cursor` when the
    /// cursor's own entry does not match.
    fn wait_for_journal_after(
        &self,
        what: &str,
        cursor: &str,
        matches: &[&str],
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let after = format!("--after-cursor={cursor}");
        let mut argv = vec!["journalctl", "--output=json", "--no-pager"];
        if !cursor.is_empty() {
            argv.push(&after);
        }
        let has_matches = |entry: &serde_json::Value| {
            matches.iter().all(|assignment| {
                let (name, value) = assignment.split_once('=').unwrap_or((assignment, ""));
                field(entry, name) == value
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = self.stdout(&argv)?;
            let found = output
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|entry| has_matches(entry) && accept(entry));
            if let Some(entry) = found {
                return Ok(entry);
            }
            if Instant::now() >= deadline {
                bail!("no journal entry for {what} within 20 s (entries {} with {})", argv[3..].join(" "), matches.join(" "));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Returns the unit's journal, for a failure report.
    fn journal_text(&self) -> String {
        self.output(&["journalctl", "--unit=odoogate", "--no-pager", "--lines=60"])
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_else(|error| format!("(journalctl failed: {error:#})"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM makes nspawn ask the container's systemd to power off.
        let _ = Command::new("kill").args(["-TERM", &self.nspawn.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.nspawn.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("xtask: the container did not power off within 30 s; killing systemd-nspawn");
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The Odoo-like upstream on 127.0.0.1:8069 in the container's network
/// namespace, run by the host's python3. Dropping it kills it.
struct Upstream {
    process: Child,
    netns: String,
}

impl Upstream {
    fn start(root: &Path, container: &Container) -> Result<Self> {
        let netns = format!("--net=/proc/{}/ns/net", container.leader);
        let script = root.join("odoogate-userspace/src/upstream/odoo_like.py");
        let ready = std::env::temp_dir().join(format!("odoogate-packaging-upstream-{}.ready", std::process::id()));
        let _ = fs::remove_file(&ready);
        let mut command = Command::new("nsenter");
        command
            .arg(&netns)
            .arg("python3")
            .arg(&script)
            .args(["--listen", "127.0.0.1:8069", "--ready-file"])
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // nsenter execs python3, so the child's PID is the server's.
        let process = command.spawn().with_context(|| format!("failed to start {command:?}"))?;
        let upstream = Self { process, netns };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            ensure!(Instant::now() < deadline, "the Odoo-like upstream did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = fs::remove_file(&ready);
        Ok(upstream)
    }

    fn call_version(&self) -> Result<()> {
        let client = "import xmlrpc.client; \
            print(xmlrpc.client.ServerProxy('http://127.0.0.1:8069/xmlrpc/2/common').version()['server_version'])";
        let output = run_checked(Command::new("nsenter").arg(&self.netns).args(["python3", "-c", client]))?;
        let version = String::from_utf8_lossy(&output).trim().to_owned();
        ensure!(version == "19.0", "the XML-RPC client got server_version {version}, expected 19.0");
        Ok(())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

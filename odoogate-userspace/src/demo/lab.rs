//! Network namespaces, veth pairs, cgroups and child processes for the demo
//! and the end-to-end tests. Every resource is removed when its guard drops,
//! including when a test panics.

use anyhow::{Context as _, bail};
use std::fs::File;
use std::os::fd::AsFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `ip` with `args`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().context("failed to run ip (install iproute2)")?;
    if !output.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// A named network namespace (`/run/netns/NAME`), deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let netns = Self { name: name.to_owned() };
        netns.exec(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip` inside the namespace (`ip -n NAME ARGS`).
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Connects two namespaces with a veth pair: `left` gets `left_addresses`
/// (CIDR, IPv4 or IPv6) on `left_name`, `right` gets `right_addresses` on
/// the other end. Several addresses on the right side let one namespace act
/// as several client hosts.
pub fn connect_veth(
    left: &Netns,
    left_name: &str,
    left_addresses: &[&str],
    right: &Netns,
    right_name: &str,
    right_addresses: &[&str],
) -> anyhow::Result<()> {
    ip(&["link", "add", left_name, "netns", left.name(), "type", "veth", "peer", "name", right_name, "netns", right.name()])?;
    for address in left_addresses {
        add_address(left, left_name, address)?;
    }
    left.exec(&["link", "set", left_name, "up"])?;
    for address in right_addresses {
        add_address(right, right_name, address)?;
    }
    right.exec(&["link", "set", right_name, "up"])?;
    Ok(())
}

/// Adds `address` (CIDR) to `device` in `netns`. An IPv6 address gets
/// `nodad`, because duplicate address detection would keep it tentative,
/// and unusable, for a second or more after the link comes up.
fn add_address(netns: &Netns, device: &str, address: &str) -> anyhow::Result<()> {
    let mut args = vec!["addr", "add", address, "dev", device];
    if address.contains(':') {
        args.push("nodad");
    }
    netns.exec(&args)
}

/// A cgroup v2 directory, removed on drop (after its processes are gone).
pub struct Cgroup {
    path: PathBuf,
    relative: String,
}

impl Cgroup {
    /// Creates `relative` (such as `odoogate-demo/stats-sync`) under the
    /// cgroup v2 mount, with its parents.
    pub fn create(relative: &str) -> anyhow::Result<Self> {
        let path = crate::capture::cgroup::find_cgroup2_mount()?.join(relative);
        std::fs::create_dir_all(&path).with_context(|| format!("failed to create cgroup {}", path.display()))?;
        Ok(Self { path, relative: relative.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the path relative to the cgroup v2 mount, as odoogate reports it.
    pub fn relative(&self) -> &str {
        &self.relative
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // A cgroup can only be removed once empty; processes may take a
        // moment to exit after being killed.
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Remove the parents this guard created, if they are empty now.
        let mut parent = self.path.parent();
        for _ in 1..self.relative.split('/').count() {
            let Some(dir) = parent else { break };
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
            parent = dir.parent();
        }
    }
}

/// The namespaces and cgroup a child process runs in.
#[derive(Default, Clone)]
pub struct Placement {
    /// Network namespace file (`/run/netns/NAME`).
    pub netns: Option<PathBuf>,
    /// Mount namespace file (`/proc/PID/ns/mnt`).
    pub mount_ns: Option<PathBuf>,
    /// cgroup v2 directory to join before exec.
    pub cgroup: Option<PathBuf>,
}

/// Configures `command` to enter the namespaces and cgroup of `placement`
/// between fork and exec.
pub fn place(command: &mut Command, placement: &Placement) -> anyhow::Result<()> {
    let netns = match &placement.netns {
        Some(path) => Some(File::open(path).with_context(|| format!("failed to open {}", path.display()))?),
        None => None,
    };
    let mount_ns = match &placement.mount_ns {
        Some(path) => Some(File::open(path).with_context(|| format!("failed to open {}", path.display()))?),
        None => None,
    };
    let procs = match &placement.cgroup {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(path.join("cgroup.procs"))
                .with_context(|| format!("failed to open {}/cgroup.procs", path.display()))?,
        ),
        None => None,
    };
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (write, setns) on descriptors opened
    // above; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            use std::io::Write as _;
            if let Some(mut procs) = procs.as_ref() {
                procs.write_all(b"0")?;
            }
            if let Some(file) = &mount_ns {
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS).map_err(std::io::Error::from)?;
            }
            if let Some(file) = &netns {
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// A child process that is killed (SIGTERM, then SIGKILL) on drop.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `command` placed by `placement`, with stdout and stderr
    /// appended to `log`.
    pub fn spawn(name: &str, mut command: Command, placement: &Placement, log: &Path) -> anyhow::Result<Self> {
        place(&mut command, placement)?;
        let out = File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
        let err = out.try_clone()?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = command.spawn().with_context(|| format!("failed to start {name}"))?;
        Ok(Self { name: name.to_owned(), child: Some(child) })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns whether
    /// the process exited successfully.
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else { return Ok(false) };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within {:?} and was killed", self.name, timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the exit status if the process has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop(Duration::from_secs(3));
        }
    }
}

/// A bpffs instance mounted for a demo or test, with odoogate's steering
/// pins under `path/odoogate`. On drop the pins are removed and the
/// instance unmounted.
pub struct Bpffs {
    pub path: PathBuf,
}

impl Bpffs {
    pub fn mount(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)?;
        let status = Command::new("mount").args(["-t", "bpf", "bpf"]).arg(path).status()?;
        if !status.success() {
            bail!("mount -t bpf bpf {} failed: {status}", path.display());
        }
        Ok(Self { path: path.to_path_buf() })
    }

    /// Returns the directory of the steering pins.
    pub fn pin_dir(&self) -> PathBuf {
        self.path.join("odoogate")
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = crate::steer::uninstall(&self.pin_dir());
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Waits until `ready` returns true, polling every 50 ms, or fails after
/// `timeout` with `what` in the message.
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Returns true when the file at `path` contains `needle`.
pub fn file_contains(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).map(|text| text.contains(needle)).unwrap_or(false)
}

//! The benchmark's own network namespace and the processes in it: the fast
//! upstream, nginx and `odoogate run`. Every process is a
//! [`ChildGuard`], stopped by its pid when dropped, and the namespace, the
//! steering pins and the work directory are removed when the [`Lab`] drops,
//! also after an error or a panic.

use anyhow::{Context as _, bail};
use odoogate::demo::lab::{self, ChildGuard, Netns, Placement};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The fast upstream's port inside the namespace.
pub const UPSTREAM_PORT: u16 = 18069;
/// nginx's port, proxying to the upstream.
pub const NGINX_PORT: u16 = 18080;
/// odoogate's port in listen mode.
pub const LISTEN_PORT: u16 = 18070;

/// A 40-character stand-in for the shared user's API key, which the fast
/// upstream never checks.
const SERVICE_API_KEY: &str = "0123456789abcdef0123456789abcdef01234567";

/// The benchmark's environment: one network namespace, which this process
/// joins so that its probes and every child use only that namespace's
/// loopback.
pub struct Lab {
    pub workdir: PathBuf,
    pub odoogate: PathBuf,
    pub bench: PathBuf,
    /// RLIMIT_NOFILE of this process and its children.
    pub open_file_limit: u64,
    pins: PathBuf,
    // Held only to be deleted on drop, after every process above.
    _netns: Netns,
}

impl Lab {
    /// Creates the namespace `ogbench-PID`, moves this thread into it and
    /// raises the open-file limit for the thousands of connections of the
    /// memory benchmark (children inherit both).
    pub fn create(odoogate: &Path) -> anyhow::Result<Self> {
        if !nix::unistd::Uid::effective().is_root() {
            bail!("the enforce, observe and memory benchmarks need root: namespaces, eBPF and steering");
        }
        let tag = std::process::id();
        let netns = Netns::create(&format!("ogbench-{tag}"))?;
        let file = std::fs::File::open(netns.path()).with_context(|| format!("failed to open {}", netns.path().display()))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).context("failed to enter the benchmark namespace")?;
        let open_file_limit = raise_open_file_limit(65_536)?;

        let workdir = std::env::temp_dir().join(format!("odoogate-bench-{tag}"));
        let _ = std::fs::remove_dir_all(&workdir);
        std::fs::create_dir_all(&workdir)?;
        let pins = PathBuf::from(format!("/sys/fs/bpf/odoogate-bench-{tag}"));
        let bench = std::env::current_exe().context("failed to find the odoogate-bench executable")?;
        Ok(Self { workdir, odoogate: odoogate.to_path_buf(), bench, open_file_limit, pins, _netns: netns })
    }

    /// Starts the fast upstream on [`UPSTREAM_PORT`], which responds to every
    /// request with the captured response `response` and closes each
    /// connection after one response when `close_after_response` is set.
    pub fn start_upstream(&self, response: &Path, close_after_response: bool) -> anyhow::Result<ChildGuard> {
        let ready = self.workdir.join("upstream.ready");
        let _ = std::fs::remove_file(&ready);
        let mut command = Command::new(&self.bench);
        command
            .arg("upstream")
            .args(["--listen", &format!("127.0.0.1:{UPSTREAM_PORT}")])
            .arg("--response")
            .arg(response)
            .arg("--ready-file")
            .arg(&ready);
        if close_after_response {
            command.arg("--close-after-response");
        }
        let child = ChildGuard::spawn("the fast upstream", command, &Placement::default(), &self.workdir.join("upstream.log"))?;
        lab::wait_for("the fast upstream", Duration::from_secs(10), || ready.exists())?;
        Ok(child)
    }

    /// Starts nginx on [`NGINX_PORT`] with `proxy_pass` to the upstream and
    /// a pool of kept-alive upstream connections.
    pub fn start_nginx(&self) -> anyhow::Result<ChildGuard> {
        let directory = self.workdir.join("nginx");
        std::fs::create_dir_all(directory.join("temp"))?;
        let config = nginx_config(&directory);
        let config_path = directory.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new("nginx");
        command.arg("-p").arg(&directory).arg("-c").arg(&config_path).arg("-e").arg(directory.join("error.log"));
        let child = ChildGuard::spawn("nginx", command, &Placement::default(), &directory.join("stdout.log"))?;
        wait_listening("nginx", NGINX_PORT)?;
        Ok(child)
    }

    /// Writes the odoogate configuration for `mode` and returns its path.
    /// Audit records go to a JSON Lines file, `audit.jsonl` in the work
    /// directory. Enforce mode gets a token store with one token for the
    /// integration `bench` (returned) and the service credentials file.
    pub fn write_config(&self, name: &str, mode: DaemonMode) -> anyhow::Result<(PathBuf, Option<String>)> {
        let directory = self.workdir.join(name);
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory)?;
        let audit = directory.join("audit.jsonl");
        let control = directory.join("control.sock");
        let mut config = format!(
            "[odoo]\nports = [{UPSTREAM_PORT}]\ninterfaces = [\"lo\"]\n\n[policy]\nmode = \"{}\"\nunidentified = \"deny\"\n\n\
             [audit]\noutput = \"file\"\nfile = \"{}\"\n\n[control]\nsocket = \"{}\"\n\n",
            if mode == DaemonMode::Observe { "observe" } else { "enforce" },
            audit.display(),
            control.display(),
        );
        if mode != DaemonMode::Observe {
            let credentials = directory.join("credentials.toml");
            write_private(&credentials, &format!("default = \"{SERVICE_API_KEY}\"\n"))?;
            config.push_str(&format!(
                "[tokens]\nstore = \"{}\"\ncredentials_file = \"{}\"\n\n",
                directory.join("tokens.json").display(),
                credentials.display()
            ));
        }
        match mode {
            DaemonMode::Observe => {}
            DaemonMode::Steered => config.push_str(&format!("[steering]\npin_dir = \"{}\"\n\n", self.pins.display())),
            DaemonMode::Listen => config.push_str(&format!(
                "[proxy]\nlisten = \"127.0.0.1:{LISTEN_PORT}\"\nupstream = \"127.0.0.1:{UPSTREAM_PORT}\"\n\n"
            )),
        }
        // Observe mode has no tokens: the captured calls carry a password,
        // so the integration is matched by the client's address there.
        let matcher = if mode == DaemonMode::Observe { "{ ip = [\"127.0.0.1/32\"] }" } else { "{ token = true }" };
        config.push_str(&format!(
            "[[integration]]\nname = \"bench\"\nmatch = {matcher}\nallow = [{{ models = [\"res.partner\"], methods = [\"search_read\", \"create\"] }}]\n"
        ));
        let path = directory.join("odoogate.toml");
        std::fs::write(&path, config)?;

        let token = if mode == DaemonMode::Observe {
            None
        } else {
            let output = Command::new(&self.odoogate)
                .args(["token", "create", "bench", "--config"])
                .arg(&path)
                .output()
                .context("failed to run odoogate token create")?;
            let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if !output.status.success() || !token.starts_with("odg_") {
                bail!("odoogate token create failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            Some(token)
        };
        Ok((path, token))
    }

    /// Starts `odoogate run` with `config` and waits until it serves.
    pub fn start_odoogate(&self, config: &Path, mode: DaemonMode) -> anyhow::Result<ChildGuard> {
        let mut command = Command::new(&self.odoogate);
        command.arg("run").arg("--config").arg(config);
        self.start_daemon(command, &config.with_file_name("odoogate.log"), mode, Duration::from_secs(30))
    }

    /// Starts `odoogate run` with `config` under valgrind's callgrind, which
    /// prints the instructions the daemon executed to `log` when it exits.
    pub fn start_odoogate_under_callgrind(&self, config: &Path, mode: DaemonMode, log: &Path) -> anyhow::Result<ChildGuard> {
        // ODOOGATE_BENCH_PROFILES keeps each run's profile for
        // callgrind_annotate, named by the daemon's pid.
        let out_file = match std::env::var_os("ODOOGATE_BENCH_PROFILES") {
            Some(dir) => Path::new(&dir).join("callgrind.out.%p"),
            None => PathBuf::from("/dev/null"),
        };
        let mut command = Command::new("valgrind");
        command.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out_file.display())).arg(&self.odoogate);
        command.arg("run").arg("--config").arg(config);
        // Under callgrind the daemon runs many times slower.
        self.start_daemon(command, log, mode, Duration::from_secs(180))
    }

    fn start_daemon(&self, mut command: Command, log: &Path, mode: DaemonMode, timeout: Duration) -> anyhow::Result<ChildGuard> {
        command.env("RUST_LOG", "info");
        let ready = match mode {
            DaemonMode::Observe => "Observing Odoo traffic",
            DaemonMode::Steered => "Proxying Odoo traffic steered by sk_lookup",
            DaemonMode::Listen => "Proxying Odoo traffic in listen mode",
        };
        let mut daemon = ChildGuard::spawn("odoogate run", command, &Placement::default(), log)?;
        let waited =
            lab::wait_for("odoogate run to start", timeout, || lab::file_contains(log, ready) || matches!(daemon.try_wait(), Ok(Some(_))));
        if waited.is_err() || !lab::file_contains(log, ready) {
            bail!("odoogate run did not start:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        Ok(daemon)
    }

    /// Stops a steered daemon and removes its pinned steering, so the
    /// upstream's port is reachable directly again.
    pub fn stop_steered(&self, mut daemon: ChildGuard) -> anyhow::Result<()> {
        daemon.stop(Duration::from_secs(15))?;
        odoogate::steer::uninstall(&self.pins).context("failed to remove the steering pins")?;
        Ok(())
    }

    /// Runs `odoogate status --json` against the daemon of `config`.
    pub fn status(&self, config: &Path) -> anyhow::Result<serde_json::Value> {
        let output = Command::new(&self.odoogate).args(["status", "--json", "--config"]).arg(config).output()?;
        if !output.status.success() {
            bail!("odoogate status failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        serde_json::from_slice(&output.stdout).context("odoogate status printed invalid JSON")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(error) = odoogate::steer::uninstall(&self.pins) {
            eprintln!("failed to remove the steering pins in {}: {error}", self.pins.display());
        }
        let _ = std::fs::remove_dir(&self.pins);
        if std::env::var_os("ODOOGATE_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
    }
}

/// Position of `odoogate run` between the clients and the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonMode {
    Observe,
    /// Enforce mode with sk_lookup steering: clients dial the upstream's port.
    Steered,
    /// Enforce mode on its own address, [`LISTEN_PORT`].
    Listen,
}

fn nginx_config(directory: &Path) -> String {
    let temp = directory.join("temp");
    let temp = temp.display();
    format!(
        "daemon off;\n\
         worker_processes auto;\n\
         pid {dir}/nginx.pid;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {temp}/body;\n\
         \x20   proxy_temp_path {temp}/proxy;\n\
         \x20   fastcgi_temp_path {temp}/fastcgi;\n\
         \x20   uwsgi_temp_path {temp}/uwsgi;\n\
         \x20   scgi_temp_path {temp}/scgi;\n\
         \x20   client_max_body_size 64m;\n\
         \x20   client_body_buffer_size 1m;\n\
         \x20   upstream odoo {{\n\
         \x20       server 127.0.0.1:{UPSTREAM_PORT};\n\
         \x20       keepalive 64;\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{NGINX_PORT};\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://odoo;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         \x20           proxy_set_header Host $host;\n\
         \x20           proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        dir = directory.display(),
    )
}

/// Waits until a TCP connection to 127.0.0.1:`port` succeeds.
pub fn wait_listening(name: &str, port: u16) -> anyhow::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    lab::wait_for(name, Duration::from_secs(10), || TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Raises the soft open-file limit to `limit`, or to the hard limit when
/// that is lower (raising the hard limit needs CAP_SYS_RESOURCE), and returns
/// the limit now in force.
fn raise_open_file_limit(limit: libc::rlim_t) -> anyhow::Result<libc::rlim_t> {
    let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only the struct passed by reference.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return Err(std::io::Error::last_os_error()).context("failed to read RLIMIT_NOFILE");
    }
    let requested = libc::rlimit { rlim_cur: limit.min(current.rlim_max), rlim_max: current.rlim_max };
    // SAFETY: setrlimit reads only the struct passed by reference.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &requested) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("failed to raise RLIMIT_NOFILE to {}", requested.rlim_cur));
    }
    Ok(requested.rlim_cur)
}

/// Resident memory of a process, in KiB, from /proc/PID/status.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resident {
    /// VmRSS: everything resident.
    pub total: u64,
    /// RssAnon: the heap and stacks.
    pub anonymous: u64,
    /// RssFile + RssShmem: mapped files and shared memory, which include
    /// the pages of eBPF ring buffers and maps mapped into the process.
    pub mapped: u64,
}

/// Reads the resident memory of `pid`.
pub fn resident(pid: u32) -> anyhow::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|line| line.starts_with(name)).with_context(|| format!("no {name} line"))?;
        line.split_whitespace().nth(1).with_context(|| format!("empty {name} line"))?.parse().with_context(|| format!("invalid {name}"))
    };
    Ok(Resident { total: field("VmRSS:")?, anonymous: field("RssAnon:")?, mapped: field("RssFile:")? + field("RssShmem:")? })
}

/// CPU time of a process or process tree, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime { user: self.user - earlier.user, system: self.system - earlier.system }
    }
}

/// CPU time used so far by `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    cpu_time(pid).map(CpuTime::total)
}

/// User and system time used so far by `pid`.
fn cpu_time(pid: u32) -> anyhow::Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; the fields after it are fixed.
    let after_name = &stat[stat.rfind(')').context("malformed /proc/PID/stat")? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, so 11 and 12
    // counted from the state field.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("no CLK_TCK")? as f64;
    Ok(CpuTime { user: utime as f64 / ticks, system: stime as f64 / ticks })
}

/// CPU time used so far by `pid` and its child processes (nginx's
/// workers).
pub fn process_tree_cpu_time(pid: u32) -> anyhow::Result<CpuTime> {
    let mut total = cpu_time(pid)?;
    for entry in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let parent = stat.rfind(')').and_then(|end| stat[end + 2..].split_whitespace().nth(1)).and_then(|ppid| ppid.parse::<u32>().ok());
        if parent == Some(pid) {
            // A child that exits between the two reads is skipped.
            let child = cpu_time(child).unwrap_or_default();
            total.user += child.user;
            total.system += child.system;
        }
    }
    Ok(total)
}

/// Counts the open sockets of `pid`.
pub fn socket_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

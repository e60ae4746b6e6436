//! A small Odoo site for end-to-end tests: an "odoo" network namespace
//! with the Odoo-like upstream and `odoogate run`, a "clients" namespace
//! joined by a veth pair, cgroups for local clients, and a private journald.
//! An enforce site ([`Site::start_enforce`]) also has a token store, a
//! service credentials file and its own bpffs pin directory. Every piece is
//! torn down when the [`Site`] drops, also on panic.

#![allow(dead_code)]

use anyhow::{Context as _, bail};
use odoogate::demo::lab::{self, Cgroup, ChildGuard, Netns, Placement};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// An audit record as journalctl prints it: field name to value.
pub type Record = BTreeMap<String, String>;

pub const API_KEY: &str = "5f1a6b2c3d4e5f60718293a4b5c6d7e8f9012345";
pub const OTHER_API_KEY: &str = "a0b1c2d3e4f5061728394a5b6c7d8e9f00112233";
pub const PASSWORD: &str = "admin";
pub const ODOO_ADDRESS: &str = "10.214.0.1";
pub const ODOO_IPV6_ADDRESS: &str = "fd00:214::1";
/// The only IPv6 address of the clients namespace, so it is the source of
/// every IPv6 connection from there.
pub const CLIENT_IPV6_ADDRESS: &str = "fd00:214::2";

static SITE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns false (and says why) when the end-to-end tests cannot run here.
pub fn can_run() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: end-to-end tests need root (run `cargo xtask test` as root)");
        return false;
    }
    true
}

fn binary() -> PathBuf {
    std::env::var_os("ODOOGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/odoogate"))
}

pub fn python() -> PathBuf {
    std::env::var_os("ODOOGATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/.venv/bin/python"))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A systemd-journald in its own mount namespace, with tmpfs on /run and
/// /var/log/journal, so the host's journal is never touched.
pub struct Journal {
    process: ChildGuard,
}

impl Journal {
    pub fn start(workdir: &Path) -> anyhow::Result<Self> {
        let script = "mount -t tmpfs -o mode=755 tmpfs /run \
            && mkdir -p /run/systemd/journal /run/log/journal \
            && if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi \
            && exec /lib/systemd/systemd-journald";
        let mut command = Command::new("unshare");
        command.args(["--mount", "--propagation", "private", "sh", "-c", script]);
        let process = ChildGuard::spawn("journald", command, &Placement::default(), &workdir.join("journald.log"))?;
        let socket = PathBuf::from(format!("/proc/{}/root/run/systemd/journal/socket", process.pid()));
        lab::wait_for("journald's socket", Duration::from_secs(10), || socket.exists())?;
        Ok(Self { process })
    }

    pub fn mount_ns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.process.pid()))
    }

    /// Reads every odoogate record with `journalctl -o json`.
    pub fn records(&self) -> anyhow::Result<Vec<Record>> {
        let output = Command::new("nsenter")
            .arg(format!("--mount={}", self.mount_ns().display()))
            .args(["journalctl", "-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=odoogate"])
            .output()
            .context("failed to run journalctl")?;
        if !output.status.success() {
            bail!("journalctl failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let mut records = Vec::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let value: serde_json::Value = serde_json::from_str(line)?;
            let mut record = Record::new();
            for (key, value) in value.as_object().context("record is not an object")? {
                if let Some(text) = value.as_str() {
                    record.insert(key.clone(), text.to_owned());
                }
            }
            records.push(record);
        }
        Ok(records)
    }

    /// Runs `odoogate audit ARGS` inside the journal's mount namespace.
    pub fn odoogate_audit(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("nsenter")
            .arg(format!("--mount={}", self.mount_ns().display()))
            .arg(binary())
            .arg("audit")
            .args(args)
            .output()
            .context("failed to run odoogate audit")?;
        if !output.status.success() {
            bail!("odoogate audit failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// What `odoogate run` does on a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteMode {
    Observe,
    /// Enforce mode steered by sk_lookup, with scoped tokens. `guard` lists
    /// the site cgroups put in `[guard] allow_cgroups`; `None` leaves the
    /// guard off.
    Enforce { guard: Option<Vec<String>> },
}

/// A bpffs directory of steering pins, removed on drop (after the daemon,
/// which is declared before it in [`Site`]).
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    fn new(tag: &str) -> Self {
        let path = PathBuf::from(format!("/sys/fs/bpf/odoogate-e2e-{tag}"));
        let _ = odoogate::steer::uninstall(&path);
        Self { path }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(error) = odoogate::steer::uninstall(&self.path) {
            eprintln!("failed to remove the pins in {}: {error}", self.path.display());
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The whole test site. Fields drop in declaration order: processes first,
/// then pins, cgroups and namespaces.
pub struct Site {
    pub daemon: Option<ChildGuard>,
    pub pins: Option<PinDir>,
    pub mode: SiteMode,
    /// Daemons started so far; each writes its own log.
    pub daemon_starts: u32,
    pub upstream: ChildGuard,
    pub journal: Journal,
    pub workdir: PathBuf,
    pub port: u16,
    pub cgroups: Vec<Cgroup>,
    pub odoo: Netns,
    pub clients: Netns,
    pub client_addresses: Vec<String>,
}

impl Site {
    /// Builds the site and starts `odoogate run` with `integrations` (TOML
    /// `[[integration]]` tables) and `unidentified` (allow or deny).
    /// `cgroups` are created under a per-site parent and may be referenced
    /// in the TOML as `{cgroup:NAME}`.
    pub fn start(name: &str, cgroups: &[&str], integrations: &str, unidentified: &str) -> anyhow::Result<Self> {
        Self::start_in(SiteMode::Observe, name, cgroups, integrations, unidentified, "", &[])
    }

    /// Builds a site like [`Site::start`] or [`Site::start_enforce`] (no
    /// guard, no cgroups) whose configuration also has `sections`, such as
    /// `[capture]` or `[proxy]` tables.
    pub fn start_with_sections(mode: SiteMode, name: &str, integrations: &str, unidentified: &str, sections: &str) -> anyhow::Result<Self> {
        Self::start_in(mode, name, &[], integrations, unidentified, sections, &[])
    }

    /// Builds an enforce site like [`Site::start_enforce`] (no guard, no
    /// cgroups) whose Odoo-like upstream also gets `upstream_args`, such as
    /// `--keep-alive`.
    pub fn start_enforce_with_upstream_args(
        name: &str,
        integrations: &str,
        unidentified: &str,
        upstream_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_in(SiteMode::Enforce { guard: None }, name, &[], integrations, unidentified, "", upstream_args)
    }

    /// Builds the site and starts `odoogate run` in enforce mode, steered
    /// by sk_lookup in the odoo namespace, with a token store (empty until
    /// [`Site::create_token`]) and a service credentials file holding
    /// [`API_KEY`]. `guard` names site cgroups for `[guard] allow_cgroups`.
    pub fn start_enforce(
        name: &str,
        cgroups: &[&str],
        integrations: &str,
        unidentified: &str,
        guard: Option<&[&str]>,
    ) -> anyhow::Result<Self> {
        let guard = guard.map(|names| names.iter().map(|name| (*name).to_owned()).collect());
        Self::start_in(SiteMode::Enforce { guard }, name, cgroups, integrations, unidentified, "", &[])
    }

    fn start_in(
        mode: SiteMode,
        name: &str,
        cgroups: &[&str],
        integrations: &str,
        unidentified: &str,
        sections: &str,
        upstream_args: &[&str],
    ) -> anyhow::Result<Self> {
        let index = SITE_COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{index}", std::process::id());
        let port = 18100 + (std::process::id() % 500) as u16 * 10 + index as u16;
        let workdir = std::env::temp_dir().join(format!("odoogate-e2e-{name}-{tag}"));
        let _ = std::fs::remove_dir_all(&workdir);
        std::fs::create_dir_all(&workdir)?;

        let odoo = Netns::create(&format!("oge2e-o-{tag}"))?;
        let clients = Netns::create(&format!("oge2e-c-{tag}"))?;
        let client_addresses = vec!["10.214.0.2".to_owned(), "10.214.0.3".to_owned()];
        let odoo_ipv4 = format!("{ODOO_ADDRESS}/24");
        let odoo_ipv6 = format!("{ODOO_IPV6_ADDRESS}/64");
        let client_ipv6 = format!("{CLIENT_IPV6_ADDRESS}/64");
        lab::connect_veth(
            &odoo,
            "og-odoo",
            &[&odoo_ipv4, &odoo_ipv6],
            &clients,
            "og-clients",
            &["10.214.0.2/24", "10.214.0.3/24", &client_ipv6],
        )?;
        let mut created = Vec::new();
        let mut integrations = integrations.to_owned();
        for cgroup in cgroups {
            let made = Cgroup::create(&format!("odoogate-e2e-{tag}/{cgroup}"))?;
            integrations = integrations.replace(&format!("{{cgroup:{cgroup}}}"), made.relative());
            created.push(made);
        }

        let journal = Journal::start(&workdir)?;
        let in_odoo = Placement { netns: Some(odoo.path()), ..Placement::default() };

        let script = odoogate::upstream::write_script(&workdir)?;
        let ready = workdir.join("upstream.ready");
        // `[::]` accepts IPv4 connections too (the script turns IPV6_V6ONLY
        // off), so one socket serves both families.
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .args(["--listen", &format!("[::]:{port}"), "--password", PASSWORD])
            .args(["--api-key", API_KEY, "--api-key", OTHER_API_KEY, "--request-log"])
            .arg(workdir.join("upstream-requests.jsonl"))
            .arg("--ready-file")
            .arg(&ready)
            .args(upstream_args);
        let upstream = ChildGuard::spawn("odoo-like upstream", command, &in_odoo, &workdir.join("upstream.log"))?;
        lab::wait_for("the upstream", Duration::from_secs(10), || ready.exists())?;

        let (mode_name, enforce_sections, pins) = match &mode {
            SiteMode::Observe => ("observe", String::new(), None),
            SiteMode::Enforce { guard } => {
                let pins = PinDir::new(&tag);
                let sections = enforce_sections(&workdir, &pins, guard.as_deref(), &created)?;
                ("enforce", sections, Some(pins))
            }
        };
        let control = format!("[control]\nsocket = \"{}\"\n\n", workdir.join("control.sock").display());
        let config = format!(
            "[odoo]\nports = [{port}]\ninterfaces = [\"lo\", \"og-odoo\"]\n\n[policy]\nmode = \"{mode_name}\"\nunidentified = \"{unidentified}\"\n\n[audit]\noutput = \"journald\"\n\n{control}{enforce_sections}{sections}\n{integrations}"
        );
        let config_path = workdir.join("odoogate.toml");
        std::fs::write(&config_path, config)?;

        let mut site = Self {
            daemon: None,
            pins,
            mode,
            daemon_starts: 0,
            upstream,
            journal,
            workdir,
            port,
            cgroups: created,
            odoo,
            clients,
            client_addresses,
        };
        site.start_daemon()?;
        Ok(site)
    }

    /// Starts `odoogate run` and waits until it serves. Each start logs to
    /// its own file, `odoogate.log` for the first and `odoogate-N.log`
    /// after it.
    pub fn start_daemon(&mut self) -> anyhow::Result<()> {
        let log = self.daemon_log_path(self.daemon_starts);
        self.daemon_starts += 1;
        let mut command = Command::new(binary());
        command.arg("run").arg("--config").arg(self.config_path()).env("RUST_LOG", "info");
        let placement = Placement {
            netns: Some(self.odoo.path()),
            mount_ns: Some(self.journal.mount_ns()),
            cgroup: None,
        };
        let ready = match self.mode {
            SiteMode::Observe => "Observing Odoo traffic",
            SiteMode::Enforce { .. } => "Proxying Odoo traffic steered by sk_lookup",
        };
        let mut daemon = ChildGuard::spawn("odoogate run", command, &placement, &log)?;
        let waited = lab::wait_for("odoogate run to attach", Duration::from_secs(30), || {
            lab::file_contains(&log, ready) || matches!(daemon.try_wait(), Ok(Some(_)))
        });
        if waited.is_err() || !lab::file_contains(&log, ready) {
            bail!("odoogate run did not start:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        self.daemon = Some(daemon);
        Ok(())
    }

    /// Kills the daemon with SIGKILL and waits for it to exit, as a crash
    /// would end it.
    pub fn kill_daemon(&mut self) -> anyhow::Result<()> {
        let Some(mut daemon) = self.daemon.take() else { bail!("no daemon is running") };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), nix::sys::signal::Signal::SIGKILL)?;
        lab::wait_for("odoogate run to die", Duration::from_secs(10), || matches!(daemon.try_wait(), Ok(Some(_))))?;
        Ok(())
    }

    /// Returns `odoogate status --json` of the running daemon, read from
    /// the control socket in the work directory.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let socket = self.workdir.join("control.sock");
        let output = self.odoogate(&["status", "--json", "--socket", &socket.to_string_lossy()])?;
        serde_json::from_str(&output).context("odoogate status printed invalid JSON")
    }

    /// Returns the daemon's process id, 0 when none runs.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, ChildGuard::pid)
    }

    pub fn config_path(&self) -> PathBuf {
        self.workdir.join("odoogate.toml")
    }

    fn daemon_log_path(&self, start: u32) -> PathBuf {
        match start {
            0 => self.workdir.join("odoogate.log"),
            n => self.workdir.join(format!("odoogate-{n}.log")),
        }
    }

    /// Runs `odoogate token create INTEGRATION` with the site's config,
    /// waits until the running daemon has loaded the changed store, and
    /// returns the token it printed.
    pub fn create_token(&self, integration: &str) -> anyhow::Result<String> {
        let config = self.config_path();
        let output = self.change_tokens(&["token", "create", integration, "--config", &config.to_string_lossy()])?;
        let token = output.trim();
        if !token.starts_with("odg_") {
            bail!("odoogate token create printed no token: {output}");
        }
        Ok(token.to_owned())
    }

    /// Runs an `odoogate token` command that changes the store and waits
    /// until the running daemon has loaded the changed store.
    pub fn change_tokens(&self, args: &[&str]) -> anyhow::Result<String> {
        const LOADED: &str = "Loaded the changed token store";
        let loads = || self.daemon_log().matches(LOADED).count();
        let before = loads();
        let output = self.odoogate(args)?;
        if self.daemon.is_some() {
            lab::wait_for("the daemon to load the changed token store", Duration::from_secs(10), || loads() > before)?;
        }
        Ok(output)
    }

    /// Runs `odoogate ARGS` on the host and returns its standard output;
    /// fails with its standard error.
    pub fn odoogate(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(binary())
            .args(args)
            .output()
            .with_context(|| format!("failed to run odoogate {args:?}"))?;
        if !output.status.success() {
            bail!("odoogate {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The calls the upstream received, from its `--request-log`, one JSON
    /// object each (no credential, only `credential_sha256_prefix`). With
    /// `--keep-alive` each also has `connection`, the number of the
    /// upstream connection it came on.
    pub fn upstream_requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.workdir.join("upstream-requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Runs a client script from tests/clients with the test Python and
    /// returns the JSON lines it printed. `cgroup` names one of the site's
    /// cgroups; `remote` runs it in the clients namespace instead of on the
    /// Odoo host.
    pub fn run_client(&self, script: &str, args: &[&str], cgroup: Option<&str>, remote: bool) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut command = Command::new(python());
        command.arg(workspace_root().join("tests/clients").join(script)).args(args);
        let cgroup_path = cgroup.map(|name| {
            self.cgroups
                .iter()
                .find(|c| c.relative().ends_with(&format!("/{name}")))
                .map(|c| c.path().to_path_buf())
                .expect("unknown cgroup name")
        });
        let placement = Placement {
            netns: Some(if remote { self.clients.path() } else { self.odoo.path() }),
            mount_ns: None,
            cgroup: cgroup_path,
        };
        lab::place(&mut command, &placement)?;
        let output = command.output().with_context(|| format!("failed to run {script}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("{script} failed: {}\n{stdout}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
        }
        stdout
            .lines()
            .filter(|line| line.starts_with('{'))
            .map(|line| serde_json::from_str(line).context("client printed invalid JSON"))
            .collect()
    }

    pub fn local_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the upstream's standard output and error.
    pub fn upstream_log(&self) -> String {
        std::fs::read_to_string(self.workdir.join("upstream.log")).unwrap_or_default()
    }

    pub fn remote_url(&self) -> String {
        format!("http://{ODOO_ADDRESS}:{}", self.port)
    }

    /// Returns the upstream's URL over IPv6, for clients in the clients
    /// namespace.
    pub fn remote_ipv6_url(&self) -> String {
        format!("http://[{ODOO_IPV6_ADDRESS}]:{}", self.port)
    }

    /// Stops the daemon (so it writes every pending record), waits until
    /// journald has stored at least `min_calls` call records, and returns
    /// every odoogate record.
    pub fn stop_and_read(&mut self, min_calls: usize) -> anyhow::Result<Vec<Record>> {
        std::thread::sleep(Duration::from_millis(300));
        if let Some(mut daemon) = self.daemon.take() {
            let clean = daemon.stop(Duration::from_secs(10))?;
            if !clean {
                bail!("odoogate run exited with an error:\n{}", self.daemon_log());
            }
        }
        // journald stores datagrams asynchronously: wait for the minimum,
        // then until two reads in a row see the same number of records.
        let mut records: Vec<Record> = Vec::new();
        let mut previous = usize::MAX;
        let _ = lab::wait_for("the call records in journald", Duration::from_secs(10), || {
            records = self.journal.records().unwrap_or_default();
            let stable = records.len() == previous;
            previous = records.len();
            calls(&records).len() >= min_calls && stable
        });
        Ok(records)
    }

    /// The logs of every daemon started, in order.
    pub fn daemon_log(&self) -> String {
        (0..self.daemon_starts.max(1))
            .map(|start| std::fs::read_to_string(self.daemon_log_path(start)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("--- restarted ---\n")
    }

    pub fn daemon_is_running(&mut self) -> bool {
        match self.daemon.as_mut() {
            Some(daemon) => matches!(daemon.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- odoogate log ---\n{}", self.daemon_log());
        } else {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
    }
}

/// Writes the service credentials file (0600) and returns the config
/// sections of an enforce site.
fn enforce_sections(workdir: &Path, pins: &PinDir, guard: Option<&[String]>, cgroups: &[Cgroup]) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::io::Write as _;

    let credentials = workdir.join("credentials.toml");
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&credentials)?;
    writeln!(file, "default = \"{API_KEY}\"")?;
    let mut sections = format!(
        "[tokens]\nstore = \"{}\"\ncredentials_file = \"{}\"\n\n[steering]\npin_dir = \"{}\"\n\n",
        workdir.join("tokens.json").display(),
        credentials.display(),
        pins.path.display()
    );
    if let Some(names) = guard {
        let allowed: Vec<String> = names
            .iter()
            .map(|name| {
                let cgroup = cgroups.iter().find(|c| c.relative().ends_with(&format!("/{name}"))).context("unknown guard cgroup")?;
                Ok(format!("\"{}\"", cgroup.relative()))
            })
            .collect::<anyhow::Result<_>>()?;
        sections.push_str(&format!("[guard]\nallow_cgroups = [{}]\n\n", allowed.join(", ")));
    }
    Ok(sections)
}

/// Returns the call records (ODOOGATE_EVENT=call).
pub fn calls(records: &[Record]) -> Vec<&Record> {
    records.iter().filter(|r| r.get("ODOOGATE_EVENT").map(String::as_str) == Some("call")).collect()
}

/// Returns the call records for `model` and `method`.
pub fn find<'a>(records: &'a [Record], model: Option<&str>, method: &str) -> Vec<&'a Record> {
    calls(records)
        .into_iter()
        .filter(|r| r.get("ODOOGATE_MODEL").map(String::as_str) == model && r.get("ODOOGATE_METHOD").map(String::as_str) == Some(method))
        .collect()
}

/// Asserts that `record` has `field` = `expected`, naming the record on failure.
pub fn assert_field(record: &Record, field: &str, expected: &str) {
    assert_eq!(
        record.get(field).map(String::as_str),
        Some(expected),
        "{field} of record {:?}",
        record.get("MESSAGE")
    );
}

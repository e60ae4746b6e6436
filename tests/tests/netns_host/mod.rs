//! One host in a network namespace for daemon tests: the Odoo-like
//! upstream on 127.0.0.1:PORT, a cgroup for the client, a configuration
//! with one integration matched by that cgroup, and the daemon started as
//! a child. Every piece is removed when its guard drops.

#![allow(dead_code)]

use anyhow::{Context as _, bail};
use odoogate::demo::lab::{self, Cgroup, ChildGuard, Netns, Placement};
use odoogate::scratch::ScratchDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A started daemon, or its log when it exited before it was ready.
pub type DaemonStart = anyhow::Result<Result<ChildGuard, String>>;

/// Odoo's port inside the namespace.
pub const PORT: u16 = 18069;
/// The integration the client's cgroup matches.
pub const INTEGRATION: &str = "netns-client";

/// A network namespace with the Odoo-like upstream on 127.0.0.1:PORT and a
/// cgroup for the client. Fields drop in order: the upstream first.
pub struct Host {
    upstream: ChildGuard,
    pub client_cgroup: Cgroup,
    pub netns: Netns,
    pub workdir: ScratchDir,
}

impl Host {
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let tag = format!("{name}-{}", std::process::id());
        let workdir = ScratchDir::new(&format!("netns-{name}"));
        let netns = Netns::create(&format!("ognh-{tag}"))?;
        let client_cgroup = Cgroup::create(&format!("odoogate-netns-{tag}/client"))?;

        let script = odoogate::upstream::write_script(&workdir)?;
        let ready = workdir.join("upstream.ready");
        let mut command = Command::new("python3");
        command.arg(&script).args(["--listen", &format!("127.0.0.1:{PORT}"), "--ready-file"]).arg(&ready);
        let placement = Placement { netns: Some(netns.path()), ..Placement::default() };
        let upstream = ChildGuard::spawn("odoo-like upstream", command, &placement, &workdir.join("upstream.log"))?;
        lab::wait_for("the upstream", Duration::from_secs(10), || ready.exists())?;
        Ok(Self { upstream, client_cgroup, netns, workdir })
    }

    /// Writes odoogate.toml: `[odoo]` for PORT on `lo`, audit records to
    /// a JSON lines file, a control socket in the work directory,
    /// `sections` (at least `[policy]`), and the client's integration.
    pub fn write_config(&self, sections: &str) -> anyhow::Result<PathBuf> {
        let config = format!(
            "[odoo]\nports = [{PORT}]\ninterfaces = [\"lo\"]\n\n[audit]\noutput = \"file\"\nfile = \"{audit}\"\n\n\
             [control]\nsocket = \"{socket}\"\n\n{sections}\n\n\
             [[integration]]\nname = \"{INTEGRATION}\"\nmatch = {{ cgroup = \"{cgroup}\" }}\n\
             allow = [{{ models = [\"res.partner\"], methods = [\"search_read\"] }}]\n",
            audit = self.audit_path().display(),
            socket = self.workdir.join("control.sock").display(),
            cgroup = self.client_cgroup.relative(),
        );
        let path = self.workdir.join("odoogate.toml");
        std::fs::write(&path, config)?;
        Ok(path)
    }

    pub fn audit_path(&self) -> PathBuf {
        self.workdir.join("audit.jsonl")
    }

    /// Starts `command` (an `odoogate run`, possibly behind a wrapper such
    /// as setpriv) in the namespace, logging to `log` in the work
    /// directory. Returns the daemon once `ready` is in the log, or the log
    /// when the daemon exited first.
    pub fn start_daemon(&self, command: Command, log: &str, ready: &str) -> DaemonStart {
        let log = self.workdir.join(log);
        let placement = Placement { netns: Some(self.netns.path()), ..Placement::default() };
        let mut daemon = ChildGuard::spawn("odoogate run", command, &placement, &log)?;
        lab::wait_for("odoogate run to start or exit", Duration::from_secs(30), || {
            lab::file_contains(&log, ready) || matches!(daemon.try_wait(), Ok(Some(_)))
        })?;
        if lab::file_contains(&log, ready) {
            Ok(Ok(daemon))
        } else {
            Ok(Err(std::fs::read_to_string(&log).unwrap_or_default()))
        }
    }

    /// Runs python3 `code` in the namespace (in the client cgroup when
    /// `in_client_cgroup`) and returns what it printed.
    pub fn python(&self, code: &str, in_client_cgroup: bool) -> anyhow::Result<String> {
        let mut command = Command::new("python3");
        command.args(["-c", code]);
        let placement = Placement {
            netns: Some(self.netns.path()),
            mount_ns: None,
            cgroup: in_client_cgroup.then(|| self.client_cgroup.path().to_path_buf()),
        };
        lab::place(&mut command, &placement)?;
        let output = command.output().context("failed to run python3")?;
        if !output.status.success() {
            bail!("python3 failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Makes an XML-RPC search_read from the client cgroup.
    pub fn call_from_client_cgroup(&self) -> anyhow::Result<()> {
        let client = format!(
            "import xmlrpc.client\n\
             models = xmlrpc.client.ServerProxy('http://127.0.0.1:{PORT}/xmlrpc/2/object')\n\
             print(models.execute_kw('odoo19', 2, 'admin', 'res.partner', 'search_read', [[]], {{'limit': 1}}))\n"
        );
        self.python(&client, true).map(drop)
    }

    /// Waits for the audit record of the client's search_read.
    pub fn wait_for_call_record(&self) -> anyhow::Result<serde_json::Value> {
        let mut found = None;
        let waited = lab::wait_for("the audit record of the call", Duration::from_secs(10), || {
            let text = std::fs::read_to_string(self.audit_path()).unwrap_or_default();
            found = text
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|record| record["ODOOGATE_METHOD"] == "search_read");
            found.is_some()
        });
        waited.with_context(|| format!("audit file: {}", std::fs::read_to_string(self.audit_path()).unwrap_or_default()))?;
        Ok(found.expect("wait_for returned after a record was found"))
    }
}

pub fn binary() -> PathBuf {
    std::env::var_os("ODOOGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf().join("target/release/odoogate"))
}

pub fn effective_capabilities(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hex = status.lines().find_map(|line| line.strip_prefix("CapEff:")).context("no CapEff line")?;
    Ok(u64::from_str_radix(hex.trim(), 16)?)
}


//! `odoogate demo`: a self-contained demonstration of observe mode, then
//! of enforce mode on the same site.
//!
//! It builds a small site in private network namespaces: an "Odoo host"
//! namespace running the Odoo-like upstream and the real daemon (`odoogate
//! run`, eBPF programs attached to that namespace's `lo` and veth), and a
//! "clients" namespace with two addresses. Four integrations then call
//! Odoo, each identified differently (API key fingerprint, source IP,
//! cgroup, and one unidentified script), including calls outside their
//! scopes, and the demo prints the audit records the daemon wrote. Then the
//! daemon runs again in enforce mode, steering the connections to Odoo's
//! port to itself with sk_lookup, and the same clients run again: calls
//! outside their scopes are denied before they reach Odoo. Everything it
//! creates is removed when it ends.

pub mod lab;

use crate::audit::reader::{self, AuditQuery};
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use lab::{Bpffs, Cgroup, ChildGuard, Netns, Placement};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

/// The demo's clients, embedded so the binary is self-contained.
const CLIENTS: &str = include_str!("clients.py");

/// The API key the demo's MCP assistant uses (an Odoo-shaped key, 40 hex
/// characters, valid only inside the demo's upstream).
const MCP_API_KEY: &str = "0d00da7e5ca1ab1e0d00da7e5ca1ab1e0d00da7e";

const ODOO_ADDRESS: &str = "10.213.0.1";
const WEBSITE_ADDRESS: &str = "10.213.0.2";
const UNKNOWN_ADDRESS: &str = "10.213.0.3";
const ODOO_PORT: u16 = 8069;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the working directory (configuration, logs, audit file).
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the demo creates network namespaces and cgroups and loads eBPF programs: run it as root");
    }
    let workdir = std::env::temp_dir().join(format!("odoogate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).with_context(|| format!("failed to create {}", workdir.display()))?;
    let result = run_in(&workdir);
    if args.keep {
        println!("\nWorking directory kept: {}", workdir.display());
    } else {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    result
}

/// One run of the daemon in the demo: its mode, and for enforce mode the
/// directory of the steering pins and the service credentials file, with
/// which the MCP assistant switches from its API key to a scoped token.
struct Stage<'a> {
    mode: &'static str,
    pin_dir: Option<&'a Path>,
    credentials_file: Option<&'a Path>,
}

/// Returns the demo daemon's configuration for `stage`. Its control socket
/// and state files are in the work directory, so the demo neither reaches
/// nor changes a daemon installed on the host.
fn demo_config(workdir: &Path, stage: &Stage<'_>, audit_file: &Path, stats_cgroup: &str) -> String {
    let fingerprint = crate::secret::Secret::new(MCP_API_KEY).sha256_hex();
    let steering = match stage.pin_dir {
        Some(pin_dir) => format!("\n[steering]\npin_dir = \"{}\"\n", pin_dir.display()),
        None => String::new(),
    };
    let (credentials, assistant_match) = match stage.credentials_file {
        Some(file) => (format!("credentials_file = \"{}\"\n", file.display()), "token = true".to_owned()),
        None => (String::new(), format!("api_key_sha256 = [\"{fingerprint}\"]")),
    };
    format!(
        r#"# odoogate demo configuration ({mode} mode)
[odoo]
ports = [{ODOO_PORT}]
interfaces = ["lo", "og-odoo"]

[policy]
mode = "{mode}"
unidentified = "deny"
grants_file = "{grants}"

[audit]
output = "file"
file = "{audit}"

[control]
socket = "{control}"

[tokens]
store = "{tokens}"
{credentials}{steering}
[[integration]]
name = "mcp-assistant"
match = {{ {assistant_match} }}
allow = [
  {{ models = ["res.partner", "crm.lead", "sale.order"], methods = ["read", "search_read", "search", "search_count", "fields_get", "name_search"] }},
  {{ models = ["crm.lead", "sale.order"], methods = ["write"] }},
]

[[integration]]
name = "website-form"
match = {{ ip = ["{WEBSITE_ADDRESS}/32"] }}
allow = [{{ models = ["crm.lead"], methods = ["create"] }}]

[[integration]]
name = "stats-sync"
match = {{ cgroup = "{stats_cgroup}" }}
allow = [{{ models = ["x_saas_stat"], methods = ["create", "write", "search_read"] }}]
"#,
        mode = stage.mode,
        grants = workdir.join("grants.json").display(),
        audit = audit_file.display(),
        control = workdir.join("control.sock").display(),
        tokens = workdir.join("tokens.json").display(),
    )
}

fn run_in(workdir: &Path) -> anyhow::Result<ExitCode> {
    let tag = std::process::id();
    println!("odoogate demo: building a small Odoo site in private network namespaces\n");

    // Resources first, so they are dropped after the processes using them.
    let odoo_ns = Netns::create(&format!("ogdemo-odoo-{tag}"))?;
    let clients_ns = Netns::create(&format!("ogdemo-clients-{tag}"))?;
    lab::connect_veth(
        &odoo_ns,
        "og-odoo",
        &[&format!("{ODOO_ADDRESS}/24")],
        &clients_ns,
        "og-clients",
        &[&format!("{WEBSITE_ADDRESS}/24"), &format!("{UNKNOWN_ADDRESS}/24")],
    )?;
    let stats_cgroup = Cgroup::create(&format!("odoogate-demo-{tag}/stats-sync"))?;
    let other_cgroup = Cgroup::create(&format!("odoogate-demo-{tag}/assistant"))?;

    let upstream_script = crate::upstream::write_script(workdir)?;
    let clients_script = workdir.join("clients.py");
    std::fs::write(&clients_script, CLIENTS)?;
    let in_odoo = Placement { netns: Some(odoo_ns.path()), ..Placement::default() };

    let ready_file = workdir.join("upstream.ready");
    let mut upstream_command = Command::new("python3");
    upstream_command
        .arg(&upstream_script)
        .args(["--listen", &format!("0.0.0.0:{ODOO_PORT}"), "--api-key", MCP_API_KEY, "--ready-file"])
        .arg(&ready_file);
    let _upstream = ChildGuard::spawn("the Odoo-like upstream", upstream_command, &in_odoo, &workdir.join("upstream.log"))?;
    lab::wait_for("the Odoo-like upstream", Duration::from_secs(10), || ready_file.exists())?;
    println!("  Odoo-like upstream listening on {ODOO_ADDRESS}:{ODOO_PORT} (namespace {})", odoo_ns.name());

    let url = format!("http://{ODOO_ADDRESS}:{ODOO_PORT}");
    let scenarios: [(&str, Placement, Option<&str>); 4] = [
        ("mcp-assistant", Placement { cgroup: Some(other_cgroup.path().to_path_buf()), ..in_odoo.clone() }, None),
        ("website-form", Placement { netns: Some(clients_ns.path()), ..Placement::default() }, Some(WEBSITE_ADDRESS)),
        ("stats-sync", Placement { cgroup: Some(stats_cgroup.path().to_path_buf()), ..in_odoo.clone() }, None),
        ("unknown-script", Placement { netns: Some(clients_ns.path()), ..Placement::default() }, Some(UNKNOWN_ADDRESS)),
    ];
    // `key` is what the MCP assistant sends as its credential.
    let run_clients = |enforce: bool, key: &str| -> anyhow::Result<usize> {
        let mut failures = 0;
        for (scenario, placement, source_ip) in &scenarios {
            let scenario_url = if placement.netns == in_odoo.netns { format!("http://127.0.0.1:{ODOO_PORT}") } else { url.clone() };
            let mut command = Command::new("python3");
            command.arg(&clients_script).arg(scenario).arg(&scenario_url).args(["--api-key", key]);
            if let Some(ip) = source_ip {
                command.args(["--source-ip", ip]);
            }
            if enforce {
                command.arg("--enforce");
            }
            lab::place(&mut command, placement)?;
            let status = command.status().with_context(|| format!("failed to run the {scenario} client"))?;
            if !status.success() {
                failures += 1;
            }
        }
        Ok(failures)
    };

    let observe = Stage { mode: "observe", pin_dir: None, credentials_file: None };
    let audit_file = workdir.join("audit.jsonl");
    let config_file = write_config(workdir, &observe, &audit_file)?;
    let daemon = start_daemon(workdir, &config_file, observe.mode, &in_odoo, "Observing Odoo traffic")?;
    println!("  odoogate run: observe mode, eBPF programs on lo and og-odoo, cgroup programs on the cgroup v2 root\n");
    let mut failures = run_clients(false, MCP_API_KEY)?;
    stop_daemon(workdir, daemon)?;
    print_attribution(&audit_file, "WOULD_DENY")?;

    let bpffs = Bpffs::mount(&workdir.join("bpffs"))?;
    let credentials_file = workdir.join("credentials.toml");
    write_private(&credentials_file, &format!("default = \"{MCP_API_KEY}\"\n"))?;
    let pin_dir = bpffs.pin_dir();
    let enforce = Stage { mode: "enforce", pin_dir: Some(&pin_dir), credentials_file: Some(&credentials_file) };
    let enforce_audit = workdir.join("audit-enforce.jsonl");
    println!("\nThe same site in enforce mode:\n");
    let config_file = write_config(workdir, &enforce, &enforce_audit)?;
    let token = create_token(&config_file)?;
    let daemon = start_daemon(workdir, &config_file, enforce.mode, &in_odoo, "Proxying Odoo traffic steered by sk_lookup")?;
    println!(
        "  odoogate run: enforce mode, new connections to port {ODOO_PORT} steered to odoogate by sk_lookup; \
         the clients keep Odoo's address"
    );
    println!(
        "  mcp-assistant now sends a scoped token (odg_…, from `odoogate token create`) where it sent its API key; \
         odoogate swaps it for the shared key in {}\n",
        credentials_file.display()
    );
    failures += run_clients(true, &token)?;
    stop_daemon(workdir, daemon)?;
    print_attribution(&enforce_audit, "DENIED")?;
    drop(bpffs);

    if failures > 0 {
        bail!("{failures} demo client run(s) failed; see the output above");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the configuration of `stage` and returns its path.
fn write_config(workdir: &Path, stage: &Stage<'_>, audit_file: &Path) -> anyhow::Result<std::path::PathBuf> {
    let config_file = workdir.join(format!("odoogate-{}.toml", stage.mode));
    std::fs::write(&config_file, demo_config(workdir, stage, audit_file, "odoogate-demo-*/stats-sync"))?;
    Ok(config_file)
}

/// Writes `text` to a new file with mode 0600, as the service credentials
/// file must be.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Creates a scoped token of the MCP assistant with `odoogate token create`
/// and returns it.
fn create_token(config_file: &Path) -> anyhow::Result<String> {
    let output = Command::new(std::env::current_exe().context("cannot find the odoogate binary")?)
        .args(["token", "create", "mcp-assistant", "--config"])
        .arg(config_file)
        .output()
        .context("failed to run odoogate token create")?;
    if !output.status.success() {
        bail!("odoogate token create failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Starts `odoogate run` in `mode` with `config_file` in the Odoo namespace
/// and waits until its log shows `ready`.
fn start_daemon(workdir: &Path, config_file: &Path, mode: &str, in_odoo: &Placement, ready: &str) -> anyhow::Result<ChildGuard> {
    let daemon_log = workdir.join(format!("odoogate-{mode}.log"));
    let mut daemon_command = Command::new(std::env::current_exe().context("cannot find the odoogate binary")?);
    daemon_command.arg("run").arg("--config").arg(config_file);
    let mut daemon = ChildGuard::spawn("odoogate run", daemon_command, in_odoo, &daemon_log)?;
    let started = lab::wait_for("odoogate run to attach its programs", Duration::from_secs(30), || {
        lab::file_contains(&daemon_log, ready) || matches!(daemon.try_wait(), Ok(Some(_)))
    });
    if started.is_err() || !lab::file_contains(&daemon_log, ready) {
        let log = std::fs::read_to_string(&daemon_log).unwrap_or_default();
        bail!("odoogate run did not start in {mode} mode:\n{log}");
    }
    Ok(daemon)
}

/// Stops the daemon so that it writes every pending record, after a moment
/// for the observe pipeline to see the last responses.
fn stop_daemon(workdir: &Path, mut daemon: ChildGuard) -> anyhow::Result<()> {
    std::thread::sleep(Duration::from_millis(500));
    if !daemon.stop(Duration::from_secs(10))? {
        let logs: Vec<String> = ["observe", "enforce"]
            .iter()
            .filter_map(|mode| std::fs::read_to_string(workdir.join(format!("odoogate-{mode}.log"))).ok())
            .collect();
        bail!("odoogate run did not exit cleanly:\n{}", logs.join("\n"));
    }
    Ok(())
}

/// Prints the records of `audit_file` and one line per integration.
/// `denied` heads the column of calls not allowed: `WOULD_DENY` in observe
/// mode, `DENIED` in enforce mode.
fn print_attribution(audit_file: &Path, denied: &str) -> anyhow::Result<()> {
    let query = AuditQuery {
        since: None,
        integration: None,
        decision: None,
        model: None,
        file: Some(audit_file.to_path_buf()),
        journal_directory: None,
    };
    let entries = reader::read(&query)?.entries;
    println!(
        "\nThe audit records odoogate wrote to its JSON lines file, which the demo removes at the end \
         (`odoogate audit --file FILE` prints such a file, and `odoogate audit` the journal):\n"
    );
    reader::print_table(&entries, &mut std::io::stdout().lock())?;
    println!("\nAttribution table:\n");
    print_summary(&entries, denied);
    Ok(())
}

/// Prints one line per integration: how it was identified and how many of
/// its calls were allowed and denied (or, in observe mode, would have been).
fn print_summary(entries: &[reader::AuditEntry], denied_header: &str) {
    let mut rows: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for entry in entries.iter().filter(|e| e.field("ODOOGATE_EVENT") == Some("call")) {
        let integration = entry.field("ODOOGATE_INTEGRATION").unwrap_or("(unidentified)").to_owned();
        let identity = entry.field("ODOOGATE_IDENTITY").unwrap_or("none").to_owned();
        let counts = rows.entry((integration, identity)).or_default();
        match entry.field("ODOOGATE_DECISION") {
            Some("allow") => counts.0 += 1,
            _ => counts.1 += 1,
        }
    }
    println!("{:<16} {:<10} {:>7} {:>11}", "INTEGRATION", "IDENTITY", "ALLOWED", denied_header);
    for ((integration, identity), (allowed, denied)) in rows {
        println!("{integration:<16} {identity:<10} {allowed:>7} {denied:>11}");
    }
}

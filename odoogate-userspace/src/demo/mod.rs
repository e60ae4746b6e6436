//! `odoogate demo`: a self-contained demonstration of observe mode.
//!
//! It builds a small site in private network namespaces: an "Odoo host"
//! namespace running the Odoo-like upstream and the real daemon (`odoogate
//! run`, eBPF programs attached to that namespace's `lo` and veth), and a
//! "clients" namespace with two addresses. Four integrations then call
//! Odoo, each identified differently (API key fingerprint, source IP,
//! cgroup, and one unidentified script), including calls outside their
//! scopes, and the demo prints the audit records the daemon wrote.
//! Everything it creates is removed when it ends.

pub mod lab;

use crate::audit::reader::{self, AuditQuery};
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use lab::{Cgroup, ChildGuard, Netns, Placement};
use std::path::{Path, PathBuf};
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

/// Returns the demo daemon's configuration. Its control socket is in the
/// work directory, so `odoogate status` on the host never reaches it.
fn demo_config(workdir: &Path, audit_file: &Path, stats_cgroup: &str) -> String {
    let fingerprint = crate::secret::Secret::new(MCP_API_KEY).sha256_hex();
    format!(
        r#"# odoogate demo configuration (observe mode)
[odoo]
ports = [{ODOO_PORT}]
interfaces = ["lo", "og-odoo"]

[policy]
mode = "observe"
unidentified = "deny"

[audit]
output = "file"
file = "{audit}"

[control]
socket = "{control}"

[[integration]]
name = "mcp-assistant"
match = {{ api_key_sha256 = ["{fingerprint}"] }}
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
        audit = audit_file.display(),
        control = workdir.join("control.sock").display(),
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
        &format!("{ODOO_ADDRESS}/24"),
        &clients_ns,
        "og-clients",
        &[&format!("{WEBSITE_ADDRESS}/24"), &format!("{UNKNOWN_ADDRESS}/24")],
    )?;
    let stats_cgroup = Cgroup::create(&format!("odoogate-demo-{tag}/stats-sync"))?;
    let other_cgroup = Cgroup::create(&format!("odoogate-demo-{tag}/assistant"))?;

    let upstream_script = crate::upstream::write_script(workdir)?;
    let clients_script = workdir.join("clients.py");
    std::fs::write(&clients_script, CLIENTS)?;
    let audit_file = workdir.join("audit.jsonl");
    let config_file = workdir.join("odoogate.toml");
    std::fs::write(&config_file, demo_config(workdir, &audit_file, "odoogate-demo-*/stats-sync"))?;

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

    let daemon_log = workdir.join("odoogate.log");
    let mut daemon_command = Command::new(std::env::current_exe().context("cannot find the odoogate binary")?);
    daemon_command.arg("run").arg("--config").arg(&config_file);
    let mut daemon = ChildGuard::spawn("odoogate run", daemon_command, &in_odoo, &daemon_log)?;
    let started = lab::wait_for("odoogate run to attach its programs", Duration::from_secs(30), || {
        lab::file_contains(&daemon_log, "Observing Odoo traffic") || matches!(daemon.try_wait(), Ok(Some(_)))
    });
    if started.is_err() || !lab::file_contains(&daemon_log, "Observing Odoo traffic") {
        let log = std::fs::read_to_string(&daemon_log).unwrap_or_default();
        bail!("odoogate run did not start:\n{log}");
    }
    println!("  odoogate run: observe mode, eBPF programs on lo and og-odoo, cgroup programs on the cgroup v2 root\n");

    let url = format!("http://{ODOO_ADDRESS}:{ODOO_PORT}");
    let scenarios: [(&str, Placement, Option<&str>); 4] = [
        ("mcp-assistant", Placement { cgroup: Some(other_cgroup.path().to_path_buf()), ..in_odoo.clone() }, None),
        ("website-form", Placement { netns: Some(clients_ns.path()), ..Placement::default() }, Some(WEBSITE_ADDRESS)),
        ("stats-sync", Placement { cgroup: Some(stats_cgroup.path().to_path_buf()), ..in_odoo.clone() }, None),
        ("unknown-script", Placement { netns: Some(clients_ns.path()), ..Placement::default() }, Some(UNKNOWN_ADDRESS)),
    ];
    let mut failures = 0;
    for (scenario, placement, source_ip) in scenarios {
        let scenario_url = if placement.netns == in_odoo.netns { format!("http://127.0.0.1:{ODOO_PORT}") } else { url.clone() };
        let mut command = Command::new("python3");
        command.arg(&clients_script).arg(scenario).arg(&scenario_url).args(["--api-key", MCP_API_KEY]);
        if let Some(ip) = source_ip {
            command.args(["--source-ip", ip]);
        }
        lab::place(&mut command, &placement)?;
        let status = command.status().with_context(|| format!("failed to run the {scenario} client"))?;
        if !status.success() {
            failures += 1;
        }
    }

    // Give the pipeline a moment to see the last responses, then stop it so
    // it writes every pending record.
    std::thread::sleep(Duration::from_millis(500));
    let stopped_cleanly = daemon.stop(Duration::from_secs(10))?;
    if !stopped_cleanly {
        let log = std::fs::read_to_string(&daemon_log).unwrap_or_default();
        bail!("odoogate run did not exit cleanly:\n{log}");
    }

    print_attribution(&audit_file)?;
    if failures > 0 {
        bail!("{failures} demo client(s) failed; see the output above");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_attribution(audit_file: &PathBuf) -> anyhow::Result<()> {
    let query = AuditQuery {
        since: None,
        integration: None,
        decision: None,
        model: None,
        file: Some(audit_file.clone()),
        journal_directory: None,
    };
    let entries = reader::read(&query)?;
    println!(
        "\nThe audit records odoogate wrote to its JSON lines file, which the demo removes at the end \
         (`odoogate audit --file FILE` prints such a file, and `odoogate audit` the journal):\n"
    );
    reader::print_table(&entries, &mut std::io::stdout().lock())?;
    println!("\nAttribution table:\n");
    print_summary(&entries);
    Ok(())
}

/// Prints one line per integration: how it was identified and how many of
/// its calls were allowed and would have been denied.
fn print_summary(entries: &[reader::AuditEntry]) {
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
    println!("{:<16} {:<10} {:>7} {:>11}", "INTEGRATION", "IDENTITY", "ALLOWED", "WOULD_DENY");
    for ((integration, identity), (allowed, denied)) in rows {
        println!("{integration:<16} {identity:<10} {allowed:>7} {denied:>11}");
    }
}

//! The packaged unit's capability set is enough for `odoogate run`. The
//! daemon runs as root limited by setpriv to exactly the unit's
//! `CapabilityBoundingSet=` (as systemd limits it), in a network namespace
//! the test creates. It attaches its programs there and on the cgroup v2
//! root. Then it attributes a call from a client in a test cgroup by that
//! cgroup. Both observe mode and enforce mode (steering pinned in a bpffs
//! of the test's own) are run. Needs root.

mod common;
mod netns_host;

use anyhow::bail;
use netns_host::{DaemonStart, Host, INTEGRATION, binary, effective_capabilities};
use odoogate::demo::lab::Bpffs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const UNIT: &str = include_str!("../../packaging/odoogate.service");

/// Capability numbers from linux/capability.h, for the ones a unit may name.
const CAPABILITY_NUMBERS: [(&str, u32); 4] = [("CAP_NET_ADMIN", 12), ("CAP_SYS_ADMIN", 21), ("CAP_PERFMON", 38), ("CAP_BPF", 39)];

/// Returns the capabilities of the unit's `KEY=` line.
fn unit_capabilities(key: &str) -> Vec<String> {
    let lines: Vec<&str> = UNIT.lines().filter_map(|line| line.strip_prefix(key)).collect();
    assert_eq!(lines.len(), 1, "the unit has one {key} line");
    lines[0].split_whitespace().map(str::to_owned).collect()
}

fn capability_mask(capabilities: &[String]) -> u64 {
    capabilities
        .iter()
        .map(|name| {
            let (_, number) = CAPABILITY_NUMBERS
                .iter()
                .find(|(known, _)| known == name)
                .unwrap_or_else(|| panic!("the test does not know the number of {name}"));
            1u64 << number
        })
        .fold(0, |mask, bit| mask | bit)
}

/// Returns setpriv's form of `capabilities`: `-all,+bpf,+net_admin`.
fn setpriv_list(capabilities: &[String]) -> String {
    let mut list = String::from("-all");
    for name in capabilities {
        list.push_str(",+");
        list.push_str(&name.trim_start_matches("CAP_").to_lowercase());
    }
    list
}

/// Starts `odoogate run` limited by setpriv to `capabilities`.
fn start_limited(host: &Host, config: &Path, capabilities: &[String], ready: &str) -> DaemonStart {
    let list = setpriv_list(capabilities);
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--bounding-set={list}"))
        .arg(format!("--inh-caps={list}"))
        .arg(format!("--ambient-caps={list}"))
        .arg(binary())
        .args(["run", "--config"])
        .arg(config);
    host.start_daemon(command, &format!("odoogate-{}-capabilities.log", capabilities.len()), ready)
}

/// Runs the daemon with the unit's capabilities and checks that it runs
/// with exactly them and attributes the client's call by its cgroup.
fn check_mode(host: &Host, config: &Path, ready: &str) -> anyhow::Result<()> {
    let capabilities = unit_capabilities("CapabilityBoundingSet=");
    let mut daemon = match start_limited(host, config, &capabilities, ready)? {
        Ok(daemon) => daemon,
        Err(log) => bail!("odoogate run failed with the unit's capabilities {capabilities:?}:\n{log}"),
    };
    assert_eq!(
        effective_capabilities(daemon.pid())?,
        capability_mask(&capabilities),
        "the daemon's effective set is not exactly the unit's {capabilities:?}"
    );

    host.call_from_client_cgroup()?;
    let record = host.wait_for_call_record()?;
    assert_eq!(record["ODOOGATE_IDENTITY"], "cgroup", "{record}");
    assert_eq!(record["ODOOGATE_CGROUP"], host.client_cgroup.relative(), "{record}");
    assert_eq!(record["ODOOGATE_INTEGRATION"], INTEGRATION, "{record}");
    assert!(daemon.stop(Duration::from_secs(10))?, "odoogate run did not exit cleanly on SIGTERM");
    Ok(())
}

#[test]
fn unit_grants_the_same_ambient_capabilities() {
    assert_eq!(unit_capabilities("AmbientCapabilities="), unit_capabilities("CapabilityBoundingSet="));
}

#[test]
fn observe_runs_with_unit_capabilities() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let host = Host::start("observe")?;
    let config = host.write_config("[policy]\nmode = \"observe\"\nunidentified = \"allow\"")?;
    check_mode(&host, &config, "Observing Odoo traffic")?;

    // The limit applies: without CAP_BPF the startup checks fail.
    let without_bpf: Vec<String> =
        unit_capabilities("CapabilityBoundingSet=").into_iter().filter(|name| name != "CAP_BPF").collect();
    match start_limited(&host, &config, &without_bpf, "Observing Odoo traffic")? {
        Ok(_) => bail!("odoogate run started without CAP_BPF"),
        Err(log) => assert!(log.contains("lacks CAP_BPF"), "unexpected failure without CAP_BPF:\n{log}"),
    }
    Ok(())
}

#[test]
fn enforce_steering_runs_with_unit_capabilities() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let host = Host::start("enforce")?;
    let bpffs = Bpffs::mount(&host.workdir.join("bpffs"))?;
    let sections = format!(
        "[policy]\nmode = \"enforce\"\nunidentified = \"allow\"\n\n[steering]\npin_dir = \"{}\"\n\n[tokens]\nstore = \"{}\"",
        bpffs.path.join("odoogate").display(),
        host.workdir.join("tokens.json").display()
    );
    let config = host.write_config(&sections)?;
    check_mode(&host, &config, "Proxying Odoo traffic steered by sk_lookup")
}

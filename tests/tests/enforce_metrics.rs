//! Enforce mode with sk_lookup steering reports its eBPF programs in the
//! Prometheus metrics: the steering, the connect and cgroup_skb programs
//! that record the origins of local clients, and the guard, with their
//! counters. Needs root.

mod common;
mod netns_host;

use netns_host::{Host, binary};
use odoogate::demo::lab::Bpffs;
use std::process::Command;
use std::time::Duration;

const METRICS_PORT: u16 = 19464;

/// Returns the value of the sample line that starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.parse().expect("a numeric sample value"))
}

fn scrape(host: &Host) -> anyhow::Result<String> {
    let code = format!("import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics').read().decode(), end='')");
    host.python(&code, false)
}

#[test]
fn enforce_metrics_report_programs() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let host = Host::start("metrics")?;
    let bpffs = Bpffs::mount(&host.workdir.join("bpffs"))?;
    let sections = format!(
        "[policy]\nmode = \"enforce\"\nunidentified = \"allow\"\n\n[steering]\npin_dir = \"{pins}\"\n\n\
         [tokens]\nstore = \"{tokens}\"\n\n[guard]\nallow_cgroups = [\"{client}\"]\n\n[metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"",
        pins = bpffs.path.join("odoogate").display(),
        tokens = host.workdir.join("tokens.json").display(),
        client = host.client_cgroup.relative(),
    );
    let config = host.write_config(&sections)?;
    let mut command = Command::new(binary());
    command.args(["run", "--config"]).arg(&config);
    let mut daemon = match host.start_daemon(command, "odoogate.log", "Proxying Odoo traffic steered by sk_lookup")? {
        Ok(daemon) => daemon,
        Err(log) => anyhow::bail!("odoogate run failed:\n{log}"),
    };

    host.call_from_client_cgroup()?;
    host.wait_for_call_record()?;
    let text = scrape(&host)?;

    let root = odoogate::capture::cgroup::find_cgroup2_mount()?;
    let attached = |attachment: &str| sample(&text, &format!("odoogate_ebpf_program_attached{{attachment=\"{attachment}\"}}"));
    assert_eq!(attached(&format!("sk_lookup on ports [{}]", netns_host::PORT)), Some(1.0), "{text}");
    for program in ["record_connect4", "record_connect6"] {
        assert_eq!(attached(&format!("cgroup {program} on {}", root.display())), Some(1.0), "{text}");
    }
    assert_eq!(attached(&format!("cgroup_skb egress on {}", root.display())), Some(1.0), "{text}");

    // The client's connect was steered to odoogate, and odoogate's own
    // connect to Odoo took the bypass.
    let steered = sample(&text, "odoogate_steering_connections_total{outcome=\"steered\"}");
    assert!(steered.is_some_and(|count| count >= 1.0), "{text}");
    let bypassed = sample(&text, "odoogate_steering_connections_total{outcome=\"bypassed\"}");
    assert!(bypassed.is_some_and(|count| count >= 1.0), "{text}");
    assert_eq!(sample(&text, "odoogate_steering_connections_total{outcome=\"dropped\"}"), Some(0.0), "{text}");

    let connects = sample(&text, "odoogate_ebpf_connects_total");
    assert!(connects.is_some_and(|count| count >= 1.0), "the connect programs saw the client: {text}");
    assert_eq!(sample(&text, "odoogate_ebpf_guard_refusals_total"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "odoogate_capture_losses_total{reason=\"ring_full\"}"), Some(0.0), "{text}");

    assert!(daemon.stop(Duration::from_secs(10))?, "odoogate run did not exit cleanly on SIGTERM");
    drop(bpffs);
    Ok(())
}

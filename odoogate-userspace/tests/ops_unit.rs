//! The packaged systemd unit passes `systemd-analyze verify`, with its
//! `ExecStart=` binary pointed at the one under test. This checks the
//! directives and their values. `cargo xtask test --packaging` starts the
//! unit for real, under systemd in a container.

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../../packaging/odoogate.service");

#[test]
fn unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("odoogate-ops-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let binary = env!("CARGO_BIN_EXE_odoogate");
    let unit = UNIT.replace("/usr/bin/odoogate", binary);
    let path = dir.join("odoogate.service");
    std::fs::write(&path, unit).unwrap();

    let output = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify failed: {stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze verify warned: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unit_runs_the_documented_commands() {
    let directive = |key: &str| -> Vec<&str> {
        UNIT.lines().filter_map(|line| line.strip_prefix(key)).collect()
    };
    assert_eq!(directive("Type="), ["notify"]);
    assert_eq!(directive("ExecStart="), ["/usr/bin/odoogate run --config /etc/odoogate/odoogate.toml"]);
    assert_eq!(directive("ExecReload="), ["/usr/bin/odoogate reload --config /etc/odoogate/odoogate.toml"]);
    assert_eq!(directive("CapabilityBoundingSet="), ["CAP_BPF CAP_NET_ADMIN CAP_PERFMON"]);
    assert_eq!(directive("AmbientCapabilities="), ["CAP_BPF CAP_NET_ADMIN CAP_PERFMON"]);
    assert_eq!(directive("ReadWritePaths="), ["/sys/fs/bpf"]);
    // ProtectKernelTunables=yes would keep /sys/fs/bpf read-only.
    assert_eq!(directive("ProtectKernelTunables="), Vec::<&str>::new());
    assert_eq!(directive("LoadCredential="), ["odoogate-credentials"]);
    assert_eq!(directive("StateDirectoryMode="), ["0700"]);
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/odoogate.service").exists());
}

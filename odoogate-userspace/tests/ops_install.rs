//! `odoogate install --prefix DIR`: writes the unit, a default
//! configuration that `odoogate check` accepts and the state directory,
//! and never overwrites an existing configuration.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

fn odoogate(args: &[&str], prefix: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_odoogate")).args(args).arg(prefix).output().expect("odoogate runs")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_writes_then_keeps_config() {
    let prefix = std::env::temp_dir().join(format!("odoogate-ops-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);

    let first = odoogate(&["install", "--binary", "/opt/odoogate/bin/odoogate", "--prefix"], &prefix);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}{}", String::from_utf8_lossy(&first.stderr));
    let unit = prefix.join("etc/systemd/system/odoogate.service");
    let config = prefix.join("etc/odoogate/odoogate.toml");
    let state = prefix.join("var/lib/odoogate");
    assert!(stdout.contains(&format!("wrote {}", unit.display())), "{stdout}");
    assert!(stdout.contains(&format!("wrote {}", config.display())), "{stdout}");
    assert!(stdout.contains(&format!("wrote {}", state.display())), "{stdout}");

    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(unit_text.contains("ExecStart=/opt/odoogate/bin/odoogate run --config /etc/odoogate/odoogate.toml"), "{unit_text}");
    assert!(!unit_text.contains("/usr/bin/odoogate"), "{unit_text}");
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(mode(&config), 0o640);
    assert_eq!(mode(&state), 0o700);

    let check = Command::new(env!("CARGO_BIN_EXE_odoogate")).args(["check", "--config"]).arg(&config).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("mode: observe"));

    std::fs::write(&config, "# edited by the operator\n").unwrap();
    let second = odoogate(&["install", "--binary", "/opt/odoogate/bin/odoogate", "--prefix"], &prefix);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("kept {}", config.display())), "{stdout}");
    assert!(stdout.contains(&format!("kept {}", state.display())), "{stdout}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# edited by the operator\n");
    let _ = std::fs::remove_dir_all(&prefix);
}

#[test]
fn install_reports_unwritable_prefix() {
    // A regular file where the prefix directory should be.
    let prefix = std::env::temp_dir().join(format!("odoogate-ops-install-file-{}", std::process::id()));
    std::fs::write(&prefix, "").unwrap();
    let output = odoogate(&["install", "--prefix"], &prefix);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed to create the directory of"), "{stderr}");
    let _ = std::fs::remove_file(&prefix);
}

use super::*;
use crate::config;

const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
";

const MOUNTS_V1: &str = "\
sysfs /sys sysfs rw 0 0
tmpfs /sys/fs/cgroup tmpfs ro,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0
";

const MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 22 0:24 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw
33 22 0:30 / /sys/fs/bpf rw,nosuid shared:13 - bpf bpf rw,mode=700
";

/// The mounts `ip netns exec` leaves: its own sysfs, and a bpffs mounted
/// in its mount namespace, which the host's init does not see.
const PRIVATE_MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
612 600 0:85 / /sys rw,relatime - sysfs ogtr3-odoo rw
613 612 0:86 / /sys/fs/bpf rw,relatime - bpf bpf rw
";

/// CapEff of root: every capability up to CAP_CHECKPOINT_RESTORE (40).
const ROOT_CAPS: &str = "000001ffffffffff";

fn status(cap_eff: &str) -> String {
    format!("Name:\todoogate\nCapInh:\t0000000000000000\nCapPrm:\t{cap_eff}\nCapEff:\t{cap_eff}\n")
}

fn healthy() -> HostReadings {
    HostReadings {
        osrelease: Ok("6.8.0-45-generic\n".to_owned()),
        mounts: Ok(MOUNTS.to_owned()),
        status: Ok(status(ROOT_CAPS)),
        interfaces: Ok(vec!["eth0".to_owned(), "lo".to_owned()]),
        own_mountinfo: Ok(MOUNTINFO.to_owned()),
        host_mountinfo: Ok(MOUNTINFO.to_owned()),
    }
}

fn observe_config() -> Config {
    config::parse(
        "[odoo]\nports = [8069]\ninterfaces = [\"lo\", \"eth0\"]\n[policy]\nmode = \"observe\"\nunidentified = \"allow\"\n",
        "test.toml",
    )
    .unwrap()
}

fn enforce_config(extra: &str) -> Config {
    config::parse(
        &format!(
            "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n[policy]\nmode = \"enforce\"\nunidentified = \"deny\"\n{extra}"
        ),
        "test.toml",
    )
    .unwrap()
}

fn failures(config: &Config, readings: &HostReadings) -> Vec<Failure> {
    match check(config, readings) {
        Ok(()) => Vec::new(),
        Err(PreflightError(failures)) => failures,
    }
}

#[test]
fn healthy_host_passes() {
    assert!(check(&observe_config(), &healthy()).is_ok());
    assert!(check(&enforce_config(""), &healthy()).is_ok());
}

#[test]
fn kernel_release_parses() {
    assert_eq!(KernelVersion::parse("6.6.0").unwrap(), KernelVersion { major: 6, minor: 6 });
    assert_eq!(KernelVersion::parse("6.18.44-fc-v1252\n").unwrap(), KernelVersion { major: 6, minor: 18 });
    assert_eq!(KernelVersion::parse("5.15+debian").unwrap(), KernelVersion { major: 5, minor: 15 });
    assert!(KernelVersion::parse("linux").is_err());
    assert!(KernelVersion::parse("6").is_err());
}

#[test]
fn old_kernel_fails() {
    let readings = HostReadings { osrelease: Ok("6.1.0-26-amd64".to_owned()), ..healthy() };
    let failures = failures(&observe_config(), &readings);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].check, Check::Kernel);
    assert!(failures[0].problem.contains("6.1"), "{}", failures[0].problem);
    assert!(failures[0].fix.contains("6.6"), "{}", failures[0].fix);
}

#[test]
fn cgroup_v1_host_fails() {
    let readings = HostReadings { mounts: Ok(MOUNTS_V1.to_owned()), ..healthy() };
    let failures = failures(&observe_config(), &readings);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].check, Check::CgroupV2);
}

#[test]
fn missing_bpffs_fails_steering_only() {
    let mounts = MOUNTS.replace("bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0\n", "");
    let readings = HostReadings { mounts: Ok(mounts), ..healthy() };
    assert!(check(&observe_config(), &readings).is_ok());

    let failures = failures(&enforce_config(""), &readings);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].check, Check::Bpffs);
    assert!(failures[0].problem.contains("/sys/fs/bpf/odoogate"), "{}", failures[0].problem);
    assert!(failures[0].problem.contains("/sys (sysfs)"), "{}", failures[0].problem);
    assert!(failures[0].fix.contains("mount -t bpf bpf /sys/fs/bpf"), "{}", failures[0].fix);
}

#[test]
fn pin_dir_outside_bpffs_fails() {
    let config = enforce_config("[steering]\npin_dir = \"/run/odoogate\"\n");
    let failures = failures(&config, &healthy());
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].check, Check::Bpffs);
}

#[test]
fn private_bpffs_fails_steering() {
    let readings = HostReadings { own_mountinfo: Ok(PRIVATE_MOUNTINFO.to_owned()), ..healthy() };
    let failures = failures(&enforce_config(""), &readings);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].check, Check::Bpffs);
    assert!(failures[0].problem.contains("the host's mount namespace does not see"), "{}", failures[0].problem);
    assert!(failures[0].fix.contains("nsenter --net="), "{}", failures[0].fix);

    assert!(check(&observe_config(), &readings).is_ok(), "observe mode pins nothing");
}

#[test]
fn unreadable_host_mountinfo_skips_check() {
    let unreadable = ReadingError::Unreadable { source_name: "/proc/1/mountinfo", message: "permission denied".to_owned() };
    let readings = HostReadings { own_mountinfo: Ok(PRIVATE_MOUNTINFO.to_owned()), host_mountinfo: Err(unreadable), ..healthy() };
    assert!(check(&enforce_config(""), &readings).is_ok());
}

#[test]
fn mountinfo_lines_parse() {
    let readings = healthy();
    let mounts = readings.own_mount_info().unwrap();
    assert_eq!(mounts[2], MountInfoEntry { device: "0:30".to_owned(), mount_point: PathBuf::from("/sys/fs/bpf"), fs_type: "bpf".to_owned() });
    let broken = HostReadings { own_mountinfo: Ok("33 22 0:30 / /sys/fs/bpf rw\n".to_owned()), ..healthy() };
    assert!(matches!(broken.own_mount_info(), Err(ReadingError::MountInfoLine(_))));
}

#[test]
fn escaped_mount_point_decodes() {
    let readings = HostReadings { mounts: Ok("bpf /sys/fs/bpf\\040pins bpf rw 0 0\n".to_owned()), ..healthy() };
    let mounts = readings.mounts().unwrap();
    assert_eq!(mounts[0].mount_point, PathBuf::from("/sys/fs/bpf pins"));
    assert_eq!(mounts[0].fs_type, "bpf");
}

#[test]
fn truncated_mount_line_is_error() {
    let readings = HostReadings { mounts: Ok("bpf /sys/fs/bpf\n".to_owned()), ..healthy() };
    assert!(matches!(readings.mounts(), Err(ReadingError::MountLine(_))));
    let failures = failures(&observe_config(), &readings);
    assert_eq!(failures[0].check, Check::Readings);
}

#[test]
fn missing_interface_fails() {
    let readings = HostReadings { interfaces: Ok(vec!["lo".to_owned()]), ..healthy() };
    let failures = failures(&observe_config(), &readings);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].check, Check::Interfaces);
    assert!(failures[0].problem.contains("\"eth0\""), "{}", failures[0].problem);
}

#[test]
fn missing_capabilities_are_named() {
    // CAP_NET_ADMIN (12) only.
    let mask = 1u64 << 12;
    let readings = HostReadings { status: Ok(status(&format!("{mask:016x}"))), ..healthy() };
    let failures = failures(&observe_config(), &readings);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].check, Check::Capabilities);
    assert!(failures[0].problem.contains("CAP_BPF"), "{}", failures[0].problem);
    assert!(failures[0].problem.contains("CAP_PERFMON"), "{}", failures[0].problem);
    assert!(!failures[0].problem.contains("CAP_NET_ADMIN"), "{}", failures[0].problem);
}

#[test]
fn sys_admin_stands_in_for_bpf_and_perfmon() {
    // CAP_NET_ADMIN (12) and CAP_SYS_ADMIN (21), as the kernel accepts.
    let mask = (1u64 << 12) | (1u64 << 21);
    let readings = HostReadings { status: Ok(status(&format!("{mask:016x}"))), ..healthy() };
    assert!(failures(&observe_config(), &readings).is_empty());

    // CAP_SYS_ADMIN alone: CAP_NET_ADMIN is still missing.
    let mask = 1u64 << 21;
    let readings = HostReadings { status: Ok(status(&format!("{mask:016x}"))), ..healthy() };
    let failures = failures(&observe_config(), &readings);
    assert_eq!(failures.len(), 1);
    assert!(failures[0].problem.ends_with("lacks CAP_NET_ADMIN"), "{}", failures[0].problem);
}

#[test]
fn invalid_cap_eff_is_error() {
    let readings = HostReadings { status: Ok("CapEff:\tzz\n".to_owned()), ..healthy() };
    assert_eq!(readings.effective_capabilities(), Err(ReadingError::CapEff("zz".to_owned())));
    let readings = HostReadings { status: Ok("Name:\tx\n".to_owned()), ..healthy() };
    assert_eq!(readings.effective_capabilities(), Err(ReadingError::MissingCapEff));
}

#[test]
fn listen_mode_skips_ebpf_checks() {
    let config = enforce_config("[proxy]\nlisten = \"127.0.0.1:8070\"\nupstream = \"127.0.0.1:8069\"\n");
    let readings = HostReadings {
        osrelease: Ok("5.10.0".to_owned()),
        mounts: Ok(MOUNTS_V1.to_owned()),
        status: Ok(status("0000000000000000")),
        interfaces: Ok(Vec::new()),
        own_mountinfo: Ok(PRIVATE_MOUNTINFO.to_owned()),
        host_mountinfo: Ok(MOUNTINFO.to_owned()),
    };
    assert!(check(&config, &readings).is_ok());
}

#[test]
fn every_failure_is_reported() {
    let readings = HostReadings {
        osrelease: Ok("5.10.0".to_owned()),
        mounts: Ok(MOUNTS_V1.to_owned()),
        status: Ok(status("0000000000000000")),
        interfaces: Ok(vec!["lo".to_owned()]),
        ..healthy()
    };
    let error = check(&observe_config(), &readings).unwrap_err();
    let checks: Vec<Check> = error.0.iter().map(|failure| failure.check).collect();
    assert_eq!(checks, [Check::Kernel, Check::CgroupV2, Check::Capabilities, Check::Interfaces]);
    let message = error.to_string();
    assert!(message.starts_with("4 startup check(s) failed:"), "{message}");
    assert_eq!(message.lines().count(), 5, "{message}");
}

#[test]
fn real_host_readings_parse() {
    let readings = HostReadings::from_host();
    assert!(readings.kernel().is_ok(), "{:?}", readings.osrelease);
    assert!(readings.effective_capabilities().is_ok(), "{:?}", readings.status);
    let mounts = readings.mounts().unwrap();
    assert!(mounts.iter().any(|mount| mount.mount_point == Path::new("/")), "{mounts:?}");
    let own = readings.own_mount_info().unwrap();
    assert!(own.iter().any(|mount| mount.mount_point == Path::new("/")), "{own:?}");
    assert!(readings.host_mount_info().is_ok(), "{:?}", readings.host_mountinfo);
    assert!(readings.interfaces().unwrap().iter().any(|name| name == "lo"));
}

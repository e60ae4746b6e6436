use super::*;
use crate::config;

const MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 22 0:24 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw
33 22 0:30 / /sys/fs/bpf rw,nosuid shared:13 - bpf bpf rw,mode=700
";

const MOUNTINFO_V1: &str = "\
22 1 0:21 / /sys rw shared:7 - sysfs sysfs rw
25 22 0:23 / /sys/fs/cgroup ro shared:8 - tmpfs tmpfs ro,mode=755
27 25 0:25 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory
";

/// The mounts `ip netns exec` leaves: its own sysfs over the host's /sys,
/// whose cgroup2 mount stays listed under it, and a bpffs mounted in its
/// mount namespace, which the host's init does not see.
const PRIVATE_MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 22 0:24 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw
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
    let readings = HostReadings { own_mountinfo: Ok(MOUNTINFO_V1.to_owned()), ..healthy() };
    let failures = failures(&observe_config(), &readings);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].check, Check::CgroupV2);
}

#[test]
fn missing_bpffs_fails_steering_only() {
    let mounts = MOUNTINFO.replace("33 22 0:30 / /sys/fs/bpf rw,nosuid shared:13 - bpf bpf rw,mode=700\n", "");
    let readings = HostReadings { own_mountinfo: Ok(mounts), ..healthy() };
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
    let readings = HostReadings { own_mountinfo: Ok("33 22 0:30 / /sys/fs/bpf\\040pins rw - bpf bpf rw\n".to_owned()), ..healthy() };
    let mounts = readings.own_mount_info().unwrap();
    assert_eq!(mounts[0].mount_point, PathBuf::from("/sys/fs/bpf pins"));
    assert_eq!(mounts[0].fs_type, "bpf");
}

/// One mountinfo table serves the cgroup v2, bpffs and pin checks: lines
/// without optional fields or with several, a subtyped file system and an
/// escaped mount point.
#[test]
fn mountinfo_serves_every_mount_check() {
    let own = "\
22 1 0:21 / /sys rw,nosuid master:1 propagate_from:2 - sysfs sysfs rw
26 22 0:24 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
40 1 0:50 / /srv/fuse\\040share rw shared:20 unbindable - fuse.sshfs host:/share rw
41 1 0:51 / /srv/bpf\\040pins rw shared:21 - bpf bpf rw
";
    let host = "41 1 0:51 / /srv/bpf\\040pins rw shared:21 - bpf bpf rw\n";
    let config = enforce_config("[steering]\npin_dir = \"/srv/bpf pins/odoogate\"\n");
    let readings = HostReadings { own_mountinfo: Ok(own.to_owned()), host_mountinfo: Ok(host.to_owned()), ..healthy() };
    assert_eq!(failures(&config, &readings), Vec::new());

    let mounts = readings.own_mount_info().unwrap();
    let fuse =
        MountInfoEntry { device: "0:50".to_owned(), mount_point: PathBuf::from("/srv/fuse share"), fs_type: "fuse.sshfs".to_owned() };
    assert_eq!(mounts[2], fuse);

    let not_on_host = HostReadings { host_mountinfo: Ok(MOUNTINFO.to_owned()), ..readings.clone() };
    let failures_without_host_mount = failures(&config, &not_on_host);
    assert_eq!(failures_without_host_mount.len(), 1, "{failures_without_host_mount:?}");
    assert!(failures_without_host_mount[0].problem.contains("(at /srv/bpf pins)"), "{}", failures_without_host_mount[0].problem);

    let outside = enforce_config("[steering]\npin_dir = \"/srv/fuse share/odoogate\"\n");
    let failures_outside = failures(&outside, &readings);
    assert_eq!(failures_outside.len(), 1, "{failures_outside:?}");
    assert!(failures_outside[0].problem.ends_with("on /srv/fuse share (fuse.sshfs)"), "{}", failures_outside[0].problem);

    let without_cgroup2 = HostReadings { own_mountinfo: Ok(own.replace("cgroup2 cgroup2", "tmpfs tmpfs")), ..readings };
    let checks: Vec<Check> = failures(&config, &without_cgroup2).iter().map(|failure| failure.check).collect();
    assert_eq!(checks, [Check::CgroupV2]);
}

#[test]
fn truncated_mount_line_is_error() {
    let readings = HostReadings { own_mountinfo: Ok("33 22 0:30 / /sys/fs/bpf\n".to_owned()), ..healthy() };
    assert!(matches!(readings.own_mount_info(), Err(ReadingError::MountInfoLine(_))));
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
        status: Ok(status("0000000000000000")),
        interfaces: Ok(Vec::new()),
        own_mountinfo: Ok(MOUNTINFO_V1.to_owned()),
        host_mountinfo: Ok(MOUNTINFO.to_owned()),
    };
    assert!(check(&config, &readings).is_ok());
}

#[test]
fn every_failure_is_reported() {
    let readings = HostReadings {
        osrelease: Ok("5.10.0".to_owned()),
        status: Ok(status("0000000000000000")),
        interfaces: Ok(vec!["lo".to_owned()]),
        own_mountinfo: Ok(MOUNTINFO_V1.to_owned()),
        ..healthy()
    };
    let error = check(&observe_config(), &readings).unwrap_err();
    let checks: Vec<Check> = error.0.iter().map(|failure| failure.check).collect();
    assert_eq!(checks, [Check::Kernel, Check::CgroupV2, Check::Capabilities, Check::Interfaces]);
    let message = error.to_string();
    assert!(message.starts_with("4 startup check(s) failed:"), "{message}");
    assert_eq!(message.lines().count(), 5, "{message}");
}

/// `/proc/self/mountinfo` lists the same mount points and file system types,
/// in the same order, as `/proc/self/mounts`, so the mount checks may read
/// either. The tables are read again when a mount changed between the reads.
#[test]
fn real_mountinfo_matches_mounts() {
    let from_mounts = |table: &str| -> Vec<(PathBuf, String)> {
        table
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_ascii_whitespace().collect();
                (PathBuf::from(crate::capture::cgroup::unescape_mount_field(fields[1])), fields[2].to_owned())
            })
            .collect()
    };
    let mut last = None;
    for _ in 0..3 {
        let mounts = from_mounts(&std::fs::read_to_string("/proc/self/mounts").unwrap());
        let own = HostReadings::from_host().own_mount_info().unwrap();
        let from_mountinfo: Vec<(PathBuf, String)> = own.into_iter().map(|mount| (mount.mount_point, mount.fs_type)).collect();
        if mounts == from_mountinfo {
            return;
        }
        last = Some((mounts, from_mountinfo));
    }
    let (mounts, from_mountinfo) = last.unwrap();
    assert_eq!(from_mountinfo, mounts);
}

#[test]
fn real_host_readings_parse() {
    let readings = HostReadings::from_host();
    assert!(readings.kernel().is_ok(), "{:?}", readings.osrelease);
    assert!(readings.effective_capabilities().is_ok(), "{:?}", readings.status);
    let own = readings.own_mount_info().unwrap();
    assert!(own.iter().any(|mount| mount.mount_point == Path::new("/")), "{own:?}");
    assert!(readings.host_mount_info().is_ok(), "{:?}", readings.host_mountinfo);
    assert!(readings.interfaces().unwrap().iter().any(|name| name == "lo"));
}

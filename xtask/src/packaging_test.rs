//! `cargo xtask test --packaging`: installs the Debian package in a Debian 12
//! (bookworm) chroot, upgrades it, removes it and purges it, checking what
//! dpkg leaves behind after each step. Then it does the same in a container
//! booted with systemd, where the unit runs for real (see `boot`).
//!
//! The minbase root filesystem, with systemd added, comes from debootstrap
//! once and is cached as target/packaging/bookworm-systemd.tar.gz. Every run
//! unpacks fresh copies into target/packaging/rootfs and boot-rootfs, so a
//! run never sees an earlier run's leftovers. Needs root (debootstrap,
//! mount, chroot, systemd-nspawn).

mod boot;

use crate::{deb, run_command};
use anyhow::{Context as _, Result, bail, ensure};
use std::fs;
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Debian mirror debootstrap downloads from; `ODOOGATE_DEBIAN_MIRROR`
/// overrides it.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const SUITE: &str = "bookworm";
const CONFFILE: &str = "/etc/odoogate/odoogate.toml";
const STATE_DIR: &str = "/var/lib/odoogate";
/// Line the test appends to the installed conffile, as an operator would.
const OPERATOR_EDIT: &str = "# edited by the operator (packaging test)";
/// Line the test appends to the upgrade's shipped conffile, so dpkg sees
/// both sides changed and must apply --force-confold.
const PACKAGE_EDIT: &str = "# changed by the upgrade (packaging test)";

/// Files every installed package must contain.
const PACKAGED_FILES: &[&str] = &[
    "/usr/bin/odoogate",
    "/lib/systemd/system/odoogate.service",
    CONFFILE,
    "/usr/share/man/man1/odoogate.1.gz",
    "/usr/share/man/man1/odoogate-run.1.gz",
    "/usr/share/bash-completion/completions/odoogate",
    "/usr/share/zsh/vendor-completions/_odoogate",
    "/usr/share/fish/vendor_completions.d/odoogate.fish",
];

pub fn run(root: &Path) -> Result<()> {
    if !crate::setup::is_root()? {
        println!("packaging test skipped: needs root (debootstrap, mount and chroot)");
        return Ok(());
    }
    let started = Instant::now();
    let work_dir = root.join("target/packaging");
    fs::create_dir_all(&work_dir).with_context(|| format!("failed to create {}", work_dir.display()))?;

    let Some(cache) = timed("root filesystem cache", || rootfs_cache(&work_dir))? else {
        return Ok(());
    };
    let (first, second) = timed("two packages", || build_packages(root, &work_dir))?;
    let rootfs = work_dir.join("rootfs");
    timed("fresh root filesystem", || unpack_rootfs(&cache, &rootfs))?;

    let chroot = Chroot::mount(&rootfs)?;
    timed("install, upgrade, remove, purge", || exercise(&chroot, &first, &second))?;
    drop(chroot);
    boot::run(root, &work_dir, &cache, &first, &second)?;

    println!("packaging test passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Runs the dpkg life cycle inside `chroot` and checks each step.
fn exercise(chroot: &Chroot, first: &Package, second: &Package) -> Result<()> {
    let first_in_root = chroot.copy_in(&first.path)?;
    let second_in_root = chroot.copy_in(&second.path)?;

    chroot.run(&["dpkg", "-i", &first_in_root])?;
    check_installed(chroot, &first.version)?;

    chroot.append(CONFFILE, OPERATOR_EDIT)?;
    chroot.run(&["touch", &format!("{STATE_DIR}/tokens.json")])?;
    chroot.run(&["dpkg", "--force-confold", "-i", &second_in_root])?;
    check_installed(chroot, &second.version)?;
    check_upgrade_kept_conffile(chroot)?;

    chroot.run(&["dpkg", "-r", "odoogate"])?;
    ensure!(!chroot.exists("/usr/bin/odoogate"), "dpkg -r left /usr/bin/odoogate");
    ensure!(chroot.exists(CONFFILE), "dpkg -r removed {CONFFILE}, which only a purge may remove");
    ensure!(chroot.exists(STATE_DIR), "dpkg -r removed {STATE_DIR}, which only a purge may remove");
    check_status(chroot, "deinstall ok config-files")?;

    chroot.run(&["dpkg", "-P", "odoogate"])?;
    for leftover in [CONFFILE, "/etc/odoogate/odoogate.toml.dpkg-dist", STATE_DIR] {
        ensure!(!chroot.exists(leftover), "dpkg -P left {leftover}");
    }
    let status = chroot.output(&["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "odoogate"])?;
    ensure!(
        !status.status.success() || String::from_utf8_lossy(&status.stdout).starts_with("pn"),
        "dpkg -P left odoogate known to dpkg: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    Ok(())
}

fn check_installed(chroot: &Chroot, version: &str) -> Result<()> {
    check_status(chroot, "install ok installed")?;
    let installed = chroot.stdout(&["dpkg-query", "-W", "-f=${Version}", "odoogate"])?;
    ensure!(installed == version, "dpkg reports odoogate {installed}, expected {version}");

    for file in PACKAGED_FILES {
        ensure!(chroot.exists(file), "the installed package lacks {file}");
    }
    let conffiles = chroot.stdout(&["dpkg-query", "-W", "-f=${Conffiles}", "odoogate"])?;
    ensure!(conffiles.contains(CONFFILE), "{CONFFILE} is not a conffile; dpkg lists: {conffiles}");
    let state_mode = chroot.stdout(&["stat", "-c", "%a", STATE_DIR])?;
    ensure!(state_mode == "700", "{STATE_DIR} has mode {state_mode}, expected 700");

    let version_line = chroot.stdout(&["odoogate", "--version"])?;
    ensure!(version_line.starts_with("odoogate "), "unexpected `odoogate --version` output: {version_line}");
    chroot.run(&["odoogate", "check", "--config", CONFFILE])?;
    Ok(())
}

/// After the upgrade, the operator's edit must still be live and the
/// upgrade's own conffile must sit beside it as .dpkg-dist.
fn check_upgrade_kept_conffile(chroot: &Chroot) -> Result<()> {
    let live = chroot.read(CONFFILE)?;
    ensure!(live.contains(OPERATOR_EDIT), "the upgrade replaced the edited {CONFFILE}");
    ensure!(!live.contains(PACKAGE_EDIT), "the upgrade merged its own {CONFFILE} into the edited one");
    let shipped = chroot.read(&format!("{CONFFILE}.dpkg-dist"))?;
    ensure!(shipped.contains(PACKAGE_EDIT), "{CONFFILE}.dpkg-dist is not the upgrade's conffile");
    Ok(())
}

fn check_status(chroot: &Chroot, expected: &str) -> Result<()> {
    let status = chroot.stdout(&["dpkg-query", "-W", "-f=${Status}", "odoogate"])?;
    ensure!(status == expected, "dpkg status of odoogate is `{status}`, expected `{expected}`");
    Ok(())
}

/// A .deb and the version in its control file.
struct Package {
    path: PathBuf,
    version: String,
}

/// Builds the package at the crate version, then a second one with a higher
/// version whose shipped conffile differs (as when a release changes the
/// default configuration), for the upgrade.
fn build_packages(root: &Path, work_dir: &Path) -> Result<(Package, Package)> {
    // cargo-deb 3 deletes the package's other .deb files in its output
    // directory, so the first one is kept in `work_dir` before the second
    // is built.
    let built = deb::build_package(root, None)?;
    let first = work_dir.join(built.file_name().context("package path has no file name")?);
    fs::create_dir_all(work_dir).with_context(|| format!("failed to create {}", work_dir.display()))?;
    fs::copy(&built, &first).with_context(|| format!("failed to copy {} to {}", built.display(), first.display()))?;
    let first_version = control_field(&first, "Version")?;
    let second_version = format!("{first_version}+upgrade1");
    let second = deb::build_package(root, Some(&second_version))?;
    let second = with_changed_conffile(&second, work_dir)?;
    ensure!(
        control_field(&second, "Version")? == second_version,
        "cargo deb --deb-version did not set the package version to {second_version}"
    );
    Ok((
        Package { path: first, version: first_version },
        Package { path: second, version: second_version },
    ))
}

/// Unpacks `package`, appends PACKAGE_EDIT to its conffile, refreshes its
/// md5sums and packs it again under `work_dir`.
fn with_changed_conffile(package: &Path, work_dir: &Path) -> Result<PathBuf> {
    let tree = work_dir.join("upgrade-tree");
    remove_dir_if_exists(&tree)?;
    run_checked(Command::new("dpkg-deb").arg("--raw-extract").arg(package).arg(&tree))?;

    let conffile = tree.join(CONFFILE.trim_start_matches('/'));
    append_line(&conffile, PACKAGE_EDIT)?;
    let md5sums = tree.join("DEBIAN/md5sums");
    if md5sums.exists() {
        let listed = run_checked(Command::new("sh").current_dir(&tree).args([
            "-c",
            "find . -path ./DEBIAN -prune -o -type f -printf '%P\\0' | sort -z | xargs -0 md5sum",
        ]))?;
        fs::write(&md5sums, listed).with_context(|| format!("failed to write {}", md5sums.display()))?;
    }

    let file_name = package.file_name().context("package path has no file name")?;
    let repacked = work_dir.join(file_name);
    run_checked(Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&tree).arg(&repacked))?;
    Ok(repacked)
}

fn control_field(package: &Path, field: &str) -> Result<String> {
    let output = run_checked(Command::new("dpkg-deb").arg("--field").arg(package).arg(field))?;
    Ok(String::from_utf8_lossy(&output).trim().to_owned())
}

/// Packages debootstrap adds to minbase: systemd as PID 1 for `boot`.
const INCLUDED_PACKAGES: &str = "systemd,systemd-sysv,dbus";

/// Returns the cached root filesystem tarball, running debootstrap first
/// when there is none, or None (after printing why) when the mirror cannot
/// be reached.
fn rootfs_cache(work_dir: &Path) -> Result<Option<PathBuf>> {
    let cache = work_dir.join(format!("{SUITE}-systemd.tar.gz"));
    if cache.exists() {
        return Ok(Some(cache));
    }
    let mirror = std::env::var("ODOOGATE_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.to_owned());
    if let Err(error) = probe_mirror(&mirror) {
        println!("packaging test skipped: cannot reach the Debian mirror {mirror}: {error:#}");
        return Ok(None);
    }
    install_debootstrap()?;

    let staging = work_dir.join("debootstrap");
    remove_dir_if_exists(&staging)?;
    eprintln!("xtask: debootstrap {SUITE} (minbase and {INCLUDED_PACKAGES}) from {mirror}, once; later runs reuse {}", cache.display());
    run_command(Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={INCLUDED_PACKAGES}"), SUITE])
        .arg(&staging)
        .arg(&mirror))?;

    let partial = cache.with_extension("partial");
    run_checked(Command::new("tar")
        .arg("--create")
        .arg("--gzip")
        .arg("--numeric-owner")
        .arg("--file")
        .arg(&partial)
        .arg("--directory")
        .arg(&staging)
        .arg("."))?;
    fs::rename(&partial, &cache).with_context(|| format!("failed to move {} to {}", partial.display(), cache.display()))?;
    remove_dir_if_exists(&staging)?;
    Ok(Some(cache))
}

/// Opens a TCP connection to the mirror's host, so an offline machine skips
/// the test instead of failing inside debootstrap.
fn probe_mirror(mirror: &str) -> Result<()> {
    let authority = mirror
        .split_once("://")
        .map_or(mirror, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let address = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    let socket = address
        .to_socket_addrs()
        .with_context(|| format!("failed to resolve {address}"))?
        .next()
        .with_context(|| format!("{address} resolved to no address"))?;
    TcpStream::connect_timeout(&socket, Duration::from_secs(10))
        .with_context(|| format!("failed to connect to {socket}"))?;
    Ok(())
}

fn install_debootstrap() -> Result<()> {
    if Command::new("debootstrap").arg("--version").output().is_ok_and(|output| output.status.success()) {
        return Ok(());
    }
    eprintln!("xtask: installing debootstrap");
    run_command(Command::new("apt-get").arg("update"))?;
    run_command(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "debootstrap"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn unpack_rootfs(cache: &Path, rootfs: &Path) -> Result<()> {
    remove_dir_if_exists(rootfs)?;
    fs::create_dir_all(rootfs).with_context(|| format!("failed to create {}", rootfs.display()))?;
    run_checked(Command::new("tar")
        .args(["--extract", "--gzip", "--numeric-owner", "--file"])
        .arg(cache)
        .arg("--directory")
        .arg(rootfs))?;
    Ok(())
}

/// Removes `dir` recursively, first refusing when anything is mounted below
/// it: a leftover bind mount of /dev or /sys must never be deleted through.
fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounted = mounts_below(dir)?;
    if !mounted.is_empty() {
        bail!("refusing to delete {}: {} are still mounted (umount them first)", dir.display(), mounted.join(", "));
    }
    fs::remove_dir_all(dir).with_context(|| format!("failed to delete {}", dir.display()))
}

/// Lists the mount points at or below `dir`, from /proc/self/mountinfo.
fn mounts_below(dir: &Path) -> Result<Vec<String>> {
    let dir = fs::canonicalize(dir).with_context(|| format!("failed to resolve {}", dir.display()))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").context("failed to read /proc/self/mountinfo")?;
    Ok(mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(&dir))
        .map(str::to_owned)
        .collect())
}

/// A root filesystem with /proc, /sys and /dev bound read-only into it.
/// Dropping it unmounts them, also when a check failed.
struct Chroot {
    rootfs: PathBuf,
    mounted: Vec<PathBuf>,
}

impl Chroot {
    fn mount(rootfs: &Path) -> Result<Self> {
        let mut chroot = Self { rootfs: rootfs.to_path_buf(), mounted: Vec::new() };
        for source in ["/proc", "/sys", "/dev"] {
            let target = chroot.host_path(source);
            fs::create_dir_all(&target).with_context(|| format!("failed to create {}", target.display()))?;
            // util-linux applies `ro` to a bind mount with a second remount.
            run_checked(Command::new("mount").args(["--bind", "-o", "ro", source]).arg(&target))?;
            chroot.mounted.push(target);
        }
        Ok(chroot)
    }

    /// Maps an absolute path inside the chroot to the host's view of it.
    fn host_path(&self, path: &str) -> PathBuf {
        self.rootfs.join(path.trim_start_matches('/'))
    }

    fn exists(&self, path: &str) -> bool {
        // symlink_metadata would not follow /lib -> usr/lib of merged /usr.
        self.host_path(path).exists()
    }

    fn read(&self, path: &str) -> Result<String> {
        let host = self.host_path(path);
        fs::read_to_string(&host).with_context(|| format!("failed to read {path} in the chroot"))
    }

    fn append(&self, path: &str, line: &str) -> Result<()> {
        append_line(&self.host_path(path), line)
    }

    /// Copies `package` into the chroot's /tmp and returns its path there.
    fn copy_in(&self, package: &Path) -> Result<String> {
        let name = package.file_name().context("package path has no file name")?.to_string_lossy();
        let inside = format!("/tmp/{name}");
        fs::copy(package, self.host_path(&inside))
            .with_context(|| format!("failed to copy {} into the chroot", package.display()))?;
        Ok(inside)
    }

    fn command(&self, argv: &[&str]) -> Command {
        let mut command = Command::new("chroot");
        command
            .arg(&self.rootfs)
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    }

    fn output(&self, argv: &[&str]) -> Result<Output> {
        let mut command = self.command(argv);
        command.output().with_context(|| format!("failed to start {command:?}"))
    }

    fn run(&self, argv: &[&str]) -> Result<()> {
        run_checked(&mut self.command(argv)).map(drop)
    }

    fn stdout(&self, argv: &[&str]) -> Result<String> {
        let output = run_checked(&mut self.command(argv))?;
        Ok(String::from_utf8_lossy(&output).trim().to_owned())
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for target in self.mounted.iter().rev() {
            let unmounted = Command::new("umount").arg(target).status().is_ok_and(|status| status.success());
            if !unmounted {
                eprintln!("xtask: umount {} failed; detaching it with umount --lazy", target.display());
                let _ = Command::new("umount").arg("--lazy").arg(target).status();
            }
        }
    }
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut text = fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// Runs `command` and returns its standard output; on failure the error
/// carries the command line, its status and both outputs.
fn run_checked(command: &mut Command) -> Result<Vec<u8>> {
    let output = command.output().with_context(|| format!("failed to start {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

/// Runs `step`, printing how long it took.
fn timed<T>(name: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let result = step();
    println!("packaging test: {name}: {:.1?}", started.elapsed());
    result
}

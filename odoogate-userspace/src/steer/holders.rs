//! The processes that steer through a pin directory: those holding a
//! descriptor of one of its pinned maps, found in `/proc/PID/fdinfo`.
//!
//! A running `odoogate run` in enforce mode keeps the bypass and statistics
//! maps open for as long as it serves. `odoogate uninstall` looks
//! for such a process before it removes the pins, because detaching the
//! steering under a running daemon lets new connections reach Odoo
//! directly while the daemon seems to enforce.

use std::io;
use std::os::fd::AsFd as _;
use std::path::Path;

use super::{MAP_PINS, link};

/// A process holding one of the steering's maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// The process's command name (`/proc/PID/comm`).
    pub command: String,
}

/// Returns the processes other than this one that hold a map pinned in
/// `pin_dir`, or none when nothing is pinned there. Processes whose
/// descriptors this user may not read are not seen.
pub fn holders(pin_dir: &Path) -> io::Result<Vec<Holder>> {
    let mut ids = Vec::new();
    for name in MAP_PINS {
        match link::open_pinned(&pin_dir.join(name)) {
            Ok(map) => ids.push(link::object_id(map.as_fd())?),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let own = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if pid != own && holds_map(&entry.path(), &ids) {
            let command = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_owned();
            found.push(Holder { pid, command });
        }
    }
    Ok(found)
}

/// Tells whether the process at `/proc/PID` has a descriptor of a BPF map
/// whose id is in `map_ids`.
fn holds_map(process: &Path, map_ids: &[u32]) -> bool {
    let Ok(descriptors) = std::fs::read_dir(process.join("fd")) else {
        return false;
    };
    descriptors.flatten().any(|descriptor| {
        let is_map = std::fs::read_link(descriptor.path()).is_ok_and(|target| target == Path::new("anon_inode:bpf-map"));
        is_map
            && std::fs::read_to_string(process.join("fdinfo").join(descriptor.file_name()))
                .is_ok_and(|fdinfo| fdinfo_map_id(&fdinfo).is_some_and(|id| map_ids.contains(&id)))
    })
}

/// Reads the `map_id:` line of a map descriptor's fdinfo.
fn fdinfo_map_id(fdinfo: &str) -> Option<u32> {
    fdinfo.lines().find_map(|line| line.strip_prefix("map_id:")).and_then(|id| id.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_names_map_id() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t15\nkey_size:\t4\nmap_id:\t42\n";
        assert_eq!(fdinfo_map_id(fdinfo), Some(42));
        assert_eq!(fdinfo_map_id("pos:\t0\nlink_id:\t7\n"), None);
    }

    #[test]
    fn nothing_pinned_has_no_holders() {
        let dir = crate::scratch::ScratchDir::new("steer-holders");
        assert_eq!(holders(&dir).unwrap(), Vec::new());
    }
}

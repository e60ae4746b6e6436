//! Private state files such as the token store and the grants file: an
//! exclusive lock beside the file, and atomic replacement, both mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// A failed step on a state file: what was being done, and the error.
#[derive(Debug)]
pub struct StateFileError {
    /// The step, worded to precede the file's path ("lock", "write").
    pub action: &'static str,
    pub source: io::Error,
}

/// Takes an exclusive lock on `<path>.lock`, released when dropped.
pub fn lock(path: &Path) -> Result<Flock<File>, StateFileError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| StateFileError { action: "open the lock of", source })?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| StateFileError { action: "lock", source: io::Error::from(errno) })
}

/// Replaces `path` with `contents`: writes a temporary file in `directory`
/// (the file's own directory), syncs it, renames it over `path` and syncs
/// the directory, so a reader sees the old or the new file, never a part.
pub fn write_atomically(path: &Path, directory: &Path, contents: &[u8]) -> Result<(), StateFileError> {
    let failed = |action| move |source| StateFileError { action, source };
    let file_name = path.file_name().map_or_else(|| "state".into(), |name| name.to_string_lossy());
    let temporary = directory.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(failed("create a temporary file for"))?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(error) = written.and_then(|()| fs::rename(&temporary, path)) {
        let _ = fs::remove_file(&temporary);
        return Err(failed("write")(error));
    }
    File::open(directory).and_then(|dir| dir.sync_all()).map_err(failed("sync the directory of"))
}

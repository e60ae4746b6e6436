//! Scratch directories for tests, removed when dropped, so that passing
//! test runs leave nothing in the temporary directory.

use std::ops::Deref;
use std::path::{Path, PathBuf};

/// An empty directory under the system's temporary directory, named after
/// its test and this process, and removed with its contents on drop. A
/// failing test (a panicking thread) keeps it, with its logs, and prints
/// where it is.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `odoogate-<name>-<pid>`, emptied first if a run with the
    /// same pid left it behind.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("odoogate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the failed test's files in {}", self.0.display());
            return;
        }
        // A process the test started may still write into the directory
        // while it exits, and the removal then fails with "directory not
        // empty". Try again a few times before leaving it.
        for _ in 0..REMOVE_ATTEMPTS {
            match std::fs::remove_dir_all(&self.0) {
                Err(error) if error.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                _ => return,
            }
        }
        eprintln!("failed to remove the test directory {}", self.0.display());
    }
}

/// Removals tried before a scratch directory is left behind.
const REMOVE_ATTEMPTS: usize = 10;

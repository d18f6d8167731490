//! An exclusive lock on a component's directory, so that two running
//! auditflow processes never write the same state.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use anyhow::Context as _;

/// Locks `dir/lock` (`flock`, created if missing) for as long as the returned file is open.
///
/// `conflict` says what sharing the directory would break and how to avoid
/// it; it follows the lock file's path in the error when another process
/// holds the lock.
pub fn lock_directory(dir: &Path, conflict: &str) -> anyhow::Result<File> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot open the lock file {}; make data_dir writable",
                path.display()
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is locked by another running auditflow; {conflict}",
            path.display()
        ),
        Err(fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

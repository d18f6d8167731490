//! Checkpoints: how far the content of each file has been delivered, kept in `data_dir`.
//!
//! `data_dir/<component id>/checkpoints.json` holds one [`Checkpoint`] per
//! content (fingerprint): the committed offset, the last path it was seen at,
//! and when it was last seen (old entries are pruned). It is replaced
//! atomically: the new text is written to `checkpoints.json.tmp`, synced,
//! renamed over the old file, and the directory is synced, so a crash at any
//! moment leaves either the old or the new checkpoints, never a mix.
//!
//! `data_dir/<component id>/lock` is locked (`flock`) while a source runs, so
//! two processes cannot move the same checkpoints; the kernel releases the lock
//! when a process dies, even by `kill -9`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use auditflow_core::dir_lock::lock_directory;
use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;

/// The version of the checkpoint file format.
const FORMAT_VERSION: u32 = 1;

/// The saved progress of one content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The content's fingerprint.
    pub fingerprint: Fingerprint,
    /// Every byte before this offset (in decompressed bytes for `.gz`) has been delivered.
    pub offset: u64,
    /// The last path the content was seen at (for people; never used to find it).
    pub path: String,
    /// When a file holding the content was last seen, in seconds since the Unix epoch.
    pub seen_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    checkpoints: Vec<Checkpoint>,
}

/// Where a source's checkpoints live, and the lock that makes them its own.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    path: PathBuf,
    temporary: PathBuf,
    _lock: File,
}

impl CheckpointStore {
    /// Creates `data_dir/<id>/` if needed and takes its lock.
    pub fn open(data_dir: &Path, id: &str) -> anyhow::Result<CheckpointStore> {
        let dir = data_dir.join(id);
        fs::create_dir_all(&dir).with_context(|| {
            format!(
                "cannot create the checkpoint directory {}; make data_dir writable",
                dir.display()
            )
        })?;
        let lock = lock_directory(
            &dir,
            "two processes must not share a file source's checkpoints: stop the other one or give this one its own data_dir",
        )?;
        Ok(CheckpointStore {
            path: dir.join("checkpoints.json"),
            temporary: dir.join("checkpoints.json.tmp"),
            dir,
            _lock: lock,
        })
    }

    /// The path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved checkpoints; `None` when there are none yet (the source's very first start).
    pub fn load(&self) -> anyhow::Result<Option<Vec<Checkpoint>>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "cannot read the checkpoints {}; check its permissions",
                        self.path.display()
                    )
                })
            }
        };
        let file: CheckpointFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "the checkpoints {} are not valid (they are written atomically, so the file was edited or the disk is damaged); move the file away to start over: every matched file is then read again as on a first start",
                self.path.display()
            )
        })?;
        if file.version != FORMAT_VERSION {
            anyhow::bail!(
                "the checkpoints {} have format version {}, this auditflow reads version {FORMAT_VERSION}; run the auditflow that wrote them, or move the file away to start over",
                self.path.display(),
                file.version
            );
        }
        Ok(Some(file.checkpoints))
    }

    /// Replaces the checkpoints atomically (write, fsync, rename, fsync the directory).
    pub fn save(&self, checkpoints: Vec<Checkpoint>) -> io::Result<()> {
        let file = CheckpointFile {
            version: FORMAT_VERSION,
            checkpoints,
        };
        let text = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        let mut temporary = File::create(&self.temporary)?;
        temporary.write_all(&text)?;
        temporary.sync_all()?;
        drop(temporary);
        fs::rename(&self.temporary, &self.path)?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(fingerprint: u64, offset: u64) -> Checkpoint {
        Checkpoint {
            fingerprint: Fingerprint(fingerprint),
            offset,
            path: "/var/log/audit.log".into(),
            seen_at: 1_700_000_000,
        }
    }

    #[test]
    fn the_first_start_has_no_checkpoints() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = CheckpointStore::open(dir.path(), "in").expect("open");
        assert_eq!(store.load().expect("load"), None);
    }

    #[test]
    fn saved_checkpoints_are_loaded_back_and_no_temporary_file_remains() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = CheckpointStore::open(dir.path(), "in").expect("open");
        store.save(vec![checkpoint(1, 10)]).expect("save");
        let saved = vec![checkpoint(1, 20), checkpoint(2, 5)];
        store.save(saved.clone()).expect("save");
        assert_eq!(store.load().expect("load"), Some(saved));
        let names: Vec<String> = fs::read_dir(dir.path().join("in"))
            .expect("list")
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|name| name.ends_with(".tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn a_torn_temporary_file_does_not_affect_the_checkpoints() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = CheckpointStore::open(dir.path(), "in").expect("open");
        store.save(vec![checkpoint(1, 10)]).expect("save");
        // A crash in the middle of a save leaves a partial temporary file behind.
        fs::write(dir.path().join("in/checkpoints.json.tmp"), b"{\"vers").expect("write");
        assert_eq!(store.load().expect("load"), Some(vec![checkpoint(1, 10)]));
        store.save(vec![checkpoint(1, 30)]).expect("save over it");
        assert_eq!(store.load().expect("load"), Some(vec![checkpoint(1, 30)]));
    }

    #[test]
    fn a_damaged_checkpoint_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = CheckpointStore::open(dir.path(), "in").expect("open");
        fs::write(store.path(), b"not json").expect("write");
        let error = format!("{:#}", store.load().expect_err("damaged"));
        assert!(error.contains("checkpoints.json"), "{error}");
        assert!(error.contains("move the file away"), "{error}");
    }

    #[test]
    fn a_second_process_cannot_take_the_same_checkpoints() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let _first = CheckpointStore::open(dir.path(), "in").expect("open");
        let error = format!(
            "{:#}",
            CheckpointStore::open(dir.path(), "in").expect_err("locked")
        );
        assert!(
            error.contains("locked by another running auditflow"),
            "{error}"
        );
        drop(_first);
        assert!(CheckpointStore::open(dir.path(), "in").is_ok());
    }
}

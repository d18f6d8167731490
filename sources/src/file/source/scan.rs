//! Looking at what `include` matches now: new files, renames, truncations, files gone.
//!
//! A scan first checks the open files for truncation, then goes through the
//! matched paths:
//! - a path whose device and inode are open already is that file, perhaps
//!   under a new name (a rename: the rotation is counted, reading goes on);
//! - a new file is opened and identified by its first line. A known content
//!   resumes at the offset sent so far; a content that another open file is
//!   reading (a copy made before the original is gone) is left for a later
//!   scan; a new content starts at 0 (or at its end on the very first start
//!   with `read_from = "end"`). A file without a complete first line is kept
//!   open and identified as soon as the line is complete.
//!
//! An open file no longer matched (renamed away, deleted) is *orphaned*: it is
//! read to its end through its handle, and closed once its batches are
//! delivered. Checkpoints of contents that no file has held for the retention
//! time (24 hours, or `ignore_older` if longer) are pruned.

use std::collections::HashSet;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{retention, unix_now, Content, FileSource, Watched};
use crate::file::discovery::ScanError;
use crate::file::fingerprint::{FileId, Fingerprint};
use crate::file::reader::TailedFile;
use crate::file::ReadFrom;

/// A file that needs no open handle: a `.gz` read to its end, or one that cannot be decompressed (yet).
#[derive(Debug)]
pub(super) struct Parked {
    fingerprint: Option<Fingerprint>,
    stat: StatKey,
}

/// What tells that a parked file changed: its size and modification time.
#[derive(Debug, PartialEq, Eq)]
struct StatKey {
    size: u64,
    modified: i64,
    modified_nanos: i64,
}

impl StatKey {
    fn of(metadata: &Metadata) -> StatKey {
        StatKey {
            size: metadata.len(),
            modified: metadata.mtime(),
            modified_nanos: metadata.mtime_nsec(),
        }
    }
}

impl FileSource {
    /// Expands the globs and brings the set of open files up to date.
    pub(super) fn scan(&mut self) {
        let scan = self.discovery.scan();
        self.report_scan_errors(&scan.errors);
        self.report_no_match(scan.paths.is_empty());
        self.check_open_files();
        let mut seen = HashSet::new();
        let matched: HashSet<String> = scan.paths.iter().map(|path| open_key(path)).collect();
        for path in scan.paths {
            self.consider(path, &mut seen);
        }
        self.reports.retain_current("open:", &matched);
        self.mark_orphans(&seen);
        self.parked.retain(|id, _| seen.contains(id));
        self.prune();
        if self.first_start {
            // From now on this is not a first start, even after a crash: `read_from`
            // applied to the files found now, and must not apply again.
            self.first_start = false;
            self.save();
        }
        self.last_scan = Some(Instant::now());
    }

    /// Warns once when `include` matches no file (until it matches one again).
    fn report_no_match(&mut self, nothing_matched: bool) {
        if nothing_matched && !self.reported_no_match && self.files.is_empty() {
            let cwd = std::env::current_dir()
                .map(|dir| dir.display().to_string())
                .unwrap_or_else(|_| "?".to_string());
            tracing::warn!(
                component_id = %self.id,
                "include {:?} matches no file yet; relative patterns are resolved from the working directory {cwd}",
                self.config.include
            );
        }
        self.reported_no_match = nothing_matched;
    }

    fn report_scan_errors(&mut self, errors: &[ScanError]) {
        let mut current = HashSet::new();
        for error in errors {
            let key = format!("scan:{}", error.path.display());
            let message = format!(
                "cannot look into {}: {}; files there are not read: give auditflow read and execute permission on the directory, or remove it from include",
                error.path.display(),
                error.error
            );
            self.reports
                .report(key.clone(), message, &self.metrics, "scan_failed");
            current.insert(key);
        }
        self.reports.retain_current("scan:", &current);
    }

    /// Notices truncation of open files before new files are matched against their contents.
    fn check_open_files(&mut self) {
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        for id in ids {
            let Some(mut watched) = self.files.remove(&id) else {
                continue;
            };
            match watched.file.check_truncated(&mut self.fingerprinter) {
                Ok(true) => self.truncated(&mut watched),
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(component_id = %self.id, "cannot check {}: {error}", watched.file.path.display())
                }
            }
            self.files.insert(id, watched);
        }
    }

    fn consider(&mut self, path: PathBuf, seen: &mut HashSet<FileId>) {
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => return,
            Err(error) => {
                self.open_failed(&path, &error);
                return;
            }
        };
        let id = FileId::of(&metadata);
        if !seen.insert(id) {
            return;
        }
        if self.files.contains_key(&id) {
            self.follow(id, path);
        } else if !self.still_parked(id, &metadata) && !self.too_old(&metadata) {
            self.open_file(path, seen);
        }
    }

    /// An open file seen at `path`: notices a rename.
    fn follow(&mut self, id: FileId, path: PathBuf) {
        let Some(watched) = self.files.get_mut(&id) else {
            return;
        };
        watched.orphaned = false;
        if watched.file.path == path || same_file_at(&watched.file.path, id) {
            // Unchanged, or a second name (hard link) of the same file.
            return;
        }
        self.metrics.renames.add(1);
        tracing::info!(component_id = %self.id, "{} was renamed to {} (rotation): reading on through the open handle", watched.file.path.display(), path.display());
        self.metrics.forget(&watched.gauges);
        watched.gauges = self.metrics.file(&path.display().to_string());
        if let Some(content) = watched
            .file
            .fingerprint
            .and_then(|fingerprint| self.contents.get_mut(&fingerprint))
        {
            content.path = path.display().to_string();
        }
        watched.file.path = path;
    }

    /// Whether a parked file is unchanged (and stays parked).
    fn still_parked(&mut self, id: FileId, metadata: &Metadata) -> bool {
        match self.parked.get(&id) {
            Some(parked) if parked.stat == StatKey::of(metadata) => true,
            Some(_) => {
                self.parked.remove(&id);
                false
            }
            None => false,
        }
    }

    fn too_old(&self, metadata: &Metadata) -> bool {
        let Some(max_age) = self.config.ignore_older else {
            return false;
        };
        metadata
            .modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > max_age)
    }

    /// Opens a file not open yet, and starts reading it where its content was left.
    fn open_file(&mut self, path: PathBuf, seen: &mut HashSet<FileId>) {
        let max_line_bytes = self.config.max_line_bytes;
        let mut file = match TailedFile::open(&path, max_line_bytes, &mut self.fingerprinter) {
            Ok(file) => file,
            Err(error) => {
                self.open_failed(&path, &error);
                return;
            }
        };
        self.reports.resolve(&open_key(&path));
        // The path may have been replaced between the look and the open: the handle tells.
        seen.insert(file.id);
        if self.files.contains_key(&file.id) {
            return;
        }
        match file.fingerprint.take() {
            Some(fingerprint) => {
                if !self.adopt(&mut file, fingerprint) {
                    return;
                }
            }
            None if file.is_gzip() => {
                tracing::debug!(component_id = %self.id, "{} holds no complete line yet", path.display());
                self.park(&file);
                return;
            }
            None => {
                tracing::info!(component_id = %self.id, "watching {}: waiting for its first line", path.display());
            }
        }
        let watched = Watched {
            gauges: self.metrics.file(&path.display().to_string()),
            file,
            at_eof: false,
            orphaned: false,
        };
        self.files.insert(watched.file.id, watched);
    }

    /// The fingerprint of an open file, computed once its first line is complete.
    pub(super) fn identify(&mut self, watched: &mut Watched) -> Option<Fingerprint> {
        if watched.file.fingerprint.is_some() {
            return watched.file.fingerprint;
        }
        let fingerprint = watched
            .file
            .first_line_fingerprint(&mut self.fingerprinter)
            .ok()??;
        self.adopt(&mut watched.file, fingerprint)
            .then_some(fingerprint)
    }

    /// Decides where a file with this content starts; `false` leaves it for later.
    fn adopt(&mut self, file: &mut TailedFile, fingerprint: Fingerprint) -> bool {
        if let Some(other) = self.reader_of(fingerprint) {
            tracing::debug!(component_id = %self.id, "{} holds the content of {}, which is open; it is read once that one is closed", file.path.display(), other.display());
            return false;
        }
        if self.batches.holds(fingerprint) {
            // Lines of this content are still being decoded: its sent offset is not final.
            return false;
        }
        let path = file.path.display().to_string();
        let started = match self.contents.get_mut(&fingerprint) {
            Some(content) => {
                // A rewind pending for this content is served by starting at `sent`.
                content.rewind = false;
                let offset = content.progress.sent();
                if content.path != path {
                    tracing::info!(component_id = %self.id, "{path} holds the content read before as {} (a copy, a compressed backup, or a rename while stopped): reading on from offset {offset}", content.path);
                    content.path = path.clone();
                }
                file.start_at(offset)
            }
            None => self.start_new(file, fingerprint, path.clone()),
        };
        if let Err(error) = started {
            self.open_failed(&file.path, &error);
            return false;
        }
        file.fingerprint = Some(fingerprint);
        tracing::info!(component_id = %self.id, "watching {path} from offset {}", file.line_end());
        true
    }

    /// A content never seen: from its start, or its end on the very first start with `read_from = "end"`.
    fn start_new(
        &mut self,
        file: &mut TailedFile,
        fingerprint: Fingerprint,
        path: String,
    ) -> io::Result<()> {
        let at_end = self.first_start && self.config.read_from == ReadFrom::End;
        match at_end {
            true => file.start_at_end()?,
            false => file.start_at(0)?,
        }
        self.contents
            .insert(fingerprint, Content::new(file.line_end(), path));
        self.dirty = true;
        Ok(())
    }

    /// The path of the open file reading this content, if any.
    fn reader_of(&self, fingerprint: Fingerprint) -> Option<&Path> {
        self.files
            .values()
            .find(|watched| watched.file.fingerprint == Some(fingerprint))
            .map(|watched| watched.file.path.as_path())
    }

    /// Reports a file that cannot be looked at or opened (once, until it changes).
    fn open_failed(&mut self, path: &Path, error: &io::Error) {
        match error.kind() {
            // Gone between the glob and the open: nothing to say.
            io::ErrorKind::NotFound => {}
            // A compressed file still being written.
            io::ErrorKind::UnexpectedEof => {
                tracing::debug!(component_id = %self.id, "{} is not complete yet: {error}", path.display())
            }
            _ => self.reports.report(
                open_key(path),
                format!(
                    "cannot read {}: {error}; give auditflow read permission on it, or exclude it",
                    path.display()
                ),
                &self.metrics,
                "open_failed",
            ),
        }
    }

    /// Remembers a file that needs no handle until it changes.
    pub(super) fn park(&mut self, file: &TailedFile) {
        if let Ok(metadata) = file.metadata() {
            let parked = Parked {
                fingerprint: file.fingerprint,
                stat: StatKey::of(&metadata),
            };
            self.parked.insert(file.id, parked);
        }
    }

    /// Open files not matched any more are read to their end, then closed.
    fn mark_orphans(&mut self, seen: &HashSet<FileId>) {
        for (id, watched) in &mut self.files {
            if seen.contains(id) || watched.orphaned {
                continue;
            }
            watched.orphaned = true;
            let path = watched.file.path.display();
            if watched.file.is_deleted() {
                tracing::info!(component_id = %self.id, "{path} was deleted: reading what is left of it through the open handle, then closing it");
            } else {
                self.metrics.renames.add(1);
                tracing::info!(component_id = %self.id, "{path} was renamed away (rotation) or is no longer matched: reading it to its end through the open handle, then closing it");
            }
        }
    }

    /// Drops checkpoints of contents no file has held for the retention time.
    fn prune(&mut self) {
        let now = unix_now();
        let live: HashSet<Fingerprint> = self
            .files
            .values()
            .filter_map(|watched| watched.file.fingerprint)
            .chain(self.parked.values().filter_map(|parked| parked.fingerprint))
            .collect();
        for fingerprint in &live {
            if let Some(content) = self.contents.get_mut(fingerprint) {
                content.seen_at = now;
            }
        }
        let keep = retention(&self.config).as_secs();
        let before = self.contents.len();
        self.contents.retain(|fingerprint, content| {
            live.contains(fingerprint)
                || !content.progress.is_settled()
                || now.saturating_sub(content.seen_at) < keep
        });
        if self.contents.len() != before {
            self.dirty = true;
            tracing::debug!(component_id = %self.id, "forgot {} checkpoints of files gone for {keep}s", before - self.contents.len());
        }
    }
}

/// Whether `path` still names the file `id` (so a second name is a link, not a rename).
fn same_file_at(path: &Path, id: FileId) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| FileId::of(&metadata) == id)
}

fn open_key(path: &Path) -> String {
    format!("open:{}", path.display())
}

//! The running file source: scan, read in turns, settle acknowledgements, save checkpoints.
//!
//! State is kept in two maps:
//! - `contents`, by [`Fingerprint`]: the [`Progress`] of each content (sent and
//!   committed offsets, batches in flight), the last path it was seen at and
//!   when; this is what the checkpoint file holds;
//! - `files`, by [`FileId`]: the files open now ([`Watched`]), each reading
//!   one content.
//!
//! Two open files never read the same content at once: a copy found while its
//! original is open waits until the original is closed, then resumes where the
//! original was left (see [`scan`]).
//!
//! Lines read wait in a [`BatchQueue`] while they are decoded; a batch enters
//! its content's acknowledgement FIFO when it is sent. Everything queued is
//! sent before a scan, before the source sleeps and before a file is closed,
//! so the sent offsets that copies resume from are always final then.

mod scan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auditflow_core::component::SourceContext;

use super::batch::{Batch, BatchQueue, Origin};
use super::checkpoint::{Checkpoint, CheckpointStore};
use super::discovery::Discovery;
use super::fingerprint::{FileId, Fingerprint, Fingerprinter};
use super::metrics::{FileGauges, FileMetrics};
use super::progress::Progress;
use super::reader::{TailedFile, TurnLimit};
use super::{FileConfig, ReadFrom};
use crate::decode::decode_parallelism;
use crate::framing::Frame;

/// How much is read from one file per turn (about 1000 events of 1 KB).
const TURN: TurnLimit = TurnLimit {
    max_bytes: 1024 * 1024,
    max_frames: 1000,
};

/// The size of each read.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// How long reading a content waits after a batch of it was not delivered.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How long the checkpoint of a content no file holds any more is kept, at least.
const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The progress of one content, and where it was last seen.
#[derive(Debug)]
struct Content {
    progress: Progress,
    path: String,
    seen_at: u64,
    /// After a failed delivery, reading waits until then.
    retry_at: Option<Instant>,
    /// Moves on at each rewind; batches read before it are dropped unsent.
    generation: u64,
    /// The open file must go back to the committed offset before its next read.
    rewind: bool,
}

impl Content {
    fn new(offset: u64, path: String) -> Content {
        Content {
            progress: Progress::new(offset),
            path,
            seen_at: unix_now(),
            retry_at: None,
            generation: 0,
            rewind: false,
        }
    }
}

/// An open file and what the source knows about it.
#[derive(Debug)]
struct Watched {
    file: TailedFile,
    gauges: FileGauges,
    at_eof: bool,
    orphaned: bool,
}

/// The outcome of one round over every open file.
#[derive(Debug, Default)]
struct Round {
    progressed: bool,
    closed: bool,
}

/// Errors reported once until they change or go away, so a broken file does not flood the log.
#[derive(Debug, Default)]
struct Reports {
    active: HashMap<String, String>,
}

impl Reports {
    /// Logs and counts `message` unless it is the one already reported under `key`.
    fn report(&mut self, key: String, message: String, metrics: &FileMetrics, error_type: &str) {
        if self.active.get(&key) == Some(&message) {
            return;
        }
        tracing::error!("{message}");
        metrics.error(error_type);
        self.active.insert(key, message);
    }

    /// Whether no error is reported now.
    fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Forgets the error under `key`, logging that it went away.
    fn resolve(&mut self, key: &str) {
        if let Some(message) = self.active.remove(key) {
            tracing::info!("resolved: {message}");
        }
    }

    /// Forgets every error whose key starts with `prefix` and is not in `current`.
    fn retain_current(&mut self, prefix: &str, current: &HashSet<String>) {
        let gone: Vec<String> = self
            .active
            .keys()
            .filter(|key| key.starts_with(prefix) && !current.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            self.resolve(&key);
        }
    }
}

/// The state of a running file source.
pub(super) struct FileSource {
    config: FileConfig,
    id: Arc<str>,
    discovery: Discovery,
    store: CheckpointStore,
    first_start: bool,
    contents: HashMap<Fingerprint, Content>,
    files: BTreeMap<FileId, Watched>,
    parked: HashMap<FileId, scan::Parked>,
    reports: Reports,
    metrics: FileMetrics,
    fingerprinter: Fingerprinter,
    buffer: Vec<u8>,
    batches: BatchQueue,
    last_scan: Option<Instant>,
    last_save: Instant,
    dirty: bool,
    /// Whether the last scan that matched nothing was already reported.
    reported_no_match: bool,
    /// Why the source must stop with an error (a group whose decoding failed).
    failed: Option<anyhow::Error>,
}

impl FileSource {
    /// Takes the checkpoint lock and loads the checkpoints; reads nothing yet.
    pub(super) fn open(config: FileConfig, context: &SourceContext) -> anyhow::Result<FileSource> {
        let store = CheckpointStore::open(&context.data_dir, &context.id)?;
        let saved = store.load()?;
        let first_start = saved.is_none();
        let contents: HashMap<Fingerprint, Content> = saved
            .unwrap_or_default()
            .into_iter()
            .map(|checkpoint| (checkpoint.fingerprint, restored(checkpoint)))
            .collect();
        if first_start {
            tracing::info!(component_id = %context.id, "first start: no checkpoints in {}; files found now are read from their {}", store.path().display(), match config.read_from { ReadFrom::Beginning => "beginning", ReadFrom::End => "end" });
        } else {
            tracing::info!(component_id = %context.id, "{} checkpoints loaded from {}", contents.len(), store.path().display());
        }
        Ok(FileSource {
            discovery: Discovery::new(&config.include, &config.exclude),
            fingerprinter: Fingerprinter::new(config.fingerprint.max_bytes),
            id: context.id.clone(),
            store,
            first_start,
            contents,
            files: BTreeMap::new(),
            parked: HashMap::new(),
            reports: Reports::default(),
            metrics: FileMetrics::new(&context.metrics),
            buffer: vec![0; READ_BUFFER_BYTES],
            batches: BatchQueue::new(
                context.id.clone(),
                decode_parallelism(),
                context.inline_transforms(),
            ),
            last_scan: None,
            last_save: Instant::now(),
            dirty: false,
            reported_no_match: false,
            failed: None,
            config,
        })
    }

    /// Reads until shutdown (or, with `--once`, until everything is read and delivered).
    pub(super) async fn run(mut self, context: SourceContext) -> anyhow::Result<()> {
        let mut scanned_while_idle = false;
        while !context.shutdown.is_cancelled() {
            let round = self.step(&context).await;
            if round.closed {
                if self.failed.is_none() {
                    self.downstream_gone();
                }
                break;
            }
            if round.progressed {
                scanned_while_idle = false;
                continue;
            }
            if context.once && self.is_done() {
                if scanned_while_idle {
                    break;
                }
                // One last look for files that appeared since the last scan.
                self.scan();
                scanned_while_idle = true;
                continue;
            }
            self.idle(&context).await;
        }
        self.finish(context).await
    }

    /// A scan (when due), a round over the open files, and the bookkeeping after it.
    async fn step(&mut self, context: &SourceContext) -> Round {
        if self.scan_due() {
            // Copies are matched against the offsets sent: send everything read first.
            if !self.send_ready(context, 0).await {
                return Round {
                    progressed: false,
                    closed: true,
                };
            }
            self.scan();
        }
        let mut round = self.read_round(context).await;
        if !round.progressed && !round.closed {
            round.closed = !self.send_ready(context, 0).await;
        }
        self.close_finished();
        self.settle(false);
        self.update_gauges();
        self.save_if_due();
        round
    }

    /// Nothing new: waits for the poll interval, an acknowledgement, or shutdown.
    async fn idle(&mut self, context: &SourceContext) {
        let poll = self.config.poll_interval;
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = self.next_acknowledgement() => {}
            _ = context.shutdown.cancelled() => {}
        }
    }

    /// Waits for the oldest batch in flight of some content (forever if none is in flight).
    async fn next_acknowledgement(&mut self) {
        match self
            .contents
            .values_mut()
            .find(|content| !content.progress.is_settled())
        {
            Some(content) => content.progress.wait_head().await,
            None => std::future::pending().await,
        }
    }

    fn downstream_gone(&self) {
        tracing::warn!(component_id = %self.id, "nothing downstream takes events any more; the file source stops");
    }

    fn scan_due(&self) -> bool {
        self.last_scan
            .is_none_or(|at| at.elapsed() >= self.config.glob_interval)
    }

    /// Whether every open file is read to its end and every batch is delivered.
    fn is_done(&self) -> bool {
        self.files
            .values()
            .all(|watched| watched.at_eof || watched.file.fingerprint.is_none())
            && self
                .contents
                .values()
                .all(|content| content.progress.is_settled() && !content.rewind)
            && self.batches.is_empty()
    }

    /// Gives every open file one turn.
    async fn read_round(&mut self, context: &SourceContext) -> Round {
        let mut round = Round::default();
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        for id in ids {
            let Some(mut watched) = self.files.remove(&id) else {
                continue;
            };
            let outcome = self.read_turn(&mut watched, context).await;
            round.progressed |= outcome.progressed;
            match outcome.keep {
                true => {
                    self.files.insert(id, watched);
                }
                false => self.close(watched),
            }
            self.settle(false);
            self.save_if_due();
            if outcome.closed {
                round.closed = true;
                break;
            }
        }
        round
    }

    /// Reads one turn of one file and sends what it held.
    async fn read_turn(&mut self, watched: &mut Watched, context: &SourceContext) -> TurnOutcome {
        let mut outcome = TurnOutcome {
            keep: true,
            ..TurnOutcome::default()
        };
        let Some(fingerprint) = self.identify(watched) else {
            return outcome;
        };
        if !self.ready_to_read(watched, fingerprint) {
            return outcome;
        }
        let mut frames = Vec::new();
        let turn = match watched.file.read_turn(
            &mut self.buffer,
            &mut self.fingerprinter,
            TURN,
            &mut frames,
        ) {
            Ok(turn) => turn,
            Err(error) => {
                self.read_failed(watched, &error);
                outcome.keep = false;
                return outcome;
            }
        };
        self.metrics.read_bytes(turn.bytes);
        if turn.bytes > 0 && !self.reports.is_empty() {
            self.reports.resolve(&read_key(&watched.file.path));
        }
        watched.at_eof = turn.eof;
        outcome.progressed = turn.bytes > 0;
        if !frames.is_empty() {
            self.queue_batch(fingerprint, &watched.file, frames);
            outcome.closed = !self.send_ready(context, self.batches.ahead()).await;
        }
        if turn.truncated {
            self.truncated(watched);
            outcome.progressed = true;
        }
        outcome
    }

    /// Whether a content may be read now: not pausing after a failed delivery
    /// (and, once the pause is over, back at its committed offset).
    fn ready_to_read(&mut self, watched: &mut Watched, fingerprint: Fingerprint) -> bool {
        let Some(content) = self.contents.get_mut(&fingerprint) else {
            return true;
        };
        if content.retry_at.is_some_and(|at| at > Instant::now()) {
            return false;
        }
        content.retry_at = None;
        if content.rewind {
            content.rewind = false;
            let offset = content.progress.sent();
            watched.at_eof = false;
            if let Err(error) = watched.file.start_at(offset) {
                self.read_failed(watched, &error);
                return false;
            }
        }
        true
    }

    /// Starts decoding the lines of one turn.
    fn queue_batch(&mut self, fingerprint: Fingerprint, file: &TailedFile, frames: Vec<Frame>) {
        let generation = self
            .contents
            .get(&fingerprint)
            .map_or(0, |content| content.generation);
        let origin = Origin {
            fingerprint,
            generation,
            end: file.line_end(),
        };
        let path = file.path.display().to_string();
        self.batches.push(origin, frames, path);
    }

    /// Sends the decoded batches while more than `keep` are queued.
    ///
    /// Returns `false` when nothing downstream takes events any more.
    async fn send_ready(&mut self, context: &SourceContext, keep: usize) -> bool {
        while self.batches.len() > keep {
            let batch = match self.batches.next().await {
                Some(Ok(batch)) => batch,
                Some(Err(error)) => {
                    self.failed = Some(error);
                    return false;
                }
                None => break,
            };
            if !self.send(context, batch).await {
                return false;
            }
        }
        true
    }

    /// Sends one batch and records it in its content's acknowledgement FIFO.
    async fn send(&mut self, context: &SourceContext, batch: Batch) -> bool {
        let Some(content) = self.contents.get_mut(&batch.origin.fingerprint) else {
            return true;
        };
        if content.generation != batch.origin.generation {
            // Read before a rewind: the same lines are being read again.
            return true;
        }
        context
            .send_failures(batch.failures, Some(&batch.finalizer))
            .await;
        context.send_transform_errors(batch.transform_errors).await;
        let sent = context.send(batch.events).await;
        drop(batch.finalizer);
        content.progress.push(batch.origin.end, batch.receiver);
        sent
    }

    /// A read failed: the file is closed, reported once, and opened again at the next scan.
    fn read_failed(&mut self, watched: &Watched, error: &std::io::Error) {
        let path = watched.file.path.display();
        let message = if watched.file.is_gzip() {
            format!("cannot decompress {path}: {error}; if it is still being written it is read again once complete, otherwise it is not a valid gzip file and should be excluded")
        } else {
            format!("cannot read {path}: {error}; it is opened again at the next scan")
        };
        self.reports.report(
            read_key(&watched.file.path),
            message,
            &self.metrics,
            "read_failed",
        );
        if watched.file.is_gzip() {
            self.park(&watched.file);
        }
    }

    /// A plain file was truncated: it is read again from the start, as a new content.
    fn truncated(&mut self, watched: &mut Watched) {
        self.metrics.truncations.add(1);
        tracing::info!(component_id = %self.id, "{} was truncated (copytruncate rotation?): reading it again from its start", watched.file.path.display());
        if let Err(error) = watched.file.restart_truncated(&mut self.fingerprinter) {
            tracing::warn!(component_id = %self.id, "cannot look at {} after its truncation: {error}", watched.file.path.display());
        }
        watched.at_eof = false;
        // The content is identified again (its new first line) before the next read.
        watched.file.fingerprint = None;
    }

    /// Takes the acknowledgements that arrived; rewinds contents whose delivery failed.
    fn settle(&mut self, stopping: bool) {
        let mut failed = Vec::new();
        for (fingerprint, content) in &mut self.contents {
            let settled = content.progress.settle();
            self.dirty |= settled.advanced;
            if settled.rejected > 0 {
                self.metrics.error("delivery_rejected");
                tracing::warn!(component_id = %self.id, "a sink refused {} batches of {} for good; they are passed over", settled.rejected, content.path);
            }
            if settled.failed {
                self.metrics.error("delivery_failed");
                failed.push(*fingerprint);
            }
        }
        for fingerprint in failed {
            self.rewind(fingerprint, stopping);
        }
    }

    /// After a failed delivery: the content is read again from its committed
    /// offset after a pause (at its next turn, or when a file holding it is opened).
    fn rewind(&mut self, fingerprint: Fingerprint, stopping: bool) {
        let Some(content) = self.contents.get_mut(&fingerprint) else {
            return;
        };
        let committed = content.progress.committed();
        if stopping {
            tracing::error!(component_id = %self.id, "events of {} after offset {committed} were not delivered; they are read again at the next start", content.path);
            return;
        }
        tracing::error!(component_id = %self.id, "events of {} after offset {committed} were not delivered; reading them again in {RETRY_PAUSE:?}", content.path);
        content.retry_at = Some(Instant::now() + RETRY_PAUSE);
        content.generation += 1;
        content.rewind = true;
    }

    /// Sets the per-file gauges.
    fn update_gauges(&self) {
        for watched in self.files.values() {
            let gauges = &watched.gauges;
            gauges.read_offset.set(watched.file.line_end() as i64);
            let committed = watched
                .file
                .fingerprint
                .and_then(|fingerprint| self.contents.get(&fingerprint))
                .map_or(0, |content| content.progress.committed());
            gauges.committed_offset.set(committed as i64);
            let lag = match watched.file.is_gzip() {
                true => 0,
                false => watched
                    .file
                    .metadata()
                    .map_or(0, |metadata| metadata.len().saturating_sub(committed)),
            };
            gauges.lag.set(lag as i64);
        }
        self.metrics.files_watched.set(self.files.len() as i64);
    }

    fn save_if_due(&mut self) {
        if self.dirty && self.last_save.elapsed() >= self.config.checkpoint_interval {
            self.save();
        }
    }

    /// Writes the committed offsets (atomically); a failure is reported and retried later.
    fn save(&mut self) {
        self.last_save = Instant::now();
        let mut checkpoints: Vec<Checkpoint> = self
            .contents
            .iter()
            .map(|(fingerprint, content)| Checkpoint {
                fingerprint: *fingerprint,
                offset: content.progress.committed(),
                path: content.path.clone(),
                seen_at: content.seen_at,
            })
            .collect();
        checkpoints.sort_by_key(|checkpoint| checkpoint.fingerprint);
        match self.store.save(checkpoints) {
            Ok(()) => {
                self.dirty = false;
                self.metrics.checkpoint_writes.add(1);
                self.reports.resolve("checkpoint");
            }
            Err(error) => self.reports.report(
                "checkpoint".into(),
                format!(
                    "cannot write the checkpoints {}: {error}; check the space and permissions of data_dir (retrying every second; until then a restart reads again from the last saved checkpoint)",
                    self.store.path().display()
                ),
                &self.metrics,
                "checkpoint_write_failed",
            ),
        }
    }

    /// Stops: closes the outputs, waits for every batch in flight, saves the checkpoints.
    async fn finish(mut self, context: SourceContext) -> anyhow::Result<()> {
        let once = context.once;
        // Closing the outputs lets downstream drain and deliver what was sent.
        drop(context);
        while let Some(content) = self
            .contents
            .values_mut()
            .find(|content| !content.progress.is_settled())
        {
            let interval = self.config.checkpoint_interval;
            let _ = tokio::time::timeout(interval, content.progress.wait_head()).await;
            self.settle(true);
            self.save_if_due();
        }
        self.settle(true);
        self.save();
        self.report_unfinished_lines(once);
        for watched in std::mem::take(&mut self.files).into_values() {
            self.metrics.forget(&watched.gauges);
        }
        match self.failed.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Partial last lines are never sent; say so when the pipeline stops.
    fn report_unfinished_lines(&self, once: bool) {
        for watched in self.files.values() {
            let pending = watched.file.pending_bytes();
            if pending > 0 {
                let path = watched.file.path.display();
                match once {
                    true => {
                        tracing::warn!(component_id = %self.id, "{path} ends with an unfinished line of {pending} bytes; it is read once its newline is written (the checkpoint stays before it)")
                    }
                    false => {
                        tracing::debug!(component_id = %self.id, "{path}: {pending} bytes of an unfinished line are left for the next start")
                    }
                }
            }
        }
    }

    /// Closes a file: its series go away.
    fn close(&mut self, watched: Watched) {
        self.metrics.forget(&watched.gauges);
    }

    /// Closes files that are done: renamed away or deleted and read to their end, or compressed and read.
    fn close_finished(&mut self) {
        let finished: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, watched)| self.is_finished(watched))
            .map(|(id, _)| *id)
            .collect();
        for id in finished {
            let Some(watched) = self.files.remove(&id) else {
                continue;
            };
            if watched.file.is_gzip() && !watched.orphaned {
                self.park(&watched.file);
            } else {
                self.log_closed(&watched);
            }
            self.close(watched);
        }
    }

    fn is_finished(&self, watched: &Watched) -> bool {
        let settled = watched.file.fingerprint.is_none_or(|fingerprint| {
            !self.batches.holds(fingerprint)
                && self
                    .contents
                    .get(&fingerprint)
                    .is_none_or(|content| content.progress.is_settled())
        });
        let waiting = watched.file.fingerprint.is_none();
        let done = (watched.at_eof && settled) || waiting;
        done && (watched.orphaned || watched.file.is_gzip() && !waiting)
    }

    fn log_closed(&self, watched: &Watched) {
        let path = watched.file.path.display();
        let pending = watched.file.pending_bytes();
        if pending > 0 {
            tracing::warn!(component_id = %self.id, "{path} is gone and ends with an unfinished line of {pending} bytes, which is not read");
        }
        tracing::info!(component_id = %self.id, "{path}: read to its end after it was renamed away or deleted; closed");
    }
}

#[derive(Debug, Default)]
struct TurnOutcome {
    progressed: bool,
    keep: bool,
    closed: bool,
}

/// The in-memory state of a saved checkpoint.
fn restored(checkpoint: Checkpoint) -> Content {
    Content {
        progress: Progress::new(checkpoint.offset),
        path: checkpoint.path,
        seen_at: checkpoint.seen_at,
        retry_at: None,
        generation: 0,
        rewind: false,
    }
}

fn read_key(path: &std::path::Path) -> String {
    format!("read:{}", path.display())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// How long the checkpoint of a content no file holds is kept.
fn retention(config: &FileConfig) -> Duration {
    config.ignore_older.unwrap_or_default().max(MIN_RETENTION)
}

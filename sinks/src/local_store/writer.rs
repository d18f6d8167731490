//! Writing batches into day partitions, and deleting the expired ones.
//!
//! The [`Writer`] runs on a blocking thread (never on the async runtime). A
//! batch is split by day; each day's part is written in one transaction
//! (`INSERT OR IGNORE`, so rows already stored by an earlier delivery of the
//! same events are skipped) and committed before [`Writer::write`] returns.
//! A few partitions stay open (events around midnight, late arrivals); the
//! least recently used one is closed when another is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use auditflow_core::dir_lock::lock_directory;
use auditflow_core::event::{Alert, AuditEvent, Event, Payload, TextList};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use rustc_hash::FxHashMap;

use super::block::{self, code_value, Column, Entry, ABSENT, BLOCK_EVENTS, COLUMNS, FRAME_EVENTS};
use super::partition::{self, parse_micros, Day, MICROS_PER_DAY};
use super::schema;
use super::seen::{Key, Seen};

/// How many partitions stay open at most.
const MAX_OPEN_PARTITIONS: usize = 3;

/// What a write did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Events and alerts stored.
    pub stored: usize,
    /// Events and alerts already stored before (a replay).
    pub duplicates: usize,
    /// Events older than the retention, not stored.
    pub expired: usize,
    /// Payloads the store does not keep (records such as `errors` records).
    pub unsupported: usize,
    /// Compressed bytes written.
    pub bytes: usize,
}

/// An open partition and its string caches (complete: loaded when it was opened).
struct OpenPartition {
    connection: Connection,
    dict: FxHashMap<String, u32>,
    group_sets: FxHashMap<String, u32>,
    next_frame: i64,
    seen: Seen,
    last_used: u64,
}

impl OpenPartition {
    fn open(path: &Path) -> anyhow::Result<OpenPartition> {
        let connection = schema::open_for_writing(path).with_context(|| {
            format!(
                "cannot open the store partition {}: move the file away if it is damaged",
                path.display()
            )
        })?;
        let dict = load_map(&connection, "SELECT value, id FROM dict")?;
        let group_sets = load_map(&connection, "SELECT groups, id FROM group_sets")?;
        let next_frame =
            connection.query_row("SELECT coalesce(max(id), 0) + 1 FROM frames", [], |row| {
                row.get(0)
            })?;
        let seen = Seen::open(&connection)?;
        Ok(OpenPartition {
            connection,
            dict,
            group_sets,
            next_frame,
            seen,
            last_used: 0,
        })
    }

    /// Refreshes the query planner's statistics, then closes the partition.
    fn close(self) {
        let _ = self
            .connection
            .execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize;");
        drop(self.connection);
    }
}

fn load_map(connection: &Connection, sql: &str) -> rusqlite::Result<FxHashMap<String, u32>> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// Writes events and alerts into the day partitions of one store directory.
pub struct Writer {
    dir: PathBuf,
    retention_days: u32,
    open: BTreeMap<Day, OpenPartition>,
    uses: u64,
    compressor: zstd::bulk::Compressor<'static>,
    scratch: Vec<u8>,
    /// Held while the writer exists: one process writes a store.
    _lock: std::fs::File,
}

/// One item of a batch, with the day it belongs to.
enum Item<'a> {
    Audit(&'a AuditEvent, i64),
    Alert(&'a Alert, i64),
}

impl Writer {
    /// A writer for the store in `dir` (created if missing).
    pub fn new(dir: PathBuf, retention_days: u32, compression_level: i32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the store directory {}", dir.display()))?;
        let lock = lock_directory(
            &dir,
            "two processes must not write one local_store: stop the other one or give this one its own data_dir",
        )?;
        Ok(Writer {
            dir,
            retention_days,
            open: BTreeMap::new(),
            uses: 0,
            compressor: zstd::bulk::Compressor::new(compression_level)
                .context("cannot set up the zstd compressor")?,
            scratch: Vec::new(),
            _lock: lock,
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a batch: every day's part is committed when this returns `Ok`.
    ///
    /// On error nothing is claimed: parts already committed are stored, and a
    /// retry stores the rest without duplicating them.
    pub fn write(&mut self, events: &[Event], now_micros: i64) -> anyhow::Result<WriteSummary> {
        let mut summary = WriteSummary::default();
        let oldest_kept = self.oldest_kept_day(now_micros);
        let mut by_day: BTreeMap<Day, Vec<Item<'_>>> = BTreeMap::new();
        for event in events {
            let item = match &event.payload {
                Payload::Audit(audit) => Item::Audit(audit, event_time(audit, now_micros)),
                Payload::Alert(alert) => {
                    Item::Alert(alert, parse_micros(&alert.time).unwrap_or(now_micros))
                }
                Payload::Record(_) => {
                    summary.unsupported += 1;
                    continue;
                }
            };
            let day = Day::of_micros(item.time());
            if day < oldest_kept {
                summary.expired += 1;
                continue;
            }
            by_day.entry(day).or_default().push(item);
        }
        for (day, items) in by_day {
            self.write_day(day, &items, &mut summary)?;
        }
        Ok(summary)
    }

    fn write_day(
        &mut self,
        day: Day,
        items: &[Item<'_>],
        summary: &mut WriteSummary,
    ) -> anyhow::Result<()> {
        let path = partition::path_of(&self.dir, day);
        let mut partition = self.take_partition(day, &path)?;
        let written = insert_items(
            &mut partition,
            items,
            &mut self.compressor,
            &mut self.scratch,
        );
        match written {
            Ok(day_summary) => {
                summary.stored += day_summary.stored;
                summary.duplicates += day_summary.duplicates;
                summary.bytes += day_summary.bytes;
                self.open.insert(day, partition);
                Ok(())
            }
            // The caches may name ids the rolled-back transaction created: reopen next time.
            Err(error) => Err(error).with_context(|| format!("cannot write to {}", path.display())),
        }
    }

    /// The open partition of `day` (opened, and another closed, if needed), out of the map.
    fn take_partition(&mut self, day: Day, path: &Path) -> anyhow::Result<OpenPartition> {
        self.uses += 1;
        let mut partition = match self.open.remove(&day) {
            Some(partition) => partition,
            None => {
                while self.open.len() >= MAX_OPEN_PARTITIONS {
                    self.close_least_recently_used();
                }
                OpenPartition::open(path)?
            }
        };
        partition.last_used = self.uses;
        Ok(partition)
    }

    fn close_least_recently_used(&mut self) {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, partition)| partition.last_used)
            .map(|(day, _)| *day);
        if let Some(partition) = oldest.and_then(|day| self.open.remove(&day)) {
            partition.close();
        }
    }

    /// The oldest day retention keeps at `now_micros`.
    ///
    /// A day is deleted once all of it is more than `retention_days` old: with
    /// `retention_days = 90`, events are kept at least 90 days and at most 91.
    pub fn oldest_kept_day(&self, now_micros: i64) -> Day {
        let retention = i64::from(self.retention_days).saturating_mul(MICROS_PER_DAY);
        Day::of_micros(now_micros.saturating_sub(retention))
    }

    /// Deletes the partitions retention no longer keeps; returns their paths.
    pub fn apply_retention(&mut self, now_micros: i64) -> anyhow::Result<Vec<PathBuf>> {
        let oldest_kept = self.oldest_kept_day(now_micros);
        let partitions = partition::list(&self.dir)
            .with_context(|| format!("cannot list the store directory {}", self.dir.display()))?;
        let mut deleted = Vec::new();
        for (day, path) in partitions.into_iter().filter(|(day, _)| *day < oldest_kept) {
            if let Some(open) = self.open.remove(&day) {
                drop(open.connection);
            }
            partition::remove(&path).with_context(|| {
                format!("cannot delete the expired partition {}", path.display())
            })?;
            deleted.push(path);
        }
        Ok(deleted)
    }

    /// Closes every open partition (the WAL is checkpointed into the database files).
    pub fn close(&mut self) {
        for (_, partition) in std::mem::take(&mut self.open) {
            partition.close();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

impl Item<'_> {
    fn time(&self) -> i64 {
        match self {
            Item::Audit(_, time) | Item::Alert(_, time) => *time,
        }
    }
}

/// The time an audit event is stored under: its stage timestamp, else when it
/// was received, else now (an event without either is kept, not lost).
fn event_time(event: &AuditEvent, now_micros: i64) -> i64 {
    let header = event.header();
    [
        header.stage_timestamp(),
        header.request_received_timestamp(),
    ]
    .into_iter()
    .flatten()
    .find_map(parse_micros)
    .unwrap_or(now_micros)
}

fn insert_items(
    partition: &mut OpenPartition,
    items: &[Item<'_>],
    compressor: &mut zstd::bulk::Compressor<'static>,
    scratch: &mut Vec<u8>,
) -> anyhow::Result<WriteSummary> {
    let OpenPartition {
        connection,
        dict,
        group_sets,
        next_frame,
        seen,
        ..
    } = partition;
    let mut events = Vec::with_capacity(items.len());
    let mut alerts = Vec::new();
    for item in items {
        match item {
            Item::Audit(event, time) => events.push((*event, *time)),
            Item::Alert(alert, time) => alerts.push((*alert, *time)),
        }
    }
    let transaction = connection.transaction()?;
    let mut summary = WriteSummary::default();
    for (alert, time) in alerts {
        scratch.clear();
        alert.write_json(scratch)?;
        summary.bytes += scratch.len();
        summary.count(insert_alert(&transaction, alert, time, scratch)?);
    }
    // The events' frames are compressed on a second thread while this one
    // finds which events are new; a block holding a replayed event is
    // compressed again without it (replays are rare).
    let (compressed, entries) = std::thread::scope(|scope| {
        let compressing = scope.spawn(|| compress_blocks(compressor, &events));
        let mut strings = Interner {
            transaction: &transaction,
            dict,
            group_sets,
        };
        let entries = new_entries(&transaction, &mut strings, seen, &events);
        let compressed = compressing
            .join()
            .map_err(|_| anyhow::anyhow!("the local_store compression thread failed"));
        (compressed, entries)
    });
    let (compressed, entries) = (compressed??, entries?);
    let mut blocks = BlockWriter {
        transaction: &transaction,
        compressor,
        scratch,
        next_frame,
    };
    let candidates = events
        .chunks(BLOCK_EVENTS)
        .zip(entries.chunks(BLOCK_EVENTS));
    for ((events, entries), frames) in candidates.zip(compressed) {
        let new: Vec<(&AuditEvent, Entry)> = events
            .iter()
            .zip(entries)
            .filter_map(|((event, _), entry)| entry.map(|entry| (*event, entry)))
            .collect();
        summary.stored += new.len();
        summary.duplicates += events.len() - new.len();
        if new.is_empty() {
            continue;
        }
        let frames = if new.len() == events.len() {
            frames
        } else {
            compress_frames(
                blocks.compressor,
                blocks.scratch,
                new.iter().map(|(event, _)| *event),
            )?
        };
        summary.bytes += blocks.insert(&new, frames)?;
    }
    transaction.commit()?;
    let new_keys = events
        .iter()
        .zip(&entries)
        .filter_map(|((event, _), entry)| entry.map(|entry| key_of(event, &entry)));
    seen.remember(new_keys);
    Ok(summary)
}

impl WriteSummary {
    fn count(&mut self, inserted: bool) {
        if inserted {
            self.stored += 1;
        } else {
            self.duplicates += 1;
        }
    }
}

/// The block entries of `events`, `None` for those stored already (a replay).
fn new_entries(
    transaction: &Transaction<'_>,
    strings: &mut Interner<'_>,
    seen: &Seen,
    events: &[(&AuditEvent, i64)],
) -> anyhow::Result<Vec<Option<Entry>>> {
    let mut entries = Vec::with_capacity(events.len());
    for (event, time) in events {
        entries.push(block_entry(strings, event, *time)?);
    }
    let keys: Vec<Key<'_>> = events
        .iter()
        .zip(&entries)
        .map(|((event, _), entry)| key_of(event, entry))
        .collect();
    let stored = seen
        .stored(transaction, &keys)
        .map_err(anyhow::Error::msg)?;
    Ok(entries
        .into_iter()
        .zip(stored)
        .map(|(entry, stored)| (!stored).then_some(entry))
        .collect())
}

/// The key an event is stored once under.
fn key_of<'a>(event: &'a AuditEvent, entry: &Entry) -> Key<'a> {
    Key {
        time: entry.time,
        stage: entry.value(Column::Stage),
        audit_id: event.header().audit_id(),
    }
}

/// The compressed frames of each block of `events` ([`BLOCK_EVENTS`] events a block).
fn compress_blocks(
    compressor: &mut zstd::bulk::Compressor<'static>,
    events: &[(&AuditEvent, i64)],
) -> std::io::Result<Vec<Vec<Vec<u8>>>> {
    let mut scratch = Vec::new();
    events
        .chunks(BLOCK_EVENTS)
        .map(|block| {
            compress_frames(
                compressor,
                &mut scratch,
                block.iter().map(|(event, _)| *event),
            )
        })
        .collect()
}

/// The events of one block compressed in frames of [`FRAME_EVENTS`] events.
fn compress_frames<'a>(
    compressor: &mut zstd::bulk::Compressor<'static>,
    scratch: &mut Vec<u8>,
    events: impl Iterator<Item = &'a AuditEvent>,
) -> std::io::Result<Vec<Vec<u8>>> {
    let mut frames = Vec::new();
    let mut in_frame = 0;
    scratch.clear();
    for event in events {
        scratch.extend_from_slice(event.as_json().as_bytes());
        in_frame += 1;
        if in_frame == FRAME_EVENTS {
            frames.push(compressor.compress(scratch)?);
            scratch.clear();
            in_frame = 0;
        }
    }
    if in_frame > 0 {
        frames.push(compressor.compress(scratch)?);
    }
    Ok(frames)
}

/// The block entry of an audit event: its time and header fields as ids.
fn block_entry(
    strings: &mut Interner<'_>,
    event: &AuditEvent,
    time: i64,
) -> rusqlite::Result<Entry> {
    let header = event.header();
    let object = header.object_ref();
    let user = header.user();
    let mut values = [ABSENT; COLUMNS];
    let mut set = |column: Column, value: u32| values[column.index()] = value;
    set(Column::Stage, strings.string(header.stage().as_str())?);
    set(
        Column::Level,
        strings.optional(header.level().map(|level| level.as_str()))?,
    );
    set(Column::Verb, strings.string(header.verb())?);
    set(Column::User, strings.string(user.username())?);
    set(Column::Groups, strings.groups(user.groups())?);
    set(
        Column::Resource,
        strings.optional(object.and_then(|o| o.resource()))?,
    );
    set(
        Column::Subresource,
        strings.optional(object.and_then(|o| o.subresource()))?,
    );
    set(
        Column::Namespace,
        strings.optional(object.and_then(|o| o.namespace()))?,
    );
    set(
        Column::Name,
        strings.optional(object.and_then(|o| o.name()))?,
    );
    set(Column::Code, code_value(header.response_code()));
    set(
        Column::SourceIp,
        strings.optional(header.source_ips().first())?,
    );
    set(Column::UserAgent, strings.optional(header.user_agent())?);
    let length = u32::try_from(event.as_json().len()).unwrap_or(u32::MAX);
    Ok(Entry {
        time,
        values,
        length,
    })
}

/// Writes blocks of new events: their frames, header and postings.
struct BlockWriter<'t> {
    transaction: &'t Transaction<'t>,
    compressor: &'t mut zstd::bulk::Compressor<'static>,
    scratch: &'t mut Vec<u8>,
    next_frame: &'t mut i64,
}

impl BlockWriter<'_> {
    /// Inserts one block and its compressed frames; returns the compressed bytes written.
    fn insert(
        &mut self,
        events: &[(&AuditEvent, Entry)],
        frames: Vec<Vec<u8>>,
    ) -> anyhow::Result<usize> {
        let first_frame = *self.next_frame;
        let mut bytes = 0;
        for frame in frames {
            bytes += frame.len();
            self.transaction
                .prepare_cached("INSERT INTO frames (id, data) VALUES (?1, ?2)")?
                .execute(params![*self.next_frame, frame])?;
            *self.next_frame += 1;
        }
        let entries: Vec<Entry> = events.iter().map(|(_, entry)| *entry).collect();
        let header = block::encode_header(&entries)?;
        let audit_ids =
            block::encode_audit_ids(events.iter().map(|(event, _)| event.header().audit_id()));
        bytes += header.len() + audit_ids.len();
        let time_min = entries.iter().map(|entry| entry.time).min().unwrap_or(0);
        let time_max = entries.iter().map(|entry| entry.time).max().unwrap_or(0);
        self.transaction
            .prepare_cached(
                "INSERT INTO blocks (time_min, time_max, events, first_frame, header, audit_ids) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                time_min,
                time_max,
                entries.len(),
                first_frame,
                header,
                audit_ids
            ])?;
        let block = self.transaction.last_insert_rowid();
        self.insert_postings(block, &entries)?;
        Ok(bytes)
    }

    /// One posting per distinct value of each searched column in the block.
    fn insert_postings(&mut self, block: i64, entries: &[Entry]) -> rusqlite::Result<()> {
        let mut postings: Vec<(usize, u32)> = entries
            .iter()
            .flat_map(|entry| {
                Column::SEARCHED
                    .into_iter()
                    .map(|column| (column.index(), entry.value(column)))
            })
            .filter(|(_, value)| *value != ABSENT)
            .collect();
        postings.sort_unstable();
        postings.dedup();
        let mut statement = self
            .transaction
            .prepare_cached("INSERT INTO postings (field, value, block) VALUES (?1, ?2, ?3)")?;
        for (field, value) in postings {
            statement.execute(params![field, value, block])?;
        }
        Ok(())
    }
}

/// Looks up (or adds) the ids of strings and group lists within a transaction.
struct Interner<'t> {
    transaction: &'t Transaction<'t>,
    dict: &'t mut FxHashMap<String, u32>,
    group_sets: &'t mut FxHashMap<String, u32>,
}

impl Interner<'_> {
    fn string(&mut self, value: &str) -> rusqlite::Result<u32> {
        if let Some(id) = self.dict.get(value) {
            return Ok(*id);
        }
        let id = intern(
            self.transaction,
            "INSERT OR IGNORE INTO dict (value) VALUES (?1)",
            "SELECT id FROM dict WHERE value = ?1",
            value,
        )?;
        self.dict.insert(value.to_string(), id);
        Ok(id)
    }

    fn optional(&mut self, value: Option<&str>) -> rusqlite::Result<u32> {
        value.map_or(Ok(ABSENT), |value| self.string(value))
    }

    fn groups(&mut self, groups: TextList<'_>) -> rusqlite::Result<u32> {
        if groups.is_empty() {
            return Ok(ABSENT);
        }
        let joined = groups.join("\n");
        if let Some(id) = self.group_sets.get(&joined) {
            return Ok(*id);
        }
        let id = intern(
            self.transaction,
            "INSERT OR IGNORE INTO group_sets (groups) VALUES (?1)",
            "SELECT id FROM group_sets WHERE groups = ?1",
            &joined,
        )?;
        self.group_sets.insert(joined, id);
        Ok(id)
    }
}

/// Inserts a value if it is new and returns its id (another writer may have added it).
fn intern(
    transaction: &Transaction<'_>,
    insert: &str,
    select: &str,
    value: &str,
) -> rusqlite::Result<u32> {
    transaction.prepare_cached(insert)?.execute([value])?;
    transaction
        .prepare_cached(select)?
        .query_row([value], |row| row.get(0))
        .optional()?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Inserts an alert; `false` when it was stored already.
fn insert_alert(
    transaction: &Transaction<'_>,
    alert: &Alert,
    time: i64,
    json: &[u8],
) -> rusqlite::Result<bool> {
    let text_field = |name: &str| {
        alert
            .output_fields
            .get(name)
            .and_then(|value| value.as_str())
            .map(str::to_string)
    };
    let changed = transaction
        .prepare_cached(
            "INSERT OR IGNORE INTO alerts (time, rule, priority, namespace, user, output, alert) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            time,
            alert.rule,
            alert.priority.as_str(),
            text_field("ka.target.namespace"),
            text_field("ka.user.name"),
            alert.output,
            String::from_utf8_lossy(json),
        ])?;
    Ok(changed == 1)
}

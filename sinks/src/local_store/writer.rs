//! Writing batches into day partitions, and deleting the expired ones.
//!
//! The [`Writer`] runs on a blocking thread (never on the async runtime). A
//! batch is split by day; each day's part is written in one transaction
//! (`INSERT OR IGNORE`, so rows already stored by an earlier delivery of the
//! same events are skipped) and committed before [`Writer::write`] returns.
//! A few partitions stay open (events around midnight, late arrivals); the
//! least recently used one is closed when another is needed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use auditflow_core::event::{Alert, AuditEvent, Event, Payload, TextList};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::codec::PartitionEncoder;
use super::partition::{self, parse_micros, Day, MICROS_PER_DAY};
use super::schema;

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
    dict: HashMap<String, i64>,
    group_sets: HashMap<String, i64>,
    encoder: PartitionEncoder,
    last_used: u64,
}

impl OpenPartition {
    fn open(path: &Path, compression_level: i32) -> anyhow::Result<OpenPartition> {
        let connection = schema::open_for_writing(path).with_context(|| {
            format!(
                "cannot open the store partition {}: move the file away if it is damaged",
                path.display()
            )
        })?;
        let dict = load_map(&connection, "SELECT value, id FROM dict")?;
        let group_sets = load_map(&connection, "SELECT groups, id FROM group_sets")?;
        let encoder = PartitionEncoder::load(&connection, compression_level)?;
        Ok(OpenPartition {
            connection,
            dict,
            group_sets,
            encoder,
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

fn load_map(connection: &Connection, sql: &str) -> rusqlite::Result<HashMap<String, i64>> {
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
    compression_level: i32,
    scratch: Vec<u8>,
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
        Ok(Writer {
            dir,
            retention_days,
            open: BTreeMap::new(),
            uses: 0,
            compression_level,
            scratch: Vec::new(),
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
        let written = insert_items(&mut partition, items, &mut self.scratch);
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
                OpenPartition::open(path, self.compression_level)?
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
    scratch: &mut Vec<u8>,
) -> anyhow::Result<WriteSummary> {
    let OpenPartition {
        connection,
        dict,
        group_sets,
        encoder,
        ..
    } = partition;
    let transaction = connection.transaction()?;
    if encoder.wants_samples() {
        for item in items {
            if let Item::Audit(event, _) = item {
                encoder.add_sample(event.as_json().as_bytes());
            }
        }
        encoder.train_if_ready(&transaction)?;
    }
    let mut summary = WriteSummary::default();
    {
        let mut strings = Interner {
            transaction: &transaction,
            dict,
            group_sets,
        };
        for item in items {
            let inserted = match item {
                Item::Audit(event, time) => {
                    let compressed = encoder.compress(event.as_json().as_bytes())?;
                    summary.bytes += compressed.0.len();
                    insert_event(&transaction, &mut strings, event, *time, compressed)?
                }
                Item::Alert(alert, time) => {
                    scratch.clear();
                    alert.write_json(scratch)?;
                    summary.bytes += scratch.len();
                    insert_alert(&transaction, alert, *time, scratch)?
                }
            };
            if inserted {
                summary.stored += 1;
            } else {
                summary.duplicates += 1;
            }
        }
    }
    transaction.commit()?;
    Ok(summary)
}

/// Looks up (or adds) the ids of strings and group lists within a transaction.
struct Interner<'t> {
    transaction: &'t Transaction<'t>,
    dict: &'t mut HashMap<String, i64>,
    group_sets: &'t mut HashMap<String, i64>,
}

impl Interner<'_> {
    fn string(&mut self, value: &str) -> rusqlite::Result<i64> {
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

    fn optional(&mut self, value: Option<&str>) -> rusqlite::Result<Option<i64>> {
        value.map(|value| self.string(value)).transpose()
    }

    fn groups(&mut self, groups: TextList<'_>) -> rusqlite::Result<Option<i64>> {
        if groups.is_empty() {
            return Ok(None);
        }
        let joined = groups.join("\n");
        if let Some(id) = self.group_sets.get(&joined) {
            return Ok(Some(*id));
        }
        let id = intern(
            self.transaction,
            "INSERT OR IGNORE INTO group_sets (groups) VALUES (?1)",
            "SELECT id FROM group_sets WHERE groups = ?1",
            &joined,
        )?;
        self.group_sets.insert(joined, id);
        Ok(Some(id))
    }
}

/// Inserts a value if it is new and returns its id (another writer may have added it).
fn intern(
    transaction: &Transaction<'_>,
    insert: &str,
    select: &str,
    value: &str,
) -> rusqlite::Result<i64> {
    transaction.prepare_cached(insert)?.execute([value])?;
    transaction
        .prepare_cached(select)?
        .query_row([value], |row| row.get(0))
        .optional()?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Inserts an audit event; `false` when it was stored already.
fn insert_event(
    transaction: &Transaction<'_>,
    strings: &mut Interner<'_>,
    event: &AuditEvent,
    time: i64,
    (compressed, dictionary): (Vec<u8>, Option<i64>),
) -> rusqlite::Result<bool> {
    let header = event.header();
    let object = header.object_ref();
    let field = |get: for<'a> fn(auditflow_core::event::ObjectReference<'a>) -> Option<&'a str>| {
        object.and_then(get)
    };
    let row = params![
        time,
        header.audit_id(),
        strings.string(header.stage().as_str())?,
        strings.optional(header.level().map(|level| level.as_str()))?,
        strings.string(header.verb())?,
        strings.string(header.user().username())?,
        strings.groups(header.user().groups())?,
        strings.optional(field(|o| o.resource()))?,
        strings.optional(field(|o| o.subresource()))?,
        strings.optional(field(|o| o.namespace()))?,
        strings.optional(field(|o| o.name()))?,
        header.response_code(),
        strings.optional(header.source_ips().first())?,
        strings.optional(header.user_agent())?,
        dictionary,
        compressed,
    ];
    let changed = transaction
        .prepare_cached(
            "INSERT OR IGNORE INTO events (time, audit_id, stage, level, verb, user, groups, \
             resource, subresource, namespace, name, code, source_ip, user_agent, dictionary, event) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(row)?;
    Ok(changed == 1)
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

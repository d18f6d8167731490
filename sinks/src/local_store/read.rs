//! Reading a store: events and alerts in a time range, filtered, newest first.
//!
//! This is what `auditflow query` runs. Only the partitions of the days in the
//! range are opened, newest first. In each, a filter's values are first looked
//! up in the partition's `dict` (a value the day never saw means the day has
//! no match, and nothing else is read), then the blocks that can hold matches
//! are those in the time range that have a posting for every filter. Their
//! headers are decoded and checked event by event; only the frames of the
//! events shown are decompressed, and counting decompresses none. Blocks are
//! read newest first and their matches merged, so events come out newest first
//! however blocks overlap in time. A partition that cannot be read (damaged,
//! not a store file) is reported in [`Store::errors`] with its path, and the
//! others are read. Reading never blocks the writer: the partitions are in WAL
//! mode, and each is read in one transaction (one consistent snapshot).

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use auditflow_core::event::{Alert, AuditEvent, AuditHeader};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::block::{self, Column, Entry, ABSENT};
use super::partition::{self, Day};
use super::schema;

/// A time range in microseconds since the epoch: `from` inclusive, `to` exclusive; open when `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// The earliest time included.
    pub from: Option<i64>,
    /// The first time excluded.
    pub to: Option<i64>,
}

impl TimeRange {
    fn overlaps(&self, day: Day) -> bool {
        self.from.is_none_or(|from| day.end_micros() > from)
            && self.to.is_none_or(|to| day.start_micros() < to)
    }
}

/// Filters on the indexed header fields of audit events; every one given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// `user.username`.
    pub user: Option<String>,
    /// One of `user.groups`.
    pub group: Option<String>,
    /// `verb`.
    pub verb: Option<String>,
    /// `objectRef.resource`.
    pub resource: Option<String>,
    /// `objectRef.namespace`.
    pub namespace: Option<String>,
    /// `objectRef.name`.
    pub name: Option<String>,
    /// `responseStatus.code`.
    pub code: Option<i64>,
    /// The first of `sourceIPs` (the client's own address).
    pub source_ip: Option<String>,
}

/// Filters on alerts; every one given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// The user of the audit event that raised the alert (`ka.user.name`).
    pub user: Option<String>,
    /// Its namespace (`ka.target.namespace`).
    pub namespace: Option<String>,
}

/// A field results can be counted by (`--group-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `user.username` (events and alerts).
    User,
    /// Each of `user.groups`.
    Group,
    /// `verb`.
    Verb,
    /// `objectRef.resource`.
    Resource,
    /// `objectRef.subresource`.
    Subresource,
    /// `objectRef.namespace` (events and alerts).
    Namespace,
    /// `objectRef.name`.
    Name,
    /// `responseStatus.code`.
    Code,
    /// The first source IP.
    SourceIp,
    /// `userAgent`.
    UserAgent,
    /// `level`.
    Level,
    /// `stage`.
    Stage,
    /// An alert's rule.
    Rule,
    /// An alert's priority.
    Priority,
}

impl Field {
    /// Every field with its name.
    pub const ALL: [(&'static str, Field); 14] = [
        ("user", Field::User),
        ("group", Field::Group),
        ("verb", Field::Verb),
        ("resource", Field::Resource),
        ("subresource", Field::Subresource),
        ("namespace", Field::Namespace),
        ("name", Field::Name),
        ("code", Field::Code),
        ("source-ip", Field::SourceIp),
        ("user-agent", Field::UserAgent),
        ("level", Field::Level),
        ("stage", Field::Stage),
        ("rule", Field::Rule),
        ("priority", Field::Priority),
    ];

    /// Parses a field name (`user`, `source-ip`, ...).
    pub fn parse(name: &str) -> Option<Field> {
        let name = name.replace('_', "-");
        Field::ALL
            .iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, field)| *field)
    }

    /// The field's name.
    pub fn name(self) -> &'static str {
        Field::ALL
            .iter()
            .find(|(_, field)| *field == self)
            .map(|(name, _)| *name)
            .unwrap_or("?")
    }

    /// Whether alerts can be grouped by it.
    pub fn applies_to_alerts(self) -> bool {
        matches!(
            self,
            Field::User | Field::Namespace | Field::Rule | Field::Priority
        )
    }

    /// Whether audit events can be grouped by it.
    pub fn applies_to_events(self) -> bool {
        !matches!(self, Field::Rule | Field::Priority)
    }

    /// The values of the field in an event's header (several for groups; `-` when absent).
    pub fn values_of(self, header: AuditHeader<'_>) -> Vec<String> {
        let object = header.object_ref();
        let text = |value: Option<&str>| vec![value.unwrap_or(NONE).to_string()];
        match self {
            Field::User => text(Some(header.user().username())),
            Field::Group if header.user().groups().is_empty() => text(None),
            Field::Group => header.user().groups().to_vec(),
            Field::Verb => text(Some(header.verb())),
            Field::Resource => text(object.and_then(|o| o.resource())),
            Field::Subresource => text(object.and_then(|o| o.subresource())),
            Field::Namespace => text(object.and_then(|o| o.namespace())),
            Field::Name => text(object.and_then(|o| o.name())),
            Field::Code => text(header.response_code().map(|c| c.to_string()).as_deref()),
            Field::SourceIp => text(header.source_ips().first()),
            Field::UserAgent => text(header.user_agent()),
            Field::Level => text(header.level().map(|level| level.as_str())),
            Field::Stage => text(Some(header.stage().as_str())),
            Field::Rule | Field::Priority => text(None),
        }
    }

    /// The values of the field in an alert (`-` when absent).
    pub fn values_of_alert(self, alert: &Alert) -> Vec<String> {
        let output_field = |name: &str| {
            alert
                .output_fields
                .get(name)
                .and_then(|value| value.as_str())
                .unwrap_or(NONE)
                .to_string()
        };
        let value = match self {
            Field::Rule => alert.rule.clone(),
            Field::Priority => alert.priority.as_str().to_string(),
            Field::User => output_field("ka.user.name"),
            Field::Namespace => output_field("ka.target.namespace"),
            _ => NONE.to_string(),
        };
        vec![value]
    }
}

/// How an absent value is shown in counts.
pub const NONE: &str = "-";

/// A partition (or a row in it) that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    /// The partition's file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for PartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; its events are not in the results (move the file away if it is damaged)",
            self.path.display(),
            self.message
        )
    }
}

/// An audit event read from the store.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its time (microseconds since the epoch).
    pub time: i64,
    /// The event.
    pub event: AuditEvent,
}

/// An alert read from the store.
#[derive(Debug, Clone)]
pub struct StoredAlert {
    /// Its time (microseconds since the epoch).
    pub time: i64,
    /// The alert.
    pub alert: Alert,
}

/// A store directory opened for reading.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// The partitions (or rows) that could not be read so far.
    pub errors: Vec<PartitionError>,
}

/// The `WHERE` clause of an alerts query and its parameters.
struct Clauses {
    sql: Vec<String>,
    params: Vec<Value>,
}

impl Clauses {
    fn time(range: &TimeRange) -> Clauses {
        let mut clauses = Clauses {
            sql: Vec::new(),
            params: Vec::new(),
        };
        if let Some(from) = range.from {
            clauses.push("e.time >= ?", Value::Integer(from));
        }
        if let Some(to) = range.to {
            clauses.push("e.time < ?", Value::Integer(to));
        }
        clauses
    }

    fn push(&mut self, sql: &str, param: Value) {
        self.sql.push(sql.to_string());
        self.params.push(param);
    }

    fn where_sql(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }
}

/// A filter resolved against one partition: for each column filtered on, the values accepted.
struct Resolved {
    range: TimeRange,
    columns: Vec<(Column, Vec<u32>)>,
}

impl Resolved {
    fn matches(&self, entry: &Entry) -> bool {
        self.range.from.is_none_or(|from| entry.time >= from)
            && self.range.to.is_none_or(|to| entry.time < to)
            && self
                .columns
                .iter()
                .all(|(column, values)| values.contains(&entry.value(*column)))
    }
}

/// A block that may hold matches.
#[derive(Debug, Clone, Copy)]
struct BlockRef {
    id: i64,
    time_max: i64,
    events: usize,
    first_frame: i64,
}

/// A matching event waiting to be shown: ordered by time, then block, then place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    time: i64,
    block: i64,
    index: usize,
    frame: i64,
    frame_bytes: usize,
    start: usize,
    end: usize,
}

/// How many decompressed frames a listing keeps at most.
const CACHED_FRAMES: usize = 32;

/// Reads the events of frames, keeping the last few decompressed.
struct FrameReader {
    decompressor: zstd::bulk::Decompressor<'static>,
    cached: Vec<(i64, Vec<u8>)>,
}

impl FrameReader {
    fn new() -> rusqlite::Result<FrameReader> {
        let decompressor = zstd::bulk::Decompressor::new()
            .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        Ok(FrameReader {
            decompressor,
            cached: Vec::new(),
        })
    }

    /// The event of `pending`, decoded.
    fn event(&mut self, connection: &Connection, pending: &Pending) -> Result<AuditEvent, String> {
        let position = match self.cached.iter().position(|(id, _)| *id == pending.frame) {
            Some(position) => position,
            None => {
                let blob: Vec<u8> = connection
                    .prepare_cached("SELECT data FROM frames WHERE id = ?1")
                    .and_then(|mut statement| {
                        statement.query_row([pending.frame], |row| row.get(0))
                    })
                    .map_err(|error| format!("cannot read frame {}: {error}", pending.frame))?;
                let frame =
                    block::decompress_frame(&mut self.decompressor, &blob, pending.frame_bytes)?;
                if self.cached.len() >= CACHED_FRAMES {
                    self.cached.remove(0);
                }
                self.cached.push((pending.frame, frame));
                self.cached.len() - 1
            }
        };
        let text = self
            .cached
            .get(position)
            .and_then(|(_, frame)| frame.get(pending.start..pending.end))
            .ok_or_else(|| format!("frame {} is shorter than its header says", pending.frame))?;
        let text = std::str::from_utf8(text).map_err(|error| format!("not UTF-8: {error}"))?;
        AuditEvent::parse(text).map_err(|error| error.to_string())
    }
}

/// The column a field is stored in.
fn column_of(field: Field) -> Option<Column> {
    Some(match field {
        Field::User => Column::User,
        Field::Group => Column::Groups,
        Field::Verb => Column::Verb,
        Field::Resource => Column::Resource,
        Field::Subresource => Column::Subresource,
        Field::Namespace => Column::Namespace,
        Field::Name => Column::Name,
        Field::Code => Column::Code,
        Field::SourceIp => Column::SourceIp,
        Field::UserAgent => Column::UserAgent,
        Field::Level => Column::Level,
        Field::Stage => Column::Stage,
        Field::Rule | Field::Priority => return None,
    })
}

impl Store {
    /// Opens the store in `dir` (`data_dir/<sink id>`).
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        if !dir.is_dir() {
            anyhow::bail!(
                "no store at {}: run a pipeline with a local_store sink first, or give its directory with --data-dir and --store",
                dir.display()
            );
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            errors: Vec::new(),
        })
    }

    /// The partitions overlapping `range`, newest first.
    fn partitions(&self, range: &TimeRange) -> anyhow::Result<Vec<(Day, PathBuf)>> {
        let mut partitions = partition::list(&self.dir)
            .with_context(|| format!("cannot list the store directory {}", self.dir.display()))?;
        partitions.retain(|(day, _)| range.overlaps(*day));
        partitions.reverse();
        Ok(partitions)
    }

    /// Runs `read` on each partition of `range`, newest first, until it breaks;
    /// partitions that fail are recorded in [`Store::errors`].
    fn each_partition(
        &mut self,
        range: &TimeRange,
        mut read: impl FnMut(&Connection, &Path) -> rusqlite::Result<ControlFlow<()>>,
    ) -> anyhow::Result<()> {
        for (_, path) in self.partitions(range)? {
            let outcome = schema::open_for_reading(&path).and_then(|connection| match connection {
                Some(connection) => {
                    // One read transaction: every statement sees the same snapshot.
                    let snapshot = connection.unchecked_transaction()?;
                    read(&snapshot, &path)
                }
                None => Ok(ControlFlow::Continue(())),
            });
            match outcome {
                Ok(ControlFlow::Break(())) => break,
                Ok(ControlFlow::Continue(())) => {}
                Err(error) => self.errors.push(PartitionError {
                    path,
                    message: error.to_string(),
                }),
            }
        }
        Ok(())
    }

    /// Visits the events matching `filter` in `range`, newest first, until `visit` breaks.
    pub fn for_each_event(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        mut visit: impl FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let mut row_errors = Vec::new();
        self.each_partition(range, |connection, path| {
            let mut errors = |message: String| {
                row_errors.push(PartitionError {
                    path: path.to_path_buf(),
                    message,
                })
            };
            let Some(resolved) = resolve(connection, range, filter)? else {
                return Ok(ControlFlow::Continue(()));
            };
            let blocks = candidate_blocks(connection, &resolved)?;
            let mut frames = FrameReader::new()?;
            let mut pending = BinaryHeap::new();
            let mut next_blocks = blocks.iter().peekable();
            loop {
                let newest_unread = next_blocks.peek().map(|block| block.time_max);
                let ready = pending
                    .peek()
                    .is_some_and(|top: &Pending| newest_unread.is_none_or(|time| top.time > time));
                if ready {
                    let Some(top) = pending.pop() else { break };
                    match frames.event(connection, &top) {
                        Ok(event) => {
                            let stored = StoredEvent {
                                time: top.time,
                                event,
                            };
                            if visit(stored).is_break() {
                                return Ok(ControlFlow::Break(()));
                            }
                        }
                        Err(message) => errors(format!("block {}: {message}", top.block)),
                    }
                    continue;
                }
                let Some(block) = next_blocks.next() else {
                    break;
                };
                match block_entries(connection, block) {
                    Ok(entries) => pending.extend(matching(&entries, block, &resolved)),
                    Err(message) => errors(format!("block {}: {message}", block.id)),
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.errors.extend(row_errors);
        Ok(())
    }

    /// How many events match `filter` in `range` (from the block headers; no event is decompressed).
    pub fn count_events(&mut self, range: &TimeRange, filter: &EventFilter) -> anyhow::Result<u64> {
        let mut total = 0u64;
        self.each_matching_entry(range, filter, |_, _| total += 1)?;
        Ok(total)
    }

    /// Counts the events matching `filter` in `range` by the values of `field`, most frequent first.
    pub fn group_events(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        field: Field,
    ) -> anyhow::Result<Vec<(String, u64)>> {
        let Some(column) = column_of(field) else {
            anyhow::bail!("events cannot be grouped by {}", field.name());
        };
        let mut by_partition: Vec<(PathBuf, HashMap<u32, u64>)> = Vec::new();
        self.each_matching_entry(range, filter, |path, entry| {
            if by_partition.last().is_none_or(|(last, _)| last != path) {
                by_partition.push((path.to_path_buf(), HashMap::new()));
            }
            if let Some((_, counts)) = by_partition.last_mut() {
                *counts.entry(entry.value(column)).or_insert(0) += 1;
            }
        })?;
        let mut counts = BTreeMap::new();
        for (path, ids) in by_partition {
            let named = schema::open_for_reading(&path)
                .and_then(|connection| match connection {
                    Some(connection) => name_values(&connection, column, ids),
                    None => Ok(Vec::new()),
                })
                .with_context(|| format!("cannot read the values of {}", path.display()))?;
            for (key, count) in named {
                *counts.entry(key).or_insert(0u64) += count;
            }
        }
        Ok(sorted_counts(counts))
    }

    /// Calls `visit` with every event entry matching `filter` in `range` (in no particular order).
    fn each_matching_entry(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        mut visit: impl FnMut(&Path, &Entry),
    ) -> anyhow::Result<()> {
        let mut row_errors = Vec::new();
        self.each_partition(range, |connection, path| {
            let Some(resolved) = resolve(connection, range, filter)? else {
                return Ok(ControlFlow::Continue(()));
            };
            for block in candidate_blocks(connection, &resolved)? {
                match block_entries(connection, &block) {
                    Ok(entries) => entries
                        .iter()
                        .filter(|entry| resolved.matches(entry))
                        .for_each(|entry| visit(path, entry)),
                    Err(message) => row_errors.push(PartitionError {
                        path: path.to_path_buf(),
                        message: format!("block {}: {message}", block.id),
                    }),
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.errors.extend(row_errors);
        Ok(())
    }

    /// Visits the alerts matching `filter` in `range`, newest first, until `visit` breaks.
    pub fn for_each_alert(
        &mut self,
        range: &TimeRange,
        filter: &AlertFilter,
        mut visit: impl FnMut(StoredAlert) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let mut row_errors = Vec::new();
        self.each_partition(range, |connection, path| {
            let clauses = alert_clauses(range, filter);
            let sql = format!(
                "SELECT e.id, e.time, e.alert FROM alerts e{} ORDER BY e.time DESC, e.rule, e.output",
                clauses.where_sql()
            );
            let mut statement = connection.prepare(&sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(clauses.params))?;
            while let Some(row) = rows.next()? {
                let (id, time, text): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
                match serde_json::from_str::<Alert>(&text) {
                    Ok(alert) => {
                        if visit(StoredAlert { time, alert }).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                    Err(error) => row_errors.push(PartitionError {
                        path: path.to_path_buf(),
                        message: format!("alert row {id}: {error}"),
                    }),
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.errors.extend(row_errors);
        Ok(())
    }
}

/// Counts, most frequent first (then by value).
pub fn sorted_counts(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// Resolves `filter` in one partition; `None` when a filter value never
/// occurs in it (so nothing there can match).
fn resolve(
    connection: &Connection,
    range: &TimeRange,
    filter: &EventFilter,
) -> rusqlite::Result<Option<Resolved>> {
    let mut columns = Vec::new();
    let strings = [
        (Column::User, &filter.user),
        (Column::Verb, &filter.verb),
        (Column::Resource, &filter.resource),
        (Column::Namespace, &filter.namespace),
        (Column::Name, &filter.name),
        (Column::SourceIp, &filter.source_ip),
    ];
    for (column, value) in strings {
        let Some(value) = value else { continue };
        match dict_id(connection, value)? {
            Some(id) => columns.push((column, vec![id])),
            None => return Ok(None),
        }
    }
    if let Some(code) = filter.code {
        match block::code_value(Some(code)) {
            ABSENT => return Ok(None),
            value => columns.push((Column::Code, vec![value])),
        }
    }
    if let Some(group) = &filter.group {
        let sets = group_set_ids(connection, group)?;
        if sets.is_empty() {
            return Ok(None);
        }
        columns.push((Column::Groups, sets));
    }
    Ok(Some(Resolved {
        range: *range,
        columns,
    }))
}

/// The blocks in the time range holding a posting for every filter, newest first.
fn candidate_blocks(
    connection: &Connection,
    resolved: &Resolved,
) -> rusqlite::Result<Vec<BlockRef>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, time_max, events, first_frame FROM blocks WHERE time_max >= ?1 AND time_min < ?2",
    )?;
    let from = resolved.range.from.unwrap_or(i64::MIN);
    let to = resolved.range.to.unwrap_or(i64::MAX);
    let rows = statement.query_map([from, to], |row| {
        Ok(BlockRef {
            id: row.get(0)?,
            time_max: row.get(1)?,
            events: row.get(2)?,
            first_frame: row.get(3)?,
        })
    })?;
    let mut blocks = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    for (column, values) in &resolved.columns {
        let holding = blocks_holding(connection, *column, values)?;
        blocks.retain(|block| holding.contains(&block.id));
    }
    blocks.sort_by(|a, b| b.time_max.cmp(&a.time_max).then(b.id.cmp(&a.id)));
    Ok(blocks)
}

/// The blocks with a posting for one of `values` in `column`.
fn blocks_holding(
    connection: &Connection,
    column: Column,
    values: &[u32],
) -> rusqlite::Result<HashSet<i64>> {
    let mut statement =
        connection.prepare_cached("SELECT block FROM postings WHERE field = ?1 AND value = ?2")?;
    let mut blocks = HashSet::new();
    for value in values {
        let rows = statement.query_map(params![column.index(), value], |row| row.get(0))?;
        for block in rows {
            blocks.insert(block?);
        }
    }
    Ok(blocks)
}

/// The decoded header of a block.
fn block_entries(connection: &Connection, block: &BlockRef) -> Result<Vec<Entry>, String> {
    let header: Vec<u8> = connection
        .prepare_cached("SELECT header FROM blocks WHERE id = ?1")
        .and_then(|mut statement| statement.query_row([block.id], |row| row.get(0)))
        .map_err(|error| format!("cannot read the block: {error}"))?;
    block::decode_header(&header, block.events)
}

/// The entries of a block that match, as events waiting to be shown.
fn matching<'a>(
    entries: &'a [Entry],
    block: &'a BlockRef,
    resolved: &'a Resolved,
) -> impl Iterator<Item = Pending> + 'a {
    entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| resolved.matches(entry))
        .filter_map(move |(index, entry)| {
            let (frame, range) = block::locate(entries, index)?;
            Some(Pending {
                time: entry.time,
                block: block.id,
                index,
                frame: block.first_frame.saturating_add(frame as i64),
                frame_bytes: block::frame_bytes(entries, frame),
                start: range.start,
                end: range.end,
            })
        })
}

/// The names of a column's values in one partition, with their counts.
fn name_values(
    connection: &Connection,
    column: Column,
    counts: HashMap<u32, u64>,
) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut named = Vec::new();
    for (value, count) in counts {
        if value == ABSENT {
            named.push((NONE.to_string(), count));
            continue;
        }
        match column {
            Column::Code => {
                let code = block::code_of_value(value).map(|code| code.to_string());
                named.push((code.unwrap_or_else(|| NONE.to_string()), count));
            }
            Column::Groups => {
                let groups: String = connection
                    .prepare_cached("SELECT groups FROM group_sets WHERE id = ?1")?
                    .query_row([value], |row| row.get(0))?;
                named.extend(groups.split('\n').map(|group| (group.to_string(), count)));
            }
            _ => {
                let text: String = connection
                    .prepare_cached("SELECT value FROM dict WHERE id = ?1")?
                    .query_row([value], |row| row.get(0))?;
                named.push((text, count));
            }
        }
    }
    Ok(named)
}

fn alert_clauses(range: &TimeRange, filter: &AlertFilter) -> Clauses {
    let mut clauses = Clauses::time(range);
    if let Some(user) = &filter.user {
        clauses.push("e.user = ?", Value::Text(user.clone()));
    }
    if let Some(namespace) = &filter.namespace {
        clauses.push("e.namespace = ?", Value::Text(namespace.clone()));
    }
    clauses
}

fn dict_id(connection: &Connection, value: &str) -> rusqlite::Result<Option<u32>> {
    connection
        .prepare_cached("SELECT id FROM dict WHERE value = ?1")?
        .query_row([value], |row| row.get(0))
        .optional()
}

/// The ids of the group lists that hold `group`.
fn group_set_ids(connection: &Connection, group: &str) -> rusqlite::Result<Vec<u32>> {
    let mut statement = connection.prepare_cached("SELECT id, groups FROM group_sets")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get::<_, String>(1)?)))?;
    let mut ids = Vec::new();
    for row in rows {
        let (id, groups) = row?;
        if groups.split('\n').any(|candidate| candidate == group) {
            ids.push(id);
        }
    }
    Ok(ids)
}

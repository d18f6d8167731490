//! Reading a store: events and alerts in a time range, filtered, newest first.
//!
//! This is what `auditflow query` runs. Only the partitions of the days in the
//! range are opened, newest first. The filters on header fields are answered
//! from the indexes: a value is first looked up in the partition's `dict` (a
//! value the day never saw means the day has no match, and its events table is
//! not read), then the matching rows are read newest first, and only those are
//! decompressed. A partition that cannot be read (damaged, not a store file)
//! is reported in [`Store::errors`] with its path, and the others are read.
//! Reading never blocks the writer: the partitions are in WAL mode.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use auditflow_core::event::{Alert, AuditEvent, AuditHeader};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::codec::PartitionDecoder;
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

/// The `WHERE` clause of one partition's query and its parameters.
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

/// How an event-grouping query reads a field's value.
fn group_column(field: Field) -> Option<(&'static str, &'static str)> {
    let dict = |column| Some((column, "LEFT JOIN dict d ON d.id = e.{c}"));
    match field {
        Field::User => dict("user"),
        Field::Verb => dict("verb"),
        Field::Resource => dict("resource"),
        Field::Subresource => dict("subresource"),
        Field::Namespace => dict("namespace"),
        Field::Name => dict("name"),
        Field::SourceIp => dict("source_ip"),
        Field::UserAgent => dict("user_agent"),
        Field::Level => dict("level"),
        Field::Stage => dict("stage"),
        Field::Group => Some(("groups", "LEFT JOIN group_sets d ON d.id = e.{c}")),
        Field::Code => Some(("code", "")),
        Field::Rule | Field::Priority => None,
    }
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
                Some(connection) => read(&connection, &path),
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
            let Some(clauses) = event_clauses(connection, range, filter)? else {
                return Ok(ControlFlow::Continue(()));
            };
            let sql = format!(
                "SELECT e.id, e.time, e.dictionary, e.event FROM events e{} ORDER BY e.time DESC, e.id DESC",
                clauses.where_sql()
            );
            let mut decoder = PartitionDecoder::new()
                .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
            let mut statement = connection.prepare(&sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(clauses.params))?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let time: i64 = row.get(1)?;
                let blob = row.get_ref(3)?.as_blob()?;
                let decoded = decoder
                    .decompress(connection, row.get(2)?, blob)
                    .and_then(decode_event);
                match decoded {
                    Ok(event) => {
                        if visit(StoredEvent { time, event }).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                    Err(message) => row_errors.push(PartitionError {
                        path: path.to_path_buf(),
                        message: format!("event row {id}: {message}"),
                    }),
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.errors.extend(row_errors);
        Ok(())
    }

    /// How many events match `filter` in `range` (from the indexes; nothing is decompressed).
    pub fn count_events(&mut self, range: &TimeRange, filter: &EventFilter) -> anyhow::Result<u64> {
        let mut total = 0u64;
        self.each_partition(range, |connection, _| {
            if let Some(clauses) = event_clauses(connection, range, filter)? {
                let sql = format!("SELECT count(*) FROM events e{}", clauses.where_sql());
                let count: i64 = connection.query_row(
                    &sql,
                    rusqlite::params_from_iter(clauses.params),
                    |row| row.get(0),
                )?;
                total += count.max(0) as u64;
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(total)
    }

    /// Counts the events matching `filter` in `range` by the values of `field`, most frequent first.
    pub fn group_events(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        field: Field,
    ) -> anyhow::Result<Vec<(String, u64)>> {
        let Some((column, join)) = group_column(field) else {
            anyhow::bail!("events cannot be grouped by {}", field.name());
        };
        let mut counts = BTreeMap::new();
        self.each_partition(range, |connection, _| {
            if let Some(clauses) = event_clauses(connection, range, filter)? {
                let value = if join.is_empty() {
                    format!("e.{column}")
                } else if field == Field::Group {
                    "d.groups".to_string()
                } else {
                    "d.value".to_string()
                };
                let sql = format!(
                    "SELECT {value}, count(*) FROM events e {}{} GROUP BY e.{column}",
                    join.replace("{c}", column),
                    clauses.where_sql()
                );
                let mut statement = connection.prepare(&sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(clauses.params))?;
                while let Some(row) = rows.next()? {
                    let count: i64 = row.get(1)?;
                    for key in group_keys(field, row.get::<_, Value>(0)?) {
                        *counts.entry(key).or_insert(0u64) += count.max(0) as u64;
                    }
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(sorted_counts(counts))
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
                "SELECT e.id, e.time, e.alert FROM alerts e{} ORDER BY e.time DESC, e.id DESC",
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

/// Turns one grouped value into the keys it counts for (a group list counts for each group).
fn group_keys(field: Field, value: Value) -> Vec<String> {
    match value {
        Value::Null => vec![NONE.to_string()],
        Value::Integer(number) => vec![number.to_string()],
        Value::Text(text) if field == Field::Group => text.split('\n').map(String::from).collect(),
        Value::Text(text) => vec![text],
        Value::Real(number) => vec![number.to_string()],
        Value::Blob(_) => vec![NONE.to_string()],
    }
}

/// Counts, most frequent first (then by value).
pub fn sorted_counts(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

fn decode_event(bytes: Vec<u8>) -> Result<AuditEvent, String> {
    let text = String::from_utf8(bytes).map_err(|error| format!("not UTF-8: {error}"))?;
    AuditEvent::parse(&text).map_err(|error| error.to_string())
}

/// The clauses of an events query in one partition; `None` when a filter value
/// never occurs in it (so nothing there can match).
fn event_clauses(
    connection: &Connection,
    range: &TimeRange,
    filter: &EventFilter,
) -> rusqlite::Result<Option<Clauses>> {
    let mut clauses = Clauses::time(range);
    let strings = [
        ("e.user", &filter.user),
        ("e.verb", &filter.verb),
        ("e.resource", &filter.resource),
        ("e.namespace", &filter.namespace),
        ("e.name", &filter.name),
        ("e.source_ip", &filter.source_ip),
    ];
    for (column, value) in strings {
        let Some(value) = value else { continue };
        match dict_id(connection, value)? {
            Some(id) => clauses.push(&format!("{column} = ?"), Value::Integer(id)),
            None => return Ok(None),
        }
    }
    if let Some(code) = filter.code {
        clauses.push("e.code = ?", Value::Integer(code));
    }
    if let Some(group) = &filter.group {
        let sets = group_set_ids(connection, group)?;
        if sets.is_empty() {
            return Ok(None);
        }
        let list: Vec<String> = sets.iter().map(i64::to_string).collect();
        clauses
            .sql
            .push(format!("e.groups IN ({})", list.join(", ")));
    }
    Ok(Some(clauses))
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

fn dict_id(connection: &Connection, value: &str) -> rusqlite::Result<Option<i64>> {
    connection
        .prepare_cached("SELECT id FROM dict WHERE value = ?1")?
        .query_row([value], |row| row.get(0))
        .optional()
}

/// The ids of the group lists that hold `group`.
fn group_set_ids(connection: &Connection, group: &str) -> rusqlite::Result<Vec<i64>> {
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

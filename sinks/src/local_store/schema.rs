//! The tables of a partition, and how partitions are opened for writing and reading.
//!
//! Strings that repeat (verbs, users, namespaces, resources, names, user
//! agents, source addresses, stages, levels) are stored once per partition in
//! `dict` and referenced by id, and each distinct list of groups once in
//! `group_sets`: the indexes hold small integers, the rows stay short, and a
//! filter on a value the partition never saw is answered without reading the
//! events table at all.
//!
//! `events` holds one row per audit event and stage: the time, `auditID`, the
//! header fields as ids, the response code, and the whole event as
//! zstd-compressed JSON. Audit events are small (about 1 KB) and alike, which
//! zstd compresses poorly one by one (about 1.8 times) and well with a
//! dictionary: each partition trains one (`zstd_dictionaries`) on its first
//! events and compresses the rest with it; `dictionary` names the one a row
//! needs (NULL: none).
//!
//! `UNIQUE (time, audit_id, stage)` makes a replay after a crash store nothing
//! twice (`INSERT OR IGNORE`): a replayed event is the same text, so it has the
//! same time. The time leads the key so that inserts, which come roughly in
//! time order, append to the index; an index on the random `auditID` first made
//! every batch rewrite pages all over the index (ingest fell to 5,000 events/s
//! at a million events). The same index serves time ranges. The columns a query filters on are
//! indexed together with the time, so a filter reads its matches newest first
//! from the index. `level`, `stage` and `subresource` are stored but not indexed:
//! they take a handful of values, an index on them would not narrow a search.
//!
//! `alerts` holds the alerts raised by detection, with their rule, priority,
//! namespace and user, the rendered output and the alert's JSON; `UNIQUE (time,
//! rule, output)` makes replays idempotent there too.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The schema version written to `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dict (
    id INTEGER PRIMARY KEY,
    value TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS group_sets (
    id INTEGER PRIMARY KEY,
    groups TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    audit_id TEXT NOT NULL,
    stage INTEGER NOT NULL,
    level INTEGER,
    verb INTEGER NOT NULL,
    user INTEGER NOT NULL,
    groups INTEGER,
    resource INTEGER,
    subresource INTEGER,
    namespace INTEGER,
    name INTEGER,
    code INTEGER,
    source_ip INTEGER,
    user_agent INTEGER,
    dictionary INTEGER,
    event BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS zstd_dictionaries (
    id INTEGER PRIMARY KEY,
    dictionary BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_time_audit_id_stage ON events (time, audit_id, stage);
CREATE INDEX IF NOT EXISTS events_user ON events (user, time);
CREATE INDEX IF NOT EXISTS events_groups ON events (groups, time);
CREATE INDEX IF NOT EXISTS events_verb ON events (verb, time);
CREATE INDEX IF NOT EXISTS events_resource ON events (resource, time);
CREATE INDEX IF NOT EXISTS events_namespace ON events (namespace, time);
CREATE INDEX IF NOT EXISTS events_name ON events (name, time);
CREATE INDEX IF NOT EXISTS events_code ON events (code, time);
CREATE INDEX IF NOT EXISTS events_source_ip ON events (source_ip, time);
CREATE INDEX IF NOT EXISTS events_user_agent ON events (user_agent, time);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    rule TEXT NOT NULL,
    priority TEXT NOT NULL,
    namespace TEXT,
    user TEXT,
    output TEXT NOT NULL,
    alert TEXT NOT NULL,
    UNIQUE (time, rule, output)
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time);
";

/// Opens (creating it if needed) a partition for writing: WAL mode, the schema in place.
///
/// `synchronous = NORMAL` in WAL mode: a committed transaction survives the
/// process being killed (it is in the WAL, in the operating system's cache);
/// only a power loss or kernel crash can lose the last commits before a checkpoint.
pub fn open_for_writing(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "cache_size", -65_536)?;
    connection.pragma_update(None, "wal_autocheckpoint", 8_192)?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version != 0 && version != SCHEMA_VERSION {
        return Err(schema_mismatch(version));
    }
    // One transaction: a reader sees either no table at all (a partition
    // being created, read as empty) or the whole schema with its version.
    connection.execute_batch(&format!(
        "BEGIN IMMEDIATE;\n{SCHEMA}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
    ))?;
    Ok(connection)
}

/// Opens an existing partition for reading; fails on a file that is not one.
///
/// The file is opened read-write without creating it (a reader of a WAL
/// database needs its shared-memory file), and only ever read. `None`: the
/// partition is being created by a writer (no table committed yet), so it
/// holds nothing yet.
pub fn open_for_reading(path: &Path) -> rusqlite::Result<Option<Connection>> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)
        .or_else(|_| Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY))?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == 0 && is_empty(&connection)? {
        return Ok(None);
    }
    if version != SCHEMA_VERSION {
        return Err(schema_mismatch(version));
    }
    Ok(Some(connection))
}

/// Whether the database has no table, index or view at all.
fn is_empty(connection: &Connection) -> rusqlite::Result<bool> {
    let objects: i64 =
        connection.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
    Ok(objects == 0)
}

fn schema_mismatch(version: i64) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
        Some(format!(
            "not a local_store partition of this auditflow version (schema version {version}, expected {SCHEMA_VERSION})"
        )),
    )
}

//! The tables of a partition, and how partitions are opened for writing and reading.
//!
//! Strings that repeat (verbs, users, namespaces, resources, names, user
//! agents, source addresses, stages, levels) are stored once per partition in
//! `dict` and referenced by id, and each distinct list of groups once in
//! `group_sets`.
//!
//! Events are stored many to a row ([`super::block`]): `blocks` holds up to
//! [`super::block::BLOCK_EVENTS`] events' header fields as compressed columns
//! (ids into `dict`), their time range, and where their text is: `frames`
//! holds the events' JSON, zstd-compressed a few hundred at a time (alike
//! events compress about ten times together, under two times one by one).
//!
//! `postings` is the index: one row per distinct value of a searched field
//! (user, groups, verb, resource, namespace, name, code, source address) per
//! block, so a filter reads the blocks that hold its value and no other. An
//! index entry per event and field made writing ten times slower (each event
//! was a row and ten index entries); a block of two thousand events has a few
//! hundred postings.
//!
//! A block also keeps its events' `auditID`s (last, so that a query, which
//! reads the header, never reads them): with the time and stage they make the
//! key that tells a replayed event from a new one ([`super::writer`]).
//!
//! `alerts` holds the alerts raised by detection, with their rule, priority,
//! namespace and user, the rendered output and the alert's JSON; `UNIQUE (time,
//! rule, output)` makes replays idempotent there too.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The schema version written to `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 2;

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
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY,
    time_min INTEGER NOT NULL,
    time_max INTEGER NOT NULL,
    events INTEGER NOT NULL,
    first_frame INTEGER NOT NULL,
    header BLOB NOT NULL,
    audit_ids BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_time_max ON blocks (time_max);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS postings (
    field INTEGER NOT NULL,
    value INTEGER NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (field, value, block)
) WITHOUT ROWID;
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
    let (version, objects) = version_and_objects(&connection)?;
    if version == 0 && objects == 0 {
        return Ok(None);
    }
    if version != SCHEMA_VERSION {
        return Err(schema_mismatch(version));
    }
    Ok(Some(connection))
}

/// The schema version and how many tables, indexes and views the database has,
/// read in one statement, so from one snapshot: read one after the other, a
/// writer creating the partition could commit in between (version 0 before,
/// the tables after) and the partition would look like a foreign file.
fn version_and_objects(connection: &Connection) -> rusqlite::Result<(i64, i64)> {
    connection.query_row(
        "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

fn schema_mismatch(version: i64) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
        Some(format!(
            "not a local_store partition of this auditflow version (schema version {version}, expected {SCHEMA_VERSION})"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_being_created_reads_as_empty_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2026-12-03.sqlite");
        // The file a writer has just created, before its schema is committed.
        Connection::open(&path).unwrap();
        assert!(open_for_reading(&path).unwrap().is_none());
        drop(open_for_writing(&path).unwrap());
        assert!(open_for_reading(&path).unwrap().is_some());
        let foreign = dir.path().join("other.sqlite");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        let error = open_for_reading(&foreign).unwrap_err().to_string();
        assert!(error.contains("schema version 0, expected"), "{error}");
    }
}

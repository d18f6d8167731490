//! Day partitions: one SQLite database file per UTC day, `YYYY-MM-DD.sqlite`.
//!
//! An event belongs to the day of its time (its `stageTimestamp`, or
//! `requestReceivedTimestamp` when that is missing); an alert to the day of its
//! `time`. Times are stored as microseconds since the Unix epoch, UTC, the
//! precision the apiserver writes.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// Microseconds in a day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// The file name suffix of a partition.
const SUFFIX: &str = ".sqlite";

/// A UTC day: the unit of partitioning and of retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// Days since 1970-01-01.
    index: i64,
}

impl Day {
    /// The day an instant (microseconds since the epoch) falls in.
    pub fn of_micros(micros: i64) -> Day {
        Day {
            index: micros.div_euclid(MICROS_PER_DAY),
        }
    }

    /// The current UTC day.
    pub fn today() -> Day {
        Day::of_micros(Utc::now().timestamp_micros())
    }

    /// The first microsecond of the day.
    pub fn start_micros(self) -> i64 {
        self.index.saturating_mul(MICROS_PER_DAY)
    }

    /// The first microsecond of the next day.
    pub fn end_micros(self) -> i64 {
        self.index.saturating_add(1).saturating_mul(MICROS_PER_DAY)
    }

    /// The day `days` later (earlier when negative).
    pub fn plus_days(self, days: i64) -> Day {
        Day {
            index: self.index.saturating_add(days),
        }
    }

    /// The partition's file name, `YYYY-MM-DD.sqlite`.
    pub fn file_name(self) -> String {
        format!("{self}{SUFFIX}")
    }

    /// The day a partition file name stands for; `None` for other files.
    pub fn parse_file_name(name: &str) -> Option<Day> {
        let date = name.strip_suffix(SUFFIX)?;
        Day::parse(date)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Day> {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(Day {
            index: i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE,
        })
    }

    fn date(self) -> Option<NaiveDate> {
        let days = i32::try_from(self.index + UNIX_EPOCH_DAYS_FROM_CE).ok()?;
        NaiveDate::from_num_days_from_ce_opt(days)
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.date() {
            Some(date) => write!(f, "{}", date.format("%Y-%m-%d")),
            None => write!(f, "day-{}", self.index),
        }
    }
}

/// Parses an RFC 3339 timestamp into microseconds since the epoch.
pub fn parse_micros(timestamp: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(timestamp)
        .ok()
        .map(|time| time.timestamp_micros())
}

/// Formats microseconds since the epoch as RFC 3339 UTC with microseconds.
pub fn format_micros(micros: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(time) => time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => micros.to_string(),
    }
}

/// The path of a day's partition in a store directory.
pub fn path_of(dir: &Path, day: Day) -> PathBuf {
    dir.join(day.file_name())
}

/// The partitions of a store directory, oldest first. A missing directory holds none.
pub fn list(dir: &Path) -> io::Result<Vec<(Day, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut partitions = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(day) = entry.file_name().to_str().and_then(Day::parse_file_name) {
            partitions.push((day, entry.path()));
        }
    }
    partitions.sort();
    Ok(partitions)
}

/// Deletes a partition's database and its WAL and shared-memory files.
pub fn remove(path: &Path) -> io::Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(PathBuf::from(side)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_file_names() {
        let day = Day::parse("2026-11-24").unwrap();
        assert_eq!(day.file_name(), "2026-11-24.sqlite");
        assert_eq!(Day::parse_file_name("2026-11-24.sqlite"), Some(day));
        assert_eq!(Day::parse_file_name("2026-11-24.sqlite-wal"), None);
        assert_eq!(Day::parse_file_name("notes.txt"), None);
    }

    #[test]
    fn an_instant_falls_in_its_utc_day() {
        let micros = parse_micros("2026-11-24T23:59:59.999999Z").unwrap();
        let day = Day::of_micros(micros);
        assert_eq!(day.to_string(), "2026-11-24");
        assert_eq!(Day::of_micros(micros + 1).to_string(), "2026-11-25");
        assert_eq!(day.end_micros(), micros + 1);
        assert_eq!(
            format_micros(day.start_micros()),
            "2026-11-24T00:00:00.000000Z"
        );
        assert_eq!(Day::of_micros(-1).to_string(), "1969-12-31");
    }
}

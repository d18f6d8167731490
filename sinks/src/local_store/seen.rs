//! Telling a replayed event from a new one, without an index entry per event.
//!
//! An event is stored once per key `(time, stage, auditID)`: what a restart
//! after a crash sends again is the same text, so it has the same key. An
//! index of every key would cost a B-tree insert per event (the most expensive
//! part of writing). Instead, a partition remembers the keys of the events it
//! wrote last in memory ([`WINDOW_KEYS`] of them, as 64-bit hashes), and knows
//! the latest time among the stored events it no longer remembers
//! (`forgotten_max`). An event later than that and not in the window is new
//! without reading anything. Only the others (a replay after a restart, an
//! event arriving later than the window reaches, or a hash that happens to
//! match) are looked up in the blocks that cover their time, whose headers and
//! `auditID`s are decoded and compared exactly.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use rusqlite::Connection;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use super::block;

/// How many keys a partition remembers in memory (about 16 bytes each).
pub const WINDOW_KEYS: usize = 1 << 19;

/// Times further apart than this (microseconds) are looked up with separate queries.
const LOOKUP_GAP_MICROS: i64 = 1_000_000;

/// The key an event is stored once under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key<'a> {
    /// The event's time (microseconds since the epoch).
    pub time: i64,
    /// Its stage (id into the partition's `dict`).
    pub stage: u32,
    /// Its `auditID`.
    pub audit_id: &'a str,
}

impl Key<'_> {
    fn hash64(&self) -> u64 {
        let mut hasher = FxHasher::default();
        self.hash(&mut hasher);
        hasher.finish()
    }
}

/// The keys a partition remembers, and the latest time of those it forgot.
pub struct Seen {
    window: FxHashMap<u64, u32>,
    writes: VecDeque<(i64, Vec<u64>)>,
    remembered: usize,
    forgotten_max: i64,
}

impl Seen {
    /// The state of a partition just opened: nothing remembered, every stored event forgotten.
    pub fn open(connection: &Connection) -> rusqlite::Result<Seen> {
        let forgotten_max: Option<i64> =
            connection.query_row("SELECT max(time_max) FROM blocks", [], |row| row.get(0))?;
        Ok(Seen {
            window: FxHashMap::default(),
            writes: VecDeque::new(),
            remembered: 0,
            forgotten_max: forgotten_max.unwrap_or(i64::MIN),
        })
    }

    /// For each key, whether its event is stored already or comes earlier in `keys`.
    pub fn stored(&self, connection: &Connection, keys: &[Key<'_>]) -> Result<Vec<bool>, String> {
        let mut stored = vec![false; keys.len()];
        let mut in_batch = FxHashSet::default();
        let mut to_look_up = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            if !in_batch.insert(*key) {
                stored[index] = true;
            } else if key.time <= self.forgotten_max || self.window.contains_key(&key.hash64()) {
                to_look_up.push(index);
            }
        }
        if !to_look_up.is_empty() {
            let found = look_up(connection, keys, &mut to_look_up)?;
            for index in found {
                if let Some(slot) = stored.get_mut(index) {
                    *slot = true;
                }
            }
        }
        Ok(stored)
    }

    /// Remembers the keys of a committed write, forgetting the oldest writes beyond the window.
    pub fn remember<'a>(&mut self, keys: impl Iterator<Item = Key<'a>>) {
        let mut hashes = Vec::new();
        let mut latest = i64::MIN;
        for key in keys {
            let hash = key.hash64();
            *self.window.entry(hash).or_insert(0) += 1;
            hashes.push(hash);
            latest = latest.max(key.time);
        }
        self.remembered += hashes.len();
        self.writes.push_back((latest, hashes));
        while self.remembered > WINDOW_KEYS && self.writes.len() > 1 {
            let Some((latest, hashes)) = self.writes.pop_front() else {
                break;
            };
            self.forget(latest, hashes);
        }
    }

    fn forget(&mut self, latest: i64, hashes: Vec<u64>) {
        self.remembered -= hashes.len();
        self.forgotten_max = self.forgotten_max.max(latest);
        for hash in hashes {
            if let Some(count) = self.window.get_mut(&hash) {
                *count -= 1;
                if *count == 0 {
                    self.window.remove(&hash);
                }
            }
        }
    }
}

/// The indexes (into `keys`) of the keys in `candidates` stored in the partition's blocks.
fn look_up(
    connection: &Connection,
    keys: &[Key<'_>],
    candidates: &mut [usize],
) -> Result<Vec<usize>, String> {
    candidates.sort_unstable_by_key(|&index| keys.get(index).map_or(0, |key| key.time));
    let mut stored_keys: FxHashSet<(i64, u32, String)> = FxHashSet::default();
    let mut decoded: FxHashSet<i64> = FxHashSet::default();
    let mut found = Vec::new();
    for cluster in candidates.chunk_by(|&a, &b| {
        let time = |index: usize| keys.get(index).map_or(0, |key| key.time);
        time(b).saturating_sub(time(a)) <= LOOKUP_GAP_MICROS
    }) {
        let times = cluster
            .iter()
            .filter_map(|&index| keys.get(index).map(|key| key.time));
        let (from, to) = times.fold((i64::MAX, i64::MIN), |(from, to), time| {
            (from.min(time), to.max(time))
        });
        load_blocks(connection, from, to, &mut decoded, &mut stored_keys)?;
        for &index in cluster {
            let Some(key) = keys.get(index) else { continue };
            if stored_keys.contains(&(key.time, key.stage, key.audit_id.to_string())) {
                found.push(index);
            }
        }
    }
    Ok(found)
}

/// Adds the keys of the blocks overlapping `from..=to` (not decoded yet) to `stored_keys`.
fn load_blocks(
    connection: &Connection,
    from: i64,
    to: i64,
    decoded: &mut FxHashSet<i64>,
    stored_keys: &mut FxHashSet<(i64, u32, String)>,
) -> Result<(), String> {
    let fail = |error: rusqlite::Error| format!("cannot look up stored events: {error}");
    let mut statement = connection
        .prepare_cached(
            "SELECT id, events, header, audit_ids FROM blocks WHERE time_max >= ?1 AND time_min <= ?2",
        )
        .map_err(fail)?;
    let mut rows = statement.query([from, to]).map_err(fail)?;
    while let Some(row) = rows.next().map_err(fail)? {
        let id: i64 = row.get(0).map_err(fail)?;
        if !decoded.insert(id) {
            continue;
        }
        let events: usize = row.get(1).map_err(fail)?;
        let header = row
            .get_ref(2)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(fail)?;
        let ids = row
            .get_ref(3)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(fail)?;
        let damaged = |error: String| format!("block {id}: {error}");
        let entries = block::decode_header(header, events).map_err(damaged)?;
        let ids = block::decode_audit_ids(ids, events).map_err(damaged)?;
        for (entry, audit_id) in entries.iter().zip(ids) {
            stored_keys.insert((entry.time, entry.value(block::Column::Stage), audit_id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(time: i64, audit_id: &str) -> Key<'_> {
        Key {
            time,
            stage: 1,
            audit_id,
        }
    }

    #[test]
    fn the_window_forgets_the_oldest_writes_and_raises_the_forgotten_time() {
        let mut seen = Seen {
            window: FxHashMap::default(),
            writes: VecDeque::new(),
            remembered: 0,
            forgotten_max: i64::MIN,
        };
        let ids: Vec<String> = (0..WINDOW_KEYS + 10).map(|i| format!("id-{i}")).collect();
        let (first, rest) = ids.split_at(10);
        seen.remember(first.iter().enumerate().map(|(i, id)| key(i as i64, id)));
        assert_eq!(seen.forgotten_max, i64::MIN);
        seen.remember(
            rest.iter()
                .enumerate()
                .map(|(i, id)| key(100 + i as i64, id)),
        );
        assert_eq!(seen.forgotten_max, 9);
        assert_eq!(seen.remembered, WINDOW_KEYS);
        assert!(!seen.window.contains_key(&key(0, "id-0").hash64()));
        assert!(seen.window.contains_key(&key(100, "id-10").hash64()));
    }
}

//! How stored events are compressed: zstd, with a dictionary trained per partition.
//!
//! Audit events are about 1 KB of JSON with the same keys, users, agents and
//! URIs over and over. Compressed one by one, zstd finds little to share
//! inside one event; a dictionary trained on a sample of the partition's own
//! events gives it what they have in common. A partition collects its first
//! [`TRAIN_AFTER_EVENTS`] events, trains a [`DICTIONARY_BYTES`] dictionary on
//! them, stores it in `zstd_dictionaries`, and compresses every later event
//! with it (the events written before are kept as they are, compressed
//! without one). If training fails (too few distinct samples), events are
//! compressed without a dictionary.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io;

use rusqlite::{Connection, OptionalExtension, Transaction};

/// How many events a partition collects before it trains its dictionary.
pub const TRAIN_AFTER_EVENTS: usize = 2_000;

/// The most bytes of samples collected for training.
const MAX_SAMPLE_BYTES: usize = 8 << 20;

/// The size of a trained dictionary.
pub const DICTIONARY_BYTES: usize = 64 << 10;

/// The largest event decompressed (larger frames are refused as damaged).
const MAX_EVENT_BYTES: usize = 256 << 20;

/// The compressor of one partition: its dictionary once trained, the samples until then.
pub struct PartitionEncoder {
    level: i32,
    plain: zstd::bulk::Compressor<'static>,
    trained: Option<(i64, zstd::bulk::Compressor<'static>)>,
    samples: Vec<u8>,
    sample_sizes: Vec<usize>,
    gave_up: bool,
}

impl PartitionEncoder {
    /// The encoder of a partition, with the dictionary it already has, if any.
    pub fn load(connection: &Connection, level: i32) -> anyhow::Result<PartitionEncoder> {
        let stored: Option<(i64, Vec<u8>)> = connection
            .query_row(
                "SELECT id, dictionary FROM zstd_dictionaries ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let trained = match stored {
            Some((id, dictionary)) => Some((
                id,
                zstd::bulk::Compressor::with_dictionary(level, &dictionary)?,
            )),
            None => None,
        };
        Ok(PartitionEncoder {
            level,
            plain: zstd::bulk::Compressor::new(level)?,
            trained,
            samples: Vec::new(),
            sample_sizes: Vec::new(),
            gave_up: false,
        })
    }

    /// Whether the partition still collects samples.
    pub fn wants_samples(&self) -> bool {
        self.trained.is_none() && !self.gave_up
    }

    /// Adds an event to the training samples.
    pub fn add_sample(&mut self, event: &[u8]) {
        if self.samples.len() + event.len() <= MAX_SAMPLE_BYTES {
            self.samples.extend_from_slice(event);
            self.sample_sizes.push(event.len());
        }
    }

    /// Trains and stores the dictionary once enough samples are collected.
    ///
    /// Runs inside the batch's transaction: if it rolls back, so does the dictionary.
    pub fn train_if_ready(&mut self, transaction: &Transaction<'_>) -> anyhow::Result<()> {
        let enough = self.sample_sizes.len() >= TRAIN_AFTER_EVENTS
            || self.samples.len() + 64 * 1024 > MAX_SAMPLE_BYTES;
        if !self.wants_samples() || !enough {
            return Ok(());
        }
        let samples = std::mem::take(&mut self.samples);
        let sizes = std::mem::take(&mut self.sample_sizes);
        let dictionary = match zstd::dict::from_continuous(&samples, &sizes, DICTIONARY_BYTES) {
            Ok(dictionary) => dictionary,
            Err(error) => {
                tracing::debug!(
                    "zstd dictionary training failed ({error}); compressing without one"
                );
                self.gave_up = true;
                return Ok(());
            }
        };
        transaction.execute(
            "INSERT INTO zstd_dictionaries (dictionary) VALUES (?1)",
            [&dictionary],
        )?;
        let id = transaction.last_insert_rowid();
        self.trained = Some((
            id,
            zstd::bulk::Compressor::with_dictionary(self.level, &dictionary)?,
        ));
        Ok(())
    }

    /// Compresses an event; returns the bytes and the id of the dictionary used.
    pub fn compress(&mut self, event: &[u8]) -> io::Result<(Vec<u8>, Option<i64>)> {
        match &mut self.trained {
            Some((id, compressor)) => Ok((compressor.compress(event)?, Some(*id))),
            None => Ok((self.plain.compress(event)?, None)),
        }
    }
}

/// Decompresses the events of one partition, loading its dictionaries as rows need them.
pub struct PartitionDecoder {
    plain: zstd::bulk::Decompressor<'static>,
    with_dictionary: HashMap<i64, zstd::bulk::Decompressor<'static>>,
}

impl PartitionDecoder {
    /// A decoder with no dictionary loaded yet.
    pub fn new() -> io::Result<PartitionDecoder> {
        Ok(PartitionDecoder {
            plain: zstd::bulk::Decompressor::new()?,
            with_dictionary: HashMap::new(),
        })
    }

    /// Decompresses a stored event compressed with `dictionary` (or none).
    pub fn decompress(
        &mut self,
        connection: &Connection,
        dictionary: Option<i64>,
        blob: &[u8],
    ) -> Result<Vec<u8>, String> {
        let capacity = match zstd::zstd_safe::get_frame_content_size(blob) {
            Ok(Some(size)) if size <= MAX_EVENT_BYTES as u64 => size as usize,
            _ => return Err("not a zstd frame of a stored event".to_string()),
        };
        let decompressor = match dictionary {
            None => &mut self.plain,
            Some(id) => self.dictionary(connection, id)?,
        };
        decompressor
            .decompress(blob, capacity)
            .map_err(|error| format!("cannot decompress: {error}"))
    }

    fn dictionary(
        &mut self,
        connection: &Connection,
        id: i64,
    ) -> Result<&mut zstd::bulk::Decompressor<'static>, String> {
        match self.with_dictionary.entry(id) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                let dictionary: Vec<u8> = connection
                    .query_row(
                        "SELECT dictionary FROM zstd_dictionaries WHERE id = ?1",
                        [id],
                        |row| row.get(0),
                    )
                    .map_err(|error| format!("cannot read zstd dictionary {id}: {error}"))?;
                let decompressor = zstd::bulk::Decompressor::with_dictionary(&dictionary)
                    .map_err(|error| format!("zstd dictionary {id} is damaged: {error}"))?;
                Ok(entry.insert(decompressor))
            }
        }
    }
}

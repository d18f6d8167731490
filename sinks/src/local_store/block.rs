//! Blocks: how a partition stores events, many to a row.
//!
//! A block holds up to [`BLOCK_EVENTS`] events. Its header lists, for each
//! event, the time, the header fields a query filters or groups on (as ids
//! into the partition's `dict`, see [`Column`]) and the length of the event's
//! JSON. The header is stored column by column (all times, then all verbs, ...)
//! and zstd-compressed: a column of the same few ids compresses to almost
//! nothing, and a query decodes a block's header in microseconds.
//!
//! The events' `auditID`s are stored beside the header ([`encode_audit_ids`]):
//! with the time and stage they tell a replayed event from a new one.
//!
//! The events' JSON is stored apart, in frames of [`FRAME_EVENTS`] events
//! compressed together: alike events share most of their bytes, so together
//! they compress far better than one by one, and reading one event
//! decompresses its frame only, not the whole block.

use std::io;

/// The most events in one block.
pub const BLOCK_EVENTS: usize = 2048;

/// How many events are compressed together in one frame.
pub const FRAME_EVENTS: usize = 128;

/// The zstd level of block headers (columns of small ids: the fastest level is enough).
const HEADER_LEVEL: i32 = 1;

/// The largest frame of events decompressed (larger ones are refused as damaged).
const MAX_FRAME_BYTES: usize = 1 << 30;

/// A header field stored as a column of every block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// `stage` (id into `dict`).
    Stage,
    /// `level` (id into `dict`).
    Level,
    /// `verb` (id into `dict`).
    Verb,
    /// `user.username` (id into `dict`).
    User,
    /// `user.groups` (id into `group_sets`).
    Groups,
    /// `objectRef.resource` (id into `dict`).
    Resource,
    /// `objectRef.subresource` (id into `dict`).
    Subresource,
    /// `objectRef.namespace` (id into `dict`).
    Namespace,
    /// `objectRef.name` (id into `dict`).
    Name,
    /// `responseStatus.code` (the code itself, see [`code_value`]).
    Code,
    /// The first of `sourceIPs` (id into `dict`).
    SourceIp,
    /// `userAgent` (id into `dict`).
    UserAgent,
}

/// How many columns a block has.
pub const COLUMNS: usize = 12;

/// The value of an absent field in a column.
pub const ABSENT: u32 = 0;

impl Column {
    /// Every column, in storage order.
    pub const ALL: [Column; COLUMNS] = [
        Column::Stage,
        Column::Level,
        Column::Verb,
        Column::User,
        Column::Groups,
        Column::Resource,
        Column::Subresource,
        Column::Namespace,
        Column::Name,
        Column::Code,
        Column::SourceIp,
        Column::UserAgent,
    ];

    /// The columns a query can filter on: each has postings (one per distinct value per block).
    pub const SEARCHED: [Column; 8] = [
        Column::User,
        Column::Groups,
        Column::Verb,
        Column::Resource,
        Column::Namespace,
        Column::Name,
        Column::Code,
        Column::SourceIp,
    ];

    /// The column's position in an entry's values (and its `field` number in `postings`).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The value a response code is stored as: the code plus one (0 is absent);
/// codes outside what HTTP uses are stored as absent.
pub fn code_value(code: Option<i64>) -> u32 {
    code.and_then(|code| u32::try_from(code).ok())
        .and_then(|code| code.checked_add(1))
        .unwrap_or(ABSENT)
}

/// The response code a stored code value stands for.
pub fn code_of_value(value: u32) -> Option<i64> {
    value.checked_sub(1).map(i64::from)
}

/// One event of a block: its time, its column values, the length of its JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// Microseconds since the epoch.
    pub time: i64,
    /// The values of [`Column::ALL`], in that order ([`ABSENT`] when absent).
    pub values: [u32; COLUMNS],
    /// The bytes of the event's JSON.
    pub length: u32,
}

impl Entry {
    /// The entry's value in `column`.
    pub fn value(&self, column: Column) -> u32 {
        self.values[column.index()]
    }
}

/// Bytes an entry takes in a block header before compression.
const ENTRY_BYTES: usize = 8 + 4 * COLUMNS + 4;

/// Encodes block entries column by column and compresses them.
pub fn encode_header(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let events = entries.len();
    let mut raw = vec![0u8; events * ENTRY_BYTES];
    let (times, rest) = raw.split_at_mut(events * 8);
    let (columns, lengths) = rest.split_at_mut(events * 4 * COLUMNS);
    let mut previous = 0i64;
    for (slot, entry) in times.chunks_exact_mut(8).zip(entries) {
        slot.copy_from_slice(&entry.time.wrapping_sub(previous).to_le_bytes());
        previous = entry.time;
    }
    for (column, slots) in columns.chunks_exact_mut(events.max(1) * 4).enumerate() {
        for (slot, entry) in slots.chunks_exact_mut(4).zip(entries) {
            slot.copy_from_slice(&entry.values[column].to_le_bytes());
        }
    }
    for (slot, entry) in lengths.chunks_exact_mut(4).zip(entries) {
        slot.copy_from_slice(&entry.length.to_le_bytes());
    }
    zstd::bulk::compress(&raw, HEADER_LEVEL)
}

/// Decodes the header of a block of `events` events.
pub fn decode_header(blob: &[u8], events: usize) -> Result<Vec<Entry>, String> {
    let expected = events
        .checked_mul(ENTRY_BYTES)
        .filter(|bytes| *bytes <= MAX_FRAME_BYTES)
        .ok_or_else(|| format!("a block of {events} events is not a block this store writes"))?;
    let raw = zstd::bulk::decompress(blob, expected)
        .map_err(|error| format!("cannot decompress the block header: {error}"))?;
    if raw.len() != expected {
        return Err(format!(
            "the block header holds {} bytes, {expected} expected for {events} events",
            raw.len()
        ));
    }
    let (times, rest) = raw.split_at(events * 8);
    let (columns, lengths) = rest.split_at(events * 4 * COLUMNS);
    let mut entries = vec![Entry::default(); events];
    let mut previous = 0i64;
    for (entry, bytes) in entries.iter_mut().zip(times.chunks_exact(8)) {
        previous = previous.wrapping_add(i64::from_le_bytes(eight(bytes)));
        entry.time = previous;
    }
    for (column, values) in columns.chunks_exact(events.max(1) * 4).enumerate() {
        for (entry, bytes) in entries.iter_mut().zip(values.chunks_exact(4)) {
            if let Some(slot) = entry.values.get_mut(column) {
                *slot = u32::from_le_bytes(four(bytes));
            }
        }
    }
    for (entry, bytes) in entries.iter_mut().zip(lengths.chunks_exact(4)) {
        entry.length = u32::from_le_bytes(four(bytes));
    }
    Ok(entries)
}

fn eight(bytes: &[u8]) -> [u8; 8] {
    let mut array = [0; 8];
    array.copy_from_slice(bytes);
    array
}

fn four(bytes: &[u8]) -> [u8; 4] {
    let mut array = [0; 4];
    array.copy_from_slice(bytes);
    array
}

/// Encodes the `auditID`s of a block's events: a UUID in its canonical
/// lowercase form as a 0 byte and its 16 bytes, any other text as a 1 byte, its
/// length (4 bytes) and its bytes.
pub fn encode_audit_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut encoded = Vec::new();
    for id in ids {
        match uuid_bytes(id) {
            Some(bytes) => {
                encoded.push(0);
                encoded.extend_from_slice(&bytes);
            }
            None => {
                encoded.push(1);
                encoded.extend_from_slice(&(id.len() as u32).to_le_bytes());
                encoded.extend_from_slice(id.as_bytes());
            }
        }
    }
    encoded
}

/// Decodes the `auditID`s of a block of `events` events.
pub fn decode_audit_ids(mut encoded: &[u8], events: usize) -> Result<Vec<String>, String> {
    let damaged = || "the block's auditIDs are damaged".to_string();
    let mut ids = Vec::with_capacity(events);
    while let Some((&tag, rest)) = encoded.split_first() {
        let (id, rest) = match tag {
            0 => {
                let (bytes, rest) = rest.split_at_checked(16).ok_or_else(damaged)?;
                (uuid_text(bytes), rest)
            }
            1 => {
                let (length, rest) = rest.split_at_checked(4).ok_or_else(damaged)?;
                let length = u32::from_le_bytes(four(length)) as usize;
                let (text, rest) = rest.split_at_checked(length).ok_or_else(damaged)?;
                let text = std::str::from_utf8(text).map_err(|_| damaged())?;
                (text.to_string(), rest)
            }
            _ => return Err(damaged()),
        };
        ids.push(id);
        encoded = rest;
    }
    if ids.len() != events {
        return Err(format!(
            "the block holds {} auditIDs, {events} expected",
            ids.len()
        ));
    }
    Ok(ids)
}

/// The 16 bytes of a UUID in its canonical lowercase text form (`8-4-4-4-12` hex digits).
fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let text = text.as_bytes();
    if text.len() != 36 || [8, 13, 18, 23].iter().any(|&i| text.get(i) != Some(&b'-')) {
        return None;
    }
    let mut digits = text.iter().filter(|&&byte| byte != b'-');
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        let high = hex_digit(*digits.next()?)?;
        let low = hex_digit(*digits.next()?)?;
        *byte = (high << 4) | low;
    }
    Some(bytes)
}

/// The canonical text of a UUID's 16 bytes.
fn uuid_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The value of a lowercase hex digit (upper case spells another `auditID`).
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// How many frames a block of `events` events has.
pub fn frame_count(events: usize) -> usize {
    events.div_ceil(FRAME_EVENTS)
}

/// Where an event's JSON is: its frame (0-based within the block) and its byte range in it.
pub fn locate(entries: &[Entry], index: usize) -> Option<(usize, std::ops::Range<usize>)> {
    let frame = index / FRAME_EVENTS;
    let first = frame * FRAME_EVENTS;
    let before = entries.get(first..index)?;
    let start: usize = before.iter().map(|entry| entry.length as usize).sum();
    let length = entries.get(index)?.length as usize;
    Some((frame, start..start + length))
}

/// The decompressed size of frame `frame` of a block.
pub fn frame_bytes(entries: &[Entry], frame: usize) -> usize {
    entries
        .iter()
        .skip(frame * FRAME_EVENTS)
        .take(FRAME_EVENTS)
        .map(|entry| entry.length as usize)
        .sum()
}

/// Decompresses a frame of `bytes` bytes.
pub fn decompress_frame(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    blob: &[u8],
    bytes: usize,
) -> Result<Vec<u8>, String> {
    if bytes > MAX_FRAME_BYTES {
        return Err(format!(
            "a frame of {bytes} bytes is not a frame this store writes"
        ));
    }
    let frame = decompressor
        .decompress(blob, bytes)
        .map_err(|error| format!("cannot decompress a frame of events: {error}"))?;
    if frame.len() != bytes {
        return Err(format!(
            "a frame of events holds {} bytes, {bytes} expected",
            frame.len()
        ));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: i64, verb: u32, length: u32) -> Entry {
        let mut values = [ABSENT; COLUMNS];
        values[Column::Verb.index()] = verb;
        values[Column::Code.index()] = code_value(Some(404));
        Entry {
            time,
            values,
            length,
        }
    }

    #[test]
    fn a_header_round_trips() {
        let entries: Vec<Entry> = (0..300)
            .map(|i| {
                entry(
                    1_700_000_000_000_000 + i * 7 - (i % 3) * 20,
                    (i % 5) as u32,
                    900 + i as u32,
                )
            })
            .collect();
        let blob = encode_header(&entries).unwrap();
        assert_eq!(decode_header(&blob, entries.len()).unwrap(), entries);
        assert_eq!(code_of_value(entries[0].value(Column::Code)), Some(404));
        assert!(decode_header(&blob, 299).is_err());
        assert!(decode_header(b"not zstd", 3).is_err());
        assert!(decode_header(&blob, usize::MAX).is_err());
    }

    #[test]
    fn events_are_located_in_their_frame() {
        let entries: Vec<Entry> = (0..300).map(|i| entry(i, 1, 10 + i as u32)).collect();
        assert_eq!(frame_count(300), 3);
        assert_eq!(locate(&entries, 0), Some((0, 0..10)));
        assert_eq!(locate(&entries, 1), Some((0, 10..21)));
        let second_frame_start = FRAME_EVENTS;
        assert_eq!(
            locate(&entries, second_frame_start),
            Some((1, 0..10 + second_frame_start))
        );
        assert_eq!(locate(&entries, 300), None);
        assert_eq!(
            frame_bytes(&entries, 2),
            (256..300).map(|i| 10 + i).sum::<usize>()
        );
    }

    #[test]
    fn audit_ids_round_trip_in_both_forms() {
        let ids = [
            "6f2a4bde-59a0-4c5e-9d3e-0b8f1c2d3e4f",
            "6F2A4BDE-59A0-4C5E-9D3E-0B8F1C2D3E4F",
            "not-a-uuid",
            "",
            "6f2a4bde-59a0-4c5e-9d3e-0b8f1c2d3e4",
        ];
        let encoded = encode_audit_ids(ids.iter().copied());
        assert_eq!(encoded.first(), Some(&0));
        assert_eq!(decode_audit_ids(&encoded, ids.len()).unwrap(), ids);
        assert!(decode_audit_ids(&encoded, 4).is_err());
        assert!(decode_audit_ids(&encoded[..encoded.len() - 1], ids.len()).is_err());
        assert!(decode_audit_ids(&[7], 1).is_err());
    }

    #[test]
    fn codes_outside_http_are_absent() {
        assert_eq!(code_value(None), ABSENT);
        assert_eq!(code_value(Some(-1)), ABSENT);
        assert_eq!(code_value(Some(i64::MAX)), ABSENT);
        assert_eq!(code_of_value(code_value(Some(0))), Some(0));
        assert_eq!(code_of_value(ABSENT), None);
    }
}

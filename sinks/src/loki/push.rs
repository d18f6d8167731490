//! The body of a push request: entries grouped into streams by their labels,
//! sorted by time within each stream, encoded as Loki's protobuf
//! `PushRequest` (snappy block-compressed) or as its JSON form.

use std::collections::BTreeMap;

use prost::Message as _;

/// One log entry: its time (nanoseconds since the epoch), its line, and its
/// structured metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Nanoseconds since the epoch.
    pub time_nanos: i64,
    /// The line.
    pub line: String,
    /// Structured metadata, name to value.
    pub metadata: BTreeMap<String, String>,
}

/// Entries grouped by their label set, in a stable order.
#[derive(Debug, Default)]
pub struct Streams {
    streams: BTreeMap<BTreeMap<String, String>, Vec<Entry>>,
}

impl Streams {
    /// Adds an entry to the stream of `labels`.
    pub fn push(&mut self, labels: BTreeMap<String, String>, entry: Entry) {
        self.streams.entry(labels).or_default().push(entry);
    }

    /// How many streams there are.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Sorts each stream's entries by time (a stable sort: entries of the
    /// same time keep their order).
    pub fn sort(&mut self) {
        for entries in self.streams.values_mut() {
            entries.sort_by_key(|entry| entry.time_nanos);
        }
    }

    /// The snappy-compressed protobuf `PushRequest`
    /// (`Content-Type: application/x-protobuf`).
    pub fn protobuf(&self) -> Result<Vec<u8>, snap::Error> {
        let request = PushRequest {
            streams: self
                .streams
                .iter()
                .map(|(labels, entries)| StreamAdapter {
                    labels: label_set(labels),
                    entries: entries
                        .iter()
                        .map(|entry| EntryAdapter {
                            timestamp: Some(Timestamp {
                                seconds: entry.time_nanos.div_euclid(1_000_000_000),
                                nanos: entry.time_nanos.rem_euclid(1_000_000_000) as i32,
                            }),
                            line: entry.line.clone(),
                            structured_metadata: entry
                                .metadata
                                .iter()
                                .map(|(name, value)| LabelPairAdapter {
                                    name: name.clone(),
                                    value: value.clone(),
                                })
                                .collect(),
                        })
                        .collect(),
                    hash: 0,
                })
                .collect(),
        };
        snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
    }

    /// The JSON push body (`Content-Type: application/json`):
    /// `{"streams":[{"stream":{…},"values":[["ns","line",{…}]]}]}`.
    pub fn json(&self) -> Vec<u8> {
        let streams: Vec<serde_json::Value> = self
            .streams
            .iter()
            .map(|(labels, entries)| {
                let values: Vec<serde_json::Value> = entries
                    .iter()
                    .map(|entry| {
                        serde_json::json!([
                            entry.time_nanos.to_string(),
                            entry.line,
                            entry.metadata
                        ])
                    })
                    .collect();
                serde_json::json!({ "stream": labels, "values": values })
            })
            .collect();
        serde_json::json!({ "streams": streams })
            .to_string()
            .into_bytes()
    }
}

/// A label set in Loki's text form: `{job="kubernetes-audit", verb="get"}`.
pub fn label_set(labels: &BTreeMap<String, String>) -> String {
    let mut text = String::from("{");
    for (index, (name, value)) in labels.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(name);
        text.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\n' => text.push_str("\\n"),
                c => text.push(c),
            }
        }
        text.push('"');
    }
    text.push('}');
    text
}

/// Loki's `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// The streams.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// Loki's `logproto.StreamAdapter`: one label set and its entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The label set, in its text form.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// The entries, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Unused by pushes (0).
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// Loki's `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// When.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// The line.
    #[prost(string, tag = "2")]
    pub line: String,
    /// Structured metadata.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// Loki's `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

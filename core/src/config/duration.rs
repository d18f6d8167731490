//! Durations in options: `"500ms"`, `"1s"`, `"5m"`, `"24h"`, `"7d"` (humantime's syntax).
//!
//! Use with serde: `#[serde(deserialize_with = "deserialize_duration")]`, or
//! `#[serde(default, deserialize_with = "deserialize_optional_duration")]` for
//! an optional one.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses a duration, with an error that shows how to write one.
pub fn parse_duration<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|error| {
        E::custom(format!(
            "`{text}` is not a duration ({error}); write it like \"500ms\", \"1s\", \"5m\" or \"24h\""
        ))
    })
}

/// Deserializes a duration option written as text.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
}

/// Deserializes an optional duration option written as text.
pub fn deserialize_optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map(Some)
}

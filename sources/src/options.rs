//! Option value types shared by several sources: durations written like `"500ms"` or `"5m"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses a human-readable duration, with an error that shows how to write one.
pub fn parse_duration<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|error| {
        E::custom(format!(
            "`{text}` is not a duration ({error}); write it like \"500ms\", \"1s\", \"5m\" or \"24h\""
        ))
    })
}

/// Deserializes a duration option (`deserialize_with`).
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
}

/// Deserializes an optional duration option (`deserialize_with`, with `default`).
pub fn deserialize_optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map(Some)
}

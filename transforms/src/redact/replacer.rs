//! What a redacted value becomes: a marker, a keyed hash, or nothing.
//!
//! - `mask`: `"[REDACTED]"` (a pattern's match: `[REDACTED:NAME]`);
//! - `hash`: `hmac-sha256:` followed by the HMAC-SHA256 of the value under the
//!   configured key, in hex or base64: equal values give equal hashes, so they
//!   stay correlatable, and without the key they cannot be guessed by hashing
//!   candidates;
//! - `remove`: the field (or a pattern's match) is removed.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// The marker a masked value is replaced with.
pub const MASK: &str = "[REDACTED]";

/// The prefix of a hashed value, so a reader knows what it is.
pub const HASH_PREFIX: &str = "hmac-sha256:";

/// How redacted values are replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replaced by a marker.
    #[default]
    Mask,
    /// Replaced by `hmac-sha256:` and the keyed hash of the value.
    Hash,
    /// Removed.
    Remove,
}

/// How a hash is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashEncoding {
    /// Lower-case hexadecimal (64 characters).
    #[default]
    Hex,
    /// Standard base64 with padding (44 characters).
    Base64,
}

/// Replaces values according to the mode.
#[derive(Clone)]
pub struct Replacer {
    mode: Mode,
    key: Option<Hmac<Sha256>>,
    encoding: HashEncoding,
}

impl std::fmt::Debug for Replacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replacer")
            .field("mode", &self.mode)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl Replacer {
    /// A replacer; `key` is required (non-empty) for [`Mode::Hash`].
    pub fn new(mode: Mode, key: Option<&str>, encoding: HashEncoding) -> Result<Replacer, String> {
        let key = match (mode, key) {
            (Mode::Hash, None) => {
                return Err("mode = \"hash\" needs a key: set key = \"${REDACT_KEY}\" and put a long random secret in REDACT_KEY".to_string())
            }
            (Mode::Hash, Some("")) => {
                return Err("the hash key is empty: put a long random secret in it".to_string())
            }
            (_, Some(key)) => Some(
                Hmac::<Sha256>::new_from_slice(key.as_bytes())
                    .map_err(|error| format!("unusable key: {error}"))?,
            ),
            (_, None) => None,
        };
        Ok(Replacer {
            mode,
            key,
            encoding,
        })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The replacement of a whole value (a Secret's value, a field), or `None` to remove it.
    pub fn value(&self, value: &Value) -> Option<Value> {
        match self.mode {
            Mode::Remove => None,
            _ => Some(self.kept_value(value)),
        }
    }

    /// The replacement of a value whose key must stay (a Secret's `data`): remove masks.
    pub fn kept_value(&self, value: &Value) -> Value {
        match (self.mode, value) {
            (Mode::Hash, Value::String(text)) => Value::String(self.hash(text.as_bytes())),
            (Mode::Hash, other) => Value::String(self.hash(other.to_string().as_bytes())),
            _ => Value::String(MASK.to_string()),
        }
    }

    /// The replacement of a pattern's match inside a string.
    pub fn matched(&self, pattern: &str, text: &str) -> String {
        match self.mode {
            Mode::Mask => format!("[REDACTED:{pattern}]"),
            Mode::Hash => self.hash(text.as_bytes()),
            Mode::Remove => String::new(),
        }
    }

    fn hash(&self, bytes: &[u8]) -> String {
        let Some(key) = &self.key else {
            return MASK.to_string();
        };
        let mut mac = key.clone();
        mac.update(bytes);
        let digest = mac.finalize().into_bytes();
        let encoded = match self.encoding {
            HashEncoding::Hex => digest.iter().map(|b| format!("{b:02x}")).collect(),
            HashEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
        };
        format!("{HASH_PREFIX}{encoded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_keyed_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let replacer = Replacer::new(Mode::Hash, Some("Jefe"), HashEncoding::Hex).unwrap();
        assert_eq!(
            replacer.kept_value(&"what do ya want for nothing?".into()),
            Value::String(
                "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
                    .into()
            )
        );
        let base64 = Replacer::new(Mode::Hash, Some("Jefe"), HashEncoding::Base64).unwrap();
        assert_eq!(
            base64.matched("p", "what do ya want for nothing?"),
            "hmac-sha256:W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn hash_mode_needs_a_key() {
        assert!(Replacer::new(Mode::Hash, None, HashEncoding::Hex).is_err());
        assert!(Replacer::new(Mode::Hash, Some(""), HashEncoding::Hex).is_err());
    }

    #[test]
    fn mask_and_remove() {
        let mask = Replacer::new(Mode::Mask, None, HashEncoding::Hex).unwrap();
        assert_eq!(mask.value(&1.into()), Some(Value::String(MASK.into())));
        assert_eq!(mask.matched("jwt", "x"), "[REDACTED:jwt]");
        let remove = Replacer::new(Mode::Remove, None, HashEncoding::Hex).unwrap();
        assert_eq!(remove.value(&"x".into()), None);
        assert_eq!(remove.kept_value(&"x".into()), Value::String(MASK.into()));
        assert_eq!(remove.matched("jwt", "x"), "");
    }
}

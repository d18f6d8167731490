//! Small text building blocks: stack strings, UUIDs, stable hashes, base64.
//!
//! Everything here is allocation-free so that a generator loop does not touch
//! the heap for names and identifiers.

use std::fmt::{self, Write as _};

use rand::Rng;
use serde::{Serialize, Serializer};

/// A string of at most `N` bytes stored inline (no heap), built with `write!`.
#[derive(Clone, Copy)]
pub(super) struct InlineStr<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// An empty string.
    pub(super) const fn new() -> Self {
        InlineStr {
            len: 0,
            bytes: [0; N],
        }
    }

    /// The string formatted from `args`.
    ///
    /// # Panics
    /// If the text does not fit in `N` bytes: the tables are sized so it always does.
    pub(super) fn format(args: fmt::Arguments<'_>) -> Self {
        let mut text = Self::new();
        fmt::write(&mut text, args).expect("generated text fits its inline buffer");
        text
    }

    /// The text.
    pub(super) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Write for InlineStr<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        if end > N {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> Serialize for InlineStr<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An object or resource name (the names used here stay well under 96 bytes).
pub(super) type Name = InlineStr<96>;

/// Serializes any `Display` value as a JSON string, escaping as it writes (no allocation).
pub(super) struct AsString<T>(pub(super) T);

impl<T: fmt::Display> Serialize for AsString<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A random (version 4) UUID, written in the canonical 8-4-4-4-12 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Uuid(u128);

impl Uuid {
    /// A fresh UUID drawn from the generator's random stream.
    pub(super) fn random(rng: &mut impl Rng) -> Uuid {
        Uuid::from_bits(rng.gen())
    }

    /// The UUID of a long-lived thing (an object, a service account), stable across events.
    pub(super) fn stable(key: &[&str], salt: u64) -> Uuid {
        let high = stable_hash(key, salt);
        let low = stable_hash(key, high);
        Uuid::from_bits((u128::from(high) << 64) | u128::from(low))
    }

    /// The low 64 bits, to derive other stable values from.
    pub(super) fn low_bits(self) -> u64 {
        self.0 as u64
    }

    /// Sets the version (4) and variant (RFC 4122) bits.
    fn from_bits(bits: u128) -> Uuid {
        const VERSION_MASK: u128 = 0xf << 76;
        const VARIANT_MASK: u128 = 0x3 << 62;
        Uuid((bits & !VERSION_MASK & !VARIANT_MASK) | (0x4 << 76) | (0x2 << 62))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            v >> 96,
            (v >> 80) & 0xffff,
            (v >> 64) & 0xffff,
            (v >> 48) & 0xffff,
            v & 0xffff_ffff_ffff
        )
    }
}

impl Serialize for Uuid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A hash of some strings that is the same on every platform and run (FNV-1a, then mixed).
pub(super) fn stable_hash(parts: &[&str], salt: u64) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET ^ salt;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }
    mix(hash)
}

/// The splitmix64 finalizer: spreads every input bit over the output.
pub(super) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `len` characters of the alphabet Kubernetes uses for generated name suffixes
/// (no vowels, no look-alike digits), drawn from `bits`.
#[derive(Clone, Copy)]
pub(super) struct Suffix {
    /// Where the characters come from.
    pub(super) bits: u64,
    /// How many characters to write.
    pub(super) len: usize,
}

impl fmt::Display for Suffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let base = ALPHABET.len() as u64;
        let mut bits = self.bits;
        for _ in 0..self.len {
            f.write_char(char::from(ALPHABET[(bits % base) as usize]))?;
            bits /= base;
        }
        Ok(())
    }
}

/// Standard base64 (with padding) of `bytes`, as Secret `data` values are written.
pub(super) fn base64<const N: usize>(bytes: &[u8]) -> InlineStr<N> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = InlineStr::new();
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |word, (i, &b)| word | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            let symbol = if i <= chunk.len() {
                char::from(ALPHABET[(word >> (18 - 6 * i) & 0x3f) as usize])
            } else {
                '='
            };
            fmt::Write::write_char(&mut out, symbol).expect("base64 text fits its inline buffer");
        }
    }
    out
}

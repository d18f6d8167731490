//! Recognising a file's content across renames, copies, compression and truncation.
//!
//! A [`Fingerprint`] is the xxh3 checksum of a file's first line, newline
//! included (or of its first `max_bytes` bytes when the line is longer); for a
//! `.gz` file, of the first line of the decompressed bytes. Every line of a
//! Kubernetes audit log holds a unique `auditID` and a timestamp, so the first
//! line identifies the content: a renamed file, a copytruncate copy and a
//! compressed backup all keep the fingerprint of the file they came from,
//! while a truncated file gets a new one as soon as its new first line is
//! written. A file without a complete first line yet has no fingerprint: there
//! is nothing complete to read in it.
//!
//! A [`FileId`] (device and inode) is only a hint: it tells a renamed file
//! from a new one while the file is open, but inodes are reused once a file is
//! deleted, so progress is never keyed by it.
//!
//! The limit of the scheme: two files whose first lines are byte for byte the
//! same are taken to be copies of one another. Audit logs cannot do that;
//! files with a fixed header line (CSV) could.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The checksum of a file's first line: what identifies its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fingerprint, D::Error> {
        let text = String::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16)
            .map(Fingerprint)
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a hex fingerprint")))
    }
}

/// Where a file lives on disk: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// The device number.
    pub device: u64,
    /// The inode number.
    pub inode: u64,
}

impl FileId {
    /// The id of the file `metadata` describes.
    pub fn of(metadata: &Metadata) -> FileId {
        FileId {
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

/// Whether a path names a gzip-compressed file (its name ends in `.gz`).
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "gz")
}

/// Computes fingerprints, reusing one buffer.
#[derive(Debug)]
pub struct Fingerprinter {
    max_bytes: usize,
    buffer: Vec<u8>,
}

impl Fingerprinter {
    /// A fingerprinter covering at most `max_bytes` of the first line.
    pub fn new(max_bytes: usize) -> Fingerprinter {
        Fingerprinter {
            max_bytes: max_bytes.max(1),
            buffer: vec![0; max_bytes.max(1)],
        }
    }

    /// The fingerprint of a plain file, read from offset 0 without moving the handle's cursor.
    pub fn of_file(&mut self, file: &File) -> io::Result<Option<Fingerprint>> {
        let filled = self.fill(|buffer, offset| file.read_at(buffer, offset))?;
        Ok(self.of_prefix(filled))
    }

    /// The fingerprint of the bytes `reader` yields first (a decompressing reader for `.gz`).
    pub fn of_reader(&mut self, mut reader: impl Read) -> io::Result<Option<Fingerprint>> {
        let filled = self.fill(|buffer, _| reader.read(buffer))?;
        Ok(self.of_prefix(filled))
    }

    /// Reads into the buffer until it holds a newline or `max_bytes` bytes, or the input ends.
    fn fill(
        &mut self,
        mut read: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut filled = 0;
        while filled < self.max_bytes {
            match read(&mut self.buffer[filled..], filled as u64) {
                Ok(0) => break,
                Ok(count) => {
                    filled += count;
                    if memchr::memchr(b'\n', &self.buffer[filled - count..filled]).is_some() {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(filled)
    }

    /// The fingerprint of the first `filled` bytes held in the buffer, if they hold a first line.
    fn of_prefix(&self, filled: usize) -> Option<Fingerprint> {
        let bytes = &self.buffer[..filled];
        let line = match memchr::memchr(b'\n', bytes) {
            Some(newline) => &bytes[..=newline],
            None if filled >= self.max_bytes => bytes,
            None => return None,
        };
        Some(Fingerprint(xxhash_rust::xxh3::xxh3_64(line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut named = tempfile::NamedTempFile::new().expect("temporary file");
        named.write_all(bytes).expect("write");
        let file = named.reopen().expect("reopen");
        (named, file)
    }

    #[test]
    fn a_file_is_identified_by_its_first_line_only() {
        let mut fingerprinter = Fingerprinter::new(4096);
        let (_a, a) = file_with(b"{\"auditID\":\"1\"}\nsecond\n");
        let (_b, b) = file_with(b"{\"auditID\":\"1\"}\nother second line\nthird\n");
        let (_c, c) = file_with(b"{\"auditID\":\"2\"}\nsecond\n");
        let fa = fingerprinter.of_file(&a).expect("read");
        assert!(fa.is_some());
        assert_eq!(fa, fingerprinter.of_file(&b).expect("read"));
        assert_ne!(fa, fingerprinter.of_file(&c).expect("read"));
    }

    #[test]
    fn no_fingerprint_before_the_first_line_is_complete() {
        let mut fingerprinter = Fingerprinter::new(4096);
        let (_empty, empty) = file_with(b"");
        let (_partial, partial) = file_with(b"{\"auditID\":\"1\"");
        assert_eq!(fingerprinter.of_file(&empty).expect("read"), None);
        assert_eq!(fingerprinter.of_file(&partial).expect("read"), None);
    }

    #[test]
    fn a_long_first_line_is_bounded() {
        let mut fingerprinter = Fingerprinter::new(8);
        let (_a, a) = file_with(b"0123456789 and more");
        let (_b, b) = file_with(b"01234567 differs later\n");
        let fa = fingerprinter.of_file(&a).expect("read");
        assert!(fa.is_some());
        assert_eq!(fa, fingerprinter.of_file(&b).expect("read"));
    }

    #[test]
    fn a_gzip_copy_has_the_fingerprint_of_its_original() {
        let content = b"{\"auditID\":\"1\"}\n{\"auditID\":\"2\"}\n";
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(content).expect("compress");
        let compressed = encoder.finish().expect("compress");
        let mut fingerprinter = Fingerprinter::new(4096);
        let (_plain, plain) = file_with(content);
        let gz = flate2::read::MultiGzDecoder::new(compressed.as_slice());
        assert_eq!(
            fingerprinter.of_file(&plain).expect("read"),
            fingerprinter.of_reader(gz).expect("read")
        );
    }

    #[test]
    fn fingerprints_round_trip_as_hex() {
        let fingerprint = Fingerprint(0x00ab_cdef_0123_4567);
        let text = serde_json::to_string(&fingerprint).expect("serialize");
        assert_eq!(text, "\"00abcdef01234567\"");
        let back: Fingerprint = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, fingerprint);
        assert!(serde_json::from_str::<Fingerprint>("\"xyz\"").is_err());
    }

    #[test]
    fn gz_names_are_recognised() {
        assert!(is_gzip(Path::new("/a/audit-2026.log.gz")));
        assert!(!is_gzip(Path::new("/a/audit.log")));
    }
}

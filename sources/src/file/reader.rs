//! Reading one open file: chunks in, complete lines out, truncation noticed.
//!
//! A [`TailedFile`] keeps the handle it opened, so a file that is renamed or
//! deleted while it is read is still read to its end. Plain files are read
//! with positioned reads (`pread`); `.gz` files through a decompressor, with
//! offsets counted in decompressed bytes, so that a compressed backup and the
//! file it was made from share their offsets.
//!
//! Chunks go through the shared [`LineFramer`]: only complete lines come out,
//! a partial last line waits for its newline, and a line over `max_line_bytes`
//! comes out as [`Frame::TooLong`] without being held in memory.
//!
//! Truncation of a plain file is noticed two ways: the file is smaller than it
//! has been seen before, or its first line changed (it was truncated and
//! written again past the old size before the next look). The first line is
//! checked after every chunk is read, so a chunk of new content is never taken
//! for the rest of the old one.

use std::fs::{File, Metadata};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::fingerprint::{is_gzip, FileId, Fingerprint, Fingerprinter};
use crate::framing::{Frame, LineFramer};

/// How much one turn reads at most.
#[derive(Debug, Clone, Copy)]
pub struct TurnLimit {
    /// Stop after this many bytes.
    pub max_bytes: usize,
    /// Stop once this many lines are complete.
    pub max_frames: usize,
}

/// What one turn did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// Bytes read.
    pub bytes: usize,
    /// The end of the file was reached.
    pub eof: bool,
    /// The file was truncated (or its content replaced); what was read before is still good.
    pub truncated: bool,
}

enum Input {
    Plain(File),
    Gzip(Box<MultiGzDecoder<BufReader<File>>>),
}

/// An open file being read.
pub struct TailedFile {
    /// Device and inode of the open handle.
    pub id: FileId,
    /// The path it was last seen at.
    pub path: PathBuf,
    /// The content's fingerprint; `None` until the first line is complete.
    pub fingerprint: Option<Fingerprint>,
    input: Input,
    position: u64,
    framer: LineFramer,
    max_line_bytes: usize,
    size_seen: u64,
}

impl std::fmt::Debug for TailedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailedFile")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint)
            .field("position", &self.position)
            .finish()
    }
}

impl TailedFile {
    /// Opens a file and computes its fingerprint; reading starts at offset 0.
    pub fn open(
        path: &Path,
        max_line_bytes: usize,
        fingerprinter: &mut Fingerprinter,
    ) -> io::Result<TailedFile> {
        let mut file = File::open(path)?;
        let metadata = file.metadata()?;
        let (fingerprint, input) = if is_gzip(path) {
            let fingerprint = fingerprinter.of_reader(MultiGzDecoder::new(&file))?;
            file.seek(SeekFrom::Start(0))?;
            (fingerprint, gzip(file))
        } else {
            (fingerprinter.of_file(&file)?, Input::Plain(file))
        };
        Ok(TailedFile {
            id: FileId::of(&metadata),
            path: path.to_path_buf(),
            fingerprint,
            input,
            position: 0,
            framer: LineFramer::new(max_line_bytes),
            max_line_bytes,
            size_seen: metadata.len(),
        })
    }

    /// Whether the file is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        matches!(self.input, Input::Gzip(_))
    }

    /// The offset just after the last complete line read: where a checkpoint may point.
    pub fn line_end(&self) -> u64 {
        self.position - self.framer.pending_bytes() as u64
    }

    /// Bytes of an unfinished last line held so far.
    pub fn pending_bytes(&self) -> usize {
        self.framer.pending_bytes()
    }

    /// The handle's metadata (size, links) as of now.
    pub fn metadata(&self) -> io::Result<Metadata> {
        match &self.input {
            Input::Plain(file) => file.metadata(),
            Input::Gzip(decoder) => decoder.get_ref().get_ref().metadata(),
        }
    }

    /// Whether the file has been deleted (no name links to it any more).
    pub fn is_deleted(&self) -> bool {
        self.metadata().is_ok_and(|metadata| metadata.nlink() == 0)
    }

    /// Moves reading to `offset` (of the decompressed bytes for `.gz`), forgetting any partial line.
    pub fn start_at(&mut self, offset: u64) -> io::Result<()> {
        self.framer = LineFramer::new(self.max_line_bytes);
        match &mut self.input {
            Input::Plain(_) => self.position = offset,
            Input::Gzip(decoder) => {
                // A duplicate of the handle (sharing its cursor) feeds a fresh decoder.
                let mut file = decoder.get_ref().get_ref().try_clone()?;
                file.seek(SeekFrom::Start(0))?;
                let mut fresh = MultiGzDecoder::new(BufReader::new(file));
                self.position = skip(&mut fresh, offset)?;
                **decoder = fresh;
            }
        }
        Ok(())
    }

    /// Moves reading to the end of the last complete line (`read_from = "end"`).
    pub fn start_at_end(&mut self) -> io::Result<()> {
        let end = match &self.input {
            Input::Plain(file) => end_of_last_line(file, file.metadata()?.len())?,
            Input::Gzip(_) => u64::MAX,
        };
        self.start_at(end)
    }

    /// Checks a plain file for truncation without reading it.
    pub fn check_truncated(&mut self, fingerprinter: &mut Fingerprinter) -> io::Result<bool> {
        let Input::Plain(file) = &self.input else {
            return Ok(false);
        };
        let size = file.metadata()?.len();
        if size < self.size_seen {
            return Ok(true);
        }
        self.size_seen = size;
        if self.fingerprint.is_none() {
            return Ok(false);
        }
        Ok(fingerprinter.of_file(file)? != self.fingerprint)
    }

    /// Starts over at offset 0 after a truncation, with the fingerprint of what the file holds now.
    pub fn restart_truncated(&mut self, fingerprinter: &mut Fingerprinter) -> io::Result<()> {
        let Input::Plain(file) = &self.input else {
            return Ok(());
        };
        self.size_seen = file.metadata()?.len();
        self.fingerprint = fingerprinter.of_file(file)?;
        self.start_at(0)
    }

    /// The fingerprint of what the file holds now (for `.gz`: the one computed at open).
    pub fn first_line_fingerprint(
        &self,
        fingerprinter: &mut Fingerprinter,
    ) -> io::Result<Option<Fingerprint>> {
        match &self.input {
            Input::Plain(file) => fingerprinter.of_file(file),
            Input::Gzip(_) => Ok(self.fingerprint),
        }
    }

    /// Reads up to `limit`, appending complete lines to `frames`.
    pub fn read_turn(
        &mut self,
        buffer: &mut [u8],
        fingerprinter: &mut Fingerprinter,
        limit: TurnLimit,
        frames: &mut Vec<Frame>,
    ) -> io::Result<Turn> {
        let mut turn = Turn::default();
        let first_frame = frames.len();
        if self.check_truncated(fingerprinter)? {
            turn.truncated = true;
            return Ok(turn);
        }
        while turn.bytes < limit.max_bytes && frames.len() - first_frame < limit.max_frames {
            let read = match self.read_chunk(buffer) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if read == 0 {
                turn.eof = true;
                break;
            }
            if self.content_replaced(fingerprinter)? {
                turn.truncated = true;
                break;
            }
            self.framer.push(&buffer[..read], frames);
            self.position += read as u64;
            turn.bytes += read;
        }
        Ok(turn)
    }

    fn read_chunk(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match &mut self.input {
            Input::Plain(file) => file.read_at(buffer, self.position),
            Input::Gzip(decoder) => decoder.read(buffer),
        }
    }

    /// After a read: whether the first line changed under it (truncated and written again).
    fn content_replaced(&mut self, fingerprinter: &mut Fingerprinter) -> io::Result<bool> {
        match &self.input {
            Input::Plain(file) => Ok(fingerprinter.of_file(file)? != self.fingerprint),
            Input::Gzip(_) => Ok(false),
        }
    }
}

fn gzip(file: File) -> Input {
    Input::Gzip(Box::new(MultiGzDecoder::new(BufReader::new(file))))
}

/// Reads and drops up to `count` bytes; returns how many there were.
fn skip(reader: &mut impl Read, count: u64) -> io::Result<u64> {
    io::copy(&mut reader.take(count), &mut io::sink())
}

/// The offset just after the last newline of a plain file of `size` bytes (0 if none).
fn end_of_last_line(file: &File, size: u64) -> io::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let chunk = &mut buffer[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(newline) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

//! Splitting a byte stream into lines and JSON documents, with bounded memory.
//!
//! [`LineFramer`] takes chunks as they are read and yields complete lines. A
//! line that lies within one chunk is a shared slice of it ([`Bytes`]): the
//! framer finds the newlines and copies nothing, so framing costs little on
//! the reading task and each line's bytes are copied once, where it is decoded.
//! A line longer than its limit is not buffered: its first bytes are kept for
//! the error record, the rest is skipped up to the next newline, and reading
//! goes on. A last line without its newline stays pending until the newline
//! arrives (a writer may not have finished it).
//!
//! [`DocumentAssembler`] sits on top for inputs that may hold pretty-printed
//! JSON documents as well as NDJSON: a line that is just `{` or `[` opens a
//! multi-line document that ends when its brackets balance; any other line is
//! a document of its own.

use bytes::Bytes;

/// The bytes of an over-long line kept for its error record.
const KEPT_PREFIX_BYTES: usize = 64 * 1024;

/// One unit of input produced by the framers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line or document, without its newline.
    Complete(Bytes),
    /// A line or document over the limit: its first bytes and its whole length.
    TooLong {
        /// The first bytes (up to 64 KiB).
        prefix: Vec<u8>,
        /// The length of the whole line, in bytes.
        length: usize,
    },
}

/// Splits chunks of bytes into lines of at most `max_line_bytes`.
#[derive(Debug)]
pub struct LineFramer {
    max_line_bytes: usize,
    partial: Vec<u8>,
    skipped: Option<usize>,
}

impl LineFramer {
    /// A framer for lines of at most `max_line_bytes` bytes.
    pub fn new(max_line_bytes: usize) -> LineFramer {
        LineFramer {
            max_line_bytes,
            partial: Vec::new(),
            skipped: None,
        }
    }

    /// Bytes of an unfinished last line held (or skipped) so far.
    pub fn pending_bytes(&self) -> usize {
        self.partial.len() + self.skipped.unwrap_or(0)
    }

    /// Frames a chunk (copied once), appending complete lines to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Frame>) {
        self.push_shared(Bytes::copy_from_slice(chunk), out);
    }

    /// Frames a chunk, appending complete lines to `out`: the lines that lie
    /// within the chunk are slices of it, not copies.
    pub fn push_shared(&mut self, chunk: Bytes, out: &mut Vec<Frame>) {
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', &chunk) {
            let line = if self.pending_bytes() == 0 && newline - start <= self.max_line_bytes {
                Frame::Complete(without_carriage_return(chunk.slice(start..newline)))
            } else {
                self.take(chunk.get(start..newline).unwrap_or_default());
                self.complete_line()
            };
            out.push(line);
            start = newline + 1;
        }
        self.take(chunk.get(start..).unwrap_or_default());
    }

    /// The unfinished last line at the end of the input, if any.
    pub fn finish(&mut self) -> Option<Frame> {
        (self.pending_bytes() > 0).then(|| self.complete_line())
    }

    fn take(&mut self, bytes: &[u8]) {
        if let Some(skipped) = self.skipped.as_mut() {
            *skipped += bytes.len();
            return;
        }
        if self.partial.len() + bytes.len() <= self.max_line_bytes {
            self.partial.extend_from_slice(bytes);
            return;
        }
        let total = self.partial.len() + bytes.len();
        let kept = total.min(KEPT_PREFIX_BYTES);
        let room = kept.saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&bytes[..room]);
        self.partial.truncate(kept);
        self.skipped = Some(total - kept);
    }

    fn complete_line(&mut self) -> Frame {
        let mut line = std::mem::take(&mut self.partial);
        match self.skipped.take() {
            Some(skipped) => Frame::TooLong {
                length: line.len() + skipped,
                prefix: line,
            },
            None => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Frame::Complete(Bytes::from(line))
            }
        }
    }
}

/// A line without the `\r` of a CRLF ending.
fn without_carriage_return(mut line: Bytes) -> Bytes {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    line
}

/// Joins the lines of pretty-printed JSON documents; passes single-line documents through.
#[derive(Debug)]
pub struct DocumentAssembler {
    max_document_bytes: usize,
    open: Option<OpenDocument>,
}

#[derive(Debug)]
struct OpenDocument {
    bytes: Vec<u8>,
    depth: BracketDepth,
    too_long: bool,
    length: usize,
}

impl DocumentAssembler {
    /// An assembler for documents of at most `max_document_bytes` bytes.
    pub fn new(max_document_bytes: usize) -> DocumentAssembler {
        DocumentAssembler {
            max_document_bytes,
            open: None,
        }
    }

    /// Takes one line; returns a document when one is complete.
    pub fn push_line(&mut self, frame: Frame) -> Option<Frame> {
        let line = match frame {
            Frame::Complete(line) => line,
            too_long => return Some(self.abandon(too_long)),
        };
        if let Some(open) = self.open.as_mut() {
            open.push(&line, self.max_document_bytes);
            return if open.depth.is_closed() {
                self.open.take().map(OpenDocument::into_frame)
            } else {
                None
            };
        }
        match line.trim_ascii() {
            b"" => None,
            b"{" | b"[" => {
                let mut open = OpenDocument::new();
                open.push(&line, self.max_document_bytes);
                self.open = Some(open);
                None
            }
            _ => Some(Frame::Complete(line)),
        }
    }

    /// The unfinished document at the end of the input, if any.
    pub fn finish(&mut self) -> Option<Frame> {
        self.open.take().map(OpenDocument::into_frame)
    }

    fn abandon(&mut self, too_long: Frame) -> Frame {
        // A line too long to keep also ends any document it was part of.
        self.open = None;
        too_long
    }
}

impl OpenDocument {
    fn new() -> OpenDocument {
        OpenDocument {
            bytes: Vec::new(),
            depth: BracketDepth::default(),
            too_long: false,
            length: 0,
        }
    }

    fn push(&mut self, line: &[u8], max: usize) {
        self.depth.scan(line);
        self.length += line.len() + 1;
        if self.length > max {
            self.too_long = true;
            self.bytes.truncate(KEPT_PREFIX_BYTES);
        } else {
            self.bytes.extend_from_slice(line);
            self.bytes.push(b'\n');
        }
    }

    fn into_frame(self) -> Frame {
        if self.too_long {
            Frame::TooLong {
                prefix: self.bytes,
                length: self.length,
            }
        } else {
            Frame::Complete(Bytes::from(self.bytes))
        }
    }
}

/// Tracks bracket depth across lines, aware of strings and escapes.
#[derive(Debug, Default)]
struct BracketDepth {
    depth: usize,
    in_string: bool,
    escaped: bool,
    opened: bool,
}

impl BracketDepth {
    fn scan(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.in_string {
                match (self.escaped, byte) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.opened = true;
                }
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.opened && self.depth == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut LineFramer, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, &mut out);
        }
        out
    }

    fn complete(text: &str) -> Frame {
        Frame::Complete(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut framer = LineFramer::new(100);
        let out = lines(&mut framer, &[b"ab", b"c\nde\r\n", b"f"]);
        assert_eq!(out, vec![complete("abc"), complete("de")]);
        assert_eq!(framer.pending_bytes(), 1);
        assert_eq!(framer.finish(), Some(complete("f")));
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn long_lines_are_reported_and_skipped() {
        let mut framer = LineFramer::new(4);
        let out = lines(&mut framer, &[b"ok\n123", b"456789", b"0\nnext\n"]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], complete("ok"));
        assert!(
            matches!(&out[1], Frame::TooLong { length: 10, prefix } if prefix.starts_with(b"123"))
        );
        assert_eq!(out[2], complete("next"));
    }

    #[test]
    fn long_line_memory_is_bounded() {
        let mut framer = LineFramer::new(10);
        let big = vec![b'x'; 1 << 20];
        for _ in 0..20 {
            lines(&mut framer, &[&big]);
        }
        assert!(framer.partial.len() <= KEPT_PREFIX_BYTES);
        let out = lines(&mut framer, &[b"\n"]);
        assert!(matches!(&out[0], Frame::TooLong { length, .. } if *length == 20 << 20));
    }

    #[test]
    fn pretty_documents_are_joined() {
        let mut assembler = DocumentAssembler::new(1000);
        let input = [
            "{\"a\":1}",
            "{",
            "  \"b\": \"}{\",",
            "  \"c\": [1]",
            "}",
            "",
            "[",
            "]",
        ];
        let docs: Vec<Frame> = input
            .iter()
            .filter_map(|l| assembler.push_line(complete(l)))
            .collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0], complete("{\"a\":1}"));
        assert_eq!(docs[1], complete("{\n  \"b\": \"}{\",\n  \"c\": [1]\n}\n"));
        assert_eq!(assembler.finish(), None);
    }

    #[test]
    fn unterminated_document_is_returned_at_the_end() {
        let mut assembler = DocumentAssembler::new(1000);
        assert_eq!(assembler.push_line(complete("{")), None);
        assert_eq!(assembler.push_line(complete("\"a\":1")), None);
        assert!(matches!(assembler.finish(), Some(Frame::Complete(_))));
    }
}

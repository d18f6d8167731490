//! Reading a request body within limits, and decompressing gzip within limits.
//!
//! Both stop as soon as the next piece would pass the limit, so a body larger
//! than `max_body_bytes`, or a small gzip body that expands past it (a "gzip
//! bomb"), costs at most `max_body_bytes` of memory, never its full size.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use flate2::read::MultiGzDecoder;
use futures::StreamExt;

/// The size of the pieces gzip is decompressed in.
const GUNZIP_CHUNK_BYTES: usize = 64 * 1024;

/// Why a body could not be read or decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The body (as received, or decompressed) is larger than the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// Whether it was the decompressed size that passed the limit.
        decompressed: bool,
    },
    /// The body did not arrive in time.
    Timeout(Duration),
    /// The connection failed while the body was read.
    Read(String),
    /// The body is not valid gzip (corrupt or truncated).
    Gzip(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit, decompressed: false } => write!(
                f,
                "the request body is larger than max_body_bytes ({limit} bytes); send smaller batches (--audit-webhook-batch-max-size) or raise max_body_bytes"
            ),
            BodyError::TooLarge { limit, decompressed: true } => write!(
                f,
                "the gzip body decompresses to more than max_body_bytes ({limit} bytes); send smaller batches or raise max_body_bytes"
            ),
            BodyError::Timeout(timeout) => write!(
                f,
                "the request body did not arrive within body_read_timeout ({})",
                humantime::format_duration(*timeout)
            ),
            BodyError::Read(error) => write!(f, "the request body could not be read: {error}"),
            BodyError::Gzip(error) => write!(
                f,
                "the body is not valid gzip (Content-Encoding: gzip): {error}; the body may be truncated or corrupt"
            ),
        }
    }
}

/// Reads a whole body of at most `limit` bytes within `timeout`.
///
/// `expected` (the `Content-Length`) sizes the buffer up front; a larger
/// value is refused before anything is read.
pub async fn read_limited(
    body: Body,
    limit: usize,
    expected: Option<usize>,
    timeout: Duration,
) -> Result<Vec<u8>, BodyError> {
    let too_large = BodyError::TooLarge {
        limit,
        decompressed: false,
    };
    if expected.is_some_and(|length| length > limit) {
        return Err(too_large);
    }
    let read = async {
        let mut out = Vec::with_capacity(expected.unwrap_or(0));
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| BodyError::Read(error.to_string()))?;
            if out.len() + chunk.len() > limit {
                return Err(too_large.clone());
            }
            reserve_within(&mut out, chunk.len(), limit);
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::Timeout(timeout)))
}

/// Decompresses a gzip body (one or more members) to at most `limit` bytes.
pub fn gunzip_limited(compressed: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut decoder = MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let mut chunk = vec![0u8; GUNZIP_CHUNK_BYTES];
    loop {
        let read = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(BodyError::Gzip(error.to_string())),
        };
        if out.len() + read > limit {
            return Err(BodyError::TooLarge {
                limit,
                decompressed: true,
            });
        }
        reserve_within(&mut out, read, limit);
        out.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
}

/// Makes room for `more` bytes, growing geometrically but never past `limit`.
fn reserve_within(out: &mut Vec<u8>, more: usize, limit: usize) {
    let needed = out.len() + more;
    if needed > out.capacity() {
        let target = out
            .capacity()
            .saturating_mul(2)
            .clamp(needed, limit.max(needed));
        out.reserve_exact(target - out.len());
    }
}

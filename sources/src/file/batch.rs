//! Turning the lines read into batches of events, decoded beside the reading, in order.
//!
//! Decoding JSON is most of the source's work, so it does not run on the
//! reading task: each turn's lines go to the shared [`OrderedDecoder`] (tokio's
//! blocking pool, results in submission order) and the next turn is read while
//! they decode. Beside each job the queue keeps where its lines came from (an
//! [`Origin`]), so that a decoded batch gets its acknowledgement handle and its
//! `errors` records name the file; batches come out in the order they went in,
//! so events leave in file order and the acknowledgement FIFO of each content
//! gets its batches by increasing offset.
//!
//! An origin carries the *generation* of its content when it was read: after a
//! failed delivery the content is read again from its committed offset and its
//! generation moves on, so the batches read before the rewind are dropped
//! unsent instead of being delivered twice.

use std::collections::VecDeque;
use std::sync::Arc;

use auditflow_core::ack::{BatchNotifier, BatchReceiver, Finalizer};
use auditflow_core::component::InputFailure;
use auditflow_core::event::Event;
use auditflow_core::topology::inline::{InlineChain, TransformErrors};

use super::fingerprint::Fingerprint;
use crate::decode::OrderedDecoder;
use crate::framing::Frame;

/// Where a batch came from: the content, its generation, and the offset after its last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The content read.
    pub fingerprint: Fingerprint,
    /// The content's generation when it was read.
    pub generation: u64,
    /// The offset just after the batch's last line.
    pub end: u64,
}

/// A decoded batch, ready to send.
#[derive(Debug)]
pub struct Batch {
    /// Where it came from.
    pub origin: Origin,
    /// The events, each holding the batch's finalizer.
    pub events: Vec<Event>,
    /// The lines that are not audit events, as `errors` records to send with the same finalizer.
    pub failures: Vec<InputFailure>,
    /// The `errors` records of the transforms run on the decoding thread, holding the finalizer.
    pub transform_errors: TransformErrors,
    /// The batch's acknowledgement handle (dropped once the batch is sent).
    pub finalizer: Finalizer,
    /// Resolves when every event of the batch is delivered.
    pub receiver: BatchReceiver,
}

/// Lines being decoded, oldest first, with where they came from.
pub struct BatchQueue {
    decoder: OrderedDecoder,
    origins: VecDeque<(Origin, String)>,
    ahead: usize,
}

impl BatchQueue {
    /// A queue decoding up to `ahead` batches at once for the source
    /// `source_id`, running `inline` over each (see [`OrderedDecoder`]).
    pub fn new(source_id: Arc<str>, ahead: usize, inline: Option<Arc<InlineChain>>) -> BatchQueue {
        let ahead = ahead.max(1);
        BatchQueue {
            // One more than `ahead`: a batch is queued before the oldest is taken out.
            decoder: OrderedDecoder::new(source_id, ahead + 1, inline),
            origins: VecDeque::new(),
            ahead,
        }
    }

    /// How many batches may decode while the next turn is read.
    pub fn ahead(&self) -> usize {
        self.ahead
    }

    /// How many batches are queued.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// Whether no batch is queued.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Whether a batch of this content is queued.
    pub fn holds(&self, fingerprint: Fingerprint) -> bool {
        self.origins
            .iter()
            .any(|(origin, _)| origin.fingerprint == fingerprint)
    }

    /// Starts decoding the lines of one turn of the file at `path`.
    pub fn push(&mut self, origin: Origin, frames: Vec<Frame>, path: String) {
        self.decoder.submit(frames);
        self.origins.push_back((origin, path));
    }

    /// The oldest batch, waiting for it to be decoded; `None` when nothing is
    /// queued; an error when its decoding failed (see [`OrderedDecoder::next`]).
    pub async fn next(&mut self) -> Option<anyhow::Result<Batch>> {
        let decoded = self.decoder.next().await?;
        let (origin, path) = self.origins.pop_front()?;
        let mut decoded = match decoded {
            Ok(decoded) => decoded,
            Err(error) => return Some(Err(error)),
        };
        let (finalizer, receiver) = BatchNotifier::new_batch();
        decoded.set_finalizer(&finalizer);
        let events = decoded.events;
        let transform_errors = decoded.transform_errors;
        let mut failures = decoded.failures;
        for failure in &mut failures {
            failure.message = format!("{path}: {}", failure.message);
        }
        Some(Ok(Batch {
            origin,
            events,
            failures,
            transform_errors,
            finalizer,
            receiver,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditflow_core::ack::BatchStatus;

    fn origin(end: u64) -> Origin {
        Origin {
            fingerprint: Fingerprint(1),
            generation: 0,
            end,
        }
    }

    fn line(id: &str) -> Frame {
        Frame::Complete(
            format!(r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"get"}}"#)
                .into_bytes()
                .into(),
        )
    }

    #[tokio::test]
    async fn batches_come_out_in_order_with_their_failures_named() {
        let mut queue = BatchQueue::new("in".into(), 2, None);
        queue.push(origin(10), vec![line("a"), line("b")], "/x.log".into());
        queue.push(
            origin(20),
            vec![Frame::Complete(b"nope".to_vec().into()), line("c")],
            "/x.log".into(),
        );
        assert_eq!(queue.len(), 2);
        assert!(queue.holds(Fingerprint(1)));
        let first = queue.next().await.expect("a batch").unwrap();
        assert_eq!(first.origin.end, 10);
        assert_eq!(first.events.len(), 2);
        assert!(first.events.iter().all(|e| e.meta.finalizer.is_some()));
        let second = queue.next().await.expect("a batch").unwrap();
        assert_eq!(second.origin.end, 20);
        assert_eq!(second.events.len(), 1);
        assert!(second.failures[0].message.starts_with("/x.log: "));
        assert!(queue.is_empty() && !queue.holds(Fingerprint(1)));
        assert!(queue.next().await.is_none());
    }

    #[tokio::test]
    async fn a_batch_resolves_once_its_events_and_handle_are_dropped() {
        let mut queue = BatchQueue::new("in".into(), 1, None);
        queue.push(origin(10), vec![line("a")], "/x.log".into());
        let batch = queue.next().await.expect("a batch").unwrap();
        let mut receiver = batch.receiver;
        drop(batch.finalizer);
        assert_eq!(receiver.try_status(), None);
        drop(batch.events);
        assert_eq!(receiver.await, BatchStatus::Delivered);
    }
}

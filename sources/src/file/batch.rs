//! Decoding the lines read into batches of events, beside the reading, in order.
//!
//! Decoding JSON is most of the source's work, so it does not run on the
//! reading task: each turn's lines go to a job on tokio's blocking pool, and
//! the next turn is read while up to [`BatchQueue::ahead`] jobs decode. Jobs
//! come out in the order they went in, so events leave in file order and the
//! acknowledgement FIFO of each content gets its batches by increasing offset.
//!
//! A job carries the *generation* of its content when it was read: after a
//! failed delivery the content is read again from its committed offset and its
//! generation moves on, so the jobs read before the rewind are dropped unsent
//! instead of being delivered twice.

use std::collections::VecDeque;
use std::sync::Arc;

use auditflow_core::ack::{BatchNotifier, BatchReceiver, Finalizer};
use auditflow_core::component::InputFailure;
use auditflow_core::event::Event;
use tokio::task::JoinHandle;

use super::fingerprint::Fingerprint;
use crate::decode::decode_frame;
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
    /// The batch's acknowledgement handle (dropped once the batch is sent).
    pub finalizer: Finalizer,
    /// Resolves when every event of the batch is delivered.
    pub receiver: BatchReceiver,
}

struct Job {
    origin: Origin,
    finalizer: Finalizer,
    receiver: BatchReceiver,
    task: JoinHandle<(Vec<Event>, Vec<InputFailure>)>,
}

/// Decoding jobs, oldest first.
pub struct BatchQueue {
    ahead: usize,
    jobs: VecDeque<Job>,
}

impl BatchQueue {
    /// A queue decoding up to `ahead` batches at once.
    pub fn new(ahead: usize) -> BatchQueue {
        BatchQueue {
            ahead: ahead.max(1),
            jobs: VecDeque::new(),
        }
    }

    /// How many batches may decode while the next turn is read.
    pub fn ahead(&self) -> usize {
        self.ahead
    }

    /// Whether every job has been taken out.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether a job of this content is queued.
    pub fn holds(&self, fingerprint: Fingerprint) -> bool {
        self.jobs
            .iter()
            .any(|job| job.origin.fingerprint == fingerprint)
    }

    /// Starts decoding the lines of one turn of `path`.
    pub fn push(&mut self, origin: Origin, frames: Vec<Frame>, source_id: Arc<str>, path: String) {
        let (finalizer, receiver) = BatchNotifier::new_batch();
        let held = finalizer.clone();
        let task =
            tokio::task::spawn_blocking(move || decode_batch(frames, &source_id, &path, &held));
        self.jobs.push_back(Job {
            origin,
            finalizer,
            receiver,
            task,
        });
    }

    /// The oldest batch once decoded, if more than `keep` jobs are queued.
    ///
    /// `Err(origin)` when decoding failed (a bug: the task panicked); the
    /// caller must read that content again from its committed offset.
    pub async fn next(&mut self, keep: usize) -> Option<Result<Batch, Origin>> {
        if self.jobs.len() <= keep {
            return None;
        }
        let job = self.jobs.pop_front()?;
        Some(match job.task.await {
            Ok((events, failures)) => Ok(Batch {
                origin: job.origin,
                events,
                failures,
                finalizer: job.finalizer,
                receiver: job.receiver,
            }),
            Err(_) => Err(job.origin),
        })
    }
}

/// Decodes lines into events carrying `finalizer`, and failures naming the file.
pub fn decode_batch(
    frames: Vec<Frame>,
    source_id: &Arc<str>,
    path: &str,
    finalizer: &Finalizer,
) -> (Vec<Event>, Vec<InputFailure>) {
    let mut events = Vec::with_capacity(frames.len());
    let mut failures = Vec::new();
    for frame in frames {
        decode_frame(frame, source_id, &mut events, &mut failures);
    }
    for failure in &mut failures {
        failure.message = format!("{path}: {}", failure.message);
    }
    let events = events
        .into_iter()
        .map(|event| event.with_finalizer(finalizer.clone()))
        .collect();
    (events, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(end: u64) -> Origin {
        Origin {
            fingerprint: Fingerprint(1),
            generation: 0,
            end,
        }
    }

    fn line(id: &str) -> Frame {
        Frame::Complete(
            format!(r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"get"}}"#).into_bytes(),
        )
    }

    #[tokio::test]
    async fn batches_come_out_in_order_with_their_failures_named() {
        let mut queue = BatchQueue::new(2);
        let id: Arc<str> = "in".into();
        queue.push(
            origin(10),
            vec![line("a"), line("b")],
            id.clone(),
            "/x.log".into(),
        );
        queue.push(
            origin(20),
            vec![Frame::Complete(b"nope".to_vec()), line("c")],
            id,
            "/x.log".into(),
        );
        assert!(queue.next(2).await.is_none());
        let first = queue.next(0).await.expect("a job").expect("decoded");
        assert_eq!(first.origin.end, 10);
        assert_eq!(first.events.len(), 2);
        assert!(first.events.iter().all(|e| e.meta.finalizer.is_some()));
        let second = queue.next(0).await.expect("a job").expect("decoded");
        assert_eq!(second.origin.end, 20);
        assert_eq!(second.events.len(), 1);
        assert!(second.failures[0].message.starts_with("/x.log: "));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_batch_resolves_once_its_events_and_handle_are_dropped() {
        let mut queue = BatchQueue::new(1);
        queue.push(origin(10), vec![line("a")], "in".into(), "/x.log".into());
        let batch = queue.next(0).await.expect("a job").expect("decoded");
        let mut receiver = batch.receiver;
        drop(batch.finalizer);
        assert_eq!(receiver.try_status(), None);
        drop(batch.events);
        assert_eq!(receiver.await, auditflow_core::ack::BatchStatus::Delivered);
    }
}

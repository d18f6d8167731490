//! End-to-end acknowledgements.
//!
//! A source that must know when its events are safe (the file source before
//! it moves its checkpoint, the webhook source before it answers 200) creates a
//! [`BatchNotifier`] for a batch and attaches its [`Finalizer`] to every event
//! of the batch. Every copy of an event holds the finalizer: fanning out to two
//! sinks makes two holders. A sink drops its copies once the store has said yes
//! (or records a failure first with [`Finalizer::fail`]); a transform that
//! drops an event on purpose (a filter) simply drops it. When the last holder
//! is gone, the notifier resolves with the worst status any holder reported,
//! and the source's [`BatchReceiver`] wakes up.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The outcome of a batch, once every copy of every event in it is finished.
///
/// The worst status a holder reports wins, in this order: a batch with an
/// event a sink could not deliver is `Errored` even if another event of it was
/// refused for good, so the source reads it again rather than passing what
/// was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BatchStatus {
    /// Every sink that received an event delivered it (or it was dropped on purpose).
    Delivered = 0,
    /// A sink refused an event for good (it would fail again); the others were delivered.
    Rejected = 1,
    /// A sink could not deliver an event (it may be retried by re-reading the source).
    Errored = 2,
}

impl BatchStatus {
    fn from_u8(value: u8) -> BatchStatus {
        match value {
            0 => BatchStatus::Delivered,
            1 => BatchStatus::Rejected,
            _ => BatchStatus::Errored,
        }
    }
}

struct Notifier {
    status: AtomicU8,
    sender: Mutex<Option<oneshot::Sender<BatchStatus>>>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let status = BatchStatus::from_u8(self.status.load(Ordering::Acquire));
        let sender = match self.sender.get_mut() {
            Ok(slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(sender) = sender {
            // The source may have stopped waiting; nothing to do then.
            let _ = sender.send(status);
        }
    }
}

/// The handle every event of a batch carries; the batch resolves when the last one drops.
#[derive(Clone)]
pub struct Finalizer(Arc<Notifier>);

impl std::fmt::Debug for Finalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Finalizer")
            .field(&BatchStatus::from_u8(self.0.status.load(Ordering::Relaxed)))
            .finish()
    }
}

impl Finalizer {
    /// Records a delivery failure for the batch (the worst status wins).
    pub fn fail(&self, status: BatchStatus) {
        self.0.status.fetch_max(status as u8, Ordering::AcqRel);
    }
}

/// Creates acknowledgement handles for source batches.
pub struct BatchNotifier;

impl BatchNotifier {
    /// A new batch: the finalizer to attach to its events and the receiver the source awaits.
    pub fn new_batch() -> (Finalizer, BatchReceiver) {
        let (sender, receiver) = oneshot::channel();
        let notifier = Notifier {
            status: AtomicU8::new(BatchStatus::Delivered as u8),
            sender: Mutex::new(Some(sender)),
        };
        (Finalizer(Arc::new(notifier)), BatchReceiver(receiver))
    }
}

/// Resolves when every event of a batch is finished.
#[derive(Debug)]
pub struct BatchReceiver(oneshot::Receiver<BatchStatus>);

impl BatchReceiver {
    /// Waits for the batch's outcome.
    pub async fn wait(self) -> BatchStatus {
        self.await
    }

    /// The outcome if the batch is already finished, without waiting.
    pub fn try_status(&mut self) -> Option<BatchStatus> {
        self.0.try_recv().ok()
    }
}

impl std::future::Future for BatchReceiver {
    type Output = BatchStatus;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<BatchStatus> {
        // The notifier always sends before it is dropped; a closed channel cannot
        // happen, but if it did, not claiming delivery is the safe answer.
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|result| result.unwrap_or(BatchStatus::Errored))
    }
}

/// Marks events as finished by a sink: a failure is recorded, then the copies are dropped.
pub fn finalize_events(events: Vec<crate::event::Event>, status: BatchStatus) {
    if status != BatchStatus::Delivered {
        for event in &events {
            if let Some(finalizer) = &event.meta.finalizer {
                finalizer.fail(status);
            }
        }
    }
    drop(events);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_last_copy_drops() {
        let (finalizer, mut receiver) = BatchNotifier::new_batch();
        let copy = finalizer.clone();
        drop(finalizer);
        assert_eq!(receiver.try_status(), None);
        drop(copy);
        assert_eq!(receiver.await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn a_failure_outranks_a_refusal() {
        let (finalizer, receiver) = BatchNotifier::new_batch();
        let copy = finalizer.clone();
        finalizer.fail(BatchStatus::Errored);
        copy.fail(BatchStatus::Rejected);
        drop((finalizer, copy));
        assert_eq!(receiver.wait().await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn the_worst_status_wins() {
        let (finalizer, receiver) = BatchNotifier::new_batch();
        let copy = finalizer.clone();
        copy.fail(BatchStatus::Errored);
        finalizer.fail(BatchStatus::Delivered);
        drop((finalizer, copy));
        assert_eq!(receiver.wait().await, BatchStatus::Errored);
    }
}

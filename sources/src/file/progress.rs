//! How far one content has been sent and how far it has been delivered.
//!
//! Each batch sent from a file is recorded with the offset just after its last
//! line and the [`BatchReceiver`] of its acknowledgement, in a FIFO. The
//! *committed* offset moves to a batch's end only when that batch is at the
//! head of the FIFO and resolved: batches may be delivered out of order (two
//! sinks, retries), but the committed offset never passes a batch that is
//! not delivered yet.
//!
//! - `Delivered`: the offset advances.
//! - `Rejected` (a sink refused the events for good; reading them again would
//!   fail again): the offset advances too, and the rejection is reported.
//! - `Errored` (a sink could not deliver; it may work later): every batch after
//!   it is forgotten and the send position goes back to the committed offset,
//!   so the caller reads the same bytes again. Nothing is ever skipped.

use std::collections::VecDeque;

use auditflow_core::ack::{BatchReceiver, BatchStatus};

#[derive(Debug)]
struct InFlight {
    end: u64,
    receiver: BatchReceiver,
    status: Option<BatchStatus>,
}

/// What [`Progress::settle`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The committed offset moved.
    pub advanced: bool,
    /// Batches refused for good (counted, then passed).
    pub rejected: usize,
    /// A batch was not delivered: the send position went back to the committed offset.
    pub failed: bool,
}

/// The sent and committed offsets of one content, with the batches in between.
#[derive(Debug)]
pub struct Progress {
    committed: u64,
    sent: u64,
    in_flight: VecDeque<InFlight>,
}

impl Progress {
    /// Progress starting at `offset`, everything before it delivered.
    pub fn new(offset: u64) -> Progress {
        Progress {
            committed: offset,
            sent: offset,
            in_flight: VecDeque::new(),
        }
    }

    /// Every byte before this offset is delivered.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Every byte before this offset has been sent: where reading goes on.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Whether no batch is waiting for its acknowledgement.
    pub fn is_settled(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Records a batch that ends at `end`.
    pub fn push(&mut self, end: u64, receiver: BatchReceiver) {
        self.sent = end;
        self.in_flight.push_back(InFlight {
            end,
            receiver,
            status: None,
        });
    }

    /// Takes the acknowledgements that have arrived, in order, without waiting.
    pub fn settle(&mut self) -> Settled {
        let mut settled = Settled::default();
        while let Some(head) = self.in_flight.front_mut() {
            let status = match head.status.or_else(|| head.receiver.try_status()) {
                Some(status) => status,
                None => break,
            };
            match status {
                BatchStatus::Delivered | BatchStatus::Rejected => {
                    settled.advanced |= head.end != self.committed;
                    settled.rejected += usize::from(status == BatchStatus::Rejected);
                    self.committed = head.end;
                    self.in_flight.pop_front();
                }
                BatchStatus::Errored => {
                    self.rewind();
                    settled.failed = true;
                    break;
                }
            }
        }
        settled
    }

    /// Forgets every batch in flight: reading goes on from the committed offset.
    pub fn rewind(&mut self) {
        self.in_flight.clear();
        self.sent = self.committed;
    }

    /// Waits for the oldest batch's acknowledgement (returns at once if none is in flight).
    pub async fn wait_head(&mut self) {
        if let Some(head) = self.in_flight.front_mut() {
            if head.status.is_none() {
                head.status = Some((&mut head.receiver).await);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditflow_core::ack::BatchNotifier;

    #[test]
    fn the_committed_offset_waits_for_the_oldest_batch() {
        let mut progress = Progress::new(10);
        let (first, first_receiver) = BatchNotifier::new_batch();
        let (second, second_receiver) = BatchNotifier::new_batch();
        progress.push(20, first_receiver);
        progress.push(30, second_receiver);
        assert_eq!(progress.sent(), 30);
        drop(second);
        assert_eq!(progress.settle(), Settled::default());
        assert_eq!(progress.committed(), 10);
        drop(first);
        let settled = progress.settle();
        assert!(settled.advanced && !settled.failed);
        assert_eq!(progress.committed(), 30);
        assert!(progress.is_settled());
    }

    #[test]
    fn a_failed_batch_rewinds_to_the_committed_offset() {
        let mut progress = Progress::new(0);
        let (first, first_receiver) = BatchNotifier::new_batch();
        let (second, second_receiver) = BatchNotifier::new_batch();
        let (third, third_receiver) = BatchNotifier::new_batch();
        progress.push(10, first_receiver);
        progress.push(20, second_receiver);
        progress.push(30, third_receiver);
        drop(first);
        second.fail(BatchStatus::Errored);
        drop((second, third));
        let settled = progress.settle();
        assert!(settled.advanced && settled.failed);
        assert_eq!(progress.committed(), 10);
        assert_eq!(progress.sent(), 10);
        assert!(progress.is_settled());
    }

    #[test]
    fn a_rejected_batch_is_passed_and_counted() {
        let mut progress = Progress::new(0);
        let (batch, receiver) = BatchNotifier::new_batch();
        progress.push(10, receiver);
        batch.fail(BatchStatus::Rejected);
        drop(batch);
        let settled = progress.settle();
        assert_eq!(settled.rejected, 1);
        assert_eq!(progress.committed(), 10);
    }

    #[tokio::test]
    async fn waiting_for_the_head_then_settling() {
        let mut progress = Progress::new(0);
        let (batch, receiver) = BatchNotifier::new_batch();
        progress.push(5, receiver);
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            drop(batch);
        });
        progress.wait_head().await;
        assert!(progress.settle().advanced);
        assert_eq!(progress.committed(), 5);
        release.await.expect("task");
    }
}

//! Which offsets the `kafka` source may commit: per partition, the position
//! after the longest run of batches, in the order they were read, that every
//! sink has acknowledged.
//!
//! The polling thread opens an entry for each batch it reads ([`OffsetTracker::open`],
//! one partition per batch, offsets `first..=last`); the acknowledgement task
//! settles it when the batch's status is known ([`OffsetTracker::settle`]).
//! An entry settled out of order waits for the ones before it: an offset is
//! never committed past a batch still in flight. Offsets are taken in read
//! order, not as numbers, so the gaps of compacted topics and transaction
//! markers do not stall the commits.
//!
//! A batch a sink could not deliver (`Errored`) makes the partition read
//! again from its oldest batch still open: every batch after it is dropped
//! from tracking (its generation ends), [`OffsetTracker::rewinds`] hands the
//! polling thread the offset to seek to, and until the seek is made
//! ([`OffsetTracker::rewound`]) nothing read from the partition is opened (a
//! batch read meanwhile lies past the rewind: delivered, it would move the
//! commit past what is read again). A batch is opened only in the generation
//! its first message was read in, and only for an assigned partition: what
//! was read across a rebalance or a rewind is dropped unsent. A batch a sink refused
//! for good (`Rejected`) is passed, as the file source passes it. When a
//! partition is revoked, its entries end with it: a batch of that generation
//! still in the pipeline settles nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use auditflow_core::ack::BatchStatus;

/// A topic and partition.
pub type TopicPartition = (Arc<str>, i32);

/// A batch read from one partition, as the tracker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The topic and partition.
    pub partition: TopicPartition,
    /// The partition's generation when the batch was read.
    pub generation: u64,
    /// The batch's number within the generation.
    pub seq: u64,
    /// The first offset of the batch.
    pub first: i64,
    /// The last offset of the batch.
    pub last: i64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    first: i64,
    last: i64,
    done: bool,
}

#[derive(Debug, Default)]
struct PartitionState {
    generation: u64,
    next_seq: u64,
    entries: VecDeque<Entry>,
    /// The offset to commit (after the last acknowledged run), if it moved since the last commit.
    uncommitted: Option<i64>,
    /// The highest offset handed out to be committed: a failed commit of a
    /// lower one is not tried again (a later commit covers it).
    taken: Option<i64>,
    /// The offset to seek back to, while the seek has not been made.
    rewind: Option<i64>,
}

/// The offsets of every assigned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<TopicPartition, PartitionState>,
    generations: u64,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// A partition was assigned: it starts a new generation with nothing open.
    pub fn assign(&mut self, partition: TopicPartition) {
        let generation = self.next_generation();
        self.partitions.insert(
            partition,
            PartitionState {
                generation,
                ..PartitionState::default()
            },
        );
    }

    /// A partition was revoked: the offset to commit for it (if it moved), and it is forgotten.
    pub fn revoke(&mut self, partition: &TopicPartition) -> Option<i64> {
        self.partitions.remove(partition)?.uncommitted
    }

    /// Every partition is forgotten, nothing committed (the assignment was lost).
    pub fn forget_all(&mut self) {
        self.partitions.clear();
    }

    /// The generation batches of `partition` read now belong to; `None` when
    /// the partition is not assigned or waits for a seek back (what is read
    /// now must not be sent).
    pub fn generation(&self, partition: &TopicPartition) -> Option<u64> {
        let state = self.partitions.get(partition)?;
        state.rewind.is_none().then_some(state.generation)
    }

    /// Opens an entry for a batch of offsets `first..=last` read from
    /// `partition` in `generation` ([`OffsetTracker::generation`] when its first
    /// message was read); `None`, and the batch must be dropped unsent, when
    /// the partition was revoked or rewound since.
    pub fn open(
        &mut self,
        partition: TopicPartition,
        generation: u64,
        first: i64,
        last: i64,
    ) -> Option<Span> {
        if self.generation(&partition) != Some(generation) {
            return None;
        }
        let state = self.partitions.get_mut(&partition)?;
        let seq = state.next_seq;
        state.next_seq += 1;
        state.entries.push_back(Entry {
            seq,
            first,
            last,
            done: false,
        });
        Some(Span {
            partition,
            generation,
            seq,
            first,
            last,
        })
    }

    /// Whether the batch is still tracked (its partition not revoked nor rewound since).
    pub fn is_current(&self, span: &Span) -> bool {
        self.partitions
            .get(&span.partition)
            .is_some_and(|state| state.generation == span.generation)
    }

    /// Records a batch's outcome; returns `false` when the batch was no longer tracked.
    pub fn settle(&mut self, span: &Span, status: BatchStatus) -> bool {
        if !self.is_current(span) {
            return false;
        }
        if status == BatchStatus::Errored {
            self.rewind(&span.partition);
            return true;
        }
        let Some(state) = self.partitions.get_mut(&span.partition) else {
            return false;
        };
        if let Ok(index) = state
            .entries
            .binary_search_by_key(&span.seq, |entry| entry.seq)
        {
            if let Some(entry) = state.entries.get_mut(index) {
                entry.done = true;
            }
        }
        while state.entries.front().is_some_and(|entry| entry.done) {
            if let Some(entry) = state.entries.pop_front() {
                state.uncommitted = Some(entry.last + 1);
            }
        }
        true
    }

    /// Reads the partition again from its oldest open batch: every open entry
    /// ends, and nothing read from it is opened until the seek is made.
    fn rewind(&mut self, partition: &TopicPartition) {
        let generation = self.next_generation();
        let Some(state) = self.partitions.get_mut(partition) else {
            return;
        };
        if let Some(oldest) = state.entries.front() {
            state.rewind = Some(state.rewind.map_or(oldest.first, |at| at.min(oldest.first)));
        }
        state.entries.clear();
        state.generation = generation;
    }

    /// The seeks the polling thread must make (partition, offset).
    pub fn rewinds(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(partition, state)| Some((partition.clone(), state.rewind?)))
            .collect()
    }

    /// The seek back of `partition` to `offset` is made: reading resumes there.
    pub fn rewound(&mut self, partition: &TopicPartition, offset: i64) {
        if let Some(state) = self.partitions.get_mut(partition) {
            if state.rewind == Some(offset) {
                state.rewind = None;
            }
        }
    }

    /// The offsets to commit that moved since the last call (partition, next offset to read).
    pub fn take_commits(&mut self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter_mut()
            .filter_map(|(partition, state)| {
                let offset = state.uncommitted.take()?;
                state.taken = Some(state.taken.map_or(offset, |taken| taken.max(offset)));
                Some((partition.clone(), offset))
            })
            .collect()
    }

    /// Puts back an offset whose commit failed, unless a later one was handed out since.
    pub fn retry_commit(&mut self, partition: &TopicPartition, offset: i64) {
        if let Some(state) = self.partitions.get_mut(partition) {
            if state.taken.is_none_or(|taken| offset >= taken) {
                state.uncommitted.get_or_insert(offset);
            }
        }
    }

    /// How many batches of `partition` are still open (read, not yet settled).
    pub fn open_batches(&self, partition: &TopicPartition) -> usize {
        self.partitions
            .get(partition)
            .map_or(0, |state| state.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> TopicPartition {
        ("audit".into(), n)
    }

    /// Opens a batch as the polling thread does: in the generation it was read in.
    fn read(tracker: &mut OffsetTracker, partition: TopicPartition, first: i64, last: i64) -> Span {
        let generation = tracker
            .generation(&partition)
            .expect("an assigned partition");
        tracker
            .open(partition, generation, first, last)
            .expect("opened")
    }

    fn assigned(partitions: &[i32]) -> OffsetTracker {
        let mut tracker = OffsetTracker::new();
        for n in partitions {
            tracker.assign(p(*n));
        }
        tracker
    }

    #[test]
    fn an_offset_is_never_committed_past_a_batch_in_flight() {
        let mut tracker = assigned(&[0]);
        let a = read(&mut tracker, p(0), 0, 9);
        let b = read(&mut tracker, p(0), 10, 19);
        let c = read(&mut tracker, p(0), 22, 30); // a gap: compacted away
        assert!(tracker.settle(&b, BatchStatus::Delivered));
        assert!(tracker.settle(&c, BatchStatus::Delivered));
        assert_eq!(tracker.take_commits(), vec![]);
        assert!(tracker.settle(&a, BatchStatus::Delivered));
        assert_eq!(tracker.take_commits(), vec![(p(0), 31)]);
        assert_eq!(tracker.take_commits(), vec![], "each commit is taken once");
        assert_eq!(tracker.open_batches(&p(0)), 0);
    }

    #[test]
    fn partitions_are_tracked_apart_and_rejected_batches_are_passed() {
        let mut tracker = assigned(&[0, 1]);
        let a = read(&mut tracker, p(0), 0, 4);
        let b = read(&mut tracker, p(1), 100, 104);
        tracker.settle(&b, BatchStatus::Rejected);
        assert_eq!(tracker.take_commits(), vec![(p(1), 105)]);
        tracker.settle(&a, BatchStatus::Delivered);
        assert_eq!(tracker.take_commits(), vec![(p(0), 5)]);
    }

    #[test]
    fn a_failed_batch_rewinds_to_the_oldest_open_one_and_ends_the_others() {
        let mut tracker = assigned(&[0]);
        let a = read(&mut tracker, p(0), 0, 9);
        let b = read(&mut tracker, p(0), 10, 19);
        let c = read(&mut tracker, p(0), 20, 29);
        tracker.settle(&a, BatchStatus::Delivered);
        tracker.settle(&c, BatchStatus::Errored);
        assert_eq!(tracker.rewinds(), vec![(p(0), 10)]);
        assert!(!tracker.is_current(&b));
        assert!(
            !tracker.settle(&b, BatchStatus::Delivered),
            "read before the rewind"
        );
        assert_eq!(tracker.take_commits(), vec![(p(0), 10)]);
        tracker.rewound(&p(0), 10);
        assert_eq!(tracker.rewinds(), vec![]);
        let again = read(&mut tracker, p(0), 10, 29);
        tracker.settle(&again, BatchStatus::Delivered);
        assert_eq!(tracker.take_commits(), vec![(p(0), 30)]);
    }

    #[test]
    fn nothing_read_between_a_rewind_and_its_seek_is_opened() {
        let mut tracker = assigned(&[0]);
        let a = read(&mut tracker, p(0), 0, 9);
        // The polling thread starts a round: its messages belong to this generation.
        let generation = tracker.generation(&p(0)).expect("assigned");
        tracker.settle(&a, BatchStatus::Errored);
        assert_eq!(tracker.generation(&p(0)), None, "waiting for the seek");
        assert_eq!(
            tracker.open(p(0), generation, 10, 19),
            None,
            "read past the rewind"
        );
        // A failed seek leaves the rewind pending: still nothing opens.
        assert_eq!(tracker.rewinds(), vec![(p(0), 0)]);
        tracker.rewound(&p(0), 0);
        let again = read(&mut tracker, p(0), 0, 19);
        tracker.settle(&again, BatchStatus::Delivered);
        assert_eq!(tracker.take_commits(), vec![(p(0), 20)]);
    }

    #[test]
    fn a_revoked_partition_hands_over_its_offset_and_forgets_its_batches() {
        let mut tracker = assigned(&[0]);
        let a = read(&mut tracker, p(0), 0, 9);
        let b = read(&mut tracker, p(0), 10, 19);
        let generation = tracker.generation(&p(0)).expect("assigned");
        tracker.settle(&a, BatchStatus::Delivered);
        assert_eq!(tracker.revoke(&p(0)), Some(10));
        assert!(!tracker.settle(&b, BatchStatus::Delivered));
        assert_eq!(
            tracker.open(p(0), generation, 20, 29),
            None,
            "read before the revocation"
        );
        assert_eq!(
            tracker.generation(&p(0)),
            None,
            "a partition not assigned opens nothing"
        );
        tracker.assign(p(0));
        assert!(
            !tracker.is_current(&b),
            "a new assignment is a new generation"
        );
        assert_eq!(tracker.open(p(0), generation, 20, 29), None);
        assert_eq!(tracker.take_commits(), vec![]);
        tracker.forget_all();
        assert_eq!(tracker.generation(&p(0)), None);
    }

    #[test]
    fn a_failed_commit_is_retried_unless_a_later_offset_was_handed_out() {
        let mut tracker = assigned(&[0]);
        let a = read(&mut tracker, p(0), 0, 9);
        tracker.settle(&a, BatchStatus::Delivered);
        let commits = tracker.take_commits();
        tracker.retry_commit(&p(0), 10);
        assert_eq!(tracker.take_commits(), commits);
        let b = read(&mut tracker, p(0), 10, 19);
        tracker.settle(&b, BatchStatus::Delivered);
        assert_eq!(tracker.take_commits(), vec![(p(0), 20)]);
        // The commit of 10 fails after 20 was handed out: 10 is not committed again.
        tracker.retry_commit(&p(0), 10);
        assert_eq!(tracker.take_commits(), vec![]);
        tracker.retry_commit(&p(0), 20);
        assert_eq!(tracker.take_commits(), vec![(p(0), 20)]);
    }
}

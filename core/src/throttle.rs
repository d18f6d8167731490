//! Rate-limited log lines: a condition that can repeat for every record (a
//! failed delivery, a dropped event) is logged once per interval, with how
//! many times it happened in between, never once per record.

use std::time::{Duration, Instant};

/// Decides when a repeating warning may be logged again.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// A warning logged at most once per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Counts one occurrence; `Some(n)` when it may be logged now, `n` being
    /// how many occurrences were not logged since the last line.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A [`Throttle`] shared between threads (the warnings of a component whose
/// work runs on several).
#[derive(Debug, Clone)]
pub struct SharedThrottle(std::sync::Arc<std::sync::Mutex<Throttle>>);

impl SharedThrottle {
    /// A shared warning logged at most once per `every`.
    pub fn new(every: Duration) -> SharedThrottle {
        SharedThrottle(std::sync::Arc::new(std::sync::Mutex::new(Throttle::new(
            every,
        ))))
    }

    /// [`Throttle::allow`], whichever thread asks.
    pub fn allow(&self) -> Option<u64> {
        match self.0.lock() {
            Ok(mut throttle) => throttle.allow(),
            Err(poisoned) => poisoned.into_inner().allow(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_interval_are_counted_not_logged() {
        let mut throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        throttle.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(throttle.allow(), Some(2));
    }
}

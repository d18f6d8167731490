//! The wait between two attempts, shared by every component that retries (the
//! HTTP sinks through their `http_client`, the `kafka` sink, the `kafka`
//! source's seeks back after a failed batch):
//! exponential from an initial wait, doubled each retry up to a longest wait,
//! each wait drawn between half and all of it so that many senders do not
//! retry in step.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: ChaCha8Rng,
}

impl Backoff {
    /// Waits from `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        Backoff {
            initial,
            max,
            jitter: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The wait before retry number `retry` (from 0).
    pub fn wait(&mut self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let full = self.initial.saturating_mul(factor).min(self.max);
        full.mul_f64(self.jitter.gen_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_exponentially_within_their_bounds() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        for (retry, full) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let wait = backoff.wait(retry).as_millis() as u64;
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait}ms");
        }
    }
}

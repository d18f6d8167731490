//! Simulated time: request arrivals and the RFC 3339 timestamps of events.
//!
//! Nothing here reads the wall clock. Time starts at the configured instant and
//! advances by exponentially distributed gaps (a Poisson arrival process) whose
//! mean is the inverse of the configured traffic density.

use chrono::{DateTime, Datelike, Timelike, Utc};
use rand::Rng;

use super::text::InlineStr;

/// A simulated instant: nanoseconds since the generator's start (negative before it).
pub(super) type SimTime = i64;

/// One millisecond in [`SimTime`] units.
pub(super) const MILLISECOND: SimTime = 1_000_000;

/// One second in [`SimTime`] units.
pub(super) const SECOND: SimTime = 1_000 * MILLISECOND;

/// One day in [`SimTime`] units.
pub(super) const DAY: SimTime = 86_400 * SECOND;

/// An RFC 3339 UTC timestamp (`2026-01-01T00:00:00.000000Z` or `2026-01-01T00:00:00Z`).
pub(super) type Timestamp = InlineStr<40>;

/// The simulated clock of a generator.
pub(super) struct Clock {
    start_seconds: i64,
    start_nanos: i64,
    mean_gap: f64,
    now: SimTime,
    cached_second: Option<i64>,
    cached_prefix: InlineStr<32>,
}

impl Clock {
    /// A clock at `start` whose arrivals average `events_per_second`.
    pub(super) fn new(start: DateTime<Utc>, events_per_second: f64) -> Clock {
        Clock {
            start_seconds: start.timestamp(),
            start_nanos: i64::from(start.timestamp_subsec_nanos()),
            mean_gap: SECOND as f64 / events_per_second,
            now: 0,
            cached_second: None,
            cached_prefix: InlineStr::new(),
        }
    }

    /// Advances to the next arrival and returns it.
    pub(super) fn tick(&mut self, rng: &mut impl Rng) -> SimTime {
        let uniform: f64 = rng.gen();
        let gap = -(1.0 - uniform).ln() * self.mean_gap;
        self.now = self.now.saturating_add(gap as SimTime);
        self.now
    }

    /// The time of the latest arrival.
    pub(super) fn now(&self) -> SimTime {
        self.now
    }

    /// `time` with microseconds, as audit events write their timestamps.
    pub(super) fn micros(&mut self, time: SimTime) -> Timestamp {
        let (second, nanos) = self.split(time);
        let prefix = self.prefix(second);
        Timestamp::format(format_args!("{prefix}.{:06}Z", nanos / 1_000))
    }

    /// `time` to the second, as object metadata writes its timestamps.
    pub(super) fn seconds(&mut self, time: SimTime) -> Timestamp {
        let (second, _) = self.split(time);
        let prefix = self.prefix(second);
        Timestamp::format(format_args!("{prefix}Z"))
    }

    /// The Unix second of `time` and the nanoseconds into it.
    fn split(&self, time: SimTime) -> (i64, i64) {
        let nanos = self.start_nanos + time;
        (
            self.start_seconds + nanos.div_euclid(SECOND),
            nanos.rem_euclid(SECOND),
        )
    }

    /// `YYYY-MM-DDTHH:MM:SS` of a Unix second, formatted once per second.
    fn prefix(&mut self, second: i64) -> InlineStr<32> {
        if self.cached_second != Some(second) {
            let time = DateTime::from_timestamp(second, 0).unwrap_or_default();
            let prefix = InlineStr::format(format_args!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                time.year(),
                time.month(),
                time.day(),
                time.hour(),
                time.minute(),
                time.second()
            ));
            self.cached_second = Some(second);
            self.cached_prefix = prefix;
        }
        self.cached_prefix
    }
}

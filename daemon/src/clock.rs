//! The times the store records, and a clock that cannot make them lie (issue 12).
//!
//! Timers run on the monotonic clock; what the log records (`recorded_at`, and from it every
//! time the read model shows) comes from the wall clock, which can be set back, or be another
//! machine's. [`RecordedTimes`] keeps the writer's stamps from going backwards: a batch is stamped
//! at least at the newest time already recorded in the log (so each stream's times, "newest first"
//! and `list --since` stay right), with a warning in the log at most once a minute.
//!
//! The trade-off: a clock that jumped far forward and came back makes the writer stamp that
//! high-water time until the clock passes it again. The log then says "not before" rather than
//! "at", which is the lesser evil — going backwards breaks the order of events that the read
//! model, the CLI and clients rely on. `orders daemon status` shows how far behind the clock is.
//!
//! [`Clock`] is the wall clock, with an offset that only tests set (`ORDERS_TEST_CLOCK_OFFSET_MS`,
//! read at start): a test cannot move the machine's clock.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// The environment variable that shifts the daemon's clock, for tests only.
pub const TEST_OFFSET_VAR: &str = "ORDERS_TEST_CLOCK_OFFSET_MS";

/// How far behind the log's newest time the clock may be before the daemon says so.
pub const BEHIND_WARNING: SignedDuration = SignedDuration::from_secs(60);

/// How often a clamped stamp is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The wall clock, in whole milliseconds (the store keeps milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    offset: SignedDuration,
}

impl Clock {
    /// The machine's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The machine's clock moved by `offset` (tests).
    pub fn offset_by(offset: SignedDuration) -> Clock {
        Clock { offset }
    }

    /// The clock the environment asks for: the machine's, unless [`TEST_OFFSET_VAR`] moves it.
    pub fn from_env() -> Result<Clock, String> {
        let Some(value) = std::env::var_os(TEST_OFFSET_VAR) else { return Ok(Clock::system()) };
        let text = value.to_string_lossy();
        let ms: i64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{TEST_OFFSET_VAR} must be a whole number of milliseconds, not '{text}'"))?;
        Ok(Clock::offset_by(SignedDuration::from_millis(ms)))
    }

    pub fn now(&self) -> Timestamp {
        let now = Timestamp::now().saturating_add(self.offset).unwrap_or(Timestamp::now());
        Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now)
    }
}

/// How far `now` is behind `newest`, when that is more than [`BEHIND_WARNING`].
pub fn behind(now: Timestamp, newest: Timestamp) -> Option<SignedDuration> {
    let behind = newest.duration_since(now);
    (behind > BEHIND_WARNING).then_some(behind)
}

/// The writer's stamps: never before the newest time recorded in the log.
#[derive(Debug)]
pub struct RecordedTimes {
    clock: Clock,
    /// The newest `recorded_at` of the log (the writer is its only author).
    newest: Timestamp,
    /// When a clamped stamp was last logged.
    warned: Option<Instant>,
}

/// A stamp, and how far the clock was behind the log when it had to be clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub at: Timestamp,
    pub clamped_by: Option<SignedDuration>,
}

impl RecordedTimes {
    pub fn new(clock: Clock, newest: Timestamp) -> RecordedTimes {
        RecordedTimes { clock, newest, warned: None }
    }

    /// The time to record a batch committed now; a clamp is logged at most once a minute.
    pub fn now(&mut self) -> Timestamp {
        let stamp = self.stamp(self.clock.now());
        if let Some(behind) = stamp.clamped_by
            && self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY)
        {
            self.warned = Some(Instant::now());
            tracing::warn!(
                behind_ms = behind.as_millis(),
                newest = %self.newest,
                "the clock is {behind:#} behind the newest recorded event; events are recorded at {} \
                 until the clock passes it (times never go backwards in the log)",
                self.newest
            );
        }
        stamp.at
    }

    /// `now`, or the newest recorded time if the clock is behind it.
    pub fn stamp(&self, now: Timestamp) -> Stamp {
        if now >= self.newest {
            Stamp { at: now, clamped_by: None }
        } else {
            Stamp { at: self.newest, clamped_by: Some(self.newest.duration_since(now)) }
        }
    }

    /// The newest time recorded in the log, as far as the writer knows.
    pub fn newest(&self) -> Timestamp {
        self.newest
    }

    /// Events were committed at `at`.
    pub fn recorded(&mut self, at: Timestamp) {
        self.newest = self.newest.max(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).expect("time")
    }

    #[test]
    fn a_clock_behind_the_log_stamps_the_newest_recorded_time() {
        let mut times = RecordedTimes::new(Clock::system(), at(10_000));
        assert_eq!(times.stamp(at(12_000)), Stamp { at: at(12_000), clamped_by: None });
        assert_eq!(
            times.stamp(at(4_000)),
            Stamp { at: at(10_000), clamped_by: Some(SignedDuration::from_secs(6)) }
        );
        times.recorded(at(11_000));
        times.recorded(at(9_000));
        assert_eq!(times.stamp(at(10_500)).at, at(11_000), "the newest time only grows");
    }

    #[test]
    fn a_clock_moved_back_an_hour_stamps_no_earlier_than_the_log() {
        let newest = Timestamp::now();
        let mut times = RecordedTimes::new(Clock::offset_by(SignedDuration::from_hours(-1)), newest);
        let stamped = times.now();
        assert!(stamped >= newest, "{stamped} < {newest}");
        assert!(times.warned.is_some(), "the clamp was logged");
    }

    #[test]
    fn only_a_clock_more_than_a_minute_behind_is_reported() {
        assert_eq!(behind(at(100_000), at(130_000)), None);
        assert_eq!(behind(at(100_000), at(90_000)), None);
        assert_eq!(behind(at(0), at(7_200_000)), Some(SignedDuration::from_hours(2)));
    }

    #[test]
    fn an_offset_clock_is_behind_in_whole_milliseconds() {
        let clock = Clock::offset_by(SignedDuration::from_millis(-3_600_000));
        let drift = Timestamp::now().duration_since(clock.now());
        assert!(drift >= SignedDuration::from_mins(59), "{drift:?}");
        assert_eq!(clock.now().subsec_nanosecond() % 1_000_000, 0, "whole milliseconds");
    }
}

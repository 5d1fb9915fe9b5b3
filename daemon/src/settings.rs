//! The longest durations a daemon accepts for its settings, and the words that say so.
//!
//! Issue 11: `--delivery-delay 999999999999s` was accepted, put each delivery's due time past the
//! year 9999, and every later start of the daemon failed on it. The command line and [`Config`]
//! now refuse anything past these bounds, with the same message.
//!
//! [`Config`]: crate::Config

use std::time::Duration;

/// A setting's upper bound.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// The setting, as a sentence names it.
    pub name: &'static str,
    pub max: Duration,
    /// `max` for people, in the units the duration syntax accepts too.
    pub max_in_words: &'static str,
    /// The shortest value taken (a timeout so short that no request gets through would leave a
    /// daemon that only a signal can stop).
    pub min: Duration,
}

const HOUR: Duration = Duration::from_secs(3600);

/// The shortest idle or drain timeout: `1ns` left a daemon that refused every request, `daemon
/// stop` included (issue 11, second review).
const SHORTEST_TIMEOUT: Duration = Duration::from_millis(100);

/// From approval to delivery: a week.
pub const DELIVERY_DELAY: Bound = Bound {
    name: "the delivery delay",
    max: HOUR.saturating_mul(24 * 7),
    max_in_words: "7 days (168h)",
    min: Duration::ZERO,
};

/// The simulated payment provider's latency: a day (tests hold orders pending with an hour).
pub const PAYMENT_DELAY: Bound = Bound {
    name: "the payment delay",
    max: HOUR.saturating_mul(24),
    max_in_words: "1 day (24h)",
    min: Duration::ZERO,
};

/// How long an idle connection is kept: a day.
pub const IDLE_TIMEOUT: Bound = Bound {
    name: "the idle timeout",
    max: HOUR.saturating_mul(24),
    max_in_words: "1 day (24h)",
    min: SHORTEST_TIMEOUT,
};

/// How long a client may take no part of a reply before it is dropped: a day.
pub const DRAIN_TIMEOUT: Bound = Bound {
    name: "the drain timeout",
    max: HOUR.saturating_mul(24),
    max_in_words: "1 day (24h)",
    min: SHORTEST_TIMEOUT,
};

impl Bound {
    /// `value` if it is within the bound; otherwise a message naming the bound.
    pub fn check(&self, value: Duration) -> Result<Duration, String> {
        if value > self.max {
            return Err(format!("{} must be at most {}", self.name, self.max_in_words));
        }
        if value < self.min {
            return Err(format!("{} must be at least {:?}", self.name, self.min));
        }
        Ok(value)
    }
}

/// The levels a log filter names.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Reads `--log-level` (`ORDERS_LOG`): a level, or comma-separated directives such as
/// `orders_daemon=debug,warn` (a level for a module, and one for the rest). Anything else is
/// refused: tracing's own parser took `verbose` as the name of a module, and the daemon then
/// logged nothing at all (issue 16).
pub fn log_filter(text: &str) -> Result<String, String> {
    let refuse = |what: &str| {
        format!(
            "{what} in '{text}': a log level is one of {}, or directives such as orders_daemon=debug,warn",
            LOG_LEVELS.join(", ")
        )
    };
    let is_level = |word: &str| LOG_LEVELS.iter().any(|level| level.eq_ignore_ascii_case(word));
    let is_target = |word: &str| {
        !word.is_empty()
            && !word.starts_with(':')
            && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    if text.trim().is_empty() {
        return Err(refuse("no level"));
    }
    for directive in text.split(',').map(str::trim) {
        match directive.split_once('=') {
            None if is_level(directive) => {}
            None => return Err(refuse(&format!("unknown log level '{directive}'"))),
            Some((target, level)) if is_target(target) && is_level(level) => {}
            Some((target, _)) if !is_target(target) => return Err(refuse(&format!("no module '{target}'"))),
            Some((_, level)) => return Err(refuse(&format!("unknown log level '{level}'"))),
        }
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_takes_its_maximum_and_refuses_a_nanosecond_more() {
        for bound in [DELIVERY_DELAY, PAYMENT_DELAY, IDLE_TIMEOUT, DRAIN_TIMEOUT] {
            assert_eq!(bound.check(bound.min), Ok(bound.min));
            if !bound.min.is_zero() {
                let refused = bound.check(bound.min - Duration::from_nanos(1)).expect_err("below the bound");
                assert!(refused.contains("at least"), "{refused}");
            }
            assert_eq!(bound.check(bound.max), Ok(bound.max));
            let refused = bound.check(bound.max + Duration::from_nanos(1)).expect_err("past the bound");
            assert!(refused.contains(bound.name) && refused.contains(bound.max_in_words), "{refused}");
        }
        assert_eq!(DELIVERY_DELAY.max, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(IDLE_TIMEOUT.max, Duration::from_secs(24 * 3600));
    }

    #[tokio::test]
    async fn a_daemon_refuses_a_config_past_the_bounds_before_touching_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = crate::Paths::resolve(Some(dir.path().join("data")), Some(dir.path().join("s.sock")))
            .expect("paths");
        let mut config = crate::Config::new(paths);
        config.delivery_delay = Duration::from_secs(999_999_999_999);
        let refused = crate::run(config, std::future::pending()).await.expect_err("refused");
        assert_eq!(refused.to_string(), "the delivery delay must be at most 7 days (168h)");
        assert!(!dir.path().join("data").exists(), "nothing was created");
    }

    #[test]
    fn a_log_level_is_a_level_or_directives_and_nothing_else() {
        for good in ["info", "DEBUG", "off", "orders_daemon=debug,warn", "orders_daemon::writer=trace"] {
            assert_eq!(log_filter(good).as_deref(), Ok(good), "{good}");
        }
        for (bad, said) in [
            ("verbose", "unknown log level 'verbose'"),
            ("", "no level"),
            ("info,loud", "unknown log level 'loud'"),
            ("orders_daemon=chatty", "unknown log level 'chatty'"),
            ("a b=info", "no module 'a b'"),
            ("orders_daemon[span]=debug", "no module"),
        ] {
            let error = log_filter(bad).expect_err(bad);
            assert!(error.contains(said) && error.contains("error, warn, info"), "{bad}: {error}");
        }
    }
}

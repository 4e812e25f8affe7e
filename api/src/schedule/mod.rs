//! Job schedules: 5-field cron or ISO 8601 repeating intervals (`R[n]/start/period`),
//! evaluated in an IANA time zone.

mod cron;
mod iso8601;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use cron::CronSchedule;
pub use iso8601::{IsoSchedule, IsoStart, Period};

/// A parsed schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// `minute hour day-of-month month day-of-week`, or `@daily` and friends.
    Cron(CronSchedule),
    /// `R[n]/start/period`.
    Iso(IsoSchedule),
}

/// Why a schedule or time zone does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Empty string.
    #[error("must not be empty")]
    Empty,
    /// A cron expression with seconds (and maybe years).
    #[error(
        "{0}-field cron expressions (with seconds) are not supported: use 5 fields \
         (minute hour day-of-month month day-of-week)"
    )]
    CronWithSeconds(usize),
    /// A cron expression with the wrong number of fields.
    #[error(
        "a cron expression needs 5 fields (minute hour day-of-month month day-of-week), \
         got {0}"
    )]
    CronFieldCount(usize),
    /// croner rejected the expression.
    #[error("invalid cron expression: {0}")]
    Cron(String),
    /// A malformed ISO 8601 repeating interval.
    #[error("invalid ISO 8601 repeating interval {input:?}: {reason}")]
    Iso {
        /// The schedule as written.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// Not an IANA time zone.
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    TimeZone(String),
}

impl Schedule {
    /// Parses a cron expression or an ISO 8601 repeating interval.
    pub fn parse(input: &str) -> Result<Schedule, ScheduleError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if iso8601::looks_like_iso(s) {
            IsoSchedule::parse(s).map(Schedule::Iso)
        } else {
            CronSchedule::parse(s).map(Schedule::Cron)
        }
    }

    /// The first run strictly after `after`, with wall-clock fields read in `tz`;
    /// None when the schedule has no further runs.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c.next_after(after, tz),
            Schedule::Iso(i) => i.next_after(after, tz),
        }
    }
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::TimeZone(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_on_syntax() {
        assert!(matches!(
            Schedule::parse("*/5 * * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(matches!(Schedule::parse("@daily"), Ok(Schedule::Cron(_))));
        assert!(matches!(
            Schedule::parse("R/2026-01-01T00:00:00Z/PT1H"),
            Ok(Schedule::Iso(_))
        ));
        assert_eq!(Schedule::parse("  ").err(), Some(ScheduleError::Empty));
    }

    #[test]
    fn time_zones() {
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        assert!(parse_time_zone("UTC").is_ok());
        assert_eq!(
            parse_time_zone("Mars/Olympus").err().map(|e| e.to_string()),
            Some(
                "unknown time zone \"Mars/Olympus\": use an IANA name such as \
                 \"Europe/Berlin\" or \"UTC\""
                    .to_string()
            )
        );
    }
}

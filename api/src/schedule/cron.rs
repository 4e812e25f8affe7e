//! 5-field cron expressions (croner underneath), evaluated on the wall clock of a zone.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::ScheduleError;

/// Name and inclusive range of each of the five fields.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// Names the field whose value is out of range (croner only says "out of bounds").
fn check_ranges(s: &str) -> Result<(), ScheduleError> {
    if s.starts_with('@') {
        return Ok(());
    }
    for (field, (name, min, max)) in s.split_whitespace().zip(FIELDS) {
        for part in field.split(',') {
            // Steps (`*/15`) and nth weekdays (`5#2`) are not values of the field.
            let values = part.split(['/', '#']).next().unwrap_or_default();
            for value in values.split('-') {
                if let Ok(n) = value.parse::<u32>() {
                    if n < min || n > max {
                        return Err(ScheduleError::Cron(format!(
                            "{name} {n} is out of range {min}-{max}"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A parsed 5-field cron expression.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
}

impl CronSchedule {
    /// Parses `minute hour day-of-month month day-of-week` (or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`, `@annually`). Rejects 6/7-field expressions.
    pub fn parse(s: &str) -> Result<CronSchedule, ScheduleError> {
        let fields = s.split_whitespace().count();
        if !s.starts_with('@') {
            match fields {
                5 => {}
                6 | 7 => return Err(ScheduleError::CronWithSeconds(fields)),
                n => return Err(ScheduleError::CronFieldCount(n)),
            }
        } else if fields != 1 {
            return Err(ScheduleError::CronFieldCount(fields));
        }
        check_ranges(s)?;
        let cron = Cron::new(s)
            .parse()
            .map_err(|e| ScheduleError::Cron(e.to_string()))?;
        Ok(CronSchedule {
            expression: s.to_string(),
            cron,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.expression
    }

    /// The first matching wall-clock time in `tz` strictly after `after`. A time that
    /// falls in a DST gap runs at the end of the gap; a time repeated by a DST fold runs
    /// once, at its first occurrence.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let mut cursor = after.with_timezone(&tz);
        // A fold can make croner answer with the first instance of a repeated local
        // time that lies before `after`; step the local clock past it.
        for _ in 0..1000 {
            let next = self.cron.find_next_occurrence(&cursor, false).ok()?;
            let next_utc = next.with_timezone(&Utc);
            if next_utc > after {
                return Some(next_utc);
            }
            cursor = tz.from_local_datetime(&next.naive_local()).earliest()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn cron(s: &str) -> CronSchedule {
        CronSchedule::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn rejects_seconds_and_wrong_field_counts() {
        assert_eq!(
            CronSchedule::parse("0 */5 * * * *").err(),
            Some(ScheduleError::CronWithSeconds(6))
        );
        assert_eq!(
            CronSchedule::parse("0 0 12 * * ? 2026").err(),
            Some(ScheduleError::CronWithSeconds(7))
        );
        assert_eq!(
            CronSchedule::parse("* * *").err(),
            Some(ScheduleError::CronFieldCount(3))
        );
        assert_eq!(
            CronSchedule::parse("61 * * * *")
                .err()
                .map(|e| e.to_string()),
            Some("invalid cron expression: minute 61 is out of range 0-59".to_string())
        );
        assert!(CronSchedule::parse("*/15 1-5 1,15 JAN-MAR MON-FRI").is_ok());
        assert!(matches!(
            CronSchedule::parse("0 0 32 * *"),
            Err(ScheduleError::Cron(_))
        ));
    }

    #[test]
    fn every_five_minutes_in_utc() {
        let next = cron("*/5 * * * *").next_after(utc("2026-03-01T10:02:30Z"), Tz::UTC);
        assert_eq!(next, Some(utc("2026-03-01T10:05:00Z")));
        let next = cron("*/5 * * * *").next_after(utc("2026-03-01T10:05:00Z"), Tz::UTC);
        assert_eq!(next, Some(utc("2026-03-01T10:10:00Z")), "strictly after");
    }

    #[test]
    fn daily_in_a_zone_follows_the_wall_clock_across_dst() {
        let berlin = tz("Europe/Berlin");
        let c = cron("0 9 * * *");
        // Winter: 09:00 CET = 08:00 UTC.
        assert_eq!(
            c.next_after(utc("2026-03-27T12:00:00Z"), berlin),
            Some(utc("2026-03-28T08:00:00Z"))
        );
        // DST starts on 2026-03-29: 09:00 CEST = 07:00 UTC.
        assert_eq!(
            c.next_after(utc("2026-03-28T12:00:00Z"), berlin),
            Some(utc("2026-03-29T07:00:00Z"))
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_runs_once_at_the_end_of_the_gap() {
        let ny = tz("America/New_York");
        // 2026-03-08 02:30 does not exist in New York (02:00 -> 03:00 EDT).
        let next = cron("30 2 * * *").next_after(utc("2026-03-08T05:00:00Z"), ny);
        let local = next.map(|n| n.with_timezone(&ny).naive_local().to_string());
        assert_eq!(local.as_deref(), Some("2026-03-08 03:00:00"));
        // And the next day it is back to 02:30 EDT.
        let after = next.unwrap_or_default();
        let next = cron("30 2 * * *").next_after(after, ny);
        assert_eq!(next, Some(utc("2026-03-09T06:30:00Z")));
    }

    #[test]
    fn a_time_in_the_autumn_fold_runs_once() {
        let ny = tz("America/New_York");
        let c = cron("30 1 * * *");
        // 2026-11-01 01:30 happens twice; the first is 05:30 UTC (EDT).
        let first = c.next_after(utc("2026-11-01T04:00:00Z"), ny);
        assert_eq!(first, Some(utc("2026-11-01T05:30:00Z")));
        // After it, the next run is the following day (01:30 EST = 06:30 UTC).
        let second = c.next_after(utc("2026-11-01T05:30:00Z"), ny);
        assert_eq!(second, Some(utc("2026-11-02T06:30:00Z")));
        // Even when asked from inside the second 01:xx hour, time moves forward.
        let q = cron("*/15 * * * *").next_after(utc("2026-11-01T06:15:00Z"), ny);
        assert!(q.is_some_and(|t| t > utc("2026-11-01T06:15:00Z")));
    }
}

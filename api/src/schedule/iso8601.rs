//! ISO 8601 repeating intervals, `R[n]/start/period` (Chronos' schedule syntax), parsed
//! by hand: `R/2026-01-01T00:00:00Z/PT1H`, `R5/2026-01-01T00:00:00+01:00/P1DT12H`.

use chrono::{DateTime, Days, FixedOffset, Months, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::ScheduleError;

/// When the first run happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsoStart {
    /// An instant (the start had an offset or `Z`).
    Instant(DateTime<FixedOffset>),
    /// A wall-clock time, read in the Job's time zone.
    Local(NaiveDateTime),
}

/// `PnYnMnWnDTnHnMnS`: calendar parts follow the wall clock of the zone, time parts are
/// exact durations (so `P1D` stays at 09:00 across DST, `PT24H` does not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Period {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Weeks.
    pub weeks: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u64,
    /// Minutes.
    pub minutes: u64,
    /// Seconds.
    pub seconds: u64,
}

impl Period {
    fn calendar_months(&self) -> Option<u64> {
        u64::from(self.years)
            .checked_mul(12)?
            .checked_add(u64::from(self.months))
    }

    fn calendar_days(&self) -> Option<u64> {
        u64::from(self.weeks)
            .checked_mul(7)?
            .checked_add(u64::from(self.days))
    }

    fn exact_seconds(&self) -> Option<u64> {
        self.hours
            .checked_mul(3600)?
            .checked_add(self.minutes.checked_mul(60)?)?
            .checked_add(self.seconds)
    }

    fn is_zero(&self) -> bool {
        *self == Period::default()
    }
}

/// A parsed `R[n]/start/period`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoSchedule {
    /// Number of runs (`R5` = 5 runs); None = forever (`R`).
    pub repetitions: Option<u64>,
    /// The first run.
    pub start: IsoStart,
    /// Time between runs.
    pub period: Period,
}

/// True when `s` is meant as an ISO 8601 repeating interval rather than cron.
pub(super) fn looks_like_iso(s: &str) -> bool {
    s.starts_with('R') && s.contains('/')
}

impl IsoSchedule {
    /// Parses `R[n]/start/period`.
    pub fn parse(input: &str) -> Result<IsoSchedule, ScheduleError> {
        let err = |reason: &str| ScheduleError::Iso {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        let [rep, start, period] = parts.as_slice() else {
            return Err(err("expected R[n]/start/period"));
        };
        let repetitions = match rep.strip_prefix('R') {
            Some("") => None,
            Some(n) if n.bytes().all(|b| b.is_ascii_digit()) => Some(
                n.parse::<u64>()
                    .map_err(|_| err("repetition count is too large"))?,
            ),
            _ => return Err(err("the repetition part must be R or R<number>")),
        };
        let start = parse_start(start)
            .ok_or_else(|| err("the start must be a date-time such as 2026-01-01T00:00:00Z"))?;
        let period = parse_period(period).map_err(|r| err(&r))?;
        if period.is_zero() {
            return Err(err("the period must be longer than zero"));
        }
        Ok(IsoSchedule {
            repetitions,
            start,
            period,
        })
    }

    /// The `k`-th run (0 = start) in `tz`, None if out of range.
    pub fn occurrence(&self, k: u64, tz: Tz) -> Option<DateTime<Utc>> {
        let months = self.period.calendar_months()?.checked_mul(k)?;
        let days = self.period.calendar_days()?.checked_mul(k)?;
        let secs = i64::try_from(self.period.exact_seconds()?.checked_mul(k)?).ok()?;
        let base = if months == 0 && days == 0 {
            match self.start {
                IsoStart::Instant(dt) => dt.with_timezone(&Utc),
                IsoStart::Local(naive) => resolve_local(naive, tz)?,
            }
        } else {
            let local = match self.start {
                IsoStart::Instant(dt) => dt.with_timezone(&tz).naive_local(),
                IsoStart::Local(naive) => naive,
            };
            let local = local
                .checked_add_months(Months::new(u32::try_from(months).ok()?))?
                .checked_add_days(Days::new(days))?;
            resolve_local(local, tz)?
        };
        base.checked_add_signed(TimeDelta::try_seconds(secs)?)
    }

    /// The first run strictly after `after`, None once the repetitions are used up.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let last = match self.repetitions {
            Some(0) => return None,
            Some(n) => n - 1,
            None => u64::MAX,
        };
        // `later(k)`: run k is after `after` (or unrepresentably far in the future).
        let later = |k: u64| self.occurrence(k, tz).is_none_or(|t| t > after);
        if later(0) {
            return self.occurrence(0, tz);
        }
        // Runs are monotonic in k: gallop to a bound, then bisect.
        let (mut lo, mut hi) = (0u64, 1u64);
        while !later(hi) {
            if hi >= last {
                return None;
            }
            lo = hi;
            hi = hi.saturating_mul(2).min(last);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if later(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.occurrence(hi, tz)
    }
}

/// A wall-clock time in `tz`: a time in a DST gap moves forward past the gap, a time in
/// a fold takes its first instance.
fn resolve_local(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    for minutes in 0..=180 {
        let t = naive.checked_add_signed(TimeDelta::try_minutes(minutes)?)?;
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return Some(dt.with_timezone(&Utc));
        }
    }
    None
}

fn parse_start(s: &str) -> Option<IsoStart> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(IsoStart::Instant(dt));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(IsoStart::Local(naive));
        }
    }
    None
}

fn parse_period(s: &str) -> Result<Period, String> {
    let body = s
        .strip_prefix('P')
        .ok_or("the period must start with P (e.g. PT1H, P1D)")?;
    if body.is_empty() || body == "T" || body.ends_with('T') {
        return Err("the period has no components".into());
    }
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut period = Period::default();
    let mut seen = String::new();
    for (number, unit) in components(date)? {
        let slot: &mut u32 = match unit {
            'Y' => &mut period.years,
            'M' => &mut period.months,
            'W' => &mut period.weeks,
            'D' => &mut period.days,
            other => return Err(format!("unknown date unit {other:?} (use Y, M, W, D)")),
        };
        check_order(&mut seen, unit, "YMWD")?;
        *slot = u32::try_from(number).map_err(|_| "a period component is too large")?;
    }
    seen.clear();
    if let Some(time) = time {
        for (number, unit) in components(time)? {
            let slot = match unit {
                'H' => &mut period.hours,
                'M' => &mut period.minutes,
                'S' => &mut period.seconds,
                other => return Err(format!("unknown time unit {other:?} (use H, M, S)")),
            };
            check_order(&mut seen, unit, "HMS")?;
            *slot = number;
        }
    }
    Ok(period)
}

fn check_order(seen: &mut String, unit: char, order: &str) -> Result<(), String> {
    let pos = order.find(unit).unwrap_or(0);
    if seen.chars().any(|u| order.find(u).unwrap_or(0) >= pos) {
        return Err(format!("period units out of order or repeated at {unit:?}"));
    }
    seen.push(unit);
    Ok(())
}

fn components(s: &str) -> Result<Vec<(u64, char)>, String> {
    let mut out = Vec::new();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if digits.is_empty() {
            return Err(format!("expected a number before {c:?}"));
        } else {
            let n = digits
                .parse::<u64>()
                .map_err(|_| "a period component is too large".to_string())?;
            out.push((n, c));
            digits.clear();
        }
    }
    if !digits.is_empty() {
        return Err(format!("number {digits} has no unit"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn iso(s: &str) -> IsoSchedule {
        IsoSchedule::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_documented_forms() {
        let s = iso("R/2026-01-01T00:00:00Z/PT1H");
        assert_eq!(s.repetitions, None);
        assert_eq!(s.period.hours, 1);
        let s = iso("R5/2026-01-01T00:00:00+01:00/P1DT12H");
        assert_eq!(s.repetitions, Some(5));
        assert_eq!((s.period.days, s.period.hours), (1, 12));
        let s = iso("R/2026-01-01T09:00:00/P1W");
        assert!(matches!(s.start, IsoStart::Local(_)));
        assert_eq!(iso("R0/2026-01-01T00:00:00Z/P1Y").repetitions, Some(0));
    }

    #[test]
    fn rejects_malformed_intervals() {
        for bad in [
            "R/2026-01-01T00:00:00Z",
            "Rx/2026-01-01T00:00:00Z/PT1H",
            "R/2026-13-01T00:00:00Z/PT1H",
            "R/2026-01-01T00:00:00Z/1H",
            "R/2026-01-01T00:00:00Z/PT",
            "R/2026-01-01T00:00:00Z/P0D",
            "R/2026-01-01T00:00:00Z/PT1X",
            "R/2026-01-01T00:00:00Z/PH",
            "R/2026-01-01T00:00:00Z/PT1M1H",
        ] {
            assert!(IsoSchedule::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn hourly_runs_forever() {
        let s = iso("R/2026-01-01T00:00:00Z/PT1H");
        assert_eq!(
            s.next_after(utc("2025-12-31T00:00:00Z"), Tz::UTC),
            Some(utc("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:00Z"), Tz::UTC),
            Some(utc("2026-01-01T01:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2031-06-15T10:30:00Z"), Tz::UTC),
            Some(utc("2031-06-15T11:00:00Z"))
        );
    }

    #[test]
    fn limited_repetitions_end() {
        let s = iso("R5/2026-01-01T00:00:00+01:00/P1DT12H");
        // Runs at +0h, +36h, +72h, +108h, +144h from 2025-12-31T23:00Z.
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:00Z"), Tz::UTC),
            Some(utc("2026-01-02T11:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-01-05T11:00:00Z"), Tz::UTC),
            Some(utc("2026-01-06T23:00:00Z"))
        );
        assert_eq!(s.next_after(utc("2026-01-06T23:00:00Z"), Tz::UTC), None);
        assert_eq!(
            iso("R0/2026-01-01T00:00:00Z/PT1H").next_after(utc("2020-01-01T00:00:00Z"), Tz::UTC),
            None
        );
    }

    #[test]
    fn daily_periods_keep_the_wall_clock_across_dst_but_hours_do_not() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap_or(Tz::UTC);
        // 09:00 CET on 2026-03-28 (08:00 UTC); DST starts the next night.
        let daily = iso("R/2026-03-28T09:00:00+01:00/P1D");
        assert_eq!(
            daily.next_after(utc("2026-03-28T08:00:00Z"), berlin),
            Some(utc("2026-03-29T07:00:00Z")),
            "P1D stays at 09:00 local"
        );
        let hours = iso("R/2026-03-28T09:00:00+01:00/PT24H");
        assert_eq!(
            hours.next_after(utc("2026-03-28T08:00:00Z"), berlin),
            Some(utc("2026-03-29T08:00:00Z")),
            "PT24H is exactly 24 hours"
        );
    }

    #[test]
    fn local_start_is_read_in_the_zone_and_gaps_move_forward() {
        let ny: Tz = "America/New_York".parse().unwrap_or(Tz::UTC);
        let s = iso("R/2026-03-07T02:30:00/P1D");
        assert_eq!(s.occurrence(0, ny), Some(utc("2026-03-07T07:30:00Z")));
        // 2026-03-08 02:30 does not exist: runs at 03:00 EDT.
        assert_eq!(s.occurrence(1, ny), Some(utc("2026-03-08T07:00:00Z")));
        assert_eq!(s.occurrence(2, ny), Some(utc("2026-03-09T06:30:00Z")));
    }

    #[test]
    fn month_ends_clamp_without_drift() {
        let s = iso("R/2026-01-31T12:00:00Z/P1M");
        assert_eq!(s.occurrence(1, Tz::UTC), Some(utc("2026-02-28T12:00:00Z")));
        assert_eq!(s.occurrence(2, Tz::UTC), Some(utc("2026-03-31T12:00:00Z")));
    }
}

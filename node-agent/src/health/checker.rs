//! The state of one check with Marathon's semantics, as a pure state machine fed with
//! results and the instant they arrived: the schedule (`delaySeconds`, then every
//! `intervalSeconds`), the grace period, the consecutive-failure count and the kill
//! verdict. No I/O and no clock of its own, so every rule is testable at any instant.

use std::time::Duration;

use drover_api::health::HealthCheck;
use tokio::time::Instant;

use super::error::HealthError;
use super::probe::Outcome;

/// A check's timing and kill threshold, with Marathon's defaults for unset fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckPolicy {
    /// From the task start to the first check (`delaySeconds`, 15).
    pub delay: Duration,
    /// From the end of one check to the start of the next (`intervalSeconds`, 10).
    pub interval: Duration,
    /// A check running longer fails (`timeoutSeconds`, 20).
    pub timeout: Duration,
    /// Failures before the first success are ignored this long after the task start
    /// (`gracePeriodSeconds`, 10).
    pub grace_period: Duration,
    /// Consecutive counted failures that kill the task; 0 never kills
    /// (`maxConsecutiveFailures`, 3).
    pub max_consecutive_failures: u32,
}

impl Default for CheckPolicy {
    fn default() -> Self {
        let spec = HealthCheck::default();
        // The defaults are in range by construction.
        Self::from_spec(&spec).unwrap_or(Self {
            delay: Duration::from_secs(15),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
            grace_period: Duration::from_secs(10),
            max_consecutive_failures: 3,
        })
    }
}

impl CheckPolicy {
    /// The policy of `check`; unset fields get the defaults of `HealthCheck::apply_defaults`.
    pub fn from_spec(check: &HealthCheck) -> Result<Self, HealthError> {
        let mut check = check.clone();
        check.apply_defaults();
        let max = check.max_consecutive_failures.unwrap_or_default();
        Ok(Self {
            delay: seconds("delaySeconds", check.delay_seconds, 0)?,
            interval: seconds("intervalSeconds", check.interval_seconds, 1)?,
            timeout: seconds("timeoutSeconds", check.timeout_seconds, 1)?,
            grace_period: seconds("gracePeriodSeconds", check.grace_period_seconds, 0)?,
            max_consecutive_failures: u32::try_from(max).map_err(|_| {
                HealthError::InvalidTiming {
                    field: "maxConsecutiveFailures",
                    expected: ">= 0",
                    value: i64::from(max),
                }
            })?,
        })
    }

    /// The same timing, never killing: what a readiness check uses.
    pub fn never_kill(self) -> Self {
        Self {
            max_consecutive_failures: 0,
            ..self
        }
    }
}

fn seconds(field: &'static str, value: Option<i64>, min: i64) -> Result<Duration, HealthError> {
    let value = value.unwrap_or_default();
    match u64::try_from(value) {
        Ok(secs) if value >= min => Ok(Duration::from_secs(secs)),
        _ => Err(HealthError::InvalidTiming {
            field,
            expected: if min == 0 { ">= 0" } else { ">= 1" },
            value,
        }),
    }
}

/// What one result did to a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed: healthy, counter reset.
    Healthy,
    /// Failed before the first success, within the grace period: not counted.
    Ignored,
    /// Failed and counted, below the kill threshold.
    Unhealthy,
    /// Failed `maxConsecutiveFailures` times in a row: the task must be killed.
    Kill {
        /// "3 consecutive health check failures: <last failure>".
        reason: String,
    },
}

/// One check's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checker {
    policy: CheckPolicy,
    started: Instant,
    succeeded_once: bool,
    healthy: Option<bool>,
    consecutive_failures: u32,
    last_failure: Option<String>,
    kill: Option<String>,
}

impl Checker {
    /// A check of a task that started at `started`.
    pub fn new(policy: CheckPolicy, started: Instant) -> Self {
        Self {
            policy,
            started,
            succeeded_once: false,
            healthy: None,
            consecutive_failures: 0,
            last_failure: None,
            kill: None,
        }
    }

    /// The policy this check follows.
    pub fn policy(&self) -> &CheckPolicy {
        &self.policy
    }

    /// When the first check is due.
    pub fn first_check_at(&self) -> Instant {
        self.started + self.policy.delay
    }

    /// When the next check is due after one that finished at `finished`.
    pub fn next_check_after(&self, finished: Instant) -> Instant {
        finished + self.policy.interval
    }

    /// Folds in one result that arrived at `at`.
    pub fn observe(&mut self, at: Instant, outcome: Outcome) -> Verdict {
        if self.kill.is_some() {
            // The verdict is final: the task is being killed.
            return self.verdict_after_kill();
        }
        match outcome {
            Outcome::Pass => {
                self.succeeded_once = true;
                self.healthy = Some(true);
                self.consecutive_failures = 0;
                Verdict::Healthy
            }
            Outcome::Fail(why) => {
                let in_grace =
                    at.saturating_duration_since(self.started) < self.policy.grace_period;
                self.last_failure = Some(why);
                if !self.succeeded_once && in_grace {
                    return Verdict::Ignored;
                }
                self.healthy = Some(false);
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let max = self.policy.max_consecutive_failures;
                if max > 0 && self.consecutive_failures >= max {
                    self.verdict_after_kill()
                } else {
                    Verdict::Unhealthy
                }
            }
        }
    }

    fn verdict_after_kill(&mut self) -> Verdict {
        let reason = self.kill.get_or_insert_with(|| {
            format!(
                "{} consecutive health check failure{}: {}",
                self.consecutive_failures,
                if self.consecutive_failures == 1 {
                    ""
                } else {
                    "s"
                },
                self.last_failure.as_deref().unwrap_or("unknown")
            )
        });
        Verdict::Kill {
            reason: reason.clone(),
        }
    }

    /// None until a result counts; then whether the last counted result passed.
    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Counted failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The most recent failure, counted or not.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// Why the task must be killed, once it must.
    pub fn kill(&self) -> Option<&str> {
        self.kill.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn fail(why: &str) -> Outcome {
        Outcome::Fail(why.to_string())
    }

    fn policy(grace: u64, max: u32) -> CheckPolicy {
        CheckPolicy {
            delay: secs(0),
            interval: secs(10),
            timeout: secs(20),
            grace_period: secs(grace),
            max_consecutive_failures: max,
        }
    }

    #[test]
    fn policy_defaults_are_marathons() {
        let p = CheckPolicy::default();
        assert_eq!(p.delay, secs(15));
        assert_eq!(p.interval, secs(10));
        assert_eq!(p.timeout, secs(20));
        assert_eq!(p.grace_period, secs(10));
        assert_eq!(p.max_consecutive_failures, 3);
        assert_eq!(p.never_kill().max_consecutive_failures, 0);
    }

    #[test]
    fn policy_rejects_out_of_range_timing() {
        let zero_interval = HealthCheck {
            interval_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(
            CheckPolicy::from_spec(&zero_interval),
            Err(HealthError::InvalidTiming {
                field: "intervalSeconds",
                expected: ">= 1",
                value: 0
            })
        );
        let negative_max = HealthCheck {
            max_consecutive_failures: Some(-1),
            ..Default::default()
        };
        assert!(CheckPolicy::from_spec(&negative_max).is_err());
        let explicit = HealthCheck {
            delay_seconds: Some(0),
            max_consecutive_failures: Some(0),
            ..Default::default()
        };
        assert_eq!(
            CheckPolicy::from_spec(&explicit).map(|p| (p.delay, p.max_consecutive_failures)),
            Ok((secs(0), 0))
        );
    }

    #[test]
    fn schedule_waits_delay_then_interval() {
        let t0 = Instant::now();
        let c = Checker::new(CheckPolicy::default(), t0);
        assert_eq!(c.first_check_at(), t0 + secs(15));
        assert_eq!(c.next_check_after(t0 + secs(16)), t0 + secs(26));
    }

    #[test]
    fn failures_in_grace_before_first_success_are_ignored() {
        let t0 = Instant::now();
        let mut c = Checker::new(policy(10, 1), t0);
        assert_eq!(c.observe(t0 + secs(1), fail("boom")), Verdict::Ignored);
        assert_eq!(c.observe(t0 + secs(9), fail("boom")), Verdict::Ignored);
        assert_eq!(c.healthy(), None);
        assert_eq!(c.consecutive_failures(), 0);
        assert_eq!(c.last_failure(), Some("boom"));
        assert_eq!(
            c.observe(t0 + secs(10), fail("still boom")),
            Verdict::Kill {
                reason: "1 consecutive health check failure: still boom".into()
            }
        );
    }

    #[test]
    fn grace_ends_at_the_first_success() {
        let t0 = Instant::now();
        let mut c = Checker::new(policy(60, 3), t0);
        assert_eq!(c.observe(t0 + secs(1), Outcome::Pass), Verdict::Healthy);
        assert_eq!(c.observe(t0 + secs(2), fail("x")), Verdict::Unhealthy);
        assert_eq!(c.healthy(), Some(false));
        assert_eq!(c.consecutive_failures(), 1);
    }

    #[test]
    fn max_consecutive_failures_kills_with_the_last_reason() {
        let t0 = Instant::now();
        let mut c = Checker::new(policy(0, 3), t0);
        assert_eq!(c.observe(t0, Outcome::Pass), Verdict::Healthy);
        assert_eq!(c.observe(t0 + secs(10), fail("a")), Verdict::Unhealthy);
        assert_eq!(c.observe(t0 + secs(20), fail("b")), Verdict::Unhealthy);
        let reason = "3 consecutive health check failures: c".to_string();
        assert_eq!(
            c.observe(t0 + secs(30), fail("c")),
            Verdict::Kill {
                reason: reason.clone()
            }
        );
        assert_eq!(c.kill(), Some(reason.as_str()));
        // Final: a late success does not revive it.
        assert_eq!(
            c.observe(t0 + secs(40), Outcome::Pass),
            Verdict::Kill { reason }
        );
    }

    #[test]
    fn success_resets_the_counter() {
        let t0 = Instant::now();
        let mut c = Checker::new(policy(0, 3), t0);
        for at in [1, 2] {
            assert_eq!(c.observe(t0 + secs(at), fail("x")), Verdict::Unhealthy);
        }
        assert_eq!(c.observe(t0 + secs(3), Outcome::Pass), Verdict::Healthy);
        assert_eq!(c.consecutive_failures(), 0);
        for at in [4, 5] {
            assert_eq!(c.observe(t0 + secs(at), fail("x")), Verdict::Unhealthy);
        }
        assert_eq!(c.kill(), None);
    }

    #[test]
    fn max_consecutive_failures_zero_never_kills() {
        let t0 = Instant::now();
        let mut c = Checker::new(policy(0, 0), t0);
        for at in 0..100 {
            assert_eq!(c.observe(t0 + secs(at), fail("x")), Verdict::Unhealthy);
        }
        assert_eq!(c.consecutive_failures(), 100);
        assert_eq!(c.kill(), None);
    }
}

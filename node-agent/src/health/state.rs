//! What the monitor reports for a task: the verdicts of all its checks folded into
//! one `HealthState`, as the supervisor copies it into the Task's status.

use super::checker::Checker;

/// The health of one task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthState {
    /// None while no health check has a counted result (or there are none); false if
    /// any health check's last counted result failed; true if all passed.
    pub healthy: Option<bool>,
    /// The same over the readiness checks (None when there are none: the supervisor
    /// decides what "ready" means then).
    pub ready: Option<bool>,
    /// The highest consecutive-failure count among the health checks.
    pub consecutive_failures: u32,
    /// The most recent failure of any check, as a sentence; readiness failures start
    /// with "readiness check: ".
    pub last_failure: Option<String>,
    /// Set once a health check failed `maxConsecutiveFailures` times in a row: why the
    /// task must be killed. Final.
    pub kill: Option<String>,
}

impl HealthState {
    /// Folds the checkers of a task.
    pub(crate) fn fold(
        health: &[Checker],
        readiness: &[Checker],
        last_failure: Option<String>,
    ) -> Self {
        Self {
            healthy: all(health),
            ready: all(readiness),
            consecutive_failures: health
                .iter()
                .map(Checker::consecutive_failures)
                .max()
                .unwrap_or(0),
            last_failure,
            kill: health.iter().find_map(|c| c.kill().map(str::to_string)),
        }
    }
}

fn all(checkers: &[Checker]) -> Option<bool> {
    let verdicts: Vec<Option<bool>> = checkers.iter().map(Checker::healthy).collect();
    if verdicts.contains(&Some(false)) {
        Some(false)
    } else if !verdicts.is_empty() && verdicts.iter().all(|v| *v == Some(true)) {
        Some(true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::super::checker::CheckPolicy;
    use super::super::probe::Outcome;
    use super::*;

    fn checker(results: &[bool]) -> Checker {
        let t0 = Instant::now();
        let policy = CheckPolicy {
            grace_period: std::time::Duration::ZERO,
            ..CheckPolicy::default()
        };
        let mut c = Checker::new(policy, t0);
        for ok in results {
            let outcome = if *ok {
                Outcome::Pass
            } else {
                Outcome::Fail("x".into())
            };
            c.observe(t0, outcome);
        }
        c
    }

    #[test]
    fn healthy_only_when_every_check_passed() {
        let both = [checker(&[true]), checker(&[true])];
        assert_eq!(HealthState::fold(&both, &[], None).healthy, Some(true));
        let one_unknown = [checker(&[true]), checker(&[])];
        assert_eq!(HealthState::fold(&one_unknown, &[], None).healthy, None);
        let one_failed = [checker(&[]), checker(&[true, false, false])];
        let state = HealthState::fold(&one_failed, &[], None);
        assert_eq!(state.healthy, Some(false));
        assert_eq!(state.consecutive_failures, 2);
        assert_eq!(state.ready, None, "no readiness checks");
        assert_eq!(HealthState::fold(&[], &[], None), HealthState::default());
    }
}

//! Runs every health and readiness check of one task on its schedule and publishes
//! the folded `HealthState` on a `watch` channel. Readiness checks never kill. Once a
//! health check decides the task must be killed, all checks stop.

use std::sync::{Arc, Mutex, PoisonError};

use drover_api::health::HealthCheck;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::checker::{CheckPolicy, Checker, Verdict};
use super::error::HealthError;
use super::exec::ExecContext;
use super::probe::{Outcome, Probe, Prober};
use super::state::HealthState;
use super::target::TaskTarget;

/// One check to run: how often, and what.
#[derive(Clone)]
pub struct MonitoredCheck {
    /// Timing and kill threshold.
    pub policy: CheckPolicy,
    /// What to run.
    pub prober: Arc<dyn Prober>,
}

impl std::fmt::Debug for MonitoredCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitoredCheck")
            .field("policy", &self.policy)
            .field("prober", &self.prober.describe())
            .finish()
    }
}

/// The checks of one task, ready to run.
#[derive(Debug)]
pub struct HealthMonitor {
    health: Vec<MonitoredCheck>,
    readiness: Vec<MonitoredCheck>,
    started: Instant,
}

/// Owns a running monitor: dropping it stops every check (and kills running exec
/// checks).
#[derive(Debug)]
pub struct MonitorHandle {
    task: JoinHandle<()>,
}

impl MonitorHandle {
    /// True once the monitor stopped (a kill verdict, no checks, or no receivers left).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Health,
    Readiness,
}

/// The checkers of all checks, shared by their loops (which run in one task).
struct Checkers {
    health: Vec<Checker>,
    readiness: Vec<Checker>,
    last_failure: Option<String>,
}

impl HealthMonitor {
    /// Resolves a task's checks (defaults applied to unset fields) against its ports
    /// and sandbox; `started` is when the task started, from which `delaySeconds` and
    /// `gracePeriodSeconds` count.
    pub fn new(
        health_checks: &[HealthCheck],
        readiness_checks: &[HealthCheck],
        target: &TaskTarget,
        exec: &ExecContext,
        started: Instant,
    ) -> Result<Self, HealthError> {
        let resolve = |field: &str, checks: &[HealthCheck]| {
            checks
                .iter()
                .enumerate()
                .map(|(i, check)| {
                    let resolved = CheckPolicy::from_spec(check).and_then(|policy| {
                        Ok(MonitoredCheck {
                            policy,
                            prober: Arc::new(Probe::resolve(check, target, exec)?),
                        })
                    });
                    resolved.map_err(|e| HealthError::InCheck {
                        path: format!("{field}[{i}]"),
                        error: Box::new(e),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self::from_checks(
            resolve("healthChecks", health_checks)?,
            resolve("readinessChecks", readiness_checks)?,
            started,
        ))
    }

    /// A monitor of checks built by the caller (any `Prober`); readiness checks are
    /// made never to kill.
    pub fn from_checks(
        health: Vec<MonitoredCheck>,
        readiness: Vec<MonitoredCheck>,
        started: Instant,
    ) -> Self {
        let readiness = readiness
            .into_iter()
            .map(|c| MonitoredCheck {
                policy: c.policy.never_kill(),
                prober: c.prober,
            })
            .collect();
        Self {
            health,
            readiness,
            started,
        }
    }

    /// Starts the checks on the current tokio runtime, in the current span. The
    /// receiver starts at `HealthState::default()`; the monitor stops when the handle
    /// is dropped, every receiver is gone, or a health check decides on a kill.
    pub fn spawn(self) -> (MonitorHandle, watch::Receiver<HealthState>) {
        let (tx, rx) = watch::channel(HealthState::default());
        let task = tokio::spawn(self.run(tx).in_current_span());
        (MonitorHandle { task }, rx)
    }

    async fn run(self, tx: watch::Sender<HealthState>) {
        let checkers = Mutex::new(Checkers {
            health: self
                .health
                .iter()
                .map(|c| Checker::new(c.policy, self.started))
                .collect(),
            readiness: self
                .readiness
                .iter()
                .map(|c| Checker::new(c.policy, self.started))
                .collect(),
            last_failure: None,
        });
        let mut loops = FuturesUnordered::new();
        let roles = [
            (Role::Health, &self.health),
            (Role::Readiness, &self.readiness),
        ];
        for (role, checks) in roles {
            for (index, check) in checks.iter().enumerate() {
                let first = self.started + check.policy.delay;
                loops.push(run_check(role, index, check, first, &checkers, &tx));
            }
        }
        tokio::select! {
            // A loop only returns on a kill verdict; none at all when there are no checks.
            _ = loops.next() => {}
            _ = tx.closed() => tracing::debug!("no one watches the health of this task any more"),
        }
    }
}

async fn run_check(
    role: Role,
    index: usize,
    check: &MonitoredCheck,
    first: Instant,
    checkers: &Mutex<Checkers>,
    tx: &watch::Sender<HealthState>,
) {
    let policy = check.policy;
    let mut due = first;
    loop {
        tokio::time::sleep_until(due).await;
        let outcome = match tokio::time::timeout(policy.timeout, check.prober.probe()).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Fail(format!(
                "{} timed out after {} s",
                check.prober.describe(),
                policy.timeout.as_secs()
            )),
        };
        let now = Instant::now();
        tracing::trace!(?role, index, ?outcome, "check ran");
        let verdict = {
            let mut all = checkers.lock().unwrap_or_else(PoisonError::into_inner);
            let checker = match role {
                Role::Health => all.health.get_mut(index),
                Role::Readiness => all.readiness.get_mut(index),
            };
            let Some(checker) = checker else { return };
            let was = checker.healthy();
            let verdict = checker.observe(now, outcome.clone());
            if checker.healthy() != was {
                tracing::debug!(?role, index, healthy = ?checker.healthy(), "check changed");
            }
            if let Outcome::Fail(why) = outcome {
                all.last_failure = Some(match role {
                    Role::Health => why,
                    Role::Readiness => format!("readiness check: {why}"),
                });
            }
            let state = HealthState::fold(&all.health, &all.readiness, all.last_failure.clone());
            tx.send_if_modified(|current| {
                let changed = *current != state;
                *current = state;
                changed
            });
            verdict
        };
        if let Verdict::Kill { reason } = verdict {
            tracing::warn!(%reason, "task must be killed");
            return;
        }
        due = now + policy.interval;
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use drover_api::health::{ExecCheck, HttpCheck, TcpCheck};

    use super::super::test_server::HttpServer;
    use super::*;

    /// Fast real-time timing: first check at once, then every second.
    fn quick(grace: u64, max: u32, timeout: u64) -> CheckPolicy {
        CheckPolicy {
            delay: Duration::ZERO,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(timeout),
            grace_period: Duration::from_secs(grace),
            max_consecutive_failures: max,
        }
    }

    /// A double that always gives the same outcome and counts its calls.
    struct Fixed {
        outcome: Outcome,
        calls: AtomicUsize,
    }

    impl Fixed {
        fn new(outcome: Outcome) -> Arc<Self> {
            Arc::new(Self {
                outcome,
                calls: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait]
    impl Prober for Fixed {
        fn describe(&self) -> String {
            "fixed".into()
        }

        async fn probe(&self) -> Outcome {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.outcome.clone()
        }
    }

    async fn wait_for(
        rx: &mut watch::Receiver<HealthState>,
        what: impl FnMut(&HealthState) -> bool,
    ) -> HealthState {
        let waited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(what))
            .await
            .map(|r| r.map(|state| state.clone()));
        match waited {
            Ok(Ok(state)) => state,
            Ok(Err(_)) => panic!("monitor stopped early: {:?}", rx.borrow()),
            Err(_) => panic!("state never came: {:?}", rx.borrow()),
        }
    }

    fn http_check(path: &str, port: u16) -> HealthCheck {
        HealthCheck {
            http: Some(HttpCheck {
                port: Some(i32::from(port)),
                path: Some(path.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn http_check_turns_unhealthy_then_kills_after_max_consecutive_failures() -> io::Result<()>
    {
        let server = HttpServer::start(200).await?;
        let check = MonitoredCheck {
            policy: quick(0, 2, 5),
            prober: Arc::new(Probe::Http(
                super::super::http::HttpProbe::new(server.addr(), "/healthz")
                    .map_err(io::Error::other)?,
            )),
        };
        let (handle, mut rx) =
            HealthMonitor::from_checks(vec![check], vec![], Instant::now()).spawn();
        let state = wait_for(&mut rx, |s| s.healthy.is_some()).await;
        assert_eq!(state.healthy, Some(true));
        server.set_status(503);
        let state = wait_for(&mut rx, |s| s.healthy == Some(false)).await;
        assert_eq!(state.consecutive_failures, 1);
        assert_eq!(state.kill, None);
        let failure = format!("HTTP GET http://{}/healthz returned 503", server.addr());
        assert_eq!(state.last_failure.as_deref(), Some(failure.as_str()));
        let state = wait_for(&mut rx, |s| s.kill.is_some()).await;
        assert_eq!(
            state.kill,
            Some(format!("2 consecutive health check failures: {failure}"))
        );
        assert_eq!(state.consecutive_failures, 2);
        // The verdict is final: the monitor stops checking.
        assert!(rx.changed().await.is_err());
        assert!(handle.is_finished());
        Ok(())
    }

    #[tokio::test]
    async fn exec_check_slower_than_its_timeout_fails_as_timed_out() {
        let check = HealthCheck {
            exec: Some(ExecCheck {
                command: vec!["sleep 5".into()],
            }),
            delay_seconds: Some(0),
            timeout_seconds: Some(1),
            grace_period_seconds: Some(0),
            max_consecutive_failures: Some(1),
            ..Default::default()
        };
        let monitor = HealthMonitor::new(
            &[check],
            &[],
            &TaskTarget::default(),
            &ExecContext::default(),
            Instant::now(),
        );
        let Ok(monitor) = monitor else {
            panic!("{monitor:?}")
        };
        let started = std::time::Instant::now();
        let (_handle, mut rx) = monitor.spawn();
        let state = wait_for(&mut rx, |s| s.kill.is_some()).await;
        assert_eq!(
            state.kill.as_deref(),
            Some("1 consecutive health check failure: exec `sleep 5` timed out after 1 s")
        );
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn failures_within_grace_are_ignored_then_counted() {
        let prober = Fixed::new(Outcome::Fail("down".into()));
        let check = MonitoredCheck {
            policy: quick(1, 1, 5),
            prober: prober.clone(),
        };
        let (_handle, mut rx) =
            HealthMonitor::from_checks(vec![check], vec![], Instant::now()).spawn();
        let state = wait_for(&mut rx, |s| s.last_failure.is_some()).await;
        assert_eq!(state.healthy, None, "ignored during grace");
        assert_eq!(state.consecutive_failures, 0);
        assert_eq!(state.kill, None);
        let state = wait_for(&mut rx, |s| s.kill.is_some()).await;
        assert_eq!(
            state.kill.as_deref(),
            Some("1 consecutive health check failure: down")
        );
        assert_eq!(prober.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn max_consecutive_failures_zero_keeps_checking_without_killing() {
        let prober = Fixed::new(Outcome::Fail("down".into()));
        let check = MonitoredCheck {
            policy: quick(0, 0, 5),
            prober: prober.clone(),
        };
        let (handle, mut rx) =
            HealthMonitor::from_checks(vec![check], vec![], Instant::now()).spawn();
        let state = wait_for(&mut rx, |s| s.consecutive_failures >= 2).await;
        assert_eq!(state.healthy, Some(false));
        assert_eq!(state.kill, None);
        assert!(!handle.is_finished());
    }

    #[tokio::test]
    async fn readiness_is_separate_from_health_and_never_kills() {
        let health = MonitoredCheck {
            policy: quick(0, 1, 5),
            prober: Fixed::new(Outcome::Pass),
        };
        let readiness = MonitoredCheck {
            policy: quick(0, 1, 5),
            prober: Fixed::new(Outcome::Fail("warming up".into())),
        };
        let (handle, mut rx) =
            HealthMonitor::from_checks(vec![health], vec![readiness], Instant::now()).spawn();
        let state = wait_for(&mut rx, |s| s.healthy.is_some() && s.ready.is_some()).await;
        assert_eq!(state.healthy, Some(true));
        assert_eq!(state.ready, Some(false));
        assert_eq!(state.consecutive_failures, 0, "counts health checks only");
        assert_eq!(state.kill, None);
        assert_eq!(
            state.last_failure.as_deref(),
            Some("readiness check: warming up")
        );
        assert!(!handle.is_finished());
    }

    #[tokio::test]
    async fn tcp_checks_against_open_and_closed_ports() -> io::Result<()> {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await?
            .local_addr()?;
        let target = TaskTarget::default()
            .with_port(Some("open"), open.local_addr()?.port())
            .with_port(Some("closed"), closed.port());
        let tcp = |name: &str| HealthCheck {
            tcp: Some(TcpCheck {
                port: None,
                port_name: Some(name.into()),
            }),
            delay_seconds: Some(0),
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let monitor = HealthMonitor::new(
            &[tcp("open")],
            &[tcp("closed")],
            &target,
            &ExecContext::default(),
            Instant::now(),
        )
        .map_err(io::Error::other)?;
        let (_handle, mut rx) = monitor.spawn();
        let state = wait_for(&mut rx, |s| s.healthy.is_some() && s.ready.is_some()).await;
        assert_eq!(state.healthy, Some(true));
        assert_eq!(state.ready, Some(false));
        assert_eq!(
            state.last_failure,
            Some(format!("readiness check: TCP connect to {closed} refused"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_checks() {
        let prober = Fixed::new(Outcome::Pass);
        let check = MonitoredCheck {
            policy: quick(0, 3, 5),
            prober: prober.clone(),
        };
        let (handle, mut rx) =
            HealthMonitor::from_checks(vec![check], vec![], Instant::now()).spawn();
        wait_for(&mut rx, |s| s.healthy == Some(true)).await;
        drop(handle);
        let stopped = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
        assert!(matches!(stopped, Ok(Err(_))), "{stopped:?}");
        assert_eq!(prober.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_bad_check_is_named_by_its_field_path() {
        let target = TaskTarget::default().with_port(Some("http"), 31005);
        let unknown = HealthCheck {
            http: Some(HttpCheck {
                port_name: Some("metrics".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = HealthMonitor::new(
            &[http_check("/", 31005)],
            &[unknown],
            &target,
            &ExecContext::default(),
            Instant::now(),
        )
        .err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(
                "readinessChecks[0]: no port named \"metrics\" (the task's named ports: http)"
                    .to_string()
            )
        );
    }
}

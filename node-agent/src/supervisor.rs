//! Runs one task through its lifecycle: start (or re-adopt) with the driver, wait for
//! it to end or for a kill request, checkpoint every transition and report it. While it
//! runs, its health and readiness checks run too: their verdicts are copied into the
//! status (on change only), and a health check's kill verdict kills the task gracefully.

use std::sync::Arc;
use std::time::Duration;

use drover_api::kinds::task::TaskPhase;
use tokio::sync::watch;

use crate::driver::{Checkpointed, Driver, DriverError, Exit, Launch, Running};
use crate::health::{
    ExecContext, HealthMonitor, HealthState, InContainer, MonitorHandle, TaskTarget,
};
use crate::lifecycle::{Checkpoints, SampledUsage, TaskState};
use crate::status::StatusReporter;

/// The reason of a task killed because its health checks failed.
pub const UNHEALTHY_REASON: &str = "HealthCheckFailed";

/// The reason of a task the kernel killed for exceeding its memory limit.
pub const OOM_REASON: &str = "OOMKilled";

/// When a running task's usage is first sampled, then how often.
const USAGE_FIRST: Duration = Duration::from_secs(1);
const USAGE_EVERY: Duration = Duration::from_secs(10);

/// What every task runner shares.
pub struct TaskContext {
    /// The driver.
    pub driver: Arc<dyn Driver>,
    /// Checkpoints and sandboxes.
    pub checkpoints: Checkpoints,
    /// Status writer.
    pub reporter: StatusReporter,
    /// Events about tasks (Started, Unhealthy, Killed, …).
    pub events: crate::events::EventRecorder,
}

/// Start a new process, or take back one an earlier agent started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Start it.
    Start,
    /// Re-adopt this pid.
    Adopt(i32),
}

impl TaskContext {
    fn save(&self, state: &TaskState) {
        if let Err(error) = self.checkpoints.save(state) {
            tracing::warn!(task = %state.key(), %error, "could not checkpoint the task");
        }
    }

    async fn record(&self, state: &TaskState) {
        self.save(state);
        self.reporter.report_with_retries(state).await;
    }

    async fn finish(&self, state: &mut TaskState, phase: TaskPhase, reason: &str, message: String) {
        match state.finish(phase, reason, message) {
            Ok(()) => {
                tracing::info!(task = %state.key(), phase = ?phase, message = state.message.as_deref().unwrap_or_default(), "task ended");
                self.events.ended(state);
            }
            Err(error) => tracing::warn!(%error, "ignored transition"),
        }
        self.record(state).await;
    }
}

/// Resolves once a kill is requested; never if the agent drops the sender (an agent
/// that stops leaves its tasks running, to re-adopt them).
async fn kill_requested(kill: &mut watch::Receiver<bool>) {
    if kill.wait_for(|k| *k).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Drives one task to a terminal phase.
pub async fn run_task(
    ctx: Arc<TaskContext>,
    mut state: TaskState,
    launch: Launch,
    mode: Mode,
    mut kill: watch::Receiver<bool>,
) {
    let running = match mode {
        Mode::Adopt(pid) => match ctx.driver.adopt_checkpointed(
            &Checkpointed {
                pid,
                ..state.checkpointed().unwrap_or_default()
            },
            &launch,
        ) {
            Some(r) => {
                let msg = format!("re-adopted process {pid} after an agent restart");
                ctx.events.normal(&state, "Adopted", msg);
                r
            }
            None => {
                let msg = format!("process {pid} exited while the agent was away (status unknown)");
                ctx.finish(&mut state, TaskPhase::Failed, "ExitUnknown", msg)
                    .await;
                return;
            }
        },
        Mode::Start => match start(&ctx, &mut state, &launch, &kill).await {
            Some(r) => r,
            None => return,
        },
    };
    supervise(&ctx, &mut state, &launch, running, &mut kill).await;
}

async fn start(
    ctx: &TaskContext,
    state: &mut TaskState,
    launch: &Launch,
    kill: &watch::Receiver<bool>,
) -> Option<Box<dyn Running>> {
    if *kill.borrow() {
        state.kill_requested = true;
        ctx.finish(
            state,
            TaskPhase::Killed,
            "Killed",
            "killed before it started".into(),
        )
        .await;
        return None;
    }
    if !state.can_start() {
        tracing::debug!(task = %state.key(), phase = ?state.phase, "not startable");
        return None;
    }
    if let Err(error) = state.transition(TaskPhase::Starting) {
        tracing::warn!(%error, "cannot start");
        return None;
    }
    // `Starting` is checkpointed before the driver runs, and reported while it runs
    // (not before: one API round trip less on the way to `Running`; the report is
    // awaited before any later one, so they arrive in order).
    ctx.save(state);
    let starting = {
        let (reporter, snapshot) = (ctx.reporter.clone(), state.clone());
        tokio::spawn(async move { reporter.report_with_retries(&snapshot).await })
    };
    let started = ctx.driver.start(launch).await;
    let _ = starting.await;
    match started {
        Ok(running) => {
            state.pid = Some(running.pid());
            state.shim_pid = running.shim_pid();
            state.container_id = running.container_id();
            state.task_start_time = running.start_time();
            state.limits_not_enforced = running.limits_not_enforced();
            if let Err(error) = state.transition(TaskPhase::Running) {
                tracing::warn!(%error, "ignored transition");
            }
            state.reason = None;
            state.message = None;
            initial_health(state, launch);
            ctx.record(state).await;
            let msg = format!("started process {} on {}", running.pid(), launch.host);
            ctx.events.normal(state, "Started", msg);
            Some(running)
        }
        Err(error) => {
            ctx.finish(state, TaskPhase::Failed, "StartFailed", error.to_string())
                .await;
            None
        }
    }
}

async fn supervise(
    ctx: &TaskContext,
    state: &mut TaskState,
    launch: &Launch,
    mut running: Box<dyn Running>,
    kill: &mut watch::Receiver<bool>,
) {
    let before = state.clone();
    if state.ready.is_none() {
        // Adopted from a checkpoint written before health was tracked.
        initial_health(state, launch);
    }
    let (monitor, mut health) = if state.kill_requested {
        (None, None)
    } else {
        match start_monitor(state, launch, running.exec_in()) {
            Some((handle, rx)) => (Some(handle), Some(rx)),
            None => (None, None),
        }
    };
    if *state != before {
        ctx.record(state).await;
    }
    let mut unhealthy = None;
    let mut usage_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + USAGE_FIRST, USAGE_EVERY);
    let exit = loop {
        tokio::select! {
            exit = running.wait() => break exit,
            _ = usage_tick.tick() => {
                if let Some(usage) = running.usage() {
                    state.usage = Some(SampledUsage::now(usage));
                    ctx.record(state).await;
                }
            }
            () = kill_requested(kill) => {
                state.kill_requested = true;
                ctx.save(state);
                break kill_gracefully(state, running.as_mut()).await;
            }
            checked = next_health(&mut health) => {
                let changed = apply_health(state, &checked, launch);
                if let Some(why) = checked.kill {
                    tracing::warn!(task = %state.key(), %why, "unhealthy: killing");
                    state.kill_requested = true;
                    state.message = Some(format!("killing as unhealthy: {why}"));
                    ctx.record(state).await;
                    unhealthy = Some(why);
                    break kill_gracefully(state, running.as_mut()).await;
                }
                if changed {
                    if let (Some(false), Some(m)) = (state.healthy, &state.message) {
                        ctx.events.warning(state, "Unhealthy", m.clone());
                    }
                    ctx.record(state).await;
                }
            }
        }
    };
    // The checks stop with the task.
    drop(monitor);
    if state.ready.is_some() {
        state.ready = Some(false);
    }
    let exit = match exit {
        Ok(exit) => exit,
        Err(error) => {
            ctx.finish(state, TaskPhase::Failed, "AgentError", error.to_string())
                .await;
            return;
        }
    };
    if let Some(usage) = running.usage() {
        state.usage = Some(SampledUsage::now(usage));
    }
    match exit {
        Exit::Code(code) => state.exit_code = Some(code),
        Exit::Signal(sig) => state.signal = Some(sig),
        Exit::Unknown => {}
    }
    let (phase, reason, message) = match unhealthy {
        // Failed, not Killed: nobody asked for it (the API's TaskPhase says so), and its
        // App replaces it with backoff.
        Some(why) => (
            TaskPhase::Failed,
            UNHEALTHY_REASON,
            format!("killed as unhealthy: {why}"),
        ),
        None if running.oom_killed() && !state.kill_requested => {
            (TaskPhase::Failed, OOM_REASON, oom_message(exit, launch))
        }
        None => outcome(exit, state.kill_requested, launch),
    };
    ctx.finish(state, phase, reason, message).await;
}

/// "killed: out of memory (limit 64 MiB)", plus how it exited when the kernel killed
/// only one of its processes.
fn oom_message(exit: Exit, launch: &Launch) -> String {
    let limit = launch
        .resources
        .mem_mib
        .filter(|m| *m > 0)
        .map(|m| format!(" (limit {m} MiB)"))
        .unwrap_or_default();
    match exit {
        Exit::Code(_) => format!("killed: out of memory{limit}; {}", exit.describe()),
        _ => format!("killed: out of memory{limit}"),
    }
}

/// SIGTERM, the task's grace period, SIGKILL.
async fn kill_gracefully(
    state: &TaskState,
    running: &mut dyn Running,
) -> Result<Exit, DriverError> {
    let grace = Duration::from_secs(state.kill_grace_seconds);
    tracing::info!(task = %state.key(), ?grace, "killing");
    running.kill(grace).await
}

/// Health fields of a task that has just started running: no health verdict yet, and
/// ready at once unless readiness checks must pass first.
fn initial_health(state: &mut TaskState, launch: &Launch) {
    state.healthy = None;
    state.consecutive_health_failures = (!launch.health_checks.is_empty()).then_some(0);
    state.ready = Some(launch.readiness_checks.is_empty());
}

/// Starts the task's checks, if it has any. A check that cannot be set up is reported
/// in the status message, and none of the task's checks run (nor kill it).
fn start_monitor(
    state: &mut TaskState,
    launch: &Launch,
    container: Option<InContainer>,
) -> Option<(MonitorHandle, watch::Receiver<HealthState>)> {
    if launch.health_checks.is_empty() && launch.readiness_checks.is_empty() {
        return None;
    }
    let target = launch
        .ports
        .iter()
        .fold(TaskTarget::default(), |t, (name, port)| {
            t.with_port(name.as_deref(), *port)
        });
    let exec = ExecContext {
        sandbox: launch
            .container
            .working_dir
            .as_ref()
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| launch.sandbox.clone()),
        env: launch.process_environment(),
        container,
    };
    let started = started_instant(state.started_at);
    match HealthMonitor::new(
        &launch.health_checks,
        &launch.readiness_checks,
        &target,
        &exec,
        started,
    ) {
        Ok(monitor) => Some(monitor.spawn()),
        Err(error) => {
            tracing::warn!(task = %state.key(), %error, "health checks not run");
            state.message = Some(format!("health checks not run: {error}"));
            None
        }
    }
}

/// The monotonic instant of a wall-clock start (now if unknown or in the future).
fn started_instant(started_at: Option<chrono::DateTime<chrono::Utc>>) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let ago = started_at
        .and_then(|t| (chrono::Utc::now() - t).to_std().ok())
        .unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}

/// The next health state; never resolves without a monitor. A monitor that stopped
/// yields its last state once (which carries its kill verdict, if any).
async fn next_health(rx: &mut Option<watch::Receiver<HealthState>>) -> HealthState {
    let Some(receiver) = rx else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_ok() {
        return receiver.borrow_and_update().clone();
    }
    let last = receiver.borrow().clone();
    *rx = None;
    last
}

/// Copies a health state into the task's; true if what is reported changed.
fn apply_health(state: &mut TaskState, health: &HealthState, launch: &Launch) -> bool {
    let before = (
        state.healthy,
        state.ready,
        state.consecutive_health_failures,
        state.message.clone(),
    );
    let checks_readiness = !launch.readiness_checks.is_empty();
    if !launch.health_checks.is_empty() {
        state.healthy = health.healthy;
        state.consecutive_health_failures = Some(health.consecutive_failures);
    }
    if checks_readiness {
        state.ready = Some(health.ready == Some(true));
    }
    let failing =
        health.healthy == Some(false) || (checks_readiness && health.ready == Some(false));
    state.message = if failing {
        health.last_failure.clone()
    } else {
        None
    };
    let after = (
        state.healthy,
        state.ready,
        state.consecutive_health_failures,
        state.message.clone(),
    );
    before != after
}

/// The phase, reason and message for how a task ended.
fn outcome(exit: Exit, killed: bool, launch: &Launch) -> (TaskPhase, &'static str, String) {
    match exit {
        _ if killed => {
            let how = match exit {
                Exit::Code(_) => format!("{} after SIGTERM", exit.describe()),
                _ => exit.describe(),
            };
            (TaskPhase::Killed, "Killed", how)
        }
        Exit::Code(0) => (TaskPhase::Finished, "Completed", exit.describe()),
        // The shell's "not found": name the command (the shell's own words say which).
        Exit::Code(127) if launch.container.cmd.is_some() => {
            let stderr = launch.sandbox.join("stderr");
            let name = not_found_name(&std::fs::read_to_string(stderr).unwrap_or_default())
                .unwrap_or_else(|| launch.program_name());
            (
                TaskPhase::Failed,
                "CommandNotFound",
                format!("command not found: {name} (exited with code 127)"),
            )
        }
        Exit::Code(_) => (TaskPhase::Failed, "Exited", exit.describe()),
        Exit::Signal(_) => (TaskPhase::Failed, "Signaled", exit.describe()),
        Exit::Unknown => (TaskPhase::Failed, "ExitUnknown", exit.describe()),
    }
}

/// `sh: 1: foo: not found` → `foo`.
fn not_found_name(stderr: &str) -> Option<String> {
    let line = stderr.lines().rev().find(|l| l.ends_with("not found"))?;
    let rest = line
        .strip_suffix(": not found")
        .or_else(|| line.strip_suffix(": command not found"))?;
    rest.rsplit(": ").next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use drover_api::health::{HealthCheck, HttpCheck};

    use super::*;

    fn http_check(port_name: &str) -> HealthCheck {
        HealthCheck {
            http: Some(HttpCheck {
                port_name: Some(port_name.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn launch_with(health: Vec<HealthCheck>, readiness: Vec<HealthCheck>) -> Launch {
        Launch {
            ports: vec![(Some("http".into()), 31005)],
            health_checks: health,
            readiness_checks: readiness,
            ..Default::default()
        }
    }

    #[test]
    fn without_checks_a_running_task_is_ready_and_has_no_health() {
        let mut state = TaskState::default();
        let launch = launch_with(vec![], vec![]);
        initial_health(&mut state, &launch);
        assert_eq!(state.healthy, None);
        assert_eq!(state.ready, Some(true));
        assert_eq!(state.consecutive_health_failures, None);
        assert!(start_monitor(&mut state, &launch, None).is_none());
        assert_eq!(state.message, None);
    }

    #[test]
    fn readiness_checks_must_pass_before_ready() {
        let mut state = TaskState::default();
        let launch = launch_with(vec![http_check("http")], vec![http_check("http")]);
        initial_health(&mut state, &launch);
        assert_eq!(state.ready, Some(false));
        assert_eq!(state.consecutive_health_failures, Some(0));
        let passing = HealthState {
            healthy: Some(true),
            ready: Some(true),
            ..Default::default()
        };
        assert!(apply_health(&mut state, &passing, &launch));
        assert_eq!((state.healthy, state.ready), (Some(true), Some(true)));
        assert!(
            !apply_health(&mut state, &passing, &launch),
            "no change, no report"
        );
    }

    #[test]
    fn a_failing_check_is_reported_with_its_failure() {
        let mut state = TaskState::default();
        let launch = launch_with(vec![http_check("http")], vec![]);
        initial_health(&mut state, &launch);
        let failing = HealthState {
            healthy: Some(false),
            consecutive_failures: 1,
            last_failure: Some("HTTP GET http://127.0.0.1:31005/ returned 503".into()),
            ..Default::default()
        };
        assert!(apply_health(&mut state, &failing, &launch));
        assert_eq!(state.healthy, Some(false));
        assert_eq!(state.ready, Some(true), "no readiness checks");
        assert_eq!(state.consecutive_health_failures, Some(1));
        assert_eq!(
            state.message.as_deref(),
            Some("HTTP GET http://127.0.0.1:31005/ returned 503")
        );
        // A failure ignored during the grace period changes nothing reported.
        let mut ignored = TaskState::default();
        initial_health(&mut ignored, &launch);
        let in_grace = HealthState {
            last_failure: Some("connection refused".into()),
            ..Default::default()
        };
        assert!(!apply_health(&mut ignored, &in_grace, &launch));
        // Recovery clears the message.
        let passing = HealthState {
            healthy: Some(true),
            last_failure: failing.last_failure.clone(),
            ..Default::default()
        };
        assert!(apply_health(&mut state, &passing, &launch));
        assert_eq!(state.message, None);
        assert_eq!(state.consecutive_health_failures, Some(0));
    }

    #[test]
    fn a_check_that_cannot_be_built_is_reported_not_run() {
        let mut state = TaskState::default();
        let launch = launch_with(vec![http_check("admin")], vec![]);
        assert!(start_monitor(&mut state, &launch, None).is_none());
        let message = state.message.unwrap_or_default();
        assert!(
            message.starts_with("health checks not run: healthChecks[0]: no port named \"admin\""),
            "{message}"
        );
    }

    #[test]
    fn the_start_instant_is_in_the_past() {
        let now = tokio::time::Instant::now();
        let started = started_instant(Some(chrono::Utc::now() - chrono::Duration::seconds(5)));
        let ago = now.saturating_duration_since(started);
        assert!(
            ago >= Duration::from_secs(4) && ago <= Duration::from_secs(6),
            "{ago:?}"
        );
        assert!(started_instant(None) >= now);
    }

    #[test]
    fn the_shells_not_found_names_the_command() {
        assert_eq!(
            not_found_name("sh: 1: drover-nope: not found\n").as_deref(),
            Some("drover-nope")
        );
        assert_eq!(
            not_found_name("bash: line 1: x: command not found").as_deref(),
            Some("x")
        );
        assert_eq!(not_found_name("all good"), None);
    }
}

//! Runs one task through its lifecycle: start (or re-adopt) with the driver, wait for
//! it to end or for a kill request, checkpoint every transition and report it.

use std::sync::Arc;
use std::time::Duration;

use drover_api::kinds::task::TaskPhase;
use tokio::sync::watch;

use crate::driver::{Driver, Exit, Launch, Running};
use crate::lifecycle::{Checkpoints, TaskState};
use crate::status::StatusReporter;

/// What every task runner shares.
pub struct TaskContext {
    /// The driver.
    pub driver: Arc<dyn Driver>,
    /// Checkpoints and sandboxes.
    pub checkpoints: Checkpoints,
    /// Status writer.
    pub reporter: StatusReporter,
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
                tracing::info!(task = %state.key(), phase = ?phase, message = state.message.as_deref().unwrap_or_default(), "task ended")
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
        Mode::Adopt(pid) => match ctx.driver.adopt(pid, &launch) {
            Some(r) => r,
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
    ctx.record(state).await;
    match ctx.driver.start(launch).await {
        Ok(running) => {
            state.pid = Some(running.pid());
            if let Err(error) = state.transition(TaskPhase::Running) {
                tracing::warn!(%error, "ignored transition");
            }
            state.reason = None;
            state.message = None;
            ctx.record(state).await;
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
    let exit = tokio::select! {
        exit = running.wait() => exit,
        () = kill_requested(kill) => {
            state.kill_requested = true;
            ctx.save(state);
            let grace = Duration::from_secs(state.kill_grace_seconds);
            tracing::info!(task = %state.key(), ?grace, "killing");
            running.kill(grace).await
        }
    };
    let exit = match exit {
        Ok(exit) => exit,
        Err(error) => {
            ctx.finish(state, TaskPhase::Failed, "AgentError", error.to_string())
                .await;
            return;
        }
    };
    match exit {
        Exit::Code(code) => state.exit_code = Some(code),
        Exit::Signal(sig) => state.signal = Some(sig),
        Exit::Unknown => {}
    }
    let (phase, reason, message) = outcome(exit, state.kill_requested, launch);
    ctx.finish(state, phase, reason, message).await;
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
    use super::*;

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

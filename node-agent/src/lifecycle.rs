//! The per-task state machine: guarded transitions over the API's `TaskPhase`,
//! checkpointed as JSON in `<data-dir>/tasks/<ns>_<name>/state.json` so a restarted
//! agent knows what it was running.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use drover_api::kinds::task::TaskPhase;
use drover_api::Task;
use serde::{Deserialize, Serialize};

use crate::driver::cgroups::Usage;
use crate::driver::Checkpointed;
use crate::error::Error;

/// A transition the lifecycle does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("task {task}: cannot go from {from:?} to {to:?}")]
pub struct TransitionError {
    /// `<ns>/<name>`.
    pub task: String,
    /// Current phase.
    pub from: TaskPhase,
    /// Refused phase.
    pub to: TaskPhase,
}

/// What the agent knows about one task it runs (the checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskState {
    /// Namespace of the Task.
    pub namespace: String,
    /// Name of the Task.
    pub name: String,
    /// UID of the Task (a recreated Task with the same name is another task).
    #[serde(default)]
    pub uid: Option<String>,
    /// Phase as the agent sees it.
    pub phase: TaskPhase,
    /// Process (group leader) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The pid of the task's shim (its parent, which records its exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim_pid: Option<i32>,
    /// The task's start time (`/proc/PID/stat` field 22): after a restart the agent
    /// adopts `pid` only if it still started then (a reused pid is someone else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_start_time: Option<u64>,
    /// Last sampled resource usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<SampledUsage>,
    /// Why the task's cgroup limits are not enforced (None: they are, or it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_not_enforced: Option<String>,
    /// The container's id (container drivers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Host ports, in the order of the Task's ports (0s resolved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<u16>,
    /// Exit status, once exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// One-word reason for the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a person reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Health check verdict (None: no health checks, or no counted result yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Readiness (true once running when there are no readiness checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Consecutive failed health checks (None without health checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_health_failures: Option<u32>,
    /// A kill was asked for (the exit is then `Killed`, not `Failed`).
    #[serde(default)]
    pub kill_requested: bool,
    /// Seconds between SIGTERM and SIGKILL.
    #[serde(default = "default_grace")]
    pub kill_grace_seconds: u64,
}

/// Usage of a task and when it was read.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampledUsage {
    /// CPU seconds and memory bytes.
    #[serde(flatten)]
    pub usage: Usage,
    /// When.
    pub sampled_at: DateTime<Utc>,
}

impl SampledUsage {
    /// `usage`, sampled now.
    pub fn now(usage: Usage) -> Self {
        SampledUsage {
            usage,
            sampled_at: Utc::now(),
        }
    }
}

fn default_grace() -> u64 {
    drover_api::defaults::KILL_GRACE_PERIOD_SECONDS.unsigned_abs()
}

impl TaskState {
    /// The state of a Task the agent has just been given.
    pub fn new(task: &Task) -> Self {
        TaskState {
            namespace: task
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: task.metadata.name.clone().unwrap_or_default(),
            uid: task.metadata.uid.clone(),
            phase: TaskPhase::Pending,
            kill_grace_seconds: task
                .spec
                .kill_grace_period_seconds
                .map(i64::unsigned_abs)
                .unwrap_or_else(default_grace),
            ..Default::default()
        }
    }

    /// What adoption needs of the started process, if one was started.
    pub fn checkpointed(&self) -> Option<Checkpointed> {
        Some(Checkpointed {
            pid: self.pid?,
            start_time: self.task_start_time,
            shim_pid: self.shim_pid,
        })
    }

    /// `<ns>/<name>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// May the task be started? Only once, from Pending or Scheduled.
    pub fn can_start(&self) -> bool {
        self.phase.can_become(TaskPhase::Starting) && !self.kill_requested
    }

    /// May the task be killed? While it is not terminal.
    pub fn can_kill(&self) -> bool {
        !self.phase.is_terminal()
    }

    /// Moves to `next` if the lifecycle allows it; sets `finishedAt` on terminal phases.
    pub fn transition(&mut self, next: TaskPhase) -> Result<(), TransitionError> {
        if !self.phase.can_become(next) {
            return Err(TransitionError {
                task: self.key(),
                from: self.phase,
                to: next,
            });
        }
        tracing::debug!(task = %self.key(), from = ?self.phase, to = ?next, "transition");
        self.phase = next;
        if next == TaskPhase::Running && self.started_at.is_none() {
            self.started_at = Some(Utc::now());
        }
        if next.is_terminal() {
            self.finished_at = Some(Utc::now());
        }
        Ok(())
    }

    /// Moves to a terminal phase with its reason and message.
    pub fn finish(
        &mut self,
        next: TaskPhase,
        reason: &str,
        message: impl Into<String>,
    ) -> Result<(), TransitionError> {
        self.transition(next)?;
        self.reason = Some(reason.to_string());
        self.message = Some(message.into());
        Ok(())
    }
}

/// Where task directories live: `<root>/<ns>_<name>/{state.json,sandbox/}`.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    root: PathBuf,
}

const STATE_FILE: &str = "state.json";

impl Checkpoints {
    /// Checkpoints under `root` (`<data-dir>/tasks`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Checkpoints { root: root.into() }
    }

    /// The directory of a task.
    pub fn task_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.root.join(format!("{namespace}_{name}"))
    }

    /// The sandbox (working directory and logs) of a task.
    pub fn sandbox(&self, namespace: &str, name: &str) -> PathBuf {
        self.task_dir(namespace, name).join("sandbox")
    }

    /// Writes the state atomically (temporary file + rename).
    pub fn save(&self, state: &TaskState) -> Result<(), Error> {
        let dir = self.task_dir(&state.namespace, &state.name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let text = serde_json::to_vec_pretty(state).map_err(|source| Error::Decode {
            what: format!("the state of {}", state.key()),
            source,
        })?;
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, text).map_err(|e| Error::io("writing", &tmp, e))?;
        let path = dir.join(STATE_FILE);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming to", &path, e))
    }

    /// The state of a task, if it has one.
    pub fn load(&self, namespace: &str, name: &str) -> Result<Option<TaskState>, Error> {
        read_state(&self.task_dir(namespace, name).join(STATE_FILE))
    }

    /// Every checkpointed task (unreadable ones are skipped with a warning).
    pub fn load_all(&self) -> Vec<TaskState> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut states = Vec::new();
        for entry in entries.flatten() {
            match read_state(&entry.path().join(STATE_FILE)) {
                Ok(Some(s)) => states.push(s),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "skipping an unreadable task checkpoint"),
            }
        }
        states
    }
}

fn read_state(path: &Path) -> Result<Option<TaskState>, Error> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", path, e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| Error::Decode {
            what: path.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskPhase::*;

    fn state() -> TaskState {
        TaskState {
            namespace: "default".into(),
            name: "web-0".into(),
            uid: Some("u1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_task_starts_once_then_runs_then_finishes() {
        let mut s = state();
        assert!(s.can_start());
        assert_eq!(s.transition(Starting), Ok(()));
        assert!(!s.can_start());
        assert_eq!(s.transition(Running), Ok(()));
        assert!(s.started_at.is_some());
        assert!(s.can_kill());
        assert_eq!(
            s.finish(Finished, "Completed", "exited with code 0"),
            Ok(())
        );
        assert!(s.finished_at.is_some());
        assert!(!s.can_kill());
        assert!(!s.can_start());
    }

    #[test]
    fn terminal_phases_are_final() {
        let mut s = state();
        assert_eq!(s.transition(Starting), Ok(()));
        assert_eq!(
            s.finish(Failed, "StartFailed", "command not found: x"),
            Ok(())
        );
        let err = s.transition(Running).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("task default/web-0: cannot go from Failed to Running".to_string())
        );
        assert!(s.transition(Killed).is_err());
    }

    #[test]
    fn finished_needs_running_but_killed_does_not() {
        let mut s = state();
        assert!(s.transition(Finished).is_err());
        assert_eq!(s.transition(Killed), Ok(()));
    }

    #[test]
    fn a_kill_requested_before_start_forbids_the_start() {
        let mut s = state();
        s.kill_requested = true;
        assert!(!s.can_start());
        assert!(s.can_kill());
    }

    #[test]
    fn checkpoints_round_trip() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let cp = Checkpoints::new(dir.path());
        let mut s = state();
        s.pid = Some(42);
        s.shim_pid = Some(41);
        s.task_start_time = Some(123456);
        s.usage = Some(SampledUsage::now(Usage {
            cpu_seconds: 0.5,
            memory_bytes: 4096,
        }));
        s.host_ports = vec![31000];
        s.transition(Starting)?;
        cp.save(&s)?;
        assert_eq!(cp.load("default", "web-0")?, Some(s.clone()));
        assert_eq!(cp.load("default", "other")?, None);
        assert_eq!(cp.load_all(), vec![s.clone()]);
        assert!(dir.path().join("default_web-0/state.json").is_file());
        assert_eq!(
            s.checkpointed(),
            Some(Checkpointed {
                pid: 42,
                start_time: Some(123456),
                shim_pid: Some(41)
            })
        );
        Ok(())
    }
}

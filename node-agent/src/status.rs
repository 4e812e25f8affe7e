//! Reports a task's state to the API server: a merge patch of `/status` with the phase,
//! times, pid, exit code, reason and a message a person understands.

use drover_api::kinds::task::{TaskStatus, TaskUsage};
use drover_api::meta::{time_from_chrono, Condition, ConditionStatus};
use kube::api::{Patch, PatchParams};
use kube::Client;

use crate::client::tasks_in;
use crate::error::Error;
use crate::lifecycle::TaskState;

/// The API's TaskStatus for a checkpointed state.
pub fn task_status(state: &TaskState, host_ip: Option<&str>) -> TaskStatus {
    TaskStatus {
        phase: state.phase,
        exit_code: state.exit_code,
        signal: state.signal,
        reason: state.reason.clone(),
        message: state.message.clone(),
        started_at: state.started_at.map(time_from_chrono),
        finished_at: state.finished_at.map(time_from_chrono),
        pid: state.pid.map(i64::from),
        container_id: state.container_id.clone(),
        healthy: state.healthy,
        ready: state.ready,
        consecutive_health_failures: state
            .consecutive_health_failures
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        host_ip: host_ip.map(str::to_string),
        usage: state.usage.map(|u| TaskUsage {
            cpu_seconds: u.usage.cpu_seconds,
            memory_bytes: u.usage.memory_bytes,
            sampled_at: Some(time_from_chrono(u.sampled_at)),
        }),
        conditions: limits_condition(state).into_iter().collect(),
        ..Default::default()
    }
}

/// `LimitsEnforced=False` when the node could not give the task its cgroup limits.
fn limits_condition(state: &TaskState) -> Option<Condition> {
    let why = state.limits_not_enforced.as_ref()?;
    Some(Condition {
        type_: "LimitsEnforced".into(),
        status: ConditionStatus::False,
        reason: Some("CgroupsUnavailable".into()),
        message: Some(why.clone()),
        last_transition_time: state.started_at.map(time_from_chrono),
        observed_generation: None,
    })
}

/// Writes task statuses.
#[derive(Clone)]
pub struct StatusReporter {
    client: Client,
    host: String,
}

impl StatusReporter {
    /// Reports through `client`; `host` is given to clients as `status.hostIP`.
    pub fn new(client: Client, host: String) -> Self {
        StatusReporter { client, host }
    }

    /// Patches the Task's status. A Task already deleted is not an error.
    pub async fn report(&self, state: &TaskState) -> Result<(), Error> {
        let status = task_status(state, Some(&self.host));
        let mut body = serde_json::json!({ "status": status });
        // Merge patch: absent fields would be kept, so clear what no longer applies.
        for field in [
            "exitCode",
            "signal",
            "pid",
            "finishedAt",
            "reason",
            "message",
            "healthy",
            "ready",
            "consecutiveHealthFailures",
        ] {
            if body["status"].get(field).is_none() {
                body["status"][field] = serde_json::Value::Null;
            }
        }
        let api = tasks_in(&self.client, &state.namespace);
        match api
            .patch_status(&state.name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::debug!(task = %state.key(), "task gone; status not reported");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reports, retrying a few times with a growing pause; logs a final failure.
    pub async fn report_with_retries(&self, state: &TaskState) {
        let mut pause = std::time::Duration::from_millis(200);
        for attempt in 1..=5 {
            match self.report(state).await {
                Ok(()) => return,
                Err(error) if attempt == 5 => {
                    tracing::warn!(task = %state.key(), %error, "could not report the task status");
                }
                Err(error) => {
                    tracing::debug!(task = %state.key(), %error, attempt, "status report failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::kinds::task::TaskPhase;

    #[test]
    fn a_failed_state_maps_to_a_status() {
        let state = TaskState {
            namespace: "default".into(),
            name: "t".into(),
            phase: TaskPhase::Failed,
            exit_code: Some(3),
            reason: Some("Exited".into()),
            message: Some("exited with code 3".into()),
            pid: Some(7),
            ..Default::default()
        };
        let s = task_status(&state, Some("h1"));
        assert_eq!(s.phase, TaskPhase::Failed);
        assert_eq!(s.exit_code, Some(3));
        assert_eq!(s.pid, Some(7));
        assert_eq!(s.message.as_deref(), Some("exited with code 3"));
        assert_eq!(s.host_ip.as_deref(), Some("h1"));
        assert!(s.conditions.is_empty());
        assert_eq!(s.usage, None);
    }

    #[test]
    fn usage_and_unenforced_limits_are_reported() {
        let state = TaskState {
            phase: TaskPhase::Running,
            usage: Some(crate::lifecycle::SampledUsage::now(
                crate::driver::cgroups::Usage {
                    cpu_seconds: 1.25,
                    memory_bytes: 4096,
                },
            )),
            limits_not_enforced: Some(
                "cgroup limits are not enforced: creating /sys/fs/cgroup/memory/drover: read-only"
                    .into(),
            ),
            ..Default::default()
        };
        let s = task_status(&state, None);
        let usage = s.usage.unwrap_or_default();
        assert_eq!((usage.cpu_seconds, usage.memory_bytes), (1.25, 4096));
        assert!(usage.sampled_at.is_some());
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status),
            ("LimitsEnforced", ConditionStatus::False)
        );
        assert!(c
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("read-only"));
    }
}

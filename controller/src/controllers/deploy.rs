//! Rolling upgrades of an App: when the task template changes (a new version hash),
//! old-version tasks are replaced by new ones while
//! - healthy-and-ready instances never drop below ⌈minimumHealthCapacity × instances⌉
//!   (old tasks are killed only as new ones become healthy and ready), and
//! - tasks never exceed ⌊(1 + maximumOverCapacity) × instances⌋.
//!
//! Every distinct template is kept in `status.history` (10 at most) so a rollout can be
//! undone. A rollout that makes no progress (no new task becoming healthy and ready)
//! within `progressDeadlineSeconds` fails: with `autoRollback` the controller restores
//! the previous revision's template in the App's spec — one store update that also
//! records the rollback in the history — and the old version comes back.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use drover_api::kinds::app::{
    App, AppTemplate, DeploymentPhase, DeploymentStatus, KillSelection, Revision,
    RESTARTED_AT_ANNOTATION,
};
use drover_api::kinds::task::{Task, TaskPhase};
use drover_api::meta::{time_from_chrono, time_to_chrono, Condition, ConditionStatus};
use drover_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::apiserver::objects::to_stored;

/// Revisions kept in `status.history`.
pub const HISTORY_LIMIT: usize = 10;

/// The task template of `app` as it stands in its spec.
pub fn template_of(app: &App) -> AppTemplate {
    let s = &app.spec;
    AppTemplate {
        container: s.container.clone(),
        resources: s.resources.clone(),
        ports: s.ports.clone(),
        health_checks: s.health_checks.clone(),
        readiness_checks: s.readiness_checks.clone(),
        volumes: s.volumes.clone(),
        restarted_at: app
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
            .cloned(),
    }
}

/// A short hash of the task template: tasks of another version get replaced. The same
/// hash as before `restartedAt` existed for Apps that were never restarted.
pub fn version_of(t: &AppTemplate) -> String {
    let mut template = json!({
        "container": t.container,
        "resources": t.resources,
        "ports": t.ports,
        "healthChecks": t.health_checks,
        "readinessChecks": t.readiness_checks,
        "volumes": t.volumes,
    });
    if let Some(r) = &t.restarted_at {
        template["restartedAt"] = json!(r);
    }
    format!(
        "{:016x}",
        crate::fingerprint::fnv1a64(template.to_string().as_bytes())
    )
}

/// A task that counts towards capacity: Running, passing its health checks if it has
/// any, and ready if it has readiness checks.
pub fn available(t: &Task) -> bool {
    let Some(s) = t.status.as_ref() else {
        return false;
    };
    s.phase == TaskPhase::Running
        && (if t.spec.health_checks.is_empty() {
            s.healthy != Some(false)
        } else {
            s.healthy == Some(true)
        })
        && (t.spec.readiness_checks.is_empty() || s.ready == Some(true))
}

/// Running, failing its health checks, but below the failure count at which the agent
/// kills it (`maxConsecutiveFailures`, 3 by default; 0 = never killed, so never "below").
fn missed_a_check(t: &Task) -> bool {
    let Some(s) = t.status.as_ref() else {
        return false;
    };
    let failures = s.consecutive_health_failures.unwrap_or(0);
    s.phase == TaskPhase::Running
        && s.healthy == Some(false)
        && failures > 0
        && t.spec.health_checks.iter().any(|c| {
            let max = c.max_consecutive_failures.unwrap_or(3);
            max > 0 && failures < max
        })
}

/// `history` with `version` as its newest entry: unchanged if it already is; otherwise
/// the template is appended under the next revision number (moved there if it was
/// seen before), and the oldest entries dropped beyond [`HISTORY_LIMIT`].
pub fn record(
    history: &[Revision],
    version: &str,
    template: &AppTemplate,
    cause: &str,
    now: DateTime<Utc>,
) -> Vec<Revision> {
    if history.last().is_some_and(|r| r.version == version) {
        return history.to_vec();
    }
    let next = history.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let mut out: Vec<Revision> = history
        .iter()
        .filter(|r| r.version != version)
        .cloned()
        .collect();
    out.push(Revision {
        revision: next,
        version: version.to_string(),
        time: Some(time_from_chrono(now)),
        cause: Some(cause.to_string()),
        template: template.clone(),
    });
    let excess = out.len().saturating_sub(HISTORY_LIMIT);
    out.drain(..excess);
    out
}

/// Why `template` (of `version`) is rolled out, for the history: a revision seen
/// before is a rollback (`drover rollout undo`), a change of `restartedAt` alone a
/// restart, anything else an update.
pub fn cause(history: &[Revision], version: &str, template: &AppTemplate) -> String {
    if let Some(old) = history.iter().find(|r| r.version == version) {
        return format!("rollback to revision {}", old.revision);
    }
    match history.last() {
        Some(last)
            if last.template.restarted_at != template.restarted_at
                && AppTemplate {
                    restarted_at: None,
                    ..last.template.clone()
                } == AppTemplate {
                    restarted_at: None,
                    ..template.clone()
                } =>
        {
            "restart".to_string()
        }
        _ => "update".to_string(),
    }
}

/// What one reconcile does about versions.
#[derive(Debug, Default)]
pub struct Step {
    /// Tasks to kill now (old-version ones the capacity allows, extra new ones).
    pub kill: Vec<Arc<Task>>,
    /// The tasks that stay.
    pub keep: Vec<Arc<Task>>,
    /// New-version tasks to create now.
    pub create: usize,
    /// The rollout's status after this step.
    pub deployment: DeploymentStatus,
    /// The progress deadline just passed.
    pub deadline_exceeded: bool,
}

/// The healthy-and-ready floor and the task ceiling during an upgrade of `desired`.
pub fn bounds(app: &App, desired: usize) -> (usize, usize) {
    let u = &app.spec.upgrade_strategy;
    let min = u.minimum_health_capacity.unwrap_or(1.0).clamp(0.0, 1.0);
    let over = u.maximum_over_capacity.unwrap_or(1.0).clamp(0.0, 1.0);
    let floor = (min * desired as f64 - 1e-9).ceil().max(0.0) as usize;
    let mut ceiling = ((1.0 + over) * desired as f64 + 1e-9).floor() as usize;
    ceiling = ceiling.max(desired);
    // Neither a task to spare nor room for one more: allow one extra, or nothing moves.
    if ceiling == desired && floor >= desired && desired > 0 {
        ceiling = desired + 1;
    }
    (floor.min(desired), ceiling)
}

fn created(t: &Task) -> DateTime<Utc> {
    t.metadata
        .creation_timestamp
        .as_ref()
        .map(time_to_chrono)
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// Orders tasks so that the ones to kill first come first: unavailable before
/// available, then by the App's kill selection.
fn kill_order(app: &App, tasks: &mut [Arc<Task>]) {
    let oldest_first = matches!(app.spec.kill_selection, Some(KillSelection::OldestFirst));
    tasks.sort_by(|a, b| {
        available(a).cmp(&available(b)).then_with(|| {
            if oldest_first {
                created(a).cmp(&created(b))
            } else {
                created(b).cmp(&created(a))
            }
        })
    });
}

/// Plans one step of the rollout of `version` (revision `revision`) over the `active`
/// tasks of `app`.
pub fn step(
    app: &App,
    active: Vec<Arc<Task>>,
    desired: usize,
    version: &str,
    revision: i64,
    now: DateTime<Utc>,
) -> Step {
    let (mut current, mut old): (Vec<Arc<Task>>, Vec<Arc<Task>>) = active
        .into_iter()
        .partition(|t| t.spec.version.as_deref() == Some(version));
    let mut kill = Vec::new();
    // More new-version tasks than wanted (a scale down): kill selection order.
    if current.len() > desired {
        kill_order(app, &mut current);
        kill.extend(current.drain(..current.len() - desired));
    }
    let mut create = desired - current.len();
    if !old.is_empty() {
        let (floor, ceiling) = bounds(app, desired);
        let mut up = current.iter().filter(|t| available(t)).count()
            + old.iter().filter(|t| available(t)).count();
        kill_order(app, &mut old);
        let mut kept = Vec::new();
        for t in old.drain(..) {
            if !available(&t) {
                // A running task that just missed a check may pass the next one; while
                // capacity is at or below the floor it stays (the agent kills it if it
                // reaches its failure limit), so a blip never costs an instance.
                if up <= floor && missed_a_check(&t) {
                    kept.push(t);
                } else {
                    kill.push(t);
                }
            } else if up > floor {
                up -= 1;
                kill.push(t);
            } else {
                kept.push(t);
            }
        }
        old = kept;
        let total = current.len() + old.len();
        create = create.min(ceiling.saturating_sub(total));
    }
    let updated = current.iter().filter(|t| available(t)).count() as i32;
    let previous = app.status.as_ref().and_then(|s| s.deployment.clone());
    let mut d = match previous {
        Some(d) if d.version == version => d,
        _ => DeploymentStatus {
            revision,
            version: version.to_string(),
            phase: DeploymentPhase::Progressing,
            updated: 0,
            total: desired as i32,
            message: None,
            started: Some(time_from_chrono(now)),
            last_progress: Some(time_from_chrono(now)),
        },
    };
    if updated > d.updated {
        d.last_progress = Some(time_from_chrono(now));
    }
    d.updated = updated;
    d.total = desired as i32;
    d.revision = revision;
    let mut deadline_exceeded = false;
    let done = old.is_empty() && updated as usize >= desired;
    match d.phase {
        DeploymentPhase::Progressing if done => {
            d.phase = DeploymentPhase::Complete;
            d.message = Some(format!(
                "revision {revision} complete: {updated}/{desired} instances healthy"
            ));
        }
        DeploymentPhase::Progressing => {
            let deadline = app
                .spec
                .upgrade_strategy
                .progress_deadline_seconds
                .unwrap_or(600);
            let since = d.last_progress.as_ref().map(time_to_chrono).unwrap_or(now);
            if now - since > chrono::Duration::seconds(deadline) {
                deadline_exceeded = true;
                d.phase = DeploymentPhase::Failed;
                d.message = Some(format!(
                    "revision {revision} made no progress for {deadline} s: {updated}/{desired} updated instances healthy"
                ));
            } else {
                d.message = Some(format!(
                    "{updated} of {desired} updated instances are healthy"
                ));
            }
        }
        DeploymentPhase::Complete | DeploymentPhase::Failed | DeploymentPhase::RolledBack => {}
    }
    let mut keep = current;
    keep.extend(old);
    Step {
        kill,
        keep,
        create,
        deployment: d,
        deadline_exceeded,
    }
}

/// The `Progressing` condition that says where the rollout `d` stands.
pub fn progressing_condition(d: &DeploymentStatus, generation: Option<i64>) -> Condition {
    let (ok, reason) = match d.phase {
        DeploymentPhase::Progressing => (true, "NewVersionProgressing"),
        DeploymentPhase::Complete => (true, "Complete"),
        DeploymentPhase::Failed => (false, "ProgressDeadlineExceeded"),
        DeploymentPhase::RolledBack => (false, "RolledBack"),
    };
    Condition {
        type_: "Progressing".into(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: Some(reason.into()),
        message: d.message.clone(),
        last_transition_time: Some(time_from_chrono(Utc::now())),
        observed_generation: generation,
    }
}

/// The revision to roll back to from `version`: the newest other one.
pub fn previous_revision<'a>(history: &'a [Revision], version: &str) -> Option<&'a Revision> {
    history.iter().rev().find(|r| r.version != version)
}

/// Puts `template` into the spec (and annotations) of the App object `obj`.
pub fn restore_template(obj: &mut Value, template: &AppTemplate) {
    let t = serde_json::to_value(template).unwrap_or(Value::Null);
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    for field in [
        "container",
        "resources",
        "ports",
        "healthChecks",
        "readinessChecks",
        "volumes",
    ] {
        match t.get(field) {
            Some(v) if !v.is_null() => obj["spec"][field] = v.clone(),
            _ => {
                if let Some(spec) = obj["spec"].as_object_mut() {
                    spec.remove(field);
                }
            }
        }
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match &template.restarted_at {
        Some(r) => {
            if !obj["metadata"]["annotations"].is_object() {
                obj["metadata"]["annotations"] = json!({});
            }
            obj["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] = json!(r);
        }
        None => {
            if let Some(a) = obj["metadata"]["annotations"].as_object_mut() {
                a.remove(RESTARTED_AT_ANNOTATION);
            }
        }
    }
}

/// Rolls the App at `key` back from the failed revision `failed` to `to`: one update
/// (guarded by `mod_revision`) that restores the template in the spec, bumps the
/// generation, and records the rollback in `status.history` and `status.deployment`.
pub async fn roll_back(
    store: &Arc<dyn Store>,
    key: &str,
    failed: &DeploymentStatus,
    history: &[Revision],
    to: &Revision,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let Some(kv) = store.get(key).await? else {
        return Err(StoreError::NotFound { key: key.into() });
    };
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    })?;
    restore_template(&mut obj, &to.template);
    let generation = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    obj["metadata"]["generation"] = json!(generation + 1);
    let cause = format!(
        "rollback from revision {} (progress deadline exceeded)",
        failed.revision
    );
    let history = record(history, &to.version, &to.template, &cause, now);
    let revision = history.last().map(|r| r.revision).unwrap_or(to.revision);
    let message = format!(
        "revision {} made no progress within its deadline; rolled back to revision {} (now revision {revision})",
        failed.revision, to.revision
    );
    let deployment = DeploymentStatus {
        revision,
        version: to.version.clone(),
        phase: DeploymentPhase::RolledBack,
        updated: 0,
        total: failed.total,
        message: Some(message.clone()),
        started: Some(time_from_chrono(now)),
        last_progress: Some(time_from_chrono(now)),
    };
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    let status = &mut obj["status"];
    status["history"] = serde_json::to_value(&history).unwrap_or(Value::Null);
    status["deployment"] = serde_json::to_value(&deployment).unwrap_or(Value::Null);
    if let Some(s) = status.as_object_mut() {
        s.remove("backoff");
    }
    let mut conditions: Vec<Condition> = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    drover_api::meta::set_condition(
        &mut conditions,
        progressing_condition(&deployment, Some(generation + 1)),
    );
    status["conditions"] = serde_json::to_value(&conditions).unwrap_or(Value::Null);
    store
        .update(key, to_stored(&obj), kv.mod_revision, 0)
        .await
        .map(|_| message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::kinds::app::AppSpec;
    use drover_api::kinds::task::{TaskSpec, TaskStatus};

    fn app(instances: i32, min: f64, over: f64) -> App {
        let mut a = App::new("default", "web", AppSpec::default());
        a.spec.instances = Some(instances);
        a.spec.upgrade_strategy.minimum_health_capacity = Some(min);
        a.spec.upgrade_strategy.maximum_over_capacity = Some(over);
        a
    }

    fn task(name: &str, version: &str, up: bool) -> Arc<Task> {
        Arc::new(Task {
            metadata: drover_api::meta::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: TaskSpec {
                version: Some(version.into()),
                ..Default::default()
            },
            status: Some(TaskStatus {
                phase: if up {
                    TaskPhase::Running
                } else {
                    TaskPhase::Starting
                },
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn bounds_follow_the_strategy() {
        assert_eq!(bounds(&app(3, 0.5, 0.0), 3), (2, 3));
        assert_eq!(bounds(&app(3, 1.0, 1.0), 3), (3, 6));
        assert_eq!(
            bounds(&app(3, 1.0, 0.0), 3),
            (3, 4),
            "one extra so it moves"
        );
        assert_eq!(bounds(&app(5, 0.0, 0.5), 5), (0, 7));
    }

    #[test]
    fn old_tasks_go_only_as_far_as_the_floor_allows() {
        let a = app(3, 0.5, 0.0);
        let tasks = vec![
            task("a", "v1", true),
            task("b", "v1", true),
            task("c", "v1", true),
        ];
        let s = step(&a, tasks, 3, "v2", 2, Utc::now());
        assert_eq!(s.kill.len(), 1, "3 up, floor 2: one old task goes");
        assert_eq!(s.create, 1, "ceiling 3 with 2 left: one new task");
        // The new one is not healthy yet: nothing more moves.
        let mut tasks = s.keep.clone();
        tasks.push(task("d", "v2", false));
        let s = step(&a, tasks, 3, "v2", 2, Utc::now());
        assert!(s.kill.is_empty());
        assert_eq!(s.create, 0);
        // It is: the next old one goes, another new one comes.
        let mut tasks: Vec<_> = s
            .keep
            .iter()
            .filter(|t| t.spec.version.as_deref() == Some("v1"))
            .cloned()
            .collect();
        tasks.push(task("d", "v2", true));
        let s = step(&a, tasks, 3, "v2", 2, Utc::now());
        assert_eq!((s.kill.len(), s.create), (1, 1));
    }

    #[test]
    fn an_old_task_missing_one_check_is_kept_at_the_floor() {
        let a = app(3, 0.5, 0.0);
        let blip = |name: &str, failures: i32| {
            let mut t = (*task(name, "v1", true)).clone();
            t.spec.health_checks = vec![drover_api::health::HealthCheck::default()];
            let s = t.status.as_mut().expect("status");
            s.healthy = Some(false);
            s.consecutive_health_failures = Some(failures);
            Arc::new(t)
        };
        let healthy = |name: &str| {
            let mut t = (*task(name, "v1", true)).clone();
            t.spec.health_checks = vec![drover_api::health::HealthCheck::default()];
            t.status.as_mut().expect("status").healthy = Some(true);
            Arc::new(t)
        };
        // 1 up, floor 2: the one that missed a check stays.
        let s = step(&a, vec![healthy("a"), blip("b", 1)], 3, "v2", 2, Utc::now());
        assert!(s.kill.is_empty(), "killed {:?}", s.kill);
        // At its failure limit it goes.
        let s = step(&a, vec![healthy("a"), blip("b", 3)], 3, "v2", 2, Utc::now());
        assert_eq!(s.kill.len(), 1);
        // Above the floor it goes as well.
        let s = step(
            &a,
            vec![healthy("a"), healthy("c"), healthy("d"), blip("b", 1)],
            3,
            "v2",
            2,
            Utc::now(),
        );
        assert!(s
            .kill
            .iter()
            .any(|t| t.metadata.name.as_deref() == Some("b")));
    }

    #[test]
    fn surge_first_then_kill_as_new_ones_come_up() {
        let a = app(2, 1.0, 1.0);
        let s = step(
            &a,
            vec![task("a", "v1", true), task("b", "v1", true)],
            2,
            "v2",
            2,
            Utc::now(),
        );
        assert_eq!((s.kill.len(), s.create), (0, 2));
        let tasks = vec![
            task("a", "v1", true),
            task("b", "v1", true),
            task("c", "v2", true),
            task("d", "v2", false),
        ];
        let s = step(&a, tasks, 2, "v2", 2, Utc::now());
        assert_eq!((s.kill.len(), s.create), (1, 0));
    }

    #[test]
    fn no_progress_past_the_deadline_fails_the_rollout() {
        let mut a = app(1, 1.0, 1.0);
        a.spec.upgrade_strategy.progress_deadline_seconds = Some(10);
        let t0 = Utc::now();
        let s = step(&a, vec![task("a", "v1", true)], 1, "v2", 2, t0);
        assert!(!s.deadline_exceeded);
        a.status = Some(drover_api::kinds::app::AppStatus {
            deployment: Some(s.deployment),
            ..Default::default()
        });
        let later = t0 + chrono::Duration::seconds(11);
        let s = step(
            &a,
            vec![task("a", "v1", true), task("b", "v2", false)],
            1,
            "v2",
            2,
            later,
        );
        assert!(s.deadline_exceeded);
        assert_eq!(s.deployment.phase, DeploymentPhase::Failed);
    }

    #[test]
    fn history_moves_a_template_seen_again_to_the_end_and_keeps_ten() {
        let t = AppTemplate::default();
        let now = Utc::now();
        let mut h = Vec::new();
        for i in 0..12 {
            h = record(&h, &format!("v{i}"), &t, "update", now);
        }
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h[0].version, "v2");
        let h2 = record(&h, "v5", &t, "undo", now);
        assert_eq!(
            h2.last().map(|r| (r.revision, r.version.as_str())),
            Some((13, "v5"))
        );
        assert_eq!(h2.len(), HISTORY_LIMIT);
        assert_eq!(h2.iter().filter(|r| r.version == "v5").count(), 1);
        assert_eq!(record(&h2, "v5", &t, "x", now), h2);
    }

    #[test]
    fn a_new_task_counts_only_once_healthy_and_ready() {
        let checked = |healthy: Option<bool>, ready: Option<bool>| {
            let mut t = (*task("n", "v2", true)).clone();
            t.spec.health_checks = vec![Default::default()];
            t.spec.readiness_checks = vec![Default::default()];
            if let Some(s) = t.status.as_mut() {
                s.healthy = healthy;
                s.ready = ready;
            }
            Arc::new(t)
        };
        assert!(!available(&checked(Some(true), Some(false))));
        assert!(!available(&checked(None, Some(true))));
        assert!(available(&checked(Some(true), Some(true))));
        // Running, healthy, not ready: the old task stays.
        let a = app(1, 1.0, 1.0);
        let tasks = vec![task("a", "v1", true), checked(Some(true), Some(false))];
        let s = step(&a, tasks, 1, "v2", 2, Utc::now());
        assert!(s.kill.is_empty(), "{:?}", s.kill);
        let tasks = vec![task("a", "v1", true), checked(Some(true), Some(true))];
        let s = step(&a, tasks, 1, "v2", 2, Utc::now());
        assert_eq!(s.kill.len(), 1);
        assert_eq!(s.deployment.phase, DeploymentPhase::Complete);
    }

    #[test]
    fn causes_say_update_restart_or_rollback() {
        let now = Utc::now();
        let t1 = AppTemplate::default();
        let h = record(&[], "v1", &t1, "update", now);
        let mut t2 = t1.clone();
        t2.restarted_at = Some("now".into());
        assert_eq!(cause(&h, "v2", &t2), "restart");
        let mut t3 = t1.clone();
        t3.container.cmd = Some("sleep 2".into());
        assert_eq!(cause(&h, "v3", &t3), "update");
        let h = record(&h, "v3", &t3, "update", now);
        assert_eq!(cause(&h, "v1", &t1), "rollback to revision 1");
    }

    #[test]
    fn restoring_a_template_gives_back_its_version() {
        let mut a = app(1, 1.0, 1.0);
        a.spec.container.cmd = Some("sleep 1".into());
        let t1 = template_of(&a);
        let mut obj = serde_json::to_value(&a).unwrap_or_default();
        obj["spec"]["container"]["cmd"] = json!("sleep 2");
        obj["metadata"]["annotations"] = json!({RESTARTED_AT_ANNOTATION: "now"});
        restore_template(&mut obj, &t1);
        let back: App = serde_json::from_value(obj).unwrap_or_default();
        assert_eq!(version_of(&template_of(&back)), version_of(&t1));
    }
}

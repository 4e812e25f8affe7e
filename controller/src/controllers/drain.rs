//! Draining: `drover node drain` marks the Tasks of a node with the annotation
//! `drover.dev/drain=true`; the apps controller then treats them as instances to move.
//! A drained task no longer counts towards `spec.instances` (so its replacement is
//! placed elsewhere at once — the node is cordoned), and it is killed only when the
//! App keeps `minimumHealthCapacity × instances` healthy tasks without it — the same
//! rule as a rolling upgrade, so a drain never takes an App below what its upgrade
//! strategy allows.
//!
//! Hook in `apps::reconcile` (a few lines, right after ended tasks are removed from
//! `active`): `let drain = drain::plan(&app, &mut active);` then delete `drain.kill`,
//! and count `drain.draining` in the status. Whoever reshapes reconcile (rolling
//! upgrades): keep the hook, or treat drained tasks like outdated ones.

use std::sync::Arc;

use drover_api::kinds::app::App;
use drover_api::kinds::task::{Task, TaskPhase};
use drover_api::{find_kind, DroverKind};
use drover_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::apiserver::objects::{key, to_stored};

/// The annotation that marks a task for replacement by a drain.
pub const DRAIN_ANNOTATION: &str = "drover.dev/drain";

/// Whether `t` is marked for replacement.
pub fn is_drained(t: &Task) -> bool {
    t.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRAIN_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Marks `t` for replacement, as `drover node drain` does through the API (the
/// maintenance windows of the nodes controller use this): the apps controller then
/// moves it within the App's minimumHealthCapacity. Written guarded by the stored
/// revision; false when the task is gone, already marked, or changed meanwhile (the
/// caller looks again on its next pass).
pub async fn mark(store: &Arc<dyn Store>, t: &Task) -> Result<bool, StoreError> {
    let Some(info) = find_kind(Task::KIND) else {
        return Ok(false);
    };
    let name = t.metadata.name.as_deref().unwrap_or_default();
    let k = key(info, t.metadata.namespace.as_deref(), name);
    let Some(kv) = store.get(&k).await? else {
        return Ok(false);
    };
    let Ok(mut obj) = serde_json::from_slice::<Value>(&kv.value) else {
        return Ok(false);
    };
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if annotations.get(DRAIN_ANNOTATION).and_then(Value::as_str) == Some("true") {
        return Ok(false);
    }
    annotations[DRAIN_ANNOTATION] = json!("true");
    match store.update(&k, to_stored(&obj), kv.mod_revision, 0).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a reconcile does about drained tasks.
#[derive(Debug, Default)]
pub struct DrainPlan {
    /// Drained tasks to kill now: the App stays at its minimum health without them.
    pub kill: Vec<Arc<Task>>,
    /// Drained tasks that keep running until their replacements are healthy.
    pub draining: Vec<Arc<Task>>,
}

/// A task that counts as healthy: Running and passing its health checks (Running alone
/// when it has none).
fn healthy(t: &Task) -> bool {
    let Some(s) = t.status.as_ref() else {
        return false;
    };
    s.phase == TaskPhase::Running
        && if t.spec.health_checks.is_empty() {
            s.healthy != Some(false)
        } else {
            s.healthy == Some(true)
        }
}

/// The healthy tasks an App must keep: ⌈minimumHealthCapacity × instances⌉.
pub fn minimum_healthy(app: &App) -> usize {
    let instances = app.spec.instances.unwrap_or(1).max(0) as f64;
    let capacity = app
        .spec
        .upgrade_strategy
        .minimum_health_capacity
        .unwrap_or(1.0)
        .clamp(0.0, 1.0);
    (capacity * instances - 1e-9).ceil().max(0.0) as usize
}

/// Takes the drained tasks out of `active` (they no longer count as instances) and
/// says which of them may be killed now: unhealthy ones always, healthy ones while
/// the App keeps its minimum healthy count without them.
pub fn plan(app: &App, active: &mut Vec<Arc<Task>>) -> DrainPlan {
    let (mut drained, kept): (Vec<Arc<Task>>, Vec<Arc<Task>>) =
        active.drain(..).partition(|t| is_drained(t));
    *active = kept;
    if drained.is_empty() {
        return DrainPlan::default();
    }
    let minimum = minimum_healthy(app);
    let mut healthy_now = active.iter().filter(|t| healthy(t)).count()
        + drained.iter().filter(|t| healthy(t)).count();
    // Unhealthy first: killing them costs no health.
    drained.sort_by_key(|t| healthy(t));
    let mut out = DrainPlan::default();
    for t in drained {
        if !healthy(&t) {
            out.kill.push(t);
        } else if healthy_now > minimum {
            healthy_now -= 1;
            out.kill.push(t);
        } else {
            out.draining.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::kinds::app::{AppSpec, UpgradeStrategy};
    use drover_api::kinds::task::{TaskSpec, TaskStatus};

    fn app(instances: i32, capacity: f64) -> App {
        App::new(
            "default",
            "web",
            AppSpec {
                instances: Some(instances),
                upgrade_strategy: UpgradeStrategy {
                    minimum_health_capacity: Some(capacity),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
    }

    fn task(name: &str, running: bool, drained: bool) -> Arc<Task> {
        let mut t = Task::new("default", name, TaskSpec::default());
        t.status = Some(TaskStatus {
            phase: if running {
                TaskPhase::Running
            } else {
                TaskPhase::Starting
            },
            ..Default::default()
        });
        if drained {
            t.metadata.annotations =
                Some([(DRAIN_ANNOTATION.to_string(), "true".to_string())].into());
        }
        Arc::new(t)
    }

    fn names(v: &[Arc<Task>]) -> Vec<String> {
        v.iter()
            .map(|t| t.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn full_capacity_waits_for_a_healthy_replacement() {
        let a = app(2, 1.0);
        let mut active = vec![task("a", true, false), task("d", true, true)];
        let p = plan(&a, &mut active);
        assert_eq!(names(&active), ["a"]);
        assert!(p.kill.is_empty());
        assert_eq!(names(&p.draining), ["d"]);
        // The replacement is starting: still not.
        let mut active = vec![
            task("a", true, false),
            task("r", false, false),
            task("d", true, true),
        ];
        assert!(plan(&a, &mut active).kill.is_empty());
        // Healthy now: the drained one goes.
        let mut active = vec![
            task("a", true, false),
            task("r", true, false),
            task("d", true, true),
        ];
        let p = plan(&a, &mut active);
        assert_eq!(names(&p.kill), ["d"]);
        assert_eq!(names(&active), ["a", "r"]);
    }

    #[test]
    fn half_capacity_kills_what_it_can_spare() {
        let a = app(4, 0.5);
        let mut active = vec![
            task("a", true, false),
            task("b", true, false),
            task("c", true, true),
            task("d", true, true),
        ];
        let p = plan(&a, &mut active);
        assert_eq!(p.kill.len(), 2, "4 healthy, 2 needed");
        let a = app(4, 0.75);
        let mut active = vec![
            task("a", true, false),
            task("b", true, false),
            task("c", true, true),
            task("d", true, true),
        ];
        let p = plan(&a, &mut active);
        assert_eq!(p.kill.len(), 1, "4 healthy, 3 needed");
        assert_eq!(p.draining.len(), 1);
    }

    #[test]
    fn unhealthy_drained_tasks_go_at_once() {
        let a = app(1, 1.0);
        let mut active = vec![task("d", false, true)];
        let p = plan(&a, &mut active);
        assert_eq!(names(&p.kill), ["d"]);
        assert!(active.is_empty());
        assert_eq!(minimum_healthy(&app(3, 0.5)), 2);
        assert_eq!(minimum_healthy(&app(3, 0.0)), 0);
    }
}

//! Quota and fair share for the built-in App scheduler.
//!
//! What level 1 (`allocator::level1`) is fed from the controllers' caches — each role's
//! usage (the bound, active Tasks' resources by `spec.role`), each App's outstanding
//! demand, the roles' Quota policies — and the quota controller, which keeps every
//! Quota's `status.used` current and says in a `LimitReached` condition when its limit
//! holds demand back ("role `b` at its quota limit memMiB 2048: 4 instances of App
//! default/b wait").

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use drover_api::kinds::app::App;
use drover_api::kinds::quota::Quota;
use drover_api::kinds::task::{OwnerKind, Task};
use drover_api::meta::{set_condition, time_from_chrono, Condition, ConditionStatus};
use drover_api::{find_kind, DroverKind};
use drover_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::allocator::inventory::Amounts;
use crate::allocator::level1::{over_limit, Demand, RolePolicy};
use crate::controllers::apps::{amounts, is_active};
use crate::controllers::writes::{key_of, write_status};
use crate::runtime::reflector::Reader;
use crate::runtime::{Action, ObjectKey};

/// The role of an App or Task whose `spec.role` is unset (defaulting sets it too).
pub const DEFAULT_ROLE: &str = "*";

/// How often a Quota's usage is refreshed (usage changes with every bound task; a
/// watch-triggered write per task would cost more than it tells).
const REFRESH: Duration = Duration::from_secs(2);

/// What the bound, active tasks hold: per role, and how many active tasks each App has.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub by_role: BTreeMap<String, Amounts>,
    pub active: HashMap<ObjectKey, usize>,
}

impl Usage {
    /// One pass over the Task cache.
    pub fn of(tasks: &[Arc<Task>]) -> Usage {
        let mut u = Usage::default();
        for t in tasks.iter().filter(|t| is_active(t)) {
            if let Some(owner) = t.spec.owner.as_ref().filter(|o| o.kind == OwnerKind::App) {
                *u.active
                    .entry(ObjectKey {
                        namespace: t.metadata.namespace.clone(),
                        name: owner.name.clone(),
                    })
                    .or_default() += 1;
            }
            if t.spec.node_name.is_some() {
                let role = t.spec.role.as_deref().unwrap_or(DEFAULT_ROLE);
                u.by_role
                    .entry(role.to_string())
                    .or_default()
                    .add(&amounts(&t.spec.resources));
            }
        }
        u
    }
}

/// A placement level 1 granted and committed that the Task cache may not show yet.
#[derive(Clone, Debug)]
pub struct Placed {
    pub task: ObjectKey,
    pub app: ObjectKey,
    pub node: String,
    pub role: String,
    pub amounts: Amounts,
    /// Its host ports, so no one else takes them meanwhile.
    pub host_ports: Vec<u16>,
    pub at: Instant,
}

/// How long a placement of ours may take to reach the Task cache.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);

/// Placements of Apps go one at a
/// time, each seeing the ones before it even while the Task cache lags behind the
/// store: two Apps planning at once on the same cache would both take the same free
/// resources (and overcommit a node).
#[derive(Default)]
pub struct InFlight {
    placed: tokio::sync::Mutex<Vec<Placed>>,
}

impl InFlight {
    /// Waits for the turn to place; the guard holds what is in flight, without the
    /// ones the cache shows by now.
    pub async fn lock(&self, tasks: &Reader<Task>) -> tokio::sync::MutexGuard<'_, Vec<Placed>> {
        let mut placed = self.placed.lock().await;
        placed.retain(|p| p.at.elapsed() < IN_FLIGHT_TTL && tasks.get(&p.task).is_none());
        placed
    }
}

impl Usage {
    /// Counts placements in flight as bound.
    pub fn add_in_flight(&mut self, placed: &[Placed]) {
        for p in placed {
            *self.active.entry(p.app.clone()).or_default() += 1;
            self.by_role
                .entry(p.role.clone())
                .or_default()
                .add(&p.amounts);
        }
    }
}

pub fn role_of(app: &App) -> &str {
    app.spec.role.as_deref().unwrap_or(DEFAULT_ROLE)
}

/// The roles' policies from every Quota (several Quotas of one role: see
/// [`RolePolicy::merge`]).
pub fn policies(quotas: &[Arc<Quota>]) -> BTreeMap<String, RolePolicy> {
    let mut out: BTreeMap<String, RolePolicy> = BTreeMap::new();
    for q in quotas
        .iter()
        .filter(|q| q.metadata.deletion_timestamp.is_none())
    {
        out.entry(q.spec.role.clone()).or_default().merge(
            q.spec.weight,
            &q.spec.guarantee,
            &q.spec.limit,
        );
    }
    out
}

/// The outstanding demand of every App (instances wanted − active tasks), in a stable
/// order (namespace, name); `own` overrides the count of the App being reconciled,
/// which knows its demand exactly (rollout surge, tasks just created). An App that
/// cannot be placed at all (a constraint nothing satisfies) still counts: its share is
/// kept, as Mesos keeps offering to a framework that declines.
pub fn demands(
    apps: &[Arc<App>],
    usage: &Usage,
    own: Option<(&ObjectKey, usize)>,
) -> Vec<Demand<ObjectKey>> {
    let mut out: Vec<Demand<ObjectKey>> = apps
        .iter()
        .filter(|a| a.metadata.deletion_timestamp.is_none())
        .filter_map(|a| {
            let key = ObjectKey::of(&**a);
            let missing = match own {
                Some((k, n)) if *k == key => n,
                _ => {
                    let desired = a.spec.instances.unwrap_or(1).max(0) as usize;
                    desired.saturating_sub(usage.active.get(&key).copied().unwrap_or(0))
                }
            };
            (missing > 0).then(|| Demand {
                role: role_of(a).to_string(),
                each: amounts(&a.spec.resources),
                missing,
                key,
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

pub struct QuotaContext {
    pub store: Arc<dyn Store>,
    pub tasks: Reader<Task>,
    pub apps: Reader<App>,
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the {0} kind is not registered")]
    Kind(&'static str),
}

/// Writes `status.used` and the `LimitReached` condition of one Quota, then looks again
/// in [`REFRESH`].
pub async fn reconcile(quota: Arc<Quota>, ctx: Arc<QuotaContext>) -> Result<Action, QuotaError> {
    if quota.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let info = find_kind(Quota::KIND).ok_or(QuotaError::Kind(Quota::KIND))?;
    let role = quota.spec.role.as_str();
    let usage = Usage::of(&ctx.tasks.list());
    let used = usage.by_role.get(role).copied().unwrap_or_default();
    let apps = ctx.apps.list();
    let held: Vec<(Demand<ObjectKey>, &'static str, String)> = demands(&apps, &usage, None)
        .into_iter()
        .filter(|d| d.role == role)
        .filter_map(|d| {
            over_limit(&quota.spec.limit, &used, &d.each).map(|(res, limit)| (d, res, limit))
        })
        .collect();
    let status = status_of(&quota, &used, &held);
    let revision = quota
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    match write_status(&ctx.store, &key_of(info, &*quota), revision, status).await {
        Ok(()) => Ok(Action::requeue(REFRESH)),
        Err(StoreError::NotFound { .. }) => Ok(Action::await_change()),
        // Our cache is behind the store: the watch brings the new version soon.
        Err(StoreError::Conflict { .. }) => Ok(Action::requeue(Duration::from_millis(200))),
        Err(e) => Err(e.into()),
    }
}

pub fn error_policy(_q: Arc<Quota>, _e: &QuotaError, _ctx: Arc<QuotaContext>) -> Action {
    Action::requeue(REFRESH)
}

/// The status: usage (cpus rounded to a thousandth, so float sums print cleanly) and
/// whether the limit holds demand back, naming the first dimension and the Apps.
fn status_of(
    quota: &Quota,
    used: &Amounts,
    held: &[(Demand<ObjectKey>, &'static str, String)],
) -> Value {
    let mut conditions = quota
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let role = &quota.spec.role;
    let (status, reason, message) = match held.first() {
        Some((_, resource, limit)) => {
            let waiting: usize = held.iter().map(|(d, _, _)| d.missing).sum();
            let apps: Vec<String> = held
                .iter()
                .map(|(d, _, _)| format!("App {}", d.key))
                .collect();
            (
                ConditionStatus::True,
                "DemandHeldBack",
                format!(
                    "role `{role}` at its quota limit {resource} {limit}: {waiting} instances of {} wait",
                    apps.join(", ")
                ),
            )
        }
        None => (
            ConditionStatus::False,
            "WithinLimit",
            format!("role `{role}` has no demand held back by this limit"),
        ),
    };
    set_condition(
        &mut conditions,
        Condition {
            type_: "LimitReached".into(),
            status,
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(time_from_chrono(Utc::now())),
            observed_generation: quota.metadata.generation,
        },
    );
    let cpus = (used.cpus * 1000.0).round() / 1000.0;
    json!({
        "observedGeneration": quota.metadata.generation,
        "used": {
            "cpus": cpus,
            "memMiB": used.mem_mib,
            "diskMiB": used.disk_mib,
            "gpus": used.gpus,
        },
        "conditions": conditions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::kinds::app::AppSpec;
    use drover_api::kinds::quota::QuotaSpec;
    use drover_api::kinds::task::{TaskOwner, TaskPhase, TaskSpec, TaskStatus};
    use drover_api::resources::Resources;

    fn res(cpus: f64, mem: i64) -> Resources {
        Resources {
            cpus: Some(cpus),
            mem_mib: Some(mem),
            disk_mib: Some(0),
            gpus: Some(0),
        }
    }

    fn app(name: &str, role: &str, instances: i32, cpus: f64, mem: i64) -> Arc<App> {
        let mut a = App::new("default", name, AppSpec::default());
        a.spec.role = Some(role.into());
        a.spec.instances = Some(instances);
        a.spec.resources = res(cpus, mem);
        Arc::new(a)
    }

    fn task(name: &str, app: &str, role: &str, cpus: f64, mem: i64, phase: TaskPhase) -> Arc<Task> {
        let mut t = Task::new("default", name, TaskSpec::default());
        t.spec.role = Some(role.into());
        t.spec.node_name = Some("n1".into());
        t.spec.resources = res(cpus, mem);
        t.spec.owner = Some(TaskOwner {
            kind: OwnerKind::App,
            name: app.into(),
            uid: None,
        });
        t.status = Some(TaskStatus {
            phase,
            ..Default::default()
        });
        Arc::new(t)
    }

    #[test]
    fn usage_counts_active_bound_tasks_by_role_and_demand_is_what_is_missing() {
        let tasks = vec![
            task("b-0", "b", "b", 0.25, 1024, TaskPhase::Running),
            task("b-1", "b", "b", 0.25, 1024, TaskPhase::Running),
            task("b-2", "b", "b", 0.25, 1024, TaskPhase::Failed),
            task("a-0", "a", "a", 1.0, 256, TaskPhase::Running),
        ];
        let usage = Usage::of(&tasks);
        assert_eq!(usage.by_role["b"].mem_mib, 2048);
        assert_eq!(usage.by_role["a"].cpus, 1.0);
        let apps = vec![app("b", "b", 5, 0.25, 1024), app("a", "a", 1, 1.0, 256)];
        let d = demands(&apps, &usage, None);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].key.name.as_str(), d[0].missing), ("b", 3));
        let own = ObjectKey::of(&*apps[1]);
        let d = demands(&apps, &usage, Some((&own, 2)));
        assert_eq!(d.iter().map(|d| d.missing).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn status_says_when_the_limit_holds_demand_back() {
        let mut q = Quota::new(
            "default",
            "b",
            QuotaSpec {
                role: "b".into(),
                limit: Resources {
                    mem_mib: Some(2048),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        q.metadata.generation = Some(1);
        let used = Amounts {
            cpus: 0.1 + 0.2,
            mem_mib: 2048,
            disk_mib: 0,
            gpus: 0,
        };
        let apps = vec![app("b", "b", 5, 0.25, 1024)];
        let usage = Usage::default();
        let held: Vec<_> = demands(&apps, &usage, None)
            .into_iter()
            .filter_map(|d| over_limit(&q.spec.limit, &used, &d.each).map(|(r, l)| (d, r, l)))
            .collect();
        let s = status_of(&q, &used, &held);
        assert_eq!(s["used"]["cpus"], json!(0.3));
        assert_eq!(s["used"]["memMiB"], json!(2048));
        let c = &s["conditions"][0];
        assert_eq!(c["status"], "True");
        assert_eq!(
            c["message"],
            "role `b` at its quota limit memMiB 2048: 5 instances of App default/b wait"
        );
        let s = status_of(&q, &used, &[]);
        assert_eq!(s["conditions"][0]["status"], "False");
    }
}

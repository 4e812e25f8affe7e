//! The apps controller: keeps `spec.instances` Tasks of each App bound to nodes.
//! Missing instances are placed through the allocator (Marathon constraints, resources,
//! ports) and committed in one store transaction; extra ones are removed in kill
//! selection order; finished, failed, killed and lost tasks are replaced after the
//! App's backoff. Status counts the tasks and says in words why an instance cannot be
//! placed ("0/3 nodes: 2 insufficient memMiB, 1 node unschedulable"), with an Event.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use drover_api::kinds::app::{App, DeploymentPhase};
use drover_api::kinds::node::Node;
use drover_api::kinds::task::{OwnerKind, Task, TaskPhase};
use drover_api::meta::{time_from_chrono, time_to_chrono, Condition, ConditionStatus};
use drover_api::{find_kind, KindInfo};
use drover_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::allocator::filter::NamedConstraint;
use crate::allocator::inventory::{Amounts, Inventory, NodeState};
use crate::allocator::level1::{self, Grant, Held};
use crate::controllers::deploy;
use crate::controllers::events::{record, Involved};
use crate::controllers::quota;
use crate::controllers::writes::{create_all, write_status};
use crate::runtime::reflector::Reader;
use crate::runtime::{Action, ObjectKey};

pub const APP_LABEL: &str = "drover.dev/app";

pub struct AppsContext {
    pub store: Arc<dyn Store>,
    pub tasks: Reader<Task>,
    pub nodes: Reader<Node>,
    /// Tasks this controller created or deleted that the cache may not show yet.
    pub expectations: Expectations,
    /// Constraint objects: namespace-wide rules added to the Apps they select.
    pub constraints: Reader<drover_api::kinds::constraint::Constraint>,
    /// The App controller's own cache: the demand of every App, for level 1's fair share.
    pub apps: Reader<App>,
    /// Quota objects: roles' weights, guarantees and limits.
    pub quotas: Reader<drover_api::kinds::quota::Quota>,
}

/// How long a write of ours may take to reach the Task cache before we stop assuming it.
const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// Task writes of this controller not yet seen in the Task cache (Kubernetes calls them
/// expectations). A reconcile that ran on a cache lagging behind its own last commit
/// would count deleted tasks as present (killing one too many during an upgrade) and
/// miss created ones (placing an instance twice).
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<(String, String), Pending>>,
    /// Level 1: placements of Apps sharing the cluster with other roles, one at a time.
    fair: quota::InFlight,
}

#[derive(Default)]
struct Pending {
    created: Vec<(Instant, Arc<Task>)>,
    deleted: HashMap<String, Instant>,
}

fn task_name(t: &Task) -> &str {
    t.metadata.name.as_deref().unwrap_or_default()
}

/// What a reconcile needs to know of a Task it just created (name, node, instance,
/// version), without decoding the whole object: at scale that would cost more than
/// placing it.
fn sketch(v: &Value) -> Arc<Task> {
    let str_at = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let mut t = Task::default();
    t.metadata.name = str_at("/metadata/name");
    t.metadata.namespace = str_at("/metadata/namespace");
    t.spec.node_name = str_at("/spec/nodeName");
    t.spec.version = str_at("/spec/version");
    t.spec.instance = v
        .pointer("/spec/instance")
        .and_then(Value::as_i64)
        .map(|i| i as i32);
    Arc::new(t)
}

impl Expectations {
    /// The App's tasks as the cache shows them, corrected by our writes in flight.
    fn view(&self, namespace: &str, app: &str, cached: Vec<Arc<Task>>) -> Vec<Arc<Task>> {
        let Ok(mut map) = self.pending.lock() else {
            return cached;
        };
        let key = (namespace.to_string(), app.to_string());
        let Some(p) = map.get_mut(&key) else {
            return cached;
        };
        let now = Instant::now();
        let names: HashSet<String> = cached.iter().map(|t| task_name(t).to_string()).collect();
        p.deleted
            .retain(|n, at| now.duration_since(*at) < EXPECTATION_TTL && names.contains(n));
        p.created.retain(|(at, t)| {
            now.duration_since(*at) < EXPECTATION_TTL && !names.contains(task_name(t))
        });
        let mut out: Vec<Arc<Task>> = cached
            .into_iter()
            .filter(|t| !p.deleted.contains_key(task_name(t)))
            .collect();
        out.extend(p.created.iter().map(|(_, t)| t.clone()));
        if p.created.is_empty() && p.deleted.is_empty() {
            map.remove(&key);
        }
        out
    }

    fn created(&self, namespace: &str, app: &str, tasks: Vec<Arc<Task>>) {
        if let Ok(mut map) = self.pending.lock() {
            let now = Instant::now();
            let p = map
                .entry((namespace.to_string(), app.to_string()))
                .or_default();
            p.created.extend(tasks.into_iter().map(|t| (now, t)));
        }
    }

    fn deleted(&self, namespace: &str, app: &str, task: &Task) {
        if let Ok(mut map) = self.pending.lock() {
            map.entry((namespace.to_string(), app.to_string()))
                .or_default()
                .deleted
                .insert(task_name(task).to_string(), Instant::now());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the {0} kind is not registered")]
    Kind(&'static str),
    #[error("constraint {index}: {message}")]
    Constraint { index: usize, message: String },
    #[error("{0}")]
    Constraints(String),
}

fn info(kind: &'static str) -> Result<&'static KindInfo, AppsError> {
    find_kind(kind).ok_or(AppsError::Kind(kind))
}

pub(crate) fn is_active(t: &Task) -> bool {
    let phase = t.status.as_ref().map(|s| s.phase).unwrap_or_default();
    !matches!(
        phase,
        TaskPhase::Finished | TaskPhase::Failed | TaskPhase::Killed | TaskPhase::Lost
    )
}

/// The tasks of `app` (same namespace, owner App of that name).
fn tasks_of(ctx: &AppsContext, namespace: &str, name: &str) -> Vec<Arc<Task>> {
    ctx.tasks
        .list()
        .into_iter()
        .filter(|t| {
            t.metadata.namespace.as_deref() == Some(namespace)
                && t.spec
                    .owner
                    .as_ref()
                    .is_some_and(|o| o.name == name && o.kind == OwnerKind::App)
        })
        .collect()
}

pub async fn reconcile(app: Arc<App>, ctx: Arc<AppsContext>) -> Result<Action, AppsError> {
    let namespace = app
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = app.metadata.name.clone().unwrap_or_default();
    if app.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // A cache behind the store (our own rollback or status write not seen yet) would
    // have us act on an old spec: wait for the watch to catch up.
    let app_key = crate::apiserver::objects::key(info("App")?, Some(&namespace), &name);
    let Some(stored) = ctx.store.get(&app_key).await? else {
        return Ok(Action::await_change());
    };
    let cached_revision = app
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    if cached_revision < stored.mod_revision {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let desired = app.spec.instances.unwrap_or(1).max(0) as usize;
    let tasks = ctx
        .expectations
        .view(&namespace, &name, tasks_of(&ctx, &namespace, &name));
    let task_info = info("Task")?;
    let (active, ended): (Vec<Arc<Task>>, Vec<Arc<Task>>) =
        tasks.into_iter().partition(|t| is_active(t));

    // Ended tasks make room for replacements; failures count towards the backoff.
    let failures = ended
        .iter()
        .filter(|t| {
            matches!(
                t.status.as_ref().map(|s| s.phase),
                Some(TaskPhase::Failed | TaskPhase::Finished | TaskPhase::Lost)
            )
        })
        .count() as i32;
    for t in &ended {
        delete_task(&ctx.store, task_info, t, "ended").await?;
        ctx.expectations.deleted(&namespace, &name, t);
    }
    let mut backoff = app.status.as_ref().and_then(|s| s.backoff.clone());
    let now = Utc::now();
    if failures > 0 {
        let b = &app.spec.backoff;
        let consecutive = backoff
            .as_ref()
            .map(|b| b.consecutive_failures)
            .unwrap_or(0)
            + failures;
        let delay = (b.seconds.unwrap_or(1.0) * b.factor.unwrap_or(1.15).powi(consecutive - 1))
            .min(b.max_launch_delay_seconds.unwrap_or(300) as f64);
        let next = now + chrono::Duration::milliseconds((delay * 1000.0) as i64);
        backoff = Some(drover_api::kinds::app::BackoffStatus {
            delay_seconds: delay,
            consecutive_failures: consecutive,
            next_launch_time: Some(time_from_chrono(next)),
        });
    }
    let wait = backoff
        .as_ref()
        .and_then(|b| b.next_launch_time.as_ref())
        .map(|t| time_to_chrono(t) - now)
        .filter(|d| *d > chrono::Duration::zero());
    // A healthy running instance resets the backoff.
    if active.iter().any(|t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.phase == TaskPhase::Running && s.healthy != Some(false))
    }) && failures == 0
    {
        backoff = None;
    }

    // Versions: the revision history, then one step of the rollout (scale down, or
    // old-version tasks replaced within the upgrade strategy), and its deadline.
    let template = deploy::template_of(&app);
    let version = deploy::version_of(&template);
    let old_history = app
        .status
        .as_ref()
        .map(|s| s.history.clone())
        .unwrap_or_default();
    let cause = deploy::cause(&old_history, &version, &template);
    let history = deploy::record(&old_history, &version, &template, &cause, now);
    let revision = history.last().map(|r| r.revision).unwrap_or(1);
    // Drain hook (drain.rs, owned by the nodes work — E: keep it when reshaping): tasks
    // marked drover.dev/drain stop counting as instances, so replacements are placed;
    // each goes once the App keeps minimumHealthCapacity healthy without it.
    let mut active = active;
    let drain = crate::controllers::drain::plan(&app, &mut active);
    for t in &drain.kill {
        delete_task(&ctx.store, task_info, t, "drained").await?;
        ctx.expectations.deleted(&namespace, &name, t);
    }
    let step = deploy::step(&app, active, desired, &version, revision, now);
    let involved = Involved {
        kind: "App",
        namespace: &namespace,
        name: &name,
        uid: app.metadata.uid.as_deref(),
    };
    if step.deadline_exceeded {
        let message = step.deployment.message.clone().unwrap_or_default();
        record(
            &ctx.store,
            &involved,
            "Warning",
            "ProgressDeadlineExceeded",
            &message,
        )
        .await;
        let previous = deploy::previous_revision(&history, &version);
        if app.spec.upgrade_strategy.auto_rollback.unwrap_or(true) {
            if let Some(to) = previous {
                match deploy::roll_back(&ctx.store, &app_key, &step.deployment, &history, to, now)
                    .await
                {
                    Ok(message) => {
                        tracing::warn!(app = %name, %namespace, %message, "rolled back");
                        record(&ctx.store, &involved, "Warning", "RolledBack", &message).await;
                        return Ok(Action::requeue(Duration::from_millis(100)));
                    }
                    Err(StoreError::Conflict { .. }) => {
                        return Ok(Action::requeue(Duration::from_millis(100)))
                    }
                    Err(StoreError::NotFound { .. }) => return Ok(Action::await_change()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    for t in &step.kill {
        delete_task(&ctx.store, task_info, t, "rollout step").await?;
        ctx.expectations.deleted(&namespace, &name, t);
    }
    let active = step.keep;
    let active = [active, drain.draining].concat(); // drain.rs: still running, still counted

    // Dependencies: no new tasks until every App this one depends on is available.
    let waiting = waiting_for_dependencies(&app, &namespace, &ctx).await?;

    // Too few: place the missing ones (unless backing off).
    let mut stuck: Option<String> = None;
    let mut held: Option<Held> = None;
    let mut placed_now = 0;
    if step.create > 0 && wait.is_none() && waiting.is_none() {
        // Apps place one at a time, each seeing the placements of the others (and its
        // own) that the Task cache does not show yet: two Apps deciding on the same
        // stale cache would both take a node's last free resources.
        let mut in_flight = ctx.expectations.fair.lock(&ctx.tasks).await;
        let mut inv = inventory(&ctx);
        bind_in_flight(&mut inv, &in_flight);
        // Level 1: at most this App's fair share now (DRF across roles, Quota).
        let grant = if shares_the_cluster(&app, &ctx) {
            fair_grant(&app, step.create, &inv, &in_flight, &ctx)
        } else {
            Grant {
                granted: step.create,
                held: None,
            }
        };
        held = grant.held;
        let (new_tasks, why) = if grant.granted > 0 {
            plan(&app, &namespace, &name, &active, grant.granted, inv, &ctx)?
        } else {
            (Vec::new(), None)
        };
        stuck = why.or_else(|| held.as_ref().map(ToString::to_string));
        placed_now = new_tasks.len();
        let decoded: Vec<Arc<Task>> = new_tasks.iter().map(|(_, v)| sketch(v)).collect();
        if !new_tasks.is_empty() {
            if !create_all(&ctx.store, new_tasks).await? {
                // Someone wrote the same names meanwhile: look again.
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            in_flight.extend(in_flight_of(&app, &decoded));
            ctx.expectations.created(&namespace, &name, decoded);
        }
        drop(in_flight);
    }

    let mut status = status_of(
        &app,
        &active,
        desired,
        placed_now,
        stuck.as_deref(),
        backoff,
        wait,
    );
    deploy_status(
        &mut status,
        &app,
        &step.deployment,
        &history,
        waiting.as_deref(),
    );
    let held_only =
        held.is_some() && stuck.as_deref() == held.as_ref().map(|h| h.to_string()).as_deref();
    if held_only {
        scheduled_reason(&mut status, held.as_ref());
    }
    let stuck_before = scheduled_message(&app);
    let key = app_key;
    {
        // At the revision the decisions were made on: a spec changed meanwhile is
        // looked at again before its status is written.
        match write_status(&ctx.store, &key, stored.mod_revision, status).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(StoreError::Conflict { .. }) => {
                return Ok(Action::requeue(Duration::from_millis(100)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    if held_only {
        // Held back by level 1: said once per change (not every few seconds), and looked
        // at again soon, so the App gets resources as they free.
        if let (Some(message), Some(h)) = (&stuck, &held) {
            if stuck_before.as_deref() != Some(message.as_str()) {
                record(&ctx.store, &involved, "Normal", held_reason(h), message).await;
            }
        }
        return Ok(Action::requeue(FAIR_SHARE_RETRY));
    }
    if let Some(message) = &stuck {
        record(
            &ctx.store,
            &involved,
            "Warning",
            "FailedScheduling",
            message,
        )
        .await;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if let Some(w) = wait {
        return Ok(Action::requeue(
            w.to_std().unwrap_or(Duration::from_secs(1)),
        ));
    }
    if waiting.is_some() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if step.deployment.phase == DeploymentPhase::Progressing {
        // Wake up in time to notice the progress deadline.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

pub fn error_policy(_app: Arc<App>, _error: &AppsError, _ctx: Arc<AppsContext>) -> Action {
    Action::requeue(Duration::from_secs(2))
}

async fn delete_task(
    store: &Arc<dyn Store>,
    task_info: &KindInfo,
    t: &Task,
    why: &str,
) -> Result<(), AppsError> {
    let status = t.status.as_ref();
    tracing::info!(
        task = t.metadata.name.as_deref().unwrap_or_default(),
        version = t.spec.version.as_deref().unwrap_or_default(),
        phase = ?status.map(|s| s.phase),
        healthy = ?status.and_then(|s| s.healthy),
        why,
        "deleting task"
    );
    let key = crate::apiserver::objects::key(
        task_info,
        t.metadata.namespace.as_deref(),
        t.metadata.name.as_deref().unwrap_or_default(),
    );
    match store.delete(&key, None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The cluster as the allocator sees it: ready, schedulable nodes and what every active
/// task holds.
fn inventory(ctx: &AppsContext) -> Inventory {
    let mut nodes: Vec<NodeState> = ctx
        .nodes
        .list()
        .iter()
        .map(|n| NodeState::from_node(n))
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut inv = Inventory::new(nodes);
    for t in ctx.tasks.list().iter().filter(|t| is_active(t)) {
        let Some(i) = t.spec.node_name.as_deref().and_then(|n| inv.position(n)) else {
            continue;
        };
        let ports: Vec<u16> = t.spec.ports.iter().map(|p| p.host_port as u16).collect();
        inv.bind(i, &amounts(&t.spec.resources), &ports);
    }
    inv
}

pub(crate) fn amounts(r: &drover_api::resources::Resources) -> Amounts {
    Amounts {
        cpus: r.cpus.unwrap_or(1.0),
        mem_mib: r.mem_mib.unwrap_or(128),
        disk_mib: r.disk_mib.unwrap_or(0),
        gpus: r.gpus.unwrap_or(0),
    }
}

/// Chooses nodes for `missing` new instances; returns the Task objects to create and,
/// if some could not be placed, why.
#[allow(clippy::type_complexity)]
fn plan(
    app: &App,
    namespace: &str,
    name: &str,
    active: &[Arc<Task>],
    missing: usize,
    inv: Inventory,
    ctx: &AppsContext,
) -> Result<(Vec<(String, Value)>, Option<String>), AppsError> {
    // The App's rules, and the Constraint objects selecting it: required ones filter,
    // preferred ones score. Fixed host ports (non-zero hostPort) are placed exactly.
    let objects = ctx.constraints.list();
    let (required, preferred): (Vec<NamedConstraint>, Vec<NamedConstraint>) =
        crate::allocator::constraint_objects::constraints_for(app, objects.iter().map(|c| &**c))
            .map_err(|e| AppsError::Constraints(e.to_string()))?;
    let want = amounts(&app.spec.resources);
    let placed: Vec<usize> = active
        .iter()
        .filter_map(|t| t.spec.node_name.as_deref().and_then(|n| inv.position(n)))
        .collect();
    let (planned, inv, why) = crate::allocator::plan_instances(
        inv,
        &required,
        &preferred,
        want,
        &app.spec.ports,
        &placed,
        missing,
    );
    let mut used_instances: BTreeSet<i32> = active.iter().filter_map(|t| t.spec.instance).collect();
    let version = template_version(app);
    let task_info = info("Task")?;
    let mut out = Vec::new();
    for p in planned {
        let instance = (0..).find(|n| !used_instances.contains(n)).unwrap_or(0);
        used_instances.insert(instance);
        let node = inv.nodes[p.node].name.clone();
        let task = task_for(
            app,
            namespace,
            name,
            instance,
            &node,
            &p.host_ports,
            &version,
        );
        let task_name = task["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        out.push((
            crate::apiserver::objects::key(task_info, Some(namespace), &task_name),
            task,
        ));
    }
    Ok((out, why))
}

/// How soon an App held back by level 1 looks again.
const FAIR_SHARE_RETRY: Duration = Duration::from_secs(2);

/// Whether level 1 has anything to share out: Apps of more than one role, or a Quota.
/// With one role and no Quota every App places all it misses, at no extra cost.
fn shares_the_cluster(app: &App, ctx: &AppsContext) -> bool {
    let role = quota::role_of(app);
    !ctx.quotas.is_empty() || ctx.apps.list().iter().any(|a| quota::role_of(a) != role)
}

/// How many of its `missing` instances the App may place now (level 1): the demand of
/// every App (from the App cache) and each role's usage (one pass over the Task cache,
/// plus the placements `in_flight`, which are also bound into `inv`) go through
/// weighted DRF progressive filling.
fn fair_grant(
    app: &App,
    missing: usize,
    inv: &Inventory,
    in_flight: &[quota::Placed],
    ctx: &AppsContext,
) -> Grant {
    let mut cluster = level1::Cluster {
        policies: quota::policies(&ctx.quotas.list()),
        ..Default::default()
    };
    for n in inv.nodes.iter().filter(|n| n.ready && n.schedulable) {
        cluster.total.add(&n.allocatable);
        cluster.free.add(&n.free().at_least_zero());
    }
    let mut usage = quota::Usage::of(&ctx.tasks.list());
    usage.add_in_flight(in_flight);
    let own = ObjectKey::of(app);
    let demands = quota::demands(&ctx.apps.list(), &usage, Some((&own, missing)));
    cluster.usage = usage.by_role;
    let grants = level1::fill(&cluster, &demands);
    demands
        .iter()
        .zip(grants)
        .find(|(d, _)| d.key == own)
        .map(|(_, g)| g)
        .unwrap_or(Grant {
            granted: missing,
            held: None,
        })
}

/// Binds into `inv` the placements made but not yet in the Task cache.
fn bind_in_flight(inv: &mut Inventory, in_flight: &[quota::Placed]) {
    for p in in_flight {
        if let Some(i) = inv.position(&p.node) {
            inv.bind(i, &p.amounts, &p.host_ports);
        }
    }
}

/// The level-1 ledger entries of tasks just created for `app`.
fn in_flight_of(app: &App, created: &[Arc<Task>]) -> Vec<quota::Placed> {
    let now = Instant::now();
    created
        .iter()
        .map(|t| quota::Placed {
            task: ObjectKey::of(&**t),
            app: ObjectKey::of(app),
            node: t.spec.node_name.clone().unwrap_or_default(),
            role: quota::role_of(app).to_string(),
            amounts: amounts(&app.spec.resources),
            host_ports: t.spec.ports.iter().map(|p| p.host_port as u16).collect(),
            at: now,
        })
        .collect()
}

/// The Event reason of a level-1 hold.
fn held_reason(h: &Held) -> &'static str {
    match h {
        Held::FairShare { .. } => "WaitingForFairShare",
        Held::Limit { .. } => "QuotaLimitReached",
        Held::Reserved { .. } => "ReservedForGuarantee",
    }
}

/// Gives the `Scheduled` condition the reason of a level-1 hold.
fn scheduled_reason(status: &mut Value, held: Option<&Held>) {
    let Some(h) = held else { return };
    let reason = held_reason(h);
    if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conditions.iter_mut().filter(|c| c["type"] == "Scheduled") {
            c["reason"] = json!(reason);
        }
    }
}

/// The message of the App's `Scheduled` condition as last written.
fn scheduled_message(app: &App) -> Option<String> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Scheduled")?
        .message
        .clone()
}

/// A short hash of the task template: tasks of an older version get replaced on upgrade.
fn template_version(app: &App) -> String {
    deploy::version_of(&deploy::template_of(app))
}

/// Why this App must wait for its dependencies, if it must: the first App it depends
/// on (same namespace) that is missing or not Available (every instance healthy).
async fn waiting_for_dependencies(
    app: &App,
    namespace: &str,
    ctx: &AppsContext,
) -> Result<Option<String>, AppsError> {
    let app_info = info("App")?;
    for dep in &app.spec.dependencies {
        let key = crate::apiserver::objects::key(app_info, Some(namespace), dep);
        let Some(kv) = ctx.store.get(&key).await? else {
            return Ok(Some(format!("waiting for dependency {dep} (not found)")));
        };
        let other: App = match serde_json::from_slice(&kv.value) {
            Ok(a) => a,
            Err(e) => {
                return Ok(Some(format!(
                    "waiting for dependency {dep} (unreadable: {e})"
                )))
            }
        };
        let want = other.spec.instances.unwrap_or(1).max(0) as usize;
        let up = tasks_of(ctx, namespace, dep)
            .iter()
            .filter(|t| is_active(t) && deploy::available(t))
            .count();
        if up < want {
            return Ok(Some(format!(
                "waiting for dependency {dep} ({up}/{want} healthy)"
            )));
        }
    }
    Ok(None)
}

/// Adds the rollout to a status built by [`status_of`]: `deployment`, `history`,
/// `updated`, the `Progressing` condition, and a dependency wait in `Scheduled`.
fn deploy_status(
    status: &mut Value,
    app: &App,
    deployment: &drover_api::kinds::app::DeploymentStatus,
    history: &[drover_api::kinds::app::Revision],
    waiting: Option<&str>,
) {
    let mut conditions: Vec<Condition> = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    drover_api::meta::set_condition(
        &mut conditions,
        deploy::progressing_condition(deployment, app.metadata.generation),
    );
    if let Some(why) = waiting {
        drover_api::meta::set_condition(
            &mut conditions,
            Condition {
                type_: "Scheduled".into(),
                status: ConditionStatus::False,
                reason: Some("WaitingForDependency".into()),
                message: Some(why.to_string()),
                last_transition_time: Some(time_from_chrono(Utc::now())),
                observed_generation: app.metadata.generation,
            },
        );
    }
    status["conditions"] = serde_json::to_value(&conditions).unwrap_or(Value::Null);
    status["updated"] = json!(deployment.updated);
    status["deployment"] = serde_json::to_value(deployment).unwrap_or(Value::Null);
    if let Some(why) = waiting {
        status["deployment"]["message"] = json!(why);
    }
    status["history"] = serde_json::to_value(history).unwrap_or(Value::Null);
}

fn task_for(
    app: &App,
    namespace: &str,
    name: &str,
    instance: i32,
    node: &str,
    host_ports: &[u16],
    version: &str,
) -> Value {
    use crate::apiserver::objects::{new_uid, now_rfc3339};
    let suffix = &new_uid()[..5];
    crate::allocator::task_template::task_object(
        app,
        namespace,
        &format!("{name}-{instance}-{suffix}"),
        &new_uid(),
        instance,
        node,
        host_ports,
        version,
        &now_rfc3339(),
    )
}

fn status_of(
    app: &App,
    active: &[Arc<Task>],
    desired: usize,
    placed_now: usize,
    stuck: Option<&str>,
    backoff: Option<drover_api::kinds::app::BackoffStatus>,
    wait: Option<chrono::Duration>,
) -> Value {
    let phase = |t: &Task| t.status.as_ref().map(|s| s.phase).unwrap_or_default();
    let running = active
        .iter()
        .filter(|t| phase(t) == TaskPhase::Running)
        .count();
    let healthy = active
        .iter()
        .filter(|t| {
            phase(t) == TaskPhase::Running
                && t.status.as_ref().and_then(|s| s.healthy) == Some(true)
        })
        .count();
    let unhealthy = active
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.healthy) == Some(false))
        .count();
    let staged = active.len() - running + placed_now;
    let ready = active
        .iter()
        .filter(|t| {
            phase(t) == TaskPhase::Running && t.status.as_ref().and_then(|s| s.ready) != Some(false)
        })
        .count();
    let generation = app.metadata.generation;
    let old = app
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut conditions = old;
    let now = time_from_chrono(Utc::now());
    let condition = |type_: &str, ok: bool, reason: &str, message: String| Condition {
        type_: type_.into(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now.clone()),
        observed_generation: generation,
    };
    let available = running >= desired;
    drover_api::meta::set_condition(
        &mut conditions,
        condition(
            "Available",
            available,
            if available {
                "MinimumInstancesRunning"
            } else {
                "InstancesMissing"
            },
            format!("{running}/{desired} instances running"),
        ),
    );
    let (scheduled, reason, message) = match (stuck, wait) {
        (Some(why), _) => (false, "Unschedulable", why.to_string()),
        (None, Some(w)) => (
            false,
            "BackingOff",
            format!(
                "launching again in {} s after failures",
                w.num_seconds().max(1)
            ),
        ),
        (None, None) => (true, "AllPlaced", format!("{desired} instances placed")),
    };
    drover_api::meta::set_condition(
        &mut conditions,
        condition("Scheduled", scheduled, reason, message),
    );
    let mut status = json!({
        "observedGeneration": generation,
        "instances": desired,
        "staged": staged,
        "running": running,
        "healthy": healthy,
        "unhealthy": unhealthy,
        "ready": ready,
        "version": template_version(app),
        "selector": format!("{APP_LABEL}={}", app.metadata.name.clone().unwrap_or_default()),
        "conditions": conditions,
    });
    if let Some(b) = backoff {
        status["backoff"] = serde_json::to_value(b).unwrap_or(Value::Null);
    }
    status
}

/// Keys of Apps whose tasks changed, for the controller's trigger channel.
pub fn owner_key(task: &Task) -> Option<crate::runtime::ObjectKey> {
    let owner = task.spec.owner.as_ref()?;
    (owner.kind == OwnerKind::App).then(|| crate::runtime::ObjectKey {
        namespace: task.metadata.namespace.clone(),
        name: owner.name.clone(),
    })
}

/// Tasks whose App is gone: deleted (the agent then kills them).
pub async fn collect_orphans(store: &Arc<dyn Store>, apps: &Reader<App>, tasks: &Reader<Task>) {
    let Ok(task_info) = info("Task") else { return };
    let present: HashMap<(Option<String>, String), ()> = apps
        .list()
        .iter()
        .map(|a| {
            (
                (
                    a.metadata.namespace.clone(),
                    a.metadata.name.clone().unwrap_or_default(),
                ),
                (),
            )
        })
        .collect();
    for t in tasks.list() {
        let Some(owner) = owner_key(&t) else { continue };
        if !present.contains_key(&(owner.namespace.clone(), owner.name.clone())) {
            if let Err(e) = delete_task(store, task_info, &t, "orphaned").await {
                tracing::warn!(error = %e, "could not delete an orphaned task");
            }
        }
    }
}

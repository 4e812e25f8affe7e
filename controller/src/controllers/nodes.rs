//! The nodes controller: turns a node's heartbeat lease (`apiserver::node_lease`) into
//! its Ready condition and, when it stays gone, its Tasks into Lost ones.
//!
//! Lease key gone (the store expired it) → Node `Ready=False`, reason
//! `NodeHeartbeatExpired`, with the time of the last heartbeat and an Event. Still not
//! Ready `lost_after` later (measured from the condition's lastTransitionTime, which is
//! stored, so a controller restart does not reset the clock) → every non-terminal Task
//! bound to the node gets phase `Lost` (reason `NodeLost`); the apps controller then
//! replaces them on Ready nodes, and the agent, when it comes back, kills what it still
//! runs of them. Lease back → `Ready=True` again (the agent's own heartbeat says so
//! too; this only closes the gap when our `False` raced a heartbeat).
//!
//! Maintenance windows (`spec.maintenance`, Mesos maintenance / Aurora host
//! maintenance): while one is open (start ≤ now < end) the node has the condition
//! `Maintenance=True` (reason `MaintenanceWindow`, message "<reason>, until <end>"), is
//! unschedulable (`allocator::inventory` asks [`in_maintenance`]) and its App tasks are
//! drained as `drover node drain` drains them (`drain::mark`: replaced elsewhere first,
//! within the App's minimumHealthCapacity). When it closes the condition goes and the
//! node takes tasks again (unless cordoned). That part runs on Node changes and wakes
//! itself at the next window edge; it never polls.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drover_api::kinds::node::{MaintenanceWindow, Node};
use drover_api::kinds::task::{OwnerKind, Task};
use drover_api::meta::{time_to_chrono, ConditionStatus};
use drover_api::{find_kind, DroverKind};
use drover_store::{ListOptions, Store, StoreError};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::apiserver::node_lease;
use crate::apiserver::objects::{key, now_rfc3339, to_stored};
use crate::controllers::events::{record, Involved};
use crate::runtime::reflector::Reader;

/// Reason of the Ready=False condition this controller writes.
pub const HEARTBEAT_EXPIRED: &str = "NodeHeartbeatExpired";
/// Reason of the Lost phase of a task whose node went away.
pub const NODE_LOST: &str = "NodeLost";
/// Type of the condition of a node in an open maintenance window.
pub const MAINTENANCE: &str = "Maintenance";
/// Reason of the `Maintenance=True` condition.
pub const MAINTENANCE_WINDOW: &str = "MaintenanceWindow";

/// How long a node may be silent, and how long it may stay NotReady before its
/// tasks are given up.
#[derive(Clone, Copy, Debug)]
pub struct NodesConfig {
    /// The node lease duration the API server grants (also the grace a node without a
    /// lease gets when this controller starts, before it is declared expired).
    pub lease: Duration,
    /// NotReady this long → its tasks are Lost (`--node-lost-seconds`).
    pub lost_after: Duration,
}

impl Default for NodesConfig {
    fn default() -> Self {
        NodesConfig {
            lease: Duration::from_secs(node_lease::DEFAULT_LEASE_SECONDS as u64),
            lost_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("node {node}: stored object is not JSON: {reason}")]
    Corrupt { node: String, reason: String },
}

/// What the controller remembers between passes (nothing it could not rebuild).
#[derive(Default)]
struct Memory {
    /// Nodes whose lease this process has seen: their lease going means expiry.
    seen_live: BTreeSet<String>,
    /// When a node without a lease was first noticed (startup grace).
    absent_since: HashMap<String, Instant>,
}

/// Runs forever: a lease pass on every change under the lease prefix and every
/// second; a maintenance pass whenever `node_changed` is notified (the Node cache's
/// callback) and at the next window edge.
pub async fn run(
    store: Arc<dyn Store>,
    nodes: Reader<Node>,
    tasks: Reader<Task>,
    config: NodesConfig,
    node_changed: Arc<Notify>,
) {
    tokio::join!(
        run_leases(store.clone(), nodes.clone(), tasks.clone(), config),
        run_maintenance(store, nodes, tasks, node_changed),
    );
}

async fn run_leases(
    store: Arc<dyn Store>,
    nodes: Reader<Node>,
    tasks: Reader<Task>,
    config: NodesConfig,
) {
    let mut memory = Memory::default();
    let tick = config
        .lease
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(200));
    loop {
        let mut events = match store.watch(node_lease::PREFIX, 0).await {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(%error, "watching node leases; polling instead");
                None
            }
        };
        loop {
            if let Err(error) = pass(&store, &nodes, &tasks, &config, &mut memory).await {
                tracing::warn!(%error, "nodes controller pass failed; retrying");
            }
            let next = async {
                match events.as_mut() {
                    Some(w) => w.next().await.map(|e| e.is_ok()).unwrap_or(false),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ok = next => if !ok { break },
                _ = tokio::time::sleep(tick) => {}
            }
        }
        tokio::time::sleep(tick).await;
    }
}

/// The live leases: node names whose key is present.
async fn live_nodes(store: &Arc<dyn Store>) -> Result<BTreeSet<String>, StoreError> {
    let page = store
        .list(node_lease::PREFIX, ListOptions::default())
        .await?;
    Ok(page
        .items
        .iter()
        .filter_map(|kv| node_lease::node_of(&kv.key).map(str::to_string))
        .collect())
}

async fn pass(
    store: &Arc<dyn Store>,
    nodes: &Reader<Node>,
    tasks: &Reader<Task>,
    config: &NodesConfig,
    memory: &mut Memory,
) -> Result<(), NodesError> {
    let live = live_nodes(store).await?;
    let now = Utc::now();
    for node in nodes.list() {
        let name = node.metadata.name.clone().unwrap_or_default();
        let ready = ready_condition(&node);
        if live.contains(&name) {
            memory.seen_live.insert(name.clone());
            memory.absent_since.remove(&name);
            if ready.as_ref().is_some_and(|(s, reason, _)| {
                *s == ConditionStatus::False && reason == HEARTBEAT_EXPIRED
            }) {
                set_ready(store, &node, true, now).await?;
            }
            continue;
        }
        let last = last_heartbeat(&node);
        let since = *memory
            .absent_since
            .entry(name.clone())
            .or_insert_with(Instant::now);
        // A lease seen to go is expiry. A node without one when this controller starts
        // (a restart, a new leader) gets one lease duration to heartbeat first, as a
        // restarted Kubernetes node controller does: `drover up` starts its agent
        // together with the controllers.
        let expired = memory.seen_live.contains(&name) || since.elapsed() >= config.lease;
        if !expired {
            continue;
        }
        match ready {
            // Never heartbeated: nothing to say yet.
            None => continue,
            Some((ConditionStatus::False, reason, changed)) if reason == HEARTBEAT_EXPIRED => {
                // NotReady long enough — and noticed by this process long enough, so a
                // restart never gives up tasks whose agent is about to heartbeat.
                let down_for = changed.map(|c| now - c).unwrap_or_default();
                if down_for >= chrono::Duration::from_std(config.lost_after).unwrap_or_default()
                    && since.elapsed() >= config.lost_after
                {
                    lose_tasks(store, tasks, &name, last).await?;
                }
            }
            Some(_) => set_ready(store, &node, false, now).await?,
        }
    }
    // Forget nodes that were deleted.
    let present: BTreeSet<String> = nodes
        .list()
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    memory.seen_live.retain(|n| present.contains(n));
    memory.absent_since.retain(|n, _| present.contains(n));
    Ok(())
}

/// The Ready condition: status, reason, last transition.
fn ready_condition(node: &Node) -> Option<(ConditionStatus, String, Option<DateTime<Utc>>)> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        c.status,
        c.reason.clone().unwrap_or_default(),
        c.last_transition_time.as_ref().map(time_to_chrono),
    ))
}

fn last_heartbeat(node: &Node) -> Option<DateTime<Utc>> {
    node.status
        .as_ref()?
        .last_heartbeat_time
        .as_ref()
        .map(time_to_chrono)
}

fn describe_last(last: Option<DateTime<Utc>>) -> String {
    match last {
        Some(t) => format!(
            "last heartbeat at {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "no heartbeat recorded".to_string(),
    }
}

/// Writes the Ready condition of `node` (read again from the store, written guarded by
/// its revision: a heartbeat that lands meanwhile wins, and the next pass looks again).
async fn set_ready(
    store: &Arc<dyn Store>,
    node: &Node,
    ready: bool,
    now: DateTime<Utc>,
) -> Result<(), NodesError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let last = last_heartbeat(node);
    let (status, reason, message) = if ready {
        (
            "True",
            "NodeHeartbeatResumed",
            format!("the agent heartbeats again ({})", describe_last(last)),
        )
    } else {
        (
            "False",
            HEARTBEAT_EXPIRED,
            format!(
                "the node's heartbeat lease expired: {}",
                describe_last(last)
            ),
        )
    };
    let condition = json!({
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if !put_condition(store, &name, "Ready", Some(condition)).await? {
        return Ok(());
    }
    if ready {
        tracing::info!(node = %name, "node Ready again: its heartbeat lease is back");
    } else {
        tracing::warn!(node = %name, %message, "node not Ready");
    }
    let involved = Involved {
        kind: "Node",
        namespace: "default",
        name: &name,
        uid: node.metadata.uid.as_deref(),
    };
    let (type_, event) = if ready {
        ("Normal", "NodeReady")
    } else {
        ("Warning", "NodeNotReady")
    };
    record(store, &involved, type_, event, &message).await;
    Ok(())
}

/// Marks every non-terminal Task bound to `node` Lost.
async fn lose_tasks(
    store: &Arc<dyn Store>,
    tasks: &Reader<Task>,
    node: &str,
    last: Option<DateTime<Utc>>,
) -> Result<(), NodesError> {
    let Some(info) = find_kind(Task::KIND) else {
        return Ok(());
    };
    let bound: Vec<Arc<Task>> = tasks
        .list()
        .into_iter()
        .filter(|t| {
            t.spec.node_name.as_deref() == Some(node)
                && !t.status.as_ref().is_some_and(|s| s.phase.is_terminal())
        })
        .collect();
    let message = format!(
        "node {node} stopped heartbeating ({}); the task is presumed lost and replaced elsewhere",
        describe_last(last)
    );
    let now = now_rfc3339();
    for t in bound {
        let ns = t
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = t.metadata.name.clone().unwrap_or_default();
        let k = key(info, Some(&ns), &name);
        let Some(kv) = store.get(&k).await? else {
            continue;
        };
        let Ok(mut obj) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let phase = obj.pointer("/status/phase").and_then(Value::as_str);
        if matches!(phase, Some("Finished" | "Failed" | "Killed" | "Lost")) {
            continue;
        }
        if !obj.get("status").is_some_and(Value::is_object) {
            obj["status"] = json!({});
        }
        obj["status"]["phase"] = json!("Lost");
        obj["status"]["reason"] = json!(NODE_LOST);
        obj["status"]["message"] = json!(message);
        obj["status"]["finishedAt"] = json!(now);
        match store.update(&k, to_stored(&obj), kv.mod_revision, 0).await {
            Ok(_) => {
                tracing::warn!(task = %format!("{ns}/{name}"), node, "task lost with its node")
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let involved = Involved {
            kind: "Task",
            namespace: &ns,
            name: &name,
            uid: t.metadata.uid.as_deref(),
        };
        record(store, &involved, "Warning", NODE_LOST, &message).await;
    }
    Ok(())
}

/// Runs the maintenance passes: on every Node change, and at the next window edge.
async fn run_maintenance(
    store: Arc<dyn Store>,
    nodes: Reader<Node>,
    tasks: Reader<Task>,
    node_changed: Arc<Notify>,
) {
    let mut in_window = BTreeSet::new();
    loop {
        let next = match maintenance_pass(&store, &nodes, &tasks, &mut in_window).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, "maintenance pass failed; retrying");
                Some(Utc::now() + chrono::Duration::seconds(1))
            }
        };
        // Nothing scheduled: only a Node change can open a window.
        let wait = next
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(5))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = node_changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The window of `node` open at `now` (the first one, when several overlap).
pub fn open_window(node: &Node, now: DateTime<Utc>) -> Option<&MaintenanceWindow> {
    node.spec
        .maintenance
        .iter()
        .find(|w| time_to_chrono(&w.start) <= now && now < time_to_chrono(&w.end))
}

/// Whether the allocator must keep new tasks off `node`: its `Maintenance=True`
/// condition, or a window open now — the agent's heartbeat rewrites
/// `status.conditions` whole, so the condition alone can blink until the next pass
/// writes it back.
pub fn in_maintenance(node: &Node) -> bool {
    maintenance_condition(node).is_some_and(|c| c.status == ConditionStatus::True)
        || (!node.spec.maintenance.is_empty() && open_window(node, Utc::now()).is_some())
}

fn maintenance_condition(node: &Node) -> Option<&drover_api::meta::Condition> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == MAINTENANCE)
}

/// The next start or end of a window after `now`, over all nodes.
fn next_edge(nodes: &[Arc<Node>], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    nodes
        .iter()
        .flat_map(|n| n.spec.maintenance.iter())
        .flat_map(|w| [time_to_chrono(&w.start), time_to_chrono(&w.end)])
        .filter(|t| *t > now)
        .min()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The message of the condition for window `w`: "<reason>, until <end>".
fn window_message(w: &MaintenanceWindow) -> String {
    let reason = w
        .reason
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or("maintenance window");
    format!("{reason}, until {}", rfc3339(time_to_chrono(&w.end)))
}

/// One maintenance pass: the condition of every node as its windows say, its App
/// tasks marked for drain while a window is open. `in_window` holds the nodes this
/// process saw in a window (for the Events). Returns the next window edge.
async fn maintenance_pass(
    store: &Arc<dyn Store>,
    nodes: &Reader<Node>,
    tasks: &Reader<Task>,
    in_window: &mut BTreeSet<String>,
) -> Result<Option<DateTime<Utc>>, NodesError> {
    let now = Utc::now();
    let all = nodes.list();
    for node in &all {
        let name = node.metadata.name.clone().unwrap_or_default();
        let current = maintenance_condition(node);
        match open_window(node, now) {
            Some(w) => {
                let message = window_message(w);
                let up_to_date = current.is_some_and(|c| {
                    c.status == ConditionStatus::True
                        && c.message.as_deref() == Some(message.as_str())
                });
                if !up_to_date {
                    let condition = json!({
                        "type": MAINTENANCE,
                        "status": "True",
                        "reason": MAINTENANCE_WINDOW,
                        "message": message,
                        "lastTransitionTime": rfc3339(time_to_chrono(&w.start)),
                    });
                    put_condition(store, &name, MAINTENANCE, Some(condition)).await?;
                }
                if in_window.insert(name.clone()) {
                    tracing::info!(node = %name, %message, "maintenance window open: draining the node");
                    let about = involved(node, &name);
                    let text = format!("maintenance window open ({message}): the node takes no new tasks and its App tasks are moved");
                    record(store, &about, "Normal", "MaintenanceStarted", &text).await;
                }
                drain_node(store, tasks, &name).await?;
            }
            None => {
                if current.is_some() {
                    put_condition(store, &name, MAINTENANCE, None).await?;
                }
                if in_window.remove(&name) {
                    tracing::info!(node = %name, "maintenance window closed");
                    let about = involved(node, &name);
                    let text =
                        "maintenance window closed: the node takes tasks again unless cordoned";
                    record(store, &about, "Normal", "MaintenanceEnded", text).await;
                }
            }
        }
    }
    let present: BTreeSet<&str> = all
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    in_window.retain(|n| present.contains(n.as_str()));
    Ok(next_edge(&all, now))
}

fn involved<'a>(node: &'a Node, name: &'a str) -> Involved<'a> {
    Involved {
        kind: "Node",
        namespace: "default",
        name,
        uid: node.metadata.uid.as_deref(),
    }
}

/// Marks the App tasks still running on `node` for drain (those no App owns stay: no
/// one would replace them).
async fn drain_node(
    store: &Arc<dyn Store>,
    tasks: &Reader<Task>,
    node: &str,
) -> Result<(), NodesError> {
    let on_node = tasks.list().into_iter().filter(|t| {
        t.spec.node_name.as_deref() == Some(node)
            && t.spec
                .owner
                .as_ref()
                .is_some_and(|o| o.kind == OwnerKind::App)
            && !t.status.as_ref().is_some_and(|s| s.phase.is_terminal())
            && t.metadata.deletion_timestamp.is_none()
            && !crate::controllers::drain::is_drained(t)
    });
    for t in on_node {
        if crate::controllers::drain::mark(store, &t).await? {
            tracing::info!(
                node,
                task = %t.metadata.name.as_deref().unwrap_or_default(),
                "task marked for drain: its node is in maintenance"
            );
        }
    }
    Ok(())
}

/// Sets (Some) or removes (None) the condition `type_` of node `name`, read again from
/// the store and written guarded by its revision: a heartbeat that lands meanwhile
/// wins, and the Node change it makes brings the next pass. Whether it was written.
async fn put_condition(
    store: &Arc<dyn Store>,
    name: &str,
    type_: &str,
    condition: Option<Value>,
) -> Result<bool, NodesError> {
    let Some(info) = find_kind(Node::KIND) else {
        return Ok(false);
    };
    let k = key(info, None, name);
    let Some(kv) = store.get(&k).await? else {
        return Ok(false);
    };
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| NodesError::Corrupt {
        node: name.to_string(),
        reason: e.to_string(),
    })?;
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let mut conditions: Vec<Value> = obj["status"]
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some(type_))
        .collect();
    conditions.extend(condition);
    obj["status"]["conditions"] = json!(conditions);
    match store.update(&k, to_stored(&obj), kv.mod_revision, 0).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod maintenance_tests {
    use super::*;
    use drover_api::kinds::node::NodeSpec;
    use drover_api::meta::time_from_chrono;

    fn node(windows: &[(i64, i64)], now: DateTime<Utc>) -> Node {
        let mut n = Node::new("", "n1", NodeSpec::default());
        n.spec.maintenance = windows
            .iter()
            .map(|(a, b)| MaintenanceWindow {
                start: time_from_chrono(now + chrono::Duration::seconds(*a)),
                end: time_from_chrono(now + chrono::Duration::seconds(*b)),
                reason: Some("kernel upgrade".into()),
            })
            .collect();
        n
    }

    #[test]
    fn a_window_is_open_from_its_start_until_before_its_end() {
        let now = Utc::now();
        assert!(open_window(&node(&[(-10, 10)], now), now).is_some());
        assert!(
            open_window(&node(&[(0, 10)], now), now).is_some(),
            "start ≤ now"
        );
        assert!(
            open_window(&node(&[(-10, 0)], now), now).is_none(),
            "now < end"
        );
        assert!(open_window(&node(&[(5, 10)], now), now).is_none());
        assert!(in_maintenance(&node(&[(-10, 3600)], Utc::now())));
        assert!(!in_maintenance(&node(&[(3600, 7200)], Utc::now())));
    }

    #[test]
    fn the_next_edge_is_the_nearest_future_start_or_end() {
        let now = Utc::now();
        let a = Arc::new(node(&[(-10, 30), (60, 90)], now));
        let b = Arc::new(node(&[(20, 40)], now));
        let next = next_edge(&[a.clone(), b], now).expect("an edge");
        assert_eq!(
            next.timestamp(),
            (now + chrono::Duration::seconds(20)).timestamp()
        );
        assert!(next_edge(&[Arc::new(node(&[(-20, -10)], now))], now).is_none());
        let w = &a.spec.maintenance[0];
        assert!(
            window_message(w).starts_with("kernel upgrade, until "),
            "{}",
            window_message(w)
        );
    }

    /// Stores `obj` at `k` and returns what the store holds, parsed.
    async fn put<K: DroverKind + serde::Serialize + serde::de::DeserializeOwned>(
        s: &Arc<dyn Store>,
        k: &str,
        obj: &K,
    ) -> K {
        let v = serde_json::to_value(obj).expect("json");
        s.txn(drover_store::Txn::new().then(drover_store::Op::put(k, to_stored(&v))))
            .await
            .expect("put");
        read(s, k).await.expect("stored")
    }

    async fn read<K: serde::de::DeserializeOwned>(s: &Arc<dyn Store>, k: &str) -> Option<K> {
        s.get(k)
            .await
            .expect("get")
            .map(|kv| serde_json::from_slice(&kv.value).expect("an object"))
    }

    fn reader<K: DroverKind>(objects: Vec<K>) -> Reader<K> {
        let (mut w, r) = crate::runtime::reflector::reflector::<K>();
        w.apply(&crate::runtime::watcher::Event::Restarted(objects));
        r
    }

    #[tokio::test]
    async fn an_open_window_sets_the_condition_drains_app_tasks_and_its_end_clears_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s: Arc<dyn Store> =
            Arc::new(drover_store::EmbeddedStore::open(dir.path()).expect("open store"));
        let node_key = key(find_kind(Node::KIND).expect("Node"), None, "n1");
        let task_info = find_kind(Task::KIND).expect("Task");
        let now = Utc::now();
        let mut n = node(&[(-5, 3600)], now);
        n.status = Some(Default::default());
        let n = put(&s, &node_key, &n).await;
        let mut app_task = Task::new("default", "web-0", Default::default());
        app_task.spec.node_name = Some("n1".into());
        app_task.spec.owner = Some(drover_api::kinds::task::TaskOwner {
            kind: OwnerKind::App,
            name: "web".into(),
            uid: None,
        });
        let mut bare = app_task.clone();
        bare.metadata.name = Some("bare-0".into());
        bare.spec.owner = None;
        let app_key = key(task_info, Some("default"), "web-0");
        let bare_key = key(task_info, Some("default"), "bare-0");
        let app_task = put(&s, &app_key, &app_task).await;
        let bare = put(&s, &bare_key, &bare).await;
        let tasks = reader(vec![app_task, bare]);
        let mut in_window = BTreeSet::new();

        let next = maintenance_pass(&s, &reader(vec![n]), &tasks, &mut in_window)
            .await
            .expect("pass");
        assert_eq!(
            next.map(|t| t.timestamp()),
            Some((now + chrono::Duration::seconds(3600)).timestamp()),
            "wakes at the window's end"
        );
        let stored: Node = read(&s, &node_key).await.expect("the node");
        let c = maintenance_condition(&stored).expect("the condition");
        assert_eq!(c.status, ConditionStatus::True);
        assert_eq!(c.reason.as_deref(), Some(MAINTENANCE_WINDOW));
        assert!(in_maintenance(&stored));
        let t: Task = read(&s, &app_key).await.expect("the App task");
        assert!(crate::controllers::drain::is_drained(&t), "App task marked");
        let b: Task = read(&s, &bare_key).await.expect("the bare task");
        assert!(
            !crate::controllers::drain::is_drained(&b),
            "no App would replace it"
        );

        // A heartbeat rewrote the conditions: the next pass writes it back.
        let mut beaten = stored.clone();
        if let Some(st) = beaten.status.as_mut() {
            st.conditions.retain(|c| c.type_ != MAINTENANCE);
        }
        let beaten = put(&s, &node_key, &beaten).await;
        maintenance_pass(&s, &reader(vec![beaten]), &tasks, &mut in_window)
            .await
            .expect("pass");
        let stored: Node = read(&s, &node_key).await.expect("the node");
        assert!(maintenance_condition(&stored).is_some(), "written back");

        // The window is over: the condition goes, the node is schedulable again.
        let mut over = stored.clone();
        over.spec.maintenance = node(&[(-60, -1)], Utc::now()).spec.maintenance;
        let over = put(&s, &node_key, &over).await;
        let next = maintenance_pass(&s, &reader(vec![over]), &tasks, &mut in_window)
            .await
            .expect("pass");
        assert_eq!(next, None, "no edge left");
        let stored: Node = read(&s, &node_key).await.expect("the node");
        assert!(maintenance_condition(&stored).is_none());
        assert!(!in_maintenance(&stored));
        assert!(in_window.is_empty());
    }
}

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

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drover_api::kinds::node::Node;
use drover_api::kinds::task::Task;
use drover_api::meta::{time_to_chrono, ConditionStatus};
use drover_api::{find_kind, DroverKind};
use drover_store::{ListOptions, Store, StoreError};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::apiserver::node_lease;
use crate::apiserver::objects::{key, now_rfc3339, to_stored};
use crate::controllers::events::{record, Involved};
use crate::runtime::reflector::Reader;

/// Reason of the Ready=False condition this controller writes.
pub const HEARTBEAT_EXPIRED: &str = "NodeHeartbeatExpired";
/// Reason of the Lost phase of a task whose node went away.
pub const NODE_LOST: &str = "NodeLost";

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

/// Runs forever: a pass on every change under the lease prefix and every second.
pub async fn run(
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
    let Some(info) = find_kind(Node::KIND) else {
        return Ok(());
    };
    let name = node.metadata.name.clone().unwrap_or_default();
    let k = key(info, None, &name);
    let Some(kv) = store.get(&k).await? else {
        return Ok(());
    };
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| NodesError::Corrupt {
        node: name.clone(),
        reason: e.to_string(),
    })?;
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
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let conditions = obj["status"]
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some("Ready"))
        .collect();
    conditions.insert(0, condition);
    obj["status"]["conditions"] = json!(conditions);
    match store.update(&k, to_stored(&obj), kv.mod_revision, 0).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
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

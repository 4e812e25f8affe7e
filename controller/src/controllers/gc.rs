//! Garbage collection by `metadata.ownerReferences`, as Kubernetes does it:
//!
//! - a dependent (a Task) whose owners are all gone — or were replaced by a new object
//!   of the same name (another uid) — is deleted (Background deletion of the owner);
//! - an owner being deleted with the `foregroundDeletion` finalizer gets its dependents
//!   deleted, and loses the finalizer when none is left;
//! - an owner being deleted with the `orphan` finalizer gets its reference removed from
//!   every dependent (they keep running), then loses the finalizer.
//!
//! The API server adds those finalizers for `propagationPolicy` Foreground / Orphan
//! (`apiserver::deletion`). An object whose last finalizer goes while it has a
//! deletionTimestamp is deleted. Deleted Tasks are killed by their agent.
//!
//! Owners (Apps, Jobs, JobRuns, Frameworks) are read from caches, not listed from the
//! store every pass; a cache only ever keeps a dependent (a positive match): an owner
//! it lacks, or holds with another uid, is read from the store before anything is
//! deleted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use drover_api::kinds::app::App;
use drover_api::kinds::framework::Framework;
use drover_api::kinds::job::Job;
use drover_api::kinds::job_run::JobRun;
use drover_api::kinds::task::Task;
use drover_api::meta::ObjectMeta;
use drover_api::{find_kind, DroverKind, KindInfo};
use drover_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::apiserver::objects::{key, now_rfc3339, to_stored};
use crate::runtime::reflector::Reader;

pub use crate::apiserver::deletion::{FOREGROUND, ORPHAN};

/// Caches of the kinds that own Tasks.
#[derive(Clone)]
pub struct Owners {
    pub apps: Reader<App>,
    pub jobs: Reader<Job>,
    pub job_runs: Reader<JobRun>,
    pub frameworks: Reader<Framework>,
}

impl Owners {
    async fn wait_until_ready(&self) {
        self.apps.wait_until_ready().await;
        self.jobs.wait_until_ready().await;
        self.job_runs.wait_until_ready().await;
        self.frameworks.wait_until_ready().await;
    }
}

/// An owner as this pass saw it.
#[derive(Clone, Debug)]
struct Owner {
    key: String,
    uid: String,
    deleting: bool,
    finalizers: Vec<String>,
}

impl Owner {
    /// The owner stored at `key` as `v`.
    fn from_object(key: String, v: &Value) -> Owner {
        Owner {
            key,
            uid: str_of(v, "/metadata/uid").to_string(),
            deleting: v.pointer("/metadata/deletionTimestamp").is_some(),
            finalizers: v
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// A cached owner stored at `key`.
    fn from_meta(key: String, meta: &ObjectMeta) -> Owner {
        Owner {
            key,
            uid: meta.uid.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        }
    }
}

/// Runs forever, one pass a second, once the owner caches have their first lists.
pub async fn run(store: Arc<dyn Store>, tasks: Reader<Task>, owners: Owners) {
    owners.wait_until_ready().await;
    loop {
        if let Err(error) = pass(&store, &tasks, &owners).await {
            tracing::warn!(%error, "garbage collection pass failed; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Every object of the owner kinds, by store key, from their caches.
fn owners(caches: &Owners) -> HashMap<String, Owner> {
    let mut out = HashMap::new();
    add_cached(&mut out, &caches.apps);
    add_cached(&mut out, &caches.jobs);
    add_cached(&mut out, &caches.job_runs);
    add_cached(&mut out, &caches.frameworks);
    out
}

fn add_cached<K: DroverKind>(out: &mut HashMap<String, Owner>, cache: &Reader<K>) {
    let Some(info) = find_kind(K::KIND) else {
        return;
    };
    for o in cache.list() {
        let meta = o.metadata();
        let name = meta.name.as_deref().unwrap_or_default();
        let k = key(info, meta.namespace.as_deref(), name);
        out.insert(k.clone(), Owner::from_meta(k, meta));
    }
}

/// The store key an owner reference of a dependent in `namespace` points at.
fn owner_key(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<(String, &'static KindInfo)> {
    let info = find_kind(kind)?;
    let ns = if info.namespaced { namespace } else { None };
    Some((key(info, ns, name), info))
}

/// What a dependent needs.
enum Verdict {
    Keep,
    Delete,
    /// Remove the references to these owner uids.
    Orphan(Vec<String>),
}

async fn pass(
    store: &Arc<dyn Store>,
    tasks: &Reader<Task>,
    caches: &Owners,
) -> Result<(), StoreError> {
    let Some(task_info) = find_kind("Task") else {
        return Ok(());
    };
    let owners = owners(caches);
    // Owner uids some dependent still points at.
    let mut referenced: HashSet<String> = HashSet::new();
    for t in tasks.list() {
        let refs = t.metadata.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            continue;
        }
        let ns = t.metadata.namespace.as_deref();
        let mut alive = 0;
        let mut foreground = false;
        let mut orphan_uids = Vec::new();
        for r in &refs {
            let Some((k, _)) = owner_key(&r.kind, ns, &r.name) else {
                // A kind we do not know: never collect what we cannot check.
                alive += 1;
                continue;
            };
            let owner = match owners.get(&k) {
                Some(o) if r.uid.is_empty() || o.uid == r.uid => Some(o.clone()),
                // Not in the cache or this pass's list, or another uid there: the cache
                // may lag (a new owner, one created again); ask the store.
                _ => confirm(store, &k).await?,
            };
            let Some(owner) = owner.filter(|o| r.uid.is_empty() || o.uid == r.uid) else {
                continue;
            };
            if owner.deleting && owner.finalizers.iter().any(|f| f == ORPHAN) {
                orphan_uids.push(owner.uid.clone());
                continue;
            }
            if owner.deleting && owner.finalizers.iter().any(|f| f == FOREGROUND) {
                foreground = true;
            }
            alive += 1;
            referenced.insert(owner.uid.clone());
        }
        let verdict = if foreground {
            Verdict::Delete
        } else if !orphan_uids.is_empty() {
            Verdict::Orphan(orphan_uids)
        } else if alive == 0 {
            Verdict::Delete
        } else {
            Verdict::Keep
        };
        let name = t.metadata.name.clone().unwrap_or_default();
        let k = key(task_info, ns, &name);
        match verdict {
            Verdict::Keep => {}
            Verdict::Delete => {
                tracing::info!(task = %format!("{}/{name}", ns.unwrap_or_default()), "garbage collecting a task whose owner is gone");
                delete_object(store, &k).await?;
            }
            Verdict::Orphan(uids) => remove_references(store, &k, &uids).await?,
        }
    }
    // Owners waiting on us: finalizer off once no dependent points at them.
    for owner in owners.values() {
        if !owner.deleting || referenced.contains(&owner.uid) {
            continue;
        }
        if owner
            .finalizers
            .iter()
            .any(|f| f == FOREGROUND || f == ORPHAN)
        {
            remove_gc_finalizers(store, &owner.key, &owner.uid).await?;
        }
    }
    Ok(())
}

/// The owner at `k`, read from the store itself.
async fn confirm(store: &Arc<dyn Store>, k: &str) -> Result<Option<Owner>, StoreError> {
    let Some(kv) = store.get(k).await? else {
        return Ok(None);
    };
    let v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    Ok(Some(Owner::from_object(k.to_string(), &v)))
}

/// Deletes the object at `k` as the API server would: an object with finalizers only
/// gets a deletionTimestamp.
pub async fn delete_object(store: &Arc<dyn Store>, k: &str) -> Result<(), StoreError> {
    let Some(kv) = store.get(k).await? else {
        return Ok(());
    };
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    let has_finalizers = v
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let result = if has_finalizers {
        if v.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(());
        }
        v["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        store.update(k, to_stored(&v), kv.mod_revision, 0).await
    } else {
        store.delete(k, Some(kv.mod_revision)).await
    };
    match result {
        Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the owner references with `uids` from the object at `k`.
async fn remove_references(
    store: &Arc<dyn Store>,
    k: &str,
    uids: &[String],
) -> Result<(), StoreError> {
    let Some(kv) = store.get(k).await? else {
        return Ok(());
    };
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    let Some(refs) = v
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    refs.retain(|r| {
        !uids
            .iter()
            .any(|u| r.get("uid").and_then(Value::as_str) == Some(u))
    });
    if refs.is_empty() {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("ownerReferences");
        }
    }
    tracing::info!(key = k, "orphaning a dependent of a deleted owner");
    match store.update(k, to_stored(&v), kv.mod_revision, 0).await {
        Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Takes the garbage collector's finalizers off the object at `k` if it still is the
/// one with `uid` (the cache may be older than the store); deletes it when no finalizer
/// is left (it has a deletionTimestamp).
async fn remove_gc_finalizers(
    store: &Arc<dyn Store>,
    k: &str,
    uid: &str,
) -> Result<(), StoreError> {
    let Some(kv) = store.get(k).await? else {
        return Ok(());
    };
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    if str_of(&v, "/metadata/uid") != uid {
        return Ok(());
    }
    let left: Vec<Value> = v
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| !matches!(f.as_str(), Some(FOREGROUND | ORPHAN)))
        .collect();
    let result = if left.is_empty() {
        tracing::info!(key = k, "dependents handled: deleting the owner");
        store.delete(k, Some(kv.mod_revision)).await
    } else {
        v["metadata"]["finalizers"] = json!(left);
        store.update(k, to_stored(&v), kv.mod_revision, 0).await
    };
    match result {
        Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::reflector::reflector;
    use crate::runtime::watcher::Event;
    use drover_store::EmbeddedStore;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = EmbeddedStore::open(dir.path()).expect("open store");
        (dir, Arc::new(s))
    }

    const APP_KEY: &str = "/registry/drover.dev/apps/default/web";
    const TASK_KEY: &str = "/registry/drover.dev/tasks/default/web-0-abcde";

    async fn put(s: &Arc<dyn Store>, k: &str, v: Value) {
        s.txn(drover_store::Txn::new().then(drover_store::Op::put(k, to_stored(&v))))
            .await
            .expect("put");
    }

    async fn get(s: &Arc<dyn Store>, k: &str) -> Option<Value> {
        s.get(k)
            .await
            .expect("get")
            .map(|kv| serde_json::from_slice(&kv.value).expect("json"))
    }

    fn task() -> Value {
        json!({
            "apiVersion": "drover.dev/v1alpha1", "kind": "Task",
            "metadata": {"name": "web-0-abcde", "namespace": "default", "uid": "t1",
                "ownerReferences": [{"apiVersion": "drover.dev/v1alpha1", "kind": "App",
                    "name": "web", "uid": "a1", "controller": true}]},
            "spec": {"nodeName": "n1", "owner": {"kind": "App", "name": "web", "uid": "a1"}},
        })
    }

    fn app(finalizers: &[&str], deleting: bool) -> Value {
        let mut v = json!({
            "apiVersion": "drover.dev/v1alpha1", "kind": "App",
            "metadata": {"name": "web", "namespace": "default", "uid": "a1",
                "finalizers": finalizers},
            "spec": {"instances": 1, "container": {"cmd": "sleep 1"}},
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        v
    }

    /// A cache holding what the store holds now at `k`.
    async fn cache<K: DroverKind>(s: &Arc<dyn Store>, k: &str) -> Reader<K> {
        let objects: Vec<K> = get(s, k)
            .await
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("a stored object"))
            .collect();
        cache_of(objects)
    }

    fn cache_of<K: DroverKind>(objects: Vec<K>) -> Reader<K> {
        let (mut w, r) = reflector::<K>();
        w.apply(&Event::Restarted(objects));
        r
    }

    /// Owner caches holding `apps` and no other owner.
    fn apps_only(apps: Vec<App>) -> Owners {
        Owners {
            apps: cache_of(apps),
            jobs: cache_of(Vec::new()),
            job_runs: cache_of(Vec::new()),
            frameworks: cache_of(Vec::new()),
        }
    }

    /// One pass with caches as fresh as the store.
    async fn pass_now(s: &Arc<dyn Store>) {
        let tasks = cache::<Task>(s, TASK_KEY).await;
        let owners = Owners {
            apps: cache::<App>(s, APP_KEY).await,
            ..apps_only(Vec::new())
        };
        pass(s, &tasks, &owners).await.expect("pass");
    }

    #[tokio::test]
    async fn a_task_of_a_live_owner_stays_and_of_a_gone_or_replaced_one_goes() {
        let (_d, s) = store();
        put(&s, APP_KEY, app(&[], false)).await;
        put(&s, TASK_KEY, task()).await;
        pass_now(&s).await;
        assert!(get(&s, TASK_KEY).await.is_some(), "owner alive");
        // The App was deleted and created again: another uid, not the owner.
        let mut other = app(&[], false);
        other["metadata"]["uid"] = json!("a2");
        put(&s, APP_KEY, other).await;
        pass_now(&s).await;
        assert!(get(&s, TASK_KEY).await.is_none(), "owner replaced");
    }

    #[tokio::test]
    async fn orphan_removes_the_reference_then_the_owner_goes() {
        let (_d, s) = store();
        put(&s, APP_KEY, app(&[ORPHAN], true)).await;
        put(&s, TASK_KEY, task()).await;
        pass_now(&s).await;
        let t = get(&s, TASK_KEY).await.expect("the task stays");
        assert!(t["metadata"]["ownerReferences"].is_null(), "{t}");
        pass_now(&s).await;
        assert!(get(&s, APP_KEY).await.is_none(), "the owner goes");
        pass_now(&s).await;
        assert!(get(&s, TASK_KEY).await.is_some(), "the orphan stays");
    }

    #[tokio::test]
    async fn foreground_deletes_dependents_first_and_keeps_other_finalizers() {
        let (_d, s) = store();
        put(&s, APP_KEY, app(&[FOREGROUND, "example.com/hold"], true)).await;
        put(&s, TASK_KEY, task()).await;
        pass_now(&s).await;
        assert!(get(&s, TASK_KEY).await.is_none(), "dependent deleted");
        let a = get(&s, APP_KEY).await.expect("still held");
        assert!(a["metadata"]["finalizers"].is_array());
        pass_now(&s).await;
        let a = get(&s, APP_KEY).await.expect("held by the other finalizer");
        assert_eq!(a["metadata"]["finalizers"], json!(["example.com/hold"]));
    }

    /// A Framework's Task is kept while the Framework cache holds it — nothing listed
    /// from the store — and collected once the Framework is gone from cache and store.
    #[tokio::test]
    async fn a_frameworks_tasks_go_with_it() {
        let (_d, s) = store();
        let mut t = task();
        t["metadata"]["ownerReferences"] = json!([{"apiVersion": "drover.dev/v1alpha1",
            "kind": "Framework", "name": "fw", "uid": "f1", "controller": true}]);
        put(&s, TASK_KEY, t).await;
        let tasks = cache::<Task>(&s, TASK_KEY).await;
        let fw: Framework = serde_json::from_value(json!({
            "apiVersion": "drover.dev/v1alpha1", "kind": "Framework",
            "metadata": {"name": "fw", "uid": "f1"}, "spec": {},
        }))
        .expect("a Framework");
        let with = Owners {
            frameworks: cache_of(vec![fw]),
            ..apps_only(Vec::new())
        };
        pass(&s, &tasks, &with).await.expect("pass");
        assert!(
            get(&s, TASK_KEY).await.is_some(),
            "the cached Framework keeps it"
        );
        pass(&s, &tasks, &apps_only(Vec::new()))
            .await
            .expect("pass");
        assert!(get(&s, TASK_KEY).await.is_none(), "Framework gone");
    }

    #[tokio::test]
    async fn owners_come_from_the_app_cache_and_the_store_only_confirms() {
        let (_d, s) = store();
        put(&s, TASK_KEY, task()).await;
        let owner: App = serde_json::from_value(app(&[], false)).expect("an App");
        // The cache knows the App though the store does not (yet): the task stays, so
        // gc went by the cache and did not list Apps from the store.
        let tasks = cache::<Task>(&s, TASK_KEY).await;
        pass(&s, &tasks, &apps_only(vec![owner.clone()]))
            .await
            .expect("pass");
        assert!(
            get(&s, TASK_KEY).await.is_some(),
            "the cached owner keeps it"
        );
        // A cache that lags behind the store (the owner is not in it, or with an older
        // uid): the store is asked before anything is deleted.
        put(&s, APP_KEY, app(&[], false)).await;
        pass(&s, &tasks, &apps_only(Vec::new()))
            .await
            .expect("pass");
        assert!(get(&s, TASK_KEY).await.is_some(), "owner not cached yet");
        let mut older = owner;
        older.metadata.uid = Some("a0".into());
        pass(&s, &tasks, &apps_only(vec![older]))
            .await
            .expect("pass");
        assert!(get(&s, TASK_KEY).await.is_some(), "an older uid cached");
        // Gone from both: collected.
        s.delete(APP_KEY, None).await.expect("delete the App");
        pass(&s, &tasks, &apps_only(Vec::new()))
            .await
            .expect("pass");
        assert!(get(&s, TASK_KEY).await.is_none(), "owner gone");
    }
}

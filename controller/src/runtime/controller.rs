//! The controller loop: a watcher feeds the reflector and schedules keys; due keys are
//! reconciled with bounded concurrency, never two reconciles of one key at once; the
//! returned `Action` (or the error policy's) decides when the key comes back.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover_api::{DroverKind, KindInfo};
use drover_store::Store;
use futures::StreamExt;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::runtime::object::ObjectKey;
use crate::runtime::queue::DelayQueue;
use crate::runtime::reflector::{reflector, Reader, Writer};
use crate::runtime::watcher::{watcher, Event};

/// What to do after a reconcile.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile again after `d` even if nothing changes.
    pub fn requeue(d: Duration) -> Self {
        Action {
            requeue_after: Some(d),
        }
    }

    /// Reconcile again only when the object changes.
    pub fn await_change() -> Self {
        Action {
            requeue_after: None,
        }
    }

    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

pub struct Controller<K: DroverKind> {
    store: Arc<dyn Store>,
    info: &'static KindInfo,
    writer: Writer<K>,
    reader: Reader<K>,
    concurrency: usize,
    triggers: (
        tokio::sync::mpsc::UnboundedSender<ObjectKey>,
        tokio::sync::mpsc::UnboundedReceiver<ObjectKey>,
    ),
}

impl<K: DroverKind> Controller<K> {
    pub fn new(store: Arc<dyn Store>, info: &'static KindInfo) -> Self {
        let (writer, reader) = reflector();
        Controller {
            store,
            info,
            writer,
            reader,
            concurrency: 16,
            triggers: tokio::sync::mpsc::unbounded_channel(),
        }
    }

    /// Schedules a reconcile of a key from outside (e.g. when an owned object changes).
    pub fn trigger(&self) -> tokio::sync::mpsc::UnboundedSender<ObjectKey> {
        self.triggers.0.clone()
    }

    /// At most `n` reconciles at once (of different keys).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The cache this controller keeps, for reconcilers and other controllers.
    pub fn reader(&self) -> Reader<K> {
        self.reader.clone()
    }

    /// Runs until `shutdown` resolves.
    pub async fn run<Ctx, E, R, RFut, P>(
        self,
        reconcile: R,
        error_policy: P,
        ctx: Arc<Ctx>,
        shutdown: impl Future<Output = ()>,
    ) where
        Ctx: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        R: Fn(Arc<K>, Arc<Ctx>) -> RFut,
        RFut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<K>, &E, Arc<Ctx>) -> Action,
    {
        let Controller {
            store,
            info,
            mut writer,
            reader,
            concurrency,
            triggers: (_, mut triggers),
        } = self;
        let kind = info.kind;
        let mut events = Box::pin(watcher::<K>(store, info));
        let mut queue: DelayQueue<ObjectKey> = DelayQueue::default();
        let mut ready: VecDeque<ObjectKey> = VecDeque::new();
        let mut running: HashSet<ObjectKey> = HashSet::new();
        // Keys that changed while being reconciled: run again right after.
        let mut dirty: HashSet<ObjectKey> = HashSet::new();
        let mut tasks: JoinSet<(ObjectKey, Arc<K>, Result<Action, E>)> = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            // Start what is due, within the concurrency limit.
            ready.extend(queue.pop_due(Instant::now()));
            while tasks.len() < concurrency {
                let Some(key) = ready.pop_front() else { break };
                if running.contains(&key) {
                    dirty.insert(key);
                    continue;
                }
                let Some(obj) = reader.get(&key) else {
                    continue;
                };
                running.insert(key.clone());
                let span = tracing::info_span!("reconcile", kind, object = %key);
                let fut = reconcile(obj.clone(), ctx.clone());
                tasks.spawn(async move { (key, obj, fut.await) }.instrument(span));
            }
            let sleep_until = queue
                .next_deadline()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = &mut shutdown => break,
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        writer.apply(&ev);
                        let now = Instant::now();
                        match &ev {
                            Event::Restarted(all) => all.iter().for_each(|o| queue.schedule(ObjectKey::of(o), now)),
                            Event::Applied(o) | Event::Deleted(o) => queue.schedule(ObjectKey::of(o), now),
                        }
                    }
                    Some(Err(e)) => tracing::warn!(kind, error = %e, "watch failed; retrying"),
                    None => break,
                },
                Some(key) = triggers.recv() => queue.schedule(key, Instant::now()),
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let Ok((key, obj, result)) = done else { continue };
                    running.remove(&key);
                    let action = match result {
                        Ok(action) => action,
                        Err(e) => {
                            tracing::warn!(kind, object = %key, error = %e, "reconcile failed");
                            error_policy(obj, &e, ctx.clone())
                        }
                    };
                    let now = Instant::now();
                    if dirty.remove(&key) {
                        queue.schedule(key, now);
                    } else if let Some(d) = action.requeue_after() {
                        queue.schedule(key, now + d);
                    }
                }
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
        }
        tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::kinds::app::{App, AppSpec};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    struct Ctx {
        seen: Mutex<Vec<(String, i64)>>,
        /// Reconciles in flight per key, and the most ever seen for any one key.
        in_flight: Mutex<std::collections::HashMap<String, usize>>,
        max_same_key: AtomicUsize,
    }

    async fn put(store: &Arc<dyn Store>, name: &str, instances: i32) {
        let mut app = App::new("default", name, AppSpec::default());
        app.spec.instances = Some(instances);
        let key = format!("/registry/drover.dev/apps/default/{name}");
        let value = serde_json::to_vec(&app).expect("json");
        match store.get(&key).await.expect("get") {
            Some(kv) => {
                store
                    .update(&key, value, kv.mod_revision, 0)
                    .await
                    .expect("update");
            }
            None => {
                store.create(&key, value, 0).await.expect("create");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconciles_every_object_and_changes_one_key_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(drover_store::EmbeddedStore::open(dir.path()).expect("store"));
        put(&store, "a", 1).await;
        put(&store, "b", 1).await;
        let info = drover_api::find_kind("App").expect("App");
        let ctx = Arc::new(Ctx {
            seen: Mutex::new(Vec::new()),
            in_flight: Mutex::new(Default::default()),
            max_same_key: AtomicUsize::new(0),
        });
        let controller = Controller::<App>::new(store.clone(), info).concurrency(4);
        let reader = controller.reader();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(controller.run(
            |app: Arc<App>, ctx: Arc<Ctx>| async move {
                let name = app.metadata.name.clone().unwrap_or_default();
                let n = {
                    let mut m = ctx.in_flight.lock().expect("lock");
                    let n = m.entry(name.clone()).or_default();
                    *n += 1;
                    *n
                };
                ctx.max_same_key.fetch_max(n, Ordering::SeqCst);
                // Long enough that the four quick updates of "a" arrive meanwhile.
                tokio::time::sleep(Duration::from_millis(50)).await;
                ctx.seen
                    .lock()
                    .expect("lock")
                    .push((name.clone(), i64::from(app.spec.instances.unwrap_or(0))));
                if let Some(n) = ctx.in_flight.lock().expect("lock").get_mut(&name) {
                    *n -= 1;
                }
                Ok::<_, std::convert::Infallible>(Action::await_change())
            },
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            ctx.clone(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        reader.wait_until_ready().await;
        for i in 2..6 {
            put(&store, "a", i).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = ctx.seen.lock().expect("lock").clone();
            if seen.iter().any(|(n, i)| n == "a" && *i == 5) && seen.iter().any(|(n, _)| n == "b") {
                break;
            }
            assert!(Instant::now() < deadline, "not reconciled: {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Defaults were applied on decode.
        assert!(reader
            .get(&ObjectKey {
                namespace: Some("default".into()),
                name: "b".into()
            })
            .is_some());
        let _ = stop_tx.send(());
        run.await.expect("controller stops");
        // "a" changed four times while being reconciled, yet never ran twice at once.
        assert_eq!(ctx.max_same_key.load(Ordering::SeqCst), 1);
    }
}

//! A cache of one kind that readers share: an exclusive `Writer` fed by a watcher, and
//! cheap-clone `Reader`s that can wait until the first full list has arrived.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use drover_api::DroverKind;
use tokio::sync::watch;

use crate::runtime::object::ObjectKey;
use crate::runtime::watcher::Event;

struct Inner<K> {
    objects: RwLock<HashMap<ObjectKey, Arc<K>>>,
}

pub struct Writer<K> {
    inner: Arc<Inner<K>>,
    ready: watch::Sender<bool>,
}

#[derive(Clone)]
pub struct Reader<K> {
    inner: Arc<Inner<K>>,
    ready: watch::Receiver<bool>,
}

pub fn reflector<K: DroverKind>() -> (Writer<K>, Reader<K>) {
    let inner = Arc::new(Inner {
        objects: RwLock::new(HashMap::new()),
    });
    let (tx, rx) = watch::channel(false);
    (
        Writer {
            inner: inner.clone(),
            ready: tx,
        },
        Reader { inner, ready: rx },
    )
}

impl<K: DroverKind> Writer<K> {
    pub fn apply(&mut self, event: &Event<K>) {
        let mut objects = self
            .inner
            .objects
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Restarted(all) => {
                *objects = all
                    .iter()
                    .map(|o| (ObjectKey::of(o), Arc::new(o.clone())))
                    .collect();
                let _ = self.ready.send(true);
            }
            Event::Applied(o) => {
                objects.insert(ObjectKey::of(o), Arc::new(o.clone()));
            }
            Event::Deleted(o) => {
                objects.remove(&ObjectKey::of(o));
            }
        }
    }
}

impl<K: DroverKind> Reader<K> {
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.inner
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once the first complete list has been applied.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }
}

/// A cache of kind `K` kept up to date from the store by a task of its own; when the
/// kind is not registered, an empty cache that is ready at once (nothing to wait for).
pub fn spawn_cache<K: DroverKind>(
    store: std::sync::Arc<dyn drover_store::Store>,
) -> (Reader<K>, Option<tokio::task::JoinHandle<()>>) {
    let (mut writer, reader) = reflector::<K>();
    let Some(info) = drover_api::find_kind(K::KIND) else {
        writer.apply(&Event::Restarted(Vec::new()));
        return (reader, None);
    };
    let task = tokio::spawn(run(store, info, writer, |_: &Event<K>| {}));
    (reader, Some(task))
}

/// Keeps `writer` up to date from the store until the watcher ends (never, in
/// practice), calling `on_event` after each event is applied.
pub async fn run<K: DroverKind>(
    store: std::sync::Arc<dyn drover_store::Store>,
    info: &'static drover_api::KindInfo,
    mut writer: Writer<K>,
    mut on_event: impl FnMut(&Event<K>),
) {
    use futures::StreamExt;
    let mut events = Box::pin(crate::runtime::watcher::watcher::<K>(store, info));
    while let Some(ev) = events.next().await {
        match ev {
            Ok(ev) => {
                writer.apply(&ev);
                on_event(&ev);
            }
            Err(e) => tracing::warn!(kind = info.kind, error = %e, "watch failed; retrying"),
        }
    }
}

//! The watch cache: one store watch per kind (all namespaces), started by the first API
//! watch of that kind, fanned out to every API watcher from a bounded ring of recent
//! events, each parsed once.
//!
//! Every watcher is a [`Subscription`] with its own cursor and one of two sources:
//!
//! - `Ring`: a sequence number into the kind's ring. Appends wake watchers through a
//!   `tokio::sync::watch` channel; a watcher copies the `Arc`s it has not seen yet.
//!   Nothing is queued per watcher, so a slow watcher costs nothing until it reads.
//! - `Store`: a direct store watch (the path every watch took before the cache), for a
//!   watcher that starts before the ring's oldest revision, or that fell so far behind
//!   that the events it needs were evicted, or whose kind's feed ended. After each event
//!   it re-checks the ring and moves back to it as soon as the ring holds everything it
//!   still needs. A start (or a resync) below the store's compaction point yields
//!   `StoreError::Compacted`, which the API turns into a 410 ERROR event.
//!
//! So a lagging watcher never loses an event: it resyncs from the store where it left
//! off, and only a watcher that lags past the store's own history gets a 410 (and
//! re-lists, as client-go and kubectl do). Several events can share a revision (one
//! transaction), so a cursor is a revision plus the keys already sent at that revision.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::body::Bytes;
use drover_api::KindInfo;
use drover_store::{EventKind, Revision, Store, StoreError, WatchEvent, WatchStream};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::apiserver::objects::{collection_prefix, from_stored, set_resource_version};
use crate::apiserver::reads::Selectors;

/// Events kept per kind: a watcher resuming within the last this-many events of its
/// kind is served from memory.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The most events a watcher takes from the ring in one read, so one read lock is short.
const MAX_READ: usize = 512;

/// The most store events the feed appends under one write lock.
const MAX_APPEND: usize = 1024;

/// The type of an API watch event for an object change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One store event, parsed once and shared by every watcher.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: Revision,
    pub key: Arc<str>,
    /// What watchers are sent: the new object of a put, the last state of a deleted
    /// object with the delete's resourceVersion.
    pub object: Value,
    /// The object before the event (selectors decide ADDED / MODIFIED / DELETED on it).
    pub prev: Option<Value>,
    pub deleted: bool,
    /// `{"type":…,"object":…}\n`, serialised on first use, once per type.
    lines: [OnceLock<Bytes>; 3],
}

impl CachedEvent {
    /// Parses a store event; `None` for what no watcher is ever sent (a delete without a
    /// previous value, an unreadable stored object).
    pub fn from_store(ev: &WatchEvent) -> Option<CachedEvent> {
        let prev = ev.prev.as_ref().and_then(|p| from_stored(p).ok());
        let (object, deleted) = match ev.kind {
            EventKind::Put => match from_stored(&ev.kv) {
                Ok(obj) => (obj, false),
                Err(error) => {
                    tracing::warn!(key = %ev.kv.key, %error, "skipping unreadable object in watch");
                    return None;
                }
            },
            EventKind::Delete => {
                let mut obj = prev.clone()?;
                set_resource_version(&mut obj, ev.revision());
                (obj, true)
            }
        };
        Some(CachedEvent {
            revision: ev.revision(),
            key: Arc::from(ev.kv.key.as_str()),
            object,
            prev,
            deleted,
            lines: Default::default(),
        })
    }

    /// The event a watcher with these selectors sees, if any: an object entering the
    /// selection is ADDED, one leaving it DELETED.
    pub fn type_for(&self, selectors: &Selectors) -> Option<EventType> {
        let select_all = selectors.labels.is_none() && selectors.fields.is_none();
        let matches = |obj: &Value| select_all || selectors.matches(obj);
        let prev_matches = self.prev.as_ref().map(matches);
        if self.deleted {
            return (prev_matches == Some(true)).then_some(EventType::Deleted);
        }
        match (prev_matches, matches(&self.object)) {
            (None | Some(false), true) => Some(EventType::Added),
            (Some(true), true) => Some(EventType::Modified),
            (Some(true), false) => Some(EventType::Deleted),
            (_, false) => None,
        }
    }

    /// The newline-terminated JSON line for this event as `kind`, built once per type.
    pub fn line(&self, kind: EventType) -> Bytes {
        self.lines[kind.index()]
            .get_or_init(|| {
                let mut line = serde_json::to_vec(&serde_json::json!({
                    "type": kind.as_str(),
                    "object": self.object,
                }))
                .unwrap_or_default();
                line.push(b'\n');
                Bytes::from(line)
            })
            .clone()
    }
}

/// Every kind's cache, started lazily. Cheap to clone.
#[derive(Clone)]
pub struct WatchCache {
    store: Arc<dyn Store>,
    capacity: usize,
    kinds: Arc<tokio::sync::Mutex<HashMap<&'static str, Arc<KindCache>>>>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_capacity(store, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(store: Arc<dyn Store>, capacity: usize) -> Self {
        WatchCache {
            store,
            capacity: capacity.max(1),
            kinds: Default::default(),
        }
    }

    /// The kind's cache, starting its store watch if this is the first watch of the kind
    /// (or if its previous feed ended).
    pub async fn kind(&self, info: &'static KindInfo) -> Result<Arc<KindCache>, StoreError> {
        let mut kinds = self.kinds.lock().await;
        if let Some(kind) = kinds.get(info.plural).filter(|k| !k.is_closed()) {
            return Ok(kind.clone());
        }
        let kind = KindCache::start(self.store.clone(), info, self.capacity).await?;
        kinds.insert(info.plural, kind.clone());
        Ok(kind)
    }

    /// A watcher of `info` (all namespaces) that gets every event from `from` on.
    pub async fn subscribe(
        &self,
        info: &'static KindInfo,
        from: Revision,
    ) -> Result<Subscription, StoreError> {
        let kind = self.kind(info).await?;
        Subscription::start(self.store.clone(), kind, from).await
    }
}

/// One kind's ring of recent events and the feed that fills it.
pub struct KindCache {
    plural: &'static str,
    prefix: String,
    ring: RwLock<Ring>,
    /// The sequence number after the newest event; watchers wait on changes.
    appended: watch::Sender<u64>,
    /// Dropped with the cache, which stops the feed.
    _stop_feed: oneshot::Sender<()>,
}

struct Ring {
    events: VecDeque<Arc<CachedEvent>>,
    /// The sequence number of `events[0]`.
    first_seq: u64,
    /// Every event at this revision or later is in `events` or has yet to arrive.
    oldest: Revision,
    capacity: usize,
    /// The feed ended: no more events will arrive.
    closed: bool,
}

impl Ring {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }

    /// Appends, then evicts whole revisions until the ring is within its capacity.
    fn append(&mut self, batch: Vec<Arc<CachedEvent>>) {
        self.events.extend(batch);
        while self.events.len() > self.capacity {
            let Some(evicted) = self.events.pop_front() else {
                break;
            };
            self.first_seq += 1;
            while self
                .events
                .front()
                .is_some_and(|e| e.revision == evicted.revision)
            {
                self.events.pop_front();
                self.first_seq += 1;
            }
            self.oldest = evicted.revision + 1;
        }
    }

    /// Where a cursor needing every event from `needed` on starts, if the ring has them.
    fn seq_for(&self, needed: Revision) -> Option<u64> {
        if self.closed || needed < self.oldest {
            return None;
        }
        let index = self.events.partition_point(|e| e.revision < needed);
        Some(self.first_seq + index as u64)
    }
}

impl KindCache {
    async fn start(
        store: Arc<dyn Store>,
        info: &'static KindInfo,
        capacity: usize,
    ) -> Result<Arc<KindCache>, StoreError> {
        let prefix = collection_prefix(info, None);
        let current = store.current_revision().await?;
        let events = store.watch(&prefix, current + 1).await?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let kind = Arc::new(KindCache {
            plural: info.plural,
            prefix,
            ring: RwLock::new(Ring {
                events: VecDeque::new(),
                first_seq: 0,
                oldest: current + 1,
                capacity,
                closed: false,
            }),
            appended: watch::channel(0).0,
            _stop_feed: stop_tx,
        });
        let span = tracing::info_span!("watch_cache_feed", resource = info.plural);
        tracing::info!(parent: &span, from = current + 1, capacity, "watch cache started");
        tokio::spawn(feed(Arc::downgrade(&kind), events, stop_rx).instrument(span));
        Ok(kind)
    }

    pub fn plural(&self) -> &'static str {
        self.plural
    }

    pub fn is_closed(&self) -> bool {
        self.read().closed
    }

    /// The oldest revision the ring can serve a watcher from.
    pub fn oldest_revision(&self) -> Revision {
        self.read().oldest
    }

    fn read(&self) -> RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, batch: Vec<Arc<CachedEvent>>) {
        let next = {
            let mut ring = self.write();
            ring.append(batch);
            ring.next_seq()
        };
        self.appended.send_replace(next);
    }

    fn close(&self) {
        self.write().closed = true;
        self.appended.send_modify(|_| {});
    }
}

/// Moves the kind's store watch into its ring until the store watch ends or the cache
/// is dropped. Parsing happens here, once per event, outside the ring's lock.
async fn feed(
    kind: std::sync::Weak<KindCache>,
    mut events: WatchStream,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let first = tokio::select! {
            _ = &mut stop => return,
            ev = events.next() => ev,
        };
        let mut batch = Vec::new();
        let mut ended = None;
        let mut next = first;
        loop {
            match next {
                Some(Ok(ev)) => {
                    if let Some(cached) = CachedEvent::from_store(&ev) {
                        batch.push(Arc::new(cached));
                    }
                }
                Some(Err(error)) => {
                    ended = Some(error.to_string());
                    break;
                }
                None => {
                    ended = Some("the store watch ended".to_string());
                    break;
                }
            }
            if batch.len() >= MAX_APPEND {
                break;
            }
            match events.next().now_or_never() {
                Some(ev) => next = ev,
                None => break,
            }
        }
        let Some(kind) = kind.upgrade() else {
            return;
        };
        if !batch.is_empty() {
            kind.append(batch);
        }
        if let Some(reason) = ended {
            // Watchers drain the ring, then resume from the store where they are; the
            // next API watch of the kind starts a new feed.
            tracing::warn!(reason, "watch cache feed ended");
            kind.close();
            return;
        }
    }
}

/// How far a watcher has got: every event before `revision`, and those of `revision`
/// whose keys are in `keys`.
#[derive(Clone, Debug)]
struct Cursor {
    revision: Revision,
    keys: Vec<Arc<str>>,
}

impl Cursor {
    fn is_new(&self, revision: Revision, key: &str) -> bool {
        revision > self.revision
            || (revision == self.revision && !self.keys.iter().any(|k| &**k == key))
    }

    fn advance(&mut self, revision: Revision, key: &Arc<str>) {
        if revision != self.revision {
            self.revision = revision;
            self.keys.clear();
        }
        self.keys.push(key.clone());
    }

    /// The first revision that may still hold an event this watcher has not had.
    fn needed_from(&self) -> Revision {
        if self.keys.is_empty() {
            self.revision + 1
        } else {
            self.revision
        }
    }
}

enum Source {
    Ring { next_seq: u64 },
    Store { events: WatchStream },
}

enum RingRead {
    Events(Vec<Arc<CachedEvent>>),
    /// Nothing new yet; `closed` if nothing new will ever come.
    Empty {
        closed: bool,
    },
    /// The events this watcher needs next were evicted.
    Lagged,
}

/// One watcher's view of a kind: every event after its start revision, in order.
pub struct Subscription {
    store: Arc<dyn Store>,
    kind: Arc<KindCache>,
    cursor: Cursor,
    source: Source,
    appended: watch::Receiver<u64>,
}

impl Subscription {
    async fn start(
        store: Arc<dyn Store>,
        kind: Arc<KindCache>,
        from: Revision,
    ) -> Result<Subscription, StoreError> {
        let cursor = Cursor {
            revision: from.max(1) - 1,
            keys: Vec::new(),
        };
        let appended = kind.appended.subscribe();
        let in_ring = kind.read().seq_for(cursor.needed_from());
        let source = match in_ring {
            Some(next_seq) => Source::Ring { next_seq },
            None => {
                tracing::debug!(
                    resource = kind.plural,
                    from,
                    "watch starts before the cache; reading the store"
                );
                Source::Store {
                    events: store.watch(&kind.prefix, cursor.needed_from()).await?,
                }
            }
        };
        Ok(Subscription {
            store,
            kind,
            cursor,
            source,
            appended,
        })
    }

    /// The revision of the newest event this watcher has had (or its start revision − 1).
    pub fn last_revision(&self) -> Revision {
        self.cursor.revision
    }

    /// Reading from the ring (true) or directly from the store (false).
    pub fn from_cache(&self) -> bool {
        matches!(self.source, Source::Ring { .. })
    }

    /// The next events, in revision order, waiting until there is at least one. Errors
    /// end the subscription: `Compacted` when the events it needs are gone from the
    /// store too. Cancel-safe: every await happens before any state changes.
    pub async fn next_batch(&mut self) -> Result<Vec<Arc<CachedEvent>>, StoreError> {
        loop {
            match &mut self.source {
                Source::Ring { next_seq } => {
                    self.appended.borrow_and_update();
                    let read = read_ring(&self.kind, next_seq, &mut self.cursor);
                    match read {
                        RingRead::Events(events) => return Ok(events),
                        RingRead::Empty { closed: false } => {
                            if self.appended.changed().await.is_err() {
                                self.resync_from_store("the cache is gone").await?;
                            }
                        }
                        RingRead::Empty { closed: true } => {
                            self.resync_from_store("the cache feed ended").await?
                        }
                        RingRead::Lagged => {
                            self.resync_from_store("lagged behind the cache").await?
                        }
                    }
                }
                Source::Store { events } => {
                    let ev = match events.next().await {
                        Some(Ok(ev)) => ev,
                        Some(Err(error)) => return Err(error),
                        None => return Err(StoreError::Closed),
                    };
                    if !self.cursor.is_new(ev.revision(), &ev.kv.key) {
                        continue;
                    }
                    let cached = CachedEvent::from_store(&ev);
                    let key: Arc<str> = match &cached {
                        Some(c) => c.key.clone(),
                        None => Arc::from(ev.kv.key.as_str()),
                    };
                    self.cursor.advance(ev.revision(), &key);
                    let in_ring = self.kind.read().seq_for(self.cursor.needed_from());
                    if let Some(next_seq) = in_ring {
                        tracing::debug!(
                            resource = self.kind.plural,
                            revision = self.cursor.revision,
                            "watcher caught up; back on the cache"
                        );
                        self.source = Source::Ring { next_seq };
                    }
                    if let Some(cached) = cached {
                        return Ok(vec![Arc::new(cached)]);
                    }
                }
            }
        }
    }

    async fn resync_from_store(&mut self, why: &'static str) -> Result<(), StoreError> {
        let from = self.cursor.needed_from();
        tracing::debug!(
            resource = self.kind.plural,
            from,
            why,
            "watcher resyncs from the store"
        );
        let events = self.store.watch(&self.kind.prefix, from).await?;
        self.source = Source::Store { events };
        Ok(())
    }
}

/// Takes what the cursor has not seen from the ring, advancing both.
fn read_ring(kind: &KindCache, next_seq: &mut u64, cursor: &mut Cursor) -> RingRead {
    let ring = kind.read();
    loop {
        if *next_seq < ring.first_seq {
            return RingRead::Lagged;
        }
        let start = (*next_seq - ring.first_seq) as usize;
        if start >= ring.events.len() {
            return RingRead::Empty {
                closed: ring.closed,
            };
        }
        let end = ring.events.len().min(start + MAX_READ);
        let mut events = Vec::with_capacity(end - start);
        for ev in ring.events.range(start..end) {
            if cursor.is_new(ev.revision, &ev.key) {
                cursor.advance(ev.revision, &ev.key);
                events.push(ev.clone());
            }
        }
        *next_seq += (end - start) as u64;
        if !events.is_empty() {
            return RingRead::Events(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use drover_store::{EmbeddedStore, Op, Txn};
    use serde_json::json;

    use super::*;

    fn apps() -> &'static KindInfo {
        drover_api::KINDS
            .iter()
            .find(|k| k.plural == "apps")
            .expect("apps is a kind")
    }

    fn open() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path()).expect("open store");
        (dir, Arc::new(store))
    }

    fn app(name: &str, n: usize) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "drover.dev/v1alpha1", "kind": "App",
            "metadata": {"name": name, "namespace": "default", "labels": {"n": n.to_string()}},
            "spec": {"instances": n},
        }))
        .expect("json")
    }

    async fn put(store: &Arc<dyn Store>, name: &str, n: usize) -> Revision {
        let key = format!("/registry/drover.dev/apps/default/{name}");
        store
            .txn(Txn::new().then(Op::put(key, app(name, n))))
            .await
            .expect("put")
            .revision
    }

    /// Reads until `count` events arrived (or fails after a few seconds).
    async fn take(sub: &mut Subscription, count: usize) -> Vec<Arc<CachedEvent>> {
        let mut got = Vec::new();
        while got.len() < count {
            let batch = tokio::time::timeout(Duration::from_secs(10), sub.next_batch())
                .await
                .expect("events in time")
                .expect("no error");
            got.extend(batch);
        }
        got
    }

    fn revisions(events: &[Arc<CachedEvent>]) -> Vec<Revision> {
        events.iter().map(|e| e.revision).collect()
    }

    #[tokio::test]
    async fn many_watchers_get_every_event_in_order() {
        let (_dir, store) = open();
        let cache = WatchCache::new(store.clone());
        let from = store.current_revision().await.expect("revision") + 1;
        let mut subs = Vec::new();
        for _ in 0..50 {
            subs.push(cache.subscribe(apps(), from).await.expect("subscribe"));
        }
        let mut written = Vec::new();
        for i in 0..200 {
            written.push(put(&store, &format!("a{}", i % 7), i).await);
        }
        for sub in &mut subs {
            assert!(sub.from_cache());
            let got = take(sub, written.len()).await;
            assert_eq!(revisions(&got), written);
        }
        // One store watch for all of them: every event parsed once, shared.
        let first = take(&mut cache.subscribe(apps(), from).await.expect("sub"), 1).await;
        let again = take(&mut cache.subscribe(apps(), from).await.expect("sub"), 1).await;
        assert!(Arc::ptr_eq(&first[0], &again[0]));
    }

    #[tokio::test]
    async fn watcher_from_an_old_revision_inside_the_buffer_is_served_from_it() {
        let (_dir, store) = open();
        let cache = WatchCache::new(store.clone());
        cache.kind(apps()).await.expect("start");
        let mut written = Vec::new();
        for i in 0..20 {
            written.push(put(&store, &format!("b{i}"), i).await);
        }
        // Let the feed take everything in.
        let mut probe = cache.subscribe(apps(), written[0]).await.expect("sub");
        take(&mut probe, 20).await;

        let mut sub = cache.subscribe(apps(), written[5] + 1).await.expect("sub");
        assert!(
            sub.from_cache(),
            "revision {} is in the ring",
            written[5] + 1
        );
        let got = take(&mut sub, 14).await;
        assert_eq!(revisions(&got), written[6..]);
        assert_eq!(got[0].type_for(&no_selectors()), Some(EventType::Added));
    }

    #[tokio::test]
    async fn watcher_beyond_the_buffer_reads_the_store_then_returns_to_the_cache() {
        let (_dir, store) = open();
        let cache = WatchCache::with_capacity(store.clone(), 10);
        cache.kind(apps()).await.expect("start");
        let mut written = Vec::new();
        for i in 0..30 {
            written.push(put(&store, &format!("c{}", i % 3), i).await);
        }
        let mut probe = cache.subscribe(apps(), written[29]).await.expect("sub");
        take(&mut probe, 1).await;
        assert!(cache.kind(apps()).await.expect("kind").oldest_revision() > written[5]);

        let mut sub = cache.subscribe(apps(), written[3]).await.expect("sub");
        assert!(!sub.from_cache(), "revision {} was evicted", written[3]);
        let got = take(&mut sub, 27).await;
        assert_eq!(revisions(&got), written[3..]);
        assert!(sub.from_cache(), "back on the ring once caught up");
        assert_eq!(got[0].type_for(&no_selectors()), Some(EventType::Modified));

        let more = put(&store, "c0", 99).await;
        assert_eq!(revisions(&take(&mut sub, 1).await), vec![more]);
    }

    #[tokio::test]
    async fn lagging_watcher_resyncs_from_the_store_without_losing_events() {
        let (_dir, store) = open();
        let cache = WatchCache::with_capacity(store.clone(), 8);
        let from = store.current_revision().await.expect("revision") + 1;
        let mut slow = cache.subscribe(apps(), from).await.expect("sub");
        assert!(slow.from_cache());
        let mut written = Vec::new();
        for i in 0..40 {
            written.push(put(&store, &format!("d{i}"), i).await);
        }
        let mut probe = cache.subscribe(apps(), written[39]).await.expect("sub");
        take(&mut probe, 1).await;
        // `slow` never read while 40 events went through a ring of 8.
        assert_eq!(revisions(&take(&mut slow, 40).await), written);
        assert!(slow.from_cache(), "back on the ring once caught up");
    }

    #[tokio::test]
    async fn events_of_one_transaction_survive_a_resync() {
        let (_dir, store) = open();
        let cache = WatchCache::with_capacity(store.clone(), 2);
        let from = store.current_revision().await.expect("revision") + 1;
        let mut slow = cache.subscribe(apps(), from).await.expect("sub");
        let mut txn = Txn::new();
        for i in 0..5 {
            txn = txn.then(Op::put(
                format!("/registry/drover.dev/apps/default/t{i}"),
                app("t", i),
            ));
        }
        let rev = store.txn(txn).await.expect("txn").revision;
        let got = take(&mut slow, 5).await;
        assert_eq!(revisions(&got), vec![rev; 5]);
        let keys: std::collections::BTreeSet<_> = got.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys.len(), 5);
    }

    #[tokio::test]
    async fn compacted_start_beyond_the_buffer_is_an_error() {
        let (_dir, store) = open();
        let first = put(&store, "e0", 0).await;
        for i in 1..10 {
            put(&store, "e0", i).await;
        }
        let cache = WatchCache::new(store.clone());
        cache.kind(apps()).await.expect("start");
        let last = put(&store, "e0", 10).await;
        store.compact(last).await.expect("compact");
        let mut sub = cache.subscribe(apps(), first + 1).await.expect("sub");
        match sub.next_batch().await {
            Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, first + 1),
            other => panic!("expected Compacted, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn selectors_turn_leaving_the_selection_into_deleted() {
        let (_dir, store) = open();
        let cache = WatchCache::new(store.clone());
        let from = store.current_revision().await.expect("revision") + 1;
        let mut sub = cache.subscribe(apps(), from).await.expect("sub");
        put(&store, "f", 1).await;
        put(&store, "f", 2).await;
        store
            .delete("/registry/drover.dev/apps/default/f", None)
            .await
            .expect("delete");
        let got = take(&mut sub, 3).await;
        let q = [("labelSelector".to_string(), "n=1".to_string())]
            .into_iter()
            .collect();
        let only_one = Selectors::parse(apps(), &q).expect("selector");
        let types: Vec<_> = got.iter().map(|e| e.type_for(&only_one)).collect();
        assert_eq!(
            types,
            vec![Some(EventType::Added), Some(EventType::Deleted), None]
        );
        let all: Vec<_> = got.iter().map(|e| e.type_for(&no_selectors())).collect();
        assert_eq!(
            all,
            vec![
                Some(EventType::Added),
                Some(EventType::Modified),
                Some(EventType::Deleted)
            ]
        );
        let line = got[2].line(EventType::Deleted);
        let parsed: Value = serde_json::from_slice(&line).expect("json line");
        assert_eq!(parsed["type"], "DELETED");
        assert_eq!(
            parsed["object"]["metadata"]["resourceVersion"],
            got[2].revision.to_string()
        );
    }

    fn no_selectors() -> Selectors {
        Selectors {
            labels: None,
            fields: None,
        }
    }
}

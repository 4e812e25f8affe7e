//! Watch: newline-delimited JSON events, flushed one by one. Without a resourceVersion
//! (or "0") the current objects come first as ADDED; then changes from the kind's watch
//! cache (`watch_cache`), filtered by the selectors (an object leaving the selection is
//! DELETED for this watcher); BOOKMARKs when asked; a compacted start is a 410 ERROR
//! event, then close.
//!
//! The response body is the watcher itself (a `stream::unfold` over [`Watcher::step`]):
//! no task or queue per watcher, and a client that stops reading stops the watcher from
//! reading the cache, which then resyncs it from the store when it reads again.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use drover_api::KindInfo;
use drover_store::StoreError;
use serde_json::{json, Value};
use tokio::time::{Instant, Interval, Sleep};

use crate::apiserver::metrics::OpenWatcher;
use crate::apiserver::objects::collection_prefix;
use crate::apiserver::reads::{list_objects, store_error, Selectors};
use crate::apiserver::request::Target;
use crate::apiserver::server::{ApiState, Query};
use crate::apiserver::status::{ApiError, ApiResult};
use crate::apiserver::watch_cache::Subscription;

const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

pub async fn watch(
    state: &ApiState,
    t: &Target,
    q: &Query,
    selectors: Selectors,
) -> ApiResult<Response> {
    let rv = q
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && *r != "0");
    let timeout = match q.get("timeoutSeconds") {
        Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
            ApiError::bad_request(format!("timeoutSeconds must be a number, got {s:?}"))
        })?)),
        None => None,
    };
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let mut initial = Vec::new();
    let from = match rv {
        None => {
            // The cache first, so the list's revision is (almost always) inside it.
            state.watch_cache.kind(t.info).await.map_err(store_error)?;
            let mut all = q.clone();
            all.remove("limit");
            all.remove("continue");
            let listed = list_objects(state, t, &all, &selectors).await?;
            initial = listed.items;
            listed.revision + 1
        }
        Some(r) => {
            r.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion must be a number, got {r:?}"))
            })? + 1
        }
    };
    let subscription = state
        .watch_cache
        .subscribe(t.info, from)
        .await
        .map_err(store_error)?;
    let span = tracing::debug_span!(
        "watch",
        resource = t.info.plural,
        namespace = t.namespace.as_deref().unwrap_or(""),
        from,
    );
    tracing::debug!(parent: &span, from_cache = subscription.from_cache(), "watch opened");
    let watcher = Watcher {
        info: t.info,
        prefix: collection_prefix(t.info, t.namespace.as_deref()),
        selectors,
        subscription,
        initial: initial.into(),
        pending: VecDeque::new(),
        bookmarks: bookmarks.then(|| {
            let mut tick =
                tokio::time::interval_at(Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        }),
        deadline: timeout.map(|d| Box::pin(tokio::time::sleep(d))),
        finished: false,
        events_sent: state.metrics.watch_events(t.info.plural),
        _open: state.metrics.watcher_opened(t.info.plural),
    };
    let body = futures::stream::unfold(watcher, |mut w| async move {
        let line = w.step().await?;
        Some((Ok::<_, std::convert::Infallible>(line), w))
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// One API watch: what it selects, where it reads, and the lines it has yet to send.
struct Watcher {
    info: &'static KindInfo,
    /// The namespace's collection prefix (the cache holds every namespace).
    prefix: String,
    selectors: Selectors,
    subscription: Subscription,
    initial: VecDeque<Value>,
    pending: VecDeque<Bytes>,
    bookmarks: Option<Interval>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// An ERROR was queued: end after sending it.
    finished: bool,
    events_sent: Arc<AtomicU64>,
    _open: OpenWatcher,
}

impl Watcher {
    /// The next line to send, or `None` when the watch ends (timeout, error sent, or
    /// the store closed).
    async fn step(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                self.events_sent.fetch_add(1, Ordering::Relaxed);
                return Some(line);
            }
            if self.finished {
                return None;
            }
            if let Some(obj) = self.initial.pop_front() {
                self.pending
                    .push_back(line(&json!({"type": "ADDED", "object": obj})));
                continue;
            }
            let deadline = async {
                match &mut self.deadline {
                    Some(d) => d.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            let bookmark = async {
                match &mut self.bookmarks {
                    Some(tick) => tick.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = deadline => return None,
                _ = bookmark => {
                    let bm = json!({"type": "BOOKMARK", "object": {
                        "apiVersion": "drover.dev/v1alpha1", "kind": self.info.kind,
                        "metadata": {"resourceVersion": self.subscription.last_revision().to_string()}}});
                    self.pending.push_back(line(&bm));
                }
                batch = self.subscription.next_batch() => match batch {
                    Ok(events) => {
                        for ev in events {
                            if !ev.key.starts_with(self.prefix.as_str()) {
                                continue;
                            }
                            if let Some(kind) = ev.type_for(&self.selectors) {
                                self.pending.push_back(ev.line(kind));
                            }
                        }
                    }
                    Err(StoreError::Compacted { requested, compacted }) => {
                        let status = ApiError::expired(format!(
                            "too old resource version: {} ({compacted})",
                            requested - 1
                        ))
                        .to_status();
                        self.pending.push_back(line(&json!({"type": "ERROR", "object": status})));
                        self.finished = true;
                    }
                    Err(StoreError::Closed) => return None,
                    Err(e) => {
                        tracing::warn!(resource = self.info.plural, error = %e, "watch ended by a store error");
                        let status = store_error(e).to_status();
                        self.pending.push_back(line(&json!({"type": "ERROR", "object": status})));
                        self.finished = true;
                    }
                },
            }
        }
    }
}

fn line(v: &Value) -> Bytes {
    let mut line = v.to_string();
    line.push('\n');
    Bytes::from(line)
}

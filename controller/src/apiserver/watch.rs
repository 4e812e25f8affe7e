//! Watch: newline-delimited JSON events, flushed one by one. Without a resourceVersion
//! (or "0") the current objects come first as ADDED; then changes from the store watch,
//! filtered by the selectors (an object leaving the selection is DELETED for this
//! watcher); BOOKMARKs when asked; a compacted start is a 410 ERROR event, then close.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use drover_api::KindInfo;
use drover_store::{EventKind, StoreError, WatchEvent};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::apiserver::objects::{collection_prefix, from_stored, set_resource_version};
use crate::apiserver::reads::{list_objects, store_error, Selectors};
use crate::apiserver::request::Target;
use crate::apiserver::server::{ApiState, Query};
use crate::apiserver::status::{ApiError, ApiResult};

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
    let prefix = collection_prefix(t.info, t.namespace.as_deref());
    let mut events = state
        .store
        .watch(&prefix, from)
        .await
        .map_err(store_error)?;
    let info = t.info;
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(async move {
        let send = |v: Value| {
            let mut line = v.to_string();
            line.push('\n');
            Ok(Bytes::from(line))
        };
        for obj in initial {
            if tx
                .send(send(json!({"type": "ADDED", "object": obj})))
                .await
                .is_err()
            {
                return;
            }
        }
        let mut last = from - 1;
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        loop {
            let sleep_until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"type": "BOOKMARK", "object": {
                        "apiVersion": "drover.dev/v1alpha1", "kind": info.kind,
                        "metadata": {"resourceVersion": last.to_string()}}});
                    if tx.send(send(bm)).await.is_err() { return; }
                }
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        last = ev.revision();
                        if let Some(line) = event_json(info, &ev, &selectors) {
                            if tx.send(send(line)).await.is_err() { return; }
                        }
                    }
                    Some(Err(StoreError::Compacted { requested, compacted })) => {
                        let status = ApiError::expired(format!("too old resource version: {} ({compacted})", requested - 1)).to_status();
                        let _ = tx.send(send(json!({"type": "ERROR", "object": status}))).await;
                        return;
                    }
                    Some(Err(e)) => {
                        let status = store_error(e).to_status();
                        let _ = tx.send(send(json!({"type": "ERROR", "object": status}))).await;
                        return;
                    }
                    None => return,
                },
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The event a watcher with these selectors sees, if any.
fn event_json(info: &KindInfo, ev: &WatchEvent, selectors: &Selectors) -> Option<Value> {
    let _ = info;
    let prev = ev.prev.as_ref().and_then(|p| from_stored(p).ok());
    let prev_matches = prev.as_ref().map(|p| selectors.matches(p));
    match ev.kind {
        EventKind::Put => {
            let obj = from_stored(&ev.kv).ok()?;
            let now_matches = selectors.matches(&obj);
            let kind = match (prev_matches, now_matches) {
                (None, true) | (Some(false), true) => "ADDED",
                (Some(true), true) => "MODIFIED",
                (Some(true), false) => "DELETED",
                _ => return None,
            };
            Some(json!({"type": kind, "object": obj}))
        }
        EventKind::Delete => {
            let mut obj = prev?;
            if prev_matches != Some(true) {
                return None;
            }
            set_resource_version(&mut obj, ev.revision());
            Some(json!({"type": "DELETED", "object": obj}))
        }
    }
}

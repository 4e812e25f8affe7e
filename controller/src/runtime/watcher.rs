//! A watcher over one kind in the store: list, then watch from the list's revision; on
//! compaction (the watch fell too far behind) list again and say so. An explicit state
//! machine advanced by one `step` inside `stream::unfold`; errors are items.

use std::sync::Arc;

use drover_api::{DroverKind, KindInfo};
use drover_store::{EventKind, ListOptions, Store, StoreError, WatchStream};
use futures::{Stream, StreamExt};

use crate::runtime::object::{decode, DecodeError};

/// What a watcher tells its consumer.
#[derive(Debug)]
pub enum Event<K> {
    /// The complete current state: replaces everything known before.
    Restarted(Vec<K>),
    Applied(K),
    Deleted(K),
}

#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    #[error("listing {kind}: {source}")]
    List {
        kind: &'static str,
        source: StoreError,
    },
    #[error("watching {kind}: {source}")]
    Watch {
        kind: &'static str,
        source: StoreError,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

enum State {
    /// Next: list everything.
    Empty,
    /// Next: start a watch after `revision`.
    Listed { revision: i64 },
    /// Following changes.
    Watching { stream: WatchStream },
}

/// The store prefix of a kind, across namespaces.
pub fn prefix(info: &KindInfo) -> String {
    crate::apiserver::objects::collection_prefix(info, None)
}

/// The watcher's events for kind `K`.
pub fn watcher<K: DroverKind>(
    store: Arc<dyn Store>,
    info: &'static KindInfo,
) -> impl Stream<Item = Result<Event<K>, WatcherError>> + Send {
    futures::stream::unfold((State::Empty, store), move |(state, store)| async move {
        let (item, next) = step::<K>(state, &store, info).await;
        Some((item, (next, store)))
    })
    .filter_map(|item| async move { item })
}

async fn step<K: DroverKind>(
    state: State,
    store: &Arc<dyn Store>,
    info: &'static KindInfo,
) -> (Option<Result<Event<K>, WatcherError>>, State) {
    let kind = info.kind;
    match state {
        State::Empty => match list_all::<K>(store, info).await {
            Ok((objects, revision)) => (
                Some(Ok(Event::Restarted(objects))),
                State::Listed { revision },
            ),
            Err(e) => {
                // Backing off is the consumer's business; do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                (Some(Err(e)), State::Empty)
            }
        },
        State::Listed { revision } => match store.watch(&prefix(info), revision + 1).await {
            Ok(stream) => (None, State::Watching { stream }),
            Err(source) => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                (
                    Some(Err(WatcherError::Watch { kind, source })),
                    State::Listed { revision },
                )
            }
        },
        State::Watching { mut stream } => match stream.next().await {
            Some(Ok(ev)) => {
                let item = match ev.kind {
                    EventKind::Put => decode::<K>(&ev.kv).map(Event::Applied),
                    EventKind::Delete => match &ev.prev {
                        Some(prev) => decode::<K>(prev).map(Event::Deleted),
                        None => return (None, State::Watching { stream }),
                    },
                };
                (
                    Some(item.map_err(WatcherError::from)),
                    State::Watching { stream },
                )
            }
            Some(Err(StoreError::Compacted { .. })) => {
                tracing::debug!(kind, "watch compacted; re-listing");
                (None, State::Empty)
            }
            Some(Err(source)) => (
                Some(Err(WatcherError::Watch { kind, source })),
                State::Empty,
            ),
            None => (None, State::Empty),
        },
    }
}

async fn list_all<K: DroverKind>(
    store: &Arc<dyn Store>,
    info: &'static KindInfo,
) -> Result<(Vec<K>, i64), WatcherError> {
    let kind = info.kind;
    let mut opts = ListOptions::limit(5000);
    let mut out = Vec::new();
    loop {
        let page = store
            .list(&prefix(info), opts.clone())
            .await
            .map_err(|source| WatcherError::List { kind, source })?;
        let revision = page.revision;
        for kv in &page.items {
            match decode::<K>(kv) {
                Ok(obj) => out.push(obj),
                // One bad object must not stop the controller seeing the others.
                Err(e) => tracing::warn!(error = %e, "skipping an object that does not decode"),
            }
        }
        match page.continue_token {
            Some(token) => opts.continue_token = Some(token),
            None => return Ok((out, revision)),
        }
    }
}

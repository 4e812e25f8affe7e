//! Watch fan-out: every watcher subscribes to the writer's broadcast first, then replays
//! history from its start revision, then follows live events — so nothing falls between
//! replay and live. A watcher that lags behind the broadcast replays again.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::embedded::Shared;
use crate::error::StoreError;
use crate::kv::{Revision, WatchEvent, WatchStream};

const WATCHER_BUFFER: usize = 1024;

pub(crate) fn start(shared: Arc<Shared>, prefix: String, from: Revision) -> WatchStream {
    let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
    let live = shared.events.subscribe();
    tokio::spawn(async move {
        if let Err(e) = run(shared, prefix, from, live, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

type Out = mpsc::Sender<Result<WatchEvent, StoreError>>;

/// Ends when the receiver goes away (Ok) or on an error to report.
async fn run(
    shared: Arc<Shared>,
    prefix: String,
    from: Revision,
    mut live: broadcast::Receiver<Arc<super::Published>>,
    tx: &Out,
) -> Result<(), StoreError> {
    let mut next = if from > 0 {
        from
    } else {
        // Subscribed already, so everything after this revision arrives live.
        shared.durable.load(std::sync::atomic::Ordering::Acquire) + 1
    };
    let Some(n) = replay(&shared, &prefix, next, tx).await? else {
        return Ok(());
    };
    next = n;
    loop {
        let msg = tokio::select! {
            _ = tx.closed() => return Ok(()),
            msg = live.recv() => msg,
        };
        match msg {
            Ok(published) if !published.complete && published.last_revision >= next => {
                match replay(&shared, &prefix, next, tx).await? {
                    Some(n) => next = n,
                    None => return Ok(()),
                }
            }
            Ok(published) => {
                for ev in &published.events {
                    if ev.revision() >= next
                        && ev.kv.key.starts_with(&prefix)
                        && tx.send(Ok(ev.clone())).await.is_err()
                    {
                        return Ok(());
                    }
                }
                next = next.max(published.last_revision + 1);
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, prefix, "watcher lagged; replaying from the store");
                match replay(&shared, &prefix, next, tx).await? {
                    Some(n) => next = n,
                    None => return Ok(()),
                }
            }
            Err(broadcast::error::RecvError::Closed) => return Err(StoreError::Closed),
        }
    }
}

/// Sends history from `from`; returns the next revision to expect, or None if the
/// receiver is gone.
async fn replay(
    shared: &Arc<Shared>,
    prefix: &str,
    from: Revision,
    tx: &Out,
) -> Result<Option<Revision>, StoreError> {
    let (events, current) = {
        let (mem, durable) = shared.read();
        (mem.history(prefix, from, durable)?, durable)
    };
    for ev in events {
        if tx.send(Ok(ev)).await.is_err() {
            return Ok(None);
        }
    }
    Ok(Some(from.max(current + 1)))
}

//! Watches the Tasks bound to this node (`fieldSelector=spec.nodeName=<node>`, all
//! namespaces): list, then watch from the list's revision; a 410 Gone re-lists. The
//! watcher is an explicit state advanced by one `step()` inside `stream::unfold`.

use std::time::Duration;

use drover_api::Task;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use kube::api::{DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::Api;

use crate::client::decode;
use crate::error::Error;

/// What the agent learns about its Tasks.
#[derive(Debug)]
pub enum TaskEvent {
    /// The complete set bound to the node (after a list or re-list).
    Listed(Vec<Task>),
    /// A Task was added or changed.
    Applied(Task),
    /// A Task was deleted.
    Deleted(Task),
}

enum State {
    /// Must list (first time, after a 410, or after an error).
    Empty { pause: bool },
    /// Must open a watch from this revision.
    Resume { revision: String },
    /// Watching.
    Watching {
        revision: String,
        stream: BoxStream<'static, kube::Result<WatchEvent<DynamicObject>>>,
    },
}

struct Watcher {
    api: Api<DynamicObject>,
    selector: String,
    retry: Duration,
}

/// Tasks bound to `node`, forever. Errors are items (the stream re-lists after them).
pub fn watch_tasks(
    api: Api<DynamicObject>,
    node: &str,
    retry: Duration,
) -> impl Stream<Item = Result<TaskEvent, Error>> + Send {
    let watcher = Watcher {
        api,
        selector: format!("spec.nodeName={node}"),
        retry,
    };
    stream::unfold(
        (watcher, State::Empty { pause: false }),
        |(watcher, state)| async move {
            let (item, next) = watcher.step(state).await;
            Some((item, (watcher, next)))
        },
    )
    .filter_map(|item| async move { item })
}

fn decode_tasks(objects: Vec<DynamicObject>) -> Vec<Task> {
    objects.into_iter().filter_map(decode_or_warn).collect()
}

fn decode_or_warn(obj: DynamicObject) -> Option<Task> {
    match decode::<Task>(obj) {
        Ok(t) => Some(t),
        Err(error) => {
            tracing::warn!(%error, "ignoring a task that does not decode");
            None
        }
    }
}

impl Watcher {
    async fn step(&self, state: State) -> (Option<Result<TaskEvent, Error>>, State) {
        match state {
            State::Empty { pause } => {
                if pause {
                    tokio::time::sleep(self.retry).await;
                }
                let lp = ListParams::default().fields(&self.selector);
                match self.api.list(&lp).await {
                    Ok(list) => {
                        let revision = list.metadata.resource_version.clone().unwrap_or_default();
                        let tasks = decode_tasks(list.items);
                        tracing::debug!(count = tasks.len(), %revision, "listed tasks");
                        (
                            Some(Ok(TaskEvent::Listed(tasks))),
                            State::Resume { revision },
                        )
                    }
                    Err(e) => (Some(Err(e.into())), State::Empty { pause: true }),
                }
            }
            State::Resume { revision } => {
                let wp = WatchParams::default().fields(&self.selector).timeout(290);
                match self.api.watch(&wp, &revision).await {
                    Ok(stream) => (
                        None,
                        State::Watching {
                            revision,
                            stream: stream.boxed(),
                        },
                    ),
                    Err(kube::Error::Api(s)) if s.code == 410 => {
                        (None, State::Empty { pause: false })
                    }
                    Err(e) => (Some(Err(e.into())), State::Empty { pause: true }),
                }
            }
            State::Watching {
                mut revision,
                mut stream,
            } => {
                let event = match stream.next().await {
                    // The server closed the watch (timeout): resume where we were.
                    None => return (None, State::Resume { revision }),
                    Some(Err(e)) => return (Some(Err(e.into())), State::Empty { pause: true }),
                    Some(Ok(event)) => event,
                };
                let item = match event {
                    WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
                        if let Some(rv) = &obj.metadata.resource_version {
                            revision.clone_from(rv);
                        }
                        decode_or_warn(obj).map(TaskEvent::Applied)
                    }
                    WatchEvent::Deleted(obj) => {
                        if let Some(rv) = &obj.metadata.resource_version {
                            revision.clone_from(rv);
                        }
                        decode_or_warn(obj).map(TaskEvent::Deleted)
                    }
                    WatchEvent::Bookmark(b) => {
                        revision = b.metadata.resource_version;
                        None
                    }
                    WatchEvent::Error(s) if s.code == 410 => {
                        tracing::debug!("watch expired (410): re-listing");
                        return (None, State::Empty { pause: false });
                    }
                    WatchEvent::Error(s) => {
                        return (
                            Some(Err(Error::Kube(kube::Error::Api(s)))),
                            State::Empty { pause: true },
                        )
                    }
                };
                (item.map(Ok), State::Watching { revision, stream })
            }
        }
    }
}

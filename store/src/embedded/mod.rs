//! The embedded backend: a redb file with MVCC history, one writer thread doing group
//! commit (fsync before any acknowledgement), and in-memory watch fan-out.
//!
//! `record` encodes versions, `tables` names the redb tables, `writer` owns every
//! mutation, `read` serves gets, lists and history, `watch` fans events out.

mod datadir;
mod index;
mod read;
mod record;
mod tables;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use redb::Database;
use tokio::sync::{broadcast, oneshot};

use crate::error::{StoreError, StoreResult};
use crate::kv::{LeaseId, ListOptions, ListPage, Revision, Txn, TxnOutcome, WatchStream};
use crate::store::Store;
use crate::KeyValue;
use writer::{LeaseMap, Published, Request, Writer};

/// How the embedded store is tuned.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Revisions of history kept for watches and old reads; older ones are compacted
    /// automatically (0 = never compact automatically).
    pub history_revisions: u64,
    /// redb's page cache.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history_revisions: 100_000,
            cache_bytes: 256 << 20,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) db: Database,
    pub(crate) events: broadcast::Sender<Arc<Published>>,
    pub(crate) leases: Mutex<LeaseMap>,
    pub(crate) revision: AtomicI64,
    pub(crate) compacted: AtomicI64,
}

/// The default store: one file, `<dir>/drover.redb`.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or initialises) the store in `dir`. A foreign or corrupt directory is an
    /// error naming the path; nothing is ever reset.
    pub fn open(dir: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, opts: EmbeddedOptions) -> StoreResult<Self> {
        let opened = datadir::open(dir.as_ref(), &opts)?;
        let leases = opened
            .leases
            .iter()
            .map(|&(id, ttl)| (id, writer::LeaseState::new(ttl, Instant::now())))
            .collect();
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            db: opened.db,
            events,
            leases: Mutex::new(leases),
            revision: AtomicI64::new(opened.revision),
            compacted: AtomicI64::new(opened.compacted),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            shared.clone(),
            rx,
            opened.revision,
            opened.compacted,
            opened.lease_seq,
            opts.history_revisions,
            index::Index::load(&shared.db)?,
        );
        std::thread::Builder::new()
            .name("drover-store-writer".into())
            .spawn(move || writer.run())?;
        tracing::info!(path = %opened.path.display(), revision = opened.revision, "embedded store open");
        Ok(EmbeddedStore {
            shared,
            requests: tx,
            path: opened.path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Request,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        read::get(&self.shared.db, key)
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListPage> {
        let shared = self.shared.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || read::list(&shared.db, &prefix, &opts))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    async fn txn(&self, txn: Txn) -> StoreResult<TxnOutcome> {
        self.request(|tx| Request::Txn(txn, tx)).await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> StoreResult<WatchStream> {
        Ok(watch::start(
            self.shared.clone(),
            prefix.to_string(),
            from_revision,
        ))
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        self.request(|tx| Request::Compact(revision, tx)).await
    }

    async fn current_revision(&self) -> StoreResult<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn grant_lease(&self, ttl_seconds: i64) -> StoreResult<LeaseId> {
        self.request(|tx| Request::Grant(ttl_seconds, tx)).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<i64> {
        let mut leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
        match leases.get_mut(&lease) {
            Some(state) if state.deadline > Instant::now() => {
                *state = writer::LeaseState::new(state.ttl, Instant::now());
                Ok(state.ttl)
            }
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> StoreResult<()> {
        self.request(|tx| Request::Revoke(lease, tx)).await
    }
}

//! The embedded backend: the whole MVCC state in memory (as etcd keeps its key index),
//! made durable by a write-ahead log with group commit — one `fdatasync` for every
//! request waiting, before any of them is acknowledged — and periodic snapshots.
//!
//! `mvcc` holds the state, `writer` owns every mutation, `wal` and `snapshot` are the
//! files, `datadir` opens and recovers a directory, `watch` fans events out.

mod codec;
mod datadir;
mod mvcc;
mod snapshot;
mod wal;
mod watch;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};

use crate::error::{StoreError, StoreResult};
use crate::kv::{KeyValue, LeaseId, ListOptions, ListPage, Revision, Txn, TxnOutcome, WatchStream};
use crate::store::Store;
use mvcc::Mem;
use writer::{LeaseMap, LeaseState, Published, Request, Writer, WriterConfig};

/// How the embedded store is tuned.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Revisions of history kept for watches and old reads; older ones are compacted
    /// automatically (0 = never compact automatically).
    pub history_revisions: u64,
    /// Write a snapshot (and drop the WAL before it) after this many WAL bytes — or,
    /// when the last snapshot is larger, after as many WAL bytes as it holds.
    pub snapshot_wal_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history_revisions: 100_000,
            snapshot_wal_bytes: 256 << 20,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) mem: RwLock<Mem>,
    /// The newest revision written to the WAL and fsynced; readers see up to here.
    pub(crate) durable: AtomicI64,
    pub(crate) events: broadcast::Sender<Arc<Published>>,
    pub(crate) leases: Mutex<LeaseMap>,
}

impl Shared {
    fn read(&self) -> (std::sync::RwLockReadGuard<'_, Mem>, Revision) {
        let mem = self.mem.read().unwrap_or_else(|p| p.into_inner());
        // Loaded under the lock: every revision up to it is fully applied.
        let durable = self.durable.load(Ordering::Acquire);
        (mem, durable)
    }
}

/// The default store, in one directory.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    dir: PathBuf,
    _lock: File,
}

impl EmbeddedStore {
    /// Opens (or initialises) the store in `dir`. A foreign, corrupt or busy directory is
    /// an error naming the path; nothing is ever reset.
    pub fn open(dir: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, opts: EmbeddedOptions) -> StoreResult<Self> {
        let started = Instant::now();
        let opened = datadir::open(dir.as_ref())?;
        let now = Instant::now();
        let leases = opened
            .mem
            .leases
            .iter()
            .map(|(&id, &ttl)| (id, LeaseState::new(ttl, now)))
            .collect();
        let revision = opened.mem.revision;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            mem: RwLock::new(opened.mem),
            durable: AtomicI64::new(revision),
            events,
            leases: Mutex::new(leases),
        });
        let (tx, rx) = mpsc::channel();
        let config = WriterConfig {
            history_revisions: opts.history_revisions,
            snapshot_wal_bytes: opts.snapshot_wal_bytes,
        };
        let writer = Writer::new(shared.clone(), rx, opened.wal, opened.dir.clone(), config);
        std::thread::Builder::new()
            .name("drover-store-writer".into())
            .spawn(move || writer.run())?;
        tracing::info!(
            dir = %opened.dir.display(),
            revision,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded store open"
        );
        Ok(EmbeddedStore {
            shared,
            requests: tx,
            dir: opened.dir,
            _lock: opened.lock,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let (mem, durable) = self.shared.read();
        Ok(mem.get(key, durable))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListPage> {
        let shared = self.shared.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let (mem, durable) = shared.read();
            mem.list(&prefix, &opts, durable)
        })
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
        Ok(self.shared.durable.load(Ordering::Acquire))
    }

    async fn grant_lease(&self, ttl_seconds: i64) -> StoreResult<LeaseId> {
        self.request(|tx| Request::Grant(ttl_seconds, tx)).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<i64> {
        let mut leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
        match leases.get_mut(&lease) {
            Some(state) if state.deadline > Instant::now() => {
                *state = LeaseState::new(state.ttl, Instant::now());
                Ok(state.ttl)
            }
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> StoreResult<()> {
        self.request(|tx| Request::Revoke(lease, tx)).await
    }
}

//! The single writer thread: drains every request waiting, applies them to the in-memory
//! state, appends the group to the WAL with one `fdatasync` (group commit), then makes
//! the group visible, publishes its events and acknowledges. It also expires leases,
//! compacts history beyond the window, and hands snapshots to a background thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::embedded::mvcc::{Mem, Mutation, WriteOp};
use crate::embedded::wal::{segments, Wal};
use crate::embedded::{snapshot, Shared};
use crate::error::{StoreError, StoreResult};
use crate::kv::{Compare, LeaseId, Op, Revision, Txn, TxnOutcome, WatchEvent};

/// Most operations one group commit takes before it commits.
const MAX_GROUP_OPS: usize = 20_000;

pub(crate) type Reply<T> = oneshot::Sender<StoreResult<T>>;

pub(crate) enum Request {
    Txn(Txn, Reply<TxnOutcome>),
    Grant(i64, Reply<LeaseId>),
    Revoke(LeaseId, Reply<()>),
    Compact(Revision, Reply<()>),
}

impl Request {
    fn weight(&self) -> usize {
        match self {
            Request::Txn(t, _) => t.ops.len().max(1),
            _ => 1,
        }
    }
}

/// Events of one group commit, in revision order. With nobody watching when the group
/// began, `events` is left empty and `complete` false: a watcher that subscribed
/// meanwhile reads those revisions from memory instead.
pub(crate) struct Published {
    pub events: Vec<WatchEvent>,
    pub complete: bool,
    pub last_revision: Revision,
}

enum Answer {
    Txn(Reply<TxnOutcome>, StoreResult<TxnOutcome>),
    Grant(Reply<LeaseId>, StoreResult<LeaseId>),
    Unit(Reply<()>, StoreResult<()>),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Txn(tx, r) => drop(tx.send(r)),
            Answer::Grant(tx, r) => drop(tx.send(r)),
            Answer::Unit(tx, r) => drop(tx.send(r)),
        }
    }

    /// The group could not be made durable: whatever was decided, nothing was written.
    fn fail(self, msg: &str) {
        let err = || StoreError::CommitFailed(msg.to_string());
        match self {
            Answer::Txn(tx, _) => drop(tx.send(Err(err()))),
            Answer::Grant(tx, _) => drop(tx.send(Err(err()))),
            Answer::Unit(tx, _) => drop(tx.send(Err(err()))),
        }
    }
}

pub(crate) struct WriterConfig {
    pub history_revisions: u64,
    pub snapshot_wal_bytes: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    wal: Wal,
    dir: PathBuf,
    config: WriterConfig,
    snapshotting: Arc<AtomicBool>,
    /// The size of the newest snapshot file: the next one waits for at least as many WAL
    /// bytes, so snapshotting a growing store costs amortised O(1) per write (as Redis's
    /// AOF rewrite at 100 % growth) instead of rewriting the whole state every
    /// `snapshot_wal_bytes`.
    snapshot_bytes: Arc<AtomicU64>,
    /// Set when the WAL could not be written: the store refuses writes from then on
    /// (after a failed fsync the page cache cannot be trusted), reads go on.
    failed: Option<String>,
    /// Group commits that wrote the WAL (one fsync each), and the requests they held
    /// (read-only and failed-compare transactions among them).
    syncs: u64,
    synced_requests: u64,
}

/// One group being applied.
struct Group {
    mutations: Vec<Mutation>,
    events: Option<Vec<WatchEvent>>,
    answers: Vec<Answer>,
    granted: Vec<(LeaseId, i64)>,
    revoked: Vec<LeaseId>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Request>,
        wal: Wal,
        dir: PathBuf,
        config: WriterConfig,
    ) -> Self {
        let snapshot_bytes = std::fs::metadata(dir.join(snapshot::FILE)).map_or(0, |m| m.len());
        Writer {
            shared,
            rx,
            wal,
            dir,
            config,
            snapshotting: Arc::new(AtomicBool::new(false)),
            snapshot_bytes: Arc::new(AtomicU64::new(snapshot_bytes)),
            failed: None,
            syncs: 0,
            synced_requests: 0,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            let mut group = Vec::new();
            let mut weight = 0;
            match self.rx.recv_timeout(self.until_next_expiry()) {
                Ok(req) => {
                    weight += req.weight();
                    group.push(req);
                    while weight < MAX_GROUP_OPS {
                        match self.rx.try_recv() {
                            Ok(req) => {
                                weight += req.weight();
                                group.push(req);
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let expired = self.expired_leases();
            if group.is_empty() && expired.is_empty() {
                continue;
            }
            self.commit_group(group, expired);
            self.maybe_compact();
            self.maybe_snapshot();
        }
        tracing::debug!(
            fsyncs = self.syncs,
            requests_per_fsync = self.synced_requests as f64 / self.syncs.max(1) as f64,
            "embedded store writer stopped"
        );
    }

    fn until_next_expiry(&self) -> Duration {
        let leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        leases
            .values()
            .map(|l| l.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1))
    }

    fn expired_leases(&self) -> Vec<LeaseId> {
        let leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    fn commit_group(&mut self, requests: Vec<Request>, expired: Vec<LeaseId>) {
        if let Some(msg) = &self.failed {
            for req in requests {
                refuse(req, msg);
            }
            return;
        }
        let mut g = Group {
            mutations: Vec::new(),
            events: (self.shared.events.receiver_count() > 0).then(Vec::new),
            answers: Vec::with_capacity(requests.len()),
            granted: Vec::new(),
            revoked: Vec::new(),
        };
        let revision = {
            let mut mem = self.shared.mem.write().unwrap_or_else(|p| p.into_inner());
            for req in requests {
                let answer = match req {
                    Request::Txn(txn, reply) => Answer::Txn(reply, txn_in(&mut mem, &mut g, txn)),
                    Request::Grant(ttl, reply) => {
                        Answer::Grant(reply, grant_in(&mut mem, &mut g, ttl))
                    }
                    Request::Revoke(id, reply) => {
                        Answer::Unit(reply, revoke_in(&mut mem, &mut g, id))
                    }
                    Request::Compact(at, reply) => {
                        Answer::Unit(reply, compact_in(&mut mem, &mut g, at))
                    }
                };
                g.answers.push(answer);
            }
            for id in expired {
                if mem.leases.contains_key(&id) {
                    tracing::debug!(lease = id, "lease expired");
                    let _ = revoke_in(&mut mem, &mut g, id);
                } else {
                    g.revoked.push(id);
                }
            }
            mem.revision
        };
        if !g.mutations.is_empty() {
            if let Err(e) = self.wal.append(&g.mutations) {
                let msg = format!("the write-ahead log could not be written ({e}); the store refuses writes until it is reopened");
                tracing::error!(error = %e, "embedded store WAL append failed");
                for a in g.answers {
                    a.fail(&msg);
                }
                self.failed = Some(msg);
                return;
            }
            self.syncs += 1;
            self.synced_requests += g.answers.len() as u64;
        }
        // Durable: make it visible.
        let published = Published {
            complete: g.events.is_some(),
            events: g.events.unwrap_or_default(),
            last_revision: revision,
        };
        let advanced = revision > self.shared.durable.load(Ordering::Acquire);
        self.shared.durable.store(revision, Ordering::Release);
        {
            let mut leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            for (id, ttl) in g.granted {
                leases.insert(id, LeaseState::new(ttl, now));
            }
            for id in g.revoked {
                leases.remove(&id);
            }
        }
        if advanced {
            // No receivers is fine: nobody watches.
            let _ = self.shared.events.send(Arc::new(published));
        }
        for a in g.answers {
            a.send();
        }
    }

    fn maybe_compact(&mut self) {
        let window = self.config.history_revisions as i64;
        let (revision, compacted) = {
            let mem = self.shared.mem.read().unwrap_or_else(|p| p.into_inner());
            (mem.revision, mem.compacted)
        };
        if window == 0 || revision - compacted <= 2 * window {
            return;
        }
        let (tx, _rx) = oneshot::channel();
        self.commit_group(vec![Request::Compact(revision - window, tx)], Vec::new());
    }

    /// Once enough WAL has piled up: rotate to a new segment, copy the state (values are
    /// shared, so the copy is cheap) and write it out on another thread.
    fn maybe_snapshot(&mut self) {
        if self.failed.is_some()
            || self.wal.bytes_since_snapshot
                < self
                    .config
                    .snapshot_wal_bytes
                    .max(self.snapshot_bytes.load(Ordering::Acquire))
            || self.snapshotting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let next = match self.wal.rotate() {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(error = %e, "could not start a new WAL segment; snapshot postponed");
                self.snapshotting.store(false, Ordering::Release);
                return;
            }
        };
        let copy = self
            .shared
            .mem
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .freeze();
        let dir = self.dir.clone();
        let busy = self.snapshotting.clone();
        let size = self.snapshot_bytes.clone();
        let spawned = std::thread::Builder::new()
            .name("drover-store-snapshot".into())
            .spawn(move || {
                background_priority();
                let started = Instant::now();
                match snapshot::write(&dir, &copy, next) {
                    Ok(bytes) => {
                        size.store(bytes, Ordering::Release);
                        if let Ok(segs) = segments(&dir) {
                            for (_, path) in segs.into_iter().filter(|(s, _)| *s < next) {
                                let _ = std::fs::remove_file(path);
                            }
                        }
                        tracing::debug!(
                            revision = copy.revision,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "snapshot written"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "snapshot failed; the WAL is kept"),
                }
                busy.store(false, Ordering::Release);
            });
        match spawned {
            Ok(_) => self.wal.bytes_since_snapshot = 0,
            Err(e) => {
                tracing::warn!(error = %e, "could not start the snapshot thread");
                self.snapshotting.store(false, Ordering::Release);
            }
        }
    }
}

/// Lowers the calling thread's CPU priority (nice 10): a snapshot is background work
/// and should take the CPU the writer and the store's users leave, not share it with
/// them (as RocksDB lowers its compaction threads'). Linux's nice value is per thread.
fn background_priority() {
    // `None`: the calling thread (Linux's PRIO_PROCESS with who = 0). Failure only
    // leaves the priority as it was.
    let _ = rustix::process::setpriority_process(None, 10);
}

fn refuse(req: Request, msg: &str) {
    let answer = match req {
        Request::Txn(_, r) => Answer::Txn(r, Err(StoreError::Closed)),
        Request::Grant(_, r) => Answer::Grant(r, Err(StoreError::Closed)),
        Request::Revoke(_, r) | Request::Compact(_, r) => Answer::Unit(r, Err(StoreError::Closed)),
    };
    answer.fail(msg);
}

fn txn_in(mem: &mut Mem, g: &mut Group, txn: Txn) -> StoreResult<TxnOutcome> {
    txn.check()?;
    for c in &txn.compares {
        let current = mem.live(c.key());
        let holds = match c {
            Compare::ModRevision { equals, .. } => {
                current.map(|(rev, _)| rev).unwrap_or(0) == *equals
            }
            Compare::Exists { .. } => current.is_some(),
        };
        if !holds {
            return Ok(TxnOutcome {
                succeeded: false,
                revision: mem.revision,
            });
        }
    }
    for op in &txn.ops {
        if let Op::Put { lease, .. } = op {
            if *lease != 0 && !mem.leases.contains_key(lease) {
                return Err(StoreError::LeaseNotFound(*lease));
            }
        }
    }
    let changes = txn.ops.iter().any(|op| match op {
        Op::Put { .. } => true,
        Op::Delete { key } => mem.live(key).is_some(),
    });
    if !changes {
        return Ok(TxnOutcome {
            succeeded: true,
            revision: mem.revision,
        });
    }
    let revision = mem.revision + 1;
    // The request's keys and values move into the log entry; nothing is copied.
    let ops = txn
        .ops
        .into_iter()
        .map(|op| match op {
            Op::Put { key, value, lease } => WriteOp::Put { key, value, lease },
            Op::Delete { key } => WriteOp::Delete { key },
        })
        .collect();
    push(mem, g, Mutation::Write { revision, ops });
    Ok(TxnOutcome {
        succeeded: true,
        revision,
    })
}

fn grant_in(mem: &mut Mem, g: &mut Group, ttl: i64) -> StoreResult<LeaseId> {
    if ttl <= 0 {
        return Err(StoreError::InvalidTxn(format!(
            "lease TTL must be > 0 seconds, got {ttl}"
        )));
    }
    let id = mem.lease_seq + 1;
    push(mem, g, Mutation::Grant { id, ttl });
    g.granted.push((id, ttl));
    Ok(id)
}

fn revoke_in(mem: &mut Mem, g: &mut Group, id: LeaseId) -> StoreResult<()> {
    if !mem.leases.contains_key(&id) {
        return Err(StoreError::LeaseNotFound(id));
    }
    let has_keys = mem.lease_keys.get(&id).is_some_and(|keys| !keys.is_empty());
    let revision = if has_keys { mem.revision + 1 } else { 0 };
    push(mem, g, Mutation::Revoke { id, revision });
    g.revoked.push(id);
    Ok(())
}

fn compact_in(mem: &mut Mem, g: &mut Group, at: Revision) -> StoreResult<()> {
    if at > mem.revision {
        return Err(StoreError::FutureRevision {
            requested: at,
            current: mem.revision,
        });
    }
    if at > mem.compacted {
        push(mem, g, Mutation::Compact { at });
        tracing::debug!(revision = at, "compacted");
    }
    Ok(())
}

fn push(mem: &mut Mem, g: &mut Group, m: Mutation) {
    mem.apply(&m, g.events.as_mut());
    g.mutations.push(m);
}

/// A lease's TTL and when it runs out, kept in memory; on reopen every lease gets a full TTL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseState {
    pub ttl: i64,
    pub deadline: Instant,
}

impl LeaseState {
    pub(crate) fn new(ttl: i64, now: Instant) -> Self {
        LeaseState {
            ttl,
            deadline: now + Duration::from_secs(ttl.max(0) as u64),
        }
    }
}

pub(crate) type LeaseMap = HashMap<LeaseId, LeaseState>;

//! The single writer thread: drains every request waiting, applies them in one redb write
//! transaction, fsyncs once (group commit), publishes the events, then acknowledges.
//! It also expires leases and runs compaction, so all mutations are serialised here.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use crate::embedded::index::{Index, Live};
use crate::embedded::record::{encode_keys, encode_put, Record, TOMBSTONE};
use crate::embedded::tables::*;
use crate::embedded::Shared;
use crate::error::{StoreError, StoreResult};
use crate::kv::{Compare, EventKind, KeyValue, LeaseId, Op, Revision, Txn, TxnOutcome, WatchEvent};

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
/// began, `events` is left empty and `complete` false: a watcher that subscribed meanwhile
/// reads those revisions from disk instead.
pub(crate) struct Published {
    pub events: Vec<WatchEvent>,
    pub complete: bool,
    pub last_revision: Revision,
}

/// What a request will be answered once the group is durable.
enum Answer {
    Txn(Reply<TxnOutcome>, StoreResult<TxnOutcome>),
    Grant(Reply<LeaseId>, StoreResult<LeaseId>),
    Unit(Reply<()>, StoreResult<()>),
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    revision: Revision,
    compacted: Revision,
    lease_seq: i64,
    /// Keep this many revisions of history; compact automatically beyond twice that.
    history: u64,
    index: Index,
}

struct Group<'t> {
    revs: Table<'t, (&'static [u8], u64), &'static [u8]>,
    log: Table<'t, u64, &'static [u8]>,
    leases: Table<'t, i64, i64>,
    lease_keys: Table<'t, (i64, &'static [u8]), ()>,
    events: Vec<WatchEvent>,
    /// Whether anyone watched when the group began; building events costs copies.
    record_events: bool,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    granted: Vec<(LeaseId, i64)>,
    revoked: Vec<LeaseId>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Request>,
        revision: Revision,
        compacted: Revision,
        lease_seq: i64,
        history: u64,
        index: Index,
    ) -> Self {
        Writer {
            shared,
            rx,
            revision,
            compacted,
            lease_seq,
            history,
            index,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            let wait = self.until_next_expiry();
            let mut group = Vec::new();
            let mut weight = 0;
            match self.rx.recv_timeout(wait) {
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
        }
        tracing::debug!("embedded store writer stopped");
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

    fn commit_group(&mut self, group: Vec<Request>, expired: Vec<LeaseId>) {
        let start_revision = self.revision;
        let start_seq = self.lease_seq;
        let start_compacted = self.compacted;
        let result = self.apply_group(group, expired);
        let (answers, published, granted, revoked) = match result {
            Ok(done) => {
                self.index.commit();
                done
            }
            Err((e, answers)) => {
                self.index.rollback();
                self.revision = start_revision;
                self.lease_seq = start_seq;
                self.compacted = start_compacted;
                tracing::error!(error = %e, "embedded store group commit failed");
                let msg = e.to_string();
                for answer in answers {
                    fail(answer, &msg);
                }
                return;
            }
        };
        {
            let mut leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            for (id, ttl) in granted {
                leases.insert(id, LeaseState::new(ttl, now));
            }
            for id in revoked {
                leases.remove(&id);
            }
        }
        self.shared.revision.store(self.revision, Ordering::Release);
        self.shared
            .compacted
            .store(self.compacted, Ordering::Release);
        if self.revision > start_revision {
            // No receivers is fine: nobody watches.
            let _ = self.shared.events.send(Arc::new(published));
        }
        for answer in answers {
            match answer {
                Answer::Txn(tx, r) => drop(tx.send(r)),
                Answer::Grant(tx, r) => drop(tx.send(r)),
                Answer::Unit(tx, r) => drop(tx.send(r)),
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn apply_group(
        &mut self,
        group: Vec<Request>,
        expired: Vec<LeaseId>,
    ) -> Result<
        (Vec<Answer>, Published, Vec<(LeaseId, i64)>, Vec<LeaseId>),
        (StoreError, Vec<Answer>),
    > {
        let mut answers = Vec::with_capacity(group.len());
        let wtx = match self.shared.db.begin_write() {
            Ok(w) => w,
            Err(e) => {
                answers.extend(group.into_iter().map(Answer::unanswered));
                return Err((e.into(), answers));
            }
        };
        let (events, complete, granted, revoked) =
            match self.apply_in(&wtx, group, expired, &mut answers) {
                Ok(v) => v,
                Err(e) => return Err((e, answers)),
            };
        if let Err(e) = wtx.commit() {
            return Err((e.into(), answers));
        }
        let published = Published {
            events,
            complete,
            last_revision: self.revision,
        };
        Ok((answers, published, granted, revoked))
    }

    /// Applies every request, moving each reply into `answers`; an error aborts the group
    /// (every reply in `answers` then gets it).
    #[allow(clippy::type_complexity)]
    fn apply_in(
        &mut self,
        wtx: &WriteTransaction,
        group: Vec<Request>,
        expired: Vec<LeaseId>,
        answers: &mut Vec<Answer>,
    ) -> Result<(Vec<WatchEvent>, bool, Vec<(LeaseId, i64)>, Vec<LeaseId>), StoreError> {
        let record_events = self.shared.events.receiver_count() > 0;
        let mut g = match open_group(wtx, record_events) {
            Ok(g) => g,
            Err(e) => {
                answers.extend(group.into_iter().map(Answer::unanswered));
                return Err(e);
            }
        };
        let mut abort = None;
        for req in group {
            if abort.is_some() {
                answers.push(Answer::unanswered(req));
                continue;
            }
            let answer = match req {
                Request::Txn(txn, reply) => match self.apply_txn(&mut g, &txn) {
                    Ok(r) => Answer::Txn(reply, r),
                    Err(e) => {
                        abort = Some(e);
                        Answer::Txn(reply, Err(StoreError::Closed))
                    }
                },
                Request::Grant(ttl, reply) => match self.grant(&mut g, ttl) {
                    Ok(r) => Answer::Grant(reply, r),
                    Err(e) => {
                        abort = Some(e);
                        Answer::Grant(reply, Err(StoreError::Closed))
                    }
                },
                Request::Revoke(id, reply) => match self.revoke(&mut g, id) {
                    Ok(r) => Answer::Unit(reply, r),
                    Err(e) => {
                        abort = Some(e);
                        Answer::Unit(reply, Err(StoreError::Closed))
                    }
                },
                Request::Compact(rev, reply) => match self.compact_in(&mut g, rev) {
                    Ok(r) => Answer::Unit(reply, r),
                    Err(e) => {
                        abort = Some(e);
                        Answer::Unit(reply, Err(StoreError::Closed))
                    }
                },
            };
            answers.push(answer);
        }
        if let Some(e) = abort {
            return Err(e);
        }
        for id in expired {
            tracing::debug!(lease = id, "lease expired");
            // Already gone (revoked in this group) is fine.
            let _ = self.revoke(&mut g, id)?;
        }
        let mut meta = wtx.open_table(META)?;
        meta.insert(META_REVISION, self.revision as u64)?;
        meta.insert(META_LEASE_SEQ, self.lease_seq as u64)?;
        meta.insert(META_COMPACTED, self.compacted as u64)?;
        Ok((g.events, g.record_events, g.granted, g.revoked))
    }

    /// Ok(Err(..)) is a per-request failure (the group goes on); Err(..) aborts the group.
    fn apply_txn(
        &mut self,
        g: &mut Group,
        txn: &Txn,
    ) -> Result<StoreResult<TxnOutcome>, StoreError> {
        if let Err(e) = txn.check() {
            return Ok(Err(e));
        }
        for c in &txn.compares {
            let current = self.index.get(c.key().as_bytes());
            let holds = match c {
                Compare::ModRevision { equals, .. } => {
                    current.map(|l| l.mod_revision).unwrap_or(0) == *equals
                }
                Compare::Exists { .. } => current.is_some(),
            };
            if !holds {
                return Ok(Ok(TxnOutcome {
                    succeeded: false,
                    revision: self.revision,
                }));
            }
        }
        for op in &txn.ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && g.leases.get(*lease)?.is_none() {
                    return Ok(Err(StoreError::LeaseNotFound(*lease)));
                }
            }
        }
        let revision = self.revision + 1;
        let mut written: Vec<&[u8]> = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            let key = op.key().as_bytes();
            let prev = self.index.get(key);
            match op {
                Op::Put { value, lease, .. } => {
                    let (create_revision, version) = match prev {
                        Some(p) => (p.create_revision, p.version + 1),
                        None => (revision, 1),
                    };
                    encode_put(create_revision, version, *lease, value, &mut g.buf);
                    let prev_value = prev_value(g, key, prev)?;
                    write_version(g, key, revision, *lease, prev)?;
                    self.index.set(
                        key,
                        Some(Live {
                            mod_revision: revision,
                            create_revision,
                            version,
                            lease: *lease,
                        }),
                    );
                    if g.record_events {
                        let kv = KeyValue {
                            key: op.key().to_string(),
                            value: value.clone(),
                            create_revision,
                            mod_revision: revision,
                            version,
                            lease: *lease,
                        };
                        g.events.push(WatchEvent {
                            kind: EventKind::Put,
                            kv,
                            prev: prev_value,
                        });
                    }
                }
                Op::Delete { .. } => {
                    if prev.is_none() {
                        continue;
                    }
                    let prev_value = prev_value(g, key, prev)?;
                    g.buf.clear();
                    g.buf.push(TOMBSTONE);
                    write_version(g, key, revision, 0, prev)?;
                    self.index.set(key, None);
                    if g.record_events {
                        g.events.push(delete_event(key, revision, prev_value));
                    }
                }
            }
            written.push(key);
        }
        if written.is_empty() {
            return Ok(Ok(TxnOutcome {
                succeeded: true,
                revision: self.revision,
            }));
        }
        g.log
            .insert(revision as u64, encode_keys(written.into_iter()).as_slice())?;
        self.revision = revision;
        Ok(Ok(TxnOutcome {
            succeeded: true,
            revision,
        }))
    }

    fn grant(&mut self, g: &mut Group, ttl: i64) -> Result<StoreResult<LeaseId>, StoreError> {
        if ttl <= 0 {
            return Ok(Err(StoreError::InvalidTxn(format!(
                "lease TTL must be > 0 seconds, got {ttl}"
            ))));
        }
        self.lease_seq += 1;
        let id = self.lease_seq;
        g.leases.insert(id, ttl)?;
        g.granted.push((id, ttl));
        Ok(Ok(id))
    }

    /// Deletes the lease and, at one new revision, every key attached to it.
    fn revoke(&mut self, g: &mut Group, id: LeaseId) -> Result<StoreResult<()>, StoreError> {
        if g.leases.remove(id)?.is_none() {
            return Ok(Err(StoreError::LeaseNotFound(id)));
        }
        g.revoked.push(id);
        let mut keys = Vec::new();
        for entry in g.lease_keys.range::<(i64, &[u8])>((id, &[][..])..)? {
            let (k, _) = entry?;
            let (lease, key) = k.value();
            if lease != id {
                break;
            }
            keys.push(key.to_vec());
        }
        if keys.is_empty() {
            return Ok(Ok(()));
        }
        let revision = self.revision + 1;
        for key in &keys {
            g.lease_keys.remove((id, key.as_slice()))?;
            let prev = self.index.get(key);
            if prev.is_some() {
                let prev_value = prev_value(g, key, prev)?;
                g.revs.insert(
                    (key.as_slice(), revision as u64),
                    Record::Tombstone.encode().as_slice(),
                )?;
                self.index.set(key, None);
                if g.record_events {
                    g.events.push(delete_event(key, revision, prev_value));
                }
            }
        }
        g.log.insert(
            revision as u64,
            encode_keys(keys.iter().map(Vec::as_slice)).as_slice(),
        )?;
        self.revision = revision;
        Ok(Ok(()))
    }

    fn compact_in(&mut self, g: &mut Group, at: Revision) -> Result<StoreResult<()>, StoreError> {
        if at > self.revision {
            return Ok(Err(StoreError::FutureRevision {
                requested: at,
                current: self.revision,
            }));
        }
        if at <= self.compacted {
            return Ok(Ok(()));
        }
        compact_tables(g, at as u64)?;
        self.compacted = at;
        tracing::debug!(revision = at, "compacted");
        Ok(Ok(()))
    }

    fn maybe_compact(&mut self) {
        let window = self.history as i64;
        if window == 0 || self.revision - self.compacted <= 2 * window {
            return;
        }
        let at = self.revision - window;
        let (tx, _rx) = oneshot::channel();
        self.commit_group(vec![Request::Compact(at, tx)], Vec::new());
    }
}

fn open_group(wtx: &WriteTransaction, record_events: bool) -> Result<Group<'_>, StoreError> {
    Ok(Group {
        revs: wtx.open_table(REVS)?,
        log: wtx.open_table(LOG)?,
        leases: wtx.open_table(LEASES)?,
        lease_keys: wtx.open_table(LEASE_KEYS)?,
        events: Vec::new(),
        record_events,
        buf: Vec::new(),
        granted: Vec::new(),
        revoked: Vec::new(),
    })
}

/// Writes the version encoded in `g.buf` and moves the key between leases.
fn write_version(
    g: &mut Group,
    key: &[u8],
    revision: Revision,
    new_lease: LeaseId,
    prev: Option<Live>,
) -> Result<(), StoreError> {
    g.revs.insert((key, revision as u64), g.buf.as_slice())?;
    let old_lease = prev.map(|p| p.lease).unwrap_or(0);
    if old_lease != new_lease && old_lease != 0 {
        g.lease_keys.remove((old_lease, key))?;
    }
    if new_lease != 0 {
        g.lease_keys.insert((new_lease, key), ())?;
    }
    Ok(())
}

fn delete_event(key: &[u8], revision: Revision, prev: Option<KeyValue>) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: String::from_utf8_lossy(key).into_owned(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
            lease: 0,
        },
        prev,
    }
}

/// The value a watcher sees as `prev` — read from disk only when someone watches.
fn prev_value(g: &Group, key: &[u8], prev: Option<Live>) -> Result<Option<KeyValue>, StoreError> {
    match prev {
        Some(p) if g.record_events => Ok(g
            .revs
            .get((key, p.mod_revision as u64))?
            .map(|raw| Record::decode(key, raw.value()))
            .transpose()?
            .and_then(|rec| rec.into_kv(key, p.mod_revision))),
        _ => Ok(None),
    }
}

/// Drops every version below `at` that a read at `at` or later can no longer see, and the
/// revision log below `at`.
fn compact_tables(g: &mut Group, at: u64) -> Result<(), StoreError> {
    let mut doomed: Vec<(Vec<u8>, u64)> = Vec::new();
    // Per key: versions ≤ at in ascending order; all but the newest go, and the newest
    // too when it is a tombstone older than `at`.
    let mut current: Option<Vec<u8>> = None;
    let mut below: Vec<(u64, bool)> = Vec::new();
    let flush =
        |key: &Option<Vec<u8>>, below: &mut Vec<(u64, bool)>, doomed: &mut Vec<(Vec<u8>, u64)>| {
            if let (Some(key), Some(&(newest, tomb))) = (key, below.last()) {
                for &(rev, _) in &below[..below.len() - 1] {
                    doomed.push((key.clone(), rev));
                }
                if tomb && newest < at {
                    doomed.push((key.clone(), newest));
                }
            }
            below.clear();
        };
    for entry in g.revs.iter()? {
        let (k, v) = entry?;
        let (key, rev) = k.value();
        if current.as_deref() != Some(key) {
            flush(&current, &mut below, &mut doomed);
            current = Some(key.to_vec());
        }
        if rev <= at {
            below.push((rev, v.value().first() == Some(&1)));
        }
    }
    flush(&current, &mut below, &mut doomed);
    for (key, rev) in &doomed {
        g.revs.remove((key.as_slice(), *rev))?;
    }
    let old_log: Vec<u64> = g
        .log
        .range(..at)?
        .map(|e| e.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    for rev in old_log {
        g.log.remove(rev)?;
    }
    Ok(())
}

impl Answer {
    /// A request the group never got to: it shares the group's fate.
    fn unanswered(req: Request) -> Answer {
        match req {
            Request::Txn(_, r) => Answer::Txn(r, Err(StoreError::Closed)),
            Request::Grant(_, r) => Answer::Grant(r, Err(StoreError::Closed)),
            Request::Revoke(_, r) | Request::Compact(_, r) => {
                Answer::Unit(r, Err(StoreError::Closed))
            }
        }
    }
}

fn fail(answer: Answer, msg: &str) {
    let err = || StoreError::CommitFailed(msg.to_string());
    match answer {
        Answer::Txn(tx, _) => drop(tx.send(Err(err()))),
        Answer::Grant(tx, _) => drop(tx.send(Err(err()))),
        Answer::Unit(tx, _) => drop(tx.send(Err(err()))),
    }
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

//! The in-memory MVCC state: every retained version of every key, the revision log that
//! watches replay, and the lease tables. Mutations are applied here deterministically —
//! the same [`Mutation`]s replayed from the WAL rebuild the same state.
//!
//! Readers see only revisions up to the durable one (written and fsynced); the writer
//! applies a group before its fsync, so readers must pass that bound.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use crate::continuation::Continuation;
use crate::error::{StoreError, StoreResult};
use crate::kv::{EventKind, KeyValue, LeaseId, ListOptions, ListPage, Revision, WatchEvent};

/// One put's value and bookkeeping; shared between versions, snapshots and events.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Value {
    pub create_revision: Revision,
    pub version: i64,
    pub lease: LeaseId,
    pub data: Vec<u8>,
}

/// A key's retained versions, oldest first: most keys have one, kept inline (no
/// allocation of its own, nothing to allocate when a snapshot copies it).
pub(crate) type Versions = smallvec::SmallVec<[Version; 1]>;

/// A key at one revision: a value, or a tombstone (`None`).
#[derive(Clone, Debug)]
pub(crate) struct Version {
    pub revision: Revision,
    pub value: Option<Arc<Value>>,
}

/// A write of one key inside a logged mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WriteOp {
    Put {
        key: String,
        value: Vec<u8>,
        lease: LeaseId,
    },
    Delete {
        key: String,
    },
}

/// What the WAL records: only changes that happened, never failed attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mutation {
    Write {
        revision: Revision,
        ops: Vec<WriteOp>,
    },
    Grant {
        id: LeaseId,
        ttl: i64,
    },
    /// Ends the lease; its keys are deleted at `revision` (0 when it had none).
    Revoke {
        id: LeaseId,
        revision: Revision,
    },
    Compact {
        at: Revision,
    },
}

/// Every key's retained versions, in key order (lists, watch history, snapshots), and
/// beside them each key's newest version in a hash table for the point lookups every
/// compare, write and current read makes: a lookup in a B-tree of a million string keys
/// compares against keys scattered over the heap, a cache miss each; the table makes
/// one probe. Both share one allocation per key.
#[derive(Clone, Default)]
pub(crate) struct Keys {
    order: BTreeMap<Arc<str>, Versions>,
    newest: hashbrown::HashMap<Arc<str>, Version>,
}

impl Keys {
    /// Every retained version of `key`, oldest first.
    pub(crate) fn get(&self, key: &str) -> Option<&Versions> {
        self.order.get(key)
    }

    /// The newest version of `key` (a tombstone when deleted and not yet compacted).
    pub(crate) fn newest(&self, key: &str) -> Option<&Version> {
        self.newest.get(key)
    }

    /// The key as stored (shared), if it is.
    pub(crate) fn shared(&self, key: &str) -> Option<Arc<str>> {
        self.newest.get_key_value(key).map(|(k, _)| k.clone())
    }

    /// Appends a version to the key's, adding the key first if new; returns the key as
    /// stored.
    fn push(&mut self, key: &str, version: Version) -> Arc<str> {
        if let Some((k, newest)) = self.newest.get_key_value_mut(key) {
            *newest = version.clone();
            let k = k.clone();
            if let Some(versions) = self.order.get_mut(key) {
                versions.push(version);
            }
            return k;
        }
        let k: Arc<str> = Arc::from(key);
        self.newest.insert(k.clone(), version.clone());
        self.order.insert(k.clone(), smallvec::smallvec![version]);
        k
    }

    /// Every key from `start` on, in key order.
    fn range_from<'a>(
        &'a self,
        start: &str,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a Versions)> + 'a {
        self.order
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
    }

    /// Keys as a snapshot loads them (any order: the map sorts them, in O(n) when
    /// sorted already).
    pub(crate) fn from_entries(entries: Vec<(Arc<str>, Versions)>) -> Keys {
        let mut newest = hashbrown::HashMap::with_capacity(entries.len());
        for (k, versions) in &entries {
            if let Some(v) = versions.last() {
                newest.insert(k.clone(), v.clone());
            }
        }
        Keys {
            order: entries.into_iter().collect(),
            newest,
        }
    }

    /// Keeps the keys for which `keep` (which may drop old versions, never the newest)
    /// says so.
    fn retain(&mut self, mut keep: impl FnMut(&mut Versions) -> bool) {
        let newest = &mut self.newest;
        self.order.retain(|k, versions| {
            let kept = keep(versions);
            if !kept {
                newest.remove(k.as_ref());
            }
            kept
        });
    }
}

/// What a snapshot writes: the state as of one revision, without the newest-version
/// table (rebuilt on load).
pub(crate) struct Frozen {
    pub keys: BTreeMap<Arc<str>, Versions>,
    pub log: BTreeMap<Revision, Vec<Arc<str>>>,
    pub revision: Revision,
    pub compacted: Revision,
    pub lease_seq: i64,
    pub leases: HashMap<LeaseId, i64>,
}

#[derive(Default)]
pub(crate) struct Mem {
    pub keys: Keys,
    /// revision → keys written at it, for revisions ≥ `compacted`.
    pub log: BTreeMap<Revision, Vec<Arc<str>>>,
    pub revision: Revision,
    pub compacted: Revision,
    pub lease_seq: i64,
    pub leases: HashMap<LeaseId, i64>,
    pub lease_keys: HashMap<LeaseId, BTreeSet<Arc<str>>>,
}

fn kv(key: &str, revision: Revision, v: &Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: v.data.clone(),
        create_revision: v.create_revision,
        mod_revision: revision,
        version: v.version,
        lease: v.lease,
    }
}

fn deleted(key: &str, revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
        lease: 0,
    }
}

/// The newest version at or below `at`.
fn version_at(versions: &[Version], at: Revision) -> Option<&Version> {
    versions.iter().rev().find(|v| v.revision <= at)
}

impl Mem {
    /// A copy for a snapshot (values are shared, not copied).
    pub(crate) fn freeze(&self) -> Frozen {
        Frozen {
            keys: self.keys.order.clone(),
            log: self.log.clone(),
            revision: self.revision,
            compacted: self.compacted,
            lease_seq: self.lease_seq,
            leases: self.leases.clone(),
        }
    }

    /// The key's live value now (the writer's view, durable or not).
    pub(crate) fn live(&self, key: &str) -> Option<(Revision, &Arc<Value>)> {
        let v = self.keys.newest(key)?;
        v.value.as_ref().map(|val| (v.revision, val))
    }

    pub(crate) fn get(&self, key: &str, at: Revision) -> Option<KeyValue> {
        let v = match self.keys.newest(key)? {
            // Reads at the current revision need no walk through the history.
            v if v.revision <= at => v,
            _ => version_at(self.keys.get(key)?, at)?,
        };
        v.value.as_ref().map(|val| kv(key, v.revision, val))
    }

    pub(crate) fn list(
        &self,
        prefix: &str,
        opts: &ListOptions,
        durable: Revision,
    ) -> StoreResult<ListPage> {
        let (at, start) = match &opts.continue_token {
            Some(token) => {
                let c = Continuation::decode(token, prefix)?;
                (c.revision, c.start)
            }
            None => (
                opts.revision.filter(|r| *r > 0).unwrap_or(durable),
                prefix.to_string(),
            ),
        };
        self.check_readable(at, durable)?;
        let mut items = Vec::new();
        let mut continue_token = None;
        let range = self
            .keys
            .range_from(&start)
            .take_while(|(k, _)| k.starts_with(prefix));
        for (key, versions) in range {
            let Some(v) = version_at(versions, at) else {
                continue;
            };
            let Some(val) = &v.value else { continue };
            if opts.limit > 0 && items.len() == opts.limit {
                if let Some(last) = items.last() {
                    let last: &KeyValue = last;
                    continue_token = Some(Continuation::after(at, &last.key).encode());
                }
                break;
            }
            items.push(kv(key, v.revision, val));
        }
        Ok(ListPage {
            items,
            revision: at,
            continue_token,
        })
    }

    pub(crate) fn check_readable(&self, at: Revision, durable: Revision) -> StoreResult<()> {
        if at < self.compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted: self.compacted,
            });
        }
        if at > durable {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: durable,
            });
        }
        Ok(())
    }

    /// Every event under `prefix` from `from` through `durable`.
    pub(crate) fn history(
        &self,
        prefix: &str,
        from: Revision,
        durable: Revision,
    ) -> StoreResult<Vec<WatchEvent>> {
        if from < self.compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted: self.compacted,
            });
        }
        let mut events = Vec::new();
        if from > durable {
            return Ok(events);
        }
        for (&rev, keys) in self.log.range(from.max(1)..=durable) {
            for key in keys.iter().filter(|k| k.starts_with(prefix)) {
                let Some(versions) = self.keys.get(key) else {
                    continue;
                };
                let Some(pos) = versions.iter().position(|v| v.revision == rev) else {
                    continue;
                };
                let prev = pos
                    .checked_sub(1)
                    .and_then(|p| versions.get(p))
                    .and_then(|p| p.value.as_ref().map(|val| kv(key, p.revision, val)));
                events.push(match &versions[pos].value {
                    Some(val) => WatchEvent {
                        kind: EventKind::Put,
                        kv: kv(key, rev, val),
                        prev,
                    },
                    None => WatchEvent {
                        kind: EventKind::Delete,
                        kv: deleted(key, rev),
                        prev,
                    },
                });
            }
        }
        Ok(events)
    }

    /// Applies one mutation; with `events` given, records what watchers will see.
    pub(crate) fn apply(&mut self, m: &Mutation, mut events: Option<&mut Vec<WatchEvent>>) {
        match m {
            Mutation::Write { revision, ops } => {
                let mut written = Vec::with_capacity(ops.len());
                for op in ops {
                    let changed = match op {
                        WriteOp::Put { key, value, lease } => {
                            Some(self.put(key, value, *lease, *revision, events.as_deref_mut()))
                        }
                        WriteOp::Delete { key } => {
                            self.delete(key, *revision, events.as_deref_mut())
                        }
                    };
                    written.extend(changed);
                }
                self.note_revision(*revision, written);
            }
            Mutation::Grant { id, ttl } => {
                self.leases.insert(*id, *ttl);
                self.lease_seq = self.lease_seq.max(*id);
            }
            Mutation::Revoke { id, revision } => {
                self.leases.remove(id);
                let keys = self.lease_keys.remove(id).unwrap_or_default();
                let mut written = Vec::with_capacity(keys.len());
                for key in keys {
                    written.extend(self.delete(&key, *revision, events.as_deref_mut()));
                }
                self.note_revision(*revision, written);
            }
            Mutation::Compact { at } => self.compact(*at),
        }
    }

    fn note_revision(&mut self, revision: Revision, written: Vec<Arc<str>>) {
        if !written.is_empty() {
            self.log.insert(revision, written);
            self.revision = self.revision.max(revision);
        }
    }

    /// Returns the key as stored.
    fn put(
        &mut self,
        key: &str,
        data: &[u8],
        lease: LeaseId,
        revision: Revision,
        events: Option<&mut Vec<WatchEvent>>,
    ) -> Arc<str> {
        let prev = self.live(key).map(|(r, v)| (r, v.clone()));
        let (create_revision, version, old_lease) = match &prev {
            Some((_, p)) => (p.create_revision, p.version + 1, p.lease),
            None => (revision, 1, 0),
        };
        let value = Arc::new(Value {
            create_revision,
            version,
            lease,
            data: data.to_vec(),
        });
        if let Some(events) = events {
            events.push(WatchEvent {
                kind: EventKind::Put,
                kv: kv(key, revision, &value),
                prev: prev.as_ref().map(|(r, p)| kv(key, *r, p)),
            });
        }
        let stored = self.keys.push(
            key,
            Version {
                revision,
                value: Some(value),
            },
        );
        self.move_lease(&stored, old_lease, lease);
        stored
    }

    /// Returns the key as stored when it was live (and so is deleted now).
    fn delete(
        &mut self,
        key: &str,
        revision: Revision,
        events: Option<&mut Vec<WatchEvent>>,
    ) -> Option<Arc<str>> {
        let (prev_rev, prev) = self.live(key).map(|(r, v)| (r, v.clone()))?;
        if let Some(events) = events {
            events.push(WatchEvent {
                kind: EventKind::Delete,
                kv: deleted(key, revision),
                prev: Some(kv(key, prev_rev, &prev)),
            });
        }
        let stored = self.keys.push(
            key,
            Version {
                revision,
                value: None,
            },
        );
        self.move_lease(&stored, prev.lease, 0);
        Some(stored)
    }

    fn move_lease(&mut self, key: &Arc<str>, old: LeaseId, new: LeaseId) {
        if old == new {
            return;
        }
        if old != 0 {
            if let Some(set) = self.lease_keys.get_mut(&old) {
                set.remove(key);
            }
        }
        if new != 0 {
            self.lease_keys.entry(new).or_default().insert(key.clone());
        }
    }

    /// Drops every version a read at `at` or later cannot see, and the log below `at`.
    pub(crate) fn compact(&mut self, at: Revision) {
        if at <= self.compacted {
            return;
        }
        self.keys.retain(|versions| {
            // The newest version ≤ at stays (it is the value at `at`), unless it is a
            // tombstone older than `at`; everything older goes.
            let Some(keep_from) = versions.iter().rposition(|v| v.revision <= at) else {
                return true;
            };
            let newest = &versions[keep_from];
            let drop_newest = newest.value.is_none() && newest.revision < at;
            let cut = if drop_newest {
                keep_from + 1
            } else {
                keep_from
            };
            versions.drain(..cut);
            !versions.is_empty()
        });
        self.log = self.log.split_off(&at);
        self.compacted = at;
    }
}

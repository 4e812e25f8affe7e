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

#[derive(Clone, Default)]
pub(crate) struct Mem {
    pub keys: BTreeMap<String, Vec<Version>>,
    /// revision → keys written at it, for revisions ≥ `compacted`.
    pub log: BTreeMap<Revision, Vec<String>>,
    pub revision: Revision,
    pub compacted: Revision,
    pub lease_seq: i64,
    pub leases: HashMap<LeaseId, i64>,
    pub lease_keys: HashMap<LeaseId, BTreeSet<String>>,
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
    /// The key's live value now (the writer's view, durable or not).
    pub(crate) fn live(&self, key: &str) -> Option<(Revision, &Arc<Value>)> {
        let v = self.keys.get(key)?.last()?;
        v.value.as_ref().map(|val| (v.revision, val))
    }

    pub(crate) fn get(&self, key: &str, at: Revision) -> Option<KeyValue> {
        let v = version_at(self.keys.get(key)?, at)?;
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
            .range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded))
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
                            self.put(key, value, *lease, *revision, events.as_deref_mut())
                        }
                        WriteOp::Delete { key } => {
                            self.delete(key, *revision, events.as_deref_mut())
                        }
                    };
                    if changed {
                        written.push(match op {
                            WriteOp::Put { key, .. } | WriteOp::Delete { key } => key.clone(),
                        });
                    }
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
                    if self.delete(&key, *revision, events.as_deref_mut()) {
                        written.push(key);
                    }
                }
                self.note_revision(*revision, written);
            }
            Mutation::Compact { at } => self.compact(*at),
        }
    }

    fn note_revision(&mut self, revision: Revision, written: Vec<String>) {
        if !written.is_empty() {
            self.log.insert(revision, written);
            self.revision = self.revision.max(revision);
        }
    }

    fn put(
        &mut self,
        key: &str,
        data: &[u8],
        lease: LeaseId,
        revision: Revision,
        events: Option<&mut Vec<WatchEvent>>,
    ) -> bool {
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
        self.move_lease(key, old_lease, lease);
        let version = Version {
            revision,
            value: Some(value),
        };
        match self.keys.get_mut(key) {
            Some(versions) => versions.push(version),
            None => {
                self.keys.insert(key.to_string(), vec![version]);
            }
        }
        true
    }

    fn delete(
        &mut self,
        key: &str,
        revision: Revision,
        events: Option<&mut Vec<WatchEvent>>,
    ) -> bool {
        let Some((prev_rev, prev)) = self.live(key).map(|(r, v)| (r, v.clone())) else {
            return false;
        };
        if let Some(events) = events {
            events.push(WatchEvent {
                kind: EventKind::Delete,
                kv: deleted(key, revision),
                prev: Some(kv(key, prev_rev, &prev)),
            });
        }
        self.move_lease(key, prev.lease, 0);
        if let Some(versions) = self.keys.get_mut(key) {
            versions.push(Version {
                revision,
                value: None,
            });
        }
        true
    }

    fn move_lease(&mut self, key: &str, old: LeaseId, new: LeaseId) {
        if old == new {
            return;
        }
        if old != 0 {
            if let Some(set) = self.lease_keys.get_mut(&old) {
                set.remove(key);
            }
        }
        if new != 0 {
            self.lease_keys
                .entry(new)
                .or_default()
                .insert(key.to_string());
        }
    }

    /// Drops every version a read at `at` or later cannot see, and the log below `at`.
    pub(crate) fn compact(&mut self, at: Revision) {
        if at <= self.compacted {
            return;
        }
        self.keys.retain(|_, versions| {
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

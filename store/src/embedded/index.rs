//! The writer's in-memory index of live keys (as etcd keeps its `treeIndex`): compares,
//! create/version bookkeeping and lease moves need no disk lookup. Changes of a group are
//! undone if the group fails to commit.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use redb::ReadableTable;

use crate::embedded::record::Record;
use crate::embedded::tables::REVS;
use crate::error::StoreError;
use crate::kv::{LeaseId, Revision};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Live {
    pub mod_revision: Revision,
    pub create_revision: Revision,
    pub version: i64,
    pub lease: LeaseId,
}

/// FNV-1a: keys are short paths and not attacker-chosen (they pass the API's validation);
/// SipHash was a visible share of the writer's time.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

#[derive(Default)]
pub(crate) struct Index {
    live: FnvMap<Box<[u8]>, Live>,
    undo: Vec<(Box<[u8]>, Option<Live>)>,
}

impl Index {
    /// Reads the newest version of every key.
    pub(crate) fn load(db: &redb::Database) -> Result<Self, StoreError> {
        let rtx = db.begin_read()?;
        let revs = rtx.open_table(REVS)?;
        let mut live = FnvMap::default();
        let mut last: Option<(Vec<u8>, Revision, Record)> = None;
        let mut keep = |entry: Option<(Vec<u8>, Revision, Record)>| {
            if let Some((key, rev, rec)) = entry {
                if let Record::Put {
                    create_revision,
                    version,
                    lease,
                    ..
                } = rec
                {
                    live.insert(
                        key.into_boxed_slice(),
                        Live {
                            mod_revision: rev,
                            create_revision,
                            version,
                            lease,
                        },
                    );
                }
            }
        };
        for entry in revs.iter()? {
            let (k, v) = entry?;
            let (key, rev) = k.value();
            if last.as_ref().is_some_and(|(lk, _, _)| lk.as_slice() != key) {
                keep(last.take());
            }
            last = Some((
                key.to_vec(),
                rev as Revision,
                Record::decode(key, v.value())?,
            ));
        }
        keep(last);
        Ok(Index {
            live,
            undo: Vec::new(),
        })
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Live> {
        self.live.get(key).copied()
    }

    pub(crate) fn set(&mut self, key: &[u8], value: Option<Live>) {
        let old = match value {
            Some(v) => self.live.insert(key.into(), v),
            None => self.live.remove(key),
        };
        self.undo.push((key.into(), old));
    }

    /// The group is durable: forget how to undo it.
    pub(crate) fn commit(&mut self) {
        self.undo.clear();
    }

    /// The group failed: put back what it changed.
    pub(crate) fn rollback(&mut self) {
        while let Some((key, old)) = self.undo.pop() {
            match old {
                Some(v) => self.live.insert(key, v),
                None => self.live.remove(&key),
            };
        }
    }
}

//! The values the store contract speaks in: key-values, list pages, transactions, watch
//! events. Revisions and lease ids are etcd's: `i64`, 0 meaning "none".

use std::pin::Pin;

use futures::Stream;

use crate::error::StoreError;

pub type Revision = i64;
pub type LeaseId = i64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// Number of writes since the key was (re)created, starting at 1.
    pub version: i64,
    /// 0 when the key is not attached to a lease.
    pub lease: LeaseId,
}

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// At most this many items; 0 means no limit.
    pub limit: usize,
    /// The token of the previous page; the page is read at that page's revision.
    pub continue_token: Option<String>,
    /// Read at this revision instead of the current one (ignored with a continue token).
    pub revision: Option<Revision>,
}

impl ListOptions {
    pub fn limit(limit: usize) -> Self {
        ListOptions {
            limit,
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The revision every item of this page (and every later page) was read at.
    pub revision: Revision,
    /// Present when more items follow.
    pub continue_token: Option<String>,
}

/// A guard of a transaction. A missing key has mod_revision 0, as in etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    ModRevision { key: String, equals: Revision },
    Exists { key: String },
}

impl Compare {
    pub fn key(&self) -> &str {
        match self {
            Compare::ModRevision { key, .. } | Compare::Exists { key } => key,
        }
    }
    pub fn mod_revision(key: impl Into<String>, equals: Revision) -> Self {
        Compare::ModRevision {
            key: key.into(),
            equals,
        }
    }
    pub fn absent(key: impl Into<String>) -> Self {
        Self::mod_revision(key, 0)
    }
    pub fn exists(key: impl Into<String>) -> Self {
        Compare::Exists { key: key.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: LeaseId,
    },
    Delete {
        key: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }
    pub fn put_with_lease(
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
}

/// All compares hold → all ops apply atomically at one new revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Txn::default()
    }
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }
    pub fn then(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }

    /// Rejects what etcd rejects: one key written twice in one transaction.
    pub fn check(&self) -> Result<(), StoreError> {
        let mut keys: Vec<&str> = self.ops.iter().map(Op::key).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(StoreError::InvalidTxn(format!(
                "key {} is written twice in one transaction",
                w[0]
            )));
        }
        if self.ops.iter().any(|op| op.key().is_empty()) {
            return Err(StoreError::InvalidTxn("empty key".into()));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    pub succeeded: bool,
    /// The revision the writes got, or the current revision when nothing was written.
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For a delete: the key, an empty value and `mod_revision` = the delete's revision.
    pub kv: KeyValue,
    /// The key's value before this event, if it existed.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Events in revision order. Errors are items: a compacted start revision yields
/// `Err(Compacted)` and ends the stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// The smallest key greater than every key that starts with `prefix` (etcd's range end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): the range is open-ended; etcd spells that "\0".
    vec![0]
}

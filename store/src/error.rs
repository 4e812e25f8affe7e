//! The store's error type, shared by both backends.

use std::path::PathBuf;

use crate::kv::{LeaseId, Revision};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("conflict on {key}: expected mod_revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (history starts at {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("lease {0} not found or expired")]
    LeaseNotFound(LeaseId),
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    #[error("data directory {}: {reason}", path.display())]
    DataDir { path: PathBuf, reason: String },
    #[error("etcd: {0}")]
    Etcd(Box<etcd_client::Error>),
    #[error("etcd server: {0}")]
    EtcdServer(String),
    #[error("corrupt record for key {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("commit failed, nothing was written: {0}")]
    CommitFailed(String),
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// A caller may retry the same request after refreshing its view of the key.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

impl From<etcd_client::Error> for StoreError {
    fn from(e: etcd_client::Error) -> Self {
        StoreError::Etcd(Box::new(e))
    }
}

//! The state store: one contract ([`Store`]), two backends — [`EmbeddedStore`] (in-memory
//! MVCC + write-ahead log, the default for `drover up`) and [`EtcdStore`] (a real etcd 3.4+) — checked by one
//! conformance suite (`tests/conformance.rs`) that runs against both.
//!
//! Keys are `/<prefix>/<group>/<plural>/<namespace>/<name>`, values JSON; every write
//! bumps one global revision and an object's `resourceVersion` is its `mod_revision`.

pub mod continuation;
pub mod embedded;
mod error;
pub mod etcd;
pub mod etcd_server;
mod kv;
mod store;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{StoreError, StoreResult};
pub use etcd::EtcdStore;
pub use etcd_server::EtcdServer;
pub use kv::{
    prefix_end, Compare, EventKind, KeyValue, LeaseId, ListOptions, ListPage, Op, Revision, Txn,
    TxnOutcome, WatchEvent, WatchStream,
};
pub use store::Store;

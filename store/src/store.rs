//! The [`Store`] contract both backends implement (DESIGN.md §3).

use async_trait::async_trait;

use crate::error::{StoreError, StoreResult};
use crate::kv::{
    Compare, KeyValue, LeaseId, ListOptions, ListPage, Op, Revision, Txn, TxnOutcome, WatchStream,
};

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's current value.
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>>;

    /// Keys under `prefix` in key order, every page read at one revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListPage>;

    /// Applies `txn.ops` at one new revision if every compare holds.
    async fn txn(&self, txn: Txn) -> StoreResult<TxnOutcome>;

    /// Events under `prefix` from `from_revision` on (0 = from the next write), with prev values.
    async fn watch(&self, prefix: &str, from_revision: Revision) -> StoreResult<WatchStream>;

    /// Forgets history below `revision`; reads and watches below it get `Compacted`.
    async fn compact(&self, revision: Revision) -> StoreResult<()>;

    /// The revision of the latest write.
    async fn current_revision(&self) -> StoreResult<Revision>;

    async fn grant_lease(&self, ttl_seconds: i64) -> StoreResult<LeaseId>;
    /// Renews the lease; returns its TTL in seconds. An expired lease is `LeaseNotFound`.
    async fn keep_alive(&self, lease: LeaseId) -> StoreResult<i64>;
    /// Ends the lease and deletes every key attached to it.
    async fn revoke_lease(&self, lease: LeaseId) -> StoreResult<()>;

    /// Creates `key`; `AlreadyExists` if it is there. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> StoreResult<Revision> {
        let txn = Txn::new()
            .when(Compare::absent(key))
            .then(Op::put_with_lease(key, value, lease));
        let out = self.txn(txn).await?;
        if out.succeeded {
            Ok(out.revision)
        } else {
            Err(StoreError::AlreadyExists { key: key.into() })
        }
    }

    /// Replaces `key` if its mod_revision is still `expected`.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: LeaseId,
    ) -> StoreResult<Revision> {
        let txn = Txn::new()
            .when(Compare::exists(key))
            .when(Compare::mod_revision(key, expected))
            .then(Op::put_with_lease(key, value, lease));
        let out = self.txn(txn).await?;
        if out.succeeded {
            return Ok(out.revision);
        }
        Err(self.precondition_failure(key, expected).await)
    }

    /// Deletes `key`, if `expected` is given only while its mod_revision is still that.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> StoreResult<Revision> {
        let mut txn = Txn::new().when(Compare::exists(key));
        if let Some(expected) = expected {
            txn = txn.when(Compare::mod_revision(key, expected));
        }
        let out = self.txn(txn.then(Op::delete(key))).await?;
        if out.succeeded {
            return Ok(out.revision);
        }
        Err(self
            .precondition_failure(key, expected.unwrap_or_default())
            .await)
    }

    /// Why a guarded write of `key` failed: it is gone, or it changed.
    async fn precondition_failure(&self, key: &str, expected: Revision) -> StoreError {
        match self.get(key).await {
            Ok(None) => StoreError::NotFound { key: key.into() },
            Ok(Some(kv)) => StoreError::Conflict {
                key: key.into(),
                expected,
                actual: kv.mod_revision,
            },
            Err(e) => e,
        }
    }
}

//! How controllers write objects: straight to the store, in the form the API server
//! keeps them (server-owned metadata set, resourceVersion as the key's revision), so
//! API clients and watchers see controller-made objects like any other.

use std::sync::Arc;

use drover_api::{DroverKind, KindInfo};
use drover_store::{Compare, Op, Store, StoreError, Txn};
use serde_json::Value;

use crate::apiserver::objects::{key, to_stored};

/// Store key of an object.
pub fn key_of<K: DroverKind>(info: &KindInfo, obj: &K) -> String {
    let m = obj.metadata();
    key(
        info,
        m.namespace.as_deref(),
        m.name.as_deref().unwrap_or_default(),
    )
}

/// Creates all `objects` in one transaction, or none if any exists already.
pub async fn create_all(
    store: &Arc<dyn Store>,
    objects: Vec<(String, Value)>,
) -> Result<bool, StoreError> {
    let mut txn = Txn::new();
    for (k, v) in &objects {
        txn = txn
            .when(Compare::absent(k.clone()))
            .then(Op::put(k.clone(), to_stored(v)));
    }
    Ok(store.txn(txn).await?.succeeded)
}

/// Replaces the `status` of the object at `key` if it is still at `revision`.
pub async fn write_status(
    store: &Arc<dyn Store>,
    key: &str,
    revision: i64,
    status: Value,
) -> Result<(), StoreError> {
    let Some(kv) = store.get(key).await? else {
        return Err(StoreError::NotFound { key: key.into() });
    };
    if kv.mod_revision != revision {
        return Err(StoreError::Conflict {
            key: key.into(),
            expected: revision,
            actual: kv.mod_revision,
        });
    }
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    })?;
    if obj.get("status") == Some(&status) {
        return Ok(());
    }
    obj["status"] = status;
    store
        .update(key, to_stored(&obj), revision, 0)
        .await
        .map(|_| ())
}

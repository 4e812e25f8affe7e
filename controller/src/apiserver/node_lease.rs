//! Node liveness as a store lease. Every heartbeat of an agent (a write of its Node's
//! `status` through the API) keeps the key `/registry/drover.dev/nodeleases/<node>`
//! alive on a store lease of the node lease duration. When the agent stops talking the
//! store deletes the key by itself (embedded and etcd alike) and the nodes controller
//! notices, so no clock of this server decides that a node is gone.
//!
//! Stateless on purpose: the lease id is read back from the key, so several API
//! servers (on etcd) and a restarted one renew the same lease.

use std::sync::Arc;

use drover_store::{Op, Store, StoreError, Txn};
use serde_json::json;

use crate::apiserver::objects::now_rfc3339;

/// Where the lease keys live, one per node.
pub const PREFIX: &str = "/registry/drover.dev/nodeleases/";

/// How long a node stays alive without a heartbeat, unless configured
/// (`--node-lease-seconds`).
pub const DEFAULT_LEASE_SECONDS: i64 = 40;

/// The lease key of `node`.
pub fn key(node: &str) -> String {
    format!("{PREFIX}{node}")
}

/// The node a lease key belongs to.
pub fn node_of(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX).filter(|n| !n.is_empty())
}

/// Records a heartbeat of `node`: keeps its lease alive, or grants a new one (first
/// heartbeat, lease expired meanwhile, or a lease of another duration) and attaches
/// the key to it.
pub async fn renew(store: &Arc<dyn Store>, node: &str, ttl_seconds: i64) -> Result<(), StoreError> {
    let k = key(node);
    if let Some(kv) = store.get(&k).await? {
        // The duration asked for, not the one granted: etcd raises very short TTLs.
        let asked = serde_json::from_slice::<serde_json::Value>(&kv.value)
            .ok()
            .and_then(|v| v.get("leaseDurationSeconds").and_then(|d| d.as_i64()));
        if kv.lease != 0 {
            match store.keep_alive(kv.lease).await {
                Ok(_) if asked == Some(ttl_seconds) => return Ok(()),
                // Granted with another duration (the server was reconfigured): replace it.
                Ok(_) => {
                    let _ = store.revoke_lease(kv.lease).await;
                }
                Err(StoreError::LeaseNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let lease = store.grant_lease(ttl_seconds).await?;
    let value = json!({
        "node": node,
        "leaseDurationSeconds": ttl_seconds,
        "acquireTime": now_rfc3339(),
    });
    // Unconditional: a racing heartbeat at worst leaves a lease with no key, which
    // expires harmlessly; the key follows the newest lease.
    store
        .txn(Txn::new().then(Op::put_with_lease(k, value.to_string(), lease)))
        .await?;
    tracing::debug!(node, lease, ttl_seconds, "node lease granted");
    Ok(())
}

/// The hook of the Node status write path: a heartbeat never fails the write it came
/// with, it is only logged when the store refuses it.
pub async fn on_node_status_write(store: &Arc<dyn Store>, node: &str, ttl_seconds: i64) {
    if let Err(error) = renew(store, node, ttl_seconds).await {
        tracing::warn!(node, %error, "could not renew the node lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_store::EmbeddedStore;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = EmbeddedStore::open(dir.path()).expect("open store");
        (dir, Arc::new(s))
    }

    #[tokio::test]
    async fn first_heartbeat_grants_later_ones_keep_the_same_lease() {
        let (_dir, s) = store();
        renew(&s, "n1", 30).await.expect("renew");
        let first = s.get(&key("n1")).await.expect("get").expect("the key");
        assert_ne!(first.lease, 0);
        renew(&s, "n1", 30).await.expect("renew");
        let second = s.get(&key("n1")).await.expect("get").expect("the key");
        assert_eq!(second.lease, first.lease);
        assert_eq!(
            second.mod_revision, first.mod_revision,
            "keep-alive writes nothing"
        );
        assert_eq!(node_of(&first.key), Some("n1"));
    }

    #[tokio::test]
    async fn an_expired_lease_is_granted_again() {
        let (_dir, s) = store();
        renew(&s, "n1", 1).await.expect("renew");
        let first = s.get(&key("n1")).await.expect("get").expect("the key");
        s.revoke_lease(first.lease).await.expect("revoke");
        assert!(s.get(&key("n1")).await.expect("get").is_none());
        renew(&s, "n1", 1).await.expect("renew");
        let again = s.get(&key("n1")).await.expect("get").expect("the key");
        assert_ne!(again.lease, first.lease);
    }

    #[tokio::test]
    async fn a_new_duration_replaces_the_lease() {
        let (_dir, s) = store();
        renew(&s, "n1", 30).await.expect("renew");
        let first = s.get(&key("n1")).await.expect("get").expect("the key");
        renew(&s, "n1", 5).await.expect("renew");
        let second = s.get(&key("n1")).await.expect("get").expect("the key");
        assert_ne!(second.lease, first.lease);
        assert_eq!(s.keep_alive(second.lease).await.expect("alive"), 5);
        assert!(
            s.keep_alive(first.lease).await.is_err(),
            "the old lease is revoked"
        );
    }

    /// Heartbeats keep the key; silence lets the store delete it on its own.
    async fn lives_while_heartbeats_come_and_expires_without(s: Arc<dyn Store>) {
        renew(&s, "n1", 2).await.expect("renew");
        let first = s.get(&key("n1")).await.expect("get").expect("the key");
        for _ in 0..4 {
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            renew(&s, "n1", 2).await.expect("renew");
        }
        let kept = s.get(&key("n1")).await.expect("get").expect("kept alive");
        assert_eq!(kept.lease, first.lease);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.get(&key("n1")).await.expect("get").is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the store did not expire the node lease"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        renew(&s, "n1", 2).await.expect("renew after expiry");
        assert!(s.get(&key("n1")).await.expect("get").is_some());
    }

    #[tokio::test]
    async fn embedded_expires_a_silent_node_lease() {
        let (_dir, s) = store();
        lives_while_heartbeats_come_and_expires_without(s).await;
    }

    #[tokio::test]
    async fn etcd_expires_a_silent_node_lease() {
        let etcd = drover_store::EtcdServer::start().unwrap_or_else(|e| panic!("{e}"));
        let s: Arc<dyn Store> = Arc::new(
            drover_store::EtcdStore::connect(&[etcd.endpoint().to_string()])
                .await
                .expect("connect to etcd"),
        );
        lives_while_heartbeats_come_and_expires_without(s).await;
    }
}

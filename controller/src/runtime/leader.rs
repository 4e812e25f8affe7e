//! Leader election on a store lease: candidates race to create one key attached to
//! their lease; the holder keeps the lease alive; when it stops (or dies), the lease
//! expires, the key goes, and a waiting candidate takes over within one TTL.

use std::sync::Arc;
use std::time::Duration;

use drover_store::{EventKind, LeaseId, Store, StoreError};
use futures::StreamExt;
use tokio::sync::watch;

pub struct LeaderElection {
    store: Arc<dyn Store>,
    key: String,
    identity: String,
    ttl_seconds: i64,
}

impl LeaderElection {
    /// `name` is what is being led (e.g. `controller-manager`); `identity` who leads.
    pub fn new(store: Arc<dyn Store>, name: &str, identity: &str, ttl_seconds: i64) -> Self {
        LeaderElection {
            store,
            key: format!("/drover/leader/{name}"),
            identity: identity.to_string(),
            ttl_seconds: ttl_seconds.max(2),
        }
    }

    /// Who holds the lease now, if anyone.
    pub async fn holder(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(&self.key)
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// Campaigns until elected, then keeps the lease alive in the background. The
    /// returned receiver turns `false` when leadership is lost; the controller must
    /// then stop acting.
    pub async fn acquire(&self) -> Result<watch::Receiver<bool>, StoreError> {
        loop {
            let lease = self.store.grant_lease(self.ttl_seconds).await?;
            match self
                .store
                .create(&self.key, self.identity.clone().into_bytes(), lease)
                .await
            {
                Ok(_) => {
                    tracing::info!(identity = %self.identity, key = %self.key, "became leader");
                    return Ok(self.keep(lease));
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    let _ = self.store.revoke_lease(lease).await;
                    self.wait_for_vacancy().await?;
                }
                Err(e) => {
                    let _ = self.store.revoke_lease(lease).await;
                    return Err(e);
                }
            }
        }
    }

    /// Returns when the key is deleted (or after one TTL, to retry anyway).
    async fn wait_for_vacancy(&self) -> Result<(), StoreError> {
        let from = self.store.current_revision().await? + 1;
        let mut events = self.store.watch(&self.key, from).await?;
        if self.store.get(&self.key).await?.is_none() {
            return Ok(());
        }
        let ttl = Duration::from_secs(self.ttl_seconds as u64);
        let _ = tokio::time::timeout(ttl, async {
            while let Some(ev) = events.next().await {
                if matches!(ev, Ok(ref e) if e.kind == EventKind::Delete && e.kv.key == self.key) {
                    return;
                }
            }
        })
        .await;
        Ok(())
    }

    fn keep(&self, lease: LeaseId) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(true);
        let store = self.store.clone();
        let period = Duration::from_millis((self.ttl_seconds as u64 * 1000 / 3).max(300));
        let identity = self.identity.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => {
                        // Nobody listens: step down so another candidate can lead.
                        let _ = store.revoke_lease(lease).await;
                        return;
                    }
                    _ = tokio::time::sleep(period) => {}
                }
                if let Err(e) = store.keep_alive(lease).await {
                    tracing::warn!(%identity, error = %e, "lost leadership");
                    let _ = tx.send(false);
                    return;
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_leads_and_the_other_takes_over_within_a_ttl() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(drover_store::EmbeddedStore::open(dir.path()).expect("store"));
        let a = LeaderElection::new(store.clone(), "cm", "a", 2);
        let b = LeaderElection::new(store.clone(), "cm", "b", 2);
        let lead_a = a.acquire().await.expect("a leads");
        assert!(*lead_a.borrow());
        let b_task =
            tokio::spawn(
                async move { b.acquire().await.map(|rx| (rx, std::time::Instant::now())) },
            );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!b_task.is_finished(), "b must wait while a leads");
        assert_eq!(a.holder().await.expect("holder"), Some("a".into()));
        // a stops: dropping its receiver revokes the lease.
        let stopped = std::time::Instant::now();
        drop(lead_a);
        let (lead_b, at) = tokio::time::timeout(Duration::from_secs(5), b_task)
            .await
            .expect("b takes over within the TTL")
            .expect("join")
            .expect("b leads");
        assert!(*lead_b.borrow());
        assert!(at.duration_since(stopped) < Duration::from_secs(3));
        assert_eq!(a.holder().await.expect("holder"), Some("b".into()));
    }
}

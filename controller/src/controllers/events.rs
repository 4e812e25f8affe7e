//! Events controllers record about objects ("why is it stuck?"): stored as drover.dev
//! Events, served also as core v1 Events so `kubectl describe` shows them. A repeat of
//! the same reason and message bumps `count` and `lastTimestamp` instead of adding one.

use std::sync::Arc;

use drover_store::Store;
use serde_json::{json, Value};

use crate::apiserver::objects::{now_rfc3339, to_stored};

pub struct Involved<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
}

/// Records (or repeats) an event; failures are logged, never fatal to a reconcile.
pub async fn record(
    store: &Arc<dyn Store>,
    about: &Involved<'_>,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let name = format!(
        "{}.{:x}",
        about.name,
        crate::fingerprint::fnv1a64(format!("{}{reason}{message}", about.kind).as_bytes())
            & 0xffff_ffff
    );
    let key = format!("/registry/drover.dev/events/{}/{name}", about.namespace);
    let now = now_rfc3339();
    let result = match store.get(&key).await {
        Ok(Some(kv)) => {
            let mut ev: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
            if !ev.is_object() {
                return;
            }
            let count = ev.get("count").and_then(Value::as_i64).unwrap_or(1) + 1;
            ev["count"] = json!(count);
            ev["lastTimestamp"] = json!(now);
            store
                .update(&key, to_stored(&ev), kv.mod_revision, 0)
                .await
                .map(|_| ())
        }
        Ok(None) => {
            let mut ev = json!({
                "apiVersion": "drover.dev/v1alpha1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": about.namespace},
                "involvedObject": {
                    "apiVersion": "drover.dev/v1alpha1",
                    "kind": about.kind,
                    "namespace": about.namespace,
                    "name": about.name,
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": "drover-controller"},
            });
            if let Some(uid) = about.uid {
                ev["involvedObject"]["uid"] = json!(uid);
            }
            crate::apiserver::objects::stamp_created(&mut ev, &now);
            store.create(&key, to_stored(&ev), 0).await.map(|_| ())
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, reason, "could not record an event");
    }
}

//! Deletion as Kubernetes does it around finalizers: `propagationPolicy` Orphan /
//! Foreground becomes the garbage collector's finalizer on the object (the
//! `controllers::gc` does the rest), and a write that takes the last finalizer off an
//! object with a deletionTimestamp deletes it.

use drover_store::StoreError;
use serde_json::{json, Value};

use crate::apiserver::objects::key;
use crate::apiserver::reads::store_error;
use crate::apiserver::request::Target;
use crate::apiserver::server::ApiState;
use crate::apiserver::status::{ApiError, ApiResult};

/// Finalizer of an owner whose dependents are deleted first (`controllers::gc`).
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer of an owner whose dependents are left behind (`controllers::gc`).
pub const ORPHAN: &str = "orphan";

/// The finalizer a DELETE's options ask for: `propagationPolicy` (or the older
/// `orphanDependents: true`). Background, or nothing, needs none.
pub fn policy_finalizer(options: Option<&Value>) -> ApiResult<Option<&'static str>> {
    let Some(o) = options else { return Ok(None) };
    match o.get("propagationPolicy").and_then(Value::as_str) {
        Some("Orphan") => return Ok(Some(ORPHAN)),
        Some("Foreground") => return Ok(Some(FOREGROUND)),
        Some("Background") => return Ok(None),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: must be Orphan, Foreground or Background, got {other:?}"
            )))
        }
        None => {}
    }
    Ok((o.get("orphanDependents").and_then(Value::as_bool) == Some(true)).then_some(ORPHAN))
}

/// `current` with the finalizer its DELETE's options ask for, if any.
pub fn with_policy_finalizer(mut current: Value, options: Option<&Value>) -> ApiResult<Value> {
    let Some(finalizer) = policy_finalizer(options)? else {
        return Ok(current);
    };
    if !current.get("metadata").is_some_and(Value::is_object) {
        return Ok(current);
    }
    let mut list = current
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !list.iter().any(|f| f.as_str() == Some(finalizer)) {
        list.push(json!(finalizer));
    }
    current["metadata"]["finalizers"] = json!(list);
    Ok(current)
}

/// An object being deleted that has no finalizer left.
pub fn finalized(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
}

/// Deletes the object a write would leave `finalized` (guarded by `revision`);
/// false when the write should go on as an update.
pub async fn delete_if_finalized(
    state: &ApiState,
    t: &Target,
    name: &str,
    revision: i64,
    new: &Value,
) -> ApiResult<bool> {
    if !finalized(new) {
        return Ok(false);
    }
    let k = key(t.info, t.namespace.as_deref(), name);
    state
        .store
        .delete(&k, Some(revision))
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ApiError::conflict(t.info, name),
            StoreError::NotFound { .. } => ApiError::not_found(t.info, name),
            other => store_error(other),
        })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_become_finalizers() {
        let obj = json!({"metadata": {"name": "x", "finalizers": ["a"]}});
        let orphan = json!({"propagationPolicy": "Orphan"});
        let v = with_policy_finalizer(obj.clone(), Some(&orphan)).expect("ok");
        assert_eq!(v["metadata"]["finalizers"], json!(["a", "orphan"]));
        let fg = json!({"propagationPolicy": "Foreground"});
        let v = with_policy_finalizer(obj.clone(), Some(&fg)).expect("ok");
        assert_eq!(
            v["metadata"]["finalizers"],
            json!(["a", "foregroundDeletion"])
        );
        let bg = json!({"propagationPolicy": "Background"});
        assert_eq!(
            with_policy_finalizer(obj.clone(), Some(&bg)).expect("ok"),
            obj
        );
        let old = json!({"orphanDependents": true});
        assert_eq!(policy_finalizer(Some(&old)).expect("ok"), Some(ORPHAN));
        let bad = json!({"propagationPolicy": "Sideways"});
        let e = policy_finalizer(Some(&bad)).expect_err("an error");
        assert!(e.message.contains("propagationPolicy"), "{}", e.message);
    }

    #[test]
    fn finalized_needs_a_deletion_timestamp_and_no_finalizers() {
        assert!(!finalized(&json!({"metadata": {}})));
        assert!(finalized(&json!({"metadata": {"deletionTimestamp": "t"}})));
        assert!(finalized(
            &json!({"metadata": {"deletionTimestamp": "t", "finalizers": []}})
        ));
        assert!(!finalized(
            &json!({"metadata": {"deletionTimestamp": "t", "finalizers": ["x"]}})
        ));
    }
}

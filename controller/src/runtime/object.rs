//! Typed objects out of the store: decoded, defaulted, keyed.

use drover_api::DroverKind;
use drover_store::KeyValue;

use crate::apiserver::objects::from_stored;

/// Namespace (for namespaced kinds) and name: what a reconcile is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn of<K: DroverKind>(obj: &K) -> Self {
        let meta = obj.metadata();
        ObjectKey {
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// Decodes a stored object and applies the kind's defaults (the store keeps specs as
/// the client wrote them).
pub fn decode<K: DroverKind>(kv: &KeyValue) -> Result<K, DecodeError> {
    let value = from_stored(kv).map_err(|e| DecodeError::Invalid {
        key: kv.key.clone(),
        message: e.message,
    })?;
    let mut obj: K = serde_json::from_value(value).map_err(|e| DecodeError::Invalid {
        key: kv.key.clone(),
        message: e.to_string(),
    })?;
    obj.apply_defaults();
    Ok(obj)
}

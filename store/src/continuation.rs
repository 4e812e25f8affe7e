//! List continue tokens: the revision a listing started at and the key to resume from,
//! so every page of one listing is read at the same revision.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::kv::Revision;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Continuation {
    #[serde(rename = "rev")]
    pub revision: Revision,
    /// The first key of the next page.
    #[serde(rename = "start")]
    pub start: String,
}

impl Continuation {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a token and checks it belongs to a listing of `prefix`.
    pub fn decode(token: &str, prefix: &str) -> Result<Self, StoreError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|e| StoreError::InvalidContinue(format!("not base64: {e}")))?;
        let c: Continuation = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::InvalidContinue(format!("malformed: {e}")))?;
        if !c.start.starts_with(prefix) || c.revision <= 0 {
            return Err(StoreError::InvalidContinue(format!(
                "token does not continue a listing of {prefix}"
            )));
        }
        Ok(c)
    }

    /// The key right after `last` in byte order.
    pub fn after(revision: Revision, last: &str) -> Self {
        Continuation {
            revision,
            start: format!("{last}\0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_prefix() {
        let c = Continuation::after(42, "/r/a/b");
        let t = c.encode();
        assert_eq!(Continuation::decode(&t, "/r/a/").expect("decodes"), c);
        assert!(matches!(
            Continuation::decode(&t, "/r/x/"),
            Err(StoreError::InvalidContinue(_))
        ));
        assert!(Continuation::decode("%%%", "/").is_err());
    }
}

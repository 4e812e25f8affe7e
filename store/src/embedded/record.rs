//! On-disk encoding of one key version (a put or a tombstone) and of a revision's key list.

use crate::error::StoreError;
use crate::kv::{KeyValue, LeaseId, Revision};

const PUT: u8 = 0;
pub(crate) const TOMBSTONE: u8 = 1;
const HEADER: usize = 1 + 8 + 8 + 8;

/// One version of one key, as stored at `(key, mod_revision)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Put {
        create_revision: Revision,
        version: i64,
        lease: LeaseId,
        value: Vec<u8>,
    },
    Tombstone,
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Record::Put {
                create_revision,
                version,
                lease,
                value,
            } => encode_put(*create_revision, *version, *lease, value, &mut out),
            Record::Tombstone => out.push(TOMBSTONE),
        }
        out
    }

    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: reason.into(),
        };
        match bytes.first() {
            Some(&TOMBSTONE) => Ok(Record::Tombstone),
            Some(&PUT) if bytes.len() >= HEADER => {
                let word = |at: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&bytes[at..at + 8]);
                    i64::from_le_bytes(b)
                };
                Ok(Record::Put {
                    create_revision: word(1),
                    version: word(9),
                    lease: word(17),
                    value: bytes[HEADER..].to_vec(),
                })
            }
            Some(_) => Err(corrupt("unknown record type or short record")),
            None => Err(corrupt("empty record")),
        }
    }

    /// The key-value this record is at `mod_revision`, or `None` for a tombstone.
    pub(crate) fn into_kv(self, key: &[u8], mod_revision: Revision) -> Option<KeyValue> {
        match self {
            Record::Put {
                create_revision,
                version,
                lease,
                value,
            } => Some(KeyValue {
                key: String::from_utf8_lossy(key).into_owned(),
                value,
                create_revision,
                mod_revision,
                version,
                lease,
            }),
            Record::Tombstone => None,
        }
    }
}

/// Encodes a put into `out` (cleared first), so the writer can reuse one buffer.
pub(crate) fn encode_put(
    create_revision: Revision,
    version: i64,
    lease: LeaseId,
    value: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.reserve(HEADER + value.len());
    out.push(PUT);
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&lease.to_le_bytes());
    out.extend_from_slice(value);
}

/// The keys written at one revision: `u32` length + bytes, repeated.
pub(crate) fn encode_keys<'a>(keys: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for k in keys {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
    }
    out
}

pub(crate) fn decode_keys(bytes: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut keys = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = bytes.get(at..at + 4).ok_or_else(|| StoreError::Corrupt {
            key: "<revision log>".into(),
            reason: "truncated key length".into(),
        })?;
        let mut b = [0u8; 4];
        b.copy_from_slice(len_bytes);
        let len = u32::from_le_bytes(b) as usize;
        let key = bytes
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| StoreError::Corrupt {
                key: "<revision log>".into(),
                reason: "truncated key".into(),
            })?;
        keys.push(key.to_vec());
        at += 4 + len;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let put = Record::Put {
            create_revision: 3,
            version: 7,
            lease: -2,
            value: b"{\"a\":1}".to_vec(),
        };
        assert_eq!(Record::decode(b"k", &put.encode()).expect("decodes"), put);
        assert_eq!(
            Record::decode(b"k", &Record::Tombstone.encode()).expect("decodes"),
            Record::Tombstone
        );
        assert!(Record::decode(b"k", &[0, 1, 2]).is_err());
        assert!(Record::decode(b"k", &[]).is_err());
    }

    #[test]
    fn key_lists_round_trip() {
        let keys: Vec<&[u8]> = vec![b"/a", b"", b"/bb/c"];
        let enc = encode_keys(keys.iter().copied());
        let dec = decode_keys(&enc).expect("decodes");
        assert_eq!(dec, keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>());
        assert!(decode_keys(&enc[..enc.len() - 1]).is_err());
    }
}

//! The redb tables of the embedded store and the reads every path shares.

use redb::{ReadableTable, TableDefinition};

use crate::embedded::record::Record;
use crate::error::StoreError;
use crate::kv::Revision;

/// `(key, mod_revision)` → [`Record`]: every retained version of every key (MVCC).
pub(crate) const REVS: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("revs");
/// revision → the keys written at it, for watch replay.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// `format`, `revision`, `compacted`, `lease_seq`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// lease id → TTL seconds.
pub(crate) const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
/// `(lease id, key)` → (): the keys attached to each lease.
pub(crate) const LEASE_KEYS: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("lease_keys");

pub(crate) const FORMAT_VERSION: u64 = 1;
pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_REVISION: &str = "revision";
pub(crate) const META_COMPACTED: &str = "compacted";
pub(crate) const META_LEASE_SEQ: &str = "lease_seq";

pub(crate) fn meta(
    table: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<u64, StoreError> {
    Ok(table.get(name)?.map(|v| v.value()).unwrap_or(0))
}

/// The newest version of `key` at or below `at`, tombstones included.
pub(crate) fn version_at(
    revs: &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
    key: &[u8],
    at: u64,
) -> Result<Option<(Revision, Record)>, StoreError> {
    let mut range = revs.range::<(&[u8], u64)>((key, 0)..=(key, at))?;
    match range.next_back() {
        Some(entry) => {
            let (k, v) = entry?;
            let rev = k.value().1 as Revision;
            Ok(Some((rev, Record::decode(key, v.value())?)))
        }
        None => Ok(None),
    }
}

/// The live value of `key` at or below `at`: `None` if absent or deleted.
pub(crate) fn live_at(
    revs: &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
    key: &[u8],
    at: u64,
) -> Result<Option<(Revision, Record)>, StoreError> {
    Ok(version_at(revs, key, at)?.filter(|(_, r)| !matches!(r, Record::Tombstone)))
}

//! Reads outside the writer: point gets, paginated lists at one revision, and the
//! history replay that watches catch up from.

use redb::Database;

use crate::continuation::Continuation;
use crate::embedded::record::{decode_keys, Record};
use crate::embedded::tables::*;
use crate::error::{StoreError, StoreResult};
use crate::kv::{prefix_end, EventKind, KeyValue, ListOptions, ListPage, Revision, WatchEvent};

pub(crate) fn get(db: &Database, key: &str) -> StoreResult<Option<KeyValue>> {
    let rtx = db.begin_read()?;
    let revs = rtx.open_table(REVS)?;
    Ok(live_at(&revs, key.as_bytes(), u64::MAX)?
        .and_then(|(rev, rec)| rec.into_kv(key.as_bytes(), rev)))
}

pub(crate) fn current_revision(db: &Database) -> StoreResult<Revision> {
    let rtx = db.begin_read()?;
    Ok(meta(&rtx.open_table(META)?, META_REVISION)? as Revision)
}

pub(crate) fn list(db: &Database, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
    let rtx = db.begin_read()?;
    let meta_t = rtx.open_table(META)?;
    let current = meta(&meta_t, META_REVISION)? as Revision;
    let compacted = meta(&meta_t, META_COMPACTED)? as Revision;
    let (at, start) = match &opts.continue_token {
        Some(token) => {
            let c = Continuation::decode(token, prefix)?;
            (c.revision, c.start)
        }
        None => (
            opts.revision.filter(|r| *r > 0).unwrap_or(current),
            prefix.to_string(),
        ),
    };
    if at < compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted,
        });
    }
    if at > current {
        return Err(StoreError::FutureRevision {
            requested: at,
            current,
        });
    }
    let revs = rtx.open_table(REVS)?;
    let end = prefix_end(prefix.as_bytes());
    let iter = if end == [0] {
        revs.range::<(&[u8], u64)>((start.as_bytes(), 0)..)?
    } else {
        revs.range::<(&[u8], u64)>((start.as_bytes(), 0)..(end.as_slice(), 0))?
    };
    let mut page = Page {
        limit: opts.limit,
        at,
        items: Vec::new(),
        continue_token: None,
    };
    // Entries come ordered by (key, revision): the last one ≤ `at` of a key is its value.
    let mut key_now: Vec<u8> = Vec::new();
    let mut newest: Option<(Revision, Vec<u8>)> = None;
    for entry in iter {
        let (k, v) = entry?;
        let (key, rev) = k.value();
        if key != key_now.as_slice() {
            if !page.offer(&key_now, newest.take())? {
                break;
            }
            key_now = key.to_vec();
        }
        if rev as Revision <= at {
            newest = Some((rev as Revision, v.value().to_vec()));
        }
    }
    if page.continue_token.is_none() {
        page.offer(&key_now, newest.take())?;
    }
    let Page {
        items,
        continue_token,
        ..
    } = page;
    Ok(ListPage {
        items,
        revision: at,
        continue_token,
    })
}

struct Page {
    limit: usize,
    at: Revision,
    items: Vec<KeyValue>,
    continue_token: Option<String>,
}

impl Page {
    /// Takes a key's newest version; false once the page is full and another live key
    /// proves a next page exists.
    fn offer(&mut self, key: &[u8], newest: Option<(Revision, Vec<u8>)>) -> StoreResult<bool> {
        let Some((rev, raw)) = newest else {
            return Ok(true);
        };
        let Some(kv) = Record::decode(key, &raw)?.into_kv(key, rev) else {
            return Ok(true);
        };
        if self.limit > 0 && self.items.len() == self.limit {
            if let Some(last) = self.items.last() {
                self.continue_token = Some(Continuation::after(self.at, &last.key).encode());
            }
            return Ok(false);
        }
        self.items.push(kv);
        Ok(true)
    }
}

/// Every event under `prefix` from `from` to the newest revision, and that revision.
pub(crate) fn history(
    db: &Database,
    prefix: &str,
    from: Revision,
) -> StoreResult<(Vec<WatchEvent>, Revision)> {
    let rtx = db.begin_read()?;
    let meta_t = rtx.open_table(META)?;
    let current = meta(&meta_t, META_REVISION)? as Revision;
    let compacted = meta(&meta_t, META_COMPACTED)? as Revision;
    if from < compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compacted,
        });
    }
    let log = rtx.open_table(LOG)?;
    let revs = rtx.open_table(REVS)?;
    let mut events = Vec::new();
    for entry in log.range(from.max(1) as u64..)? {
        let (rev, keys) = entry?;
        let rev = rev.value();
        for key in decode_keys(keys.value())? {
            if !key.starts_with(prefix.as_bytes()) {
                continue;
            }
            let Some(raw) = revs.get((key.as_slice(), rev))? else {
                continue;
            };
            let record = Record::decode(&key, raw.value())?;
            let prev = if rev > 0 {
                live_at(&revs, &key, rev - 1)?.and_then(|(r, rec)| rec.into_kv(&key, r))
            } else {
                None
            };
            events.push(match record.into_kv(&key, rev as Revision) {
                Some(kv) => WatchEvent {
                    kind: EventKind::Put,
                    kv,
                    prev,
                },
                None => WatchEvent {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: rev as Revision,
                        version: 0,
                        lease: 0,
                    },
                    prev,
                },
            });
        }
    }
    Ok((events, current))
}

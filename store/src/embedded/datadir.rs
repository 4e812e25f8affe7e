//! Opening a data directory: initialise an empty one, refuse a foreign or corrupt one
//! with an error naming the path — never reset anything.

use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, ReadableTable, TableError};

use crate::embedded::tables::*;
use crate::embedded::EmbeddedOptions;
use crate::error::{StoreError, StoreResult};
use crate::kv::{LeaseId, Revision};

pub(crate) const FILE_NAME: &str = "drover.redb";

pub(crate) struct Opened {
    pub db: Database,
    pub path: PathBuf,
    pub revision: Revision,
    pub compacted: Revision,
    pub lease_seq: i64,
    pub leases: Vec<(LeaseId, i64)>,
}

pub(crate) fn open(dir: &Path, opts: &EmbeddedOptions) -> StoreResult<Opened> {
    let bad = |path: &Path, reason: String| StoreError::DataDir {
        path: path.to_path_buf(),
        reason,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(bad(dir, "is not a directory".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| bad(dir, format!("cannot create: {e}")))?;
    let path = dir.join(FILE_NAME);
    let fresh = !path.exists();
    if fresh {
        let foreign: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| bad(dir, format!("cannot read: {e}")))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !foreign.is_empty() {
            return Err(bad(
                dir,
                format!(
                    "holds no {FILE_NAME} but other files ({}): not a Drover store directory; \
                     refusing to use it",
                    foreign.join(", ")
                ),
            ));
        }
    }
    let db = Database::builder()
        .set_cache_size(opts.cache_bytes)
        .create(&path)
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => {
                bad(&path, "is in use by another Drover process".into())
            }
            other => bad(&path, format!("is not a readable Drover store: {other}")),
        })?;
    if fresh {
        let wtx = db.begin_write()?;
        {
            wtx.open_table(REVS)?;
            wtx.open_table(LOG)?;
            wtx.open_table(LEASES)?;
            wtx.open_table(LEASE_KEYS)?;
            let mut meta = wtx.open_table(META)?;
            meta.insert(META_FORMAT, FORMAT_VERSION)?;
            meta.insert(META_REVISION, 0)?;
        }
        wtx.commit()?;
    }
    let rtx = db.begin_read()?;
    let meta_table = match rtx.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(bad(
                &path,
                "is a redb database but not a Drover store".into(),
            ))
        }
        Err(e) => return Err(bad(&path, format!("is not a readable Drover store: {e}"))),
    };
    let format = meta(&meta_table, META_FORMAT)?;
    if format != FORMAT_VERSION {
        return Err(bad(
            &path,
            format!("has store format {format}; this drover reads format {FORMAT_VERSION}"),
        ));
    }
    let revision = meta(&meta_table, META_REVISION)? as Revision;
    let compacted = meta(&meta_table, META_COMPACTED)? as Revision;
    let lease_seq = meta(&meta_table, META_LEASE_SEQ)? as i64;
    let leases = rtx
        .open_table(LEASES)?
        .iter()?
        .map(|e| e.map(|(k, v)| (k.value(), v.value())))
        .collect::<Result<Vec<_>, _>>()?;
    drop(meta_table);
    drop(rtx);
    Ok(Opened {
        db,
        path,
        revision,
        compacted,
        lease_seq,
        leases,
    })
}

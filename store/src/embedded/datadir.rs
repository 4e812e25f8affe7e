//! Opening a data directory: initialise an empty one, refuse a foreign, corrupt or busy
//! one with an error naming the path — never reset anything — and recover the state
//! from the snapshot plus the WAL after it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::embedded::mvcc::Mem;
use crate::embedded::snapshot;
use crate::embedded::wal::{read_segment, segments, sync_dir, Wal};
use crate::error::{StoreError, StoreResult};

pub(crate) const MARKER: &str = "DROVER_STORE";
const MARKER_TEXT: &str = "drover embedded store, format 2\n";
const LOCK: &str = "LOCK";

pub(crate) struct Opened {
    pub mem: Mem,
    pub wal: Wal,
    /// Held (locked) for as long as the store is open.
    pub lock: File,
    pub dir: PathBuf,
}

fn bad(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::DataDir {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn open(dir: &Path) -> StoreResult<Opened> {
    if dir.exists() && !dir.is_dir() {
        return Err(bad(dir, "is not a directory"));
    }
    std::fs::create_dir_all(dir).map_err(|e| bad(dir, format!("cannot create: {e}")))?;
    let marker = dir.join(MARKER);
    if marker.exists() {
        let text = std::fs::read_to_string(&marker)
            .map_err(|e| bad(&marker, format!("cannot read: {e}")))?;
        if text != MARKER_TEXT {
            return Err(bad(
                &marker,
                format!(
                    "says {:?}; this drover reads {:?}",
                    text.trim(),
                    MARKER_TEXT.trim()
                ),
            ));
        }
    } else {
        let foreign: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| bad(dir, format!("cannot read: {e}")))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !foreign.is_empty() {
            return Err(bad(
                dir,
                format!(
                    "holds no {MARKER} but other files ({}): not a Drover store directory; \
                     refusing to use it",
                    foreign.join(", ")
                ),
            ));
        }
        std::fs::write(&marker, MARKER_TEXT)?;
        File::open(&marker)?.sync_all()?;
        sync_dir(dir)?;
    }
    let lock_path = dir.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    if lock.try_lock().is_err() {
        return Err(bad(dir, "is in use by another Drover process"));
    }

    let snap = dir.join(snapshot::FILE);
    let (mut mem, next_wal) = if snap.exists() {
        snapshot::load(&snap)?
    } else {
        (Mem::default(), 0)
    };
    let _ = std::fs::remove_file(dir.join("snapshot.tmp"));
    let mut segs = segments(dir)?;
    // Segments the snapshot already covers are leftovers of a crash mid-cleanup.
    for (_, path) in segs.iter().filter(|(seq, _)| *seq < next_wal) {
        std::fs::remove_file(path)?;
    }
    segs.retain(|(seq, _)| *seq >= next_wal);
    let mut groups = 0usize;
    for (i, (_, path)) in segs.iter().enumerate() {
        for group in read_segment(path, i + 1 == segs.len())? {
            for m in &group {
                mem.apply(m, None);
            }
            groups += 1;
        }
    }
    let seq = segs
        .last()
        .map(|(s, _)| s + 1)
        .unwrap_or(next_wal)
        .max(next_wal);
    let wal = Wal::create(dir, seq)?;
    tracing::debug!(dir = %dir.display(), groups, revision = mem.revision, "recovered embedded store");
    Ok(Opened {
        mem,
        wal,
        lock,
        dir: dir.to_path_buf(),
    })
}

//! The write-ahead log: numbered segment files of framed records, one record per group
//! commit (`u32` length, `u32` CRC-32 of the payload, payload). A record is acknowledged
//! only after `fdatasync`, so only the tail of the newest segment can be torn by a crash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::embedded::codec::{decode_mutations, encode_mutations};
use crate::embedded::mvcc::Mutation;
use crate::error::{StoreError, StoreResult};

const PREFIX: &str = "wal-";
const SUFFIX: &str = ".log";
const FRAME: usize = 8;

pub(crate) struct Wal {
    dir: PathBuf,
    file: File,
    pub seq: u64,
    /// Bytes appended since the last snapshot.
    pub bytes_since_snapshot: u64,
    buf: Vec<u8>,
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:016}{SUFFIX}"))
}

/// The segments in `dir`, oldest first.
pub(crate) fn segments(dir: &Path) -> StoreResult<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(seq) = name
            .strip_prefix(PREFIX)
            .and_then(|s| s.strip_suffix(SUFFIX))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Starts a new, empty segment.
    pub(crate) fn create(dir: &Path, seq: u64) -> StoreResult<Self> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(dir, seq))?;
        sync_dir(dir)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            seq,
            bytes_since_snapshot: 0,
            buf: Vec::new(),
        })
    }

    /// Appends one group's mutations and makes them durable.
    pub(crate) fn append(&mut self, ms: &[Mutation]) -> std::io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0u8; FRAME]);
        encode_mutations(ms, &mut self.buf);
        let payload_len = (self.buf.len() - FRAME) as u32;
        let crc = crc32fast::hash(&self.buf[FRAME..]);
        self.buf[0..4].copy_from_slice(&payload_len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        self.bytes_since_snapshot += self.buf.len() as u64;
        Ok(())
    }

    /// Closes this segment and continues in the next; returns the new segment's number.
    pub(crate) fn rotate(&mut self) -> StoreResult<u64> {
        let next = Wal::create(&self.dir, self.seq + 1)?;
        *self = next;
        Ok(self.seq)
    }
}

/// Reads every record of a segment. A bad record in the newest segment is a torn tail:
/// the segment is truncated there (nothing after it was ever acknowledged). Anywhere
/// else it is corruption, reported with the file and offset.
pub(crate) fn read_segment(path: &Path, newest: bool) -> StoreResult<Vec<Vec<Mutation>>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut groups = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let problem = match frame(&bytes, at) {
            Ok((payload, next)) => match decode_mutations(payload) {
                Ok(ms) => {
                    groups.push(ms);
                    at = next;
                    continue;
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        if !newest {
            return Err(StoreError::DataDir {
                path: path.to_path_buf(),
                reason: format!("corrupt WAL record at byte {at}: {problem}"),
            });
        }
        tracing::warn!(
            path = %path.display(),
            offset = at,
            dropped_bytes = bytes.len() - at,
            problem,
            "truncating a torn WAL tail (an unacknowledged write interrupted by a crash)"
        );
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(at as u64)?;
        f.sync_all()?;
        break;
    }
    Ok(groups)
}

fn frame(bytes: &[u8], at: usize) -> Result<(&[u8], usize), String> {
    let header = bytes.get(at..at + FRAME).ok_or("short record header")?;
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[0..4]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&header[4..8]);
    let len = u32::from_le_bytes(len) as usize;
    let payload = bytes
        .get(at + FRAME..at + FRAME + len)
        .ok_or("record shorter than its length")?;
    if crc32fast::hash(payload) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch".into());
    }
    Ok((payload, at + FRAME + len))
}

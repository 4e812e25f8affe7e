//! Snapshots: the whole MVCC state at a group boundary, so the WAL before it can go.
//! Written to a temporary file, fsynced, then renamed over `snapshot`; a CRC-32 covers it.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::embedded::codec::{Dec, DecodeResult, Enc};
use crate::embedded::mvcc::{Frozen, Keys, Mem, Value, Version, Versions};
use crate::embedded::wal::sync_dir;
use crate::error::{StoreError, StoreResult};

pub(crate) const FILE: &str = "snapshot";
const TMP: &str = "snapshot.tmp";
const MAGIC: &[u8; 8] = b"DROVSNP1";

/// Writes `mem` as the snapshot that WAL segments from `next_wal` on continue; returns
/// its size in bytes.
pub(crate) fn write(dir: &Path, mem: &Frozen, next_wal: u64) -> StoreResult<u64> {
    let tmp = dir.join(TMP);
    let file = File::create(&tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::with_capacity(4096);
    out.write_all(MAGIC)?;
    let mut chunk = |buf: &mut Vec<u8>, out: &mut BufWriter<File>| -> std::io::Result<()> {
        crc.update(buf);
        out.write_all(buf)?;
        buf.clear();
        Ok(())
    };
    {
        let mut e = Enc(&mut buf);
        e.i64(next_wal as i64);
        e.i64(mem.revision);
        e.i64(mem.compacted);
        e.i64(mem.lease_seq);
        e.u32(mem.leases.len() as u32);
        for (id, ttl) in &mem.leases {
            e.i64(*id);
            e.i64(*ttl);
        }
        e.u32(mem.keys.len() as u32);
    }
    chunk(&mut buf, &mut out)?;
    for (key, versions) in &mem.keys {
        let mut e = Enc(&mut buf);
        e.bytes(key.as_bytes());
        e.u32(versions.len() as u32);
        for v in versions {
            e.i64(v.revision);
            match &v.value {
                None => e.u8(0),
                Some(val) => {
                    e.u8(1);
                    e.i64(val.create_revision);
                    e.i64(val.version);
                    e.i64(val.lease);
                    e.bytes(&val.data);
                }
            }
        }
        if buf.len() > 1 << 16 {
            chunk(&mut buf, &mut out)?;
        }
    }
    {
        let mut e = Enc(&mut buf);
        e.u32(mem.log.len() as u32);
        for (rev, keys) in &mem.log {
            e.i64(*rev);
            e.u32(keys.len() as u32);
            for k in keys {
                e.bytes(k.as_bytes());
            }
        }
    }
    chunk(&mut buf, &mut out)?;
    let sum = crc.finalize();
    out.write_all(&sum.to_le_bytes())?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    std::fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)?;
    Ok(size)
}

/// Reads a snapshot: the state and the first WAL segment to replay after it.
pub(crate) fn load(path: &Path) -> StoreResult<(Mem, u64)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let corrupt = |reason: String| StoreError::DataDir {
        path: path.to_path_buf(),
        reason: format!("corrupt snapshot: {reason}"),
    };
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not a Drover snapshot (bad header)".into()));
    }
    let body = &bytes[MAGIC.len()..bytes.len() - 4];
    let mut sum = [0u8; 4];
    sum.copy_from_slice(&bytes[bytes.len() - 4..]);
    if crc32fast::hash(body) != u32::from_le_bytes(sum) {
        return Err(corrupt("checksum mismatch".into()));
    }
    decode(body).map_err(corrupt)
}

fn decode(body: &[u8]) -> DecodeResult<(Mem, u64)> {
    let mut d = Dec::new(body);
    let next_wal = d.i64()? as u64;
    let mut mem = Mem {
        revision: d.i64()?,
        compacted: d.i64()?,
        lease_seq: d.i64()?,
        ..Mem::default()
    };
    for _ in 0..d.u32()? {
        let (id, ttl) = (d.i64()?, d.i64()?);
        mem.leases.insert(id, ttl);
    }
    let nkeys = d.u32()?;
    let mut entries = Vec::with_capacity((nkeys as usize).min(1 << 20));
    for _ in 0..nkeys {
        let key: Arc<str> = Arc::from(d.string()?);
        let n = d.u32()? as usize;
        let mut versions = Versions::with_capacity(n.min(1024));
        for _ in 0..n {
            let revision = d.i64()?;
            let value = match d.u8()? {
                0 => None,
                1 => Some(Arc::new(Value {
                    create_revision: d.i64()?,
                    version: d.i64()?,
                    lease: d.i64()?,
                    data: d.bytes()?.to_vec(),
                })),
                t => return Err(format!("unknown version tag {t} in key {key}")),
            };
            versions.push(Version { revision, value });
        }
        if let Some(Some(val)) = versions.last().map(|v| v.value.as_ref()) {
            if val.lease != 0 {
                mem.lease_keys
                    .entry(val.lease)
                    .or_default()
                    .insert(key.clone());
            }
        }
        entries.push((key, versions));
    }
    mem.keys = Keys::from_entries(entries);
    for _ in 0..d.u32()? {
        let rev = d.i64()?;
        let n = d.u32()? as usize;
        let mut ks = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let k = d.string()?;
            ks.push(mem.keys.shared(&k).unwrap_or_else(|| Arc::from(k)));
        }
        mem.log.insert(rev, ks);
    }
    if !d.done() {
        return Err("trailing bytes".into());
    }
    Ok((mem, next_wal))
}

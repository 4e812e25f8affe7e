//! The little binary encoding the WAL and snapshots share: fixed-width little-endian
//! integers and length-prefixed byte strings, and the mutation format on top of them.

use crate::embedded::mvcc::{Mutation, WriteOp};

pub(crate) struct Enc<'a>(pub &'a mut Vec<u8>);

impl Enc<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

/// A reader over a byte string; every short read is an error, never a panic.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    at: usize,
}

pub(crate) type DecodeResult<T> = Result<T, String>;

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, at: 0 }
    }
    pub fn done(&self) -> bool {
        self.at >= self.buf.len()
    }
    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let s = self
            .buf
            .get(self.at..end)
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.at))?;
        self.at = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn i64(&mut self) -> DecodeResult<i64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }
    pub fn u32(&mut self) -> DecodeResult<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    pub fn bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> DecodeResult<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|e| format!("key is not UTF-8: {e}"))
    }
}

const WRITE: u8 = 1;
const GRANT: u8 = 2;
const REVOKE: u8 = 3;
const COMPACT: u8 = 4;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

pub(crate) fn encode_mutations(ms: &[Mutation], out: &mut Vec<u8>) {
    let mut e = Enc(out);
    for m in ms {
        match m {
            Mutation::Write { revision, ops } => {
                e.u8(WRITE);
                e.i64(*revision);
                e.u32(ops.len() as u32);
                for op in ops {
                    match op {
                        WriteOp::Put { key, value, lease } => {
                            e.u8(OP_PUT);
                            e.bytes(key.as_bytes());
                            e.i64(*lease);
                            e.bytes(value);
                        }
                        WriteOp::Delete { key } => {
                            e.u8(OP_DELETE);
                            e.bytes(key.as_bytes());
                        }
                    }
                }
            }
            Mutation::Grant { id, ttl } => {
                e.u8(GRANT);
                e.i64(*id);
                e.i64(*ttl);
            }
            Mutation::Revoke { id, revision } => {
                e.u8(REVOKE);
                e.i64(*id);
                e.i64(*revision);
            }
            Mutation::Compact { at } => {
                e.u8(COMPACT);
                e.i64(*at);
            }
        }
    }
}

pub(crate) fn decode_mutations(buf: &[u8]) -> DecodeResult<Vec<Mutation>> {
    let mut d = Dec::new(buf);
    let mut out = Vec::new();
    while !d.done() {
        out.push(match d.u8()? {
            WRITE => {
                let revision = d.i64()?;
                let n = d.u32()? as usize;
                let mut ops = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    ops.push(match d.u8()? {
                        OP_PUT => WriteOp::Put {
                            key: d.string()?,
                            lease: d.i64()?,
                            value: d.bytes()?.to_vec(),
                        },
                        OP_DELETE => WriteOp::Delete { key: d.string()? },
                        t => return Err(format!("unknown write op {t}")),
                    });
                }
                Mutation::Write { revision, ops }
            }
            GRANT => Mutation::Grant {
                id: d.i64()?,
                ttl: d.i64()?,
            },
            REVOKE => Mutation::Revoke {
                id: d.i64()?,
                revision: d.i64()?,
            },
            COMPACT => Mutation::Compact { at: d.i64()? },
            t => return Err(format!("unknown mutation type {t}")),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_round_trip_and_truncation_is_an_error() {
        let ms = vec![
            Mutation::Write {
                revision: 7,
                ops: vec![
                    WriteOp::Put {
                        key: "/a".into(),
                        value: b"{}".to_vec(),
                        lease: 3,
                    },
                    WriteOp::Delete { key: "/b".into() },
                ],
            },
            Mutation::Grant { id: 3, ttl: 10 },
            Mutation::Revoke { id: 3, revision: 8 },
            Mutation::Compact { at: 5 },
        ];
        let mut buf = Vec::new();
        encode_mutations(&ms, &mut buf);
        assert_eq!(decode_mutations(&buf).expect("decodes"), ms);
        for cut in [1, 5, buf.len() - 1] {
            assert!(decode_mutations(&buf[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_mutations(&[9]).is_err());
    }
}

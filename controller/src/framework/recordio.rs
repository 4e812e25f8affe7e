//! RecordIO, the framing of Mesos's streaming HTTP APIs: each record is its length in
//! bytes as decimal ASCII, a `\n`, then the record itself. Chunked transfer encoding
//! does not keep message boundaries, so the subscription stream needs its own.

use axum::body::Bytes;

/// One record: `<len>\n<bytes>`.
pub fn frame(record: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(record.len() + 8);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
    Bytes::from(out)
}

/// One JSON value as a record.
pub fn frame_json(value: &serde_json::Value) -> Bytes {
    frame(&serde_json::to_vec(value).unwrap_or_default())
}

/// Splits a byte stream back into records, whatever the chunks (for clients and tests).
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

/// The stream is not RecordIO.
#[derive(Debug, thiserror::Error)]
#[error("not a RecordIO stream: bad length prefix {0:?}")]
pub struct BadFrame(pub String);

impl Decoder {
    /// Adds `chunk` and returns every record now complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, BadFrame> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > 20 {
                    return Err(BadFrame(String::from_utf8_lossy(&self.buf[..20]).into()));
                }
                break;
            };
            let text = String::from_utf8_lossy(&self.buf[..nl]).into_owned();
            let len: usize = text.trim().parse().map_err(|_| BadFrame(text.clone()))?;
            if self.buf.len() < nl + 1 + len {
                break;
            }
            out.push(self.buf[nl + 1..nl + 1 + len].to_vec());
            self.buf.drain(..nl + 1 + len);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_any_chunking() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&frame(b"{\"type\":\"HEARTBEAT\"}"));
        wire.extend_from_slice(&frame(b""));
        wire.extend_from_slice(&frame("é\n".as_bytes()));
        for size in 1..wire.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(size) {
                got.extend(d.push(chunk).expect("valid"));
            }
            assert_eq!(
                got,
                vec![
                    b"{\"type\":\"HEARTBEAT\"}".to_vec(),
                    Vec::new(),
                    "é\n".as_bytes().to_vec()
                ]
            );
        }
        assert!(Decoder::default().push(b"x\n").is_err());
    }
}

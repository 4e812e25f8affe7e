//! Keeps a task's `stdout`/`stderr` bounded: past the limit the file is copied to
//! `<file>.1` and truncated in place (the task holds it open with O_APPEND, so it keeps
//! writing at the new end and survives an agent restart).

use std::path::{Path, PathBuf};

/// Default size at which a log file is rotated.
pub const DEFAULT_LIMIT: u64 = 10 * 1024 * 1024;

/// `<file>.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Rotates `path` if it is larger than `limit`; returns whether it did.
pub fn rotate_if_larger(path: &Path, limit: u64) -> std::io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= limit {
        return Ok(false);
    }
    std::fs::copy(path, rotated_path(path))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_the_limit_keeping_one_old_file() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("stdout");
        std::fs::write(&log, b"small")?;
        assert!(!rotate_if_larger(&log, 10)?);
        std::fs::write(&log, b"0123456789abc")?;
        assert!(rotate_if_larger(&log, 10)?);
        assert_eq!(std::fs::read(&log)?, b"");
        assert_eq!(std::fs::read(rotated_path(&log))?, b"0123456789abc");
        std::fs::write(&log, b"second generation")?;
        assert!(rotate_if_larger(&log, 10)?);
        assert_eq!(std::fs::read(rotated_path(&log))?, b"second generation");
        Ok(())
    }
}

//! What only the embedded backend has to prove: durability across SIGKILL, recovery from
//! snapshot + WAL, torn tails, refusing foreign or corrupt data directories, automatic
//! compaction.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use drover_store::{EmbeddedOptions, EmbeddedStore, ListOptions, Op, Store, StoreError, Txn};

/// A child process writes from 8 tasks and prints each acknowledged write; it is killed
/// with SIGKILL mid-stream. Every acknowledged write must be there after reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_crash_recovery_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store_dir = dir.path().join("store");
    for round in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
            .arg(&store_dir)
            .arg(format!("round{round}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let mut acked = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("line");
            acked.push(line);
            if acked.len() == 1500 {
                child.kill().expect("SIGKILL the writer");
                break;
            }
        }
        // Acks already written before the kill still count.
        for line in lines {
            match line {
                Ok(l) if l.starts_with("ack ") => acked.push(l),
                _ => break,
            }
        }
        assert!(
            acked.len() >= 1500,
            "round {round}: the writer stopped early after {} acks",
            acked.len()
        );
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "round {round}: the writer must have been killed"
        );

        let store = EmbeddedStore::open(&store_dir).expect("reopen after SIGKILL");
        let mut max_rev = 0;
        for line in &acked {
            let mut parts = line.split(' ').skip(1);
            let (key, rev) = (parts.next().expect("key"), parts.next().expect("rev"));
            let rev: i64 = rev.parse().expect("revision");
            let kv =
                store.get(key).await.expect("get").unwrap_or_else(|| {
                    panic!("round {round}: acknowledged {key} at {rev} is lost")
                });
            assert_eq!(kv.mod_revision, rev, "{key}");
            max_rev = max_rev.max(rev);
        }
        let current = store.current_revision().await.expect("revision");
        assert!(
            current >= max_rev,
            "revision went backwards: {current} < {max_rev}"
        );
        // The reopened store is fully usable: it lists, and writes continue the revisions.
        let page = store
            .list("/crash/", ListOptions::default())
            .await
            .expect("list");
        assert!(page.items.len() >= acked.len());
        let r = store
            .create(&format!("/after/{round}"), b"x".to_vec(), 0)
            .await
            .expect("write");
        assert_eq!(r, current + 1);
        drop(store);
        // Let the writer thread release the file lock.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn embedded_reopen_keeps_data_revision_and_leases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rev, lease) = {
        let s = EmbeddedStore::open(dir.path()).expect("open");
        let lease = s.grant_lease(60).await.expect("lease");
        s.create("/a", b"1".to_vec(), 0).await.expect("create");
        s.create("/leased", b"l".to_vec(), lease)
            .await
            .expect("create");
        (s.current_revision().await.expect("rev"), lease)
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let s = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(s.current_revision().await.expect("rev"), rev);
    assert_eq!(
        s.get("/a").await.expect("get").map(|kv| kv.value),
        Some(b"1".to_vec())
    );
    assert_eq!(s.keep_alive(lease).await.expect("lease survives"), 60);
    let other = s.grant_lease(5).await.expect("new lease");
    assert_ne!(other, lease, "lease ids are not reused");
    s.revoke_lease(lease).await.expect("revoke");
    assert_eq!(s.get("/leased").await.expect("get"), None);
}

#[test]
fn embedded_refuses_a_foreign_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("important.txt"), "keep me").expect("write");
    let err = EmbeddedStore::open(dir.path()).err().expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("not a Drover store directory"), "{msg}");
    assert!(msg.contains("important.txt"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("important.txt")).expect("read"),
        "keep me"
    );
    assert!(!dir.path().join("DROVER_STORE").exists());
}

/// Seeds a store whose WAL has several segments and a snapshot, returns its directory.
async fn seeded(dir: &std::path::Path, writes: usize) -> i64 {
    let opts = EmbeddedOptions {
        snapshot_wal_bytes: 16 << 10,
        ..Default::default()
    };
    let s = EmbeddedStore::open_with(dir, opts).expect("open");
    let mut rev = 0;
    for i in 0..writes {
        rev = s
            .create(&format!("/seed/{i:05}"), vec![b'x'; 200], 0)
            .await
            .expect("create");
    }
    // Let a snapshot in flight finish.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    rev
}

#[tokio::test]
async fn embedded_recovers_from_snapshot_and_wal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rev = seeded(dir.path(), 400).await;
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "snapshot"),
        "a snapshot was written: {names:?}"
    );
    let s = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(s.current_revision().await.expect("rev"), rev);
    let page = s
        .list("/seed/", ListOptions::default())
        .await
        .expect("list");
    assert_eq!(page.items.len(), 400);
    assert!(page
        .items
        .iter()
        .enumerate()
        .all(|(i, kv)| kv.key == format!("/seed/{i:05}")));
}

#[tokio::test]
async fn embedded_truncates_a_torn_wal_tail_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let s = EmbeddedStore::open(dir.path()).expect("open");
        for i in 0..10 {
            s.create(&format!("/k/{i}"), b"v".to_vec(), 0)
                .await
                .expect("create");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A crash mid-append leaves half a record at the end of the newest segment.
    let newest = newest_segment(dir.path());
    let mut bytes = std::fs::read(&newest).expect("read");
    let whole = bytes.len();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    std::fs::write(&newest, &bytes).expect("write");
    let s = EmbeddedStore::open(dir.path()).expect("a torn tail is not an error");
    assert_eq!(
        s.list("/k/", ListOptions::default())
            .await
            .expect("list")
            .items
            .len(),
        10
    );
    assert_eq!(
        std::fs::metadata(&newest).expect("stat").len() as usize,
        whole,
        "tail truncated"
    );
    s.create("/k/after", b"v".to_vec(), 0)
        .await
        .expect("writes go on");
}

#[tokio::test]
async fn embedded_refuses_a_corrupt_wal_record_that_is_not_the_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let s = EmbeddedStore::open(dir.path()).expect("open");
        for i in 0..10 {
            s.create(&format!("/k/{i}"), b"value".to_vec(), 0)
                .await
                .expect("create");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Reopening starts a new segment, so the one with data is no longer the newest.
    drop(EmbeddedStore::open(dir.path()).expect("reopen"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let segs = segments(dir.path());
    let (with_data, _) = segs
        .iter()
        .map(|p| (p.clone(), std::fs::metadata(p).expect("stat").len()))
        .find(|(_, len)| *len > 0)
        .expect("a segment with data");
    let mut bytes = std::fs::read(&with_data).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&with_data, &bytes).expect("write");
    let msg = EmbeddedStore::open(dir.path())
        .err()
        .expect("must refuse")
        .to_string();
    assert!(msg.contains(&with_data.display().to_string()), "{msg}");
    assert!(msg.contains("corrupt WAL record"), "{msg}");
    assert_eq!(
        std::fs::read(&with_data).expect("read"),
        bytes,
        "the file must be untouched"
    );
}

#[tokio::test]
async fn embedded_refuses_a_corrupt_snapshot_and_leaves_it_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    seeded(dir.path(), 400).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let snap = dir.path().join("snapshot");
    let mut bytes = std::fs::read(&snap).expect("snapshot exists");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&snap, &bytes).expect("write");
    let err = EmbeddedStore::open(dir.path()).err().expect("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::DataDir { .. }), "{msg}");
    assert!(
        msg.contains(&snap.display().to_string()) && msg.contains("corrupt snapshot"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&snap).expect("read"),
        bytes,
        "the file must be untouched"
    );
}

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("wal-"))
        })
        .collect();
    segs.sort();
    segs
}

fn newest_segment(dir: &std::path::Path) -> std::path::PathBuf {
    segments(dir).pop().expect("a WAL segment")
}

#[test]
fn embedded_refuses_a_file_as_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").expect("write");
    let msg = EmbeddedStore::open(&file)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(
        msg.contains("is not a directory") && msg.contains("plain"),
        "{msg}"
    );
}

#[tokio::test]
async fn embedded_refuses_a_second_opener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = EmbeddedStore::open(dir.path()).expect("open");
    let msg = EmbeddedStore::open(dir.path())
        .err()
        .expect("must refuse")
        .to_string();
    assert!(msg.contains("in use"), "{msg}");
}

#[tokio::test]
async fn embedded_compacts_beyond_its_history_window() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = EmbeddedOptions {
        history_revisions: 50,
        ..Default::default()
    };
    let s = EmbeddedStore::open_with(dir.path(), opts).expect("open");
    let mut rev = s.create("/k", b"0".to_vec(), 0).await.expect("create");
    for i in 1..200 {
        rev = s
            .update("/k", i.to_string().into_bytes(), rev, 0)
            .await
            .expect("update");
    }
    s.txn(Txn::new().then(Op::put("/other", "x")))
        .await
        .expect("txn");
    let err = s
        .list(
            "/",
            ListOptions {
                revision: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect_err("old history is compacted");
    assert!(matches!(err, StoreError::Compacted { .. }), "{err}");
    let recent = s
        .list(
            "/",
            ListOptions {
                revision: Some(rev - 10),
                ..Default::default()
            },
        )
        .await
        .expect("recent history is kept");
    assert_eq!(recent.items[0].value, (199 - 10).to_string().into_bytes());
}

/// The next snapshot waits for as many WAL bytes as the last snapshot holds (at least
/// `snapshot_wal_bytes`): a large store is not rewritten whole every few writes.
#[tokio::test]
async fn embedded_snapshots_wait_for_as_much_wal_as_the_last_snapshot_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = EmbeddedOptions {
        snapshot_wal_bytes: 16 << 10,
        ..Default::default()
    };
    let s = EmbeddedStore::open_with(dir.path(), opts).expect("open");
    let snapshot = dir.path().join("snapshot");
    let identity = || {
        std::fs::metadata(&snapshot)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    // ~300 KiB of state: snapshots are taken along the way, the last one large.
    for i in 0..300 {
        s.create(&format!("/big/{i:04}"), vec![b'x'; 1024], 0)
            .await
            .expect("create");
    }
    let mut settled = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = identity();
        if now.is_some() && now == settled {
            break;
        }
        settled = now;
    }
    let (size, _) = settled.expect("a snapshot was written");
    assert!(
        size > 64 << 10,
        "the last snapshot holds most of the state: {size} bytes"
    );
    // 64 KiB of small writes: four times `snapshot_wal_bytes`, less than the snapshot.
    for i in 0..256 {
        s.txn(Txn::new().then(Op::put(format!("/small/{}", i % 8), vec![b'y'; 200])))
            .await
            .expect("put");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        identity(),
        settled,
        "no snapshot before the WAL outgrows the last one"
    );
    // Past the snapshot's size in WAL: the next one is written.
    for i in 0..400 {
        s.txn(Txn::new().then(Op::put(format!("/small/{}", i % 8), vec![b'z'; 1024])))
            .await
            .expect("put");
    }
    let mut rewritten = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if identity() != settled {
            rewritten = true;
            break;
        }
    }
    assert!(
        rewritten,
        "a snapshot once the WAL holds more than the last snapshot"
    );
}

/// A state written as a snapshot comes back whole: keys listed in order although
/// written out of order, every retained version replayed to a watch from before the
/// snapshot (with previous values), and a lease's keys still deleted by its revoke.
#[tokio::test]
async fn embedded_snapshot_restores_order_history_and_leases() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = EmbeddedOptions {
        snapshot_wal_bytes: 4 << 10,
        ..Default::default()
    };
    let (first, lease, last) = {
        let s = EmbeddedStore::open_with(dir.path(), opts.clone()).expect("open");
        let lease = s.grant_lease(60).await.expect("lease");
        let first = s.create("/s/m", b"m1".to_vec(), 0).await.expect("create");
        let r = s
            .update("/s/m", b"m2".to_vec(), first, 0)
            .await
            .expect("update");
        s.create("/s/z", b"z".to_vec(), lease)
            .await
            .expect("create");
        s.create("/s/a", b"a".to_vec(), 0).await.expect("create");
        s.delete("/s/m", Some(r)).await.expect("delete");
        let mut last = 0;
        for i in (0..60).rev() {
            last = s
                .create(&format!("/s/k{i:02}"), vec![b'x'; 200], 0)
                .await
                .expect("create");
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        (first, lease, last)
    };
    assert!(
        dir.path().join("snapshot").exists(),
        "a snapshot was written"
    );
    let s = EmbeddedStore::open_with(dir.path(), opts).expect("reopen");
    let keys: Vec<String> = s
        .list("/s/", ListOptions::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    let mut want: Vec<String> = (0..60).map(|i| format!("/s/k{i:02}")).collect();
    want.insert(0, "/s/a".into());
    want.push("/s/z".into());
    assert_eq!(keys, want);

    let mut w = s
        .watch("/s/", first)
        .await
        .expect("watch from before the snapshot");
    let mut seen = Vec::new();
    while seen.len() < 5 + 60 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
            .await
            .expect("history arrives")
            .expect("stream open")
            .expect("no error");
        seen.push(ev);
    }
    let head: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = seen[..5]
        .iter()
        .map(|e| {
            (
                e.kv.key.clone(),
                e.kv.value.clone(),
                e.prev.as_ref().map(|p| p.value.clone()),
            )
        })
        .collect();
    assert_eq!(
        head,
        vec![
            ("/s/m".into(), b"m1".to_vec(), None),
            ("/s/m".into(), b"m2".to_vec(), Some(b"m1".to_vec())),
            ("/s/z".into(), b"z".to_vec(), None),
            ("/s/a".into(), b"a".to_vec(), None),
            ("/s/m".into(), Vec::new(), Some(b"m2".to_vec())),
        ]
    );
    assert_eq!(seen.last().map(|e| e.kv.mod_revision), Some(last));

    s.revoke_lease(lease).await.expect("revoke");
    assert_eq!(s.get("/s/z").await.expect("get"), None);
    assert!(s.get("/s/a").await.expect("get").is_some());
}

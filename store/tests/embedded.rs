//! What only the embedded backend has to prove: durability across SIGKILL, reopening,
//! refusing foreign or corrupt data directories, automatic compaction.

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
    assert!(!dir.path().join("drover.redb").exists());
}

#[test]
fn embedded_refuses_a_corrupt_file_and_leaves_it_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("drover.redb");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &garbage).expect("write");
    let err = EmbeddedStore::open(dir.path()).err().expect("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::DataDir { .. }), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert_eq!(
        std::fs::read(&file).expect("read"),
        garbage,
        "the file must be untouched"
    );
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

//! The store contract, checked against both backends: every case runs once on the
//! embedded store (`embedded::…`) and once on a real etcd (`etcd::…`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drover_store::{
    Compare, EmbeddedStore, EtcdServer, EtcdStore, EventKind, ListOptions, Op, Revision, Store,
    StoreError, Txn, WatchEvent, WatchStream,
};
use futures::StreamExt;

/// A store and whatever keeps it alive (its temp dir or its etcd process).
struct Harness {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _etcd: Option<EtcdServer>,
}

async fn embedded() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path().join("store")).expect("open embedded store");
    Harness {
        store: Arc::new(store),
        _dir: Some(dir),
        _etcd: None,
    }
}

async fn etcd() -> Harness {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    let store = EtcdStore::connect(&[server.endpoint().to_string()])
        .await
        .expect("connect to etcd");
    Harness {
        store: Arc::new(store),
        _dir: None,
        _etcd: Some(server),
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = super::embedded().await;
                    super::cases::$case(h.store.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = super::etcd().await;
                    super::cases::$case(h.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    create_get_update_delete,
    cas_conflicts_under_concurrent_writers,
    txn_is_atomic,
    txn_rejects_a_key_written_twice,
    watch_orders_events_with_prev_values,
    watch_resumes_from_a_revision,
    watch_sees_only_its_prefix,
    compaction_gives_compacted,
    lease_expiry_deletes_attached_keys,
    lease_revoke_deletes_attached_keys,
    pagination_is_stable_under_concurrent_writes,
    list_reads_a_past_revision,
    list_rejects_a_foreign_continue_token,
);

/// The next `n` events, or a panic naming how many arrived.
async fn take(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(ev))) => out.push(ev),
            Ok(Some(Err(e))) => panic!("watch error after {} events: {e}", out.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", out.len()),
            Err(_) => panic!("timed out after {} of {n} events", out.len()),
        }
    }
    out
}

mod cases {
    use super::*;

    pub async fn create_get_update_delete(s: Arc<dyn Store>) {
        let r1 = s.create("/t/a", b"1".to_vec(), 0).await.expect("create");
        assert!(matches!(
            s.create("/t/a", b"x".to_vec(), 0).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        let kv = s.get("/t/a").await.expect("get").expect("present");
        assert_eq!(
            (
                kv.value.as_slice(),
                kv.mod_revision,
                kv.create_revision,
                kv.version
            ),
            (&b"1"[..], r1, r1, 1)
        );

        let r2 = s
            .update("/t/a", b"2".to_vec(), r1, 0)
            .await
            .expect("update");
        assert!(r2 > r1);
        let kv = s.get("/t/a").await.expect("get").expect("present");
        assert_eq!(
            (
                kv.value.as_slice(),
                kv.mod_revision,
                kv.create_revision,
                kv.version
            ),
            (&b"2"[..], r2, r1, 2)
        );

        match s.update("/t/a", b"3".to_vec(), r1, 0).await {
            Err(StoreError::Conflict {
                expected, actual, ..
            }) => assert_eq!((expected, actual), (r1, r2)),
            other => panic!("stale update must conflict, got {other:?}"),
        }
        assert!(matches!(
            s.update("/t/missing", b"3".to_vec(), r1, 0).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            s.delete("/t/a", Some(r1)).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(
            s.get("/t/a").await.expect("get").map(|kv| kv.value),
            Some(b"2".to_vec())
        );
        let r3 = s.delete("/t/a", Some(r2)).await.expect("delete");
        assert!(r3 > r2);
        assert_eq!(s.get("/t/a").await.expect("get"), None);
        assert!(matches!(
            s.delete("/t/a", None).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(s.current_revision().await.expect("rev"), r3);
    }

    /// Read-modify-write loops on one counter from many tasks: no update is lost and
    /// every successful write got its own revision.
    pub async fn cas_conflicts_under_concurrent_writers(s: Arc<dyn Store>) {
        const TASKS: usize = 16;
        const EACH: usize = 20;
        s.create("/t/counter", b"0".to_vec(), 0)
            .await
            .expect("create");
        let mut handles = Vec::new();
        for _ in 0..TASKS {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                let mut revs = Vec::new();
                let mut conflicts = 0;
                while revs.len() < EACH {
                    let kv = s.get("/t/counter").await.expect("get").expect("present");
                    let n: u64 = String::from_utf8_lossy(&kv.value).parse().expect("number");
                    match s
                        .update(
                            "/t/counter",
                            (n + 1).to_string().into_bytes(),
                            kv.mod_revision,
                            0,
                        )
                        .await
                    {
                        Ok(rev) => revs.push(rev),
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
                (revs, conflicts)
            }));
        }
        let mut all_revs = Vec::new();
        let mut conflicts = 0;
        for h in handles {
            let (revs, c) = h.await.expect("join");
            all_revs.extend(revs);
            conflicts += c;
        }
        let kv = s.get("/t/counter").await.expect("get").expect("present");
        assert_eq!(
            String::from_utf8_lossy(&kv.value),
            (TASKS * EACH).to_string()
        );
        all_revs.sort_unstable();
        all_revs.dedup();
        assert_eq!(
            all_revs.len(),
            TASKS * EACH,
            "every successful write has its own revision"
        );
        assert!(
            conflicts > 0,
            "16 concurrent writers on one key must see conflicts"
        );
    }

    pub async fn txn_is_atomic(s: Arc<dyn Store>) {
        let ra = s.create("/t/a", b"a".to_vec(), 0).await.expect("create");
        // A failing compare applies nothing.
        let out = s
            .txn(
                Txn::new()
                    .when(Compare::mod_revision("/t/a", ra + 100))
                    .then(Op::put("/t/b", "b"))
                    .then(Op::delete("/t/a")),
            )
            .await
            .expect("txn");
        assert!(!out.succeeded);
        assert_eq!(s.get("/t/b").await.expect("get"), None);
        assert!(s.get("/t/a").await.expect("get").is_some());
        // A passing one applies everything at one revision.
        let out = s
            .txn(
                Txn::new()
                    .when(Compare::mod_revision("/t/a", ra))
                    .when(Compare::absent("/t/b"))
                    .when(Compare::exists("/t/a"))
                    .then(Op::put("/t/b", "b"))
                    .then(Op::put("/t/c", "c"))
                    .then(Op::delete("/t/a")),
            )
            .await
            .expect("txn");
        assert!(out.succeeded);
        assert_eq!(out.revision, ra + 1);
        let b = s.get("/t/b").await.expect("get").expect("b");
        let c = s.get("/t/c").await.expect("get").expect("c");
        assert_eq!(
            (b.mod_revision, c.mod_revision),
            (out.revision, out.revision)
        );
        assert_eq!(s.get("/t/a").await.expect("get"), None);
        // Many keys in one txn: all or nothing again.
        let mut txn = Txn::new().when(Compare::absent("/t/b"));
        for i in 0..200 {
            txn = txn.then(Op::put(format!("/t/many/{i:03}"), "x"));
        }
        assert!(!s.txn(txn).await.expect("txn").succeeded);
        let page = s
            .list("/t/many/", ListOptions::default())
            .await
            .expect("list");
        assert!(page.items.is_empty());
    }

    pub async fn txn_rejects_a_key_written_twice(s: Arc<dyn Store>) {
        let err = s
            .txn(
                Txn::new()
                    .then(Op::put("/t/x", "1"))
                    .then(Op::put("/t/x", "2")),
            )
            .await
            .expect_err("duplicate key");
        assert!(matches!(err, StoreError::InvalidTxn(_)), "{err}");
        assert_eq!(s.get("/t/x").await.expect("get"), None);
    }

    pub async fn watch_orders_events_with_prev_values(s: Arc<dyn Store>) {
        let start = s.current_revision().await.expect("rev") + 1;
        let mut w = s.watch("/w/", 0).await.expect("watch");
        // Give the watch time to register so "from now" covers our writes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r1 = s.create("/w/a", b"1".to_vec(), 0).await.expect("create");
        let r2 = s
            .update("/w/a", b"2".to_vec(), r1, 0)
            .await
            .expect("update");
        let r3 = s.create("/w/b", b"b".to_vec(), 0).await.expect("create");
        let r4 = s.delete("/w/a", Some(r2)).await.expect("delete");
        assert!(r1 >= start);
        let evs = take(&mut w, 4).await;
        let got: Vec<(EventKind, &str, Revision)> = evs
            .iter()
            .map(|e| (e.kind, e.kv.key.as_str(), e.revision()))
            .collect();
        assert_eq!(
            got,
            vec![
                (EventKind::Put, "/w/a", r1),
                (EventKind::Put, "/w/a", r2),
                (EventKind::Put, "/w/b", r3),
                (EventKind::Delete, "/w/a", r4),
            ]
        );
        assert_eq!(evs[0].prev, None);
        assert_eq!(
            evs[1].prev.as_ref().map(|p| p.value.clone()),
            Some(b"1".to_vec())
        );
        assert_eq!(evs[1].kv.value, b"2");
        let deleted_prev = evs[3].prev.as_ref().expect("delete carries prev");
        assert_eq!(
            (deleted_prev.value.as_slice(), deleted_prev.mod_revision),
            (&b"2"[..], r2)
        );
        // Many writers: revisions arrive strictly increasing.
        let mut handles = Vec::new();
        for t in 0..8 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..25 {
                    s.create(&format!("/w/m/{t}/{i}"), b"x".to_vec(), 0)
                        .await
                        .expect("create");
                }
            }));
        }
        for h in handles {
            h.await.expect("join");
        }
        let evs = take(&mut w, 200).await;
        assert!(
            evs.windows(2).all(|p| p[0].revision() < p[1].revision()),
            "revisions must increase"
        );
    }

    pub async fn watch_resumes_from_a_revision(s: Arc<dyn Store>) {
        let mut revs = Vec::new();
        for i in 0..10 {
            revs.push(
                s.create(&format!("/r/{i}"), vec![b'0' + i as u8], 0)
                    .await
                    .expect("create"),
            );
        }
        let mut w = s.watch("/r/", revs[4]).await.expect("watch");
        let evs = take(&mut w, 6).await;
        let got: Vec<Revision> = evs.iter().map(|e| e.revision()).collect();
        assert_eq!(got, revs[4..].to_vec());
        assert_eq!(evs[0].kv.key, "/r/4");
        // Then it follows live writes.
        let r = s.create("/r/live", b"l".to_vec(), 0).await.expect("create");
        let ev = take(&mut w, 1).await;
        assert_eq!((ev[0].kv.key.as_str(), ev[0].revision()), ("/r/live", r));
    }

    pub async fn watch_sees_only_its_prefix(s: Arc<dyn Store>) {
        let from = s.current_revision().await.expect("rev") + 1;
        let mut w = s.watch("/p/a/", from).await.expect("watch");
        s.create("/p/b/1", b"x".to_vec(), 0).await.expect("create");
        s.create("/p/a", b"x".to_vec(), 0).await.expect("create");
        s.create("/p/a/1", b"x".to_vec(), 0).await.expect("create");
        s.create("/p/ab/1", b"x".to_vec(), 0).await.expect("create");
        s.create("/p/a/2", b"x".to_vec(), 0).await.expect("create");
        let evs = take(&mut w, 2).await;
        let keys: Vec<&str> = evs.iter().map(|e| e.kv.key.as_str()).collect();
        assert_eq!(keys, vec!["/p/a/1", "/p/a/2"]);
        assert!(tokio::time::timeout(Duration::from_millis(300), w.next())
            .await
            .is_err());
    }

    pub async fn compaction_gives_compacted(s: Arc<dyn Store>) {
        let r1 = s.create("/c/a", b"1".to_vec(), 0).await.expect("create");
        let r2 = s
            .update("/c/a", b"2".to_vec(), r1, 0)
            .await
            .expect("update");
        let r3 = s.create("/c/b", b"b".to_vec(), 0).await.expect("create");
        let r4 = s
            .update("/c/a", b"3".to_vec(), r2, 0)
            .await
            .expect("update");
        s.compact(r3).await.expect("compact");
        // Below the compaction point: Compacted, for lists and watches alike.
        let err = s
            .list(
                "/c/",
                ListOptions {
                    revision: Some(r2),
                    ..Default::default()
                },
            )
            .await
            .expect_err("compacted list");
        assert!(matches!(err, StoreError::Compacted { .. }), "{err}");
        let mut w = s.watch("/c/", r1).await.expect("watch call");
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!("watch below compaction must yield Compacted, got {other:?}"),
        }
        // At and above it, history is intact.
        let page = s
            .list(
                "/c/",
                ListOptions {
                    revision: Some(r3),
                    ..Default::default()
                },
            )
            .await
            .expect("list at compaction point");
        let vals: Vec<(&str, &[u8])> = page
            .items
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
            .collect();
        assert_eq!(vals, vec![("/c/a", &b"2"[..]), ("/c/b", &b"b"[..])]);
        let mut w = s.watch("/c/", r4).await.expect("watch");
        let ev = take(&mut w, 1).await;
        assert_eq!(ev[0].revision(), r4);
        assert_eq!(
            ev[0].prev.as_ref().map(|p| p.value.clone()),
            Some(b"2".to_vec())
        );
        assert_eq!(
            s.get("/c/a").await.expect("get").map(|kv| kv.value),
            Some(b"3".to_vec())
        );
    }

    pub async fn lease_expiry_deletes_attached_keys(s: Arc<dyn Store>) {
        // etcd's minimum TTL on a default single member is 2 s.
        let lease = s.grant_lease(2).await.expect("grant");
        s.create("/l/a", b"a".to_vec(), lease)
            .await
            .expect("create with lease");
        s.create("/l/b", b"b".to_vec(), lease)
            .await
            .expect("create with lease");
        s.create("/l/keep", b"k".to_vec(), 0).await.expect("create");
        assert_eq!(
            s.get("/l/a").await.expect("get").map(|kv| kv.lease),
            Some(lease)
        );
        let from = s.current_revision().await.expect("rev") + 1;
        let mut w = s.watch("/l/", from).await.expect("watch");
        // Kept alive past its TTL, it holds.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.keep_alive(lease).await.expect("keep alive");
        }
        assert!(s.get("/l/a").await.expect("get").is_some());
        // Left alone, it expires and takes its keys along.
        let evs = take(&mut w, 2).await;
        assert!(evs.iter().all(|e| e.kind == EventKind::Delete));
        let mut keys: Vec<&str> = evs.iter().map(|e| e.kv.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, vec!["/l/a", "/l/b"]);
        assert_eq!(s.get("/l/a").await.expect("get"), None);
        assert!(s.get("/l/keep").await.expect("get").is_some());
        let ka = s.keep_alive(lease).await;
        assert!(matches!(ka, Err(StoreError::LeaseNotFound(_))), "{ka:?}");
        assert!(matches!(
            s.create("/l/c", b"c".to_vec(), lease).await,
            Err(StoreError::LeaseNotFound(_))
        ));
    }

    pub async fn lease_revoke_deletes_attached_keys(s: Arc<dyn Store>) {
        let lease = s.grant_lease(60).await.expect("grant");
        s.create("/lr/a", b"a".to_vec(), lease)
            .await
            .expect("create");
        let kv = s.get("/lr/a").await.expect("get").expect("a");
        // Re-putting without the lease detaches the key.
        s.create("/lr/b", b"b".to_vec(), lease)
            .await
            .expect("create");
        s.update(
            "/lr/b",
            b"b2".to_vec(),
            s.get("/lr/b").await.expect("get").expect("b").mod_revision,
            0,
        )
        .await
        .expect("detach");
        s.revoke_lease(lease).await.expect("revoke");
        assert_eq!(s.get("/lr/a").await.expect("get"), None);
        assert_eq!(
            s.get("/lr/b").await.expect("get").map(|kv| kv.value),
            Some(b"b2".to_vec())
        );
        assert!(kv.mod_revision > 0);
        assert!(matches!(
            s.revoke_lease(lease).await,
            Err(StoreError::LeaseNotFound(_))
        ));
    }

    /// Pages after the first are read at the first page's revision, whatever is written
    /// meanwhile: the listing is one consistent snapshot.
    pub async fn pagination_is_stable_under_concurrent_writes(s: Arc<dyn Store>) {
        let mut txn = Txn::new();
        for i in 0..250 {
            txn = txn.then(Op::put(format!("/pg/{i:04}"), format!("v{i}")));
        }
        s.txn(txn).await.expect("seed");
        let first = s
            .list("/pg/", ListOptions::limit(40))
            .await
            .expect("page 1");
        assert_eq!(first.items.len(), 40);
        let snapshot = first.revision;
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..120 {
                    s.txn(
                        Txn::new()
                            .then(Op::put(format!("/pg/{:04}", i * 2), "changed"))
                            .then(Op::put(format!("/pg/{:04}a", i), "new"))
                            .then(Op::delete(format!("/pg/{:04}", i * 2 + 1))),
                    )
                    .await
                    .expect("concurrent write");
                }
            })
        };
        let mut seen: BTreeMap<String, Vec<u8>> = first
            .items
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        let mut token = first.continue_token.clone();
        let mut pages = 1;
        while let Some(t) = token {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let page = s
                .list(
                    "/pg/",
                    ListOptions {
                        limit: 40,
                        continue_token: Some(t),
                        revision: None,
                    },
                )
                .await
                .expect("next page");
            assert_eq!(
                page.revision, snapshot,
                "every page is read at the first page's revision"
            );
            for kv in page.items {
                assert!(
                    seen.insert(kv.key.clone(), kv.value).is_none(),
                    "key {} listed twice",
                    kv.key
                );
            }
            token = page.continue_token;
            pages += 1;
        }
        writer.await.expect("writer");
        assert_eq!(pages, 7);
        assert_eq!(seen.len(), 250);
        for (i, (k, v)) in seen.iter().enumerate() {
            assert_eq!(k, &format!("/pg/{i:04}"));
            assert_eq!(v, &format!("v{i}").into_bytes());
        }
        // And a fresh listing sees the new state.
        let now = s.list("/pg/", ListOptions::default()).await.expect("list");
        assert_eq!(now.items.len(), 250 - 120 + 120);
        assert!(now.continue_token.is_none());
    }

    pub async fn list_reads_a_past_revision(s: Arc<dyn Store>) {
        let r1 = s.create("/h/a", b"1".to_vec(), 0).await.expect("create");
        let _ = s
            .update("/h/a", b"2".to_vec(), r1, 0)
            .await
            .expect("update");
        let r3 = s.create("/h/b", b"b".to_vec(), 0).await.expect("create");
        s.delete("/h/b", Some(r3)).await.expect("delete");
        let at = |rev| ListOptions {
            revision: Some(rev),
            ..Default::default()
        };
        let page = s.list("/h/", at(r1)).await.expect("list");
        assert_eq!(page.revision, r1);
        assert_eq!(
            page.items
                .iter()
                .map(|kv| kv.value.clone())
                .collect::<Vec<_>>(),
            vec![b"1".to_vec()]
        );
        let page = s.list("/h/", at(r3)).await.expect("list");
        assert_eq!(page.items.len(), 2);
        let page = s.list("/h/", ListOptions::default()).await.expect("list");
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].value, b"2");
        let future = s
            .list("/h/", at(r3 + 1000))
            .await
            .expect_err("future revision");
        assert!(
            matches!(future, StoreError::FutureRevision { .. }),
            "{future}"
        );
    }

    pub async fn list_rejects_a_foreign_continue_token(s: Arc<dyn Store>) {
        for i in 0..5 {
            s.create(&format!("/ct/a/{i}"), b"x".to_vec(), 0)
                .await
                .expect("create");
        }
        let page = s.list("/ct/a/", ListOptions::limit(2)).await.expect("list");
        let token = page.continue_token.expect("more pages");
        let err = s
            .list(
                "/ct/b/",
                ListOptions {
                    limit: 2,
                    continue_token: Some(token),
                    revision: None,
                },
            )
            .await
            .expect_err("foreign token");
        assert!(matches!(err, StoreError::InvalidContinue(_)), "{err}");
        let err = s
            .list(
                "/ct/a/",
                ListOptions {
                    limit: 2,
                    continue_token: Some("garbage!".into()),
                    revision: None,
                },
            )
            .await
            .expect_err("garbage token");
        assert!(matches!(err, StoreError::InvalidContinue(_)), "{err}");
    }
}

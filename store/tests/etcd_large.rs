//! The etcd backend past gRPC's default 4 MiB response limit, on a real etcd (Debian's
//! `etcd-server`): lists, pages and watch batches holding more than 4 MiB of values, and
//! lists of more keys than one internal page (`etcd::LIST_PAGE`).

use std::time::Duration;

use drover_store::etcd::LIST_PAGE;
use drover_store::{EtcdServer, EtcdStore, EventKind, ListOptions, Op, Store, Txn};
use futures::StreamExt;

const PREFIX: &str = "/registry/drover.dev/tasks/big/";

async fn etcd() -> (EtcdServer, EtcdStore) {
    let server = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    let store = EtcdStore::connect(&[server.endpoint().to_string()])
        .await
        .expect("connect to etcd");
    (server, store)
}

/// A value of `len` bytes that says which key it belongs to.
fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{{\"i\":{i},\"pad\":\"").into_bytes();
    v.resize(len - 2, b'x');
    v.extend_from_slice(b"\"}");
    v
}

fn key(i: usize) -> String {
    format!("{PREFIX}t-{i:05}")
}

/// Puts `count` values of `len` bytes, `per_txn` to a transaction.
async fn put_many(store: &EtcdStore, count: usize, len: usize, per_txn: usize) {
    let keys: Vec<usize> = (0..count).collect();
    for chunk in keys.chunks(per_txn) {
        let mut txn = Txn::new();
        for &i in chunk {
            txn = txn.then(Op::put(key(i), value(i, len)));
        }
        store.txn(txn).await.expect("put a batch");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_pages_larger_than_4_mib_are_read_whole() {
    let (_server, store) = etcd().await;
    // 48 × 128 KiB = 6 MiB.
    let (count, len) = (48, 128 * 1024);
    put_many(&store, count, len, 8).await;

    let page = store
        .list(PREFIX, ListOptions::default())
        .await
        .expect("a 6 MiB list");
    assert_eq!(page.items.len(), count);
    assert!(page.continue_token.is_none());
    let total: usize = page.items.iter().map(|kv| kv.value.len()).sum();
    assert!(total > 4 << 20, "only {total} bytes listed");
    for (i, kv) in page.items.iter().enumerate() {
        assert_eq!(kv.key, key(i));
        assert_eq!(kv.value, value(i, len), "value of {}", kv.key);
    }

    // One page of 40 (5 MiB), then the rest at the same revision.
    let first = store
        .list(PREFIX, ListOptions::limit(40))
        .await
        .expect("a 5 MiB page");
    assert_eq!(first.items.len(), 40);
    let token = first.continue_token.clone().expect("a next page");
    let rest = store
        .list(
            PREFIX,
            ListOptions {
                limit: 40,
                continue_token: Some(token),
                revision: None,
            },
        )
        .await
        .expect("the next page");
    assert_eq!(rest.items.len(), count - 40);
    assert_eq!(rest.revision, first.revision);
    assert!(rest.continue_token.is_none());
    assert_eq!(rest.items[0].key, key(40));

    // A single value over 4 MiB.
    let huge = value(99_999, 5 << 20);
    store
        .txn(Txn::new().then(Op::put(key(99_999), huge.clone())))
        .await
        .expect("put 5 MiB");
    let got = store
        .get(&key(99_999))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.value, huge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlimited_list_of_more_keys_than_a_page_is_complete_and_consistent() {
    let (_server, store) = etcd().await;
    let count = LIST_PAGE as usize * 2 + 57;
    put_many(&store, count, 64, 500).await;
    let before = store
        .list(PREFIX, ListOptions::default())
        .await
        .expect("list");
    assert_eq!(before.items.len(), count);
    let keys: Vec<String> = before.items.iter().map(|kv| kv.key.clone()).collect();
    let wanted: Vec<String> = (0..count).map(key).collect();
    assert_eq!(keys, wanted, "every key once, in order");
    // Read again at the first list's revision after more writes: the same snapshot.
    store
        .txn(Txn::new().then(Op::put(key(count + 1), b"late".to_vec())))
        .await
        .expect("a later write");
    let at = store
        .list(
            PREFIX,
            ListOptions {
                revision: Some(before.revision),
                ..Default::default()
            },
        )
        .await
        .expect("list at a revision");
    assert_eq!(at.items.len(), count);
    assert_eq!(at.revision, before.revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_batch_larger_than_4_mib_arrives() {
    let (_server, store) = etcd().await;
    let mut events = store.watch(PREFIX, 0).await.expect("watch");
    // One transaction, one revision, one watch response: 8 × 768 KiB = 6 MiB.
    let (count, len) = (8, 768 * 1024);
    put_many(&store, count, len, count).await;
    let mut seen = 0;
    while seen < count {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the events within 10 s")
            .expect("the watch goes on")
            .expect("an event, not an error");
        assert_eq!(ev.kind, EventKind::Put);
        assert_eq!(ev.kv.key, key(seen));
        assert_eq!(ev.kv.value.len(), len);
        seen += 1;
    }
}

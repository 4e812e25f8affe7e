//! Watches over HTTP through the watch cache: a resourceVersion inside the cache, one
//! below the store's compaction point (410 ERROR event, then close), and a selector.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use drover_controller::apiserver::{router, ApiState};
use drover_store::{EmbeddedStore, Store};
use serde_json::Value;

/// `GET path` with `Connection: close`; the de-chunked body's JSON lines.
fn watch_lines(addr: SocketAddr, path: &str) -> Vec<Value> {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, mut rest) = text.split_once("\r\n\r\n").expect("headers");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        body.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    body.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn app(name: &str, tier: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "drover.dev/v1alpha1", "kind": "App",
        "metadata": {"name": name, "namespace": "default", "labels": {"tier": tier}},
        "spec": {"instances": 1, "container": {"cmd": "sleep 100"}},
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_from_the_cache_and_expire_below_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
    let key = |n: &str| format!("/registry/drover.dev/apps/default/{n}");
    let old = store
        .create(&key("old"), app("old", "db"), 0)
        .await
        .expect("create");
    store
        .create(&key("filler"), app("filler", "db"), 0)
        .await
        .expect("create");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let state = ApiState::new(store.clone());
    state
        .watch_cache
        .kind(
            drover_api::KINDS
                .iter()
                .find(|k| k.plural == "apps")
                .expect("apps"),
        )
        .await
        .expect("cache");
    let app_router = router(state);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app_router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let web = store
        .create(&key("web"), app("web", "front"), 0)
        .await
        .expect("create");
    let db = store
        .create(&key("db"), app("db", "db"), 0)
        .await
        .expect("create");
    store.compact(web).await.expect("compact");

    const APPS: &str = "/apis/drover.dev/v1alpha1/namespaces/default/apps";
    let (from_cache, selected, expired) = tokio::task::spawn_blocking(move || {
        (
            watch_lines(
                addr,
                &format!(
                    "{APPS}?watch=true&resourceVersion={}&timeoutSeconds=1",
                    web - 1
                ),
            ),
            watch_lines(
                addr,
                &format!(
                    "{APPS}?watch=true&resourceVersion={}&timeoutSeconds=1&labelSelector=tier%3Ddb",
                    web - 1
                ),
            ),
            watch_lines(
                addr,
                &format!("{APPS}?watch=true&resourceVersion={old}&timeoutSeconds=5"),
            ),
        )
    })
    .await
    .expect("client");

    let names = |events: &[Value]| -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_string(),
                    e["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    // Served from the cache although the store compacted below `web`.
    assert_eq!(
        names(&from_cache),
        [
            ("ADDED".into(), "web".into()),
            ("ADDED".into(), "db".into())
        ]
    );
    assert_eq!(
        from_cache[1]["object"]["metadata"]["resourceVersion"],
        db.to_string()
    );
    assert_eq!(names(&selected), [("ADDED".into(), "db".into())]);
    // Before the cache and compacted in the store: 410, then the stream closes.
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["type"], "ERROR");
    assert_eq!(expired[0]["object"]["code"], 410);
    assert_eq!(expired[0]["object"]["reason"], "Expired");
    assert_eq!(
        expired[0]["object"]["message"],
        format!("too old resource version: {old} ({web})")
    );
}

//! `GET /metrics` on a real listener: requests are counted by Kubernetes verb, resource
//! and code, watches are counted while open and their events as they are sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use drover_controller::apiserver::{router, ApiState};
use drover_store::EmbeddedStore;

/// A response read to the end: status code and body (de-chunked).
struct Reply {
    status: u16,
    body: String,
}

/// A minimal HTTP/1.1 exchange: one request, `Connection: close`, read to EOF.
fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or_default());
    conn.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, rest) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            break;
        }
        body.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    body
}

/// The value of the sample named exactly `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_watches_are_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open store"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = router(ApiState::new(store));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let replies = tokio::task::spawn_blocking(move || {
        const APPS: &str = "/apis/drover.dev/v1alpha1/namespaces/default/apps";
        let app = r#"{"apiVersion":"drover.dev/v1alpha1","kind":"App","metadata":{"name":"web"},"spec":{"instances":1,"container":{"cmd":"sleep 100"}}}"#;
        let created = request(addr, "POST", APPS, Some(app));
        let got = request(addr, "GET", &format!("{APPS}/web"), None);
        let missing = request(addr, "GET", &format!("{APPS}/nope"), None);
        let listed = request(addr, "GET", APPS, None);
        // A watch that ends by itself: the current object as ADDED, then close.
        let watched = request(addr, "GET", &format!("{APPS}?watch=true&timeoutSeconds=1"), None);
        let metrics = request(addr, "GET", "/metrics", None);
        (created, got, missing, listed, watched, metrics)
    })
    .await
    .expect("client thread");
    let (created, got, missing, listed, watched, metrics) = replies;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(got.status, 200);
    assert_eq!(missing.status, 404);
    assert_eq!(listed.status, 200);
    assert_eq!(watched.status, 200);
    let events: Vec<serde_json::Value> = watched
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event per line"))
        .collect();
    assert_eq!(events.len(), 1, "{}", watched.body);
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "web");

    assert_eq!(metrics.status, 200);
    let m = &metrics.body;
    for (series, want) in [
        (
            r#"apiserver_request_total{verb="create",resource="apps",code="201"}"#,
            1.0,
        ),
        (
            r#"apiserver_request_total{verb="get",resource="apps",code="200"}"#,
            1.0,
        ),
        (
            r#"apiserver_request_total{verb="get",resource="apps",code="404"}"#,
            1.0,
        ),
        (
            r#"apiserver_request_total{verb="list",resource="apps",code="200"}"#,
            1.0,
        ),
        (
            r#"apiserver_request_total{verb="watch",resource="apps",code="200"}"#,
            1.0,
        ),
        (
            r#"apiserver_request_duration_seconds_count{verb="get",resource="apps"}"#,
            2.0,
        ),
        (
            r#"apiserver_request_duration_seconds_bucket{verb="get",resource="apps",le="+Inf"}"#,
            2.0,
        ),
        (r#"apiserver_watchers{resource="apps"}"#, 0.0),
        (r#"apiserver_watch_events_total{resource="apps"}"#, 1.0),
    ] {
        assert_eq!(sample(m, series), Some(want), "{series} in:\n{m}");
    }
    assert!(m.contains("# TYPE apiserver_request_duration_seconds histogram\n"));
}

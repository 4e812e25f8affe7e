//! The API server's Prometheus metrics — requests by verb, resource and code, request
//! latency, open watches, watch events sent — recorded by one middleware layer and
//! served as text exposition (format 0.0.4) at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::apiserver::server::ApiState;

/// Kubernetes' `apiserver_request_duration_seconds` buckets.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Core (`/api/v1`) resources that get their own label; other unknown names are counted
/// under `resource=""` so a client cannot grow the label set without bound.
const CORE_RESOURCES: &[&str] = &["events", "namespaces", "pods"];

/// Every metric of the API server. Cheap to share; counters a hot path bumps (watch
/// events) are handed out as `Arc`s so the path never takes the lock.
#[derive(Default)]
pub struct ApiMetrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    durations: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
    watchers: Mutex<BTreeMap<&'static str, Arc<AtomicI64>>>,
    watch_events: Mutex<BTreeMap<&'static str, Arc<AtomicU64>>>,
}

#[derive(Clone, Debug)]
struct Histogram {
    /// Observations ≤ each bound of `DURATION_BUCKETS` (not cumulative; summed on render).
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; DURATION_BUCKETS.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ApiMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// One finished request (for a watch: the start of its stream).
    pub fn observe_request(
        &self,
        verb: &'static str,
        resource: &'static str,
        code: u16,
        took: Duration,
    ) {
        *lock(&self.requests)
            .entry((verb, resource, code))
            .or_default() += 1;
        lock(&self.durations)
            .entry((verb, resource))
            .or_insert_with(Histogram::new)
            .observe(took.as_secs_f64());
    }

    /// Counts an open watch of `resource` until the guard drops.
    pub fn watcher_opened(&self, resource: &'static str) -> OpenWatcher {
        let gauge = lock(&self.watchers).entry(resource).or_default().clone();
        gauge.fetch_add(1, Ordering::Relaxed);
        OpenWatcher { gauge }
    }

    /// The counter of events sent to watchers of `resource`.
    pub fn watch_events(&self, resource: &'static str) -> Arc<AtomicU64> {
        lock(&self.watch_events)
            .entry(resource)
            .or_default()
            .clone()
    }

    /// Prometheus text exposition, format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of API requests by verb, resource and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, resource, code), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{}\",resource=\"{}\",code=\"{code}\"}} {n}",
                escape(verb),
                escape(resource)
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency by verb and resource (for watches, until the stream starts).\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, resource), h) in lock(&self.durations).iter() {
            let labels = format!(
                "verb=\"{}\",resource=\"{}\"",
                escape(verb),
                escape(resource)
            );
            let mut cumulative = 0;
            for (bound, n) in DURATION_BUCKETS.iter().zip(&h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP apiserver_watchers Open watch streams by resource.\n");
        out.push_str("# TYPE apiserver_watchers gauge\n");
        for (resource, n) in lock(&self.watchers).iter() {
            let _ = writeln!(
                out,
                "apiserver_watchers{{resource=\"{}\"}} {}",
                escape(resource),
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP apiserver_watch_events_total Events sent to watchers (bookmarks and errors included) by resource.\n",
        );
        out.push_str("# TYPE apiserver_watch_events_total counter\n");
        for (resource, n) in lock(&self.watch_events).iter() {
            let _ = writeln!(
                out,
                "apiserver_watch_events_total{{resource=\"{}\"}} {}",
                escape(resource),
                n.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// An open watch, counted in `apiserver_watchers` while it lives.
pub struct OpenWatcher {
    gauge: Arc<AtomicI64>,
}

impl Drop for OpenWatcher {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The middleware layer: classifies the request, times it, counts its response code.
pub async fn record(State(metrics): State<Arc<ApiMetrics>>, req: Request, next: Next) -> Response {
    let (verb, resource) = classify(req.method(), req.uri());
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics.observe_request(verb, resource, resp.status().as_u16(), started.elapsed());
    resp
}

/// `GET /metrics`.
pub async fn serve(State(state): State<ApiState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// The Kubernetes verb and the resource of a request; non-resource requests get the
/// lower-case HTTP method and `resource=""`.
pub fn classify(method: &Method, uri: &Uri) -> (&'static str, &'static str) {
    let path = uri.path();
    let rest = path
        .strip_prefix("/apis/drover.dev/v1alpha1/")
        .or_else(|| path.strip_prefix("/api/v1/"));
    let Some(rest) = rest else {
        return (http_verb(method), "");
    };
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let parts = match parts.as_slice() {
        ["namespaces", _, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    let Some(&plural) = parts.first() else {
        return (http_verb(method), "");
    };
    let resource = drover_api::KINDS
        .iter()
        .map(|k| k.plural)
        .chain(CORE_RESOURCES.iter().copied())
        .find(|&known| known == plural)
        .unwrap_or("");
    let named = parts.len() > 1;
    let watching = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD if watching => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => http_verb(method),
    };
    (verb, resource)
}

fn http_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    #[test]
    fn requests_are_classified_with_kubernetes_verbs() {
        let cases = [
            (
                Method::GET,
                "/apis/drover.dev/v1alpha1/namespaces/default/apps",
                ("list", "apps"),
            ),
            (
                Method::GET,
                "/apis/drover.dev/v1alpha1/namespaces/default/apps?watch=true&resourceVersion=3",
                ("watch", "apps"),
            ),
            (
                Method::GET,
                "/apis/drover.dev/v1alpha1/namespaces/default/apps/web",
                ("get", "apps"),
            ),
            (
                Method::GET,
                "/apis/drover.dev/v1alpha1/nodes/n1",
                ("get", "nodes"),
            ),
            (
                Method::POST,
                "/apis/drover.dev/v1alpha1/namespaces/default/apps",
                ("create", "apps"),
            ),
            (
                Method::PUT,
                "/apis/drover.dev/v1alpha1/namespaces/default/apps/web/status",
                ("update", "apps"),
            ),
            (
                Method::PATCH,
                "/apis/drover.dev/v1alpha1/namespaces/default/apps/web/scale",
                ("patch", "apps"),
            ),
            (
                Method::DELETE,
                "/apis/drover.dev/v1alpha1/namespaces/default/apps/web",
                ("delete", "apps"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/events?watch=1",
                ("watch", "events"),
            ),
            (
                Method::GET,
                "/apis/drover.dev/v1alpha1/namespaces/default/nonsense",
                ("list", ""),
            ),
            (Method::GET, "/version", ("get", "")),
        ];
        for (method, path, want) in cases {
            assert_eq!(classify(&method, &uri(path)), want, "{method} {path}");
        }
    }

    #[test]
    fn exposition_has_help_type_and_cumulative_buckets() {
        let m = ApiMetrics::new();
        m.observe_request("get", "apps", 200, Duration::from_millis(3));
        m.observe_request("get", "apps", 200, Duration::from_millis(30));
        m.observe_request("get", "apps", 404, Duration::from_millis(30));
        let watcher = m.watcher_opened("apps");
        m.watch_events("apps").fetch_add(7, Ordering::Relaxed);
        let text = m.render();
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# TYPE apiserver_request_total counter",
            "apiserver_request_total{verb=\"get\",resource=\"apps\",code=\"200\"} 2",
            "apiserver_request_total{verb=\"get\",resource=\"apps\",code=\"404\"} 1",
            "# TYPE apiserver_request_duration_seconds histogram",
            "apiserver_request_duration_seconds_bucket{verb=\"get\",resource=\"apps\",le=\"0.005\"} 1",
            "apiserver_request_duration_seconds_bucket{verb=\"get\",resource=\"apps\",le=\"0.025\"} 1",
            "apiserver_request_duration_seconds_bucket{verb=\"get\",resource=\"apps\",le=\"0.05\"} 3",
            "apiserver_request_duration_seconds_bucket{verb=\"get\",resource=\"apps\",le=\"60\"} 3",
            "apiserver_request_duration_seconds_bucket{verb=\"get\",resource=\"apps\",le=\"+Inf\"} 3",
            "apiserver_request_duration_seconds_count{verb=\"get\",resource=\"apps\"} 3",
            "# TYPE apiserver_watchers gauge",
            "apiserver_watchers{resource=\"apps\"} 1",
            "# TYPE apiserver_watch_events_total counter",
            "apiserver_watch_events_total{resource=\"apps\"} 7",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
        }
        let sum = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix(
                    "apiserver_request_duration_seconds_sum{verb=\"get\",resource=\"apps\"} ",
                )
            })
            .and_then(|v| v.parse::<f64>().ok())
            .expect("a sum");
        assert!((sum - 0.063).abs() < 1e-9, "sum {sum}");
        // Every sample line is `name{labels} value` with a number for value.
        for line in lines.iter().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name and value");
            assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        }
        drop(watcher);
        assert!(m
            .render()
            .contains("apiserver_watchers{resource=\"apps\"} 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

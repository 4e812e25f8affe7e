//! The router: discovery, OpenAPI, health, and the resource routes, dispatched by verb
//! and target to `reads`, `writes` and `watch`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use drover_store::Store;
use serde_json::{json, Value};

use crate::apiserver::auth::{self, Identity};
use crate::apiserver::metrics::{self, ApiMetrics};
use crate::apiserver::openapi_v2::{self, V2Document};
use crate::apiserver::request::{
    content_type, decode, header, parse_target, read_body, Subresource, Target,
};
use crate::apiserver::status::{ApiError, ApiResult};
use crate::apiserver::watch_cache::WatchCache;
use crate::apiserver::writes::{PatchType, WriteOptions, Written};
use crate::apiserver::{discovery, openapi, reads, table, watch, writes};

pub type Query = HashMap<String, String>;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    openapi: Arc<OpenApi>,
    pub watch_cache: WatchCache,
    pub metrics: Arc<ApiMetrics>,
    /// TTL of the store lease a Node's heartbeats keep alive (`node_lease`).
    pub node_lease_seconds: i64,
    /// The token authenticator, when the server authenticates (TokenReviews, and the
    /// API server's own token for proxying logs to agents).
    pub auth: Option<Arc<crate::apiserver::auth::Authenticator>>,
}

struct OpenApi {
    v3: Value,
    hash: String,
}

impl ApiState {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let v3 = openapi::v3_document();
        let hash = openapi::document_hash(&v3);
        ApiState {
            watch_cache: WatchCache::new(store.clone()),
            metrics: Arc::new(ApiMetrics::new()),
            store,
            openapi: Arc::new(OpenApi { v3, hash }),
            node_lease_seconds: crate::apiserver::node_lease::DEFAULT_LEASE_SECONDS,
            auth: None,
        }
    }

    /// The same state with node leases of `seconds` (`--node-lease-seconds`).
    pub fn with_node_lease_seconds(mut self, seconds: i64) -> Self {
        self.node_lease_seconds = seconds.max(1);
        self
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/version", get(|| async { Json(discovery::version()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::serve))
        .route("/api", get(|| async { Json(discovery::api_versions()) }))
        .route(
            "/api/v1",
            get(|| async { Json(discovery::core_v1_resources()) }),
        )
        .route("/apis", get(|| async { Json(discovery::api_group_list()) }))
        .route(
            "/apis/drover.dev",
            get(|| async { Json(discovery::api_group()) }),
        )
        .route(
            "/apis/drover.dev/v1alpha1",
            get(|| async { Json(discovery::group_version_resources()) }),
        )
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/apis/drover.dev/v1alpha1", get(openapi_v3))
        .route(
            "/openapi/v3/api/v1",
            get(|| async { Json(openapi::v3_core_document()) }),
        )
        .route("/openapi/v2", get(openapi_v2))
        .route("/swagger-2.0.0.pb-v1", get(openapi_v2))
        .route(
            "/apis/drover.dev/v1alpha1/namespaces/{namespace}/tasks/{name}/log",
            get(crate::apiserver::logs::task_log),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            axum::routing::post(crate::apiserver::tokenreview::create),
        )
        .route("/apis/drover.dev/v1alpha1/{*rest}", any(resource))
        .route("/api/v1/{*rest}", any(core_events))
        .fallback(|req: Request| async move { ApiError::route_not_found(req.uri().path()) })
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::record,
        ))
        .with_state(state)
}

async fn openapi_index(State(state): State<ApiState>) -> Json<Value> {
    Json(openapi::v3_index(&state.openapi.hash))
}

async fn openapi_v3(State(state): State<ApiState>) -> Response {
    let mut resp = Json(state.openapi.v3.clone()).into_response();
    resp.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("public, immutable"),
    );
    resp
}

/// kubectl < 1.29 fetches the v2 document, as protobuf only, for `kubectl explain` and
/// before validating an apply: gnostic's `openapi.v2.Document`, built once.
async fn openapi_v2(headers: HeaderMap) -> Response {
    static DOCUMENT: OnceLock<V2Document> = OnceLock::new();
    let doc = DOCUMENT.get_or_init(openapi_v2::v2_served);
    let etag = HeaderValue::from_str(&doc.etag).ok();
    if etag.is_some() && headers.get("if-none-match") == etag.as_ref() {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Some(etag) = etag {
            resp.headers_mut().insert("etag", etag);
        }
        return resp;
    }
    let mut resp = (
        [(
            "content-type",
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )],
        Body::from(doc.bytes.as_slice()),
    )
        .into_response();
    if let Some(etag) = etag {
        resp.headers_mut().insert("etag", etag);
    }
    resp
}

async fn resource(
    State(state): State<ApiState>,
    identity: Option<axum::Extension<Identity>>,
    method: Method,
    Path(rest): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Query>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = identity.map(|axum::Extension(id)| id);
    let result = match parse_target(&rest) {
        Ok(t) => dispatch(&state, id.as_ref(), method, t, &q, &headers, body).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Core v1 Events (`/api/v1/[namespaces/{ns}/]events[/{name}]`): the same objects as
/// drover.dev Events, spoken as `v1`, so `kubectl describe` finds them.
async fn core_events(
    State(state): State<ApiState>,
    identity: Option<axum::Extension<Identity>>,
    method: Method,
    Path(rest): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Query>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let t = crate::apiserver::core::parse_target(&rest)?;
        let raw = read_body(body).await?;
        let body = Body::from(crate::apiserver::core::request_body(raw)?);
        let id = identity.map(|axum::Extension(id)| id);
        let resp = dispatch(&state, id.as_ref(), method, t, &q, &headers, body).await?;
        crate::apiserver::core::response(resp).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn dispatch(
    state: &ApiState,
    id: Option<&Identity>,
    method: Method,
    t: Target,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if let Some(id) = id {
        let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        let verb = auth::verb(&method, &t, watching);
        auth::authorize(id, verb, &t, q.get("fieldSelector").map(String::as_str))?;
        if id.role == auth::Role::Agent && t.info.kind == "Task" && t.name.is_some() {
            let (task, _) = reads::get_object(state, &t).await?;
            auth::agent_may_touch_task(id, verb, &t, &task)?;
        }
    }
    let accept = header(headers, "accept");
    let ua = header(headers, "user-agent");
    match (method.clone(), t.name.is_some(), t.sub) {
        (Method::GET, false, None) => {
            let selectors = reads::Selectors::parse(t.info, q)?;
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                let resp = watch::watch(state, &t, q, selectors).await?;
                if table::wants_table(accept) {
                    let include =
                        table::parse_include_object(q.get("includeObject").map(String::as_str));
                    return Ok(table_watch(t.info, resp, include));
                }
                return Ok(resp);
            }
            let listed = reads::list_objects(state, &t, q, &selectors).await?;
            if table::wants_table(accept) {
                let mut meta = json!({"resourceVersion": listed.revision.to_string()});
                if let Some(c) = &listed.continue_token {
                    meta["continue"] = json!(c);
                }
                let include =
                    table::parse_include_object(q.get("includeObject").map(String::as_str));
                return Ok(Json(table::table(
                    t.info,
                    &listed.items,
                    meta,
                    include,
                    chrono::Utc::now(),
                ))
                .into_response());
            }
            Ok(Json(reads::list_body(t.info, listed)).into_response())
        }
        (Method::POST, false, None) => {
            let opts = WriteOptions::from_query(q, ua)?;
            let obj = decode(&read_body(body).await?, &content_type(headers))?;
            let written = writes::create(state, &t, obj, &opts).await?;
            Ok(written_response(written))
        }
        (Method::GET, true, sub) => {
            let (obj, _) = reads::get_object(state, &t).await?;
            if sub == Some(Subresource::Scale) {
                return Ok(Json(reads::scale_of(t.info, &obj)).into_response());
            }
            if table::wants_table(accept) {
                let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
                let include =
                    table::parse_include_object(q.get("includeObject").map(String::as_str));
                return Ok(Json(table::table(
                    t.info,
                    &[obj],
                    meta,
                    include,
                    chrono::Utc::now(),
                ))
                .into_response());
            }
            Ok(Json(obj).into_response())
        }
        (Method::PUT, true, sub) => {
            let opts = WriteOptions::from_query(q, ua)?;
            let obj = decode(&read_body(body).await?, &content_type(headers))?;
            let written = if sub == Some(Subresource::Scale) {
                let w = writes::update_scale(state, &t, obj, &opts).await?;
                scale_written(&t, w)
            } else {
                writes::update(state, &t, obj, &opts).await?
            };
            Ok(written_response(written))
        }
        (Method::PATCH, true, sub) => {
            let opts = WriteOptions::from_query(q, ua)?;
            let ct = content_type(headers);
            let kind = PatchType::from_content_type(&ct)?;
            let raw = read_body(body).await?;
            let patch = decode(
                &raw,
                if kind == PatchType::Apply {
                    "application/yaml"
                } else {
                    "application/json"
                },
            )?;
            let written = writes::patch(state, &t, kind, patch, &opts).await?;
            let written = if sub == Some(Subresource::Scale) {
                scale_written(&t, written)
            } else {
                written
            };
            Ok(written_response(written))
        }
        (Method::DELETE, true, None) => {
            let raw = read_body(body).await?;
            let opts = if raw.is_empty() {
                None
            } else {
                Some(decode(&raw, "application/json")?)
            };
            let dry_run = q.get("dryRun").is_some_and(|d| d == "All")
                || opts
                    .as_ref()
                    .and_then(|o| o.get("dryRun"))
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
            let obj = writes::delete(state, &t, opts, dry_run).await?;
            Ok(Json(obj).into_response())
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {}",
            describe(&t)
        ))),
    }
}

/// `kubectl get -w` asks for Tables: each event's object becomes a one-row Table (the
/// first with the column definitions, as Kubernetes sends them).
fn table_watch(
    info: &'static drover_api::KindInfo,
    resp: Response,
    include: table::IncludeObject,
) -> Response {
    use futures::StreamExt;
    let (parts, body) = resp.into_parts();
    let mut pending: Vec<u8> = Vec::new();
    let mut first = true;
    let lines = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        pending.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(mut ev) = serde_json::from_slice::<Value>(&line) else {
                out.extend_from_slice(&line);
                continue;
            };
            let kind = ev.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
            if kind != "ERROR" && kind != "BOOKMARK" {
                if let Some(obj) = ev.get("object").cloned() {
                    let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
                    let mut tbl = table::table(info, &[obj], meta, include, chrono::Utc::now());
                    if !first {
                        if let Some(o) = tbl.as_object_mut() {
                            o.remove("columnDefinitions");
                        }
                    }
                    first = false;
                    ev["object"] = tbl;
                }
            }
            out.extend_from_slice(ev.to_string().as_bytes());
            out.push(b'\n');
        }
        Ok::<_, std::io::Error>(axum::body::Bytes::from(out))
    });
    Response::from_parts(parts, Body::from_stream(lines))
}

fn describe(t: &Target) -> String {
    let mut s = t.info.plural.to_string();
    if let Some(n) = &t.name {
        s.push_str(&format!(" \"{n}\""));
    }
    if let Some(sub) = t.sub {
        s.push_str(match sub {
            Subresource::Status => "/status",
            Subresource::Scale => "/scale",
        });
    }
    s
}

fn scale_written(t: &Target, mut w: Written) -> Written {
    w.object = reads::scale_of(t.info, &w.object);
    w
}

fn written_response(w: Written) -> Response {
    let code = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (code, Json(w.object)).into_response();
    for warning in w.warnings {
        let text = format!("299 - \"{}\"", warning.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// Serves the API on `addr` until `shutdown` resolves.
pub async fn serve(
    store: Arc<dyn Store>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(ApiState::new(store));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

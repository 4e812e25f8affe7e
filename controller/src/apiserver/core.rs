//! Core `v1` Events: the drover.dev Events served again under `/api/v1`, with
//! `apiVersion: v1`, because `kubectl describe` reads events only from there.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use drover_api::find_kind;
use serde_json::Value;

use crate::apiserver::request::{Target, MAX_BODY};
use crate::apiserver::status::{ApiError, ApiResult};

const DROVER: &str = "drover.dev/v1alpha1";

/// `namespaces/{ns}/events[/{name}]` or `events`.
pub fn parse_target(rest: &str) -> ApiResult<Target> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let info =
        find_kind("Event").ok_or_else(|| ApiError::internal("the Event kind is not registered"))?;
    let (namespace, name) = match parts.as_slice() {
        ["events"] => (None, None),
        ["namespaces", ns, "events"] => (Some(ns.to_string()), None),
        ["namespaces", ns, "events", name] => (Some(ns.to_string()), Some(name.to_string())),
        _ => return Err(ApiError::route_not_found(&format!("/api/v1/{rest}"))),
    };
    Ok(Target {
        info,
        namespace,
        name,
        sub: None,
    })
}

/// A `v1` Event from the client becomes a drover.dev one.
pub fn request_body(raw: Vec<u8>) -> ApiResult<Vec<u8>> {
    if raw.is_empty() {
        return Ok(raw);
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&raw) else {
        // Let the normal path report the bad body.
        return Ok(raw);
    };
    if v.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && v.get("kind").and_then(Value::as_str) == Some("Event")
    {
        v["apiVersion"] = Value::from(DROVER);
    }
    serde_json::to_vec(&v).map_err(|e| ApiError::internal(e.to_string()))
}

fn to_core(v: &mut Value) {
    if v.get("apiVersion").and_then(Value::as_str) == Some(DROVER) {
        v["apiVersion"] = Value::from("v1");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            to_core(item);
        }
    }
    if let Some(obj) = v.get_mut("object") {
        to_core(obj);
    }
}

/// Rewrites a JSON answer (object, list or table) to speak `v1`.
pub async fn response(resp: Response) -> ApiResult<Response> {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY * 64)
        .await
        .map_err(|e| ApiError::internal(format!("reading the response: {e}")))?;
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    };
    to_core(&mut v);
    if let Some(rows) = v.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(obj) = row.get_mut("object") {
                to_core(obj);
            }
        }
    }
    let mut out = (parts.status, axum::Json(v)).into_response();
    for (k, val) in parts
        .headers
        .iter()
        .filter(|(k, _)| k.as_str() == "warning")
    {
        out.headers_mut().append(k, val.clone());
    }
    Ok(out)
}

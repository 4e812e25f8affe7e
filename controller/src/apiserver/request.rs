//! What a resource request addresses — kind, namespace, name, subresource — parsed from
//! the path, and the request body read within the size limit and decoded.

use axum::body::Body;
use axum::http::HeaderMap;
use drover_api::{KindInfo, KINDS};
use serde_json::Value;

use crate::apiserver::status::{ApiError, ApiResult};

/// The largest request body accepted (Kubernetes' limit is 3 MiB).
pub const MAX_BODY: usize = 3 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
}

#[derive(Clone, Debug)]
pub struct Target {
    pub info: &'static KindInfo,
    /// `None` for cluster-scoped kinds and all-namespaces lists.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Subresource>,
}

/// Parses the part of the path after `/apis/drover.dev/v1alpha1/`.
pub fn parse_target(rest: &str) -> ApiResult<Target> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let not_found = || ApiError::route_not_found(&format!("/apis/drover.dev/v1alpha1/{rest}"));
    let (namespace, rest): (Option<String>, &[&str]) = match parts.as_slice() {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(not_found()),
    };
    let info = KINDS
        .iter()
        .find(|k| k.plural == plural)
        .ok_or_else(not_found)?;
    if namespace.is_some() && !info.namespaced {
        return Err(not_found());
    }
    if namespace.is_none() && info.namespaced && name.is_some() {
        return Err(not_found());
    }
    let sub = match sub {
        None => None,
        Some("status") if info.has_status => Some(Subresource::Status),
        Some("scale") if info.scale.is_some() => Some(Subresource::Scale),
        Some(_) => return Err(not_found()),
    };
    Ok(Target {
        info,
        namespace,
        name: name.map(str::to_string),
        sub,
    })
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The media type without parameters, lower-cased.
pub fn content_type(headers: &HeaderMap) -> String {
    header(headers, "content-type")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

pub async fn read_body(body: Body) -> ApiResult<Vec<u8>> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| ApiError::too_large(MAX_BODY))
}

/// Decodes a JSON or YAML body (by content type; YAML is a superset of JSON).
pub fn decode(bytes: &[u8], content_type: &str) -> ApiResult<Value> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let yaml = content_type.contains("yaml");
    let parsed: Result<Value, String> = if yaml {
        serde_yaml::from_slice(bytes).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        let what = if yaml { "YAML" } else { "JSON" };
        ApiError::bad_request(format!("the request body is not valid {what}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("namespaces/default/apps/web/scale").expect("parses");
        assert_eq!(
            (
                t.info.kind,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub
            ),
            (
                "App",
                Some("default"),
                Some("web"),
                Some(Subresource::Scale)
            )
        );
        let t = parse_target("apps").expect("all namespaces");
        assert_eq!((t.namespace, t.name), (None, None));
        let t = parse_target("nodes/n1/status").expect("cluster scoped");
        assert_eq!((t.info.kind, t.sub), ("Node", Some(Subresource::Status)));
        assert!(parse_target("namespaces/default/nodes/n1").is_err());
        assert!(
            parse_target("apps/web").is_err(),
            "a namespaced item needs its namespace"
        );
        assert!(parse_target("namespaces/default/apps/web/bogus").is_err());
        assert!(parse_target("namespaces/default/widgets").is_err());
        assert!(parse_target("namespaces/default/tasks/t/scale").is_err());
    }
}

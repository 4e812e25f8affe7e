//! `GET /apis/drover.dev/v1alpha1/namespaces/{ns}/tasks/{name}/log`: a task's output,
//! proxied from the agent of its node.
//!
//! Authorized as `get` on `tasks/log` (viewers may read logs; agents may not). The Task
//! names its node (`spec.nodeName`), the Node its agent's log endpoint
//! (`status.daemonEndpoint`); the agent's answer is streamed through as it comes
//! (`follow=true` keeps it open). The API server presents its own token
//! (`system:apiserver`), which the agent checks with a TokenReview.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;

use crate::apiserver::auth::{self, Identity, Role};
use crate::apiserver::reads;
use crate::apiserver::request::parse_target;
use crate::apiserver::server::ApiState;
use crate::apiserver::status::{ApiError, ApiResult};

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves a task's log.
pub async fn task_log(
    State(state): State<ApiState>,
    identity: Option<axum::Extension<Identity>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = identity.map(|axum::Extension(id)| id);
    proxy(&state, id.as_ref(), &namespace, &name, &q)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// What the agent is asked for.
#[derive(Debug, PartialEq, Eq)]
struct LogParams {
    follow: bool,
    tail_lines: Option<u64>,
    stream: &'static str,
}

fn params(task: &str, q: &HashMap<String, String>) -> ApiResult<LogParams> {
    let follow = match q.get("follow").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "follow: {v:?} is not true or false"
            )))
        }
    };
    let tail_lines = match q.get("tailLines") {
        None => None,
        Some(n) => Some(n.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("tailLines: {n:?} is not a number of lines (>= 0)"))
        })?),
    };
    // A task has one "container"; its name, or `stdout` / `stderr`, picks the file.
    let stream = match (
        q.get("stream").map(String::as_str),
        q.get("container").map(String::as_str),
    ) {
        (Some("stderr"), _) | (None, Some("stderr")) => "stderr",
        (Some("stdout") | None, _) => match q.get("container").map(String::as_str) {
            None | Some("") | Some("stdout") | Some("stderr") => "stdout",
            Some(c) if c == task => "stdout",
            Some(c) => {
                return Err(ApiError::bad_request(format!(
                    "container: task {task} has no container \"{c}\" (use stdout or stderr)"
                )))
            }
        },
        (Some(s), _) => {
            return Err(ApiError::bad_request(format!(
                "stream: {s:?} is not stdout or stderr"
            )))
        }
    };
    Ok(LogParams {
        follow,
        tail_lines,
        stream,
    })
}

fn forbidden_for_agents(id: &Identity, namespace: &str, name: &str) -> ApiError {
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "tasks.drover.dev \"{name}\" is forbidden: User \"{}\" cannot get resource \"tasks/log\" in API group \"drover.dev\" in the namespace \"{namespace}\": agents do not read logs through the API",
            id.user
        ),
    )
}

#[tracing::instrument(skip_all, fields(task = %format!("{namespace}/{name}")))]
async fn proxy(
    state: &ApiState,
    id: Option<&Identity>,
    namespace: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    let t = parse_target(&format!("namespaces/{namespace}/tasks/{name}"))?;
    if let Some(id) = id {
        if id.role == Role::Agent {
            return Err(forbidden_for_agents(id, namespace, name));
        }
        auth::authorize(id, "get", &t, None)?;
    }
    let p = params(name, q)?;
    let (task, _) = reads::get_object(state, &t).await?;
    let node = task
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("task {name} is not bound to a node yet")))?;
    let node_target = parse_target(&format!("nodes/{node}"))?;
    let endpoint = match reads::get_object(state, &node_target).await {
        Ok((obj, _)) => obj
            .pointer("/status/daemonEndpoint")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::unavailable(format!(
                    "node {node} of task {name} advertises no log endpoint (status.daemonEndpoint): is its agent running?"
                ))
            })?,
        Err(e) if e.code == 404 => {
            return Err(ApiError::unavailable(format!(
                "node {node} of task {name} is not registered: no agent serves its logs"
            )))
        }
        Err(e) => return Err(e),
    };
    let mut url = reqwest::Url::parse(&format!(
        "{}/logs/{namespace}/{name}",
        endpoint.trim_end_matches('/')
    ))
    .map_err(|e| {
        ApiError::unavailable(format!(
            "node {node} advertises a log endpoint that is not a URL ({endpoint}): {e}"
        ))
    })?;
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("follow", if p.follow { "true" } else { "false" });
        pairs.append_pair("stream", p.stream);
        if let Some(n) = p.tail_lines {
            pairs.append_pair("tailLines", &n.to_string());
        }
    }
    let mut request = http_client()?.get(url);
    if let Some(auth) = &state.auth {
        request = request.bearer_auth(auth.apiserver_token());
    }
    let answer = request.send().await.map_err(|e| {
        bad_gateway(format!(
            "cannot reach the agent of node {node} at {endpoint}: {}",
            error_chain(&e)
        ))
    })?;
    let code = answer.status();
    if !code.is_success() {
        let body = answer.bytes().await.unwrap_or_default();
        return Err(agent_error(node, &endpoint, code.as_u16(), &body));
    }
    tracing::debug!(%node, %endpoint, follow = p.follow, "proxying a task log");
    let stream = answer
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    Ok((
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One HTTP client for every proxied request (connection reuse); no overall timeout,
/// as a followed log stays open.
fn http_client() -> ApiResult<&'static reqwest::Client> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ApiError::internal(format!("the HTTP client for agents: {e}")))
}

fn bad_gateway(message: String) -> ApiError {
    ApiError::new(502, "BadGateway", message)
}

/// An agent's error answer: its Status passed on (with the node named), or a 502.
fn agent_error(node: &str, endpoint: &str, code: u16, body: &[u8]) -> ApiError {
    let status: Option<Value> = serde_json::from_slice(body).ok();
    let message = status
        .as_ref()
        .filter(|s| s.get("kind").and_then(Value::as_str) == Some("Status"))
        .and_then(|s| s.get("message").and_then(Value::as_str))
        .map(str::to_string);
    match (code, message) {
        (400, Some(m)) => ApiError::bad_request(m),
        (404, Some(m)) => ApiError::new(404, "NotFound", m),
        (_, Some(m)) => bad_gateway(format!(
            "the agent of node {node} at {endpoint} answered {code}: {m}"
        )),
        (_, None) => bad_gateway(format!(
            "the agent of node {node} at {endpoint} answered {code}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
        )),
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_and_name_the_field() {
        let p = params("x", &q(&[("follow", "true"), ("tailLines", "2")])).expect("valid");
        assert_eq!(
            p,
            LogParams {
                follow: true,
                tail_lines: Some(2),
                stream: "stdout"
            }
        );
        let e = params("x", &q(&[("tailLines", "many")])).expect_err("bad tail");
        assert!(e.message.starts_with("tailLines:"), "{}", e.message);
        assert_eq!(
            params("x", &q(&[("container", "x")]))
                .map(|p| p.stream)
                .ok(),
            Some("stdout")
        );
        assert_eq!(
            params("x", &q(&[("container", "stderr")]))
                .map(|p| p.stream)
                .ok(),
            Some("stderr")
        );
        let e = params("x", &q(&[("container", "sidecar")])).expect_err("no such container");
        assert!(
            e.message.contains("no container \"sidecar\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn agent_errors_name_the_node() {
        let e = agent_error("n1", "http://127.0.0.1:1", 500, b"boom");
        assert_eq!(e.code, 502);
        assert!(e
            .message
            .contains("node n1 at http://127.0.0.1:1 answered 500: boom"));
        let status =
            br#"{"kind":"Status","message":"task default/x has no logs on node n1","code":404}"#;
        let e = agent_error("n1", "http://a", 404, status);
        assert_eq!(
            (e.code, e.message.as_str()),
            (404, "task default/x has no logs on node n1")
        );
    }
}

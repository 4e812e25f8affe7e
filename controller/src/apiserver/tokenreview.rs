//! `POST /apis/authentication.k8s.io/v1/tokenreviews`: whose token is this? Agents ask
//! it before serving a log request, to accept only the API server's own token.
//!
//! Only admins and agents may create TokenReviews. A server without authentication
//! (`--insecure`) has no tokens: every review answers "not authenticated".

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::apiserver::auth::{Identity, Role};
use crate::apiserver::request::read_body;
use crate::apiserver::server::ApiState;
use crate::apiserver::status::{ApiError, ApiResult};

/// Creates (answers) a TokenReview.
pub async fn create(
    State(state): State<ApiState>,
    identity: Option<axum::Extension<Identity>>,
    body: Body,
) -> Response {
    review(&state, identity.map(|axum::Extension(id)| id), body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn review(state: &ApiState, id: Option<Identity>, body: Body) -> ApiResult<Response> {
    if let Some(id) = &id {
        if !matches!(id.role, Role::Admin | Role::Agent) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "tokenreviews.authentication.k8s.io is forbidden: User \"{}\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope: only admins and agents may review tokens",
                    id.user
                ),
            ));
        }
    }
    let raw = read_body(body).await?;
    let request: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("TokenReview: the body is not JSON: {e}")))?;
    let token = request
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("TokenReview: spec.token: required"))?;
    let status = match state.auth.as_ref().and_then(|a| a.review(token)) {
        Some(who) => json!({
            "authenticated": true,
            "user": {"username": who.user, "groups": ["system:authenticated"]},
        }),
        None if state.auth.is_none() => json!({
            "authenticated": false,
            "error": "the API server runs without authentication",
        }),
        None => json!({"authenticated": false}),
    };
    let answer = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": {},
        "status": status,
    });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use crate::apiserver::auth::{Authenticator, Role, TokenEntry, APISERVER_USER};

    #[test]
    fn the_api_servers_own_token_is_reviewed_but_not_accepted_for_api_calls() {
        let auth = Authenticator::new(&[TokenEntry {
            token: "viewer-token".into(),
            user: "vera".into(),
            role: Role::Viewer,
            node: None,
        }]);
        let own = auth.apiserver_token().to_string();
        assert_eq!(own.len(), 64);
        assert_eq!(
            auth.review(&own).map(|i| i.user).as_deref(),
            Some(APISERVER_USER)
        );
        assert_eq!(
            auth.review("viewer-token").map(|i| i.user).as_deref(),
            Some("vera")
        );
        assert!(auth.review("nope").is_none() && auth.review("").is_none());
        let header = format!("Bearer {own}");
        assert_eq!(
            auth.authenticate(Some(&header))
                .map(|_| ())
                .map_err(|e| e.code),
            Err(401)
        );
        // Each server start makes a new one.
        assert_ne!(Authenticator::new(&[]).apiserver_token(), own);
    }
}

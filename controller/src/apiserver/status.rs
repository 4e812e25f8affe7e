//! API errors as Kubernetes `Status` objects — the one place errors get their code,
//! reason and message, so kubectl and client libraries read them as typed errors.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use drover_api::validation::ValidationErrors;
use drover_api::KindInfo;
use serde_json::{json, Value};

use crate::apiserver::fieldpath::value_at;

/// A field-level cause (`details.causes[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel through every `Result` of the server and most have none.
    pub details: Option<Box<Details>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Details {
    pub name: Option<String>,
    pub kind: Option<&'static str>,
    pub causes: Vec<Cause>,
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

/// `apps.drover.dev`: how Kubernetes names a resource in messages.
pub fn qualified(info: &KindInfo) -> String {
    format!("{}.drover.dev", info.plural)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn details_mut(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Default::default)
    }

    fn about(mut self, info: &KindInfo, name: &str) -> Self {
        let d = self.details_mut();
        d.name = Some(name.to_string());
        d.kind = Some(info.kind);
        self
    }

    pub fn causes(&self) -> &[Cause] {
        self.details
            .as_ref()
            .map(|d| d.causes.as_slice())
            .unwrap_or_default()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(info: &KindInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(info)),
        )
        .about(info, name)
    }

    pub fn route_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn already_exists(info: &KindInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(info)),
        )
        .about(info, name)
    }

    pub fn conflict(info: &KindInfo, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(info)
            ),
        )
        .about(info, name)
    }

    pub fn conflict_with(info: &KindInfo, name: &str, message: String, causes: Vec<Cause>) -> Self {
        let mut e = Self::new(409, "Conflict", message).about(info, name);
        e.details_mut().causes = causes;
        e
    }

    /// 422 with one cause per field, messages as Kubernetes words them.
    pub fn invalid(info: &KindInfo, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let joined = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{}.drover.dev \"{name}\" is invalid: {joined}", info.kind),
        )
        .about(info, name);
        e.details_mut().causes = causes;
        e
    }

    /// Turns validation errors into causes, quoting the offending value as Kubernetes does.
    pub fn from_validation(
        info: &KindInfo,
        name: &str,
        errors: &ValidationErrors,
        object: &Value,
    ) -> Self {
        let causes = errors
            .errors
            .iter()
            .map(|e| {
                let message = if e.message.starts_with("Invalid value")
                    || e.message.starts_with("Required value")
                {
                    e.message.clone()
                } else {
                    match value_at(object, &e.field) {
                        Some(v) if e.kind.reason() == "FieldValueInvalid" => {
                            format!("Invalid value: {v}: {}", e.message)
                        }
                        _ => e.message.clone(),
                    }
                };
                Cause {
                    reason: e.kind.reason().to_string(),
                    message,
                    field: e.field.clone(),
                }
            })
            .collect();
        Self::invalid(info, name, causes)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"))
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(503, "ServiceUnavailable", message);
        e.details_mut().retry_after = Some(1);
        e
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = self
            .details
            .as_deref()
            .filter(|d| d.name.is_some() || !d.causes.is_empty())
        {
            let mut details = json!({"group": "drover.dev"});
            if let Some(name) = &d.name {
                details["name"] = json!(name);
            }
            if let Some(kind) = d.kind {
                details["kind"] = json!(kind);
            }
            if !d.causes.is_empty() {
                details["causes"] = Value::Array(
                    d.causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect(),
                );
            }
            status["details"] = details;
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_status().to_string();
        let mut resp = (code, [("content-type", "application/json")], body).into_response();
        if let Some(secs) = self.details.as_ref().and_then(|d| d.retry_after) {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_reads_like_kubernetes() {
        let info = drover_api::find_kind("App").copied().expect("App");
        let e = ApiError::invalid(
            &info,
            "web",
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: -1: must be >= 0".into(),
                field: "spec.instances".into(),
            }],
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(
            s["message"],
            "App.drover.dev \"web\" is invalid: spec.instances: Invalid value: -1: must be >= 0"
        );
        assert_eq!(s["details"]["causes"][0]["field"], "spec.instances");
        assert_eq!(s["details"]["kind"], "App");
    }
}

//! Who is calling (bearer tokens) and what they may do (roles).
//!
//! Roles: `admin` — everything; `operator` — every verb on every kind except writing
//! Quotas and Frameworks (cluster policy stays with admins); `viewer` — get, list,
//! watch; `agent` (one per node) — only the Tasks bound to its node (read, and write
//! their status), its own Node, and creating Events.
//!
//! Tokens live in `<data-dir>/tokens.yaml`: a list of `{token, user, role, node?}`.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::apiserver::request::{Subresource, Target};
use crate::apiserver::status::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Agent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    pub token: String,
    pub user: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The caller, once its token checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub role: Role,
    pub node: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    tokens: HashMap<String, Identity>,
    /// The API server's own token (`system:apiserver`), made at startup and kept only
    /// in memory: it proxies log requests to agents, which check it with a TokenReview.
    /// It is not accepted for API requests.
    apiserver_token: String,
}

/// The API server's own identity, as agents see it in TokenReviews.
pub const APISERVER_USER: &str = "system:apiserver";

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: std::path::PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{}: entry {index}: an agent token needs a node", path.display())]
    AgentWithoutNode {
        path: std::path::PathBuf,
        index: usize,
    },
}

impl Authenticator {
    pub fn new(entries: &[TokenEntry]) -> Self {
        Authenticator {
            tokens: entries
                .iter()
                .map(|e| {
                    (
                        e.token.clone(),
                        Identity {
                            user: e.user.clone(),
                            role: e.role,
                            node: e.node.clone(),
                        },
                    )
                })
                .collect(),
            apiserver_token: new_token(),
        }
    }

    /// The token the API server presents to agents (see [`Authenticator::review`]).
    pub fn apiserver_token(&self) -> &str {
        &self.apiserver_token
    }

    /// A TokenReview: whose token is this? The tokens of the token file, and the API
    /// server's own (`system:apiserver`).
    pub fn review(&self, token: &str) -> Option<Identity> {
        if token.is_empty() {
            return None;
        }
        if token == self.apiserver_token {
            return Some(Identity {
                user: APISERVER_USER.into(),
                role: Role::Viewer,
                node: None,
            });
        }
        self.tokens.get(token).cloned()
    }

    /// The identity behind an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match token.and_then(|t| self.tokens.get(t)) {
            Some(id) => Ok(id.clone()),
            None => Err(ApiError::new(401, "Unauthorized", "Unauthorized")),
        }
    }
}

/// Reads the token file, or creates it with one admin token.
pub fn load_or_create_tokens(path: &Path) -> Result<Vec<TokenEntry>, TokenFileError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let entries: Vec<TokenEntry> =
            serde_yaml::from_str(&text).map_err(|source| TokenFileError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(index) = entries
            .iter()
            .position(|e| e.role == Role::Agent && e.node.is_none())
        {
            return Err(TokenFileError::AgentWithoutNode {
                path: path.to_path_buf(),
                index,
            });
        }
        return Ok(entries);
    }
    let entries = vec![TokenEntry {
        token: new_token(),
        user: "admin".into(),
        role: Role::Admin,
        node: None,
    }];
    save_tokens(path, &entries)?;
    Ok(entries)
}

pub fn save_tokens(path: &Path, entries: &[TokenEntry]) -> Result<(), TokenFileError> {
    let io = |source| TokenFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_yaml::to_string(entries).map_err(|source| TokenFileError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)
}

/// 32 random bytes from two v4 UUIDs, hex.
pub fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The Kubernetes verb of a request.
pub fn verb(method: &axum::http::Method, t: &Target, watch: bool) -> &'static str {
    use axum::http::Method;
    match (method, t.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, false) => "deletecollection",
        (&Method::DELETE, true) => "delete",
        _ => "unknown",
    }
}

fn forbidden(id: &Identity, verb: &str, t: &Target, why: &str) -> ApiError {
    let scope = match &t.namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".into(),
    };
    let sub = match t.sub {
        Some(Subresource::Status) => "/status",
        Some(Subresource::Scale) => "/scale",
        None => "",
    };
    let name = t
        .name
        .as_deref()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default();
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{}{sub}.drover.dev{name} is forbidden: User \"{}\" cannot {verb} resource \"{}{sub}\" in API group \"drover.dev\"{scope}: {why}",
            t.info.plural, id.user, t.info.plural
        ),
    )
}

const READ: [&str; 3] = ["get", "list", "watch"];

/// May `id` do `verb` on `t`? Object-level checks for agents (a Task's node) are made by
/// the caller with [`agent_may_touch_task`].
pub fn authorize(
    id: &Identity,
    verb: &str,
    t: &Target,
    field_selector: Option<&str>,
) -> Result<(), ApiError> {
    let read = READ.contains(&verb);
    match id.role {
        Role::Admin => Ok(()),
        Role::Operator if read || !matches!(t.info.kind, "Quota" | "Framework") => Ok(()),
        Role::Operator => Err(forbidden(
            id,
            verb,
            t,
            "only admins change quotas and frameworks",
        )),
        Role::Viewer if read => Ok(()),
        Role::Viewer => Err(forbidden(id, verb, t, "viewers may only read")),
        Role::Agent => authorize_agent(id, verb, t, field_selector),
    }
}

fn authorize_agent(
    id: &Identity,
    verb: &str,
    t: &Target,
    field_selector: Option<&str>,
) -> Result<(), ApiError> {
    let node = id.node.as_deref().unwrap_or_default();
    match t.info.kind {
        "Task" => match verb {
            "list" | "watch" => {
                let wanted = format!("spec.nodeName={node}");
                let scoped =
                    field_selector.is_some_and(|f| f.split(',').any(|p| p.trim() == wanted));
                if scoped {
                    Ok(())
                } else {
                    Err(forbidden(
                        id,
                        verb,
                        t,
                        &format!("agents must select fieldSelector={wanted}"),
                    ))
                }
            }
            "get" => Ok(()),
            "update" | "patch" if t.sub == Some(Subresource::Status) => Ok(()),
            _ => Err(forbidden(
                id,
                verb,
                t,
                "agents may only read their tasks and write their status",
            )),
        },
        "Node" => {
            let own = t.name.as_deref().is_none_or(|n| n == node);
            if own
                && matches!(
                    verb,
                    "get" | "list" | "watch" | "create" | "update" | "patch"
                )
            {
                Ok(())
            } else {
                Err(forbidden(
                    id,
                    verb,
                    t,
                    "agents may only manage their own Node",
                ))
            }
        }
        "Event" if matches!(verb, "create" | "update" | "patch") => Ok(()),
        _ => Err(forbidden(
            id,
            verb,
            t,
            "agents may only touch their tasks, their node and events",
        )),
    }
}

/// An agent may read or write the status of a Task only if it is bound to its node.
pub fn agent_may_touch_task(
    id: &Identity,
    verb: &str,
    t: &Target,
    task: &serde_json::Value,
) -> Result<(), ApiError> {
    if id.role != Role::Agent || t.info.kind != "Task" {
        return Ok(());
    }
    let bound = task
        .pointer("/spec/nodeName")
        .and_then(serde_json::Value::as_str);
    if bound.is_some() && bound == id.node.as_deref() {
        Ok(())
    } else {
        Err(forbidden(
            id,
            verb,
            t,
            "the task is not bound to this agent's node",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::request::parse_target;

    fn id(role: Role, node: Option<&str>) -> Identity {
        Identity {
            user: "u".into(),
            role,
            node: node.map(str::to_string),
        }
    }

    #[test]
    fn roles() {
        let apps = parse_target("namespaces/default/apps").expect("target");
        let quota = parse_target("namespaces/default/quotas/q").expect("target");
        assert!(authorize(&id(Role::Viewer, None), "list", &apps, None).is_ok());
        let e =
            authorize(&id(Role::Viewer, None), "delete", &apps, None).expect_err("viewer delete");
        assert_eq!(e.code, 403);
        assert!(authorize(&id(Role::Operator, None), "delete", &apps, None).is_ok());
        assert!(authorize(&id(Role::Operator, None), "update", &quota, None).is_err());
        assert!(authorize(&id(Role::Admin, None), "update", &quota, None).is_ok());
    }

    #[test]
    fn agents_see_only_their_tasks_and_node() {
        let a = id(Role::Agent, Some("n1"));
        let tasks = parse_target("namespaces/default/tasks").expect("target");
        assert!(authorize(&a, "watch", &tasks, Some("spec.nodeName=n1")).is_ok());
        assert!(authorize(&a, "watch", &tasks, Some("spec.nodeName=n2")).is_err());
        assert!(authorize(&a, "list", &tasks, None).is_err());
        let status = parse_target("namespaces/default/tasks/t1/status").expect("target");
        assert!(authorize(&a, "patch", &status, None).is_ok());
        let main = parse_target("namespaces/default/tasks/t1").expect("target");
        assert!(authorize(&a, "patch", &main, None).is_err());
        let task = serde_json::json!({"spec": {"nodeName": "n2"}});
        assert!(agent_may_touch_task(&a, "get", &main, &task).is_err());
        let own = parse_target("nodes/n1/status").expect("target");
        let other = parse_target("nodes/n2").expect("target");
        assert!(authorize(&a, "update", &own, None).is_ok());
        assert!(authorize(&a, "get", &other, None).is_err());
        let apps = parse_target("namespaces/default/apps").expect("target");
        assert!(authorize(&a, "list", &apps, None).is_err());
    }

    #[test]
    fn tokens() {
        let auth = Authenticator::new(&[TokenEntry {
            token: "abc".into(),
            user: "admin".into(),
            role: Role::Admin,
            node: None,
        }]);
        assert_eq!(
            auth.authenticate(Some("Bearer abc")).expect("ok").role,
            Role::Admin
        );
        assert_eq!(
            auth.authenticate(Some("Bearer nope"))
                .expect_err("bad")
                .code,
            401
        );
        assert_eq!(auth.authenticate(None).expect_err("missing").code, 401);
    }
}

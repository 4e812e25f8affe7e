//! Creates, updates (PUT), patches (merge, JSON, server-side apply), deletes, and the
//! status and scale subresources. Every write goes through `commit`: admission, then a
//! store write guarded by the revision it was computed from.

use drover_api::KindInfo;
use drover_store::StoreError;
use serde_json::{json, Value};

use crate::apiserver::objects::{
    admit, check_name, key, meta_str, new_uid, now_rfc3339, remove_meta, resource_version,
    set_meta, set_resource_version, spec_changed, stamp_created, to_stored, FieldValidation,
};
use crate::apiserver::patch;
use crate::apiserver::reads::{get_object, scale_of, store_error};
use crate::apiserver::request::{Subresource, Target};
use crate::apiserver::server::{ApiState, Query};
use crate::apiserver::status::{ApiError, ApiResult, Cause};

/// Server-side retries of a patch that lost a race with another writer.
const PATCH_RETRIES: usize = 5;

pub struct WriteOptions {
    pub validation: FieldValidation,
    pub manager: String,
    pub dry_run: bool,
    pub force: bool,
}

impl WriteOptions {
    pub fn from_query(q: &Query, user_agent: &str) -> ApiResult<Self> {
        let dry_run = match q.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "dryRun must be \"All\", got {other:?}"
                )))
            }
        };
        let manager = q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned()
            .unwrap_or_else(|| default_manager(user_agent));
        let force = q.get("force").is_some_and(|f| f == "true");
        Ok(WriteOptions {
            validation: FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?,
            manager,
            dry_run,
            force,
        })
    }
}

/// As Kubernetes: the user agent up to its first `/` (`kubectl`, `drover`).
fn default_manager(user_agent: &str) -> String {
    let m = user_agent.split('/').next().unwrap_or_default().trim();
    if m.is_empty() {
        "unknown".into()
    } else {
        m.chars().take(128).collect()
    }
}

pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

pub async fn create(
    state: &ApiState,
    t: &Target,
    obj: Value,
    opts: &WriteOptions,
) -> ApiResult<Written> {
    create_with(state, t, obj, opts, true).await
}

/// `record`: give the new fields to the manager as an Update (not for server-side
/// apply, which has recorded its Apply entry already).
async fn create_with(
    state: &ApiState,
    t: &Target,
    mut obj: Value,
    opts: &WriteOptions,
    record: bool,
) -> ApiResult<Written> {
    let info = t.info;
    let ns = namespace_for(t, &obj)?;
    let name = match meta_str(&obj, "name").filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => match meta_str(&obj, "generateName").filter(|n| !n.is_empty()) {
            Some(prefix) => format!("{prefix}{}", &new_uid()[..5]),
            None => {
                return Err(ApiError::invalid(
                    info,
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ))
            }
        },
    };
    check_name(info, &name)?;
    set_meta(&mut obj, "name", json!(name));
    if let Some(ns) = &ns {
        set_meta(&mut obj, "namespace", json!(ns));
    }
    let now = now_rfc3339();
    stamp_created(&mut obj, &now);
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        remove_meta(&mut obj, f);
    }
    if info.has_status {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    if record {
        patch::record_update(None, &mut obj, &opts.manager, &now);
    }
    let (obj, warnings) = admit(info, obj, opts.validation)?;
    let k = key(info, ns.as_deref(), &name);
    let mut object = obj;
    if !opts.dry_run {
        let rev = state
            .store
            .create(&k, to_stored(&object), 0)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists { .. } => ApiError::already_exists(info, &name),
                other => store_error(other),
            })?;
        set_resource_version(&mut object, rev);
    }
    Ok(Written {
        object,
        created: true,
        warnings,
    })
}

/// The namespace of a new object: the URL's; a different one in the body is an error.
fn namespace_for(t: &Target, obj: &Value) -> ApiResult<Option<String>> {
    if !t.info.namespaced {
        return Ok(None);
    }
    let url = t
        .namespace
        .clone()
        .ok_or_else(|| ApiError::method_not_allowed("create needs a namespace in the URL"))?;
    match meta_str(obj, "namespace") {
        Some(ns) if !ns.is_empty() && ns != url => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(Some(url)),
    }
}

/// PUT of an object or its status.
pub async fn update(
    state: &ApiState,
    t: &Target,
    body: Value,
    opts: &WriteOptions,
) -> ApiResult<Written> {
    let name = t.name.clone().unwrap_or_default();
    if meta_str(&body, "name").is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&body, "name").unwrap_or_default()
        )));
    }
    let Some(expected) = resource_version(&body) else {
        return Err(ApiError::invalid(
            t.info,
            &name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: 0x0: must be specified for an update".into(),
                field: "metadata.resourceVersion".into(),
            }],
        ));
    };
    let (current, revision) = get_object(state, t).await?;
    if expected != revision {
        return Err(ApiError::conflict(t.info, &name));
    }
    commit(state, t, &current, revision, body, opts).await
}

/// Builds the new object from `current` and what the client sent, admits it and writes
/// it if `current` is still at `revision`.
async fn commit(
    state: &ApiState,
    t: &Target,
    current: &Value,
    revision: i64,
    sent: Value,
    opts: &WriteOptions,
) -> ApiResult<Written> {
    let info = t.info;
    let name = t.name.clone().unwrap_or_default();
    let mut new = match t.sub {
        // Status writes change only .status.
        Some(Subresource::Status) => {
            let mut new = current.clone();
            copy_status(&sent, &mut new);
            new
        }
        _ => sent,
    };
    crate::apiserver::objects::check_type(info, &new)?;
    carry_server_fields(info, t.sub, current, &mut new);
    let now = now_rfc3339();
    patch::record_update(Some(current), &mut new, &opts.manager, &now);
    finish(state, t, &name, current, revision, new, opts).await
}

/// Admission and the guarded write.
async fn finish(
    state: &ApiState,
    t: &Target,
    name: &str,
    current: &Value,
    revision: i64,
    new: Value,
    opts: &WriteOptions,
) -> ApiResult<Written> {
    let (mut new, warnings) = admit(t.info, new, opts.validation)?;
    // A Node status write is its agent's heartbeat: keep the node's lease alive.
    if t.info.kind == "Node" && t.sub == Some(Subresource::Status) && !opts.dry_run {
        let ttl = state.node_lease_seconds;
        crate::apiserver::node_lease::on_node_status_write(&state.store, name, ttl).await;
    }
    set_resource_version(&mut new, revision);
    // A write that changes nothing but managedFields timestamps is a no-op: the
    // resourceVersion stays, so an unchanged apply reads as unchanged.
    if same_but_times(&new, current) || opts.dry_run {
        let mut kept = current.clone();
        if opts.dry_run {
            kept = new;
        }
        return Ok(Written {
            object: kept,
            created: false,
            warnings,
        });
    }
    if new == *current {
        return Ok(Written {
            object: new,
            created: false,
            warnings,
        });
    }
    // The last finalizer of an object being deleted is gone: it goes now.
    if crate::apiserver::deletion::delete_if_finalized(state, t, name, revision, &new).await? {
        return Ok(Written {
            object: new,
            created: false,
            warnings,
        });
    }
    let k = key(t.info, t.namespace.as_deref(), name);
    let rev = state
        .store
        .update(&k, to_stored(&new), revision, 0)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ApiError::conflict(t.info, name),
            StoreError::NotFound { .. } => ApiError::not_found(t.info, name),
            other => store_error(other),
        })?;
    set_resource_version(&mut new, rev);
    Ok(Written {
        object: new,
        created: false,
        warnings,
    })
}

fn without_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(entries) = v
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in entries {
            if let Some(o) = e.as_object_mut() {
                o.remove("time");
            }
        }
    }
    v
}

fn same_but_times(a: &Value, b: &Value) -> bool {
    a == b || without_times(a) == without_times(b)
}

/// The kinds of PATCH bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        match ct {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

pub async fn patch(
    state: &ApiState,
    t: &Target,
    kind: PatchType,
    body: Value,
    opts: &WriteOptions,
) -> ApiResult<Written> {
    let name = t.name.clone().unwrap_or_default();
    for _ in 0..PATCH_RETRIES {
        let current = match get_object(state, t).await {
            Ok(c) => Some(c),
            Err(e) if e.code == 404 && kind == PatchType::Apply && t.sub.is_none() => None,
            Err(e) => return Err(e),
        };
        let Some((current, revision)) = current else {
            // Server-side apply creates what is missing.
            let applied = apply_body(t, &body, None, opts)?;
            let mut created = create_with(state, t, applied, opts, false).await?;
            created.created = true;
            return Ok(created);
        };
        let result = match kind {
            PatchType::Apply => {
                let new = apply_body(t, &body, Some(&current), opts)?;
                finish_apply(state, t, &name, &current, revision, new, opts).await
            }
            PatchType::Merge | PatchType::Json => {
                let base = if t.sub == Some(Subresource::Scale) {
                    scale_of(t.info, &current)
                } else {
                    current.clone()
                };
                let mut patched = base;
                if kind == PatchType::Merge {
                    patch::merge_patch(&mut patched, &body);
                } else {
                    patch::json_patch(&mut patched, &body)
                        .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
                }
                // A resourceVersion in the patch is a precondition.
                if let Some(rv) = resource_version(&patched) {
                    if rv != revision {
                        return Err(ApiError::conflict(t.info, &name));
                    }
                }
                let sent = if t.sub == Some(Subresource::Scale) {
                    with_scale(&current, &patched)?
                } else {
                    patched
                };
                commit(state, t, &current, revision, sent, opts).await
            }
        };
        match result {
            Err(e) if e.reason == "Conflict" && e.causes().is_empty() => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict(t.info, &name))
}

/// The object a server-side apply produces, with managed fields and conflicts handled.
fn apply_body(
    t: &Target,
    body: &Value,
    current: Option<&Value>,
    opts: &WriteOptions,
) -> ApiResult<Value> {
    let name = t.name.clone().unwrap_or_default();
    crate::apiserver::objects::check_type(t.info, body)?;
    if meta_str(body, "name").is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(body, "name").unwrap_or_default()
        )));
    }
    let mut applied = body.clone();
    set_meta(&mut applied, "name", json!(name));
    let now = now_rfc3339();
    patch::apply(current, &applied, &opts.manager, opts.force, &now).map_err(|e| match e {
        patch::ApplyError::Conflicts(conflicts) => {
            let causes = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with \"{}\"", c.manager),
                    field: c.field.clone(),
                })
                .collect();
            ApiError::conflict_with(
                t.info,
                &name,
                patch::ApplyError::Conflicts(conflicts).to_string(),
                causes,
            )
        }
        other => ApiError::bad_request(other.to_string()),
    })
}

async fn finish_apply(
    state: &ApiState,
    t: &Target,
    name: &str,
    current: &Value,
    revision: i64,
    mut new: Value,
    opts: &WriteOptions,
) -> ApiResult<Written> {
    carry_server_fields(t.info, t.sub, current, &mut new);
    finish(state, t, name, current, revision, new, opts).await
}

/// `to.status` becomes `from.status` (or goes, if `from` has none).
fn copy_status(from: &Value, to: &mut Value) {
    match from.get("status") {
        Some(s) => to["status"] = s.clone(),
        None => {
            if let Some(o) = to.as_object_mut() {
                o.remove("status");
            }
        }
    }
}

/// What the server owns on an existing object, whatever the client sent: identity,
/// timestamps, the generation (bumped when the spec changes) and — on writes to the
/// main resource — the status.
fn carry_server_fields(
    info: &KindInfo,
    sub: Option<Subresource>,
    current: &Value,
    new: &mut Value,
) {
    if info.has_status && sub != Some(Subresource::Status) {
        copy_status(current, new);
    }
    for f in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "deletionTimestamp",
        "generation",
    ] {
        match current.get("metadata").and_then(|m| m.get(f)) {
            Some(v) => set_meta(new, f, v.clone()),
            None => remove_meta(new, f),
        }
    }
    let generation = current
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if spec_changed(current, new) {
        set_meta(new, "generation", json!(generation + 1));
    }
}

/// Applies a changed Scale back onto the object: replicas ↔ spec.instances.
fn with_scale(current: &Value, scale: &Value) -> ApiResult<Value> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?;
    let mut obj = current.clone();
    obj["spec"]["instances"] = json!(replicas);
    Ok(obj)
}

/// PUT of a Scale.
pub async fn update_scale(
    state: &ApiState,
    t: &Target,
    body: Value,
    opts: &WriteOptions,
) -> ApiResult<Written> {
    let (current, revision) = get_object(state, t).await?;
    if let Some(rv) = resource_version(&body) {
        if rv != revision {
            return Err(ApiError::conflict(
                t.info,
                t.name.as_deref().unwrap_or_default(),
            ));
        }
    }
    let sent = with_scale(&current, &body)?;
    commit(state, t, &current, revision, sent, opts).await
}

/// DELETE: objects with finalizers get a deletionTimestamp; others go at once.
pub async fn delete(
    state: &ApiState,
    t: &Target,
    body: Option<Value>,
    dry_run: bool,
) -> ApiResult<Value> {
    let name = t.name.clone().unwrap_or_default();
    let (current, revision) = get_object(state, t).await?;
    if let Some(pre) = body.as_ref().and_then(|b| b.get("preconditions")) {
        if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
            if rv != revision.to_string() {
                return Err(ApiError::conflict(t.info, &name));
            }
        }
        if let Some(uid) = pre.get("uid").and_then(Value::as_str) {
            if Some(uid) != meta_str(&current, "uid") {
                return Err(ApiError::conflict(t.info, &name));
            }
        }
    }
    if dry_run {
        return Ok(current);
    }
    let k = key(t.info, t.namespace.as_deref(), &name);
    // propagationPolicy Orphan / Foreground: the garbage collector's finalizer first.
    let current = crate::apiserver::deletion::with_policy_finalizer(current, body.as_ref())?;
    let has_finalizers = current
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        let mut marked = current.clone();
        if meta_str(&marked, "deletionTimestamp").is_none() {
            set_meta(&mut marked, "deletionTimestamp", json!(now_rfc3339()));
        }
        let rev = state
            .store
            .update(&k, to_stored(&marked), revision, 0)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ApiError::conflict(t.info, &name),
                other => store_error(other),
            })?;
        set_resource_version(&mut marked, rev);
        return Ok(marked);
    }
    state
        .store
        .delete(&k, Some(revision))
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ApiError::conflict(t.info, &name),
            StoreError::NotFound { .. } => ApiError::not_found(t.info, &name),
            other => store_error(other),
        })?;
    Ok(current)
}

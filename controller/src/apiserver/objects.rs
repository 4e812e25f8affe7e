//! Where objects live in the store and what every write does to them: keys, the
//! stored form (no resourceVersion — it is the key's mod_revision), server-set metadata,
//! and admission (unknown fields per `fieldValidation`, defaults, validation).

use std::collections::HashMap;
use std::sync::OnceLock;

use drover_api::{AnyObject, KindInfo};
use drover_store::KeyValue;
use serde_json::{json, Map, Value};

use crate::apiserver::fieldpath::remove_at;
use crate::apiserver::status::{ApiError, ApiResult, Cause};

pub const PREFIX: &str = "/registry/drover.dev";

/// `/registry/drover.dev/apps/default/web`, or `/registry/drover.dev/nodes/n1`.
pub fn key(info: &KindInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("{PREFIX}/{}/{ns}/{name}", info.plural),
        None => format!("{PREFIX}/{}/{name}", info.plural),
    }
}

/// The prefix of a collection: one namespace, or all of them.
pub fn collection_prefix(info: &KindInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("{PREFIX}/{}/{ns}/", info.plural),
        None => format!("{PREFIX}/{}/", info.plural),
    }
}

/// The object as stored: without resourceVersion.
pub fn to_stored(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&obj).unwrap_or_default()
}

/// The object as served: with resourceVersion = its mod_revision.
pub fn from_stored(kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_resource_version(obj: &mut Value, revision: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// Sets `metadata.<field>` (creating metadata if the object has none).
pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if let Some(o) = obj.as_object_mut() {
        let meta = o.entry("metadata").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Some(m) = meta.as_object_mut() {
            m.insert(field.to_string(), value);
        }
    }
}

pub fn remove_meta(obj: &mut Value, field: &str) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(field);
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

pub fn resource_version(obj: &Value) -> Option<i64> {
    meta_str(obj, "resourceVersion").and_then(|s| s.parse().ok())
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What every new object gets from the server: a uid, its creation time, generation 1.
pub fn stamp_created(obj: &mut Value, now: &str) {
    set_meta(obj, "uid", json!(new_uid()));
    set_meta(obj, "creationTimestamp", json!(now));
    set_meta(obj, "generation", json!(1));
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `fieldValidation`: what to do with fields the schema does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter must be one of Ignore, Warn or Strict, got {other:?}"
            ))),
        }
    }
}

/// The checks of a write: apiVersion/kind, unknown fields, defaults, validation. Returns
/// the object as it will be stored and any warnings.
///
/// The stored spec is what the client sent (unknown fields dropped), not the defaulted
/// one: kubectl's client-side apply diffs lists against the live object, so a server
/// that filled defaults into list items (health checks, ports) or rewrote constraints
/// into their object form would make every re-apply "configured". Defaults are applied
/// by every reader instead (`Defaulting::apply_defaults` is idempotent); validation
/// checks the defaulted object.
pub fn admit(
    info: &KindInfo,
    mut obj: Value,
    validation: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    check_type(info, &obj)?;
    let mut warnings = Vec::new();
    let unknown = drover_api::schema::unknown_fields_in(schema_of(info), &obj);
    if !unknown.is_empty() {
        match validation {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
            }
            FieldValidation::Ignore => {}
        }
        for path in &unknown {
            remove_at(&mut obj, path);
        }
    }
    let mut typed = AnyObject::from_json(obj.clone()).map_err(|e| {
        let message = e.to_string();
        ApiError::invalid(
            info,
            &name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                field: field_of(&message).unwrap_or_else(|| "<body>".into()),
                message,
            }],
        )
    })?;
    typed.apply_defaults();
    if let Err(errors) = typed.validate() {
        return Err(ApiError::from_validation(info, &name, &errors, &obj));
    }
    Ok((obj, warnings))
}

/// Each kind's schema, built once.
fn schema_of(info: &KindInfo) -> &'static Value {
    static SCHEMAS: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    static EMPTY: Value = Value::Null;
    SCHEMAS
        .get_or_init(|| {
            drover_api::KINDS
                .iter()
                .map(|k| (k.kind, (k.schema)()))
                .collect()
        })
        .get(info.kind)
        .unwrap_or(&EMPTY)
}

/// serde messages name the field first: `spec.instances: invalid type: …`.
fn field_of(message: &str) -> Option<String> {
    let msg = message
        .split_once(": ")
        .map(|(a, b)| {
            if a.starts_with("document") {
                b
            } else {
                message
            }
        })
        .unwrap_or(message);
    let (field, _) = msg.split_once(": ")?;
    (!field.contains(' ')).then(|| field.to_string())
}

/// The body must be of the kind the URL names.
pub fn check_type(info: &KindInfo, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version != "drover.dev/v1alpha1" {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version (drover.dev/v1alpha1)"
        )));
    }
    if kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    Ok(())
}

/// Does the spec (everything but metadata and status) differ? Then generation bumps.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

/// A DNS-1123 subdomain, as object names must be.
pub fn check_name(info: &KindInfo, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        info,
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            field: "metadata.name".into(),
            message: format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        }],
    ))
}

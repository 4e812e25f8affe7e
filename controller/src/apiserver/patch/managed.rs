//! `metadata.managedFields`: reading and writing the per-manager entries
//! (`{manager, operation, apiVersion, time, fieldsType: FieldsV1, fieldsV1}`).

use serde_json::{json, Map, Value};

use super::fieldset::{FieldSet, FieldSetError};

/// How a manager last wrote its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`).
    Apply,
    /// Any other write: create, PUT, merge or JSON patch.
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    /// Kept as read; Drover itself never writes subresource entries.
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

/// A `managedFields` entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedFieldsError {
    #[error("managedFields entry is not an object")]
    NotAnObject,
    #[error("managedFields entry has no manager")]
    MissingManager,
    #[error("managedFields entry has unknown operation {0:?}")]
    UnknownOperation(String),
    #[error("managedFields entry has unsupported fieldsType {0:?}")]
    UnsupportedFieldsType(String),
    #[error(transparent)]
    Fields(#[from] FieldSetError),
}

impl ManagedFieldsEntry {
    pub fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        now: &str,
        fields: FieldSet,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: manager.to_string(),
            operation,
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: None,
            fields,
        }
    }

    /// Whether this is `manager`'s entry for `operation` on the main resource.
    pub fn is(&self, manager: &str, operation: Operation) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_none()
    }

    pub fn from_json(value: &Value) -> Result<ManagedFieldsEntry, ManagedFieldsError> {
        let Value::Object(map) = value else {
            return Err(ManagedFieldsError::NotAnObject);
        };
        let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
        let manager = text("manager").ok_or(ManagedFieldsError::MissingManager)?;
        let operation = match map.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => {
                return Err(ManagedFieldsError::UnknownOperation(
                    other.unwrap_or_default().to_string(),
                ))
            }
        };
        match map.get("fieldsType").and_then(Value::as_str) {
            None | Some("FieldsV1") => {}
            Some(other) => {
                return Err(ManagedFieldsError::UnsupportedFieldsType(other.to_string()))
            }
        }
        let fields = match map.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v1) => FieldSet::from_fields_v1(v1)?,
        };
        Ok(ManagedFieldsEntry {
            manager,
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), json!(self.manager));
        map.insert("operation".into(), json!(self.operation.as_str()));
        map.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            map.insert("time".into(), json!(time));
        }
        map.insert("fieldsType".into(), json!("FieldsV1"));
        map.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            map.insert("subresource".into(), json!(subresource));
        }
        Value::Object(map)
    }
}

/// The raw `metadata.managedFields` list of `obj`, if it has one.
pub(crate) fn raw_managed_fields(obj: &Value) -> Option<&Vec<Value>> {
    obj.get("metadata")?.get("managedFields")?.as_array()
}

/// Parses a `managedFields` list; `None` when any entry is unreadable.
pub fn parse_managed_fields(list: &[Value]) -> Option<Vec<ManagedFieldsEntry>> {
    list.iter()
        .map(|e| ManagedFieldsEntry::from_json(e).ok())
        .collect()
}

/// The entries of `obj` (readable ones only: an unreadable entry is dropped rather
/// than failing every later write of the object).
pub fn read_managed_fields(obj: &Value) -> Vec<ManagedFieldsEntry> {
    raw_managed_fields(obj)
        .map(|list| {
            list.iter()
                .filter_map(|e| ManagedFieldsEntry::from_json(e).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Stores `entries` (those with an empty field set dropped) as
/// `metadata.managedFields`, removing the member when none remain.
pub fn write_managed_fields(obj: &mut Value, entries: &[ManagedFieldsEntry]) {
    let Value::Object(root) = obj else {
        return;
    };
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(metadata) = metadata else {
        return;
    };
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(ManagedFieldsEntry::to_json)
        .collect();
    if list.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::patch::fieldset::FieldPath;

    fn entry_json() -> Value {
        json!({
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "drover.dev/v1alpha1",
            "time": "2024-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:instances": {}}}
        })
    }

    #[test]
    fn entry_round_trips() {
        let entry = ManagedFieldsEntry::from_json(&entry_json()).expect("valid entry");
        assert_eq!(entry.manager, "kubectl");
        assert_eq!(entry.operation, Operation::Apply);
        assert!(entry
            .fields
            .contains(&FieldPath::fields(&["spec", "instances"])));
        assert_eq!(entry.to_json(), entry_json());
    }

    #[test]
    fn unreadable_entries() {
        let mut bad_op = entry_json();
        bad_op["operation"] = json!("Merge");
        let mut bad_type = entry_json();
        bad_type["fieldsType"] = json!("FieldsV2");
        let mut bad_fields = entry_json();
        bad_fields["fieldsV1"] = json!({"x": {}});
        for bad in [json!({}), json!(3), bad_op, bad_type, bad_fields] {
            assert!(ManagedFieldsEntry::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn read_skips_unreadable_and_write_drops_empty() {
        let mut obj = json!({"metadata": {"managedFields": [entry_json(), {"manager": 1}]}});
        let mut entries = read_managed_fields(&obj);
        assert_eq!(entries.len(), 1);
        assert!(parse_managed_fields(raw_managed_fields(&obj).expect("list")).is_none());
        entries.push(ManagedFieldsEntry::new(
            "other",
            Operation::Update,
            "v1",
            "t",
            FieldSet::new(),
        ));
        write_managed_fields(&mut obj, &entries);
        assert_eq!(obj["metadata"]["managedFields"], json!([entry_json()]));
        write_managed_fields(&mut obj, &[]);
        assert_eq!(obj, json!({"metadata": {}}));
    }
}

//! Renders one `apiextensions.k8s.io/v1` CustomResourceDefinition per kind from its
//! schemars schema, made structural (no refs, no unions, unknown fields only where the
//! type is free-form). Pure: the files in `crds/` are written by a test.

use serde_json::{json, Map, Value};

use crate::meta::{GROUP, VERSION};
use crate::registry::KINDS;
use crate::resource::KindInfo;

/// Keys of a JSON schema that `JSONSchemaProps` knows and a structural schema may carry.
const KEPT_KEYS: &[&str] = &[
    "description",
    "type",
    "format",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "properties",
    "additionalProperties",
    "nullable",
];

/// File name of the CRD of a kind under `crds/`: `<plural>.drover.dev.yaml`.
pub fn crd_file_name(info: &KindInfo) -> String {
    format!("{}.yaml", info.crd_name())
}

/// The structural `openAPIV3Schema` of a kind.
pub fn structural_schema(info: &KindInfo) -> Value {
    let mut schema = (info.schema)();
    make_structural(&mut schema);
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        // The API server owns metadata's schema; a CRD may only say it is an object.
        props.insert("metadata".into(), json!({"type": "object"}));
    }
    schema
}

fn make_structural(schema: &mut Value) {
    if let Value::Bool(_) = schema {
        *schema = json!({"x-kubernetes-preserve-unknown-fields": true});
        return;
    }
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(branches) = obj
        .get("anyOf")
        .or_else(|| obj.get("oneOf"))
        .and_then(Value::as_array)
    {
        let types: Vec<&str> = branches
            .iter()
            .filter_map(|b| b.get("type").and_then(Value::as_str))
            .collect();
        let int_or_string =
            types.len() == 2 && types.contains(&"integer") && types.contains(&"string");
        let description = obj.get("description").cloned();
        let mut replacement = Map::new();
        if let Some(d) = description {
            replacement.insert("description".into(), d);
        }
        if int_or_string {
            replacement.insert("x-kubernetes-int-or-string".into(), Value::Bool(true));
        } else {
            // A union of different shapes (Marathon's two constraint forms) cannot be
            // structural: keep the value as is; semantic validation checks it.
            replacement.insert(
                "x-kubernetes-preserve-unknown-fields".into(),
                Value::Bool(true),
            );
        }
        *obj = replacement;
        return;
    }
    obj.retain(|k, _| KEPT_KEYS.contains(&k.as_str()));
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, child) in props.iter_mut() {
            make_structural(child);
            if name == "conditions" {
                mark_condition_list(child);
            }
        }
    }
    if let Some(items) = obj.get_mut("items") {
        make_structural(items);
    }
    match obj.get_mut("additionalProperties") {
        Some(Value::Bool(true)) => {
            obj.remove("additionalProperties");
            obj.insert(
                "x-kubernetes-preserve-unknown-fields".into(),
                Value::Bool(true),
            );
        }
        Some(Value::Bool(false)) => {
            obj.remove("additionalProperties");
        }
        Some(ap) => make_structural(ap),
        None => {}
    }
    if !obj.contains_key("type") && !obj.contains_key("x-kubernetes-preserve-unknown-fields") {
        obj.insert(
            "x-kubernetes-preserve-unknown-fields".into(),
            Value::Bool(true),
        );
    }
}

/// Conditions are a map keyed by `type` (so server-side apply merges them per type).
fn mark_condition_list(schema: &mut Value) {
    let keyed_by_type = schema
        .pointer("/items/required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.contains(&Value::from("type")));
    if let (true, Some(obj)) = (keyed_by_type, schema.as_object_mut()) {
        obj.insert("x-kubernetes-list-type".into(), Value::from("map"));
        obj.insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
    }
}

/// The CustomResourceDefinition of a kind, as JSON.
pub fn crd(info: &KindInfo) -> Value {
    let mut names = json!({
        "kind": info.kind,
        "listKind": format!("{}List", info.kind),
        "plural": info.plural,
        "singular": info.singular,
    });
    if !info.short_names.is_empty() {
        names["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        names["categories"] = json!(info.categories);
    }
    let mut subresources = Map::new();
    if info.has_status {
        subresources.insert("status".into(), json!({}));
    }
    if let Some(scale) = info.scale {
        let mut s = json!({
            "specReplicasPath": scale.spec_replicas_path,
            "statusReplicasPath": scale.status_replicas_path,
        });
        if let Some(sel) = scale.label_selector_path {
            s["labelSelectorPath"] = json!(sel);
        }
        subresources.insert("scale".into(), s);
    }
    let columns: Vec<Value> = info
        .printer_columns
        .iter()
        .map(|c| {
            let mut col = json!({
                "name": c.name,
                "type": c.type_,
                "jsonPath": c.json_path,
                "description": c.description,
            });
            if c.priority != 0 {
                col["priority"] = json!(c.priority);
            }
            col
        })
        .collect();
    let mut version = json!({
        "name": VERSION,
        "served": true,
        "storage": true,
        "schema": {"openAPIV3Schema": structural_schema(info)},
        "additionalPrinterColumns": columns,
    });
    if !subresources.is_empty() {
        version["subresources"] = Value::Object(subresources);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name()},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [version],
        },
    })
}

/// Converts to YAML with keys in a fixed order (sorted; at the top `apiVersion`, `kind`,
/// `metadata`, `spec` first), whatever order serde_json's map keeps.
fn to_yaml_value(v: &Value, top: bool) -> serde_yaml::Value {
    match v {
        Value::Null => serde_yaml::Value::Null,
        Value::Bool(b) => serde_yaml::Value::Bool(*b),
        Value::Number(n) => serde_yaml::to_value(n).unwrap_or(serde_yaml::Value::Null),
        Value::String(s) => serde_yaml::Value::String(s.clone()),
        Value::Array(items) => {
            serde_yaml::Value::Sequence(items.iter().map(|i| to_yaml_value(i, false)).collect())
        }
        Value::Object(map) => {
            let rank = |k: &str| match k {
                "apiVersion" if top => 0,
                "kind" if top => 1,
                "metadata" if top => 2,
                "spec" if top => 3,
                _ => 4,
            };
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
            let mut out = serde_yaml::Mapping::new();
            for k in keys {
                out.insert(
                    serde_yaml::Value::String(k.clone()),
                    to_yaml_value(&map[k], false),
                );
            }
            serde_yaml::Value::Mapping(out)
        }
    }
}

/// The CRD of a kind as the YAML file in `crds/`.
pub fn crd_yaml(info: &KindInfo) -> String {
    let body = serde_yaml::to_string(&to_yaml_value(&crd(info), true)).unwrap_or_default();
    format!(
        "# Generated from drover-api; do not edit.\n\
         # Regenerate: DROVER_UPDATE_CRDS=1 cargo test -p drover-api --test crds\n{body}"
    )
}

/// Every CRD: (file name, YAML).
pub fn render_crds() -> Vec<(String, String)> {
    KINDS
        .iter()
        .map(|k| (crd_file_name(k), crd_yaml(k)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find_kind;

    fn walk(v: &Value, path: &str, f: &mut dyn FnMut(&str, &Map<String, Value>)) {
        if let Some(obj) = v.as_object() {
            f(path, obj);
            for (k, child) in obj {
                match k.as_str() {
                    "properties" => {
                        for (name, s) in child.as_object().into_iter().flatten() {
                            walk(s, &format!("{path}.{name}"), f);
                        }
                    }
                    "items" => walk(child, &format!("{path}[]"), f),
                    "additionalProperties" => walk(child, &format!("{path}{{}}"), f),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn schemas_are_structural() {
        for info in KINDS {
            let schema = structural_schema(info);
            walk(&schema, info.kind, &mut |path, obj| {
                for k in [
                    "$ref", "$schema", "anyOf", "oneOf", "allOf", "default", "title", "const",
                ] {
                    assert!(!obj.contains_key(k), "{path} has {k}");
                }
                assert!(
                    obj.contains_key("type")
                        || obj.contains_key("x-kubernetes-preserve-unknown-fields")
                        || obj.contains_key("x-kubernetes-int-or-string"),
                    "{path} has no type"
                );
            });
            assert_eq!(schema["properties"]["metadata"], json!({"type": "object"}));
        }
    }

    #[test]
    fn app_has_scale_and_columns() {
        let app = find_kind("App").map(crd).unwrap_or_default();
        let version = &app["spec"]["versions"][0];
        assert_eq!(
            version["subresources"]["scale"]["specReplicasPath"],
            ".spec.instances"
        );
        assert_eq!(
            version["subresources"]["scale"]["statusReplicasPath"],
            ".status.instances"
        );
        let names: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            names,
            vec!["Instances", "Running", "Healthy", "Age", "Version"]
        );
        let item = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["constraints"]["items"];
        assert_eq!(item["x-kubernetes-preserve-unknown-fields"], true);
        let driver = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["container"]["properties"]["driver"];
        assert_eq!(driver["enum"], json!(["process", "runc", "docker"]));
    }
}

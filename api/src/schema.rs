//! JSON schemas of the kinds (OpenAPI v3 flavour, references inlined) and the walk that
//! finds fields a manifest has but the schema does not know (`fieldValidation=Strict`).

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

use crate::registry::find_kind;

/// The OpenAPI v3 schema of `T`, every `$ref` inlined, no `$schema`.
pub fn openapi_schema<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::openapi3().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let mut schema = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("components");
        obj.remove("definitions");
        obj.remove("$defs");
    }
    normalize(&mut schema);
    schema
}

/// Simplifies what schemars emits for documented unit enums and `Option<enum>`:
/// a `oneOf` of single-value string enums becomes one `enum`, and
/// `anyOf: [X, {enum: [null]}]` becomes `X` with `nullable: true`.
fn normalize(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    for (key, child) in obj.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Some(props) = child.as_object_mut() {
                    props.values_mut().for_each(normalize);
                }
            }
            "items" | "additionalProperties" | "not" => normalize(child),
            "anyOf" | "oneOf" | "allOf" => {
                if let Some(list) = child.as_array_mut() {
                    list.iter_mut().for_each(normalize);
                }
            }
            _ => {}
        }
    }
    if let Some(values) = obj.get("oneOf").and_then(single_value_string_enums) {
        obj.remove("oneOf");
        obj.insert("type".into(), Value::from("string"));
        obj.insert("enum".into(), Value::Array(values));
    }
    let nullable_pair = obj.get("anyOf").and_then(Value::as_array).and_then(|list| {
        let is_null = |v: &Value| {
            v.get("enum") == Some(&Value::Array(vec![Value::Null]))
                || v.get("type") == Some(&Value::from("null"))
        };
        match list.as_slice() {
            [a, b] if is_null(b) => Some(a.clone()),
            [a, b] if is_null(a) => Some(b.clone()),
            _ => None,
        }
    });
    if let Some(Value::Object(inner)) = nullable_pair {
        obj.remove("anyOf");
        for (k, v) in inner {
            obj.entry(k).or_insert(v);
        }
        obj.insert("nullable".into(), Value::Bool(true));
    }
}

/// The values when every branch is `{type: string, enum: [one value], description?}`.
fn single_value_string_enums(one_of: &Value) -> Option<Vec<Value>> {
    let branches = one_of.as_array()?;
    let mut values = Vec::new();
    for b in branches {
        let b = b.as_object()?;
        if b.keys()
            .any(|k| !matches!(k.as_str(), "type" | "enum" | "description" | "const"))
        {
            return None;
        }
        if b.get("type").is_some_and(|t| t != "string") {
            return None;
        }
        match (b.get("enum").and_then(Value::as_array), b.get("const")) {
            (Some(e), _) if e.len() == 1 && e[0].is_string() => values.push(e[0].clone()),
            (None, Some(c)) if c.is_string() => values.push(c.clone()),
            _ => return None,
        }
    }
    Some(values)
}

/// Paths (`spec.container.imagee`, `spec.ports[0].nmae`) of the fields in `manifest` that
/// the schema of `kind` does not define. Unknown kinds yield nothing (the caller reports
/// the kind itself).
pub fn unknown_fields(kind: &str, manifest: &Value) -> Vec<String> {
    match find_kind(kind) {
        Some(info) => unknown_fields_in(&(info.schema)(), manifest),
        None => Vec::new(),
    }
}

/// Like [`unknown_fields`], against any schema.
pub fn unknown_fields_in(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, "", &mut out);
    out
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_matches(schema: &Value, value: &Value) -> bool {
    let Some(t) = schema.get("type") else {
        return true;
    };
    let name = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let one = |t: &Value| t == name || (t == "number" && name == "integer");
    match t {
        Value::Array(ts) => ts.iter().any(one),
        t => one(t) || (value.is_null() && schema.get("nullable") == Some(&Value::Bool(true))),
    }
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key) {
            let mut best: Option<Vec<String>> = None;
            for branch in branches.iter().filter(|b| type_matches(b, value)) {
                let mut found = Vec::new();
                walk(branch, value, path, &mut found);
                if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                    best = Some(found);
                }
            }
            out.extend(best.unwrap_or_default());
        }
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        for s in all {
            walk(s, value, path, out);
        }
    }
    match value {
        Value::Object(map) => {
            let props = obj.get("properties").and_then(Value::as_object);
            let additional = obj.get("additionalProperties");
            for (k, v) in map {
                let child = child_path(path, k);
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    walk(s, v, &child, out);
                    continue;
                }
                match additional {
                    Some(Value::Bool(false)) => out.push(child),
                    Some(s @ Value::Object(_)) => walk(s, v, &format!("{path}[{k}]"), out),
                    Some(_) => {}
                    // An object schema without properties is free-form.
                    None if props.is_some() => out.push(child),
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = obj.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item_schema, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_at_every_depth() {
        let manifest = json!({
            "apiVersion": "drover.dev/v1alpha1",
            "kind": "App",
            "metadata": {"name": "web", "labels": {"a": "b"}, "colour": "red"},
            "spec": {
                "instances": 2,
                "container": {"cmd": "true", "imagee": "x"},
                "ports": [{"name": "http", "nmae": "x"}],
                "constraints": [["hostname", "UNIQUE"], {"field": "rack", "operator": "IS", "value": "a", "extra": 1}],
                "healthChecks": [{"http": {"portName": "http", "verb": "GET"}}],
                "labels": {"free": "form"}
            },
            "extra": true
        });
        let mut found = unknown_fields("App", &manifest);
        found.sort();
        assert_eq!(
            found,
            vec![
                "extra",
                "metadata.colour",
                "spec.constraints[1].extra",
                "spec.container.imagee",
                "spec.healthChecks[0].http.verb",
                "spec.ports[0].nmae",
            ]
        );
    }

    #[test]
    fn free_form_values_are_not_reported() {
        let manifest = json!({
            "kind": "Release",
            "spec": {"chart": {"name": "web", "version": "1.0.0"}, "values": {"any": {"thing": [1, 2]}}}
        });
        assert!(unknown_fields("Release", &manifest).is_empty());
    }
}

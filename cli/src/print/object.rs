//! Objects as `-o yaml`, `-o json` and `-o name` print them. managedFields are left out
//! unless asked for, as kubectl does since 1.21.

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::client::resources::object_ref;

/// `-o` choices for objects (tables are printed elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Name,
}

/// Removes `metadata.managedFields`.
pub fn without_managed_fields(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    object
}

/// A kubectl `List` of objects.
pub fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
}

pub fn to_yaml(value: &Value) -> anyhow::Result<String> {
    serde_yaml::to_string(value).context("rendering YAML")
}

pub fn to_json(value: &Value) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("rendering JSON")?;
    text.push('\n');
    Ok(text)
}

/// `app.drover.dev/web`, from the object's own kind and name.
pub fn name_of(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match drover_api::registry::kind_by_name(kind) {
        Some(info) => object_ref(info, name),
        None => format!("{}/{name}", kind.to_ascii_lowercase()),
    }
}

/// One object (or, for several, a List) in `format`.
pub fn render(objects: Vec<Value>, format: Format, single: bool) -> anyhow::Result<String> {
    let objects: Vec<Value> = objects.into_iter().map(without_managed_fields).collect();
    match format {
        Format::Name => Ok(objects.iter().map(|o| name_of(o) + "\n").collect()),
        Format::Yaml | Format::Json => {
            let value = match (single, objects.len()) {
                (true, 1) => objects.into_iter().next().unwrap_or_default(),
                _ => list_of(objects),
            };
            if format == Format::Yaml {
                to_yaml(&value)
            } else {
                to_json(&value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lists() {
        let web = json!({"apiVersion": "drover.dev/v1alpha1", "kind": "App",
            "metadata": {"name": "web", "managedFields": [{"manager": "drover"}]}});
        assert_eq!(name_of(&web), "app.drover.dev/web");
        let yaml = render(vec![web.clone()], Format::Yaml, true).expect("yaml");
        assert!(
            yaml.starts_with("apiVersion: drover.dev/v1alpha1\n"),
            "{yaml}"
        );
        assert!(!yaml.contains("managedFields"), "{yaml}");
        let list = render(vec![web.clone(), web], Format::Json, false).expect("json");
        assert!(list.contains("\"kind\": \"List\""), "{list}");
    }
}

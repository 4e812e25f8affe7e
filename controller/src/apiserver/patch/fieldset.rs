//! Field sets: which leaves of an object a manager owns, as paths, with the
//! Kubernetes `FieldsV1` trie encoding (`{"f:spec":{"f:instances":{}}}`).
//!
//! Map-like lists (every item an object with a unique string `name`) are addressed
//! per item (`k:{"name":"http"}`); every other list is one atomic leaf.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::value::canonical_json;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// An object member: `f:name`.
    Field(String),
    /// A list item picked by key fields (field → canonical JSON value): `k:{"name":"x"}`.
    Key(BTreeMap<String, String>),
    /// A set-like list item picked by its value (canonical JSON): `v:"x"`. Only read.
    Value(String),
    /// A list item picked by position: `i:0`. Only read.
    Index(usize),
}

impl PathElement {
    /// The key of a map-like list item: `{"name": <name>}`.
    pub fn name_key(name: &str) -> PathElement {
        let mut key = BTreeMap::new();
        key.insert(
            "name".to_string(),
            canonical_json(&Value::String(name.to_string())),
        );
        PathElement::Key(key)
    }

    fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                    .collect();
                format!("k:{{{}}}", inner.join(","))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    fn from_fields_v1_key(key: &str) -> Result<PathElement, FieldSetError> {
        let invalid = || FieldSetError::InvalidKey(key.to_string());
        if let Some(name) = key.strip_prefix("f:") {
            return Ok(PathElement::Field(name.to_string()));
        }
        if let Some(raw) = key.strip_prefix("k:") {
            let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(raw) else {
                return Err(invalid());
            };
            if fields.is_empty() {
                return Err(invalid());
            }
            return Ok(PathElement::Key(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), canonical_json(v)))
                    .collect(),
            ));
        }
        if let Some(raw) = key.strip_prefix("v:") {
            let value: Value = serde_json::from_str(raw).map_err(|_| invalid())?;
            return Ok(PathElement::Value(canonical_json(&value)));
        }
        if let Some(raw) = key.strip_prefix("i:") {
            return raw.parse().map(PathElement::Index).map_err(|_| invalid());
        }
        Err(invalid())
    }

    /// Whether list item `item` is the one this element picks.
    fn matches_item(&self, item: &Value) -> bool {
        match self {
            PathElement::Key(fields) => fields
                .iter()
                .all(|(name, value)| item.get(name).is_some_and(|v| canonical_json(v) == *value)),
            PathElement::Value(value) => canonical_json(item) == *value,
            PathElement::Field(_) | PathElement::Index(_) => false,
        }
    }
}

impl fmt::Display for PathElement {
    /// Kubernetes' notation: `.name`, `[name="http"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", inner.join(","))
            }
            PathElement::Value(value) => write!(f, "[={value}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path from the object root to a field or list item; displays as `.spec.instances`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(Vec<PathElement>);

impl FieldPath {
    pub fn new(elements: Vec<PathElement>) -> FieldPath {
        FieldPath(elements)
    }

    /// A path of object members only: `FieldPath::fields(&["spec", "instances"])`.
    pub fn fields(names: &[&str]) -> FieldPath {
        FieldPath(
            names
                .iter()
                .map(|n| PathElement::Field((*n).to_string()))
                .collect(),
        )
    }

    pub fn elements(&self) -> &[PathElement] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn child(&self, element: PathElement) -> FieldPath {
        let mut elements = self.0.clone();
        elements.push(element);
        FieldPath(elements)
    }

    /// Whether `self` equals `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Whether the path ends at a map-like list item (rather than at a field).
    pub fn is_list_item(&self) -> bool {
        matches!(
            self.0.last(),
            Some(PathElement::Key(_) | PathElement::Value(_) | PathElement::Index(_))
        )
    }

    /// The proper prefixes, longest first, root excluded.
    pub fn ancestors(&self) -> impl Iterator<Item = FieldPath> + '_ {
        (1..self.0.len())
            .rev()
            .map(|n| FieldPath(self.0[..n].to_vec()))
    }

    /// The value at this path in `obj`, if present.
    pub fn get<'a>(&self, obj: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(obj, step)
    }

    /// Removes the value at this path from `obj`; false when it was absent.
    pub fn remove_from(&self, obj: &mut Value) -> bool {
        let Some((last, parent)) = self.0.split_last() else {
            return false;
        };
        let Some(container) = parent.iter().try_fold(obj, step_mut) else {
            return false;
        };
        match (last, container) {
            (PathElement::Field(name), Value::Object(map)) => map.remove(name).is_some(),
            (PathElement::Index(i), Value::Array(items)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            (element, Value::Array(items)) => {
                let before = items.len();
                items.retain(|item| !element.matches_item(item));
                items.len() != before
            }
            _ => false,
        }
    }
}

fn step<'a>(value: &'a Value, element: &PathElement) -> Option<&'a Value> {
    match (element, value) {
        (PathElement::Field(name), Value::Object(map)) => map.get(name),
        (PathElement::Index(i), Value::Array(items)) => items.get(*i),
        (element, Value::Array(items)) => items.iter().find(|item| element.matches_item(item)),
        _ => None,
    }
}

fn step_mut<'a>(value: &'a mut Value, element: &PathElement) -> Option<&'a mut Value> {
    match (element, value) {
        (PathElement::Field(name), Value::Object(map)) => map.get_mut(name),
        (PathElement::Index(i), Value::Array(items)) => items.get_mut(*i),
        (element, Value::Array(items)) => items.iter_mut().find(|item| element.matches_item(item)),
        _ => None,
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|e| write!(f, "{e}"))
    }
}

/// A `FieldsV1` document that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSetError {
    #[error("fieldsV1 must be a JSON object at {0:?}")]
    NotAnObject(String),
    #[error("invalid fieldsV1 key {0:?}")]
    InvalidKey(String),
}

/// A set of owned paths. A path may own a whole subtree (an atomic list, a scalar)
/// or only the item itself (a map-like list item, stored alongside its fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<FieldPath>);

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn insert(&mut self, path: FieldPath) -> bool {
        self.0.insert(path)
    }

    pub fn remove(&mut self, path: &FieldPath) -> bool {
        self.0.remove(path)
    }

    pub fn contains(&self, path: &FieldPath) -> bool {
        self.0.contains(path)
    }

    /// Whether the set holds `prefix` itself or any path below it.
    pub fn contains_within(&self, prefix: &FieldPath) -> bool {
        self.0
            .range(prefix.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(prefix))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &FieldPath> {
        self.0.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    /// The Kubernetes `fieldsV1` trie: `{}` marks an owned leaf, `".": {}` an owned
    /// node that also has owned children.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Trie::default();
        for path in &self.0 {
            let node = path.0.iter().fold(&mut root, |node, e| {
                node.children.entry(e.clone()).or_default()
            });
            node.member = true;
        }
        root.to_value()
    }

    /// Reads a `fieldsV1` trie (the inverse of [`FieldSet::to_fields_v1`]); `f:`, `k:`,
    /// `v:` and `i:` keys are understood.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldSetError> {
        let mut set = FieldSet::new();
        read_trie(value, &FieldPath::default(), &mut set)?;
        Ok(set)
    }
}

impl FromIterator<FieldPath> for FieldSet {
    fn from_iter<I: IntoIterator<Item = FieldPath>>(iter: I) -> FieldSet {
        FieldSet(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a FieldSet {
    type Item = &'a FieldPath;
    type IntoIter = std::collections::btree_set::Iter<'a, FieldPath>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[derive(Default)]
struct Trie {
    member: bool,
    children: BTreeMap<PathElement, Trie>,
}

impl Trie {
    fn to_value(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            map.insert(element.to_fields_v1_key(), child.to_value());
        }
        Value::Object(map)
    }
}

fn read_trie(value: &Value, path: &FieldPath, set: &mut FieldSet) -> Result<(), FieldSetError> {
    let Value::Object(map) = value else {
        return Err(FieldSetError::NotAnObject(path.to_string()));
    };
    if map.is_empty() && !path.is_root() {
        set.insert(path.clone());
    }
    for (key, child) in map {
        if key == "." {
            if !path.is_root() {
                set.insert(path.clone());
            }
            continue;
        }
        let element = PathElement::from_fields_v1_key(key)?;
        read_trie(child, &path.child(element), set)?;
    }
    Ok(())
}

/// Top-level fields that are identity or server-owned, never managed.
const UNTRACKED_ROOT: &[&str] = &["apiVersion", "kind", "status"];

/// `metadata` fields that are identity or server-owned, never managed (kube's strip
/// set plus the deletion markers).
const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Whether a top-level field (`metadata` = None) or metadata field is never managed.
pub(crate) fn is_untracked(root_field: &str, metadata_field: Option<&str>) -> bool {
    match metadata_field {
        None => UNTRACKED_ROOT.contains(&root_field),
        Some(field) => root_field == "metadata" && UNTRACKED_METADATA.contains(&field),
    }
}

/// A map-like list: non-empty, every item an object with a string `name`, names unique.
pub(crate) fn is_named_list(items: &[Value]) -> bool {
    let mut names = BTreeSet::new();
    !items.is_empty()
        && items.iter().all(|item| {
            item.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| names.insert(name))
        })
}

/// The leaf paths of an object (or applied configuration), excluding identity and
/// server-owned fields (apiVersion, kind, status, metadata name/namespace/uid/...).
/// `null` members count as absent; an empty object is a leaf.
pub fn field_set(obj: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    let Value::Object(root) = obj else {
        return set;
    };
    for (key, value) in root {
        if is_untracked(key, None) || value.is_null() {
            continue;
        }
        let path = FieldPath::fields(&[key]);
        match (key.as_str(), value) {
            ("metadata", Value::Object(meta)) => {
                for (field, value) in meta {
                    if !is_untracked(key, Some(field)) && !value.is_null() {
                        collect(
                            value,
                            path.child(PathElement::Field(field.clone())),
                            &mut set,
                        );
                    }
                }
            }
            _ => collect(value, path, &mut set),
        }
    }
    set
}

fn collect(value: &Value, path: FieldPath, set: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => collect_members(map, &path, set),
        Value::Array(items) if is_named_list(items) => {
            for item in items {
                let (Some(name), Value::Object(map)) =
                    (item.get("name").and_then(Value::as_str), item)
                else {
                    continue;
                };
                let item_path = path.child(PathElement::name_key(name));
                collect_members(map, &item_path, set);
                set.insert(item_path);
            }
        }
        _ => {
            set.insert(path);
        }
    }
}

fn collect_members(map: &Map<String, Value>, path: &FieldPath, set: &mut FieldSet) {
    for (key, value) in map {
        if !value.is_null() {
            collect(value, path.child(PathElement::Field(key.clone())), set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(set: &FieldSet) -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    }

    fn app() -> Value {
        json!({
            "apiVersion": "drover.dev/v1alpha1",
            "kind": "App",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "resourceVersion": "7",
                "uid": "u-1",
                "managedFields": [{"manager": "x"}],
                "labels": {"app": "web"}
            },
            "spec": {
                "instances": 3,
                "container": {"command": ["sh", "-c", "serve"], "image": "web:1"},
                "ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}],
                "unset": null,
                "resources": {}
            },
            "status": {"ready": 3}
        })
    }

    #[test]
    fn field_set_lists_leaves_and_skips_identity_fields() {
        assert_eq!(
            paths(&field_set(&app())),
            vec![
                ".metadata.labels.app",
                ".spec.container.command",
                ".spec.container.image",
                ".spec.instances",
                ".spec.ports[name=\"admin\"]",
                ".spec.ports[name=\"admin\"].name",
                ".spec.ports[name=\"admin\"].port",
                ".spec.ports[name=\"http\"]",
                ".spec.ports[name=\"http\"].name",
                ".spec.ports[name=\"http\"].port",
                ".spec.resources",
            ]
        );
    }

    #[test]
    fn lists_without_unique_names_are_atomic() {
        let obj = json!({"spec": {
            "a": [{"name": "x"}, {"name": "x"}],
            "b": [{"name": "x"}, {"port": 1}],
            "c": [],
            "d": [{"name": 5}],
        }});
        assert_eq!(
            paths(&field_set(&obj)),
            vec![".spec.a", ".spec.b", ".spec.c", ".spec.d"]
        );
    }

    #[test]
    fn non_objects_have_no_fields() {
        assert!(field_set(&json!([1])).is_empty());
        assert!(field_set(&json!("x")).is_empty());
        assert!(field_set(&json!({"metadata": {"name": "n"}, "kind": "App"})).is_empty());
    }

    #[test]
    fn fields_v1_encoding_matches_kubernetes() {
        let v1 = field_set(&app()).to_fields_v1();
        assert_eq!(
            v1,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:container": {"f:command": {}, "f:image": {}},
                    "f:instances": {},
                    "f:ports": {
                        "k:{\"name\":\"admin\"}": {".": {}, "f:name": {}, "f:port": {}},
                        "k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:port": {}}
                    },
                    "f:resources": {}
                }
            })
        );
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = field_set(&app());
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()), Ok(set));
        assert_eq!(FieldSet::from_fields_v1(&json!({})), Ok(FieldSet::new()));
        assert_eq!(FieldSet::new().to_fields_v1(), json!({}));
    }

    #[test]
    fn reads_kubernetes_written_fields_v1() {
        // As written by kube-apiserver for a Deployment.
        let v1 = json!({
            "f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:ports": {
                    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
                }}
            }}}},
            "f:status": {"f:conditions": {"k:{\"type\":\"Available\"}": {".": {}}}},
            "f:finalizers": {".": {}, "v:\"example.com/x\"": {}},
            "f:args": {"i:0": {}}
        });
        let set = FieldSet::from_fields_v1(&v1).expect("valid fieldsV1");
        let shown = paths(&set);
        assert!(shown.contains(&".metadata.annotations".to_string()));
        assert!(shown.contains(
            &".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].containerPort".to_string()
        ));
        assert!(shown.contains(&".finalizers[=\"example.com/x\"]".to_string()));
        assert!(shown.contains(&".args[0]".to_string()));
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()), Ok(set));
    }

    #[test]
    fn invalid_fields_v1_is_an_error() {
        for bad in [
            json!([]),
            json!({"spec": {}}),
            json!({"f:spec": 3}),
            json!({"k:nope": {}}),
            json!({"k:[1]": {}}),
            json!({"k:{}": {}}),
            json!({"i:x": {}}),
            json!({"v:{": {}}),
        ] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_operations() {
        let a: FieldSet = [
            FieldPath::fields(&["spec", "a"]),
            FieldPath::fields(&["spec", "b"]),
        ]
        .into_iter()
        .collect();
        let b: FieldSet = [
            FieldPath::fields(&["spec", "b"]),
            FieldPath::fields(&["spec", "c"]),
        ]
        .into_iter()
        .collect();
        assert_eq!(paths(&a.union(&b)), vec![".spec.a", ".spec.b", ".spec.c"]);
        assert_eq!(paths(&a.intersection(&b)), vec![".spec.b"]);
        assert_eq!(paths(&a.difference(&b)), vec![".spec.a"]);
        assert!(a.contains_within(&FieldPath::fields(&["spec"])));
        assert!(a.contains_within(&FieldPath::fields(&["spec", "a"])));
        assert!(!a.contains_within(&FieldPath::fields(&["spec", "c"])));
        assert!(!a.contains_within(&FieldPath::fields(&["spe"])));
    }

    #[test]
    fn get_and_remove_by_path() {
        let mut obj = app();
        let http = FieldPath::fields(&["spec", "ports"]).child(PathElement::name_key("http"));
        assert_eq!(
            http.child(PathElement::Field("port".into())).get(&obj),
            Some(&json!(80))
        );
        assert!(http.remove_from(&mut obj));
        assert!(!http.remove_from(&mut obj));
        assert_eq!(
            obj["spec"]["ports"],
            json!([{"name": "admin", "port": 9000}])
        );
        assert!(FieldPath::fields(&["spec", "instances"]).remove_from(&mut obj));
        assert!(!FieldPath::fields(&["spec", "instances", "x"]).remove_from(&mut obj));
        assert!(!FieldPath::default().remove_from(&mut obj));
        let first =
            FieldPath::fields(&["spec", "container", "command"]).child(PathElement::Index(0));
        assert_eq!(first.get(&obj), Some(&json!("sh")));
        assert!(first.remove_from(&mut obj));
        assert_eq!(obj["spec"]["container"]["command"], json!(["-c", "serve"]));
    }

    #[test]
    fn ancestors_longest_first() {
        let p = FieldPath::fields(&["a", "b", "c"]);
        let shown: Vec<String> = p.ancestors().map(|a| a.to_string()).collect();
        assert_eq!(shown, vec![".a.b", ".a"]);
    }
}

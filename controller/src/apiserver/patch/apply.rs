//! Server-side apply: a three-way merge of an applied configuration into the live
//! object with per-manager field ownership and conflicts, plus the ownership
//! bookkeeping for ordinary writes (create, PUT, merge / JSON patch).

use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::{field_set, is_named_list, is_untracked, FieldPath, FieldSet, PathElement};
use super::managed::{
    parse_managed_fields, raw_managed_fields, read_managed_fields, write_managed_fields,
    ManagedFieldsEntry, Operation,
};
use super::value::opt_equal;

/// The manager kube credits with every field of an object that had no
/// managedFields when it was first applied.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Another manager owns a field the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// Kubernetes path notation: `.spec.instances`, `.spec.ports[name="http"].port`.
    pub field: String,
}

impl Conflict {
    /// kube's `printManager`: appliers by name, updaters with their API version.
    fn who(&self) -> String {
        match self.operation {
            Operation::Apply => format!("{:?}", self.manager),
            Operation::Update => format!("{:?} using {}", self.manager, self.api_version),
        }
    }
}

impl fmt::Display for Conflict {
    /// The `FieldManagerConflict` cause message: `conflict with "m" using v1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict with {}", self.who())
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// 409 Conflict with one `FieldManagerConflict` cause per entry.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// 400/422: the applied configuration itself is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// The message kube-apiserver builds for apply conflicts.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.who(),
            only.field
        );
    }
    let mut managers: Vec<String> = conflicts.iter().map(Conflict::who).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for who in managers {
        lines.push(format!("conflicts with {who}:"));
        lines.extend(
            conflicts
                .iter()
                .filter(|c| c.who() == who)
                .map(|c| format!("- {}", c.field)),
        );
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Server-side apply of `applied` (a full object) by `manager`; returns the new full
/// object with `metadata.managedFields` updated. `now` is the RFC 3339 entry time.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    validate(applied, manager)?;
    let applied_set = field_set(applied);
    let Some(live) = live else {
        let mut created = applied.clone();
        strip_nulls(&mut created);
        let entry = ManagedFieldsEntry::new(
            manager,
            Operation::Apply,
            api_version(applied),
            now,
            applied_set,
        );
        write_managed_fields(&mut created, &[entry]);
        return Ok(created);
    };

    let mut entries = match raw_managed_fields(live) {
        Some(list) if !list.is_empty() => read_managed_fields(live),
        _ => before_first_apply(live, now),
    };
    let own = entries.iter().position(|e| e.is(manager, Operation::Apply));
    let previous = own.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != own)
        .fold(FieldSet::new(), |acc, (_, e)| acc.union(&e.fields));

    let mut result = live.clone();
    prune(&mut result, &previous.difference(&applied_set), &others);
    merge_root(&mut result, applied);

    let conflicts = find_conflicts(live, &result, &entries, own, &applied_set);
    if !conflicts.is_empty() {
        if !force {
            let mut unique: Vec<Conflict> = Vec::new();
            for (_, _, conflict) in conflicts {
                if !unique.contains(&conflict) {
                    unique.push(conflict);
                }
            }
            return Err(ApplyError::Conflicts(unique));
        }
        for (index, path, _) in &conflicts {
            entries[*index].fields.remove(path);
        }
    }

    let version = api_version(applied).to_string();
    match own {
        Some(i) => {
            let entry = &mut entries[i];
            entry.fields = applied_set;
            entry.time = Some(now.to_string());
            entry.api_version = version;
        }
        None => entries.push(ManagedFieldsEntry::new(
            manager,
            Operation::Apply,
            &version,
            now,
            applied_set,
        )),
    }
    write_managed_fields(&mut result, &entries);
    Ok(result)
}

/// Records a non-apply write (create when `old` is `None`, PUT, merge or JSON patch):
/// the leaves whose values changed go to `manager`'s `Update` entry and leave every
/// other manager; leaves that disappeared leave every manager.
///
/// Client-sent managedFields that differ from the old ones replace them (that is how
/// kubectl migrates client-side-apply ownership); `[{}]` clears them.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, now: &str) {
    let old_entries = || old.map(read_managed_fields).unwrap_or_default();
    let old_raw = old.and_then(raw_managed_fields);
    let mut entries = match raw_managed_fields(new) {
        Some(list) if list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty) => {
            Vec::new()
        }
        Some(list) if !list.is_empty() && Some(list) != old_raw => {
            parse_managed_fields(list).unwrap_or_else(old_entries)
        }
        _ => old_entries(),
    };

    let new_set = field_set(new);
    let (changed, removed) = match old {
        None => (new_set, FieldSet::new()),
        Some(old) => {
            let changed: FieldSet = new_set
                .iter()
                .filter(|path| {
                    if path.is_list_item() {
                        // An item is "changed" only by appearing; its fields speak for it.
                        path.get(old).is_none()
                    } else {
                        !opt_equal(path.get(old), path.get(new))
                    }
                })
                .cloned()
                .collect();
            let removed = field_set(old).difference(&new_set);
            (changed, removed)
        }
    };

    let released = changed.union(&removed);
    for entry in &mut entries {
        entry.fields = entry.fields.difference(&released);
    }
    if !changed.is_empty() {
        let version = api_version(new).to_string();
        match entries
            .iter_mut()
            .find(|e| e.is(manager, Operation::Update))
        {
            Some(entry) => {
                entry.fields = entry.fields.union(&changed);
                entry.time = Some(now.to_string());
                entry.api_version = version;
            }
            None => entries.push(ManagedFieldsEntry::new(
                manager,
                Operation::Update,
                &version,
                now,
                changed,
            )),
        }
    }
    write_managed_fields(new, &entries);
}

fn validate(applied: &Value, manager: &str) -> Result<(), ApplyError> {
    if manager.is_empty() {
        return Err(ApplyError::Invalid(
            "fieldManager is required for apply requests".into(),
        ));
    }
    let Value::Object(root) = applied else {
        return Err(ApplyError::Invalid(
            "the apply configuration must be an object".into(),
        ));
    };
    match root.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(metadata)) => match metadata.get("managedFields") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Array(list)) if list.is_empty() => Ok(()),
            Some(_) => Err(ApplyError::Invalid(
                "metadata.managedFields must be nil".into(),
            )),
        },
        Some(_) => Err(ApplyError::Invalid("metadata must be an object".into())),
    }
}

fn api_version(obj: &Value) -> &str {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// kube credits an object's pre-existing fields to `before-first-apply` so that the
/// first apply can conflict with them.
fn before_first_apply(live: &Value, now: &str) -> Vec<ManagedFieldsEntry> {
    vec![ManagedFieldsEntry::new(
        BEFORE_FIRST_APPLY,
        Operation::Update,
        api_version(live),
        now,
        field_set(live),
    )]
}

/// Removes the paths the applier stopped setting, unless another manager owns the
/// path or anything below it; containers left empty by a removal go too.
fn prune(obj: &mut Value, stopped: &FieldSet, others: &FieldSet) {
    // Set order visits a list item before its fields: a removable item goes whole.
    for path in stopped.iter() {
        if others.contains_within(path) || is_key_field(path) || !path.remove_from(obj) {
            continue;
        }
        for ancestor in path.ancestors() {
            // Top-level fields (metadata, spec) stay even when empty.
            if ancestor.elements().len() < 2 || others.contains(&ancestor) {
                break;
            }
            let empty = match ancestor.get(obj) {
                Some(Value::Object(map)) => map.is_empty(),
                Some(Value::Array(items)) => items.is_empty(),
                _ => false,
            };
            if !empty || !ancestor.remove_from(obj) {
                break;
            }
        }
    }
}

/// Whether `path` is a key field of a list item (`name` under `k:{"name":…}`): an
/// item that stays keeps its key, or it could no longer be addressed.
fn is_key_field(path: &FieldPath) -> bool {
    match path.elements() {
        [.., PathElement::Key(keys), PathElement::Field(field)] => keys.contains_key(field),
        _ => false,
    }
}

/// Merges the applied configuration into `target`, skipping identity and
/// server-owned fields (kept from the live object).
fn merge_root(target: &mut Value, applied: &Value) {
    let (Value::Object(target), Value::Object(applied)) = (target, applied) else {
        return;
    };
    for (key, value) in applied {
        if is_untracked(key, None) || value.is_null() {
            continue;
        }
        let slot = target.entry(key.clone()).or_insert(Value::Null);
        match (key.as_str(), value) {
            ("metadata", Value::Object(metadata)) => {
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(slot) = slot else {
                    continue;
                };
                for (field, value) in metadata {
                    if !is_untracked(key, Some(field)) && !value.is_null() {
                        merge_into(slot.entry(field.clone()).or_insert(Value::Null), value);
                    }
                }
            }
            _ => merge_into(slot, value),
        }
    }
}

/// Objects merge recursively, map-like lists item by item on `name`, everything else
/// replaces. `null` in the applied configuration means "not set".
fn merge_into(target: &mut Value, applied: &Value) {
    match applied {
        Value::Object(members) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target) = target {
                for (key, value) in members {
                    if !value.is_null() {
                        merge_into(target.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        Value::Array(items) if is_named_list(items) => match target {
            Value::Array(live) if live.is_empty() || is_named_list(live) => {
                merge_named_list(live, items);
            }
            _ => {
                let mut fresh = Vec::new();
                merge_named_list(&mut fresh, items);
                *target = Value::Array(fresh);
            }
        },
        _ => *target = applied.clone(),
    }
}

/// Applied items in applied order (each merged over its live namesake), then the
/// live items the configuration does not mention.
fn merge_named_list(live: &mut Vec<Value>, applied: &[Value]) {
    let mut remaining: Vec<Option<Value>> = live.drain(..).map(Some).collect();
    for item in applied {
        let name = item.get("name").and_then(Value::as_str);
        let existing = remaining
            .iter_mut()
            .find(|slot| {
                slot.as_ref()
                    .and_then(|v| v.get("name"))
                    .and_then(Value::as_str)
                    == name
            })
            .and_then(Option::take);
        let mut merged = existing.unwrap_or_else(|| Value::Object(Map::new()));
        merge_into(&mut merged, item);
        live.push(merged);
    }
    live.extend(remaining.into_iter().flatten());
}

/// Drops `null` object members, recursively (atomic lists are kept verbatim).
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) if is_named_list(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Fields of other managers that the apply changes: the applied leaves themselves,
/// their enclosing fields and anything inside an applied atomic leaf. List items
/// only gather fields, so owning one is never a conflict. Each conflict comes with
/// the index of the entry and the path it owns.
fn find_conflicts(
    live: &Value,
    result: &Value,
    entries: &[ManagedFieldsEntry],
    own: Option<usize>,
    applied: &FieldSet,
) -> Vec<(usize, FieldPath, Conflict)> {
    let touched = |path: &FieldPath| {
        !path.is_list_item()
            && (applied.contains_within(path)
                || path
                    .ancestors()
                    .any(|a| !a.is_list_item() && applied.contains(&a)))
    };
    let mut conflicts = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if Some(index) == own {
            continue;
        }
        for path in &entry.fields {
            if !touched(path) || opt_equal(path.get(live), path.get(result)) {
                continue;
            }
            let conflict = Conflict {
                manager: entry.manager.clone(),
                operation: entry.operation,
                api_version: entry.api_version.clone(),
                field: path.to_string(),
            };
            conflicts.push((index, path.clone(), conflict));
        }
    }
    conflicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T1: &str = "2024-05-01T10:00:00Z";
    const T2: &str = "2024-05-01T11:00:00Z";
    const V: &str = "drover.dev/v1alpha1";
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    fn app(spec: Value) -> Value {
        json!({
            "apiVersion": V,
            "kind": "App",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec
        })
    }

    /// An apply configuration that sets nothing.
    fn bare() -> Value {
        json!({"apiVersion": V, "kind": "App", "metadata": {"name": "web", "namespace": "default"}})
    }

    #[test]
    fn an_empty_object_in_the_config_is_owned() {
        let created = ok(None, &app(json!({})), "kubectl", false);
        assert_eq!(owned(&created, "kubectl", Operation::Apply), vec![".spec"]);
    }

    #[test]
    fn item_keeps_its_key_while_others_own_fields_in_it() {
        let live = stored(ok(
            None,
            &app(json!({"ports": [{"name": "http", "port": 80}]})),
            "a",
            false,
        ));
        // "b" owns only a field inside the item, not the item or its name.
        let mut new = live.clone();
        new["spec"]["ports"][0]["protocol"] = json!("TCP");
        record_update(Some(&live), &mut new, "b", T2);
        assert_eq!(
            owned(&new, "b", Operation::Update),
            vec![".spec.ports[name=\"http\"].protocol"]
        );
        let next = ok(Some(&new), &bare(), "a", false);
        assert_eq!(
            next["spec"]["ports"],
            json!([{"name": "http", "protocol": "TCP"}])
        );
    }

    /// What the store adds to every object.
    fn stored(mut obj: Value) -> Value {
        obj["metadata"]["uid"] = json!("3f1c");
        obj["metadata"]["resourceVersion"] = json!("12");
        obj["metadata"]["creationTimestamp"] = json!(T1);
        obj
    }

    fn ok(live: Option<&Value>, applied: &Value, manager: &str, force: bool) -> Value {
        match apply(live, applied, manager, force, T2) {
            Ok(obj) => obj,
            Err(e) => panic!("apply failed: {e}"),
        }
    }

    fn conflicts(live: &Value, applied: &Value, manager: &str) -> (Vec<Conflict>, String) {
        match apply(Some(live), applied, manager, false, T2) {
            Ok(obj) => panic!("expected a conflict, got {obj}"),
            Err(e @ ApplyError::Conflicts(_)) => {
                let message = e.to_string();
                let ApplyError::Conflicts(list) = e else {
                    unreachable!()
                };
                (list, message)
            }
            Err(e) => panic!("expected a conflict, got {e}"),
        }
    }

    fn created_by(manager: &str, obj: Value) -> Value {
        let mut obj = stored(obj);
        record_update(None, &mut obj, manager, T1);
        obj
    }

    /// (manager, operation) of each entry, in order.
    fn managers(obj: &Value) -> Vec<(String, Operation)> {
        read_managed_fields(obj)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    fn owned(obj: &Value, manager: &str, operation: Operation) -> Vec<String> {
        read_managed_fields(obj)
            .into_iter()
            .find(|e| e.is(manager, operation))
            .map(|e| e.fields.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    fn without_times(mut obj: Value) -> Value {
        if let Some(Value::Array(list)) = obj
            .get_mut("metadata")
            .and_then(|m| m.get_mut("managedFields"))
        {
            for entry in list {
                if let Value::Object(entry) = entry {
                    entry.remove("time");
                }
            }
        }
        obj
    }

    #[test]
    fn create_via_apply() {
        let applied = app(json!({"instances": 3, "container": {"command": ["serve"]}}));
        let mut with_labels = applied.clone();
        with_labels["metadata"]["labels"] = json!({"app": "web"});
        let created = ok(None, &with_labels, "kubectl", false);
        let mut expected = with_labels.clone();
        expected["metadata"]["managedFields"] = json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": V,
            "time": T2,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:container": {"f:command": {}}, "f:instances": {}}
            }
        }]);
        assert_eq!(created, expected);
    }

    #[test]
    fn reapply_unchanged_gives_the_same_object() {
        let applied = app(json!({"instances": 3, "ports": [{"name": "http", "port": 80}]}));
        let live = stored(ok(None, &applied, "kubectl", false));
        let again = match apply(
            Some(&live),
            &applied,
            "kubectl",
            false,
            "2030-01-01T00:00:00Z",
        ) {
            Ok(obj) => obj,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(without_times(again.clone()), without_times(live));
        assert_eq!(
            again["metadata"]["managedFields"][0]["time"],
            json!("2030-01-01T00:00:00Z")
        );
    }

    #[test]
    fn removing_a_field_from_the_config_removes_it() {
        let live = stored(ok(
            None,
            &app(json!({"instances": 3, "image": "web:1", "env": {"A": "1", "B": "2"}})),
            "kubectl",
            false,
        ));
        let next = ok(
            Some(&live),
            &app(json!({"image": "web:1", "env": {"A": "1"}})),
            "kubectl",
            false,
        );
        assert_eq!(next["spec"], json!({"image": "web:1", "env": {"A": "1"}}));
        assert_eq!(
            owned(&next, "kubectl", Operation::Apply),
            vec![".spec.env.A", ".spec.image"]
        );
        // Identity and server fields are untouched.
        assert_eq!(next["metadata"]["uid"], json!("3f1c"));
        assert_eq!(next["metadata"]["resourceVersion"], json!("12"));

        // A map emptied by the removals goes with them.
        let next = ok(
            Some(&next),
            &app(json!({"image": "web:1"})),
            "kubectl",
            false,
        );
        assert_eq!(next["spec"], json!({"image": "web:1"}));
    }

    #[test]
    fn removed_field_stays_when_another_manager_owns_it() {
        let live = stored(ok(
            None,
            &app(json!({"instances": 3, "image": "a"})),
            "one",
            false,
        ));
        // Same value from a second applier: shared ownership, no conflict.
        let live = ok(Some(&live), &app(json!({"instances": 3})), "two", false);
        assert_eq!(
            owned(&live, "two", Operation::Apply),
            vec![".spec.instances"]
        );
        let next = ok(Some(&live), &app(json!({"image": "a"})), "one", false);
        assert_eq!(next["spec"], json!({"instances": 3, "image": "a"}));
        assert_eq!(owned(&next, "one", Operation::Apply), vec![".spec.image"]);
        assert_eq!(
            owned(&next, "two", Operation::Apply),
            vec![".spec.instances"]
        );
    }

    #[test]
    fn differing_value_owned_by_another_manager_conflicts() {
        let live = created_by("kubectl-client-side-apply", app(json!({"instances": 3})));
        let (list, message) = conflicts(&live, &app(json!({"instances": 5})), "kubectl");
        assert_eq!(
            list,
            vec![Conflict {
                manager: "kubectl-client-side-apply".into(),
                operation: Operation::Update,
                api_version: V.into(),
                field: ".spec.instances".into(),
            }]
        );
        assert_eq!(
            message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" \
             using drover.dev/v1alpha1: .spec.instances"
        );
        assert_eq!(
            list[0].to_string(),
            "conflict with \"kubectl-client-side-apply\" using drover.dev/v1alpha1"
        );
    }

    #[test]
    fn conflicts_with_an_applier_name_it_without_version() {
        let live = stored(ok(None, &app(json!({"instances": 3})), "ci", false));
        let (_, message) = conflicts(&live, &app(json!({"instances": 4})), "kubectl");
        assert_eq!(
            message,
            "Apply failed with 1 conflict: conflict with \"ci\": .spec.instances"
        );
    }

    #[test]
    fn several_conflicts_are_listed_per_manager() {
        let live = created_by("m", app(json!({"a": 1, "b": 2, "c": 3})));
        let live = ok(Some(&live), &app(json!({"c": 3})), "ci", false);
        let (list, message) = conflicts(&live, &app(json!({"a": 9, "b": 9, "c": 9})), "kubectl");
        // .spec.c is shared by both managers, so it is listed for each.
        assert_eq!(list.len(), 4);
        assert_eq!(
            message,
            "Apply failed with 4 conflicts: conflicts with \"ci\":\n- .spec.c\n\
             conflicts with \"m\" using drover.dev/v1alpha1:\n- .spec.a\n- .spec.b\n- .spec.c"
        );
    }

    #[test]
    fn force_takes_ownership() {
        let live = created_by(
            "kubectl-client-side-apply",
            app(json!({"instances": 3, "image": "web:1"})),
        );
        let next = ok(Some(&live), &app(json!({"instances": 5})), "kubectl", true);
        assert_eq!(next["spec"], json!({"instances": 5, "image": "web:1"}));
        assert_eq!(
            owned(&next, "kubectl", Operation::Apply),
            vec![".spec.instances"]
        );
        assert_eq!(
            owned(&next, "kubectl-client-side-apply", Operation::Update),
            vec![".spec.image"]
        );
        // Now the applier alone owns the field: no conflict any more.
        ok(Some(&next), &app(json!({"instances": 7})), "kubectl", false);
    }

    #[test]
    fn managers_with_empty_sets_are_dropped() {
        let live = created_by("kubectl-edit", app(json!({"instances": 3})));
        let next = ok(Some(&live), &app(json!({"instances": 5})), "kubectl", true);
        assert_eq!(managers(&next), vec![("kubectl".into(), Operation::Apply)]);

        // An applier that stops setting everything disappears as well.
        let next = ok(Some(&next), &bare(), "kubectl", false);
        assert_eq!(managers(&next), vec![]);
        assert_eq!(next["metadata"].get("managedFields"), None);
    }

    #[test]
    fn last_applied_only_apply_keeps_the_spec() {
        // `kubectl apply` (client-side) created the object ...
        let spec = json!({"instances": 3, "container": {"command": ["serve"]}});
        let mut config = app(spec.clone());
        let annotation = config.to_string();
        config["metadata"]["annotations"] = json!({LAST_APPLIED: annotation});
        let live = created_by("kubectl-client-side-apply", config);
        // ... then `kubectl apply --server-side` saves the annotation under its own
        // manager with an apply carrying nothing else.
        let applied = json!({
            "apiVersion": V,
            "kind": "App",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "annotations": {LAST_APPLIED: annotation}
            }
        });
        let next = ok(Some(&live), &applied, "kubectl-last-applied", false);
        assert_eq!(next["spec"], spec);
        assert_eq!(
            next["metadata"]["annotations"][LAST_APPLIED],
            json!(annotation)
        );
        assert_eq!(
            owned(&next, "kubectl-last-applied", Operation::Apply),
            vec![format!(".metadata.annotations.{LAST_APPLIED}")]
        );
        assert_eq!(
            owned(&next, "kubectl-client-side-apply", Operation::Update).len(),
            3
        );
        // The follow-up server-side apply of the same spec by "kubectl" owns it
        // jointly and changes nothing.
        let after = ok(Some(&next), &app(spec.clone()), "kubectl", false);
        assert_eq!(after["spec"], spec);
    }

    #[test]
    fn map_like_lists_merge_by_name() {
        let live = stored(ok(
            None,
            &app(json!({"ports": [{"name": "http", "port": 80}]})),
            "a",
            false,
        ));
        // Another applier adds its own item and a field of an existing one.
        let live = ok(
            Some(&live),
            &app(json!({"ports": [
                {"name": "metrics", "port": 9090},
                {"name": "http", "protocol": "TCP"}
            ]})),
            "b",
            false,
        );
        assert_eq!(
            live["spec"]["ports"],
            json!([
                {"name": "metrics", "port": 9090},
                {"name": "http", "port": 80, "protocol": "TCP"}
            ])
        );
        assert_eq!(
            live["metadata"]["managedFields"][1]["fieldsV1"],
            json!({"f:spec": {"f:ports": {
                "k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:protocol": {}},
                "k:{\"name\":\"metrics\"}": {".": {}, "f:name": {}, "f:port": {}}
            }}})
        );
        // "a" changes its port: the others' fields and items survive.
        let live = ok(
            Some(&live),
            &app(json!({"ports": [{"name": "http", "port": 8080}]})),
            "a",
            false,
        );
        assert_eq!(
            live["spec"]["ports"],
            json!([
                {"name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9090}
            ])
        );
        // "a" drops the list: only what "a" alone owned goes.
        let live = ok(Some(&live), &app(json!({"instances": 1})), "a", false);
        assert_eq!(
            live["spec"]["ports"],
            json!([{"name": "http", "protocol": "TCP"}, {"name": "metrics", "port": 9090}])
        );
        // "b" drops it too: the list is gone.
        let live = ok(Some(&live), &bare(), "b", false);
        assert_eq!(live["spec"], json!({"instances": 1}));
        assert_eq!(managers(&live), vec![("a".into(), Operation::Apply)]);
    }

    #[test]
    fn item_removed_from_a_map_like_list() {
        let live = stored(ok(
            None,
            &app(json!({"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9}]})),
            "a",
            false,
        ));
        let next = ok(
            Some(&live),
            &app(json!({"ports": [{"name": "http", "port": 80}]})),
            "a",
            false,
        );
        assert_eq!(next["spec"]["ports"], json!([{"name": "http", "port": 80}]));
    }

    #[test]
    fn conflict_inside_a_list_item() {
        let live = stored(ok(
            None,
            &app(json!({"ports": [{"name": "http", "port": 80}]})),
            "a",
            false,
        ));
        let (list, _) = conflicts(
            &live,
            &app(json!({"ports": [{"name": "http", "port": 81}]})),
            "b",
        );
        let fields: Vec<&str> = list.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec![".spec.ports[name=\"http\"].port"]);
    }

    #[test]
    fn atomic_lists_replace() {
        let live = stored(ok(
            None,
            &app(json!({"container": {"command": ["a", "b"]}})),
            "kubectl",
            false,
        ));
        let next = ok(
            Some(&live),
            &app(json!({"container": {"command": ["c"]}})),
            "kubectl",
            false,
        );
        assert_eq!(next["spec"]["container"]["command"], json!(["c"]));
        let (list, _) = conflicts(
            &next,
            &app(json!({"container": {"command": ["d"]}})),
            "other",
        );
        assert_eq!(list[0].field, ".spec.container.command");
    }

    #[test]
    fn object_without_managed_fields_belongs_to_before_first_apply() {
        let live = stored(app(json!({"instances": 3, "image": "a"})));
        let (list, _) = conflicts(&live, &app(json!({"instances": 4})), "kubectl");
        assert_eq!(list[0].manager, BEFORE_FIRST_APPLY);
        let next = ok(Some(&live), &app(json!({"instances": 3})), "kubectl", false);
        assert_eq!(
            managers(&next),
            vec![
                (BEFORE_FIRST_APPLY.into(), Operation::Update),
                ("kubectl".into(), Operation::Apply)
            ]
        );
    }

    #[test]
    fn nulls_status_and_server_fields_in_the_config_are_ignored() {
        let live = created_by("kubectl-create", app(json!({"instances": 3, "image": "a"})));
        let mut applied = app(json!({"instances": 3, "image": null}));
        applied["status"] = json!({"ready": 99});
        applied["metadata"]["resourceVersion"] = json!("1");
        applied["metadata"]["uid"] = json!("other");
        let next = ok(Some(&live), &applied, "kubectl", false);
        assert_eq!(next["spec"], json!({"instances": 3, "image": "a"}));
        assert_eq!(next.get("status"), None);
        assert_eq!(next["metadata"]["uid"], json!("3f1c"));
        assert_eq!(next["metadata"]["resourceVersion"], json!("12"));
        assert_eq!(
            owned(&next, "kubectl", Operation::Apply),
            vec![".spec.instances"]
        );

        let created = ok(
            None,
            &app(json!({"instances": 1, "image": null})),
            "k",
            false,
        );
        assert_eq!(created["spec"], json!({"instances": 1}));
    }

    #[test]
    fn invalid_configurations() {
        let live = created_by("k", app(json!({})));
        let mut with_managed = app(json!({}));
        with_managed["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        for (applied, manager, message) in [
            (json!([1]), "k", "the apply configuration must be an object"),
            (with_managed, "k", "metadata.managedFields must be nil"),
            (json!({"metadata": 3}), "k", "metadata must be an object"),
            (
                app(json!({})),
                "",
                "fieldManager is required for apply requests",
            ),
        ] {
            for live in [None, Some(&live)] {
                match apply(live, &applied, manager, false, T2) {
                    Err(ApplyError::Invalid(m)) => assert_eq!(m, message),
                    other => panic!("expected Invalid, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn unreadable_live_managed_fields_do_not_block_apply() {
        let mut live = created_by("k", app(json!({"instances": 3})));
        live["metadata"]["managedFields"] = json!([{"manager": 7}, "junk"]);
        let next = ok(Some(&live), &app(json!({"instances": 4})), "kubectl", false);
        assert_eq!(next["spec"]["instances"], json!(4));
        assert_eq!(managers(&next), vec![("kubectl".into(), Operation::Apply)]);
    }

    #[test]
    fn apply_never_panics_on_odd_live_objects() {
        for live in [json!(null), json!([]), json!({"metadata": 5, "spec": "x"})] {
            let _ = apply(Some(&live), &app(json!({"a": {"b": [1]}})), "k", true, T2);
        }
    }

    // record_update

    #[test]
    fn create_gives_every_leaf_to_the_writer() {
        let mut config = app(json!({"instances": 3}));
        config["metadata"]["labels"] = json!({"app": "web"});
        config["status"] = json!({"ready": 0});
        let obj = created_by("kubectl-client-side-apply", config);
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": V,
                "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:instances": {}}
                }
            }])
        );
    }

    #[test]
    fn update_moves_changed_fields_to_the_writer() {
        let live = stored(ok(
            None,
            &app(json!({"instances": 3, "image": "a"})),
            "kubectl",
            false,
        ));
        // `kubectl scale`: a merge patch of spec.instances.
        let mut new = live.clone();
        new["spec"]["instances"] = json!(5);
        record_update(Some(&live), &mut new, "kubectl-scale", T2);
        assert_eq!(
            owned(&new, "kubectl", Operation::Apply),
            vec![".spec.image"]
        );
        assert_eq!(
            owned(&new, "kubectl-scale", Operation::Update),
            vec![".spec.instances"]
        );
        // The next apply of the old value conflicts with the scaler.
        let (list, _) = conflicts(&new, &app(json!({"instances": 3, "image": "a"})), "kubectl");
        assert_eq!(list[0].manager, "kubectl-scale");

        // A second write by the same manager extends its entry.
        let mut newer = new.clone();
        newer["spec"]["paused"] = json!(true);
        record_update(Some(&new), &mut newer, "kubectl-scale", T2);
        assert_eq!(
            owned(&newer, "kubectl-scale", Operation::Update),
            vec![".spec.instances", ".spec.paused"]
        );
        assert_eq!(managers(&newer).len(), 2);
    }

    #[test]
    fn update_removing_fields_releases_them() {
        let live = stored(ok(
            None,
            &app(json!({"instances": 3, "image": "a"})),
            "kubectl",
            false,
        ));
        let mut new = live.clone();
        new["spec"] = json!({"instances": 3});
        record_update(Some(&live), &mut new, "kubectl-edit", T2);
        assert_eq!(
            owned(&new, "kubectl", Operation::Apply),
            vec![".spec.instances"]
        );
        assert_eq!(managers(&new), vec![("kubectl".into(), Operation::Apply)]);
    }

    #[test]
    fn unchanged_update_changes_no_ownership() {
        let live = created_by("kubectl-create", app(json!({"instances": 3})));
        let mut new = live.clone();
        new["metadata"]["resourceVersion"] = json!("13");
        record_update(Some(&live), &mut new, "kubectl-edit", T2);
        assert_eq!(
            new["metadata"]["managedFields"],
            live["metadata"]["managedFields"]
        );
        // A PUT without managedFields keeps the stored ones.
        let mut put = app(json!({"instances": 3}));
        record_update(Some(&live), &mut put, "kubectl-replace", T2);
        assert_eq!(
            put["metadata"]["managedFields"],
            live["metadata"]["managedFields"]
        );
    }

    #[test]
    fn client_managed_fields_replace_the_stored_ones() {
        let live = created_by("kubectl-client-side-apply", app(json!({"instances": 3})));
        // kubectl's CSA → SSA migration rewrites the manager with a JSON patch.
        let mut new = live.clone();
        new["metadata"]["managedFields"][0]["manager"] = json!("kubectl");
        new["metadata"]["managedFields"][0]["operation"] = json!("Apply");
        record_update(Some(&live), &mut new, "kubectl", T2);
        assert_eq!(managers(&new), vec![("kubectl".into(), Operation::Apply)]);

        // `[{}]` clears them; nothing changed, so nobody owns anything.
        let mut reset = live.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        record_update(Some(&live), &mut reset, "kubectl-edit", T2);
        assert_eq!(reset["metadata"].get("managedFields"), None);

        // Unreadable client entries are ignored.
        let mut junk = live.clone();
        junk["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Nope"}]);
        record_update(Some(&live), &mut junk, "kubectl-edit", T2);
        assert_eq!(
            junk["metadata"]["managedFields"],
            live["metadata"]["managedFields"]
        );
    }

    #[test]
    fn update_of_list_items() {
        let live = stored(ok(
            None,
            &app(json!({"ports": [{"name": "http", "port": 80}]})),
            "kubectl",
            false,
        ));
        let mut new = live.clone();
        new["spec"]["ports"] = json!([{"name": "http", "port": 81}, {"name": "dns", "port": 53}]);
        record_update(Some(&live), &mut new, "kubectl-edit", T2);
        assert_eq!(
            owned(&new, "kubectl", Operation::Apply),
            vec![
                ".spec.ports[name=\"http\"]",
                ".spec.ports[name=\"http\"].name"
            ]
        );
        assert_eq!(
            owned(&new, "kubectl-edit", Operation::Update),
            vec![
                ".spec.ports[name=\"dns\"]",
                ".spec.ports[name=\"dns\"].name",
                ".spec.ports[name=\"dns\"].port",
                ".spec.ports[name=\"http\"].port"
            ]
        );
    }
}

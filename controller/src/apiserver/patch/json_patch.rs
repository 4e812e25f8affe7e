//! JSON Patch (RFC 6902) over JSON Pointers (RFC 6901), the body of
//! `kubectl patch --type=json`. Atomic: a failing operation leaves the target unchanged.

use serde_json::{Map, Value};

use super::value::json_equal;

/// Why a JSON patch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("a JSON patch must be an array of operations")]
    NotAnArray,
    #[error("operation {index} ({op}) at {}: {reason}", shown_path(path))]
    Operation {
        index: usize,
        op: String,
        path: String,
        reason: PatchFailure,
    },
}

/// What went wrong inside one operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchFailure {
    #[error("operation is not a JSON object")]
    NotAnObject,
    #[error("unknown operation (expected add, remove, replace, move, copy or test)")]
    UnknownOp,
    #[error("missing or invalid member {0:?}")]
    MissingMember(&'static str),
    #[error("invalid JSON pointer {0:?}: {1}")]
    InvalidPointer(String, &'static str),
    #[error("path not found")]
    NotFound,
    #[error("from path {} not found", shown_path(.0))]
    FromNotFound(String),
    #[error("invalid array index {0:?}")]
    InvalidIndex(String),
    #[error("array index {0} out of bounds")]
    IndexOutOfBounds(usize),
    #[error("parent is not an object or an array")]
    NotAContainer,
    #[error("cannot move a value into one of its own children")]
    MoveIntoChild,
    #[error("cannot remove the whole document")]
    RemoveRoot,
    #[error("value differs")]
    ValueDiffers,
}

fn shown_path(path: &str) -> &str {
    if path.is_empty() {
        "the document root"
    } else {
        path
    }
}

/// Applies the RFC 6902 operations in `ops` (a JSON array) to `target`. All or
/// nothing: on error `target` is unchanged.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::NotAnArray);
    };
    let mut doc = target.clone();
    for (index, op) in ops.iter().enumerate() {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("(no path)")
            .to_string();
        apply_op(&mut doc, op).map_err(|reason| PatchError::Operation {
            index,
            op: name,
            path,
            reason,
        })?;
    }
    *target = doc;
    Ok(())
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), PatchFailure> {
    let Value::Object(op) = op else {
        return Err(PatchFailure::NotAnObject);
    };
    let name = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or(PatchFailure::MissingMember("op"))?;
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or(PatchFailure::MissingMember("path"))?;
    let path = parse_pointer(path)?;
    match name {
        "add" => add(doc, &path, member(op, "value")?.clone()),
        "remove" => remove(doc, &path).map(drop),
        "replace" => {
            let value = member(op, "value")?.clone();
            let slot = get_mut(doc, &path).ok_or(PatchFailure::NotFound)?;
            *slot = value;
            Ok(())
        }
        "move" => {
            let from_raw = from_member(op)?;
            let from = parse_pointer(from_raw)?;
            if from == path {
                return get(doc, &from)
                    .map(drop)
                    .ok_or_else(|| PatchFailure::FromNotFound(from_raw.to_string()));
            }
            if path.len() > from.len() && path.starts_with(&from) {
                return Err(PatchFailure::MoveIntoChild);
            }
            let value = match remove(doc, &from) {
                Ok(value) => value,
                Err(PatchFailure::RemoveRoot) => return Err(PatchFailure::MoveIntoChild),
                Err(_) => return Err(PatchFailure::FromNotFound(from_raw.to_string())),
            };
            add(doc, &path, value)
        }
        "copy" => {
            let from_raw = from_member(op)?;
            let from = parse_pointer(from_raw)?;
            let value = get(doc, &from)
                .ok_or_else(|| PatchFailure::FromNotFound(from_raw.to_string()))?
                .clone();
            add(doc, &path, value)
        }
        "test" => {
            let expected = member(op, "value")?;
            let actual = get(doc, &path).ok_or(PatchFailure::NotFound)?;
            if json_equal(actual, expected) {
                Ok(())
            } else {
                Err(PatchFailure::ValueDiffers)
            }
        }
        _ => Err(PatchFailure::UnknownOp),
    }
}

fn member<'a>(op: &'a Map<String, Value>, name: &'static str) -> Result<&'a Value, PatchFailure> {
    op.get(name).ok_or(PatchFailure::MissingMember(name))
}

fn from_member(op: &Map<String, Value>) -> Result<&str, PatchFailure> {
    op.get("from")
        .and_then(Value::as_str)
        .ok_or(PatchFailure::MissingMember("from"))
}

/// Splits an RFC 6901 pointer into unescaped reference tokens (`""` is the root).
fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchFailure> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PatchFailure::InvalidPointer(
            pointer.to_string(),
            "must be empty or start with '/'",
        ));
    };
    rest.split('/')
        .map(|token| {
            unescape(token).ok_or_else(|| {
                PatchFailure::InvalidPointer(pointer.to_string(), "'~' must be followed by 0 or 1")
            })
        })
        .collect()
}

fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// An existing-element array index: decimal digits, no leading zeros.
fn parse_index(token: &str) -> Result<usize, PatchFailure> {
    let well_formed = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if !well_formed {
        return Err(PatchFailure::InvalidIndex(token.to_string()));
    }
    token
        .parse()
        .map_err(|_| PatchFailure::InvalidIndex(token.to_string()))
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |value, token| match value {
        Value::Object(map) => map.get(token),
        Value::Array(items) => parse_index(token).ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |value, token| match value {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => parse_index(token).ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), PatchFailure> {
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent_path).ok_or(PatchFailure::NotFound)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            if last == "-" {
                items.push(value);
                return Ok(());
            }
            let index = parse_index(last)?;
            if index > items.len() {
                return Err(PatchFailure::IndexOutOfBounds(index));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(PatchFailure::NotAContainer),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, PatchFailure> {
    let Some((last, parent_path)) = path.split_last() else {
        return Err(PatchFailure::RemoveRoot);
    };
    match get_mut(doc, parent_path).ok_or(PatchFailure::NotFound)? {
        Value::Object(map) => map.remove(last).ok_or(PatchFailure::NotFound),
        Value::Array(items) => {
            let index = parse_index(last)?;
            if index >= items.len() {
                return Err(PatchFailure::IndexOutOfBounds(index));
            }
            Ok(items.remove(index))
        }
        _ => Err(PatchFailure::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(doc: Value, ops: Value) -> Result<Value, PatchError> {
        let mut doc = doc;
        json_patch(&mut doc, &ops)?;
        Ok(doc)
    }

    fn ok(doc: Value, ops: Value) -> Value {
        match patched(doc, ops) {
            Ok(doc) => doc,
            Err(e) => panic!("patch failed: {e}"),
        }
    }

    fn err(doc: Value, ops: Value) -> PatchError {
        let before = doc.clone();
        let mut doc = doc;
        match json_patch(&mut doc, &ops) {
            Ok(()) => panic!("patch unexpectedly succeeded: {doc}"),
            Err(e) => {
                assert_eq!(doc, before, "target changed by a failed patch");
                e
            }
        }
    }

    // RFC 6902 appendix A, one test per example.

    #[test]
    fn a1_add_object_member() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}])
            ),
            json!({"baz": "qux", "foo": "bar"})
        );
    }

    #[test]
    fn a2_add_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}])
            ),
            json!({"foo": ["bar", "qux", "baz"]})
        );
    }

    #[test]
    fn a3_remove_object_member() {
        assert_eq!(
            ok(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}])
            ),
            json!({"foo": "bar"})
        );
    }

    #[test]
    fn a4_remove_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}])
            ),
            json!({"foo": ["bar", "baz"]})
        );
    }

    #[test]
    fn a5_replace_value() {
        assert_eq!(
            ok(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}])
            ),
            json!({"baz": "boo", "foo": "bar"})
        );
    }

    #[test]
    fn a6_move_value() {
        assert_eq!(
            ok(
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])
            ),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
        );
    }

    #[test]
    fn a7_move_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}])
            ),
            json!({"foo": ["all", "cows", "eat", "grass"]})
        );
    }

    #[test]
    fn a8_test_success() {
        let doc = json!({"baz": "qux", "foo": ["a", 2, "c"]});
        assert_eq!(
            ok(
                doc.clone(),
                json!([
                    {"op": "test", "path": "/baz", "value": "qux"},
                    {"op": "test", "path": "/foo/1", "value": 2}
                ])
            ),
            doc
        );
    }

    #[test]
    fn a9_test_error() {
        let e = err(
            json!({"baz": "qux"}),
            json!([{"op": "test", "path": "/baz", "value": "bar"}]),
        );
        assert_eq!(e.to_string(), "operation 0 (test) at /baz: value differs");
    }

    #[test]
    fn a10_add_nested_member() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}])
            ),
            json!({"foo": "bar", "child": {"grandchild": {}}})
        );
    }

    #[test]
    fn a11_ignore_unrecognized_members() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}])
            ),
            json!({"foo": "bar", "baz": "qux"})
        );
    }

    #[test]
    fn a12_add_to_nonexistent_target() {
        let e = err(
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
        );
        assert_eq!(
            e.to_string(),
            "operation 0 (add) at /baz/bat: path not found"
        );
    }

    #[test]
    fn a14_escape_ordering() {
        let doc = json!({"/": 9, "~1": 10});
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "test", "path": "/~01", "value": 10}])
            ),
            doc
        );
    }

    #[test]
    fn a15_comparing_strings_and_numbers() {
        let e = err(
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": "10"}]),
        );
        assert!(matches!(
            e,
            PatchError::Operation {
                reason: PatchFailure::ValueDiffers,
                ..
            }
        ));
    }

    #[test]
    fn a16_add_array_value() {
        assert_eq!(
            ok(
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}])
            ),
            json!({"foo": ["bar", ["abc", "def"]]})
        );
    }

    // Beyond the appendix.

    #[test]
    fn error_names_op_index_and_path() {
        let e = err(
            json!({"spec": {"instances": 3}}),
            json!([
                {"op": "replace", "path": "/spec/instances", "value": 4},
                {"op": "add", "path": "/spec/image", "value": "web:2"},
                {"op": "test", "path": "/spec/instances", "value": 3}
            ]),
        );
        assert_eq!(
            e.to_string(),
            "operation 2 (test) at /spec/instances: value differs"
        );
    }

    #[test]
    fn failure_leaves_target_unchanged() {
        // err() asserts the document is untouched although op 0 succeeded.
        err(
            json!({"a": 1}),
            json!([
                {"op": "add", "path": "/b", "value": 2},
                {"op": "remove", "path": "/zzz"}
            ]),
        );
    }

    #[test]
    fn test_compares_numbers_by_value() {
        ok(
            json!({"a": 1}),
            json!([{"op": "test", "path": "/a", "value": 1.0}]),
        );
    }

    #[test]
    fn pointer_escapes() {
        assert_eq!(
            ok(
                json!({}),
                json!([
                    {"op": "add", "path": "/a~1b", "value": 1},
                    {"op": "add", "path": "/m~0n", "value": 2},
                    {"op": "add", "path": "/", "value": 3}
                ])
            ),
            json!({"a/b": 1, "m~n": 2, "": 3})
        );
        let e = err(
            json!({}),
            json!([{"op": "add", "path": "/a~2", "value": 1}]),
        );
        assert!(
            e.to_string().contains("'~' must be followed by 0 or 1"),
            "{e}"
        );
        let e = err(json!({}), json!([{"op": "add", "path": "a", "value": 1}]));
        assert!(
            e.to_string().contains("must be empty or start with '/'"),
            "{e}"
        );
    }

    #[test]
    fn root_operations() {
        assert_eq!(
            ok(
                json!({"a": 1}),
                json!([{"op": "replace", "path": "", "value": [1]}])
            ),
            json!([1])
        );
        assert_eq!(
            ok(
                json!({"a": 1}),
                json!([{"op": "add", "path": "", "value": "x"}])
            ),
            json!("x")
        );
        let e = err(json!({"a": 1}), json!([{"op": "remove", "path": ""}]));
        assert_eq!(
            e.to_string(),
            "operation 0 (remove) at the document root: cannot remove the whole document"
        );
        ok(
            json!({"a": 1}),
            json!([{"op": "test", "path": "", "value": {"a": 1}}]),
        );
    }

    #[test]
    fn array_index_rules() {
        let doc = json!({"a": [1, 2]});
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "add", "path": "/a/2", "value": 3}])
            ),
            json!({"a": [1, 2, 3]})
        );
        let e = err(
            doc.clone(),
            json!([{"op": "add", "path": "/a/3", "value": 3}]),
        );
        assert!(matches!(
            e,
            PatchError::Operation {
                reason: PatchFailure::IndexOutOfBounds(3),
                ..
            }
        ));
        for bad in [
            "/a/01",
            "/a/-1",
            "/a/x",
            "/a/",
            "/a/99999999999999999999999",
        ] {
            let e = err(doc.clone(), json!([{"op": "add", "path": bad, "value": 0}]));
            assert!(
                matches!(
                    e,
                    PatchError::Operation {
                        reason: PatchFailure::InvalidIndex(_),
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
        err(doc.clone(), json!([{"op": "remove", "path": "/a/-"}]));
        err(doc.clone(), json!([{"op": "remove", "path": "/a/2"}]));
        err(
            doc.clone(),
            json!([{"op": "replace", "path": "/a/-", "value": 1}]),
        );
        assert_eq!(
            ok(doc, json!([{"op": "replace", "path": "/a/0", "value": 9}])),
            json!({"a": [9, 2]})
        );
    }

    #[test]
    fn replace_requires_an_existing_target() {
        let e = err(
            json!({"a": 1}),
            json!([{"op": "replace", "path": "/b", "value": 2}]),
        );
        assert_eq!(e.to_string(), "operation 0 (replace) at /b: path not found");
    }

    #[test]
    fn add_through_a_scalar_fails() {
        let e = err(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/a/b", "value": 2}]),
        );
        assert!(matches!(
            e,
            PatchError::Operation {
                reason: PatchFailure::NotAContainer,
                ..
            }
        ));
    }

    #[test]
    fn move_and_copy() {
        assert_eq!(
            ok(
                json!({"a": {"b": [1]}}),
                json!([{"op": "copy", "from": "/a/b", "path": "/c"}])
            ),
            json!({"a": {"b": [1]}, "c": [1]})
        );
        assert_eq!(
            ok(
                json!({"a": 1}),
                json!([{"op": "move", "from": "/a", "path": "/a"}])
            ),
            json!({"a": 1})
        );
        let e = err(
            json!({"a": {"b": 1}}),
            json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
        );
        assert!(matches!(
            e,
            PatchError::Operation {
                reason: PatchFailure::MoveIntoChild,
                ..
            }
        ));
        let e = err(
            json!({"a": 1}),
            json!([{"op": "copy", "from": "/x", "path": "/y"}]),
        );
        assert_eq!(
            e.to_string(),
            "operation 0 (copy) at /y: from path /x not found"
        );
        let e = err(
            json!({"a": 1}),
            json!([{"op": "move", "from": "/x", "path": "/y"}]),
        );
        assert!(e.to_string().contains("from path /x not found"), "{e}");
        err(
            json!({"a": 1}),
            json!([{"op": "move", "from": "", "path": "/y"}]),
        );
        err(json!({"a": 1}), json!([{"op": "move", "path": "/y"}]));
    }

    #[test]
    fn malformed_operations_are_errors_not_panics() {
        let doc = json!({"a": 1});
        assert_eq!(
            patched(doc.clone(), json!({"op": "add"})),
            Err(PatchError::NotAnArray)
        );
        let cases = [
            json!([1]),
            json!([null]),
            json!([{}]),
            json!([{"op": "add"}]),
            json!([{"op": "add", "path": "/b"}]),
            json!([{"op": "add", "path": 5, "value": 1}]),
            json!([{"op": 7, "path": "/a"}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "test", "path": "/a"}]),
            json!([{"op": "test", "path": "/zz", "value": 1}]),
            json!([{"op": "remove", "path": "/a/b"}]),
            json!([{"op": "copy", "from": 3, "path": "/b"}]),
        ];
        for ops in cases {
            err(doc.clone(), ops);
        }
        let e = err(doc, json!([{"path": "/a"}]));
        assert_eq!(
            e.to_string(),
            "operation 0 (?) at /a: missing or invalid member \"op\""
        );
    }

    #[test]
    fn empty_patch_is_a_no_op() {
        assert_eq!(ok(json!({"a": 1}), json!([])), json!({"a": 1}));
    }

    #[test]
    fn test_null_value() {
        ok(
            json!({"a": null}),
            json!([{"op": "test", "path": "/a", "value": null}]),
        );
        err(
            json!({}),
            json!([{"op": "test", "path": "/a", "value": null}]),
        );
    }
}

//! JSON value helpers shared by the patchers: RFC-style equality (numbers compare by
//! value, so `1` equals `1.0`) and a canonical encoding with sorted object keys.

use serde_json::Value;

/// Structural equality where numbers compare numerically, as RFC 6902 `test` requires.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Equality of two optional values (an absent field equals only an absent field).
pub(crate) fn opt_equal(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => json_equal(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Compact JSON with object keys sorted, independent of serde_json's map ordering,
/// so equal values always encode to the same string (used for list keys).
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_equal(&json!(1), &json!(2)));
        assert!(!json_equal(&json!(-1), &json!(u64::MAX)));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }

    #[test]
    fn objects_compare_regardless_of_key_order() {
        assert!(json_equal(
            &json!({"a": 1, "b": 2}),
            &json!({"b": 2, "a": 1})
        ));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_equal(&json!({"a": 1, "b": 2}), &json!({"a": 1})));
    }

    #[test]
    fn optional_values() {
        assert!(opt_equal(None, None));
        assert!(!opt_equal(Some(&json!(null)), None));
        assert!(opt_equal(Some(&json!(1)), Some(&json!(1.0))));
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v = json!({"b": [1, {"d": "x", "c": null}], "a": "q\""});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"q\"","b":[1,{"c":null,"d":"x"}]}"#
        );
    }
}

//! Dotted field paths with `[i]` indexes, as validation reports them
//! (`spec.healthChecks[0].intervalSeconds`): reading and removing the field they name.

use serde_json::Value;

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            let idx = idx.trim_end_matches(']');
            out.push(match idx.parse::<usize>() {
                Ok(n) => Step::Index(n),
                Err(_) => Step::Key(idx.trim_matches('"')),
            });
        }
    }
    out
}

/// The value at `path`, if there is one.
pub fn value_at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = object;
    for step in steps(path) {
        cur = match step {
            Step::Key(k) => cur.get(k)?,
            Step::Index(i) => cur.get(i)?,
        };
    }
    Some(cur)
}

/// Removes the object member `path` names; true if it was there.
pub fn remove_at(object: &mut Value, path: &str) -> bool {
    let steps = steps(path);
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut cur = object;
    for step in parents {
        let next = match step {
            Step::Key(k) => cur.get_mut(*k),
            Step::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (Step::Key(k), Value::Object(map)) => map.remove(*k).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_and_remove() {
        let mut v =
            json!({"spec": {"healthChecks": [{"intervalSeconds": 0, "foo": 1}], "instances": -1}});
        assert_eq!(value_at(&v, "spec.instances"), Some(&json!(-1)));
        assert_eq!(
            value_at(&v, "spec.healthChecks[0].intervalSeconds"),
            Some(&json!(0))
        );
        assert_eq!(value_at(&v, "spec.nope"), None);
        assert!(remove_at(&mut v, "spec.healthChecks[0].foo"));
        assert!(!remove_at(&mut v, "spec.healthChecks[3].foo"));
        assert_eq!(
            v,
            json!({"spec": {"healthChecks": [{"intervalSeconds": 0}], "instances": -1}})
        );
    }
}

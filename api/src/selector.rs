//! Label selectors (Kubernetes `LabelSelector`): validation and matching.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::validation::{Path, ValidationErrors};

const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

/// Checks a selector at `path`: known operators, values present exactly when needed.
pub fn validate_selector(selector: &LabelSelector, path: &Path, errors: &mut ValidationErrors) {
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        if req.key.is_empty() {
            errors.required(&p.child("key"), "");
        }
        let has_values = req.values.as_ref().is_some_and(|v| !v.is_empty());
        match req.operator.as_str() {
            "In" | "NotIn" if !has_values => errors.required(
                &p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if has_values => errors.forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.not_supported(&p.child("operator"), other, OPERATORS),
        }
    }
}

/// Whether `labels` satisfy `selector` (an empty selector matches everything; an
/// unknown operator matches nothing).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|req| {
            let value = labels.get(&req.key);
            let in_values = |v: &String| req.values.iter().flatten().any(|x| x == v);
            match req.operator.as_str() {
                "In" => value.is_some_and(in_values),
                "NotIn" => !value.is_some_and(in_values),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn matches_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some([("tier".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: Some(vec!["dev".into()]),
            }]),
        };
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(selector_matches(&sel, &labels(&[("tier", "web")])));
        assert!(!selector_matches(
            &sel,
            &labels(&[("tier", "web"), ("env", "dev")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("tier", "db")])));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }
}

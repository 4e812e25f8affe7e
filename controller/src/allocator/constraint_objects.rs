//! Constraint objects: namespace-wide placement policy. Those of the App's namespace
//! whose selector matches the App's labels add their rules to the App's own —
//! `required` ones as filters, `preferred` ones as scorers (a node that satisfies one
//! ranks higher; an unsatisfiable preferred rule never leaves an instance unplaced).

use drover_api::kinds::app::App;
use drover_api::kinds::constraint::{Constraint, Enforcement};
use drover_api::selector::selector_matches;

use crate::allocator::filter::NamedConstraint;

/// A rule that does not parse, named by where it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object} {field}: {message}")]
pub struct ConstraintsError {
    /// `App default/web` or `Constraint default/spread`.
    pub object: String,
    /// `spec.constraints[1]`, `spec.rules[0]`.
    pub field: String,
    pub message: String,
}

/// The App's rules plus the required and preferred rules of the Constraint objects that
/// select it, in that order (objects by name, so the result is stable).
pub fn constraints_for<'a>(
    app: &App,
    objects: impl IntoIterator<Item = &'a Constraint>,
) -> Result<(Vec<NamedConstraint>, Vec<NamedConstraint>), ConstraintsError> {
    let namespace = app.metadata.namespace.as_deref().unwrap_or("default");
    let app_name = app.metadata.name.as_deref().unwrap_or_default();
    let mut required = Vec::new();
    for (i, rule) in app.spec.constraints.iter().enumerate() {
        required.push(
            NamedConstraint::from_rule(rule).map_err(|e| ConstraintsError {
                object: format!("App {namespace}/{app_name}"),
                field: format!("spec.constraints[{i}]"),
                message: e.to_string(),
            })?,
        );
    }
    let labels = app.metadata.labels.clone().unwrap_or_default();
    let mut matching: Vec<&Constraint> = objects
        .into_iter()
        .filter(|c| c.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| {
            c.spec
                .selector
                .as_ref()
                .is_none_or(|s| selector_matches(s, &labels))
        })
        .collect();
    matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut preferred = Vec::new();
    for c in matching {
        let name = c.metadata.name.as_deref().unwrap_or_default();
        for (i, rule) in c.spec.rules.iter().enumerate() {
            let named = NamedConstraint::from_rule(rule).map_err(|e| ConstraintsError {
                object: format!("Constraint {namespace}/{name}"),
                field: format!("spec.rules[{i}]"),
                message: e.to_string(),
            })?;
            match c.spec.enforcement.unwrap_or_default() {
                Enforcement::Required => required.push(named),
                Enforcement::Preferred => preferred.push(named),
            }
        }
    }
    Ok((required, preferred))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::counters::AppCounters;
    use crate::allocator::inventory::{Amounts, Inventory, NodeState};
    use crate::allocator::sampled::{Ask, Placer};
    use crate::allocator::score::Strategy;
    use drover_api::ConstraintRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn object(
        name: &str,
        ns: &str,
        tier: Option<&str>,
        e: Enforcement,
        rule: ConstraintRule,
    ) -> Constraint {
        let mut c = Constraint::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some(ns.into());
        c.spec.selector = tier.map(|t| LabelSelector {
            match_labels: Some([("tier".to_string(), t.to_string())].into()),
            ..Default::default()
        });
        c.spec.rules = vec![rule];
        c.spec.enforcement = Some(e);
        c
    }

    fn app() -> App {
        let mut a = App::default();
        a.metadata.name = Some("web".into());
        a.metadata.namespace = Some("prod".into());
        a.metadata.labels = Some([("tier".to_string(), "front".to_string())].into());
        a.spec.constraints = vec![ConstraintRule::new("hostname", "UNIQUE", None)];
        a
    }

    fn node(name: &str, zone: &str) -> NodeState {
        NodeState {
            name: name.into(),
            attributes: [("zone".to_string(), zone.to_string())].into(),
            allocatable: Amounts {
                cpus: 4.0,
                mem_mib: 4096,
                disk_mib: 0,
                gpus: 0,
            },
            used: Amounts::default(),
            ports: Default::default(),
            schedulable: true,
            ready: true,
        }
    }

    #[test]
    fn selected_objects_add_required_and_preferred_rules() {
        let objects = vec![
            object(
                "a-zone",
                "prod",
                Some("front"),
                Enforcement::Required,
                ConstraintRule::new("zone", "IN", Some("a,b")),
            ),
            object(
                "b-pref",
                "prod",
                None,
                Enforcement::Preferred,
                ConstraintRule::new("zone", "IS", Some("b")),
            ),
            object(
                "other-tier",
                "prod",
                Some("back"),
                Enforcement::Required,
                ConstraintRule::new("zone", "IS", Some("x")),
            ),
            object(
                "other-ns",
                "dev",
                None,
                Enforcement::Required,
                ConstraintRule::new("zone", "IS", Some("x")),
            ),
        ];
        let (required, preferred) = constraints_for(&app(), &objects).expect("valid");
        let texts: Vec<&str> = required.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["hostname:UNIQUE", "zone:IN:a,b"]);
        assert_eq!(preferred.len(), 1);
        assert_eq!(preferred[0].text, "zone:IS:b");

        // Required filters (zone c never), preferred ranks (b before a), and when b is
        // full the instance still goes to a.
        let mut placer = Placer::new(
            Inventory::new(vec![node("n1", "a"), node("n2", "b"), node("n3", "c")]),
            1,
        );
        let mut counters = AppCounters::new(required.iter().chain(&preferred));
        let want = Amounts {
            cpus: 1.0,
            mem_mib: 100,
            disk_mib: 0,
            gpus: 0,
        };
        let ask = Ask::new(want, vec![], &required, &preferred, Strategy::Spread);
        let d = placer.place(&ask, &counters).expect("fits");
        assert_eq!(placer.nodes()[d.node].name, "n2");
        placer.bind(d.node, &ask, &mut counters).expect("bound");
        let d = placer.place(&ask, &counters).expect("fits");
        assert_eq!(placer.nodes()[d.node].name, "n1");
        placer.bind(d.node, &ask, &mut counters).expect("bound");
        let stuck = placer.place(&ask, &counters).expect_err("n3 is zone c");
        assert_eq!(
            stuck.to_string(),
            "0/3 nodes: 2 constraint hostname:UNIQUE, 1 constraint zone:IN:a,b"
        );
    }

    #[test]
    fn a_bad_rule_names_its_object_and_field() {
        let objects = vec![object(
            "broken",
            "prod",
            None,
            Enforcement::Required,
            ConstraintRule::new("zone", "MAX_PER", Some("x")),
        )];
        let err = constraints_for(&app(), &objects).expect_err("bad value");
        assert_eq!(err.object, "Constraint prod/broken");
        assert_eq!(err.field, "spec.rules[0]");
        assert!(
            err.to_string().contains("must be a positive integer"),
            "{err}"
        );
    }
}

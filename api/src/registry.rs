//! The kind registry the API server iterates: kind ↔ plural ↔ schema ↔ CRD.

use crate::kinds::{
    app::App, constraint::Constraint, event::Event, framework::Framework, job::Job,
    job_run::JobRun, node::Node, quota::Quota, release::Release, task::Task, volume::Volume,
};
use crate::resource::KindInfo;

/// Every Drover kind, in the order the docs list them.
pub const KINDS: &[KindInfo] = &[
    KindInfo::of::<App>(),
    KindInfo::of::<Task>(),
    KindInfo::of::<Job>(),
    KindInfo::of::<JobRun>(),
    KindInfo::of::<Volume>(),
    KindInfo::of::<Constraint>(),
    KindInfo::of::<Node>(),
    KindInfo::of::<Framework>(),
    KindInfo::of::<Quota>(),
    KindInfo::of::<Release>(),
    KindInfo::of::<Event>(),
];

/// The kind answering to `name`: its kind (case-insensitive), plural, singular, a short
/// name or `<plural>.drover.dev`.
pub fn find_kind(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.answers_to(name))
}

/// The kind whose `kind` is exactly `kind`.
pub fn kind_by_name(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// The kind whose plural is exactly `plural` (URL segments).
pub fn kind_by_plural(plural: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_avoid_kubectl_short_names() {
        let mut seen = BTreeSet::new();
        for k in KINDS {
            for name in [k.kind, k.plural, k.singular]
                .into_iter()
                .chain(k.short_names.iter().copied())
            {
                assert!(
                    seen.insert(name.to_ascii_lowercase()) || name.eq_ignore_ascii_case(k.singular),
                    "{name} used twice"
                );
            }
            for builtin in ["no", "ev", "po", "quota", "svc", "ns", "cm", "pv", "pvc"] {
                assert!(
                    !k.short_names.contains(&builtin),
                    "{} uses {builtin}",
                    k.kind
                );
            }
        }
        assert_eq!(KINDS.len(), 11);
    }

    #[test]
    fn lookups() {
        assert_eq!(find_kind("app").map(|k| k.kind), Some("App"));
        assert_eq!(find_kind("jr").map(|k| k.kind), Some("JobRun"));
        assert_eq!(find_kind("nodes.drover.dev").map(|k| k.kind), Some("Node"));
        assert_eq!(kind_by_plural("quotas").map(|k| k.kind), Some("Quota"));
        assert!(find_kind("pods").is_none());
    }
}

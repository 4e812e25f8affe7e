//! Shared object-level building blocks: API group constants, status conditions,
//! object references and conversions between chrono and Kubernetes timestamps.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Drover kind.
pub const GROUP: &str = "drover.dev";
/// API version of every Drover kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Drover kind.
pub const API_VERSION: &str = "drover.dev/v1alpha1";

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Status of a condition, as in Kubernetes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known (yet).
    #[default]
    Unknown,
}

/// One observation about an object (`Ready`, `Progressing`, `Available`, …).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// CamelCase condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// One-word CamelCase reason for the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition, keeping `lastTransitionTime` when the status did not change.
/// Returns true when anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            if *old == new {
                return false;
            }
            *old = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// A reference to another object (the subject of an Event, the owner of a Task).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apiVersion` of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: String,
    /// Namespace of the referent (absent for cluster-scoped kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the referent.
    pub name: String,
    /// UID of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// `resourceVersion` of the referent when the reference was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// A field within the referent (`spec.healthChecks[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

/// Converts a chrono instant into a Kubernetes `Time` (second precision is kept as is;
/// sub-second precision is kept too, though the wire format drops it).
pub fn time_from_chrono(t: DateTime<Utc>) -> Time {
    let ts = Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    Time(ts)
}

/// Converts a Kubernetes `Time` into a chrono instant.
pub fn time_to_chrono(t: &Time) -> DateTime<Utc> {
    let nanos = u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0);
    DateTime::from_timestamp(t.0.as_second(), nanos).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips_through_chrono() {
        let t = DateTime::from_timestamp(1_767_225_600, 5).unwrap_or_default();
        assert_eq!(time_to_chrono(&time_from_chrono(t)), t);
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let t0 = time_from_chrono(DateTime::UNIX_EPOCH);
        let mut conds = vec![Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            last_transition_time: Some(t0.clone()),
            ..Default::default()
        }];
        let changed = set_condition(
            &mut conds,
            Condition {
                type_: "Ready".into(),
                status: ConditionStatus::True,
                reason: Some("Healthy".into()),
                last_transition_time: Some(time_from_chrono(Utc::now())),
                ..Default::default()
            },
        );
        assert!(changed);
        assert_eq!(conds[0].last_transition_time, Some(t0));
        assert_eq!(conds[0].reason.as_deref(), Some("Healthy"));
    }
}

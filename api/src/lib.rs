//! Drover's resource types (group `drover.dev`, version `v1alpha1`): serde + schemars
//! types for every kind, their defaults and validation, Marathon constraints, job
//! schedules, manifest parsing and CRD rendering. No tokio, no I/O.

pub mod constraint;
pub mod container;
pub mod crd;
pub mod defaults;
pub mod health;
pub mod kinds;
pub mod manifest;
pub mod meta;
pub mod mounts;
pub mod ports;
pub mod registry;
pub mod resource;
pub mod resources;
pub mod schedule;
pub mod schema;
pub mod selector;
pub mod validation;

pub use constraint::{ConstraintOp, ConstraintRule, ParsedConstraint};
pub use defaults::Defaulting;
pub use kinds::{
    app::App, constraint::Constraint, event::Event, framework::Framework, job::Job,
    job_run::JobRun, node::Node, quota::Quota, release::Release, task::Task, volume::Volume,
};
pub use manifest::{parse_manifests, AnyObject, ManifestError};
pub use meta::{Condition, ConditionStatus, ObjectMeta, API_VERSION, GROUP, VERSION};
pub use registry::{find_kind, KINDS};
pub use resource::{DroverKind, KindInfo, PrinterColumn};
pub use schedule::Schedule;
pub use schema::unknown_fields;
pub use validation::{Validate, ValidationError, ValidationErrors};

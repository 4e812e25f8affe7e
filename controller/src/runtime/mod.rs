//! The controller runtime, shaped like kube-runtime but reading the store directly:
//! `watcher` (list + watch as an explicit state machine, re-list on compaction) →
//! `reflector` (a cache readers share) → `queue` (a de-duplicating delay queue) →
//! `controller` (one reconcile per key at a time, `Action`s and an error policy).
//! `leader` elects one active controller on a store lease.

pub mod controller;
pub mod leader;
pub mod object;
pub mod queue;
pub mod reflector;
pub mod watcher;

pub use controller::{Action, Controller};
pub use object::ObjectKey;

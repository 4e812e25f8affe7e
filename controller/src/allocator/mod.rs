//! The two-level allocator's building blocks (DESIGN.md §6): the resource `inventory`
//! of every node, the weighted `drf` order of roles (level 1), and the `placement`
//! pipeline — feasibility `filter`s, `score`rs, best — that chooses a node for one
//! instance and says, when none fits, why not in words (level 2).
//!
//! At scale (`sampled`): node `classes` cache attribute-constraint results, `counters`
//! make placed-dependent constraints O(1), a bounded sample of feasible nodes is scored.
//! `constraint_objects` adds namespace Constraint objects' rules (required / preferred);
//! `level1` grants each App its weighted-DRF share within Quota (the App scheduler's
//! level 1); `task_template` renders the Task objects of placed instances; `app_plan` places the
//! missing instances of one App in one call (what the apps controller needs).

pub mod app_plan;
pub mod classes;
pub mod constraint_objects;
pub mod counters;
pub mod drf;
pub mod filter;
pub mod inventory;
pub mod level1;
pub mod offers;
pub mod placement;
pub mod sampled;
pub mod score;
pub mod task_template;

pub use app_plan::{plan_instances, Planned};
pub use constraint_objects::{constraints_for, ConstraintsError};
pub use counters::AppCounters;
pub use inventory::{Amounts, Inventory, NodeState};
pub use placement::{place, Request, Unplaceable};
pub use sampled::{port_asks, Ask, Decision, Placer};

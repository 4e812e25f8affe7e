//! The two-level allocator's building blocks (DESIGN.md §6): the resource `inventory`
//! of every node, the weighted `drf` order of roles (level 1), and the `placement`
//! pipeline — feasibility `filter`s, `score`rs, best — that chooses a node for one
//! instance and says, when none fits, why not in words (level 2).

pub mod drf;
pub mod filter;
pub mod inventory;
pub mod placement;
pub mod score;

pub use inventory::{Amounts, Inventory, NodeState};
pub use placement::{place, Request, Unplaceable};

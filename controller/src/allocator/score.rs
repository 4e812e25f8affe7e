//! Scorers rank the nodes that fit: spread (least allocated first, Marathon's habit) or
//! bin-pack (most allocated first). Higher is better; ties go to the lower node name.

use crate::allocator::inventory::{Amounts, NodeState};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    #[default]
    Spread,
    BinPack,
}

/// How full the node would be after placing `want`, as its dominant share (0..=1).
fn fullness(node: &NodeState, want: &Amounts) -> f64 {
    let mut used = node.used;
    used.add(want);
    used.dominant_share(&node.allocatable)
}

pub fn score(strategy: Strategy, node: &NodeState, want: &Amounts) -> f64 {
    let f = fullness(node, want);
    match strategy {
        Strategy::Spread => 1.0 - f,
        Strategy::BinPack => f,
    }
}

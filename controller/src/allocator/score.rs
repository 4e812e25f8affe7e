//! Scorers rank the nodes that fit: spread (least allocated first, Marathon's habit) or
//! bin-pack (most allocated first). Higher is better; ties go to the lower node name.

use crate::allocator::inventory::{Amounts, NodeState};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    #[default]
    Spread,
    BinPack,
}

pub fn score(strategy: Strategy, node: &NodeState, want: &Amounts) -> f64 {
    score_amounts(strategy, &node.allocatable, &node.used, want)
}

/// [`score`] from a node's allocatable and used amounts alone, so the sampled walk can
/// score from its compact copy of them (the same arithmetic, so the same result).
pub fn score_amounts(
    strategy: Strategy,
    allocatable: &Amounts,
    used: &Amounts,
    want: &Amounts,
) -> f64 {
    // How full the node would be after placing `want`, as its dominant share (0..=1).
    let mut after = *used;
    after.add(want);
    let f = after.dominant_share(allocatable);
    match strategy {
        Strategy::Spread => 1.0 - f,
        Strategy::BinPack => f,
    }
}

//! Placing the missing instances of one App in one call, for the apps controller: its
//! own and its Constraint objects' rules (required filter, preferred rank), fixed and
//! dynamic host ports, on the sampled pipeline — exhaustive up to [`EXHAUSTIVE_UP_TO`]
//! nodes, so small clusters get the best node and exact reasons.

use drover_api::ports::PortSpec;

use crate::allocator::counters::AppCounters;
use crate::allocator::filter::NamedConstraint;
use crate::allocator::inventory::{Amounts, Inventory};
use crate::allocator::sampled::{port_asks, Ask, Placer};
use crate::allocator::score::Strategy;

/// Clusters up to this size score every feasible node.
pub const EXHAUSTIVE_UP_TO: usize = 1000;

/// One placed instance: the node's index in the inventory and its host ports (in the
/// App's port order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub node: usize,
    pub host_ports: Vec<u16>,
}

/// Chooses nodes for `missing` instances needing `resources` and `ports`, given the
/// nodes the App's running instances are on (`placed`, inventory indexes). Returns the
/// placements made, the inventory with them bound, and, if some could not be placed,
/// why ("0/12 nodes: 7 insufficient memMiB, 5 constraint hostname:UNIQUE").
pub fn plan_instances(
    inv: Inventory,
    required: &[NamedConstraint],
    preferred: &[NamedConstraint],
    resources: Amounts,
    ports: &[PortSpec],
    placed: &[usize],
    missing: usize,
) -> (Vec<Planned>, Inventory, Option<String>) {
    let exhaustive = inv.nodes.len() <= EXHAUSTIVE_UP_TO;
    let placed_nodes: Vec<&crate::allocator::NodeState> =
        placed.iter().filter_map(|&i| inv.nodes.get(i)).collect();
    let mut counters = AppCounters::from_placed(required.iter().chain(preferred), &placed_nodes);
    let mut placer = Placer::new(inv, crate::allocator::inventory::next_random());
    if exhaustive {
        placer.limit = Some(usize::MAX);
    }
    let ask = Ask::new(
        resources,
        port_asks(ports),
        required,
        preferred,
        Strategy::Spread,
    );
    let mut out = Vec::new();
    let mut why = None;
    for _ in 0..missing {
        match placer.place(&ask, &counters) {
            Ok(d) => match placer.bind(d.node, &ask, &mut counters) {
                Some(host_ports) => out.push(Planned {
                    node: d.node,
                    host_ports,
                }),
                None => {
                    why = Some("insufficient ports".to_string());
                    break;
                }
            },
            Err(e) => {
                why = Some(e.to_string());
                break;
            }
        }
    }
    (out, placer.inv, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::inventory::{NodeState, PortPool};
    use drover_api::ConstraintRule;

    fn node(name: &str) -> NodeState {
        NodeState {
            name: name.into(),
            attributes: Default::default(),
            allocatable: Amounts {
                cpus: 4.0,
                mem_mib: 1024,
                disk_mib: 0,
                gpus: 0,
            },
            used: Amounts::default(),
            ports: PortPool {
                ranges: vec![(31000, 31010)],
                used: Default::default(),
            },
            schedulable: true,
            ready: true,
        }
    }

    #[test]
    fn plans_fixed_ports_unique_hosts_and_says_why_the_rest_is_stuck() {
        let inv = Inventory::new(vec![node("a"), node("b"), node("c")]);
        let unique = [
            NamedConstraint::from_rule(&ConstraintRule::new("hostname", "UNIQUE", None))
                .expect("ok"),
        ];
        let ports = [
            PortSpec {
                host_port: Some(8080),
                ..Default::default()
            },
            PortSpec::default(),
        ];
        let want = Amounts {
            cpus: 1.0,
            mem_mib: 100,
            disk_mib: 0,
            gpus: 0,
        };
        // One instance already runs on b.
        let (planned, inv, why) = plan_instances(inv, &unique, &[], want, &ports, &[1], 3);
        assert_eq!(planned.len(), 2);
        let mut nodes: Vec<usize> = planned.iter().map(|p| p.node).collect();
        nodes.sort_unstable();
        assert_eq!(nodes, vec![0, 2]);
        assert!(planned.iter().all(|p| p.host_ports[0] == 8080));
        assert!(inv.nodes[0].ports.used.contains(&8080));
        assert_eq!(
            why.as_deref(),
            Some("0/3 nodes: 2 port 8080 in use, 1 constraint hostname:UNIQUE")
        );
    }
}

//! Level 2: choose a node for one instance — every filter on every node, then the best
//! score — or say why nothing fits: "0/12 nodes: 7 insufficient memMiB, 5 constraint
//! hostname:UNIQUE" (each node counted once, under its first failing filter).

use std::collections::BTreeMap;

use crate::allocator::filter::{default_filters, Filter, NamedConstraint};
use crate::allocator::inventory::{Amounts, Inventory, NodeState};
use crate::allocator::score::{score, Strategy};

pub struct Request<'a> {
    pub resources: Amounts,
    /// Host ports wanted.
    pub ports: usize,
    pub constraints: &'a [NamedConstraint],
    /// The nodes the App's other instances already run on (one entry per instance).
    pub placed: Vec<&'a NodeState>,
    pub strategy: Strategy,
}

/// Nothing fits; the reasons, counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaceable {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl std::fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0/{} nodes", self.nodes)?;
        if self.nodes == 0 {
            return f.write_str(" registered");
        }
        let mut reasons: Vec<(&String, &usize)> = self.reasons.iter().collect();
        // Most common first, then by name, so the message is stable.
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        write!(f, ": {}", parts.join(", "))
    }
}

/// Picks the best node for `req`, by index into `inv.nodes`.
pub fn place(inv: &Inventory, req: &Request<'_>) -> Result<usize, Unplaceable> {
    place_with(inv, req, &default_filters())
}

pub fn place_with(
    inv: &Inventory,
    req: &Request<'_>,
    filters: &[Box<dyn Filter>],
) -> Result<usize, Unplaceable> {
    let mut best: Option<(f64, usize)> = None;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (i, node) in inv.nodes.iter().enumerate() {
        if let Some(rejection) = filters.iter().find_map(|f| f.check(req, node).err()) {
            *reasons.entry(rejection.to_string()).or_default() += 1;
            continue;
        }
        let s = score(req.strategy, node, &req.resources);
        let better = match best {
            None => true,
            Some((bs, bi)) => {
                s > bs + 1e-12 || ((s - bs).abs() <= 1e-12 && node.name < inv.nodes[bi].name)
            }
        };
        if better {
            best = Some((s, i));
        }
    }
    best.map(|(_, i)| i).ok_or(Unplaceable {
        nodes: inv.nodes.len(),
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::inventory::PortPool;
    use drover_api::ConstraintRule;

    fn node(name: &str, cpus: f64, mem: i64, rack: &str) -> NodeState {
        NodeState {
            name: name.into(),
            attributes: [("rack".to_string(), rack.to_string())].into(),
            allocatable: Amounts {
                cpus,
                mem_mib: mem,
                disk_mib: 10_000,
                gpus: 0,
            },
            used: Amounts::default(),
            ports: PortPool {
                ranges: vec![(31000, 31002)],
                used: Default::default(),
            },
            schedulable: true,
            ready: true,
        }
    }

    fn want(cpus: f64, mem: i64) -> Amounts {
        Amounts {
            cpus,
            mem_mib: mem,
            disk_mib: 0,
            gpus: 0,
        }
    }

    fn constraint(field: &str, op: &str, value: Option<&str>) -> NamedConstraint {
        NamedConstraint::from_rule(&ConstraintRule::new(field, op, value)).expect("valid")
    }

    #[test]
    fn spreads_and_respects_unique_then_explains_why_stuck() {
        let mut inv = Inventory::new(vec![
            node("a", 4.0, 1024, "r1"),
            node("b", 4.0, 1024, "r1"),
            node("c", 4.0, 256, "r2"),
        ]);
        let unique = [constraint("hostname", "UNIQUE", None)];
        let mut placed: Vec<usize> = Vec::new();
        for _ in 0..2 {
            let req = Request {
                resources: want(1.0, 512),
                ports: 1,
                constraints: &unique,
                placed: placed.iter().map(|&i| &inv.nodes[i]).collect(),
                strategy: Strategy::Spread,
            };
            let i = place(&inv, &req).expect("fits");
            placed.push(i);
            inv.bind(i, &want(1.0, 512), &[]);
        }
        placed.sort_unstable();
        assert_eq!(placed, vec![0, 1], "a and b; c lacks memory");
        let req = Request {
            resources: want(1.0, 512),
            ports: 1,
            constraints: &unique,
            placed: placed.iter().map(|&i| &inv.nodes[i]).collect(),
            strategy: Strategy::Spread,
        };
        let stuck = place(&inv, &req).expect_err("nothing left");
        assert_eq!(
            stuck.to_string(),
            "0/3 nodes: 2 constraint hostname:UNIQUE, 1 insufficient memMiB"
        );
    }

    #[test]
    fn cordoned_not_ready_ports_and_attributes() {
        let mut a = node("a", 4.0, 1024, "r1");
        a.schedulable = false;
        let mut b = node("b", 4.0, 1024, "r2");
        b.ready = false;
        let mut c = node("c", 4.0, 1024, "r3");
        c.ports.used.extend([31000, 31001, 31002]);
        let d = node("d", 4.0, 1024, "r4");
        let e = node("e", 4.0, 1024, "r5");
        let inv = Inventory::new(vec![a, b, c, d, e]);
        let like = [
            constraint("rack", "LIKE", Some("r[45]")),
            constraint("rack", "IS", Some("r5")),
        ];
        let req = Request {
            resources: want(1.0, 128),
            ports: 1,
            constraints: &like,
            placed: Vec::new(),
            strategy: Strategy::Spread,
        };
        assert_eq!(inv.nodes[place(&inv, &req).expect("e fits")].name, "e");
        let none = [constraint("rack", "IS", Some("r9"))];
        let req = Request {
            constraints: &none,
            ..req
        };
        let stuck = place(&inv, &req).expect_err("no rack r9");
        assert_eq!(
            stuck.to_string(),
            "0/5 nodes: 2 constraint rack:IS:r9, 1 insufficient ports, 1 node not ready, 1 node unschedulable"
        );
    }

    #[test]
    fn bin_pack_fills_the_fullest_node_first() {
        let mut inv = Inventory::new(vec![node("a", 4.0, 4096, "r"), node("b", 4.0, 4096, "r")]);
        inv.bind(1, &want(2.0, 1024), &[]);
        let req = Request {
            resources: want(1.0, 512),
            ports: 0,
            constraints: &[],
            placed: Vec::new(),
            strategy: Strategy::BinPack,
        };
        assert_eq!(place(&inv, &req), Ok(1));
        let req = Request {
            strategy: Strategy::Spread,
            ..req
        };
        assert_eq!(place(&inv, &req), Ok(0));
    }
}

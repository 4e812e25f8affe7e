//! Level 2 at scale: the placement pipeline over a long-lived inventory — feasibility
//! (node state, resources, ports, fixed host ports, constraints: attribute ones cached
//! per node class, placed-dependent ones from the App's counters) → rank (spread or
//! bin-pack, plus one point per preferred rule satisfied) → limit → best.
//!
//! As Nomad does, it walks the nodes in a shuffled order from where the last placement
//! stopped and keeps the best of the first `limit` feasible ones (`max(2, log2 N)`,
//! twice that with preferred rules) instead of scoring every node. Rejections
//! are counted over the nodes examined. When nothing fits the walk has covered every
//! node, so the "0/N nodes: …" message counts every node, as the exhaustive
//! [`crate::allocator::place`] does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use drover_api::ports::PortSpec;

use crate::allocator::classes::{cacheable, FeasibilityCache, NodeClasses};
use crate::allocator::counters::{depends_on_placed, AppCounters};
use crate::allocator::filter::{NamedConstraint, Rejection};
use crate::allocator::inventory::{Amounts, Inventory, NodeState};
use crate::allocator::placement::Unplaceable;
use crate::allocator::score::{score, Strategy};

/// What one instance needs.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    pub resources: Amounts,
    /// The App's ports in order: `Some(p)` a fixed host port, `None` a dynamic one.
    pub ports: Vec<Option<u16>>,
    pub required: &'a [NamedConstraint],
    pub preferred: &'a [NamedConstraint],
    pub strategy: Strategy,
    /// Identifies the constraint set in the feasibility cache.
    key: u64,
    dynamic: usize,
    /// Per constraint (required, then preferred): how it is checked.
    checks: Vec<Check>,
    any_cached: bool,
}

/// How one constraint is checked on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// From the class's cached mask.
    Cached,
    /// From the App's counters.
    Counted,
    /// Directly on the node's value (hostname-based attribute rules).
    Direct,
}

impl<'a> Ask<'a> {
    pub fn new(
        resources: Amounts,
        ports: Vec<Option<u16>>,
        required: &'a [NamedConstraint],
        preferred: &'a [NamedConstraint],
        strategy: Strategy,
    ) -> Self {
        let mut text = String::new();
        for c in required {
            text.push_str(&c.text);
            text.push('\n');
        }
        text.push('|');
        for c in preferred {
            text.push_str(&c.text);
            text.push('\n');
        }
        let dynamic = ports.iter().filter(|p| p.is_none()).count();
        let checks: Vec<Check> = required
            .iter()
            .chain(preferred)
            .enumerate()
            .map(|(k, c)| {
                if k < 64 && cacheable(c) {
                    Check::Cached
                } else if depends_on_placed(&c.parsed.op) {
                    Check::Counted
                } else {
                    Check::Direct
                }
            })
            .collect();
        let any_cached = checks.contains(&Check::Cached);
        Ask {
            checks,
            any_cached,
            resources,
            ports,
            required,
            preferred,
            strategy,
            key: crate::fingerprint::fnv1a64(text.as_bytes()),
            dynamic,
        }
    }

    fn all(&self) -> impl Iterator<Item = &'a NamedConstraint> {
        self.required.iter().chain(self.preferred.iter())
    }
}

/// An App's ports as the allocator wants them: a non-zero `hostPort` is fixed.
pub fn port_asks(ports: &[PortSpec]) -> Vec<Option<u16>> {
    ports
        .iter()
        .map(|p| match p.host_port {
            Some(hp) if hp > 0 && hp <= i32::from(u16::MAX) => Some(hp as u16),
            _ => None,
        })
        .collect()
}

/// Where an instance goes and what choosing it cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub node: usize,
    /// Nodes looked at.
    pub examined: usize,
    /// Feasible nodes among them (scored).
    pub feasible: usize,
}

/// Why a node was rejected, without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reject {
    Plain(RejectKind),
    /// Index into the ask's required constraints.
    Constraint(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RejectKind {
    NotReady,
    Unschedulable,
    Insufficient(&'static str),
    Ports,
    PortInUse(u16),
}

impl Reject {
    fn to_rejection(self, ask: &Ask<'_>) -> Rejection {
        match self {
            Reject::Plain(RejectKind::NotReady) => Rejection::NotReady,
            Reject::Plain(RejectKind::Unschedulable) => Rejection::Unschedulable,
            Reject::Plain(RejectKind::Insufficient(w)) => Rejection::Insufficient(w),
            Reject::Plain(RejectKind::Ports) => Rejection::Ports,
            Reject::Plain(RejectKind::PortInUse(p)) => Rejection::PortInUse(p),
            Reject::Constraint(k) => Rejection::Constraint(
                ask.required
                    .get(k)
                    .map(|c| c.text.clone())
                    .unwrap_or_default(),
            ),
        }
    }
}

/// The scheduler's state: the inventory, updated in place as instances are bound, the
/// node classes and their feasibility cache, and where the walk stopped.
pub struct Placer {
    pub inv: Inventory,
    classes: NodeClasses,
    pub cache: FeasibilityCache,
    order: Vec<u32>,
    cursor: usize,
    /// Every rejection of every placement, by reason.
    pub rejections: BTreeMap<String, u64>,
    /// Overrides the candidate limit (`Some(usize::MAX)` = score every feasible node).
    pub limit: Option<usize>,
    buf: String,
}

impl Placer {
    /// A placer over `inv`, walking the nodes in an order shuffled by `seed`.
    pub fn new(inv: Inventory, seed: u64) -> Self {
        let classes = NodeClasses::new(&inv.nodes);
        let mut order: Vec<u32> = (0..inv.nodes.len() as u32).collect();
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        Placer {
            inv,
            classes,
            cache: FeasibilityCache::default(),
            order,
            cursor: 0,
            rejections: BTreeMap::new(),
            limit: None,
            buf: String::new(),
        }
    }

    pub fn classes(&self) -> usize {
        self.classes.count()
    }

    /// How many feasible nodes to score for `ask`.
    pub fn limit_for(&self, ask: &Ask<'_>) -> usize {
        if let Some(l) = self.limit {
            return l.max(1);
        }
        let n = self.inv.nodes.len().max(2);
        let base = (usize::BITS - n.leading_zeros()) as usize; // ceil-ish log2
                                                               // Preferred rules rank on more than load: look at more nodes for them.
        let base = base.max(2);
        if ask.preferred.is_empty() {
            base
        } else {
            base * 2
        }
    }

    /// Chooses a node for one instance of the App whose placed instances `counters`
    /// counts. Does not bind: call [`Placer::bind`] with the decision.
    pub fn place(
        &mut self,
        ask: &Ask<'_>,
        counters: &AppCounters,
    ) -> Result<Decision, Unplaceable> {
        let n = self.order.len();
        let limit = self.limit_for(ask);
        // Stop early once something fits and this many nodes were looked at: a rare
        // feasible node (GROUP_BY near the end of a round) must not cost a full scan.
        let scan_cap = limit.saturating_mul(4).max(64);
        let mut reasons: Vec<(Reject, usize)> = Vec::new();
        let mut best: Option<(f64, usize)> = None;
        let mut feasible = 0;
        let mut examined = 0;
        while examined < n {
            let i = self.order[(self.cursor + examined) % n] as usize;
            examined += 1;
            match self.check(ask, counters, i) {
                Err(r) => match reasons.iter_mut().find(|(k, _)| *k == r) {
                    Some((_, c)) => *c += 1,
                    None => reasons.push((r, 1)),
                },
                Ok(bonus) => {
                    feasible += 1;
                    let node = &self.inv.nodes[i];
                    let s = score(ask.strategy, node, &ask.resources) + bonus;
                    let better = match best {
                        None => true,
                        Some((bs, bi)) => {
                            s > bs + 1e-12
                                || ((s - bs).abs() <= 1e-12 && node.name < self.inv.nodes[bi].name)
                        }
                    };
                    if better {
                        best = Some((s, i));
                    }
                    if feasible >= limit || examined >= scan_cap {
                        break;
                    }
                }
            }
        }
        self.cursor = (self.cursor + examined) % n.max(1);
        for (r, c) in &reasons {
            self.buf.clear();
            let _ = write!(self.buf, "{}", r.to_rejection(ask));
            match self.rejections.get_mut(self.buf.as_str()) {
                Some(t) => *t += *c as u64,
                None => {
                    self.rejections.insert(self.buf.clone(), *c as u64);
                }
            }
        }
        match best {
            Some((_, node)) => Ok(Decision {
                node,
                examined,
                feasible,
            }),
            None => Err(Unplaceable {
                nodes: n,
                reasons: reasons
                    .iter()
                    .map(|(r, c)| (r.to_rejection(ask).to_string(), *c))
                    .fold(BTreeMap::new(), |mut m, (k, c)| {
                        *m.entry(k).or_insert(0) += c;
                        m
                    }),
            }),
        }
    }

    /// Every filter, in the order of [`crate::allocator::filter::default_filters`], then
    /// fixed host ports; Ok carries the preferred-rule bonus.
    fn check(&mut self, ask: &Ask<'_>, counters: &AppCounters, i: usize) -> Result<f64, Reject> {
        let node = &self.inv.nodes[i];
        if !node.ready {
            return Err(Reject::Plain(RejectKind::NotReady));
        }
        if !node.schedulable {
            return Err(Reject::Plain(RejectKind::Unschedulable));
        }
        if let Some(what) = node.free().shortfall(&ask.resources) {
            return Err(Reject::Plain(RejectKind::Insufficient(what)));
        }
        let fixed = ask.ports.len() - ask.dynamic;
        let fixed_in_range = if fixed == 0 {
            0
        } else {
            ask.ports
                .iter()
                .flatten()
                .filter(|p| {
                    node.ports
                        .ranges
                        .iter()
                        .any(|(a, b)| (*a..=*b).contains(*p))
                })
                .count()
        };
        if !node.ports.has_free(ask.dynamic + fixed_in_range) {
            return Err(Reject::Plain(RejectKind::Ports));
        }
        if fixed > 0 {
            if let Some(p) = ask
                .ports
                .iter()
                .flatten()
                .find(|p| !node.ports.is_free(**p))
            {
                return Err(Reject::Plain(RejectKind::PortInUse(*p)));
            }
        }
        let mask = if ask.any_cached {
            self.cache
                .failing(ask.key, self.classes.of(i), ask.all(), node)
        } else {
            0
        };
        let holds = |k: usize, c: &NamedConstraint| -> bool {
            match ask.checks[k] {
                Check::Cached => mask & (1 << k) == 0,
                Check::Counted => counters.matches(&c.parsed, node.field(&c.parsed.field)),
                Check::Direct => c.parsed.matches(node.field(&c.parsed.field), &[]),
            }
        };
        for (k, c) in ask.required.iter().enumerate() {
            if !holds(k, c) {
                return Err(Reject::Constraint(k));
            }
        }
        let base = ask.required.len();
        let bonus = ask
            .preferred
            .iter()
            .enumerate()
            .filter(|(k, c)| holds(base + k, c))
            .count();
        Ok(bonus as f64)
    }

    /// Binds one instance to `node`: resources, host ports (fixed ones as asked, dynamic
    /// ones at random, in the App's port order) and the App's counters. None when the
    /// ports are gone (the decision is stale).
    pub fn bind(
        &mut self,
        node: usize,
        ask: &Ask<'_>,
        counters: &mut AppCounters,
    ) -> Option<Vec<u16>> {
        let n = self.inv.nodes.get_mut(node)?;
        if ask.ports.iter().flatten().any(|p| !n.ports.is_free(*p)) {
            return None;
        }
        for p in ask.ports.iter().flatten() {
            n.ports.used.insert(*p);
        }
        let Some(mut dynamic) = n.ports.take(ask.dynamic) else {
            for p in ask.ports.iter().flatten() {
                n.ports.used.remove(p);
            }
            return None;
        };
        dynamic.reverse();
        let host_ports: Vec<u16> = ask
            .ports
            .iter()
            .map(|p| p.unwrap_or_else(|| dynamic.pop().unwrap_or(0)))
            .collect();
        n.used.add(&ask.resources);
        counters.add(n);
        Some(host_ports)
    }

    /// Undoes [`Placer::bind`].
    pub fn unbind(
        &mut self,
        node: usize,
        ask: &Ask<'_>,
        host_ports: &[u16],
        counters: &mut AppCounters,
    ) {
        self.inv.unbind(node, &ask.resources, host_ports);
        if let Some(n) = self.inv.nodes.get(node) {
            counters.remove(n);
        }
    }

    /// Replaces what node `i` is (attributes, capacity, state) with `fresh`, keeping
    /// what is bound to it — after a conflict showed the node changed.
    pub fn refresh_node(&mut self, i: usize, fresh: &NodeState) {
        let Some(n) = self.inv.nodes.get_mut(i) else {
            return;
        };
        let reclass = n.attributes != fresh.attributes;
        n.attributes = fresh.attributes.clone();
        n.allocatable = fresh.allocatable;
        n.ports.ranges = fresh.ports.ranges.clone();
        n.schedulable = fresh.schedulable;
        n.ready = fresh.ready;
        if reclass {
            let snapshot = n.clone();
            self.classes.reclassify(i, &snapshot);
            self.cache.clear();
        }
    }

    pub fn nodes(&self) -> &[NodeState] {
        &self.inv.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::inventory::PortPool;
    use crate::allocator::placement::{place, Request};
    use drover_api::ConstraintRule;

    fn rng(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn cluster(n: usize, seed: u64) -> Inventory {
        let mut x = seed;
        let nodes = (0..n)
            .map(|i| {
                let r = rng(&mut x);
                NodeState {
                    name: format!("node-{i:03}"),
                    attributes: [
                        ("rack".to_string(), format!("r{}", r % 7)),
                        ("zone".to_string(), format!("z{}", (r / 7) % 3)),
                    ]
                    .into(),
                    allocatable: Amounts {
                        cpus: [2.0, 4.0, 8.0][(r % 3) as usize],
                        mem_mib: [1024, 2048, 4096][((r / 3) % 3) as usize],
                        disk_mib: 1000,
                        gpus: 0,
                    },
                    used: Amounts::default(),
                    ports: PortPool {
                        ranges: vec![(31000, 31003)],
                        used: Default::default(),
                    },
                    schedulable: !r.is_multiple_of(17),
                    ready: !r.is_multiple_of(23),
                }
            })
            .collect();
        Inventory::new(nodes)
    }

    fn rules(list: &[(&str, &str, Option<&str>)]) -> Vec<NamedConstraint> {
        list.iter()
            .map(|(f, o, v)| {
                NamedConstraint::from_rule(&ConstraintRule::new(f, o, *v)).expect("ok")
            })
            .collect()
    }

    fn want(cpus: f64, mem: i64) -> Amounts {
        Amounts {
            cpus,
            mem_mib: mem,
            disk_mib: 0,
            gpus: 0,
        }
    }

    /// With the limit lifted, the cached, counter-based pipeline picks the node the
    /// exhaustive reference picks, and reports the same reasons when stuck, instance
    /// after instance on a random cluster of 200 nodes.
    #[test]
    fn cached_pipeline_matches_the_exhaustive_scan() {
        let sets = [
            rules(&[]),
            rules(&[("hostname", "UNIQUE", None)]),
            rules(&[("rack", "GROUP_BY", None), ("zone", "IN", Some("z0,z1"))]),
            rules(&[
                ("rack", "MAX_PER", Some("3")),
                ("zone", "LIKE", Some("z[12]")),
            ]),
            rules(&[("zone", "IS", Some("z2")), ("rack", "CLUSTER", None)]),
            rules(&[
                ("rack", "UNLIKE", Some("r[01]")),
                ("rack", "GROUP_BY", Some("4")),
            ]),
        ];
        for (s, set) in sets.iter().enumerate() {
            let inv = cluster(200, 0x1234_5678 + s as u64);
            let mut reference = inv.clone();
            let mut placer = Placer::new(inv, 7);
            placer.limit = Some(usize::MAX);
            let mut counters = AppCounters::new(set);
            let mut placed: Vec<usize> = Vec::new();
            let res = want(1.0, 700);
            for k in 0..150 {
                let ask = Ask::new(res, vec![None], set, &[], Strategy::Spread);
                let got = placer.place(&ask, &counters);
                let req = Request {
                    resources: res,
                    ports: 1,
                    constraints: set,
                    placed: placed.iter().map(|&i| &reference.nodes[i]).collect(),
                    strategy: Strategy::Spread,
                };
                let expected = place(&reference, &req);
                match (got, expected) {
                    (Ok(d), Ok(e)) => {
                        assert_eq!(d.node, e, "set {s}, instance {k}");
                        let ports = placer.bind(d.node, &ask, &mut counters).expect("ports");
                        reference.bind(e, &res, &ports);
                        placed.push(e);
                    }
                    (Err(a), Err(b)) => {
                        assert_eq!(a.to_string(), b.to_string(), "set {s}, instance {k}");
                        break;
                    }
                    (a, b) => panic!("set {s}, instance {k}: {a:?} vs {b:?}"),
                }
            }
            assert!(placed.len() >= 20, "set {s}: only {} placed", placed.len());
            assert!(placer.cache.hits > 0 || set.iter().all(|c| !cacheable(c)));
        }
    }

    /// With sampling (the default limit) every placement still passes every filter.
    #[test]
    fn sampling_never_places_an_infeasible_instance() {
        let set = rules(&[
            ("rack", "MAX_PER", Some("20")),
            ("zone", "IN", Some("z0,z2")),
        ]);
        let mut placer = Placer::new(cluster(200, 99), 3);
        let mut counters = AppCounters::new(&set);
        let mut placed: Vec<usize> = Vec::new();
        let res = want(0.5, 300);
        let mut stuck = None;
        for _ in 0..2000 {
            let ask = Ask::new(res, vec![None, Some(8080)], &set, &[], Strategy::BinPack);
            match placer.place(&ask, &counters) {
                Ok(d) => {
                    let node = placer.nodes()[d.node].clone();
                    assert!(d.feasible <= placer.limit_for(&ask));
                    assert!(node.ready && node.schedulable);
                    assert!(node.free().shortfall(&res).is_none());
                    assert!(node.ports.is_free(8080));
                    let values: Vec<&str> = placed
                        .iter()
                        .filter_map(|&i| placer.nodes()[i].field("rack"))
                        .collect();
                    for c in &set {
                        assert!(c.parsed.matches(node.field(&c.parsed.field), &values));
                    }
                    placer.bind(d.node, &ask, &mut counters).expect("bound");
                    placed.push(d.node);
                }
                Err(e) => {
                    stuck = Some(e.to_string());
                    break;
                }
            }
        }
        let stuck = stuck.expect("the cluster fills up");
        assert!(stuck.starts_with("0/200 nodes: "), "{stuck}");
        assert!(placer.rejections.values().sum::<u64>() > 0);
    }

    /// A fixed hostPort goes only where it is free and is bound exactly; once every
    /// node has it, the reason says so.
    #[test]
    fn fixed_host_ports() {
        let mut inv = cluster(4, 5);
        for n in &mut inv.nodes {
            n.ready = true;
            n.schedulable = true;
            n.allocatable = want(8.0, 8192);
        }
        inv.nodes[0].ports.used.insert(80);
        let mut placer = Placer::new(inv, 1);
        let mut counters = AppCounters::default();
        let ask = Ask::new(
            want(0.1, 10),
            vec![Some(80), None],
            &[],
            &[],
            Strategy::Spread,
        );
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let d = placer.place(&ask, &counters).expect("fits");
            let ports = placer.bind(d.node, &ask, &mut counters).expect("ports");
            assert_eq!(ports[0], 80);
            assert!((31000..=31003).contains(&ports[1]));
            nodes.push(d.node);
        }
        nodes.sort_unstable();
        assert_eq!(nodes, vec![1, 2, 3]);
        let stuck = placer
            .place(&ask, &counters)
            .expect_err("port 80 everywhere");
        assert_eq!(stuck.to_string(), "0/4 nodes: 4 port 80 in use");
        // A fixed port outside the dynamic range does not use up the range.
        assert_eq!(placer.nodes()[1].ports.free_count(), 3);
    }

    /// Preferred rules rank; they never make an instance unplaceable.
    #[test]
    fn preferred_rules_rank_but_never_block() {
        let mut inv = cluster(20, 11);
        for n in &mut inv.nodes {
            n.ready = true;
            n.schedulable = true;
        }
        let target = inv.nodes[5].field("rack").unwrap_or_default().to_string();
        let preferred = rules(&[("rack", "IS", Some(target.as_str()))]);
        let mut placer = Placer::new(inv, 2);
        placer.limit = Some(usize::MAX);
        let counters = AppCounters::default();
        let ask = Ask::new(want(0.1, 10), vec![], &[], &preferred, Strategy::Spread);
        let d = placer.place(&ask, &counters).expect("fits");
        assert_eq!(placer.nodes()[d.node].field("rack"), Some(target.as_str()));
        let nowhere = rules(&[("rack", "IS", Some("nope"))]);
        let ask = Ask::new(want(0.1, 10), vec![], &[], &nowhere, Strategy::Spread);
        assert!(placer.place(&ask, &counters).is_ok());
    }
}

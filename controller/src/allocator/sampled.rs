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
//!
//! The walk reads a compact copy of what it checks on every node (`Hot`: amounts,
//! free-port bound, state, class, name rank), stored in walk order, so it reads memory
//! sequentially instead of chasing a `NodeState`, its attribute map and its port set
//! per node; the full `NodeState` is read only for fixed host ports and hostname
//! rules. Constraints whose answer is the same for every node of a class (attribute
//! rules, and counter rules on an attribute while one placement is decided) are
//! answered once per class and walk. The decisions are the ones the per-node checks
//! made, node for node (the tests compare with the exhaustive reference).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;

use drover_api::ports::PortSpec;

use crate::allocator::classes::{cacheable, FeasibilityCache, MixHasher, NodeClasses};
use crate::allocator::counters::{depends_on_placed, value_hash, AppCounters, FieldChange};
use crate::allocator::filter::{NamedConstraint, Rejection};
use crate::allocator::inventory::{Amounts, Inventory, NodeState};
use crate::allocator::placement::Unplaceable;
use crate::allocator::score::{score_amounts, Strategy};

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
    /// The fixed host ports, in the App's port order.
    fixed: Vec<u16>,
    /// Per constraint (required, then preferred): how it is checked.
    checks: Vec<Check>,
    any_cached: bool,
    /// Some constraint is answered per node (hostname rules).
    per_node: bool,
    /// Some constraint reads the counters, so class answers last one placement.
    counted: bool,
}

/// How one constraint is checked on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// From the class's cached mask.
    Cached,
    /// From the App's counters, on an attribute: the same for every node of a class
    /// until the next instance is bound.
    CountedClass,
    /// From the App's counters, on the hostname.
    CountedNode,
    /// Directly on the node's value (hostname-based attribute rules).
    Direct,
}

impl Check {
    fn per_class(self) -> bool {
        matches!(self, Check::Cached | Check::CountedClass)
    }
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
        let fixed = ports.iter().flatten().copied().collect();
        let checks: Vec<Check> = required
            .iter()
            .chain(preferred)
            .enumerate()
            .map(|(k, c)| {
                if k < 64 && cacheable(c) {
                    Check::Cached
                } else if depends_on_placed(&c.parsed.op) {
                    if c.parsed.field == "hostname" {
                        Check::CountedNode
                    } else {
                        Check::CountedClass
                    }
                } else {
                    Check::Direct
                }
            })
            .collect();
        let any_cached = checks.contains(&Check::Cached);
        let per_node = checks.iter().any(|c| !c.per_class());
        let counted = checks
            .iter()
            .any(|c| matches!(c, Check::CountedClass | Check::CountedNode));
        Ask {
            checks,
            any_cached,
            per_node,
            counted,
            resources,
            ports,
            required,
            preferred,
            strategy,
            key: crate::fingerprint::fnv1a64(text.as_bytes()),
            dynamic,
            fixed,
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

const READY: u8 = 0;
const NOT_READY: u8 = 1;
const UNSCHEDULABLE: u8 = 2;

/// What the walk checks on every node it examines, copied out of the node's
/// `NodeState` (kept in step by bind, unbind and refresh).
#[derive(Clone, Copy, Debug)]
struct Hot {
    allocatable: Amounts,
    used: Amounts,
    /// The node's index in the inventory.
    node: u32,
    class: u32,
    /// The node's place among all node names: ties in score go to the lower name.
    name_rank: u32,
    /// [`value_hash`] of the name, for hostname rules.
    name_hash: u64,
    /// [`crate::allocator::inventory::PortPool`]'s cheap bound on free ports.
    cheap_ports: u32,
    /// The node's port range when it has exactly one; `(1, 0)` otherwise.
    range: (u16, u16),
    single_range: bool,
    state: u8,
}

impl Hot {
    fn of(n: &NodeState, node: usize, class: u32, name_rank: u32) -> Hot {
        Hot {
            name_hash: value_hash(&n.name),
            ..Hot::of_unnamed(n, node, class, name_rank)
        }
    }

    /// [`Hot::of`] without hashing the name (`name_hash` 0).
    fn of_unnamed(n: &NodeState, node: usize, class: u32, name_rank: u32) -> Hot {
        let single_range = n.ports.ranges.len() == 1;
        Hot {
            allocatable: n.allocatable,
            used: n.used,
            node: node as u32,
            class,
            name_rank,
            name_hash: 0,
            cheap_ports: n.ports.cheap_free().min(u32::MAX as usize) as u32,
            range: if single_range {
                n.ports.ranges[0]
            } else {
                (1, 0)
            },
            single_range,
            state: if !n.ready {
                NOT_READY
            } else if !n.schedulable {
                UNSCHEDULABLE
            } else {
                READY
            },
        }
    }
}

/// No required constraint fails.
const PASS: u32 = u32::MAX;

/// A class's answer to an ask's per-class constraints: the first required one that
/// fails (or [`PASS`]) and how many preferred ones hold. Valid while `stamp` is the
/// placer's.
#[derive(Clone, Copy, Debug, Default)]
struct Verdict {
    stamp: u32,
    fail: u32,
    bonus: u32,
}

/// The scheduler's state: the inventory, updated in place as instances are bound, the
/// node classes and their feasibility cache, and where the walk stopped.
pub struct Placer {
    /// Read it freely; change nodes only through [`Placer::bind`], [`Placer::unbind`]
    /// and [`Placer::refresh_node`], which keep the walk's copy in step.
    pub inv: Inventory,
    classes: NodeClasses,
    pub cache: FeasibilityCache,
    /// Per walk position (the shuffled order), what the walk checks.
    hot: Vec<Hot>,
    /// Per node, its walk position.
    pos: Vec<u32>,
    /// Per host port in use on some node: a bit per walk position, set where it is in
    /// use — so a fixed host port is checked without reading each node's port set.
    port_bits: HashMap<u16, Vec<u64>, BuildHasherDefault<MixHasher>>,
    cursor: usize,
    /// Per class, its answer for the ask being placed.
    verdicts: Vec<Verdict>,
    stamp: u32,
    /// The counter-free ask whose verdicts are current: they stay valid across its
    /// placements.
    memo: Option<u64>,
    /// The counted ask whose verdicts are current, with the id and version of the
    /// counters they were answered from.
    counted_memo: Option<(u64, u64, u64)>,
    /// The last bind: the counters' id and version after it, and the node.
    last_bound: Option<(u64, u64, usize)>,
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
        let nodes = &inv.nodes;
        let mut order: Vec<u32> = (0..nodes.len() as u32).collect();
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        // Equal names get equal ranks, so comparing ranks is comparing names.
        let mut by_name: Vec<u32> = (0..nodes.len() as u32).collect();
        by_name.sort_by(|a, b| nodes[*a as usize].name.cmp(&nodes[*b as usize].name));
        let mut rank = vec![0u32; nodes.len()];
        let mut r = 0u32;
        for (k, &i) in by_name.iter().enumerate() {
            if k > 0 && nodes[by_name[k - 1] as usize].name != nodes[i as usize].name {
                r = k as u32;
            }
            rank[i as usize] = r;
        }
        let mut pos = vec![0u32; nodes.len()];
        let words = nodes.len().div_ceil(64);
        let mut port_bits: HashMap<u16, Vec<u64>, BuildHasherDefault<MixHasher>> =
            HashMap::default();
        for (p, &i) in order.iter().enumerate() {
            for port in &nodes[i as usize].ports.used {
                port_bits.entry(*port).or_insert_with(|| vec![0; words])[p / 64] |= 1 << (p % 64);
            }
        }
        let hot = order
            .iter()
            .enumerate()
            .map(|(p, &i)| {
                let i = i as usize;
                pos[i] = p as u32;
                Hot::of(&nodes[i], i, classes.of(i), rank[i])
            })
            .collect();
        Placer {
            verdicts: vec![Verdict::default(); classes.count()],
            inv,
            classes,
            cache: FeasibilityCache::default(),
            hot,
            pos,
            port_bits,
            cursor: 0,
            stamp: 0,
            memo: None,
            counted_memo: None,
            last_bound: None,
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

    /// Forgets every class verdict.
    fn invalidate(&mut self) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            for v in &mut self.verdicts {
                v.stamp = 0;
            }
            self.stamp = 1;
        }
        self.memo = None;
        self.counted_memo = None;
    }

    /// Class verdicts from an earlier placement still hold for a counter-free ask with
    /// the same constraints. For a counted ask they hold when the counters moved by the
    /// one instance this placer bound since: only the classes sharing that instance's
    /// value are answered again (all of them when GROUP_BY's minimum, the number of
    /// values or CLUSTER's first value moved). Otherwise every class is answered again
    /// as it comes up.
    fn begin(&mut self, ask: &Ask<'_>, counters: &AppCounters) {
        if self.verdicts.len() < self.classes.count() {
            self.verdicts
                .resize(self.classes.count(), Verdict::default());
        }
        if !ask.counted {
            if self.memo != Some(ask.key) {
                self.invalidate();
                self.memo = Some(ask.key);
            }
            return;
        }
        let now = (ask.key, counters.id(), counters.version());
        if self.counted_memo == Some(now) {
            return;
        }
        let one_more = match (self.counted_memo, self.last_bound) {
            (Some((key, id, version)), Some((bound_id, bound_version, node))) => {
                key == ask.key
                    && id == counters.id()
                    && bound_id == id
                    && bound_version == counters.version()
                    && version + 1 == bound_version
                    && self.forget_classes_like(ask, counters, node)
            }
            _ => false,
        };
        if !one_more {
            self.invalidate();
        }
        self.counted_memo = Some(now);
    }

    /// After one instance of `ask`'s App was bound to `node`: forgets the verdicts the
    /// bind can change. False when that is every class (the caller forgets them all).
    fn forget_classes_like(&mut self, ask: &Ask<'_>, counters: &AppCounters, node: usize) -> bool {
        for (k, c) in ask.all().enumerate() {
            if ask.checks[k] != Check::CountedClass {
                continue;
            }
            let field = &c.parsed.field;
            match counters.last_change(field) {
                Some(FieldChange::Untouched) => {}
                Some(FieldChange::OneValue) => {
                    let Some(value) = self.inv.nodes.get(node).and_then(|n| n.field(field)) else {
                        continue;
                    };
                    for &class in self.classes.with_value(field, value) {
                        if let Some(v) = self.verdicts.get_mut(class as usize) {
                            v.stamp = 0;
                        }
                    }
                }
                Some(FieldChange::AllValues) | None => return false,
            }
        }
        true
    }

    /// Chooses a node for one instance of the App whose placed instances `counters`
    /// counts. Does not bind: call [`Placer::bind`] with the decision.
    pub fn place(
        &mut self,
        ask: &Ask<'_>,
        counters: &AppCounters,
    ) -> Result<Decision, Unplaceable> {
        let n = self.hot.len();
        let limit = self.limit_for(ask);
        // Stop early once something fits and this many nodes were looked at: a rare
        // feasible node (GROUP_BY near the end of a round) must not cost a full scan.
        let scan_cap = limit.saturating_mul(4).max(64);
        self.begin(ask, counters);
        let mut reasons: Vec<(Reject, usize)> = Vec::new();
        // (score, name rank, position)
        let mut best: Option<(f64, u32, usize)> = None;
        let mut feasible = 0;
        let mut examined = 0;
        while examined < n {
            let mut p = self.cursor + examined;
            if p >= n {
                p -= n;
            }
            examined += 1;
            match self.check(ask, counters, p) {
                Err(r) => match reasons.iter_mut().find(|(k, _)| *k == r) {
                    Some((_, c)) => *c += 1,
                    None => reasons.push((r, 1)),
                },
                Ok(bonus) => {
                    feasible += 1;
                    let h = &self.hot[p];
                    let s = score_amounts(ask.strategy, &h.allocatable, &h.used, &ask.resources)
                        + bonus;
                    let better = match best {
                        None => true,
                        Some((bs, br, _)) => {
                            s > bs + 1e-12 || ((s - bs).abs() <= 1e-12 && h.name_rank < br)
                        }
                    };
                    if better {
                        best = Some((s, h.name_rank, p));
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
            Some((_, _, p)) => Ok(Decision {
                node: self.hot[p].node as usize,
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

    /// Every filter on the node at walk position `p`, in the order of
    /// [`crate::allocator::filter::default_filters`], then fixed host ports; Ok carries
    /// the preferred-rule bonus.
    fn check(&mut self, ask: &Ask<'_>, counters: &AppCounters, p: usize) -> Result<f64, Reject> {
        let h = self.hot[p];
        match h.state {
            READY => {}
            NOT_READY => return Err(Reject::Plain(RejectKind::NotReady)),
            _ => return Err(Reject::Plain(RejectKind::Unschedulable)),
        }
        if let Some(what) = h.allocatable.minus(&h.used).shortfall(&ask.resources) {
            return Err(Reject::Plain(RejectKind::Insufficient(what)));
        }
        let i = h.node as usize;
        if !ask.ports.is_empty() {
            let fixed_in_range = if ask.fixed.is_empty() {
                0
            } else if h.single_range {
                let (a, b) = h.range;
                ask.fixed.iter().filter(|p| (a..=b).contains(*p)).count()
            } else {
                let ranges = &self.inv.nodes[i].ports.ranges;
                ask.fixed
                    .iter()
                    .filter(|p| ranges.iter().any(|(a, b)| (*a..=*b).contains(*p)))
                    .count()
            };
            let need = ask.dynamic + fixed_in_range;
            if need > h.cheap_ports as usize && !self.inv.nodes[i].ports.has_free(need) {
                return Err(Reject::Plain(RejectKind::Ports));
            }
            if let Some(port) = ask.fixed.iter().find(|port| self.port_used(p, **port)) {
                return Err(Reject::Plain(RejectKind::PortInUse(*port)));
            }
        }
        if ask.checks.is_empty() {
            return Ok(0.0);
        }
        let v = self.verdict(ask, counters, h.class, i);
        if !ask.per_node {
            return match v.fail {
                PASS => Ok(f64::from(v.bonus)),
                k => Err(Reject::Constraint(k as usize)),
            };
        }
        let node = &self.inv.nodes[i];
        let holds = |k: usize, c: &NamedConstraint| -> bool {
            match ask.checks[k] {
                Check::CountedNode => counters
                    .matches_hashed(&c.parsed, h.name_hash)
                    .unwrap_or_else(|| counters.matches(&c.parsed, node.field(&c.parsed.field))),
                Check::Direct => c.parsed.matches(node.field(&c.parsed.field), &[]),
                // Reached only before the class's first failing one: it holds.
                Check::Cached | Check::CountedClass => true,
            }
        };
        for (k, c) in ask.required.iter().enumerate() {
            if k as u32 == v.fail || !holds(k, c) {
                return Err(Reject::Constraint(k));
            }
        }
        let base = ask.required.len();
        let bonus = ask
            .preferred
            .iter()
            .enumerate()
            .filter(|(k, c)| !ask.checks[base + k].per_class() && holds(base + k, c))
            .count();
        Ok((bonus as u32 + v.bonus) as f64)
    }

    /// The per-class constraints' answer for nodes of `class` (`node` is one of them),
    /// computed on the first node of the class the walk meets.
    fn verdict(
        &mut self,
        ask: &Ask<'_>,
        counters: &AppCounters,
        class: u32,
        node: usize,
    ) -> Verdict {
        if let Some(v) = self.verdicts.get(class as usize) {
            if v.stamp == self.stamp {
                return *v;
            }
        }
        let mask = if ask.any_cached {
            self.cache
                .failing(ask.key, class, ask.all(), &self.inv.nodes[node])
        } else {
            0
        };
        let mut v = Verdict {
            stamp: self.stamp,
            fail: PASS,
            bonus: 0,
        };
        for (k, c) in ask.all().enumerate() {
            let holds = match ask.checks[k] {
                Check::Cached => mask & (1 << k) == 0,
                Check::CountedClass => {
                    counters.matches(&c.parsed, self.classes.value(class, &c.parsed.field))
                }
                Check::CountedNode | Check::Direct => continue,
            };
            if k < ask.required.len() {
                if !holds {
                    v.fail = k as u32;
                    break;
                }
            } else if holds {
                v.bonus += 1;
            }
        }
        if let Some(slot) = self.verdicts.get_mut(class as usize) {
            *slot = v;
        }
        v
    }

    /// Whether `port` is in use on the node at walk position `p`.
    fn port_used(&self, p: usize, port: u16) -> bool {
        self.port_bits
            .get(&port)
            .and_then(|w| w.get(p / 64))
            .is_some_and(|w| w >> (p % 64) & 1 == 1)
    }

    /// Copies node `i`'s ports in `ports` into the walk's bits.
    fn sync_ports(&mut self, i: usize, ports: &[u16]) {
        let (Some(n), Some(&p)) = (self.inv.nodes.get(i), self.pos.get(i)) else {
            return;
        };
        let p = p as usize;
        let words = self.hot.len().div_ceil(64);
        for port in ports {
            let used = n.ports.used.contains(port);
            let bits = match self.port_bits.get_mut(port) {
                Some(b) => b,
                None if used => self
                    .port_bits
                    .entry(*port)
                    .or_insert_with(|| vec![0; words]),
                None => continue,
            };
            if used {
                bits[p / 64] |= 1 << (p % 64);
            } else {
                bits[p / 64] &= !(1 << (p % 64));
            }
        }
    }

    /// Copies node `i`'s state into the walk's view of it.
    fn sync(&mut self, i: usize) {
        let (Some(n), Some(&p)) = (self.inv.nodes.get(i), self.pos.get(i)) else {
            return;
        };
        let Some(h) = self.hot.get_mut(p as usize) else {
            return;
        };
        // The name (and so its rank and hash) never changes.
        let (name_rank, name_hash) = (h.name_rank, h.name_hash);
        *h = Hot {
            name_hash,
            ..Hot::of_unnamed(n, i, self.classes.of(i), name_rank)
        };
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
        if ask.fixed.iter().any(|p| !n.ports.is_free(*p)) {
            return None;
        }
        for p in &ask.fixed {
            n.ports.used.insert(*p);
        }
        let Some(mut dynamic) = n.ports.take(ask.dynamic) else {
            for p in &ask.fixed {
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
        self.last_bound = Some((counters.id(), counters.version(), node));
        self.sync(node);
        self.sync_ports(node, &host_ports);
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
        self.sync(node);
        self.sync_ports(node, host_ports);
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
            self.invalidate();
        }
        self.sync(i);
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

    /// The per-node reference walk (what the placer did before it kept a compact copy):
    /// every check on the `NodeState` itself, in the placer's walk order.
    fn reference_walk(
        nodes: &[NodeState],
        order: &[usize],
        cursor: &mut usize,
        limit: usize,
        ask: &Ask<'_>,
        counters: &AppCounters,
    ) -> Option<(usize, usize, usize)> {
        let n = order.len();
        let scan_cap = limit.saturating_mul(4).max(64);
        let (mut best, mut feasible, mut examined): (Option<(f64, usize)>, usize, usize) =
            (None, 0, 0);
        while examined < n {
            let i = order[(*cursor + examined) % n];
            examined += 1;
            let node = &nodes[i];
            let fixed_in_range = ask
                .fixed
                .iter()
                .filter(|p| {
                    node.ports
                        .ranges
                        .iter()
                        .any(|(a, b)| (*a..=*b).contains(*p))
                })
                .count();
            let values = |c: &NamedConstraint| node.field(&c.parsed.field);
            let ok = node.ready
                && node.schedulable
                && node.free().shortfall(&ask.resources).is_none()
                && node.ports.has_free(ask.dynamic + fixed_in_range)
                && ask.fixed.iter().all(|p| node.ports.is_free(*p))
                && ask
                    .required
                    .iter()
                    .all(|c| counters.matches(&c.parsed, values(c)));
            if !ok {
                continue;
            }
            feasible += 1;
            let bonus = ask
                .preferred
                .iter()
                .filter(|c| counters.matches(&c.parsed, values(c)))
                .count() as f64;
            let s = crate::allocator::score::score(ask.strategy, node, &ask.resources) + bonus;
            let better = match best {
                None => true,
                Some((bs, bi)) => {
                    s > bs + 1e-12 || ((s - bs).abs() <= 1e-12 && node.name < nodes[bi].name)
                }
            };
            if better {
                best = Some((s, i));
            }
            if feasible >= limit || examined >= scan_cap {
                break;
            }
        }
        *cursor = (*cursor + examined) % n;
        best.map(|(_, i)| (i, examined, feasible))
    }

    /// With the default (sampled) limit, the compact walk makes the decisions the
    /// per-node walk makes, node for node, over Apps mixing fixed host ports, hostname
    /// and rack rules, preferred rules, binds and unbinds.
    #[test]
    fn the_compact_walk_decides_as_the_per_node_walk() {
        let sets = [
            (rules(&[]), rules(&[])),
            (rules(&[("hostname", "UNIQUE", None)]), rules(&[])),
            (rules(&[("rack", "GROUP_BY", None)]), rules(&[])),
            (
                rules(&[
                    ("zone", "IN", Some("z0,z1")),
                    ("hostname", "MAX_PER", Some("2")),
                ]),
                rules(&[
                    ("rack", "IS", Some("r3")),
                    ("hostname", "LIKE", Some(".*[13]")),
                ]),
            ),
            (
                rules(&[("rack", "MAX_PER", Some("4"))]),
                rules(&[("zone", "CLUSTER", None)]),
            ),
        ];
        let mut placer = Placer::new(cluster(300, 77), 5);
        let order: Vec<usize> = placer.hot.iter().map(|h| h.node as usize).collect();
        let mut cursor = 0;
        let mut decisions = 0;
        for (s, (required, preferred)) in sets.iter().enumerate() {
            let ports = match s % 3 {
                0 => vec![None],
                1 => vec![Some(9000 + s as u16), None],
                _ => vec![],
            };
            let ask = Ask::new(want(0.5, 200), ports, required, preferred, Strategy::Spread);
            let limit = placer.limit_for(&ask);
            let mut counters = AppCounters::new(required.iter().chain(preferred));
            let mut bound: Vec<(usize, Vec<u16>)> = Vec::new();
            for k in 0..120 {
                let expected =
                    reference_walk(placer.nodes(), &order, &mut cursor, limit, &ask, &counters);
                let got = placer.place(&ask, &counters).ok();
                assert_eq!(
                    got.map(|d| (d.node, d.examined, d.feasible)),
                    expected,
                    "set {s}, instance {k}"
                );
                let Some(d) = got else { break };
                decisions += 1;
                let ports = placer.bind(d.node, &ask, &mut counters).expect("ports");
                bound.push((d.node, ports));
                if k % 7 == 6 {
                    let (node, ports) = bound.remove(k % bound.len());
                    placer.unbind(node, &ask, &ports, &mut counters);
                }
            }
        }
        assert!(decisions > 300, "{decisions}");
    }

    /// Class answers kept across placements (only the classes sharing the bound
    /// instance's value answered again) decide as the per-node walk does — with two
    /// Apps of the same constraints placed in turn (their counters differ), GROUP_BY:n,
    /// MAX_PER and a preferred CLUSTER, and unbinds in between.
    #[test]
    fn kept_class_answers_decide_as_the_per_node_walk() {
        let required = rules(&[
            ("rack", "GROUP_BY", Some("3")),
            ("rack", "MAX_PER", Some("5")),
        ]);
        let preferred = rules(&[("zone", "CLUSTER", None)]);
        let mut placer = Placer::new(cluster(240, 91), 3);
        let order: Vec<usize> = placer.hot.iter().map(|h| h.node as usize).collect();
        let mut cursor = 0;
        let ask = Ask::new(
            want(0.25, 100),
            vec![None],
            &required,
            &preferred,
            Strategy::Spread,
        );
        let limit = placer.limit_for(&ask);
        let mut apps = [
            AppCounters::new(required.iter().chain(&preferred)),
            AppCounters::new(required.iter().chain(&preferred)),
        ];
        let mut bound: Vec<(usize, usize, Vec<u16>)> = Vec::new();
        let mut decisions = 0;
        for k in 0..200 {
            // Runs of a few placements per App, then the other App.
            let a = (k / 3) % 2;
            let expected =
                reference_walk(placer.nodes(), &order, &mut cursor, limit, &ask, &apps[a]);
            let got = placer.place(&ask, &apps[a]).ok();
            assert_eq!(
                got.map(|d| (d.node, d.examined, d.feasible)),
                expected,
                "instance {k} of app {a}"
            );
            let Some(d) = got else { continue };
            decisions += 1;
            let ports = placer.bind(d.node, &ask, &mut apps[a]).expect("ports");
            bound.push((a, d.node, ports));
            if k % 11 == 10 {
                let (a, node, ports) = bound.remove(k % bound.len());
                placer.unbind(node, &ask, &ports, &mut apps[a]);
            }
        }
        assert!(decisions > 60, "{decisions}");
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

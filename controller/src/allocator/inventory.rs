//! What each node has and what is already bound to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// cpus, memory, disk, GPUs: requested, allocatable or used.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Amounts {
    pub cpus: f64,
    pub mem_mib: i64,
    pub disk_mib: i64,
    pub gpus: i32,
}

impl Amounts {
    pub fn add(&mut self, o: &Amounts) {
        self.cpus += o.cpus;
        self.mem_mib += o.mem_mib;
        self.disk_mib += o.disk_mib;
        self.gpus += o.gpus;
    }

    pub fn minus(&self, o: &Amounts) -> Amounts {
        Amounts {
            cpus: self.cpus - o.cpus,
            mem_mib: self.mem_mib - o.mem_mib,
            disk_mib: self.disk_mib - o.disk_mib,
            gpus: self.gpus - o.gpus,
        }
    }

    /// Negative amounts (an overcommitted node's free) as nothing.
    pub fn at_least_zero(&self) -> Amounts {
        Amounts {
            cpus: self.cpus.max(0.0),
            mem_mib: self.mem_mib.max(0),
            disk_mib: self.disk_mib.max(0),
            gpus: self.gpus.max(0),
        }
    }

    /// Nothing in any dimension (a little cpu slack for float sums).
    pub fn is_zero(&self) -> bool {
        self.cpus.abs() <= 1e-9 && self.mem_mib == 0 && self.disk_mib == 0 && self.gpus == 0
    }

    /// The first dimension in which `want` does not fit in `self`, by its API name.
    pub fn shortfall(&self, want: &Amounts) -> Option<&'static str> {
        // A little slack for float sums of fractional cpus.
        if want.cpus > self.cpus + 1e-9 {
            Some("cpus")
        } else if want.mem_mib > self.mem_mib {
            Some("memMiB")
        } else if want.disk_mib > self.disk_mib {
            Some("diskMiB")
        } else if want.gpus > self.gpus {
            Some("gpus")
        } else {
            None
        }
    }

    /// The largest share of `total` this uses in any dimension (DRF's dominant share).
    pub fn dominant_share(&self, total: &Amounts) -> f64 {
        // Skips the division where nothing is used (0 / x is 0): the scorer calls this for
        // every feasible node, and disk and gpus are mostly unused. Plain comparisons
        // give what `f64::max` gives here (no NaN: every divisor is > 0).
        let mut m = 0.0;
        let mut share = |used: f64, of: f64| {
            if used != 0.0 && of > 0.0 {
                let s = used / of;
                if s > m {
                    m = s;
                }
            }
        };
        share(self.cpus, total.cpus);
        share(self.mem_mib as f64, total.mem_mib as f64);
        share(self.disk_mib as f64, total.disk_mib as f64);
        share(f64::from(self.gpus), f64::from(total.gpus));
        m
    }
}

/// Host ports of a node: its ranges and those taken.
#[derive(Clone, Debug, Default)]
pub struct PortPool {
    pub ranges: Vec<(u16, u16)>,
    pub used: BTreeSet<u16>,
}

impl PortPool {
    /// Ports in the node's ranges.
    pub(crate) fn range_total(&self) -> usize {
        self.ranges
            .iter()
            .map(|(a, b)| usize::from(b.saturating_sub(*a)) + 1)
            .sum()
    }

    /// Free ports in the ranges. A fixed host port outside the ranges is in `used` but
    /// takes nothing from them.
    pub fn free_count(&self) -> usize {
        let total = self.range_total();
        let used_in_ranges: usize = self
            .ranges
            .iter()
            .map(|&(a, b)| self.used.range(a..=b).count())
            .sum();
        total.saturating_sub(used_in_ranges)
    }

    /// Whether `n` dynamic ports are free; counts exactly only when the cheap bound
    /// (every used port inside the ranges) says no.
    pub fn has_free(&self, n: usize) -> bool {
        n == 0 || self.cheap_free() >= n || self.free_count() >= n
    }

    /// The cheap lower bound [`PortPool::has_free`] tries first: O(ranges), no walk
    /// over the used ports.
    pub(crate) fn cheap_free(&self) -> usize {
        self.range_total().saturating_sub(self.used.len())
    }

    /// Whether the fixed host port `port` is free on this node.
    pub fn is_free(&self, port: u16) -> bool {
        !self.used.contains(&port)
    }

    /// Takes `n` free ports chosen at random, as Marathon does: the lowest ones would
    /// collide first with whatever else on the host binds ports; None if there are not
    /// enough. Probes from a random point instead of listing every free port, so it
    /// costs O(n) on a mostly free range.
    pub fn take(&mut self, n: usize) -> Option<Vec<u16>> {
        if n == 0 {
            return Some(Vec::new());
        }
        if !self.has_free(n) {
            return None;
        }
        let total = self.range_total();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let start = (next_random() % total as u64) as usize;
            let port = (0..total)
                .map(|k| self.nth_port((start + k) % total))
                .find(|p| !self.used.contains(p))?;
            self.used.insert(port);
            out.push(port);
        }
        Some(out)
    }

    /// The `k`-th port of the ranges, in order.
    fn nth_port(&self, mut k: usize) -> u16 {
        for &(a, b) in &self.ranges {
            let len = usize::from(b.saturating_sub(a)) + 1;
            if k < len {
                return a + k as u16;
            }
            k -= len;
        }
        0
    }
}

/// A per-thread xorshift seeded once from a v4 UUID: port choice needs spread, not
/// secrecy, and a UUID per call costs a syscall.
pub(crate) fn next_random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new((uuid::Uuid::new_v4().as_u128() as u64) | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

#[derive(Clone, Debug)]
pub struct NodeState {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    pub allocatable: Amounts,
    pub used: Amounts,
    pub ports: PortPool,
    pub schedulable: bool,
    pub ready: bool,
}

impl NodeState {
    /// The allocator's view of a Node object: ready when its Ready condition is True,
    /// the default port range when it names none. Nothing bound yet.
    pub fn from_node(n: &drover_api::kinds::node::Node) -> NodeState {
        use drover_api::ConditionStatus;
        let status = n.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True);
        let ranges = if n.spec.port_ranges.is_empty() {
            vec![(
                drover_api::defaults::NODE_PORT_RANGE_BEGIN as u16,
                drover_api::defaults::NODE_PORT_RANGE_END as u16,
            )]
        } else {
            n.spec
                .port_ranges
                .iter()
                .map(|r| (r.begin as u16, r.end as u16))
                .collect()
        };
        NodeState {
            name: n.metadata.name.clone().unwrap_or_default(),
            attributes: n.spec.attributes.clone(),
            allocatable: Amounts {
                cpus: status.allocatable.cpus,
                mem_mib: status.allocatable.mem_mib,
                disk_mib: status.allocatable.disk_mib,
                gpus: status.allocatable.gpus,
            },
            used: Amounts::default(),
            ports: PortPool {
                ranges,
                used: BTreeSet::new(),
            },
            schedulable: !n.spec.unschedulable.unwrap_or(false)
                && !crate::controllers::nodes::in_maintenance(n),
            ready,
        }
    }

    pub fn free(&self) -> Amounts {
        self.allocatable.minus(&self.used)
    }

    /// The value a constraint on `field` sees: the node name for `hostname`, else an
    /// attribute (None when the node lacks it).
    pub fn field(&self, field: &str) -> Option<&str> {
        if field == "hostname" {
            Some(&self.name)
        } else {
            self.attributes.get(field).map(String::as_str)
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub nodes: Vec<NodeState>,
    index: HashMap<String, usize>,
}

impl Inventory {
    pub fn new(nodes: Vec<NodeState>) -> Self {
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Inventory { nodes, index }
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Records a task bound to node `i`.
    pub fn bind(&mut self, i: usize, amounts: &Amounts, ports: &[u16]) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.used.add(amounts);
            n.ports.used.extend(ports.iter().copied());
        }
    }

    /// Undoes [`Inventory::bind`]: a placement that did not commit.
    pub fn unbind(&mut self, i: usize, amounts: &Amounts, ports: &[u16]) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.used = n.used.minus(amounts);
            for p in ports {
                n.ports.used.remove(p);
            }
        }
    }

    pub fn total(&self) -> Amounts {
        let mut t = Amounts::default();
        for n in &self.nodes {
            t.add(&n.allocatable);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_taken_at_random_without_repeats_until_none_are_left() {
        let mut pool = PortPool {
            ranges: vec![(31000, 31009)],
            used: [31000].into(),
        };
        let a = pool.take(4).expect("4 of 9");
        let b = pool.take(5).expect("the other 5");
        let mut all: Vec<u16> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (31001..=31009).collect::<Vec<_>>());
        assert_eq!(pool.take(1), None);
        assert_eq!(pool.take(0), Some(Vec::new()));
    }
}

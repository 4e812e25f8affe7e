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
        let share = |used: f64, of: f64| if of > 0.0 { used / of } else { 0.0 };
        [
            share(self.cpus, total.cpus),
            share(self.mem_mib as f64, total.mem_mib as f64),
            share(self.disk_mib as f64, total.disk_mib as f64),
            share(f64::from(self.gpus), f64::from(total.gpus)),
        ]
        .into_iter()
        .fold(0.0, f64::max)
    }
}

/// Host ports of a node: its ranges and those taken.
#[derive(Clone, Debug, Default)]
pub struct PortPool {
    pub ranges: Vec<(u16, u16)>,
    pub used: BTreeSet<u16>,
}

impl PortPool {
    pub fn free_count(&self) -> usize {
        let total: usize = self
            .ranges
            .iter()
            .map(|(a, b)| usize::from(b.saturating_sub(*a)) + 1)
            .sum();
        total.saturating_sub(self.used.len())
    }

    /// Takes `n` free ports chosen at random, as Marathon does: the lowest ones would
    /// collide first with whatever else on the host binds ports; None if there are not
    /// enough.
    pub fn take(&mut self, n: usize) -> Option<Vec<u16>> {
        if n == 0 {
            return Some(Vec::new());
        }
        let mut free: Vec<u16> = self
            .ranges
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|p| !self.used.contains(p))
            .collect();
        if free.len() < n {
            return None;
        }
        // A partial Fisher–Yates shuffle with a per-call random seed.
        let mut x = (uuid::Uuid::new_v4().as_u128() as u64) | 1;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let j = i + (x % (free.len() - i) as u64) as usize;
            free.swap(i, j);
        }
        free.truncate(n);
        self.used.extend(free.iter().copied());
        Some(free)
    }
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

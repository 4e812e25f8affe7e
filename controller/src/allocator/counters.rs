//! Constraint counters: per App and node field, how many of the App's instances run on
//! each value — so UNIQUE, MAX_PER, GROUP_BY and CLUSTER are O(1) checks instead of a
//! walk over every placed instance (what `ParsedConstraint::matches` does).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use drover_api::{ConstraintOp, ParsedConstraint};

use crate::allocator::classes::MixHasher;
use crate::allocator::filter::NamedConstraint;
use crate::allocator::inventory::NodeState;

/// Whether the operator looks at where the App's other instances run; the others depend
/// on the node's own value only, so their result can be cached per node class.
pub fn depends_on_placed(op: &ConstraintOp) -> bool {
    matches!(
        op,
        ConstraintOp::Unique
            | ConstraintOp::Cluster(None)
            | ConstraintOp::GroupBy(_)
            | ConstraintOp::MaxPer(_)
    )
}

/// Instances per value of one field.
#[derive(Clone, Debug, Default)]
pub struct FieldCounts {
    counts: HashMap<String, u32, BuildHasherDefault<MixHasher>>,
    /// How many values have each (non-zero) count: GROUP_BY's minimum in O(log n).
    histogram: BTreeMap<u32, u32>,
    /// The value of the first instance placed (CLUSTER without a value).
    first: Option<String>,
    total: u32,
    /// For `hostname`: the counts again, by a hash of the value, so the walk can rule
    /// out most nodes from a hash it keeps instead of reading each node's name.
    hashed: Option<HashMap<u64, u32, BuildHasherDefault<MixHasher>>>,
    /// What the constraints on this field read besides a value's own count: the
    /// minimum (GROUP_BY), the number of values (GROUP_BY:n), the first value
    /// (CLUSTER without a value).
    reads_min: bool,
    reads_distinct: bool,
    reads_first: bool,
}

impl FieldCounts {
    pub fn count(&self, value: &str) -> u32 {
        self.counts.get(value).copied().unwrap_or(0)
    }

    /// Values with at least one instance.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// The smallest count among the values in use (0 when none is).
    pub fn min(&self) -> u32 {
        self.histogram.keys().next().copied().unwrap_or(0)
    }

    /// Counts one more instance on `value`; true when something every value's answer
    /// reads changed (GROUP_BY's minimum, GROUP_BY:n's number of values, CLUSTER's first
    /// value), for the constraints on this field.
    fn add(&mut self, value: &str) -> bool {
        // Read before only what this field's constraints look at (this runs per bind).
        let min = self.reads_min.then(|| self.min());
        let (distinct, first) = (self.counts.len(), self.first.is_some());
        let c = match self.counts.get_mut(value) {
            Some(c) => c,
            None => self.counts.entry(value.to_string()).or_insert(0),
        };
        let old = *c;
        *c += 1;
        let new = *c;
        if old > 0 {
            dec(&mut self.histogram, old);
        }
        *self.histogram.entry(new).or_insert(0) += 1;
        if let Some(h) = &mut self.hashed {
            *h.entry(value_hash(value)).or_insert(0) += 1;
        }
        if self.first.is_none() {
            self.first = Some(value.to_string());
        }
        self.total += 1;
        min.is_some_and(|m| m != self.min())
            || (self.reads_distinct && distinct != self.counts.len())
            || (self.reads_first && first != self.first.is_some())
    }

    fn remove(&mut self, value: &str) {
        let Some(c) = self.counts.get_mut(value) else {
            return;
        };
        let old = *c;
        *c -= 1;
        dec(&mut self.histogram, old);
        if let Some(h) = &mut self.hashed {
            let k = value_hash(value);
            if let Some(n) = h.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    h.remove(&k);
                }
            }
        }
        if *c == 0 {
            self.counts.remove(value);
        } else {
            *self.histogram.entry(old - 1).or_insert(0) += 1;
        }
        self.total -= 1;
        if self.total == 0 {
            self.first = None;
        }
    }
}

/// The hash [`AppCounters::matches_hashed`] takes: of a node's name, for `hostname`.
pub fn value_hash(value: &str) -> u64 {
    crate::fingerprint::fnv1a64(value.as_bytes())
}

fn dec(h: &mut BTreeMap<u32, u32>, key: u32) {
    if let Some(n) = h.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            h.remove(&key);
        }
    }
}

/// The counters of one App: one [`FieldCounts`] per field its placed-dependent
/// constraints (required or preferred) name.
///
/// Each instance has an id of its own (a clone gets a new one) and a version that every
/// add and remove moves on, so the placer can tell that the counters it answered from
/// changed by exactly the one instance it bound, and redo only the answers that instance
/// can change ([`AppCounters::last_change`]).
#[derive(Debug)]
pub struct AppCounters {
    fields: Vec<(String, FieldCounts)>,
    id: u64,
    version: u64,
    /// Per field, after the last add: whether a class-wide quantity moved (see
    /// [`FieldCounts::add`]); empty after a remove.
    last: Vec<bool>,
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Default for AppCounters {
    fn default() -> Self {
        AppCounters {
            fields: Vec::new(),
            id: next_id(),
            version: 0,
            last: Vec::new(),
        }
    }
}

impl Clone for AppCounters {
    fn clone(&self) -> Self {
        AppCounters {
            fields: self.fields.clone(),
            id: next_id(),
            version: self.version,
            last: self.last.clone(),
        }
    }
}

/// What the last [`AppCounters::add`] changed, for one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldChange {
    /// Only the count of the value added: answers for other values stand.
    OneValue,
    /// Something every value's answer reads (GROUP_BY's minimum, the number of values,
    /// CLUSTER's first value).
    AllValues,
    /// The field is not counted.
    Untouched,
}

impl AppCounters {
    pub fn new<'a>(constraints: impl IntoIterator<Item = &'a NamedConstraint>) -> Self {
        let mut fields: Vec<(String, FieldCounts)> = Vec::new();
        for c in constraints {
            if !depends_on_placed(&c.parsed.op) {
                continue;
            }
            let k = match fields.iter().position(|(f, _)| *f == c.parsed.field) {
                Some(k) => k,
                None => {
                    let counts = FieldCounts {
                        hashed: (c.parsed.field == "hostname").then(HashMap::default),
                        ..FieldCounts::default()
                    };
                    fields.push((c.parsed.field.clone(), counts));
                    fields.len() - 1
                }
            };
            let counts = &mut fields[k].1;
            match &c.parsed.op {
                ConstraintOp::GroupBy(groups) => {
                    counts.reads_min = true;
                    counts.reads_distinct |= groups.is_some();
                }
                ConstraintOp::Cluster(None) => counts.reads_first = true,
                _ => {}
            }
        }
        AppCounters {
            fields,
            ..AppCounters::default()
        }
    }

    /// This instance's id (a clone has another).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Moves on with every add and remove.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// For the add that made [`AppCounters::version`]: what it changed on `field`; None
    /// when the last change was a remove (or nothing was added yet).
    pub fn last_change(&self, field: &str) -> Option<FieldChange> {
        if self.last.len() != self.fields.len() || self.fields.is_empty() {
            return None;
        }
        Some(match self.fields.iter().position(|(f, _)| f == field) {
            Some(k) if self.last[k] => FieldChange::AllValues,
            Some(_) => FieldChange::OneValue,
            None => FieldChange::Untouched,
        })
    }

    /// Counters for instances already running on `placed` (one entry per instance).
    pub fn from_placed<'a>(
        constraints: impl IntoIterator<Item = &'a NamedConstraint>,
        placed: &[&NodeState],
    ) -> Self {
        let mut c = Self::new(constraints);
        for n in placed {
            c.add(n);
        }
        c
    }

    /// One more instance on `node`.
    pub fn add(&mut self, node: &NodeState) {
        self.last.clear();
        for (field, counts) in &mut self.fields {
            let global = match node.field(field) {
                Some(v) => counts.add(v),
                None => false,
            };
            self.last.push(global);
        }
        self.version += 1;
    }

    /// One instance fewer on `node`.
    pub fn remove(&mut self, node: &NodeState) {
        self.last.clear();
        self.version += 1;
        for (field, counts) in &mut self.fields {
            if let Some(v) = node.field(field) {
                counts.remove(v);
            }
        }
    }

    pub fn field(&self, name: &str) -> Option<&FieldCounts> {
        self.fields.iter().find(|(f, _)| f == name).map(|(_, c)| c)
    }

    /// `Some(true)` when the hash of a node's value (see [`value_hash`]) alone shows that
    /// `c` (UNIQUE or MAX_PER on `hostname`) holds there: the instances counted under
    /// that hash are at least those on the value. None: ask [`AppCounters::matches`].
    pub fn matches_hashed(&self, c: &ParsedConstraint, hash: u64) -> Option<bool> {
        let hashed = self.field(&c.field)?.hashed.as_ref()?;
        let n = hashed.get(&hash).copied().unwrap_or(0);
        match c.op {
            ConstraintOp::Unique => (n == 0).then_some(true),
            ConstraintOp::MaxPer(k) => (n < k).then_some(true),
            _ => None,
        }
    }

    /// Same answer as `c.matches(value, placed)` with `placed` the values this counts.
    pub fn matches(&self, c: &ParsedConstraint, value: Option<&str>) -> bool {
        if !depends_on_placed(&c.op) {
            return c.matches(value, &[]);
        }
        let Some(value) = value else {
            return false;
        };
        let empty = FieldCounts::default();
        let counts = self.field(&c.field).unwrap_or(&empty);
        match &c.op {
            ConstraintOp::Unique => counts.count(value) == 0,
            ConstraintOp::Cluster(None) => counts.first.as_deref().is_none_or(|f| f == value),
            ConstraintOp::GroupBy(groups) => {
                let mine = counts.count(value);
                if mine == 0 {
                    return true;
                }
                if groups.is_some_and(|n| counts.distinct() < n as usize) {
                    return false;
                }
                mine == counts.min()
            }
            ConstraintOp::MaxPer(n) => counts.count(value) < *n,
            _ => c.matches(Some(value), &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::ConstraintRule;

    /// The counters agree with the reference matcher over a random sequence of adds and
    /// removes, for every placed-dependent operator.
    #[test]
    fn counters_agree_with_the_reference_matcher() {
        let rules = [
            ConstraintRule::new("rack", "UNIQUE", None),
            ConstraintRule::new("rack", "CLUSTER", None),
            ConstraintRule::new("rack", "GROUP_BY", None),
            ConstraintRule::new("rack", "GROUP_BY", Some("3")),
            ConstraintRule::new("rack", "MAX_PER", Some("2")),
        ];
        let named: Vec<NamedConstraint> = rules
            .iter()
            .map(|r| NamedConstraint::from_rule(r).expect("valid"))
            .collect();
        let racks = ["r0", "r1", "r2", "r3"];
        let nodes: Vec<NodeState> = racks
            .iter()
            .map(|r| NodeState {
                name: format!("n-{r}"),
                attributes: [("rack".to_string(), r.to_string())].into(),
                allocatable: Default::default(),
                used: Default::default(),
                ports: Default::default(),
                schedulable: true,
                ready: true,
            })
            .collect();
        let mut counters = AppCounters::new(&named);
        let mut placed: Vec<&str> = Vec::new();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % 4) as usize;
            if x.is_multiple_of(3) && !placed.is_empty() {
                let k = (x as usize / 7) % placed.len();
                let gone = placed.remove(k);
                let n = nodes.iter().find(|n| n.field("rack") == Some(gone));
                counters.remove(n.expect("known rack"));
                if k == 0 {
                    // CLUSTER's "first" is the first still placed; rebuild like apps do.
                    let refs: Vec<&NodeState> = placed
                        .iter()
                        .filter_map(|v| nodes.iter().find(|n| n.field("rack") == Some(v)))
                        .collect();
                    counters = AppCounters::from_placed(&named, &refs);
                }
            } else {
                placed.push(racks[i]);
                counters.add(&nodes[i]);
            }
            for c in &named {
                for r in racks {
                    assert_eq!(
                        counters.matches(&c.parsed, Some(r)),
                        c.parsed.matches(Some(r), &placed),
                        "{} on {r} with {placed:?}",
                        c.text
                    );
                }
            }
        }
    }
}

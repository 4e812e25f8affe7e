//! Node classes: nodes with the same attributes give the same answer to every
//! attribute constraint (LIKE, UNLIKE, IS, IN, CLUSTER with a value), so that answer is
//! computed once per (constraint set, class) and cached — Nomad's computed node class.
//! Capacity is left out of the class on purpose: attribute constraints never read it,
//! and fewer classes mean more cache hits.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::allocator::counters::depends_on_placed;
use crate::allocator::filter::NamedConstraint;
use crate::allocator::inventory::NodeState;

/// Whether a constraint's result is the same for every node of a class.
pub fn cacheable(c: &NamedConstraint) -> bool {
    c.parsed.field != "hostname" && !depends_on_placed(&c.parsed.op)
}

/// The class of every node.
#[derive(Clone, Debug, Default)]
pub struct NodeClasses {
    class_of: Vec<u32>,
    ids: HashMap<BTreeMap<String, String>, u32>,
    /// Each class's attributes, by id: a few hundred small maps that stay in cache,
    /// where reading a node's own would cost a cache miss per node.
    attributes: Vec<BTreeMap<String, String>>,
    /// Field → value → the classes with that value.
    by_value: HashMap<String, HashMap<String, Vec<u32>>>,
}

impl NodeClasses {
    pub fn new(nodes: &[NodeState]) -> Self {
        let mut c = NodeClasses::default();
        for n in nodes {
            let id = c.id_for(&n.attributes);
            c.class_of.push(id);
        }
        c
    }

    fn id_for(&mut self, attributes: &BTreeMap<String, String>) -> u32 {
        if let Some(id) = self.ids.get(attributes) {
            return *id;
        }
        let id = self.attributes.len() as u32;
        self.ids.insert(attributes.clone(), id);
        self.attributes.push(attributes.clone());
        for (field, value) in attributes {
            self.by_value
                .entry(field.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .push(id);
        }
        id
    }

    /// The classes whose nodes have `value` for the attribute `field`.
    pub fn with_value(&self, field: &str, value: &str) -> &[u32] {
        self.by_value
            .get(field)
            .and_then(|m| m.get(value))
            .map_or(&[], Vec::as_slice)
    }

    /// The value every node of `class` has for the attribute `field` (not `hostname`,
    /// which is no attribute).
    pub fn value(&self, class: u32, field: &str) -> Option<&str> {
        self.attributes
            .get(class as usize)
            .and_then(|a| a.get(field))
            .map(String::as_str)
    }

    pub fn of(&self, node: usize) -> u32 {
        self.class_of.get(node).copied().unwrap_or(u32::MAX)
    }

    pub fn count(&self) -> usize {
        self.ids.len()
    }

    /// Node `i`'s attributes changed: it moves to the class of its new attributes.
    pub fn reclassify(&mut self, i: usize, node: &NodeState) {
        let id = self.id_for(&node.attributes);
        if let Some(c) = self.class_of.get_mut(i) {
            *c = id;
        }
    }
}

/// Per (constraint set, class): the bit mask of cacheable constraints that fail
/// (bit k = constraint k of the set; sets of more than 64 are checked uncached past 64).
#[derive(Clone, Debug, Default)]
pub struct FeasibilityCache {
    masks: HashMap<(u64, u32), u64, BuildHasherDefault<MixHasher>>,
    pub hits: u64,
    pub misses: u64,
}

impl FeasibilityCache {
    /// The failing-constraints mask for `set` (identified by `key`) on `node` of `class`.
    pub fn failing<'a>(
        &mut self,
        key: u64,
        class: u32,
        set: impl Iterator<Item = &'a NamedConstraint>,
        node: &NodeState,
    ) -> u64 {
        if let Some(m) = self.masks.get(&(key, class)) {
            self.hits += 1;
            return *m;
        }
        self.misses += 1;
        let mut mask = 0u64;
        for (k, c) in set.enumerate().take(64) {
            if cacheable(c) && !c.parsed.matches(node.field(&c.parsed.field), &[]) {
                mask |= 1 << k;
            }
        }
        self.masks.insert((key, class), mask);
        mask
    }

    /// Forgets everything (a node changed class).
    pub fn clear(&mut self) {
        self.masks.clear();
    }
}

/// The cache and the constraint counters are looked up for every node examined; their
/// keys are hashes, small ids and node attribute values the cluster's own agents set,
/// so a multiply-mix does (SipHash's DoS resistance buys nothing here).
#[derive(Clone, Copy, Debug, Default)]
pub struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

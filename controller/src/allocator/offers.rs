//! Level 1 of the allocator (DESIGN.md §6): the offer book. What is free on each node
//! (allocatable − bound active tasks − resources already in outstanding offers) is
//! offered to subscribed frameworks, the one whose role has the smallest weighted
//! dominant share first ([`Drf`]). Offers live only here, in memory: a restarted or
//! newly elected controller starts with none and offers afresh.
//!
//! A role's Quota limit bounds what it is offered, as Mesos's quota limits do: an offer
//! holds at most the role's headroom (limit − what its tasks, launches and outstanding
//! offers hold) in each limited dimension, and a role at its limit gets no offers.
//! A role's Quota guarantee is set aside, as Mesos's quota guarantees are: the part it
//! does not hold yet is offered to no other role — an offer to another role holds at
//! most what is free in the whole cluster less the others' unmet guarantees.
//!
//! The book is plain data driven by [`OfferBook::cycle`] with the cluster as the caller
//! sees it; it never reads a clock itself (`now` is passed in), so tests can step time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use drover_api::resources::Resources;

use crate::allocator::drf::{Drf, RoleUsage, Sorter};
use crate::allocator::inventory::{Amounts, Inventory, NodeState};
use crate::allocator::level1::{Reserved, RolePolicy};

/// Mesos's default `filters.refuse_seconds` for a decline.
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);

/// Less than this much cpu or memory free on a node is not worth an offer.
const MIN_CPUS: f64 = 0.01;
const MIN_MEM_MIB: i64 = 1;

/// Resources of one node offered to one framework.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub id: String,
    pub framework: String,
    pub node: String,
    pub resources: Amounts,
    /// Free host port ranges (inclusive) of the node when offered.
    pub ports: Vec<(u16, u16)>,
    pub created: Instant,
}

impl Offer {
    /// Whether `port` lies in one of the offered ranges.
    pub fn has_port(&self, port: u16) -> bool {
        self.ports.iter().any(|&(a, b)| (a..=b).contains(&port))
    }
}

/// Why an offer went away before it was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RescindReason {
    NodeGone,
    NodeNotReady,
    NodeCordoned,
    NodeInMaintenance,
    Timeout,
}

impl RescindReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RescindReason::NodeGone => "node deleted",
            RescindReason::NodeNotReady => "node not ready",
            RescindReason::NodeCordoned => "node cordoned",
            RescindReason::NodeInMaintenance => "node in maintenance",
            RescindReason::Timeout => "offer timed out",
        }
    }
}

/// What a cycle decided, for the caller to tell the frameworks.
#[derive(Clone, Debug, PartialEq)]
pub enum BookEvent {
    Offered(Offer),
    Rescinded { offer: Offer, reason: RescindReason },
}

/// A subscribed framework as the book sees it.
#[derive(Clone, Debug)]
struct Subscriber {
    role: String,
    weight: f64,
}

/// A task an accepted offer launched, held as used until the caller's view of the
/// cluster shows it (the store write and the Task cache are not one step).
#[derive(Clone, Debug)]
struct Launched {
    node: String,
    amounts: Amounts,
    ports: Vec<u16>,
    role: String,
    until: Instant,
}

/// What [`OfferBook::cycle`] needs to know about the cluster.
pub struct ClusterView<'a> {
    /// Every node, with `used` = its bound active tasks and their host ports.
    pub inventory: &'a Inventory,
    /// Nodes with a `Maintenance=True` condition (treated like cordoned).
    pub maintenance: &'a BTreeSet<String>,
    /// What each role's bound active tasks hold.
    pub role_usage: &'a BTreeMap<String, Amounts>,
    /// Keys (`namespace/name`) of the Tasks the caller's view already holds.
    pub known_tasks: &'a BTreeSet<String>,
    /// Each role's Quota guarantee and limit (see
    /// [`crate::controllers::quota::policies`]); a role not here has neither.
    pub role_policies: &'a BTreeMap<String, RolePolicy>,
}

/// `free` cut down to what a role holding `held` may still take under `limit`.
fn within_limit(free: &Amounts, limit: Option<&Resources>, held: &Amounts) -> Amounts {
    let Some(l) = limit else {
        return *free;
    };
    Amounts {
        cpus: l.cpus.map_or(free.cpus, |c| free.cpus.min(c - held.cpus)),
        mem_mib: l
            .mem_mib
            .map_or(free.mem_mib, |m| free.mem_mib.min(m - held.mem_mib)),
        disk_mib: l
            .disk_mib
            .map_or(free.disk_mib, |d| free.disk_mib.min(d - held.disk_mib)),
        gpus: l.gpus.map_or(free.gpus, |g| free.gpus.min(g - held.gpus)),
    }
}

/// `a` cut to at most `cap` in every dimension.
fn at_most(a: &Amounts, cap: &Amounts) -> Amounts {
    Amounts {
        cpus: a.cpus.min(cap.cpus),
        mem_mib: a.mem_mib.min(cap.mem_mib),
        disk_mib: a.disk_mib.min(cap.disk_mib),
        gpus: a.gpus.min(cap.gpus),
    }
}

/// Worth an offer: some cpu and memory.
fn worth_offering(a: &Amounts) -> bool {
    a.cpus >= MIN_CPUS && a.mem_mib >= MIN_MEM_MIB
}

/// One task of an accept, as the book checks it.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchAsk {
    /// `namespace/name` of the Task it becomes.
    pub key: String,
    /// Where it is in the call, for errors (`accept.operations[0].launch.task_infos[1]`).
    pub field: String,
    pub amounts: Amounts,
    pub ports: Vec<u16>,
}

/// Why an accept was refused: the field (in the call's JSON) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for AcceptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn accept_error(field: impl Into<String>, message: impl Into<String>) -> AcceptError {
    AcceptError {
        field: field.into(),
        message: message.into(),
    }
}

/// The offers and decline filters of every subscribed framework.
pub struct OfferBook {
    offers: BTreeMap<String, Offer>,
    /// (framework, node) → offers of that node are refused until then.
    filters: HashMap<(String, String), Instant>,
    subscribers: BTreeMap<String, Subscriber>,
    launched: HashMap<String, Launched>,
    next_id: u64,
    /// An offer not used this long is rescinded (its resources go to the next in line).
    pub offer_timeout: Duration,
    /// Distinguishes this book's offer ids from an earlier leader's.
    epoch: String,
}

impl Default for OfferBook {
    fn default() -> Self {
        OfferBook::new(Duration::from_secs(60))
    }
}

impl OfferBook {
    pub fn new(offer_timeout: Duration) -> Self {
        let epoch = uuid::Uuid::new_v4().simple().to_string();
        OfferBook {
            offers: BTreeMap::new(),
            filters: HashMap::new(),
            subscribers: BTreeMap::new(),
            launched: HashMap::new(),
            next_id: 1,
            offer_timeout,
            epoch: epoch[..8].to_string(),
        }
    }

    /// Adds (or updates the role and weight of) a framework; it gets offers from the
    /// next cycle on.
    pub fn subscribe(&mut self, framework: &str, role: &str, weight: f64) {
        self.subscribers.insert(
            framework.to_string(),
            Subscriber {
                role: role.to_string(),
                weight,
            },
        );
    }

    /// Removes a framework; its offers are dropped (their resources return at once)
    /// and returned, its filters forgotten.
    pub fn unsubscribe(&mut self, framework: &str) -> Vec<Offer> {
        self.subscribers.remove(framework);
        self.filters.retain(|(f, _), _| f != framework);
        let ids: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.framework == framework)
            .map(|o| o.id.clone())
            .collect();
        ids.iter().filter_map(|id| self.offers.remove(id)).collect()
    }

    pub fn is_subscribed(&self, framework: &str) -> bool {
        self.subscribers.contains_key(framework)
    }

    pub fn offer(&self, id: &str) -> Option<&Offer> {
        self.offers.get(id)
    }

    /// Outstanding offers of `framework`.
    pub fn outstanding(&self, framework: &str) -> usize {
        self.offers
            .values()
            .filter(|o| o.framework == framework)
            .count()
    }

    /// Declines offers: they are dropped and their nodes are not offered to `framework`
    /// again until `refuse` has passed. Unknown ids (already rescinded, say) are
    /// ignored, as Mesos does.
    pub fn decline(&mut self, framework: &str, ids: &[String], refuse: Duration, now: Instant) {
        for id in ids {
            if self
                .offers
                .get(id)
                .is_some_and(|o| o.framework == framework)
            {
                if let Some(o) = self.offers.remove(id) {
                    self.filters
                        .insert((framework.to_string(), o.node), now + refuse);
                }
            }
        }
    }

    /// Checks that `tasks` fit in the offers `ids` of `framework` (all on one node):
    /// resources in total, host ports inside the offered ranges and not asked twice.
    /// On success the offers are used up: the tasks count as used on the node until
    /// the caller's view shows them, the rest returns to the pool, and the node is not
    /// offered to `framework` again until `refuse` has passed. Returns the node.
    /// `field` prefixes the field paths of errors (`accept`).
    pub fn accept(
        &mut self,
        framework: &str,
        ids: &[String],
        tasks: &[LaunchAsk],
        refuse: Duration,
        now: Instant,
    ) -> Result<String, AcceptError> {
        let node = self.check_accept(framework, ids, tasks)?;
        let role = self
            .subscribers
            .get(framework)
            .map(|s| s.role.clone())
            .unwrap_or_default();
        for id in ids {
            self.offers.remove(id);
        }
        for t in tasks {
            self.launched.insert(
                t.key.clone(),
                Launched {
                    node: node.clone(),
                    amounts: t.amounts,
                    ports: t.ports.clone(),
                    role: role.clone(),
                    until: now + Duration::from_secs(30),
                },
            );
        }
        if !refuse.is_zero() {
            self.filters
                .insert((framework.to_string(), node.clone()), now + refuse);
        }
        Ok(node)
    }

    /// Whether node `node` still has room for `tasks` now that the cluster is `view`:
    /// offers are made from a snapshot, and the built-in schedulers do not take their
    /// resources from the book, so what an offer holds may have been bound since.
    /// Counts what is free, minus other offers and launches still in flight, plus the
    /// offers `ids` being used. None when it fits, else the first dimension short.
    pub fn short_now(
        &self,
        view: &ClusterView<'_>,
        node: &str,
        ids: &[String],
        tasks: &[LaunchAsk],
    ) -> Option<&'static str> {
        let n = view
            .inventory
            .position(node)
            .and_then(|i| view.inventory.nodes.get(i))?;
        let mut held = Amounts::default();
        for o in self.offers.values() {
            if o.node == node && !ids.contains(&o.id) {
                held.add(&o.resources);
            }
        }
        for (key, l) in &self.launched {
            if l.node == node && !view.known_tasks.contains(key) {
                held.add(&l.amounts);
            }
        }
        let mut wanted = Amounts::default();
        for t in tasks {
            wanted.add(&t.amounts);
        }
        n.free().minus(&held).shortfall(&wanted)
    }

    /// Withdraws offers (their resources went elsewhere); returns those that existed.
    pub fn rescind(&mut self, ids: &[String]) -> Vec<Offer> {
        ids.iter().filter_map(|id| self.offers.remove(id)).collect()
    }

    /// Stops holding the resources of launches whose Tasks were not created after all.
    pub fn forget_launched(&mut self, keys: &[String]) {
        for k in keys {
            self.launched.remove(k);
        }
    }

    /// [`OfferBook::accept`]'s checks, changing nothing.
    pub fn check_accept(
        &self,
        framework: &str,
        ids: &[String],
        tasks: &[LaunchAsk],
    ) -> Result<String, AcceptError> {
        if ids.is_empty() {
            return Err(accept_error(
                "accept.offer_ids",
                "must name at least one offer",
            ));
        }
        let mut node: Option<&str> = None;
        let mut offered = Amounts::default();
        let mut offers = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let field = format!("accept.offer_ids[{i}]");
            let Some(o) = self.offers.get(id).filter(|o| o.framework == framework) else {
                return Err(accept_error(
                    field,
                    format!("no outstanding offer {id:?} for framework {framework:?} (unknown, already used, declined or rescinded)"),
                ));
            };
            if ids[..i].contains(id) {
                return Err(accept_error(field, format!("offer {id:?} is named twice")));
            }
            match node {
                Some(n) if n != o.node => {
                    return Err(accept_error(
                        field,
                        format!(
                            "offer {id:?} is for node {:?}, the others for {n:?}: one accept launches on one node",
                            o.node
                        ),
                    ))
                }
                _ => node = Some(&o.node),
            }
            offered.add(&o.resources);
            offers.push(o);
        }
        let mut wanted = Amounts::default();
        let mut ports = BTreeSet::new();
        for t in tasks {
            wanted.add(&t.amounts);
            if let Some(dim) = offered.shortfall(&wanted) {
                let (want, have) = match dim {
                    "cpus" => (format!("{}", wanted.cpus), format!("{}", offered.cpus)),
                    "memMiB" => (wanted.mem_mib.to_string(), offered.mem_mib.to_string()),
                    "diskMiB" => (wanted.disk_mib.to_string(), offered.disk_mib.to_string()),
                    _ => (wanted.gpus.to_string(), offered.gpus.to_string()),
                };
                let name = match dim {
                    "memMiB" => "mem",
                    "diskMiB" => "disk",
                    other => other,
                };
                return Err(accept_error(
                    format!("{}.resources.{name}", t.field),
                    format!("the tasks up to this one need {want} {name}, the offers hold {have}"),
                ));
            }
            for (k, &p) in t.ports.iter().enumerate() {
                let field = format!("{}.ports[{k}]", t.field);
                if !offers.iter().any(|o| o.has_port(p)) {
                    return Err(accept_error(
                        field,
                        format!("port {p} is not in the offered ranges"),
                    ));
                }
                if !ports.insert(p) {
                    return Err(accept_error(field, format!("port {p} is asked for twice")));
                }
            }
        }
        Ok(node.unwrap_or_default().to_string())
    }

    /// One round: rescinds offers of nodes that went away or became unusable and
    /// offers that timed out, forgets expired filters, then offers every node's free
    /// resources, each to the framework next in weighted-DRF order that has no offer of
    /// that node and does not refuse it.
    pub fn cycle(&mut self, view: &ClusterView<'_>, now: Instant) -> Vec<BookEvent> {
        let mut events = Vec::new();
        self.filters.retain(|_, until| *until > now);
        self.launched
            .retain(|key, l| l.until > now && !view.known_tasks.contains(key));

        // Rescind.
        let ids: Vec<String> = self.offers.keys().cloned().collect();
        for id in ids {
            let Some(o) = self.offers.get(&id) else {
                continue;
            };
            let node = view
                .inventory
                .position(&o.node)
                .and_then(|i| view.inventory.nodes.get(i));
            let reason = match node {
                None => Some(RescindReason::NodeGone),
                Some(n) => unusable(n, view.maintenance),
            }
            .or_else(|| {
                (now.duration_since(o.created) >= self.offer_timeout)
                    .then_some(RescindReason::Timeout)
            });
            // A framework that unsubscribed lost its offers then; none left to find.
            if let Some(reason) = reason {
                if let Some(offer) = self.offers.remove(&id) {
                    events.push(BookEvent::Rescinded { offer, reason });
                }
            }
        }
        if self.subscribers.is_empty() {
            return events;
        }

        // What each node has left, and each role holds, counting offers and launches.
        let mut held: HashMap<&str, (Amounts, BTreeSet<u16>)> = HashMap::new();
        let mut roles: BTreeMap<String, Amounts> = view.role_usage.clone();
        for o in self.offers.values() {
            let e = held.entry(o.node.as_str()).or_default();
            e.0.add(&o.resources);
            if let Some(s) = self.subscribers.get(&o.framework) {
                roles.entry(s.role.clone()).or_default().add(&o.resources);
            }
        }
        for l in self.launched.values() {
            let e = held.entry(l.node.as_str()).or_default();
            e.0.add(&l.amounts);
            e.1.extend(l.ports.iter().copied());
            roles.entry(l.role.clone()).or_default().add(&l.amounts);
        }
        let total = view.inventory.total();
        let mut new_offers = Vec::new();
        let mut nodes: Vec<&NodeState> = view
            .inventory
            .nodes
            .iter()
            .filter(|n| unusable(n, view.maintenance).is_none())
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        // What is free in the whole cluster, and what of it is set aside for guarantees.
        let mut pool = Amounts::default();
        for n in &nodes {
            let in_offers = held.get(n.name.as_str()).map(|h| h.0).unwrap_or_default();
            pool.add(&n.free().minus(&in_offers).at_least_zero());
        }
        let mut reserved = Reserved::new(view.role_policies, &roles);
        for n in nodes {
            let (in_offers, taken_ports) = held.get(n.name.as_str()).cloned().unwrap_or_default();
            let free = n.free().minus(&in_offers);
            if !worth_offering(&free) {
                continue;
            }
            let cut = Cut {
                pool: &pool,
                reserved: &reserved,
                policies: view.role_policies,
            };
            let Some((framework, offered)) =
                self.next_framework(&n.name, &free, &roles, &cut, &total, now)
            else {
                continue;
            };
            let mut used_ports = n.ports.used.clone();
            used_ports.extend(taken_ports);
            // Ports are offered whole with the node: an offer never overlaps another.
            let ports = free_ranges(&n.ports.ranges, &used_ports);
            let offer = Offer {
                id: format!("{}-o{}", self.epoch, self.next_id),
                framework: framework.clone(),
                node: n.name.clone(),
                resources: Amounts {
                    cpus: offered.cpus,
                    mem_mib: offered.mem_mib,
                    disk_mib: offered.disk_mib.max(0),
                    gpus: offered.gpus.max(0),
                },
                ports,
                created: now,
            };
            self.next_id += 1;
            pool = pool.minus(&offer.resources);
            if let Some(s) = self.subscribers.get(&framework) {
                let held = roles.entry(s.role.clone()).or_default();
                held.add(&offer.resources);
                reserved.update(&s.role, view.role_policies.get(&s.role), held);
            }
            new_offers.push(offer);
        }
        for o in new_offers {
            self.offers.insert(o.id.clone(), o.clone());
            events.push(BookEvent::Offered(o));
        }
        events
    }

    /// The framework that gets node `node` next, and what of `free` it is offered:
    /// roles in weighted-DRF order (a role's weight is the largest of its
    /// frameworks'), frameworks of one role by name; skipping roles at their Quota
    /// limit or left nothing by others' guarantees, and frameworks holding an offer of
    /// the node or refusing it.
    fn next_framework(
        &self,
        node: &str,
        free: &Amounts,
        roles: &BTreeMap<String, Amounts>,
        cut: &Cut<'_>,
        total: &Amounts,
        now: Instant,
    ) -> Option<(String, Amounts)> {
        let mut by_role: BTreeMap<&str, (f64, Vec<&str>)> = BTreeMap::new();
        for (name, s) in &self.subscribers {
            let e = by_role.entry(s.role.as_str()).or_insert((0.0, Vec::new()));
            e.0 = e.0.max(s.weight);
            e.1.push(name.as_str());
        }
        let usage: Vec<RoleUsage> = by_role
            .iter()
            .map(|(role, (weight, _))| RoleUsage {
                role: role.to_string(),
                weight: *weight,
                allocated: roles.get(*role).copied().unwrap_or_default(),
            })
            .collect();
        for r in Drf.order(&usage, total) {
            let Some((_, frameworks)) = by_role.get(r.role.as_str()) else {
                continue;
            };
            let limit = cut.policies.get(&r.role).map(|p| &p.limit);
            let offered = at_most(
                &within_limit(free, limit, &r.allocated),
                &cut.reserved.available_to(&r.role, cut.pool),
            );
            if !worth_offering(&offered) {
                continue;
            }
            for f in frameworks {
                let has_offer = self
                    .offers
                    .values()
                    .any(|o| o.framework == *f && o.node == node);
                let refused = self
                    .filters
                    .get(&(f.to_string(), node.to_string()))
                    .is_some_and(|until| *until > now);
                if !has_offer && !refused {
                    return Some((f.to_string(), offered));
                }
            }
        }
        None
    }
}

/// What bounds an offer beyond the node's free resources: the cluster's free pool less
/// other roles' unmet guarantees, and the role's limit.
struct Cut<'a> {
    pool: &'a Amounts,
    reserved: &'a Reserved,
    policies: &'a BTreeMap<String, RolePolicy>,
}

/// Why a node takes no offers now, if it does not.
fn unusable(n: &NodeState, maintenance: &BTreeSet<String>) -> Option<RescindReason> {
    if !n.ready {
        Some(RescindReason::NodeNotReady)
    } else if !n.schedulable {
        Some(RescindReason::NodeCordoned)
    } else if maintenance.contains(&n.name) {
        Some(RescindReason::NodeInMaintenance)
    } else {
        None
    }
}

/// The parts of `ranges` not in `used`, as inclusive ranges.
pub fn free_ranges(ranges: &[(u16, u16)], used: &BTreeSet<u16>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for &(a, b) in ranges {
        let mut start = a;
        for &p in used.range(a..=b) {
            if p > start {
                out.push((start, p - 1));
            }
            if p == u16::MAX {
                start = p;
                break;
            }
            start = p + 1;
        }
        if start <= b && !(start == b && used.contains(&b)) {
            out.push((start, b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::inventory::PortPool;

    fn node(name: &str, cpus: f64, mem: i64) -> NodeState {
        NodeState {
            name: name.into(),
            attributes: Default::default(),
            allocatable: Amounts {
                cpus,
                mem_mib: mem,
                disk_mib: 0,
                gpus: 0,
            },
            used: Amounts::default(),
            ports: PortPool {
                ranges: vec![(31000, 31009)],
                used: BTreeSet::new(),
            },
            schedulable: true,
            ready: true,
        }
    }

    struct World {
        inv: Inventory,
        maintenance: BTreeSet<String>,
        roles: BTreeMap<String, Amounts>,
        known: BTreeSet<String>,
        policies: BTreeMap<String, RolePolicy>,
    }

    impl World {
        fn new(nodes: Vec<NodeState>) -> World {
            World {
                inv: Inventory::new(nodes),
                maintenance: BTreeSet::new(),
                roles: BTreeMap::new(),
                known: BTreeSet::new(),
                policies: BTreeMap::new(),
            }
        }
        fn cycle(&self, book: &mut OfferBook, now: Instant) -> Vec<BookEvent> {
            book.cycle(
                &ClusterView {
                    inventory: &self.inv,
                    maintenance: &self.maintenance,
                    role_usage: &self.roles,
                    known_tasks: &self.known,
                    role_policies: &self.policies,
                },
                now,
            )
        }
    }

    fn offered(events: &[BookEvent]) -> Vec<(String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                BookEvent::Offered(o) => Some((o.framework.clone(), o.node.clone())),
                _ => None,
            })
            .collect()
    }

    /// A Quota amount of cpus and memory.
    fn cpus_mem(cpus: f64, mem_mib: i64) -> Resources {
        Resources {
            cpus: Some(cpus),
            mem_mib: Some(mem_mib),
            ..Default::default()
        }
    }

    /// (node, cpus, memMiB) of every offer made.
    fn offered_amounts(events: &[BookEvent]) -> Vec<(String, f64, i64)> {
        events
            .iter()
            .filter_map(|e| match e {
                BookEvent::Offered(o) => {
                    Some((o.node.clone(), o.resources.cpus, o.resources.mem_mib))
                }
                _ => None,
            })
            .collect()
    }

    fn rescinded(events: &[BookEvent]) -> Vec<(String, RescindReason)> {
        events
            .iter()
            .filter_map(|e| match e {
                BookEvent::Rescinded { offer, reason } => Some((offer.node.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    fn ids_of(book: &OfferBook, framework: &str) -> Vec<String> {
        book.offers
            .values()
            .filter(|o| o.framework == framework)
            .map(|o| o.id.clone())
            .collect()
    }

    /// A role's Quota limit caps its offers (what its tasks and outstanding offers hold
    /// counts); a role at its limit gets none while another role still gets offers.
    #[test]
    fn quota_limits_cap_a_roles_offers() {
        let mut w = World::new(vec![node("a", 4.0, 4096), node("b", 4.0, 4096)]);
        w.policies.insert(
            "capped".into(),
            RolePolicy {
                limit: cpus_mem(3.0, 5000),
                ..Default::default()
            },
        );
        let mut book = OfferBook::default();
        let t0 = Instant::now();
        book.subscribe("fw", "capped", 1.0);
        let ev = w.cycle(&mut book, t0);
        let got = offered_amounts(&ev);
        // Node a: cpus cut to the limit; node b: no cpu left under it.
        assert_eq!(got, vec![("a".to_string(), 3.0, 4096)]);

        // Its tasks count too: holding 2.5 cpus, it may be offered 0.5.
        let mut book = OfferBook::default();
        book.subscribe("fw", "capped", 1.0);
        w.roles.insert(
            "capped".into(),
            Amounts {
                cpus: 2.5,
                mem_mib: 512,
                ..Default::default()
            },
        );
        let ev = w.cycle(&mut book, t0);
        let got = offered_amounts(&ev);
        assert_eq!(got, vec![("a".to_string(), 0.5, 4096)]);

        // At the limit: nothing for it; a role without a limit gets both nodes.
        w.roles.get_mut("capped").expect("role").cpus = 3.0;
        let mut book = OfferBook::default();
        book.subscribe("fw", "capped", 1.0);
        book.subscribe("free", "other", 1.0);
        let ev = w.cycle(&mut book, t0);
        let mut got = offered(&ev);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("free".to_string(), "a".to_string()),
                ("free".to_string(), "b".to_string())
            ]
        );
    }

    /// A role's unmet Quota guarantee is offered to no other role, even while it has no
    /// framework; once it subscribes it is offered what was set aside.
    #[test]
    fn a_quota_guarantee_is_not_offered_to_other_roles() {
        let mut w = World::new(vec![node("a", 4.0, 4096), node("b", 4.0, 4096)]);
        w.policies.insert(
            "prod".into(),
            RolePolicy {
                guarantee: cpus_mem(3.0, 1024),
                ..Default::default()
            },
        );
        let t0 = Instant::now();
        let mut book = OfferBook::default();
        book.subscribe("dev-fw", "dev", 1.0);
        let got = offered_amounts(&w.cycle(&mut book, t0));
        // 8 cpus and 8192 MiB free, 3 cpus and 1024 MiB set aside for prod.
        assert_eq!(
            got,
            vec![("a".to_string(), 4.0, 4096), ("b".to_string(), 1.0, 3072)]
        );

        // What prod already holds shrinks what is set aside.
        w.roles.insert(
            "prod".into(),
            Amounts {
                cpus: 2.0,
                mem_mib: 1024,
                ..Default::default()
            },
        );
        w.inv.nodes[1].used = w.roles["prod"];
        let mut book = OfferBook::default();
        book.subscribe("dev-fw", "dev", 1.0);
        let got = offered_amounts(&w.cycle(&mut book, t0));
        assert_eq!(
            got,
            vec![("a".to_string(), 4.0, 4096), ("b".to_string(), 1.0, 3072)]
        );

        // With prod subscribed, it gets the node dev may not have.
        w.roles.clear();
        w.inv.nodes[1].used = Amounts::default();
        let mut book = OfferBook::default();
        book.subscribe("dev-fw", "dev", 1.0);
        book.subscribe("prod-fw", "prod", 1.0);
        let got = offered(&w.cycle(&mut book, t0));
        assert_eq!(
            got,
            vec![
                ("dev-fw".to_string(), "a".to_string()),
                ("prod-fw".to_string(), "b".to_string())
            ]
        );
    }

    #[test]
    fn free_resources_go_once_to_one_framework_and_declines_filter() {
        let mut w = World::new(vec![node("a", 2.0, 1024), node("b", 4.0, 2048)]);
        w.inv.bind(
            0,
            &Amounts {
                cpus: 0.5,
                mem_mib: 256,
                ..Default::default()
            },
            &[31000],
        );
        let mut book = OfferBook::default();
        let t0 = Instant::now();
        book.subscribe("fw", "*", 1.0);
        let ev = w.cycle(&mut book, t0);
        assert_eq!(
            offered(&ev),
            vec![("fw".into(), "a".into()), ("fw".into(), "b".into())]
        );
        let a = book
            .offers
            .values()
            .find(|o| o.node == "a")
            .cloned()
            .expect("offer of a");
        assert_eq!((a.resources.cpus, a.resources.mem_mib), (1.5, 768));
        assert_eq!(a.ports, vec![(31001, 31009)]);
        // Nothing twice while outstanding.
        assert!(w.cycle(&mut book, t0).is_empty());
        assert_eq!(book.outstanding("fw"), 2);

        // Declining a for 30 s: not offered again at 29 s, offered at 30 s.
        book.decline(
            "fw",
            std::slice::from_ref(&a.id),
            Duration::from_secs(30),
            t0,
        );
        assert!(w.cycle(&mut book, t0 + Duration::from_secs(29)).is_empty());
        let ev = w.cycle(&mut book, t0 + Duration::from_secs(30));
        assert_eq!(offered(&ev), vec![("fw".into(), "a".into())]);
    }

    #[test]
    fn nodes_that_go_away_or_become_unusable_rescind_and_get_no_offers() {
        let mut w = World::new(vec![
            node("a", 1.0, 512),
            node("b", 1.0, 512),
            node("c", 1.0, 512),
            node("d", 1.0, 512),
        ]);
        let mut book = OfferBook::new(Duration::from_secs(10));
        let t0 = Instant::now();
        book.subscribe("fw", "*", 1.0);
        assert_eq!(offered(&w.cycle(&mut book, t0)).len(), 4);
        w.inv.nodes[0].schedulable = false;
        w.inv.nodes[1].ready = false;
        w.maintenance.insert("c".into());
        let ev = w.cycle(&mut book, t0);
        assert_eq!(
            rescinded(&ev),
            vec![
                ("a".into(), RescindReason::NodeCordoned),
                ("b".into(), RescindReason::NodeNotReady),
                ("c".into(), RescindReason::NodeInMaintenance),
            ]
        );
        assert!(offered(&ev).is_empty());
        // Deleted node d; and the timeout.
        w.inv = Inventory::new(w.inv.nodes[..3].to_vec());
        assert_eq!(
            rescinded(&w.cycle(&mut book, t0)),
            vec![("d".into(), RescindReason::NodeGone)]
        );
        w.inv.nodes[0].schedulable = true;
        assert_eq!(
            offered(&w.cycle(&mut book, t0)),
            vec![("fw".into(), "a".into())]
        );
        let ev = w.cycle(&mut book, t0 + Duration::from_secs(10));
        assert_eq!(rescinded(&ev), vec![("a".into(), RescindReason::Timeout)]);
        // Its resources went back: offered again in the same cycle.
        assert_eq!(offered(&ev), vec![("fw".into(), "a".into())]);
    }

    #[test]
    fn drf_order_decides_who_gets_a_node_first() {
        let mut w = World::new(vec![node("a", 10.0, 10_000)]);
        w.roles.insert(
            "big".into(),
            Amounts {
                cpus: 5.0,
                ..Default::default()
            },
        );
        w.roles.insert(
            "small".into(),
            Amounts {
                cpus: 1.0,
                ..Default::default()
            },
        );
        let mut book = OfferBook::default();
        let t0 = Instant::now();
        book.subscribe("f-big", "big", 1.0);
        book.subscribe("f-small", "small", 1.0);
        assert_eq!(
            offered(&w.cycle(&mut book, t0)),
            vec![("f-small".into(), "a".into())]
        );
        // Weight 10 makes big's 50 % share count as 5 %: it goes first.
        let mut book = OfferBook::default();
        book.subscribe("f-big", "big", 10.0);
        book.subscribe("f-small", "small", 1.0);
        assert_eq!(
            offered(&w.cycle(&mut book, t0)),
            vec![("f-big".into(), "a".into())]
        );
        // The next in line gets the node once the first declines it.
        let id = ids_of(&book, "f-big");
        book.decline("f-big", &id, DEFAULT_REFUSE, t0);
        assert_eq!(
            offered(&w.cycle(&mut book, t0)),
            vec![("f-small".into(), "a".into())]
        );
        // Unsubscribing returns the offers at once.
        assert_eq!(book.unsubscribe("f-small").len(), 1);
        assert_eq!(book.outstanding("f-small"), 0);
    }

    #[test]
    fn accept_checks_the_fit_and_holds_launched_resources() {
        let w = World::new(vec![node("a", 2.0, 1024), node("b", 2.0, 1024)]);
        let mut book = OfferBook::default();
        let t0 = Instant::now();
        book.subscribe("fw", "*", 1.0);
        w.cycle(&mut book, t0);
        let a = book
            .offers
            .values()
            .find(|o| o.node == "a")
            .cloned()
            .expect("a");
        let b = book
            .offers
            .values()
            .find(|o| o.node == "b")
            .cloned()
            .expect("b");
        let ask = |cpus: f64, mem: i64, ports: Vec<u16>| LaunchAsk {
            key: "ns/t1".into(),
            field: "accept.operations[0].launch.task_infos[0]".into(),
            amounts: Amounts {
                cpus,
                mem_mib: mem,
                ..Default::default()
            },
            ports,
        };
        let err = book
            .accept(
                "fw",
                std::slice::from_ref(&a.id),
                &[ask(3.0, 10, vec![])],
                DEFAULT_REFUSE,
                t0,
            )
            .expect_err("too many cpus");
        assert_eq!(
            err.field,
            "accept.operations[0].launch.task_infos[0].resources.cpus"
        );
        let err = book
            .accept(
                "fw",
                &["nope".into()],
                &[ask(1.0, 10, vec![])],
                DEFAULT_REFUSE,
                t0,
            )
            .expect_err("unknown offer");
        assert_eq!(err.field, "accept.offer_ids[0]");
        let err = book
            .accept("fw", &[a.id.clone(), b.id.clone()], &[], DEFAULT_REFUSE, t0)
            .expect_err("two nodes");
        assert_eq!(err.field, "accept.offer_ids[1]");
        let err = book
            .accept(
                "fw",
                std::slice::from_ref(&a.id),
                &[ask(1.0, 10, vec![40000])],
                DEFAULT_REFUSE,
                t0,
            )
            .expect_err("port outside");
        assert!(err.field.ends_with("ports[0]"), "{err}");
        let err = book
            .accept(
                "other",
                std::slice::from_ref(&a.id),
                &[ask(1.0, 10, vec![])],
                DEFAULT_REFUSE,
                t0,
            )
            .expect_err("not its offer");
        assert_eq!(err.field, "accept.offer_ids[0]");
        // Failed accepts changed nothing.
        assert_eq!(book.outstanding("fw"), 2);

        let node = book
            .accept(
                "fw",
                std::slice::from_ref(&a.id),
                &[ask(1.5, 100, vec![31003])],
                Duration::ZERO,
                t0,
            )
            .expect("fits");
        assert_eq!(node, "a");
        assert_eq!(book.outstanding("fw"), 1);
        // The rest of a is offered again at once (refuse 0), without the launched part.
        let ev = w.cycle(&mut book, t0);
        assert_eq!(offered(&ev), vec![("fw".into(), "a".into())]);
        let rest = book
            .offers
            .values()
            .find(|o| o.node == "a")
            .cloned()
            .expect("rest");
        assert_eq!((rest.resources.cpus, rest.resources.mem_mib), (0.5, 924));
        assert_eq!(rest.ports, vec![(31000, 31002), (31004, 31009)]);
    }

    #[test]
    fn an_offer_whose_resources_were_bound_since_is_short_now() {
        let mut w = World::new(vec![node("a", 2.0, 1024)]);
        let mut book = OfferBook::default();
        let t0 = Instant::now();
        book.subscribe("fw", "*", 1.0);
        w.cycle(&mut book, t0);
        let ids = ids_of(&book, "fw");
        // An App task took 1.5 cpus of the node after the offer was made.
        w.inv.bind(
            0,
            &Amounts {
                cpus: 1.5,
                mem_mib: 10,
                ..Default::default()
            },
            &[],
        );
        let ask = |cpus: f64| LaunchAsk {
            key: "ns/t".into(),
            field: "t".into(),
            amounts: Amounts {
                cpus,
                mem_mib: 10,
                ..Default::default()
            },
            ports: vec![],
        };
        let view = ClusterView {
            inventory: &w.inv,
            maintenance: &w.maintenance,
            role_usage: &w.roles,
            known_tasks: &w.known,
            role_policies: &w.policies,
        };
        assert_eq!(book.short_now(&view, "a", &ids, &[ask(1.0)]), Some("cpus"));
        assert_eq!(book.short_now(&view, "a", &ids, &[ask(0.5)]), None);
        assert_eq!(book.rescind(&ids).len(), 1);
        assert_eq!(book.outstanding("fw"), 0);
    }

    #[test]
    fn free_ranges_cut_around_used_ports() {
        let used: BTreeSet<u16> = [5, 6, 10].into();
        assert_eq!(free_ranges(&[(5, 10)], &used), vec![(7, 9)]);
        assert_eq!(free_ranges(&[(1, 4)], &used), vec![(1, 4)]);
        assert_eq!(
            free_ranges(&[(4, 11)], &used),
            vec![(4, 4), (7, 9), (11, 11)]
        );
        assert_eq!(free_ranges(&[(10, 10)], &used), Vec::<(u16, u16)>::new());
    }
}

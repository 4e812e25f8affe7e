//! Level 1 for the built-in App scheduler: how many of its missing instances each App
//! may place now, so that roles share the cluster by weighted DRF within their Quota
//! guarantees and limits, instead of whichever App reconciles first taking everything.
//!
//! Progressive filling (the DRF paper's algorithm) over the aggregate free resources:
//! repeatedly take the role with the lowest weighted dominant share that still has
//! demand that fits — roles below their guarantee first, never past a limit, never into
//! what is set aside for other roles' guarantees — and grant it one instance of its next
//! App (its Apps take turns in the order given), until nothing fits. Pure: the apps
//! controller feeds it from its caches and places at most the grant; the placement
//! pipeline (level 2) then picks the nodes.
//!
//! A guarantee is a reservation, as Mesos's quota guarantee: the part a role does not
//! hold yet is set aside from the free resources whether or not it asks for it now, so
//! that when it does the resources are there ([`Reserved`]).

use std::collections::BTreeMap;
use std::fmt;

use drover_api::resources::Resources;

use crate::allocator::drf::{Drf, RoleUsage, Sorter};
use crate::allocator::inventory::Amounts;

/// What the Quota objects of a role say: its DRF weight, guarantee and limit (unset
/// dimensions guarantee nothing and limit nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct RolePolicy {
    pub weight: f64,
    pub guarantee: Resources,
    pub limit: Resources,
}

impl Default for RolePolicy {
    fn default() -> Self {
        RolePolicy {
            weight: 1.0,
            guarantee: Resources::default(),
            limit: Resources::default(),
        }
    }
}

impl RolePolicy {
    /// Folds in one more Quota of the same role (Quotas are namespaced, roles are not):
    /// the tightest limit, the largest guarantee and weight win.
    pub fn merge(&mut self, weight: Option<f64>, guarantee: &Resources, limit: &Resources) {
        if let Some(w) = weight.filter(|w| w.is_finite() && *w > 0.0) {
            self.weight = if self.weight == 1.0 {
                w
            } else {
                self.weight.max(w)
            };
        }
        let g = &mut self.guarantee;
        g.cpus = max_opt(g.cpus, guarantee.cpus, f64::max);
        g.mem_mib = max_opt(g.mem_mib, guarantee.mem_mib, i64::max);
        g.disk_mib = max_opt(g.disk_mib, guarantee.disk_mib, i64::max);
        g.gpus = max_opt(g.gpus, guarantee.gpus, i32::max);
        let l = &mut self.limit;
        l.cpus = max_opt(l.cpus, limit.cpus, f64::min);
        l.mem_mib = max_opt(l.mem_mib, limit.mem_mib, i64::min);
        l.disk_mib = max_opt(l.disk_mib, limit.disk_mib, i64::min);
        l.gpus = max_opt(l.gpus, limit.gpus, i32::min);
    }

    /// The part of its guarantee a role holding `used` does not hold yet.
    pub fn unmet(&self, used: &Amounts) -> Amounts {
        let g = &self.guarantee;
        Amounts {
            cpus: g.cpus.map_or(0.0, |v| (v - used.cpus).max(0.0)),
            mem_mib: g.mem_mib.map_or(0, |v| (v - used.mem_mib).max(0)),
            disk_mib: g.disk_mib.map_or(0, |v| (v - used.disk_mib).max(0)),
            gpus: g.gpus.map_or(0, |v| (v - used.gpus).max(0)),
        }
    }

    fn below_guarantee(&self, used: &Amounts) -> bool {
        let g = &self.guarantee;
        g.cpus.is_some_and(|v| used.cpus + 1e-9 < v)
            || g.mem_mib.is_some_and(|v| used.mem_mib < v)
            || g.disk_mib.is_some_and(|v| used.disk_mib < v)
            || g.gpus.is_some_and(|v| used.gpus < v)
    }
}

fn max_opt<T: Copy>(a: Option<T>, b: Option<T>, pick: fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

/// The first dimension in which `used + each` would pass `limit`: its API name and the
/// limit as written ("memMiB", "4096").
pub fn over_limit(
    limit: &Resources,
    used: &Amounts,
    each: &Amounts,
) -> Option<(&'static str, String)> {
    let mut after = *used;
    after.add(each);
    if let Some(l) = limit.cpus.filter(|l| after.cpus > l + 1e-9) {
        return Some(("cpus", l.to_string()));
    }
    if let Some(l) = limit.mem_mib.filter(|l| after.mem_mib > *l) {
        return Some(("memMiB", l.to_string()));
    }
    if let Some(l) = limit.disk_mib.filter(|l| after.disk_mib > *l) {
        return Some(("diskMiB", l.to_string()));
    }
    if let Some(l) = limit.gpus.filter(|l| after.gpus > *l) {
        return Some(("gpus", l.to_string()));
    }
    None
}

/// What is set aside for roles' guarantees: each guaranteed role's unmet part, from what
/// it holds. A role may take only what leaves the others' parts free (it may take its
/// own).
#[derive(Clone, Debug, Default)]
pub struct Reserved {
    unmet: BTreeMap<String, Amounts>,
}

impl Reserved {
    /// From the roles' policies and what each holds (bound tasks, and whatever else the
    /// caller counts as held: outstanding offers, launches).
    pub fn new(policies: &BTreeMap<String, RolePolicy>, held: &BTreeMap<String, Amounts>) -> Self {
        let unmet = policies
            .iter()
            .map(|(role, p)| {
                let used = held.get(role).copied().unwrap_or_default();
                (role.clone(), p.unmet(&used))
            })
            .filter(|(_, u)| !u.is_zero())
            .collect();
        Reserved { unmet }
    }

    /// `role` (of `policy`) now holds `used`.
    pub fn update(&mut self, role: &str, policy: Option<&RolePolicy>, used: &Amounts) {
        let unmet = policy.map(|p| p.unmet(used)).unwrap_or_default();
        if unmet.is_zero() {
            self.unmet.remove(role);
        } else {
            self.unmet.insert(role.to_string(), unmet);
        }
    }

    /// What `role` may take of `free`, per dimension: what the other roles' unmet
    /// guarantees leave, and at least its own unmet part (as far as it is free) — so two
    /// guaranteed roles owed more than the cluster holds do not hold each other off;
    /// never negative, so a guarantee of one dimension never blocks a demand of none.
    pub fn available_to(&self, role: &str, free: &Amounts) -> Amounts {
        let mut others = Amounts::default();
        for (_, u) in self.unmet.iter().filter(|(r, _)| r.as_str() != role) {
            others.add(u);
        }
        let own = self.unmet.get(role).copied().unwrap_or_default();
        Amounts {
            cpus: (free.cpus - others.cpus).max(own.cpus.min(free.cpus)),
            mem_mib: (free.mem_mib - others.mem_mib).max(own.mem_mib.min(free.mem_mib)),
            disk_mib: (free.disk_mib - others.disk_mib).max(own.disk_mib.min(free.disk_mib)),
            gpus: (free.gpus - others.gpus).max(own.gpus.min(free.gpus)),
        }
        .at_least_zero()
    }

    /// The roles other than `role` with something set aside in `dimension` (an API
    /// name, as [`Amounts::shortfall`] gives).
    pub fn holders_besides(&self, role: &str, dimension: &str) -> Vec<String> {
        self.unmet
            .iter()
            .filter(|(r, u)| {
                r.as_str() != role
                    && match dimension {
                        "cpus" => u.cpus > 1e-9,
                        "memMiB" => u.mem_mib > 0,
                        "diskMiB" => u.disk_mib > 0,
                        _ => u.gpus > 0,
                    }
            })
            .map(|(r, _)| r.clone())
            .collect()
    }
}

/// The outstanding demand of one App: `missing` more instances of `each`, in `role`.
#[derive(Clone, Debug, PartialEq)]
pub struct Demand<K> {
    pub key: K,
    pub role: String,
    pub each: Amounts,
    pub missing: usize,
}

/// Why an App may not place all it is missing now.
#[derive(Clone, Debug, PartialEq)]
pub enum Held {
    /// Other roles are owed the rest of the cluster first.
    FairShare { role: String },
    /// One more instance would take the role past its Quota limit.
    Limit {
        role: String,
        resource: &'static str,
        limit: String,
    },
    /// What is free is set aside for other roles' Quota guarantees.
    Reserved { roles: Vec<String> },
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::FairShare { role } => write!(f, "waiting for role `{role}`'s fair share (DRF)"),
            Held::Limit {
                role,
                resource,
                limit,
            } => write!(f, "role `{role}` at its quota limit {resource} {limit}"),
            Held::Reserved { roles } => {
                let names: Vec<String> = roles.iter().map(|r| format!("`{r}`")).collect();
                let s = if roles.len() == 1 { "" } else { "s" };
                write!(
                    f,
                    "the free resources are set aside for the quota guarantee{s} of role{s} {}",
                    names.join(", ")
                )
            }
        }
    }
}

/// How many instances an App may place now, and why not more when that is fewer than
/// it is missing.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub granted: usize,
    pub held: Option<Held>,
}

/// The cluster as level 1 sees it: `total` of the schedulable Ready nodes, `free` of
/// them in aggregate, what each role's bound active tasks hold, and the roles' Quota
/// policies (a role without one has weight 1, no guarantee, no limit).
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub total: Amounts,
    pub free: Amounts,
    pub usage: BTreeMap<String, Amounts>,
    pub policies: BTreeMap<String, RolePolicy>,
}

/// One role during the fill: what it holds and its Apps' remaining demand.
struct RoleFill {
    name: String,
    policy: RolePolicy,
    used: Amounts,
    /// Indexes into the demands, in the order given.
    apps: Vec<usize>,
    /// Whose turn it is among `apps`.
    cursor: usize,
}

impl RoleFill {
    /// The next App (from the cursor, round robin) whose instance fits in `free` and
    /// keeps the role within its limit.
    fn next<K>(&self, demands: &[Demand<K>], left: &[usize], free: &Amounts) -> Option<usize> {
        let n = self.apps.len();
        (0..n).map(|k| self.apps[(self.cursor + k) % n]).find(|&i| {
            let d = &demands[i];
            left[i] > 0
                && free.shortfall(&d.each).is_none()
                && over_limit(&self.policy.limit, &self.used, &d.each).is_none()
        })
    }
}

/// Progressive filling: the grant of every demand, in the same order.
pub fn fill<K>(cluster: &Cluster, demands: &[Demand<K>]) -> Vec<Grant> {
    let mut roles: Vec<RoleFill> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in demands.iter().enumerate() {
        let r = *index.entry(d.role.as_str()).or_insert_with(|| {
            roles.push(RoleFill {
                name: d.role.clone(),
                policy: cluster.policies.get(&d.role).cloned().unwrap_or_default(),
                used: cluster.usage.get(&d.role).copied().unwrap_or_default(),
                apps: Vec::new(),
                cursor: 0,
            });
            roles.len() - 1
        });
        roles[r].apps.push(i);
    }
    let mut left: Vec<usize> = demands.iter().map(|d| d.missing).collect();
    let mut granted = vec![0usize; demands.len()];
    let mut free = cluster.free;
    let mut reserved = Reserved::new(&cluster.policies, &cluster.usage);
    loop {
        // Each role that can take one more instance now, with the App it would be.
        let candidates: Vec<(usize, usize)> = roles
            .iter()
            .enumerate()
            .filter_map(|(r, role)| {
                let available = reserved.available_to(&role.name, &free);
                role.next(demands, &left, &available).map(|i| (r, i))
            })
            .collect();
        let Some((r, i)) = pick(&roles, &candidates, &cluster.total) else {
            break;
        };
        let each = demands[i].each;
        let role = &mut roles[r];
        role.used.add(&each);
        reserved.update(&role.name, Some(&role.policy), &role.used);
        let pos = role.apps.iter().position(|&a| a == i).unwrap_or(0);
        role.cursor = (pos + 1) % role.apps.len().max(1);
        free = free.minus(&each);
        left[i] -= 1;
        granted[i] += 1;
    }
    demands
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let held = (left[i] > 0).then(|| {
                let role = &roles[index[d.role.as_str()]];
                // Fits in what is free, not in what the others' guarantees leave.
                let set_aside = free
                    .shortfall(&d.each)
                    .is_none()
                    .then(|| reserved.available_to(&role.name, &free).shortfall(&d.each))
                    .flatten();
                match (
                    over_limit(&role.policy.limit, &role.used, &d.each),
                    set_aside,
                ) {
                    (Some((resource, limit)), _) => Held::Limit {
                        role: d.role.clone(),
                        resource,
                        limit,
                    },
                    (None, Some(dimension)) => Held::Reserved {
                        roles: reserved.holders_besides(&role.name, dimension),
                    },
                    (None, None) => Held::FairShare {
                        role: d.role.clone(),
                    },
                }
            });
            Grant {
                granted: granted[i],
                held,
            }
        })
        .collect()
}

/// The candidate to grant next: among roles below their guarantee if any, else among
/// all, the one the DRF sorter puts first.
fn pick(
    roles: &[RoleFill],
    candidates: &[(usize, usize)],
    total: &Amounts,
) -> Option<(usize, usize)> {
    let below: Vec<(usize, usize)> = candidates
        .iter()
        .copied()
        .filter(|&(r, _)| roles[r].policy.below_guarantee(&roles[r].used))
        .collect();
    let pool = if below.is_empty() { candidates } else { &below };
    let usages: Vec<RoleUsage> = pool
        .iter()
        .map(|&(r, _)| RoleUsage {
            role: roles[r].name.clone(),
            weight: roles[r].policy.weight,
            allocated: roles[r].used,
        })
        .collect();
    let first = Drf.order(&usages, total).first()?.role.clone();
    pool.iter().copied().find(|&(r, _)| roles[r].name == first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amounts(cpus: f64, mem_mib: i64) -> Amounts {
        Amounts {
            cpus,
            mem_mib,
            disk_mib: 0,
            gpus: 0,
        }
    }

    fn demand(key: &str, role: &str, cpus: f64, mem: i64, missing: usize) -> Demand<String> {
        Demand {
            key: key.into(),
            role: role.into(),
            each: amounts(cpus, mem),
            missing,
        }
    }

    fn empty(total: Amounts) -> Cluster {
        Cluster {
            total,
            free: total,
            ..Default::default()
        }
    }

    /// The DRF paper's example: 9 cpus, 18 GB; A's tasks <1 cpu, 4 GB>, B's <3 cpus,
    /// 1 GB> → A 3 tasks, B 2, both at a dominant share of 2/3.
    #[test]
    fn the_drf_papers_example() {
        let cluster = empty(amounts(9.0, 18 * 1024));
        let grants = fill(
            &cluster,
            &[
                demand("a", "a", 1.0, 4096, 100),
                demand("b", "b", 3.0, 1024, 100),
            ],
        );
        assert_eq!(grants[0].granted, 3);
        assert_eq!(grants[1].granted, 2);
        assert_eq!(grants[0].held, Some(Held::FairShare { role: "a".into() }));
        assert_eq!(
            grants[1].held.as_ref().map(ToString::to_string).as_deref(),
            Some("waiting for role `b`'s fair share (DRF)")
        );
    }

    /// Usage already bound counts: a role holding much gets less of what is free.
    #[test]
    fn existing_usage_counts() {
        let total = amounts(10.0, 10240);
        let mut cluster = empty(total);
        cluster.usage.insert("a".into(), amounts(4.0, 0));
        cluster.free = total.minus(&amounts(4.0, 0));
        let grants = fill(
            &cluster,
            &[demand("a", "a", 1.0, 0, 10), demand("b", "b", 1.0, 0, 10)],
        );
        // b catches up to 4, then they alternate: a 1 more, b 5.
        assert_eq!((grants[0].granted, grants[1].granted), (1, 5));
    }

    /// Weight 2 → about twice the dominant share.
    #[test]
    fn weights() {
        let mut cluster = empty(amounts(12.0, 12 * 1024));
        cluster.policies.insert(
            "heavy".into(),
            RolePolicy {
                weight: 2.0,
                ..Default::default()
            },
        );
        let grants = fill(
            &cluster,
            &[
                demand("h", "heavy", 1.0, 0, 100),
                demand("l", "light", 1.0, 0, 100),
            ],
        );
        assert_eq!((grants[0].granted, grants[1].granted), (8, 4));
    }

    /// A role below its guarantee goes first, even with a higher share.
    #[test]
    fn a_guarantee_is_served_first() {
        let mut cluster = empty(amounts(10.0, 10240));
        cluster.policies.insert(
            "prod".into(),
            RolePolicy {
                guarantee: Resources {
                    cpus: Some(7.0),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let grants = fill(
            &cluster,
            &[
                demand("dev", "dev", 1.0, 0, 100),
                demand("prod", "prod", 1.0, 0, 100),
            ],
        );
        assert_eq!((grants[0].granted, grants[1].granted), (3, 7));
    }

    /// A guarantee is set aside while its role asks for nothing: other roles get only
    /// what is free beyond its unmet part, and are told why.
    #[test]
    fn a_guarantee_is_set_aside_for_a_role_that_asks_for_nothing() {
        let total = amounts(10.0, 10240);
        let mut cluster = empty(total);
        cluster.policies.insert(
            "prod".into(),
            RolePolicy {
                guarantee: Resources {
                    cpus: Some(4.0),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        // prod holds 1 cpu of its 4: 3 are set aside of the 9 free.
        cluster.usage.insert("prod".into(), amounts(1.0, 0));
        cluster.free = total.minus(&amounts(1.0, 0));
        let grants = fill(&cluster, &[demand("dev", "dev", 1.0, 0, 100)]);
        assert_eq!(grants[0].granted, 6);
        assert_eq!(
            grants[0].held,
            Some(Held::Reserved {
                roles: vec!["prod".into()]
            })
        );
        assert_eq!(
            grants[0].held.as_ref().map(ToString::to_string).as_deref(),
            Some("the free resources are set aside for the quota guarantee of role `prod`")
        );
        // Once prod asks, it gets what was kept for it.
        let grants = fill(
            &cluster,
            &[
                demand("dev", "dev", 1.0, 0, 6),
                demand("prod", "prod", 1.0, 0, 3),
            ],
        );
        assert_eq!((grants[0].granted, grants[1].granted), (6, 3));
    }

    /// Two roles guaranteed more than the cluster holds do not hold each other off: each
    /// may take its own unmet part, and DRF among them shares the cluster.
    #[test]
    fn guarantees_beyond_the_cluster_still_fill_it() {
        let mut cluster = empty(amounts(8.0, 8192));
        for role in ["a", "b"] {
            cluster.policies.insert(
                role.into(),
                RolePolicy {
                    guarantee: Resources {
                        cpus: Some(6.0),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            );
        }
        let grants = fill(
            &cluster,
            &[demand("a", "a", 1.0, 0, 100), demand("b", "b", 1.0, 0, 100)],
        );
        assert_eq!((grants[0].granted, grants[1].granted), (4, 4));
    }

    /// A guarantee of one dimension (gpus, none free) does not block demand that asks
    /// for none of it; a hold names only the roles owed the dimension that is short.
    #[test]
    fn a_guarantee_blocks_only_its_own_dimensions() {
        let mut cluster = empty(amounts(4.0, 4096));
        cluster.policies.insert(
            "ml".into(),
            RolePolicy {
                guarantee: Resources {
                    gpus: Some(4),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        cluster.policies.insert(
            "db".into(),
            RolePolicy {
                guarantee: Resources {
                    mem_mib: Some(2048),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let grants = fill(
            &cluster,
            &[
                demand("cpu", "web", 1.0, 0, 3),
                demand("mem", "cache", 0.0, 1024, 10),
            ],
        );
        assert_eq!(grants[0].granted, 3);
        assert_eq!(grants[0].held, None);
        assert_eq!(grants[1].granted, 2);
        assert_eq!(
            grants[1].held,
            Some(Held::Reserved {
                roles: vec!["db".into()]
            })
        );
    }

    /// A limit caps the role; the others get the rest; the reason names the dimension.
    #[test]
    fn a_limit_caps_the_role_and_the_rest_goes_to_others() {
        let mut cluster = empty(amounts(8.0, 8192));
        cluster.policies.insert(
            "b".into(),
            RolePolicy {
                limit: Resources {
                    mem_mib: Some(2048),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let grants = fill(
            &cluster,
            &[
                demand("a", "a", 1.0, 256, 100),
                demand("b", "b", 0.25, 1024, 100),
            ],
        );
        assert_eq!((grants[0].granted, grants[1].granted), (7, 2));
        assert_eq!(
            grants[1].held.as_ref().map(ToString::to_string).as_deref(),
            Some("role `b` at its quota limit memMiB 2048")
        );
    }

    /// The e2e test's cluster: two roles whose tasks take 1/8 dominant share each end
    /// equal and nothing more fits.
    #[test]
    fn two_roles_end_equal_when_both_want_more_than_fits() {
        let cluster = empty(amounts(8.0, 8192));
        let grants = fill(
            &cluster,
            &[
                demand("a", "a", 1.0, 256, 100),
                demand("b", "b", 0.25, 1024, 100),
            ],
        );
        assert_eq!((grants[0].granted, grants[1].granted), (6, 6));
    }

    /// Apps of one role take turns; what does not fit is skipped, not waited for.
    #[test]
    fn apps_of_a_role_take_turns_and_small_ones_fill_gaps() {
        let cluster = empty(amounts(5.0, 1 << 20));
        let grants = fill(
            &cluster,
            &[
                demand("big", "r", 2.0, 0, 10),
                demand("small", "r", 1.0, 0, 10),
            ],
        );
        // big 2, small 1, big 2 (5 used).
        assert_eq!((grants[0].granted, grants[1].granted), (2, 1));
        let all = fill(&cluster, &[demand("x", "r", 1.0, 0, 3)]);
        assert_eq!(
            all[0],
            Grant {
                granted: 3,
                held: None
            }
        );
    }

    #[test]
    fn merging_quotas_of_one_role_keeps_the_tightest_limit() {
        let mut p = RolePolicy::default();
        let lim = |m| Resources {
            mem_mib: Some(m),
            ..Default::default()
        };
        p.merge(None, &Resources::default(), &lim(4096));
        p.merge(Some(3.0), &lim(100), &lim(2048));
        assert_eq!(p.limit.mem_mib, Some(2048));
        assert_eq!(p.guarantee.mem_mib, Some(100));
        assert_eq!(p.weight, 3.0);
    }
}

//! Level 1 order: weighted Dominant Resource Fairness. The role with the smallest
//! dominant share (divided by its weight) is offered resources first; ties go by name
//! so the order is deterministic.

use crate::allocator::inventory::Amounts;

#[derive(Clone, Debug)]
pub struct RoleUsage {
    pub role: String,
    pub weight: f64,
    pub allocated: Amounts,
}

/// Decides which role goes next; behind a trait so other policies can replace it.
pub trait Sorter {
    fn order<'a>(&self, roles: &'a [RoleUsage], total: &Amounts) -> Vec<&'a RoleUsage>;
}

pub struct Drf;

impl Drf {
    pub fn share(usage: &RoleUsage, total: &Amounts) -> f64 {
        let w = if usage.weight > 0.0 {
            usage.weight
        } else {
            1.0
        };
        usage.allocated.dominant_share(total) / w
    }
}

impl Sorter for Drf {
    fn order<'a>(&self, roles: &'a [RoleUsage], total: &Amounts) -> Vec<&'a RoleUsage> {
        let mut sorted: Vec<&RoleUsage> = roles.iter().collect();
        sorted.sort_by(|a, b| {
            Drf::share(a, total)
                .total_cmp(&Drf::share(b, total))
                .then_with(|| a.role.cmp(&b.role))
        });
        sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(role: &str, weight: f64, cpus: f64, mem: i64) -> RoleUsage {
        RoleUsage {
            role: role.into(),
            weight,
            allocated: Amounts {
                cpus,
                mem_mib: mem,
                disk_mib: 0,
                gpus: 0,
            },
        }
    }

    /// The example of the DRF paper: 9 cpus, 18 GB; A's tasks are <1 cpu, 4 GB>, B's
    /// <3 cpu, 1 GB>. Offering to the lowest dominant share each time ends with A 3
    /// tasks and B 2, both at a 2/3 dominant share.
    #[test]
    fn drf_reaches_the_papers_allocation() {
        let total = Amounts {
            cpus: 9.0,
            mem_mib: 18 * 1024,
            disk_mib: 0,
            gpus: 0,
        };
        let mut roles = vec![usage("a", 1.0, 0.0, 0), usage("b", 1.0, 0.0, 0)];
        let demand = |r: &str| {
            if r == "a" {
                (1.0, 4 * 1024)
            } else {
                (3.0, 1024)
            }
        };
        loop {
            let mut used = Amounts::default();
            roles.iter().for_each(|r| used.add(&r.allocated));
            let order: Vec<String> = Drf
                .order(&roles, &total)
                .into_iter()
                .map(|r| r.role.clone())
                .collect();
            let mut granted = false;
            for name in order {
                let (c, m) = demand(&name);
                let free = total.minus(&used);
                if free.cpus >= c && free.mem_mib >= m {
                    if let Some(r) = roles.iter_mut().find(|r| r.role == name) {
                        r.allocated.cpus += c;
                        r.allocated.mem_mib += m;
                    }
                    granted = true;
                    break;
                }
            }
            if !granted {
                break;
            }
        }
        let a = &roles[0].allocated;
        let b = &roles[1].allocated;
        assert_eq!((a.cpus, a.mem_mib), (3.0, 12 * 1024));
        assert_eq!((b.cpus, b.mem_mib), (6.0, 2 * 1024));
        assert!((Drf::share(&roles[0], &total) - Drf::share(&roles[1], &total)).abs() < 1e-9);
    }

    #[test]
    fn weights_and_ties() {
        let total = Amounts {
            cpus: 10.0,
            mem_mib: 1000,
            disk_mib: 0,
            gpus: 0,
        };
        let roles = vec![
            usage("b", 1.0, 2.0, 0),
            usage("a", 1.0, 2.0, 0),
            usage("heavy", 4.0, 4.0, 0),
        ];
        let order: Vec<&str> = Drf
            .order(&roles, &total)
            .iter()
            .map(|r| r.role.as_str())
            .collect();
        assert_eq!(order, vec!["heavy", "a", "b"]);
    }
}

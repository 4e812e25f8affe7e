//! A de-duplicating delay queue: each key is scheduled at most once; scheduling it again
//! keeps the earlier deadline.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use tokio::time::Instant;

pub struct DelayQueue<T> {
    deadlines: HashMap<T, Instant>,
    order: BTreeSet<(Instant, u64, T)>,
    seq: u64,
}

impl<T: Clone + Eq + Hash + Ord> Default for DelayQueue<T> {
    fn default() -> Self {
        DelayQueue {
            deadlines: HashMap::new(),
            order: BTreeSet::new(),
            seq: 0,
        }
    }
}

impl<T: Clone + Eq + Hash + Ord> DelayQueue<T> {
    /// Schedules `key` at `at`, unless it is already due earlier.
    pub fn schedule(&mut self, key: T, at: Instant) {
        if let Some(&current) = self.deadlines.get(&key) {
            if current <= at {
                return;
            }
            self.order.retain(|(_, _, k)| k != &key);
        }
        self.seq += 1;
        self.deadlines.insert(key.clone(), at);
        self.order.insert((at, self.seq, key));
    }

    /// The earliest deadline, if anything is queued.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.first().map(|(at, _, _)| *at)
    }

    /// Removes and returns every key due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<T> {
        let mut due = Vec::new();
        while let Some((at, _, _)) = self.order.first() {
            if *at > now {
                break;
            }
            if let Some((_, _, key)) = self.order.pop_first() {
                self.deadlines.remove(&key);
                due.push(key);
            }
        }
        due
    }

    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn earlier_deadline_wins_and_keys_are_unique() {
        let now = Instant::now();
        let mut q = DelayQueue::default();
        q.schedule("a", now + Duration::from_secs(10));
        q.schedule("a", now + Duration::from_secs(5));
        q.schedule("a", now + Duration::from_secs(20));
        q.schedule("b", now + Duration::from_secs(1));
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_deadline(), Some(now + Duration::from_secs(1)));
        assert_eq!(q.pop_due(now + Duration::from_secs(4)), vec!["b"]);
        assert!(q.pop_due(now + Duration::from_secs(4)).is_empty());
        assert_eq!(q.pop_due(now + Duration::from_secs(5)), vec!["a"]);
        assert!(q.is_empty());
    }
}

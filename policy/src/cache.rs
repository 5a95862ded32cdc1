//! Decisions remembered by statement text, so a statement a session repeats
//! (a prepared query, a polling loop) costs a hash lookup.

use std::collections::HashMap;
use std::sync::Arc;

use crate::decision::Decision;

/// One session's cache. The subject is fixed for a session, so the text and
/// the policy version are the whole key.
#[derive(Debug)]
pub struct DecisionCache {
    map: HashMap<Box<str>, Arc<Decision>>,
    capacity: usize,
    version: u64,
}

impl DecisionCache {
    /// A cache of at most `capacity` decisions.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
            version: 0,
        }
    }

    /// The decision for `text` under policy `version`, computing it with
    /// `decide` on a miss.
    pub fn get_or_insert(
        &mut self,
        version: u64,
        text: &str,
        decide: impl FnOnce() -> Decision,
    ) -> Arc<Decision> {
        if version != self.version {
            self.map.clear();
            self.version = version;
        }
        if let Some(d) = self.map.get(text) {
            return d.clone();
        }
        let d = Arc::new(decide());
        if self.map.len() >= self.capacity {
            // Bounded memory with no bookkeeping per hit: start over.
            self.map.clear();
        }
        self.map.insert(text.into(), d.clone());
        d
    }

    /// Number of decisions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Verdict;

    fn d(reason: &str) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            policy: None,
            rule: None,
            reason: reason.to_owned(),
            kinds: vec![],
        }
    }

    #[test]
    fn hits_skip_the_decision_and_versions_invalidate() {
        let mut c = DecisionCache::new(10);
        assert_eq!(
            c.get_or_insert(1, "SELECT 1", || d("first")).reason,
            "first"
        );
        assert_eq!(
            c.get_or_insert(1, "SELECT 1", || d("second")).reason,
            "first"
        );
        assert_eq!(
            c.get_or_insert(2, "SELECT 1", || d("third")).reason,
            "third",
            "a new policy version decides anew"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut c = DecisionCache::new(3);
        for i in 0..10 {
            c.get_or_insert(1, &format!("SELECT {i}"), || d("x"));
            assert!(c.len() <= 3);
        }
    }
}

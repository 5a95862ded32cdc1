//! Decisions remembered by statement text, so a statement a session repeats
//! (a prepared query, a polling loop) costs a hash lookup.

use std::collections::HashMap;
use std::sync::Arc;

use crate::decision::Decision;
use crate::lexer;

/// One session's cache. The subject is fixed for a session, so the text and
/// the policy version are the whole key. Decisions that hold for any literal
/// values are also kept by the text's fingerprint, so a statement repeated
/// with other values (`WHERE id = 7`, then `WHERE id = 8`) hits too.
#[derive(Debug)]
pub struct DecisionCache {
    exact: HashMap<Box<str>, Arc<Decision>>,
    shapes: HashMap<Box<str>, Arc<Decision>>,
    capacity: usize,
    version: (u64, u64),
}

impl DecisionCache {
    /// A cache of at most `capacity` decisions of each kind.
    pub fn new(capacity: usize) -> Self {
        Self {
            exact: HashMap::new(),
            shapes: HashMap::new(),
            capacity: capacity.max(1),
            version: (0, 0),
        }
    }

    /// The decision for `text` under `version` (the policy snapshot's, and
    /// the generation of the target catalog it was decided with), computing
    /// it with `decide` on a miss.
    pub fn get_or_insert(
        &mut self,
        version: (u64, u64),
        text: &str,
        decide: impl FnOnce() -> Decision,
    ) -> Arc<Decision> {
        if version != self.version {
            self.exact.clear();
            self.shapes.clear();
            self.version = version;
        }
        if let Some(d) = self.exact.get(text) {
            return d.clone();
        }
        let shape = lexer::fingerprint(text);
        if let Some(d) = shape.as_deref().and_then(|s| self.shapes.get(s)) {
            return d.clone();
        }
        let d = Arc::new(decide());
        match shape {
            Some(s) if d.same_for_any_literals => {
                insert(&mut self.shapes, self.capacity, s.into(), &d)
            }
            _ => insert(&mut self.exact, self.capacity, text.into(), &d),
        }
        d
    }

    /// Number of decisions held.
    pub fn len(&self) -> usize {
        self.exact.len() + self.shapes.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn insert(
    map: &mut HashMap<Box<str>, Arc<Decision>>,
    capacity: usize,
    key: Box<str>,
    d: &Arc<Decision>,
) {
    if map.len() >= capacity {
        // Bounded memory with no bookkeeping per hit: start over.
        map.clear();
    }
    map.insert(key, d.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Verdict;

    fn d(reason: &str) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            reason: reason.to_owned(),
            same_for_any_literals: true,
            ..Decision::default()
        }
    }

    #[test]
    fn hits_skip_the_decision_and_versions_invalidate() {
        let mut c = DecisionCache::new(10);
        assert_eq!(
            c.get_or_insert((1, 0), "SELECT 1", || d("first")).reason,
            "first"
        );
        assert_eq!(
            c.get_or_insert((1, 0), "SELECT 1", || d("second")).reason,
            "first"
        );
        assert_eq!(
            c.get_or_insert((2, 0), "SELECT 1", || d("third")).reason,
            "third",
            "a new policy version decides anew"
        );
        assert_eq!(
            c.get_or_insert((2, 5), "SELECT 1", || d("fourth")).reason,
            "fourth",
            "a catalog read again decides anew"
        );
    }

    #[test]
    fn literal_free_decisions_are_shared_by_shape_and_others_are_not() {
        let mut c = DecisionCache::new(10);
        c.get_or_insert((1, 0), "SELECT a FROM t WHERE id = 1", || d("by shape"));
        assert_eq!(
            c.get_or_insert((1, 0), "SELECT a FROM t WHERE id = 2", || d("again"))
                .reason,
            "by shape"
        );
        let sensitive = || Decision {
            same_for_any_literals: false,
            ..d("exact only")
        };
        c.get_or_insert((1, 0), "SET client_encoding = 'UTF8'", sensitive);
        assert_eq!(
            c.get_or_insert((1, 0), "SET client_encoding = 'LATIN1'", || d(
                "decided anew"
            ))
            .reason,
            "decided anew",
            "a setting's value matters"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut c = DecisionCache::new(3);
        for i in 0..10 {
            c.get_or_insert((1, 0), &format!("SELECT {i}"), || d("x"));
            assert!(c.len() <= 3);
        }
    }
}

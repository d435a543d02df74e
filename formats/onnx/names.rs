//! Unique value and node names.

use std::collections::HashSet;

/// Names in use; generates new ones that collide with none of them.
#[derive(Default)]
pub struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// Marks a name as used; false if it already was.
    pub fn claim(&mut self, name: &str) -> bool {
        self.taken.insert(name.to_string())
    }

    /// `base` if free, else `base_1`, `base_2`, ...; the result is claimed.
    pub fn unique(&mut self, base: &str) -> String {
        if self.claim(base) {
            return base.to_string();
        }
        (1u64..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| self.claim(n))
            .expect("an unused suffix exists")
    }
}

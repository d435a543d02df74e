//! An ordered list of GGUF metadata entries, built with typed setters.

use super::container::GgufValue;

/// Metadata entries in the order they are written; setting a key again
/// replaces its value in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KvList {
    entries: Vec<(String, GgufValue)>,
}

impl KvList {
    pub fn set(&mut self, key: &str, value: GgufValue) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_string(), value)),
        }
    }

    pub fn u32(&mut self, key: &str, value: u32) {
        self.set(key, GgufValue::U32(value));
    }

    pub fn f32(&mut self, key: &str, value: f32) {
        self.set(key, GgufValue::F32(value));
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.set(key, GgufValue::Bool(value));
    }

    pub fn string(&mut self, key: &str, value: &str) {
        self.set(key, GgufValue::String(value.to_string()));
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    pub fn extend(&mut self, other: KvList) {
        for (key, value) in other.entries {
            self.set(&key, value);
        }
    }

    pub fn entries(&self) -> &[(String, GgufValue)] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<(String, GgufValue)> {
        self.entries
    }
}

impl From<Vec<(String, GgufValue)>> for KvList {
    fn from(entries: Vec<(String, GgufValue)>) -> KvList {
        let mut list = KvList::default();
        for (key, value) in entries {
            list.set(&key, value);
        }
        list
    }
}

//! Owner references indexed both ways, so that garbage collection after a removal looks only at the
//! removed object's dependents (a scan of every object per removal made a bulk delete quadratic).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::ObjectKey;

/// Live uids and, per owner uid, the objects that name it.
#[derive(Debug, Default)]
pub(super) struct OwnerIndex {
    /// How many stored objects carry each uid (an events.k8s.io Event and its core/v1 view share one).
    live: HashMap<String, usize>,
    dependents: HashMap<String, BTreeSet<ObjectKey>>,
}

fn uid(object: &Value) -> Option<&str> {
    object["metadata"]["uid"].as_str()
}

fn owners(object: &Value) -> impl Iterator<Item = &str> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

impl OwnerIndex {
    /// `key` now holds `new` (replacing `previous`).
    pub(super) fn stored(&mut self, key: &ObjectKey, new: &Value, previous: Option<&Value>) {
        if let Some(previous) = previous {
            self.removed(key, previous);
        }
        if let Some(uid) = uid(new) {
            *self.live.entry(uid.to_string()).or_default() += 1;
        }
        for owner in owners(new) {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(key.clone());
        }
    }

    /// `key`, which held `old`, is gone.
    pub(super) fn removed(&mut self, key: &ObjectKey, old: &Value) {
        if let Some(uid) = uid(old)
            && let Some(count) = self.live.get_mut(uid)
        {
            *count -= 1;
            if *count == 0 {
                self.live.remove(uid);
            }
        }
        for owner in owners(old) {
            if let Some(keys) = self.dependents.get_mut(owner) {
                keys.remove(key);
                if keys.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
    }

    /// The objects that named `owner` and whose owners are now all gone.
    pub(super) fn orphans_of(
        &self,
        owner: &str,
        objects: &std::collections::BTreeMap<ObjectKey, std::sync::Arc<Value>>,
    ) -> Vec<ObjectKey> {
        let Some(keys) = self.dependents.get(owner) else {
            return Vec::new();
        };
        keys.iter()
            .filter(|k| {
                objects
                    .get(*k)
                    .is_some_and(|o| owners(o).all(|u| !self.live.contains_key(u)))
            })
            .cloned()
            .collect()
    }
}

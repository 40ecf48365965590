//! Deletion: finalizer-driven marking, removal with its log entry, namespace and CRD cascades, and
//! owner-reference garbage collection.

use serde_json::{Value, json};

use super::*;

impl State {
    /// Removes an object for good, with a DELETED event at a new revision, then its dependents.
    pub(super) fn remove(&mut self, rt: &ResourceType, key: ObjectKey, mut last: Value) -> Value {
        if let Some(old) = self.objects.remove(&key) {
            self.owners.removed(&key, &old);
        }
        self.managers.remove(&key);
        self.revision += 1;
        meta_mut(&mut last).insert("resourceVersion".into(), json!(self.revision.to_string()));
        self.log_change(rt, &key, ChangeType::Deleted, Arc::new(last.clone()), None);
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            let group = last["spec"]["group"].as_str().unwrap_or_default().to_string();
            let plural = last["spec"]["names"]["plural"].as_str().unwrap_or_default().to_string();
            self.remove_all(|k| k.0 == group && k.1 == plural);
            self.resources
                .retain(|r| !(r.custom && r.group == group && r.plural == plural));
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let ns = key.3.clone();
            self.remove_all(|k| k.2 == ns);
        }
        if let Some(uid) = meta_str(&last, "uid").map(str::to_string) {
            self.collect_garbage(&uid);
        }
        self.at_version(rt, &last)
    }

    pub(super) fn remove_all(&mut self, matches: impl Fn(&ObjectKey) -> bool) {
        let doomed: Vec<ObjectKey> = self.objects.keys().filter(|k| matches(k)).cloned().collect();
        for key in doomed {
            if let Some(object) = self.objects.get(&key).map(|o| Value::clone(o))
                && let Some(rt) = self
                    .resources
                    .iter()
                    .find(|r| r.group == key.0 && r.plural == key.1)
                    .cloned()
            {
                self.remove(&rt, key, object);
            }
        }
    }

    /// Background garbage collection after `removed_uid` went: removes its dependents whose owners are
    /// all gone (and theirs, through `remove`).
    pub(super) fn collect_garbage(&mut self, removed_uid: &str) {
        for key in self.owners.orphans_of(removed_uid, &self.objects) {
            if let Some(object) = self.objects.get(&key).map(|o| Value::clone(o))
                && let Some(rt) = self
                    .resources
                    .iter()
                    .find(|r| r.group == key.0 && r.plural == key.1)
                    .cloned()
            {
                self.remove(&rt, key, object);
            }
        }
    }

    /// Deletes an object (DELETE): marks it when finalizers remain, removes it otherwise.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<DeleteOutcome, ApiError> {
        let key = self.key(rt, namespace, name);
        let old = self
            .objects
            .get(&key)
            .map(|o| Value::clone(o))
            .ok_or_else(|| ApiError::not_found(&rt.qualified_plural(), &rt.group, &rt.plural, name))?;
        let preconditions = &options["preconditions"];
        if preconditions["uid"]
            .as_str()
            .is_some_and(|u| Some(u) != meta_str(&old, "uid"))
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    preconditions["uid"],
                    meta_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        if preconditions["resourceVersion"]
            .as_str()
            .is_some_and(|rv| Some(rv) != meta_str(&old, "resourceVersion"))
        {
            return Err(ApiError::conflict(&rt.qualified_plural(), name));
        }
        if meta(&old).get("finalizers").is_some() {
            if meta(&old).get("deletionTimestamp").is_some() {
                return Ok(DeleteOutcome::Marked(self.at_version(rt, &old)));
            }
            let mut marked = old.clone();
            {
                let m = meta_mut(&mut marked);
                m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                if rt.has_generation {
                    let generation = m.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
                    m.insert("generation".into(), json!(generation));
                }
            }
            if rt.group.is_empty() && rt.plural == "namespaces" {
                marked["status"] = json!({"phase": "Terminating"});
            }
            if dry_run {
                return Ok(DeleteOutcome::Marked(marked));
            }
            return Ok(DeleteOutcome::Marked(self.commit(rt, key, Some(old), marked, None)));
        }
        if dry_run {
            return Ok(DeleteOutcome::Removed(self.at_version(rt, &old)));
        }
        Ok(DeleteOutcome::Removed(self.remove(rt, key, old)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(state: &State) -> ResourceType {
        state.resource("", "v1", "secrets").unwrap()
    }

    #[test]
    fn finalizer_protocol_of_kube() {
        let mut state = State::new(StoreOptions::default());
        let rt = secrets(&state);
        state
            .create(&rt, "default", json!({"metadata": {"name": "s"}}), &Writer::by("test"))
            .unwrap();
        let add = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": ["x/f"]}]);
        state
            .patch(
                &rt,
                "default",
                "s",
                PatchKind::Json,
                add.clone(),
                false,
                &Writer::by("test"),
            )
            .unwrap();
        let marked = state.delete(&rt, "default", "s", &json!({}), false).unwrap();
        assert!(matches!(marked, DeleteOutcome::Marked(ref o) if o["metadata"]["deletionTimestamp"].is_string()));
        let remove = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "x/f"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
        let (last, _) = state
            .patch(&rt, "default", "s", PatchKind::Json, remove, false, &Writer::by("test"))
            .unwrap();
        assert!(last["metadata"].get("finalizers").is_none());
        assert_eq!(state.get(&rt, "default", "s").unwrap_err().code, 404);
        let types: Vec<&str> = state.log.iter().rev().take(3).map(|e| e.change.as_str()).collect();
        assert_eq!(
            types,
            vec!["DELETED", "MODIFIED", "MODIFIED"],
            "one DELETED, no MODIFIED before it"
        );
    }

    #[test]
    fn owned_objects_are_collected_with_their_owner() {
        let mut state = State::new(StoreOptions::default());
        let rt = secrets(&state);
        let owner = state
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "owner"}}),
                &Writer::by("test"),
            )
            .unwrap();
        let reference =
            json!([{"apiVersion": "v1", "kind": "Secret", "name": "owner", "uid": owner["metadata"]["uid"]}]);
        state
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "owned", "ownerReferences": reference}}),
                &Writer::by("test"),
            )
            .unwrap();
        state
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "bystander"}}),
                &Writer::by("test"),
            )
            .unwrap();
        assert!(matches!(
            state.delete(&rt, "default", "owner", &json!({}), false).unwrap(),
            DeleteOutcome::Removed(_)
        ));
        assert_eq!(state.get(&rt, "default", "owned").unwrap_err().code, 404);
        assert!(state.get(&rt, "default", "bystander").is_ok());
        assert_eq!(
            state
                .delete(&rt, "default", "owner", &json!({}), false)
                .unwrap_err()
                .code,
            404
        );
    }
}

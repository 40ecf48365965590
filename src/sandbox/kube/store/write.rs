//! The write pipeline every create, replace and patch goes through: system fields, metadata
//! normalisation, admission, status and generation rules, field ownership, no-op detection, and the
//! commit to the event log.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::ownership::{ManagedEntry, Ownership, check_apply_conflicts, owned_after, owned_paths};
use super::patch::{apply_json_patch, deep_merge, remove_path, strip_strategic_directives};
use super::*;

const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl State {
    /// Creates an object (POST).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        object: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        self.create_owned(
            rt,
            namespace,
            object,
            writer.dry_run,
            Ownership::Update(writer.manager()),
        )
    }

    pub(super) fn create_owned(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        dry_run: bool,
        ownership: Ownership,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body of the request was not an object"));
        }
        object["apiVersion"] = json!(rt.api_version());
        object["kind"] = json!(rt.kind);
        normalize_metadata(&mut object);
        let body_ns = meta_str(&object, "namespace").unwrap_or("").to_string();
        if rt.namespaced {
            if !body_ns.is_empty() && body_ns != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta_mut(&mut object).insert("namespace".into(), json!(namespace));
            if self.options.strict_namespaces && !self.namespace_exists(namespace) {
                return Err(ApiError::not_found("namespaces", "", "namespaces", namespace));
            }
        } else {
            meta_mut(&mut object).remove("namespace");
        }
        if meta(&object).get("resourceVersion").is_some() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = match meta_str(&object, "name") {
            Some(name) => name.to_string(),
            None => match meta_str(&object, "generateName") {
                Some(prefix) => self.generate_name(rt, namespace, prefix),
                None => {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        "",
                        &rt.group,
                        vec![json!({
                            "reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"
                        })],
                    ));
                }
            },
        };
        let valid_name = if rt.plural == "namespaces" {
            is_dns_label(&name)
        } else {
            is_dns_subdomain(&name)
        };
        if !valid_name {
            return Err(ApiError::invalid(
                &rt.kind,
                &name,
                &rt.group,
                vec![json!({
                    "reason": "FieldValueInvalid",
                    "message": format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
                    "field": "metadata.name"
                })],
            ));
        }
        let key = self.key(rt, namespace, &name);
        if self.objects.contains_key(&key) {
            let mut e = ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.qualified_plural()),
            );
            e.details = json!({"name": name, "group": rt.group, "kind": rt.plural});
            return Err(e);
        }
        {
            let m = meta_mut(&mut object);
            m.insert("name".into(), json!(name));
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            if rt.has_generation {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if rt.status_subresource
            && let Some(o) = object.as_object_mut()
        {
            o.remove("status");
        }
        let object = self.admit(rt, object, None)?;
        let entries = owned_after(&[], &Value::Null, &object, false, ownership);
        if dry_run {
            return Ok(object);
        }
        Ok(self.commit(rt, key, None, object, Some(entries)))
    }

    pub(super) fn generate_name(&self, rt: &ResourceType, namespace: &str, prefix: &str) -> String {
        loop {
            let suffix: String = (0..5)
                .map(|_| GENERATE_NAME_ALPHABET[fastrand::usize(..GENERATE_NAME_ALPHABET.len())] as char)
                .collect();
            let name = format!("{prefix}{suffix}");
            if !self.objects.contains_key(&self.key(rt, namespace, &name)) {
                return name;
            }
        }
    }

    /// Replaces an object (PUT), on the main endpoint or `/status`.
    pub fn replace(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        status: bool,
        writer: &Writer,
    ) -> Result<(Value, bool), ApiError> {
        if meta_str(&object, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let key = self.key(rt, namespace, name);
        let Some(old) = self.objects.get(&key).map(|o| Value::clone(o)) else {
            if rt.create_on_update && !status {
                meta_mut(&mut object).insert("name".into(), json!(name));
                meta_mut(&mut object).remove("resourceVersion");
                return self.create(rt, namespace, object, writer).map(|o| (o, true));
            }
            return Err(ApiError::not_found(&rt.qualified_plural(), &rt.group, &rt.plural, name));
        };
        match meta_str(&object, "resourceVersion") {
            Some(rv) if Some(rv) != meta_str(&old, "resourceVersion") => {
                return Err(ApiError::conflict(&rt.qualified_plural(), name));
            }
            None if rt.requires_resource_version_on_update => {
                return Err(ApiError::invalid(
                    &rt.kind,
                    name,
                    &rt.group,
                    vec![json!({
                        "reason": "FieldValueInvalid", "message": "Invalid value: 0x0: must be specified for an update", "field": "metadata.resourceVersion"
                    })],
                ));
            }
            _ => {}
        }
        let served = self.at_version(rt, &old);
        let ownership = match written_managed_fields(&mut object, &served)? {
            Some(entries) => Ownership::Replace(entries),
            None => Ownership::Update(writer.manager()),
        };
        self.update(rt, key, old, object, status, writer.dry_run, Some(ownership))
            .map(|o| (o, false))
    }

    /// Patches an object, on the main endpoint or `/status`. Apply creates a missing object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        patch: Value,
        status: bool,
        writer: &Writer,
    ) -> Result<(Value, bool), ApiError> {
        let dry_run = writer.dry_run;
        if kind == PatchKind::Strategic && rt.custom {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let key = self.key(rt, namespace, name);
        let existing = self.objects.get(&key).map(|o| Value::clone(o));
        if kind == PatchKind::Apply {
            let manager = writer.manager.as_deref().ok_or_else(|| {
                ApiError::invalid(&rt.kind, name, &rt.group, vec![json!({"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"})])
            })?;
            if patch["apiVersion"].as_str().is_some_and(|v| v != rt.api_version())
                || patch["kind"].as_str().is_some_and(|k| k != rt.kind)
            {
                return Err(ApiError::bad_request(format!(
                    "apiVersion and kind in the body must be {} {}",
                    rt.api_version(),
                    rt.kind
                )));
            }
            if patch["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            // An applied Secret's stringData is folded before ownership and conflicts are worked out, so
            // the applier owns (and is compared on) the `data` keys that are stored, never a `stringData`
            // field no stored object has.
            let mut patch = patch;
            if !rt.custom && rt.group.is_empty() && rt.kind == "Secret" {
                super::admission::fold_string_data(&mut patch);
            }
            let applied_paths = owned_paths(&patch, status);
            let Some(old) = existing else {
                if status {
                    return Err(ApiError::not_found(&rt.qualified_plural(), &rt.group, &rt.plural, name));
                }
                let mut object = patch;
                meta_mut(&mut object).insert("name".into(), json!(name));
                let created =
                    self.create_owned(rt, namespace, object, dry_run, Ownership::Apply(manager, applied_paths))?;
                return Ok((created, true));
            };
            let entries = self.managers.get(&key).cloned().unwrap_or_default();
            if !writer.force {
                check_apply_conflicts(&entries, manager, status, &old, &patch, &applied_paths)?;
            }
            let mut merged = old.clone();
            // Fields this manager applied before, leaves out now, and nobody else owns are removed.
            if let Some(previous) = entries
                .iter()
                .find(|e| e.apply && e.manager == manager && e.status == status)
            {
                for path in previous.fields.difference(&applied_paths) {
                    let shared = entries
                        .iter()
                        .any(|e| !(e.apply && e.manager == manager) && e.fields.iter().any(|f| overlaps(f, path)));
                    if !shared {
                        remove_path(&mut merged, path);
                    }
                }
            }
            deep_merge(&mut merged, &patch);
            if meta_str(&merged, "resourceVersion") != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(&rt.qualified_plural(), name));
            }
            let ownership = Ownership::Apply(manager, applied_paths);
            let result = self.update(rt, key, old, merged, status, dry_run, Some(ownership))?;
            return Ok((result, false));
        }
        let Some(old) = existing else {
            return Err(ApiError::not_found(&rt.qualified_plural(), &rt.group, &rt.plural, name));
        };
        // Patches apply to the object as served, managedFields included: a client may patch those too.
        let served = self.at_version(rt, &old);
        let mut patched = served.clone();
        match kind {
            PatchKind::Json => apply_json_patch(&mut patched, patch)?,
            PatchKind::Merge => json_patch::merge(&mut patched, &patch),
            PatchKind::Strategic => json_patch::merge(&mut patched, &strip_strategic_directives(patch)),
            PatchKind::Apply => unreachable!("handled above"),
        }
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&rt.qualified_plural(), name));
        }
        let ownership = match written_managed_fields(&mut patched, &served)? {
            Some(entries) => Ownership::Replace(entries),
            None => Ownership::Update(writer.manager()),
        };
        self.update(rt, key, old, patched, status, dry_run, Some(ownership))
            .map(|o| (o, false))
    }

    /// The shared update pipeline; `ownership` None leaves field ownership as it is (system writes).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update(
        &mut self,
        rt: &ResourceType,
        key: ObjectKey,
        old: Value,
        mut object: Value,
        status: bool,
        dry_run: bool,
        ownership: Option<Ownership>,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body of the request was not an object"));
        }
        if status {
            if !rt.status_subresource {
                return Err(ApiError::not_found(
                    &rt.qualified_plural(),
                    &rt.group,
                    &rt.plural,
                    &key.3,
                ));
            }
            let new_status = object.get("status").cloned();
            object = old.clone();
            match new_status {
                Some(s) => object["status"] = s,
                None => {
                    object.as_object_mut().expect("object").remove("status");
                }
            }
        } else if rt.status_subresource {
            match old.get("status") {
                Some(s) => object["status"] = s.clone(),
                None => {
                    object.as_object_mut().expect("object").remove("status");
                }
            }
        }
        object["apiVersion"] = json!(rt.api_version());
        object["kind"] = json!(rt.kind);
        normalize_metadata(&mut object);
        {
            let m = meta_mut(&mut object);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old["metadata"].get(field) {
                    Some(v) => m.insert(field.to_string(), v.clone()),
                    None => m.remove(field),
                };
            }
        }
        if meta(&old).get("deletionTimestamp").is_some() {
            let old_finalizers: BTreeSet<&str> = meta(&old)["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let added = meta(&object)["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|f| !old_finalizers.contains(f));
            if added {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &key.3,
                    &rt.group,
                    vec![json!({
                        "reason": "FieldValueForbidden", "message": "Forbidden: no new finalizers can be added if the object is being deleted", "field": "metadata.finalizers"
                    })],
                ));
            }
        }
        let mut object = self.admit(rt, object, Some(&old))?;
        if rt.has_generation
            && generation_relevant(&object, rt.status_subresource) != generation_relevant(&old, rt.status_subresource)
        {
            let generation = meta(&old)["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut object).insert("generation".into(), json!(generation));
        }
        let being_deleted = meta(&object).get("deletionTimestamp").is_some();
        let no_finalizers = meta(&object).get("finalizers").is_none();
        let ownership_rewritten = matches!(&ownership, Some(Ownership::Replace(entries))
            if Some(entries) != self.managers.get(&key));
        if without_volatile(&object) == without_volatile(&old)
            && !(being_deleted && no_finalizers)
            && !ownership_rewritten
        {
            return Ok(self.at_version(rt, &old));
        }
        if dry_run {
            return Ok(object);
        }
        if being_deleted && no_finalizers {
            return Ok(self.remove(rt, key, object));
        }
        let entries = ownership.map(|ownership| {
            let current = self.managers.get(&key).cloned().unwrap_or_default();
            owned_after(&current, &old, &object, status, ownership)
        });
        Ok(self.commit(rt, key, Some(old), object, entries))
    }

    /// Stores an object at the next revision and logs the change.
    pub(super) fn commit(
        &mut self,
        rt: &ResourceType,
        key: ObjectKey,
        previous: Option<Value>,
        mut object: Value,
        entries: Option<Vec<ManagedEntry>>,
    ) -> Value {
        self.revision += 1;
        if let Some(entries) = entries {
            self.managers.insert(key.clone(), entries);
        }
        let m = meta_mut(&mut object);
        m.insert("resourceVersion".into(), json!(self.revision.to_string()));
        m.remove("managedFields");
        let change = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        let stored = Arc::new(object);
        let previous = self.objects.insert(key.clone(), stored.clone());
        self.owners.stored(&key, &stored, previous.as_deref());
        self.log_change(rt, &key, change, stored.clone(), previous);
        if rt.group == "events.k8s.io" && rt.plural == "events" {
            self.mirror_core_event(&key, &stored);
        }
        self.at_version(rt, &stored)
    }

    /// Keeps the core/v1 view of an events.k8s.io Event (what `kubectl describe` and `kubectl get events`
    /// read), as the API server serves one store under both groups.
    pub(super) fn mirror_core_event(&mut self, key: &ObjectKey, event: &Value) {
        let Some(core) = self.resource("", "v1", "events") else {
            return;
        };
        let series = &event["series"];
        let mut view = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": event["metadata"]["name"],
                "namespace": event["metadata"]["namespace"],
                "uid": event["metadata"]["uid"],
                "creationTimestamp": event["metadata"]["creationTimestamp"],
            },
            "involvedObject": event["regarding"],
            "related": event["related"],
            "reason": event["reason"],
            "message": event["note"],
            "type": event["type"],
            "action": event["action"],
            "eventTime": event["eventTime"],
            "firstTimestamp": event["eventTime"],
            "lastTimestamp": if series["lastObservedTime"].is_string() { series["lastObservedTime"].clone() } else { event["eventTime"].clone() },
            "count": series["count"].as_i64().unwrap_or(1),
            "source": {"component": event["reportingController"]},
            "reportingComponent": event["reportingController"],
            "reportingInstance": event["reportingInstance"],
        });
        if let Some(map) = view.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
        let core_key = (String::new(), "events".to_string(), key.2.clone(), key.3.clone());
        self.revision += 1;
        meta_mut(&mut view).insert("resourceVersion".into(), json!(self.revision.to_string()));
        let stored = Arc::new(view);
        let previous = self.objects.insert(core_key.clone(), stored.clone());
        self.owners.stored(&core_key, &stored, previous.as_deref());
        let change = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.log_change(&core, &core_key, change, stored, previous);
    }

    pub(super) fn log_change(
        &mut self,
        rt: &ResourceType,
        key: &ObjectKey,
        change: ChangeType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        self.log.push_back(LogEntry {
            revision: self.revision,
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: key.2.clone(),
            change,
            object,
            previous,
        });
        while self.log.len() > self.options.log_capacity {
            if let Some(dropped) = self.log.pop_front() {
                self.compacted_through = dropped.revision;
            }
        }
    }
}

/// Takes `metadata.managedFields` out of a written object: the entries it sets when they differ from
/// what was served (the request rewrites ownership), None when it leaves them as they were or omits them.
fn written_managed_fields(object: &mut Value, served: &Value) -> Result<Option<Vec<ManagedEntry>>, ApiError> {
    let Some(written) = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("managedFields"))
    else {
        return Ok(None);
    };
    if written.is_null() || Some(&written) == served["metadata"].get("managedFields") {
        return Ok(None);
    }
    super::ownership::parse_managed_fields(&written).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(state: &State) -> ResourceType {
        state.resource("", "v1", "secrets").unwrap()
    }

    #[test]
    fn no_op_writes_keep_the_resource_version() {
        let mut state = State::new(StoreOptions::default());
        let rt = secrets(&state);
        let created = state
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
                &Writer::by("test"),
            )
            .unwrap();
        assert_eq!(created["data"]["k"], "dg==");
        assert!(created.get("stringData").is_none());
        let rv = state.revision;
        let (same, _) = state
            .patch(
                &rt,
                "default",
                "s",
                PatchKind::Merge,
                json!({"data": {"k": "dg=="}}),
                false,
                &Writer::by("test"),
            )
            .unwrap();
        assert_eq!(state.revision, rv);
        assert_eq!(
            same["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
    }

    #[test]
    fn names_are_generated_and_generation_follows_the_spec_only() {
        let mut state = State::new(StoreOptions::default());
        let crd: Value = serde_json::to_value(<crate::api::WebhookProvider as kube::CustomResourceExt>::crd()).unwrap();
        let crds = state
            .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        state.create(&crds, "", crd, &Writer::by("test")).unwrap();
        let providers = state
            .resource("webhook-operator.dev", "v1alpha1", "webhookproviders")
            .unwrap();
        let provider = json!({"apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookProvider",
            "metadata": {"generateName": "p-"},
            "spec": {"authvia": {"accountId": "A1"}, "credentialsSecretRef": {"name": "c"}}});
        let created = state
            .create(&providers, "default", provider, &Writer::by("test"))
            .unwrap();
        let name = created["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("p-") && name.len() == 7, "{name}");
        assert_eq!(created["metadata"]["generation"], json!(1));
        let labelled = |state: &mut State, patch: Value| {
            state
                .patch(
                    &providers,
                    "default",
                    &name,
                    PatchKind::Merge,
                    patch,
                    false,
                    &Writer::by("test"),
                )
                .unwrap()
                .0
        };
        assert_eq!(
            labelled(&mut state, json!({"metadata": {"labels": {"a": "b"}}}))["metadata"]["generation"],
            json!(1)
        );
        assert_eq!(
            labelled(&mut state, json!({"spec": {"authvia": {"accountId": "A2"}}}))["metadata"]["generation"],
            json!(2)
        );
    }

    #[test]
    fn namespaced_creates_need_their_namespace_when_strict() {
        let mut state = State::new(StoreOptions {
            strict_namespaces: true,
            ..StoreOptions::default()
        });
        let rt = secrets(&state);
        let err = state
            .create(&rt, "missing", json!({"metadata": {"name": "s"}}), &Writer::by("test"))
            .unwrap_err();
        assert_eq!(err.code, 404, "{err:?}");
    }
}

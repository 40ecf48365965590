//! The object store: one global resourceVersion, an event log that watches read as cursors, and the write
//! pipeline every verb goes through (system fields, metadata normalisation, status and generation rules,
//! validation, no-op detection, finalizer-driven deletion).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::resources::{ResourceType, builtins, from_crd};
use super::schema;
use super::selectors::{FieldSelector, LabelSelector};

/// Where an object lives: group and plural (shared by every version of a resource), namespace, name.
pub type ObjectKey = (String, String, String, String);

/// The kind of a change in the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl ChangeType {
    /// The watch event type.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// The revision of the change.
    pub revision: u64,
    /// Group of the resource.
    pub group: String,
    /// Plural of the resource.
    pub plural: String,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// What happened.
    pub change: ChangeType,
    /// The object after the change (the last state for a deletion).
    pub object: Value,
    /// The object before the change, so a watch can turn selector transitions into ADDED or DELETED.
    pub previous: Option<Value>,
}

/// A consistent list snapshot kept under a continue token.
struct ContinueSnapshot {
    revision: u64,
    items: Vec<Value>,
    offset: usize,
}

/// Options that shape the emulated server's behaviour.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many changes the event log keeps before compacting the oldest.
    pub log_capacity: usize,
    /// Whether a namespaced create in a missing namespace fails (NamespaceLifecycle).
    pub strict_namespaces: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            log_capacity: 100_000,
            strict_namespaces: true,
        }
    }
}

/// A parsed list request.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Namespace, or None for all namespaces.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Page size.
    pub limit: Option<usize>,
    /// Continue token of the previous page.
    pub continue_token: Option<String>,
}

/// The result of a DELETE.
#[derive(Clone, Debug)]
pub enum DeleteOutcome {
    /// The object has finalizers: it is now marked for deletion.
    Marked(Value),
    /// The object was removed.
    Removed(Value),
}

/// Patch flavours the server understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 6902.
    Json,
    /// RFC 7386.
    Merge,
    /// Strategic merge patch (built-ins only; a merge patch with directives stripped).
    Strategic,
    /// Server-side apply.
    Apply,
}

/// The whole mutable state of the emulated API server.
pub struct State {
    /// The current (last committed) revision.
    pub revision: u64,
    options: StoreOptions,
    resources: Vec<ResourceType>,
    objects: BTreeMap<ObjectKey, Value>,
    log: VecDeque<LogEntry>,
    /// Changes at or below this revision are no longer in the log.
    pub compacted_through: u64,
    continues: HashMap<String, ContinueSnapshot>,
    next_continue: u64,
    /// Paths each apply manager last applied, per object and subresource.
    applied: HashMap<(ObjectKey, String, bool), BTreeSet<String>>,
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta(object: &Value) -> &Value {
    &object["metadata"]
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object["metadata"][field].as_str()
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("metadata is an object")
}

/// Drops empty collections and nulls from metadata, as Go's `omitempty` does; without this kube's
/// "add first finalizer" patch (`test /metadata/finalizers == null`) fails after the last one is removed.
fn normalize_metadata(object: &mut Value) {
    let metadata = meta_mut(object);
    for key in ["labels", "annotations"] {
        if let Some(Value::Object(map)) = metadata.get_mut(key) {
            map.retain(|_, v| !v.is_null());
        }
    }
    metadata.retain(|_, v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    });
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label_part)
}

fn is_dns_label_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    !part.is_empty()
        && part.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Removes what an update may not change by comparing everything but these metadata fields.
fn without_volatile(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(m) = copy["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    copy
}

/// Everything outside metadata (and status, when it is a subresource): what bumps generation.
fn generation_relevant(object: &Value, status_subresource: bool) -> Value {
    let mut copy = object.clone();
    if let Some(m) = copy.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_subresource {
            m.remove("status");
        }
    }
    copy
}

impl State {
    /// An empty store with the built-in resources and the standard namespaces.
    pub fn new(options: StoreOptions) -> Self {
        let mut state = State {
            revision: 0,
            options,
            resources: builtins(),
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            compacted_through: 0,
            continues: HashMap::new(),
            next_continue: 0,
            applied: HashMap::new(),
        };
        let namespaces = state.resource("", "v1", "namespaces").expect("namespaces are built in");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            state
                .create(&namespaces, "", json!({"metadata": {"name": ns}}), false)
                .expect("standard namespace");
        }
        state
    }

    /// Every servable resource.
    pub fn resources(&self) -> &[ResourceType] {
        &self.resources
    }

    /// Looks up a resource by group, version and plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&self.key(rt, namespace, name))
            .map(|o| self.at_version(rt, o))
            .ok_or_else(|| ApiError::not_found(&rt.qualified_plural(), &rt.group, &rt.plural, name))
    }

    /// Every object of a resource, in key order, as served at its version.
    pub fn objects_of(&self, rt: &ResourceType) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((g, p, _, _), _)| *g == rt.group && *p == rt.plural)
            .map(|(_, o)| self.at_version(rt, o))
            .collect()
    }

    /// The log entries after `revision`, or None when the log no longer reaches back that far.
    pub fn changes_since(&self, revision: u64) -> Option<Vec<LogEntry>> {
        if revision < self.compacted_through {
            return None;
        }
        Some(
            self.log
                .iter()
                .skip_while(|e| e.revision <= revision)
                .cloned()
                .collect(),
        )
    }

    /// Drops the whole event log up to the current revision: resuming watches get 410 and relist.
    pub fn compact(&mut self) {
        self.log.clear();
        self.compacted_through = self.revision;
    }

    /// Drops every continue token, so the next page request gets 410 Expired.
    pub fn expire_continue_tokens(&mut self) {
        self.continues.clear();
    }

    fn key(&self, rt: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
        let ns = if rt.namespaced { namespace } else { "" };
        (rt.group.clone(), rt.plural.clone(), ns.to_string(), name.to_string())
    }

    /// An object as served at `rt`'s version (storage is shared across versions; conversion is None).
    pub fn at_version(&self, rt: &ResourceType, object: &Value) -> Value {
        let mut copy = object.clone();
        copy["apiVersion"] = json!(rt.api_version());
        copy["kind"] = json!(rt.kind);
        copy
    }

    /// Lists objects, one page at a time, from a consistent snapshot.
    pub fn list(
        &mut self,
        rt: &ResourceType,
        query: &ListQuery,
    ) -> Result<(Vec<Value>, u64, Option<String>), ApiError> {
        let (revision, items, offset) = match &query.continue_token {
            Some(token) => {
                let snapshot = self.continues.remove(token).ok_or_else(|| {
                    ApiError::new(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
                })?;
                (snapshot.revision, snapshot.items, snapshot.offset)
            }
            None => {
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|((g, p, ns, _), _)| {
                        *g == rt.group && *p == rt.plural && query.namespace.as_ref().is_none_or(|q| q == ns)
                    })
                    .map(|(_, o)| o)
                    .filter(|o| query.labels.matches(o) && query.fields.matches(o))
                    .map(|o| self.at_version(rt, o))
                    .collect();
                (self.revision, items, 0)
            }
        };
        let limit = query.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let end = offset.saturating_add(limit).min(items.len());
        let page = items[offset..end].to_vec();
        let token = if end < items.len() {
            self.next_continue += 1;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{{\"rv\":{revision},\"n\":{}}}", self.next_continue));
            self.continues.insert(
                token.clone(),
                ContinueSnapshot {
                    revision,
                    items,
                    offset: end,
                },
            );
            Some(token)
        } else {
            None
        };
        Ok((page, revision, token))
    }

    fn namespace_exists(&self, namespace: &str) -> bool {
        self.objects
            .contains_key(&(String::new(), "namespaces".into(), String::new(), namespace.into()))
    }

    /// Creates an object (POST).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        dry_run: bool,
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
            is_dns_label_part(&name)
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
        if dry_run {
            return Ok(object);
        }
        Ok(self.commit(rt, key, None, object))
    }

    fn generate_name(&self, rt: &ResourceType, namespace: &str, prefix: &str) -> String {
        loop {
            let suffix: String = (0..5)
                .map(|_| GENERATE_NAME_ALPHABET[rand_index(GENERATE_NAME_ALPHABET.len())] as char)
                .collect();
            let name = format!("{prefix}{suffix}");
            if !self.objects.contains_key(&self.key(rt, namespace, &name)) {
                return name;
            }
        }
    }

    /// Kind-specific defaulting and validation on every write.
    fn admit(&mut self, rt: &ResourceType, mut object: Value, old: Option<&Value>) -> Result<Value, ApiError> {
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => admit_secret(rt, &name, &mut object, old)?,
            ("", "namespaces") => {
                object["status"] = json!({"phase": if meta(&object).get("deletionTimestamp").is_some() { "Terminating" } else { "Active" }});
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let types = from_crd(&object).map_err(|message| {
                    ApiError::invalid(
                        &rt.kind,
                        &name,
                        &rt.group,
                        vec![json!({"reason": "FieldValueInvalid", "message": message, "field": ""})],
                    )
                })?;
                let storage = object["spec"]["versions"]
                    .as_array()
                    .and_then(|vs| vs.iter().find(|v| v["storage"] == json!(true)))
                    .and_then(|v| v["name"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let transition = old
                    .and_then(|o| o["status"]["conditions"][0]["lastTransitionTime"].as_str())
                    .map(str::to_string)
                    .unwrap_or_else(now_rfc3339);
                object["status"] = json!({
                    "acceptedNames": object["spec"]["names"],
                    "storedVersions": [storage],
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": transition},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": transition}
                    ]
                });
                let group = object["spec"]["group"].as_str().unwrap_or_default().to_string();
                let plural = object["spec"]["names"]["plural"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.resources
                    .retain(|r| !(r.custom && r.group == group && r.plural == plural));
                self.resources.extend(types);
            }
            _ => {}
        }
        if let Some(schema) = &rt.schema {
            let metadata = object["metadata"].clone();
            let admitted = schema::admit(schema, object, old).map_err(|errors| {
                let causes = errors
                    .iter()
                    .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
                    .collect();
                ApiError::invalid(&rt.kind, &name, &rt.group, causes)
            })?;
            object = admitted.object;
            // metadata is ObjectMeta, never pruned or defaulted by the CR schema.
            object["metadata"] = metadata;
        }
        Ok(object)
    }

    /// Replaces an object (PUT), on the main endpoint or `/status`.
    pub fn replace(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        if meta_str(&object, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let key = self.key(rt, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            if rt.create_on_update && !status {
                meta_mut(&mut object).insert("name".into(), json!(name));
                meta_mut(&mut object).remove("resourceVersion");
                return self.create(rt, namespace, object, dry_run).map(|o| (o, true));
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
        self.update(rt, key, old, object, status, dry_run).map(|o| (o, false))
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
        manager: Option<&str>,
        status: bool,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        if kind == PatchKind::Strategic && rt.custom {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let key = self.key(rt, namespace, name);
        let existing = self.objects.get(&key).cloned();
        if kind == PatchKind::Apply {
            let manager = manager.ok_or_else(|| {
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
            let applied_paths = leaf_paths(&patch);
            let set_key = (key.clone(), manager.to_string(), status);
            let Some(old) = existing else {
                if status {
                    return Err(ApiError::not_found(&rt.qualified_plural(), &rt.group, &rt.plural, name));
                }
                let mut object = patch;
                meta_mut(&mut object).insert("name".into(), json!(name));
                let created = self.create(rt, namespace, object, dry_run)?;
                if !dry_run {
                    self.applied.insert(set_key, applied_paths);
                }
                return Ok((created, true));
            };
            let mut merged = old.clone();
            // Fields this manager applied before and leaves out now are removed.
            if let Some(previous) = self.applied.get(&set_key) {
                for path in previous.difference(&applied_paths) {
                    remove_path(&mut merged, path);
                }
            }
            deep_merge(&mut merged, &patch);
            let result = self.patched(rt, key, old, merged, status, dry_run)?;
            if !dry_run {
                self.applied.insert(set_key, applied_paths);
            }
            return Ok((result, false));
        }
        let Some(old) = existing else {
            return Err(ApiError::not_found(&rt.qualified_plural(), &rt.group, &rt.plural, name));
        };
        let mut patched = old.clone();
        match kind {
            PatchKind::Json => apply_json_patch(&mut patched, patch)?,
            PatchKind::Merge => json_patch::merge(&mut patched, &patch),
            PatchKind::Strategic => json_patch::merge(&mut patched, &strip_strategic_directives(patch)),
            PatchKind::Apply => unreachable!("handled above"),
        }
        self.patched(rt, key, old, patched, status, dry_run).map(|o| (o, false))
    }

    fn patched(
        &mut self,
        rt: &ResourceType,
        key: ObjectKey,
        old: Value,
        patched: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&rt.qualified_plural(), &key.3));
        }
        self.update(rt, key, old, patched, status, dry_run)
    }

    /// The shared update pipeline.
    fn update(
        &mut self,
        rt: &ResourceType,
        key: ObjectKey,
        old: Value,
        mut object: Value,
        status: bool,
        dry_run: bool,
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
        if without_volatile(&object) == without_volatile(&old) && !(being_deleted && no_finalizers) {
            return Ok(self.at_version(rt, &old));
        }
        if dry_run {
            return Ok(object);
        }
        if being_deleted && no_finalizers {
            return Ok(self.remove(rt, key, object));
        }
        Ok(self.commit(rt, key, Some(old), object))
    }

    /// Stores an object at the next revision and logs the change.
    fn commit(&mut self, rt: &ResourceType, key: ObjectKey, previous: Option<Value>, mut object: Value) -> Value {
        self.revision += 1;
        meta_mut(&mut object).insert("resourceVersion".into(), json!(self.revision.to_string()));
        let change = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.objects.insert(key.clone(), object.clone());
        self.log_change(rt, &key, change, object.clone(), previous);
        self.at_version(rt, &object)
    }

    fn log_change(
        &mut self,
        rt: &ResourceType,
        key: &ObjectKey,
        change: ChangeType,
        object: Value,
        previous: Option<Value>,
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

    /// Removes an object for good, with a DELETED event at a new revision, then its dependents.
    fn remove(&mut self, rt: &ResourceType, key: ObjectKey, mut last: Value) -> Value {
        self.objects.remove(&key);
        self.applied.retain(|(k, _, _), _| *k != key);
        self.revision += 1;
        meta_mut(&mut last).insert("resourceVersion".into(), json!(self.revision.to_string()));
        self.log_change(rt, &key, ChangeType::Deleted, last.clone(), None);
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
        self.collect_garbage();
        self.at_version(rt, &last)
    }

    fn remove_all(&mut self, matches: impl Fn(&ObjectKey) -> bool) {
        let doomed: Vec<ObjectKey> = self.objects.keys().filter(|k| matches(k)).cloned().collect();
        for key in doomed {
            if let Some(object) = self.objects.get(&key).cloned()
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

    /// Background garbage collection: removes objects all of whose owners are gone.
    fn collect_garbage(&mut self) {
        let uids: BTreeSet<String> = self
            .objects
            .values()
            .filter_map(|o| meta_str(o, "uid").map(str::to_string))
            .collect();
        let live_uids = &uids;
        let orphaned = |o: &Value| {
            meta(o)["ownerReferences"].as_array().is_some_and(|owners| {
                !owners.is_empty()
                    && owners
                        .iter()
                        .all(|r| r["uid"].as_str().is_none_or(|u| !live_uids.contains(u)))
            })
        };
        let doomed: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, o)| orphaned(o))
            .map(|(k, _)| k.clone())
            .collect();
        if !doomed.is_empty() {
            self.remove_all(|k| doomed.contains(k));
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
            .cloned()
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
            return Ok(DeleteOutcome::Marked(self.commit(rt, key, Some(old), marked)));
        }
        if dry_run {
            return Ok(DeleteOutcome::Removed(self.at_version(rt, &old)));
        }
        Ok(DeleteOutcome::Removed(self.remove(rt, key, old)))
    }

    /// Writes an object directly (test seeding): creates or replaces without preconditions.
    pub fn put(&mut self, rt: &ResourceType, namespace: &str, object: Value) -> Result<Value, ApiError> {
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let key = self.key(rt, namespace, &name);
        match self.objects.get(&key).cloned() {
            None => self.create(rt, namespace, object, false),
            Some(old) => {
                let mut object = object;
                meta_mut(&mut object).remove("resourceVersion");
                let status = object.get("status").cloned();
                let updated = self.update(rt, key.clone(), old, object, false, false)?;
                match (rt.status_subresource, status) {
                    (true, Some(status)) if self.objects.contains_key(&key) => {
                        let current = self.objects[&key].clone();
                        self.update(rt, key, current, json!({"status": status}), true, false)
                    }
                    _ => Ok(updated),
                }
            }
        }
    }
}

fn rand_index(len: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % len as u128) as usize
}

fn admit_secret(rt: &ResourceType, name: &str, object: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(Value::Object(string_data)) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
        let mut data = object["data"].as_object().cloned().unwrap_or_default();
        for (k, v) in string_data {
            data.insert(k, json!(engine.encode(v.as_str().unwrap_or_default())));
        }
        object["data"] = Value::Object(data);
    }
    if object.get("type").is_none_or(Value::is_null) {
        object["type"] = json!("Opaque");
    }
    let mut causes = Vec::new();
    let mut size = 0;
    for (k, v) in object["data"].as_object().into_iter().flatten() {
        let valid_key = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid_key {
            causes.push(json!({"reason": "FieldValueInvalid", "message": format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"), "field": format!("data[{k}]")}));
        }
        match v.as_str().map(|s| engine.decode(s)) {
            Some(Ok(bytes)) => size += bytes.len(),
            _ => causes.push(json!({"reason": "FieldValueInvalid", "message": "Invalid value: illegal base64 data", "field": format!("data[{k}]")})),
        }
    }
    if size > 1024 * 1024 {
        causes.push(json!({"reason": "FieldValueTooLong", "message": "Too long: may not be more than 1048576 bytes", "field": "data"}));
    }
    if let Some(old) = old
        && old["immutable"] == json!(true)
        && (old["data"] != object["data"] || old["immutable"] != object["immutable"])
    {
        causes.push(json!({"reason": "FieldValueForbidden", "message": "Forbidden: field is immutable when `immutable` is set", "field": "data"}));
    }
    if object["data"].as_object().is_some_and(Map::is_empty) {
        object.as_object_mut().expect("object").remove("data");
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.kind, name, &rt.group, causes))
    }
}

/// RFC 6902 with Kubernetes' `test` semantics: testing a missing path for `null` succeeds (kube's finalizer
/// helper sends exactly that for an object without finalizers).
fn apply_json_patch(object: &mut Value, patch: Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    if ops.len() > 10_000 {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            "The allowed number of operations in a JSON patch is 10000",
        ));
    }
    let kept: Vec<Value> = ops
        .iter()
        .filter(|op| {
            let missing_null_test = op["op"] == "test"
                && op["value"].is_null()
                && op["path"]
                    .as_str()
                    .is_some_and(|p| object.pointer(p).is_none_or(Value::is_null));
            !missing_null_test
        })
        .cloned()
        .collect();
    let parsed: json_patch::Patch = serde_json::from_value(Value::Array(kept))
        .map_err(|e| ApiError::bad_request(format!("invalid json patch: {e}")))?;
    json_patch::patch(object, &parsed).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// Removes strategic-merge-patch directives so what is left applies as a merge patch.
fn strip_strategic_directives(mut patch: Value) -> Value {
    if let Value::Object(map) = &mut patch {
        map.retain(|k, _| {
            !k.starts_with("$setElementOrder/")
                && !k.starts_with("$deleteFromPrimitiveList/")
                && k != "$retainKeys"
                && k != "$patch"
        });
        for v in map.values_mut() {
            *v = strip_strategic_directives(std::mem::take(v));
        }
    }
    patch
}

/// Leaf paths of an applied configuration (objects are granular, lists and scalars are leaves).
fn leaf_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    walk(v, &format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    out.retain(|p| {
        !p.starts_with("/apiVersion") && !p.starts_with("/kind") && p != "/metadata/name" && p != "/metadata/namespace"
    });
    out
}

fn remove_path(object: &mut Value, pointer: &str) {
    if let Some((parent, key)) = pointer.rsplit_once('/')
        && let Some(Value::Object(map)) = object.pointer_mut(parent)
    {
        map.remove(&key.replace("~1", "/").replace("~0", "~"));
    }
}

/// Objects merge key by key; lists and scalars replace; null deletes.
fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    deep_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
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
                false,
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
                None,
                false,
                false,
            )
            .unwrap();
        assert_eq!(state.revision, rv);
        assert_eq!(
            same["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
    }

    #[test]
    fn finalizer_protocol_of_kube() {
        let mut state = State::new(StoreOptions::default());
        let rt = secrets(&state);
        state
            .create(&rt, "default", json!({"metadata": {"name": "s"}}), false)
            .unwrap();
        let add = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": ["x/f"]}]);
        state
            .patch(&rt, "default", "s", PatchKind::Json, add.clone(), None, false, false)
            .unwrap();
        let marked = state.delete(&rt, "default", "s", &json!({}), false).unwrap();
        assert!(matches!(marked, DeleteOutcome::Marked(ref o) if o["metadata"]["deletionTimestamp"].is_string()));
        let remove = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "x/f"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
        let (last, _) = state
            .patch(&rt, "default", "s", PatchKind::Json, remove, None, false, false)
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
}

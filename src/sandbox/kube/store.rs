//! The object store: one global resourceVersion, an event log that watches read as cursors, and the write
//! pipeline every verb goes through (system fields, metadata normalisation, status and generation rules,
//! validation, no-op detection, finalizer-driven deletion).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

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
    pub object: Arc<Value>,
    /// The object before the change, so a watch can turn selector transitions into ADDED or DELETED.
    pub previous: Option<Arc<Value>>,
}

/// A consistent list snapshot kept under a continue token.
struct ContinueSnapshot {
    revision: u64,
    items: Vec<Arc<Value>>,
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
            log_capacity: 5_000,
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
    /// Stored objects; shared with the event log, which keeps versions without copying them.
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    log: VecDeque<LogEntry>,
    /// Changes at or below this revision are no longer in the log.
    pub compacted_through: u64,
    continues: HashMap<String, ContinueSnapshot>,
    next_continue: u64,
    /// Field ownership per object (server-side apply bookkeeping, rendered as `managedFields`).
    managers: HashMap<ObjectKey, Vec<ManagedEntry>>,
}

/// Who writes, and how: the field manager, `force` for apply, and dry-run.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    /// `fieldManager`, or a name derived from the User-Agent; required for apply.
    pub manager: Option<String>,
    /// Apply only: take ownership of conflicting fields.
    pub force: bool,
    /// Run the whole pipeline, commit nothing.
    pub dry_run: bool,
}

impl Writer {
    /// A plain write by `manager`.
    pub fn by(manager: &str) -> Self {
        Writer {
            manager: Some(manager.to_string()),
            ..Writer::default()
        }
    }

    fn manager(&self) -> &str {
        self.manager.as_deref().unwrap_or("unknown")
    }
}

/// One `managedFields` entry: the leaf paths a manager owns through one operation on one subresource.
#[derive(Clone, Debug, PartialEq)]
struct ManagedEntry {
    manager: String,
    apply: bool,
    status: bool,
    time: String,
    fields: BTreeSet<String>,
}

/// How a write changes field ownership.
enum Ownership<'a> {
    /// POST, PUT, merge/JSON/strategic patch: the writer takes the fields whose values changed.
    Update(&'a str),
    /// Apply: the writer's applied set becomes exactly these paths.
    Apply(&'a str, BTreeSet<String>),
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
            managers: HashMap::new(),
        };
        let namespaces = state.resource("", "v1", "namespaces").expect("namespaces are built in");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            state
                .create(
                    &namespaces,
                    "",
                    json!({"metadata": {"name": ns}}),
                    &Writer::by("kube-apiserver"),
                )
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

    /// An object as served at `rt`'s version (storage is shared across versions; conversion is None), with
    /// its `managedFields` rendered from the ownership records (kept apart: as JSON maps they would
    /// multiply the memory an object takes).
    pub fn at_version(&self, rt: &ResourceType, object: &Value) -> Value {
        let mut copy = object.clone();
        copy["apiVersion"] = json!(rt.api_version());
        copy["kind"] = json!(rt.kind);
        let key = self.key(
            rt,
            meta_str(object, "namespace").unwrap_or_default(),
            meta_str(object, "name").unwrap_or_default(),
        );
        if let Some(entries) = self.managers.get(&key).filter(|e| !e.is_empty()) {
            meta_mut(&mut copy).insert("managedFields".into(), Value::Array(render_managed_fields(entries, rt)));
        }
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
                let items: Vec<Arc<Value>> = self
                    .objects
                    .iter()
                    .filter(|((g, p, ns, _), _)| {
                        *g == rt.group && *p == rt.plural && query.namespace.as_ref().is_none_or(|q| q == ns)
                    })
                    .map(|(_, o)| o)
                    .filter(|o| query.labels.matches(o) && query.fields.matches(o))
                    .cloned()
                    .collect();
                (self.revision, items, 0)
            }
        };
        let limit = query.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let end = offset.saturating_add(limit).min(items.len());
        let page = items[offset..end].iter().map(|o| self.at_version(rt, o)).collect();
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

    fn create_owned(
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
        let entries = owned_after(&[], &Value::Null, &object, false, ownership);
        if dry_run {
            return Ok(object);
        }
        Ok(self.commit(rt, key, None, object, Some(entries)))
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
            ("events.k8s.io", "events") => {
                let causes = event_violations(&object, old);
                if !causes.is_empty() {
                    return Err(ApiError::invalid(&rt.kind, &name, &rt.group, causes));
                }
            }
            ("", "namespaces") => {
                // The API server labels every namespace with its name (NamespaceDefaultLabelName, 1.21+).
                let m = meta_mut(&mut object);
                let labels = m.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
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
        let ownership = Ownership::Update(writer.manager());
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
        let mut patched = old.clone();
        match kind {
            PatchKind::Json => apply_json_patch(&mut patched, patch)?,
            PatchKind::Merge => json_patch::merge(&mut patched, &patch),
            PatchKind::Strategic => json_patch::merge(&mut patched, &strip_strategic_directives(patch)),
            PatchKind::Apply => unreachable!("handled above"),
        }
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&rt.qualified_plural(), name));
        }
        let ownership = Ownership::Update(writer.manager());
        self.update(rt, key, old, patched, status, dry_run, Some(ownership))
            .map(|o| (o, false))
    }

    /// The shared update pipeline; `ownership` None leaves field ownership as it is (system writes).
    #[allow(clippy::too_many_arguments)]
    fn update(
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
        if without_volatile(&object) == without_volatile(&old) && !(being_deleted && no_finalizers) {
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
    fn commit(
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
        self.log_change(rt, &key, change, stored.clone(), previous);
        if rt.group == "events.k8s.io" && rt.plural == "events" {
            self.mirror_core_event(&key, &stored);
        }
        self.at_version(rt, &stored)
    }

    /// Keeps the core/v1 view of an events.k8s.io Event (what `kubectl describe` and `kubectl get events`
    /// read), as the API server serves one store under both groups.
    fn mirror_core_event(&mut self, key: &ObjectKey, event: &Value) {
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
        let change = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.log_change(&core, &core_key, change, stored, previous);
    }

    fn log_change(
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

    /// Removes an object for good, with a DELETED event at a new revision, then its dependents.
    fn remove(&mut self, rt: &ResourceType, key: ObjectKey, mut last: Value) -> Value {
        self.objects.remove(&key);
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
        self.collect_garbage();
        self.at_version(rt, &last)
    }

    fn remove_all(&mut self, matches: impl Fn(&ObjectKey) -> bool) {
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

    /// Writes an object directly (test seeding): creates or replaces without preconditions.
    pub fn put(&mut self, rt: &ResourceType, namespace: &str, object: Value) -> Result<Value, ApiError> {
        const MANAGER: &str = "sandbox-test";
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let key = self.key(rt, namespace, &name);
        match self.objects.get(&key).map(|o| Value::clone(o)) {
            None => self.create(rt, namespace, object, &Writer::by(MANAGER)),
            Some(old) => {
                let mut object = object;
                meta_mut(&mut object).remove("resourceVersion");
                let status = object.get("status").cloned();
                let owner = Some(Ownership::Update(MANAGER));
                let updated = self.update(rt, key.clone(), old, object, false, false, owner)?;
                match (rt.status_subresource, status) {
                    (true, Some(status)) if self.objects.contains_key(&key) => {
                        let current = Value::clone(&self.objects[&key]);
                        let owner = Some(Ownership::Update(MANAGER));
                        self.update(rt, key, current, json!({"status": status}), true, false, owner)
                    }
                    _ => Ok(updated),
                }
            }
        }
    }
}

fn rand_index(len: usize) -> usize {
    fastrand::usize(..len)
}

/// The API server's checks of an `events.k8s.io/v1` Event (what kube's Recorder must get right).
fn event_violations(event: &Value, old: Option<&Value>) -> Vec<Value> {
    let mut causes = Vec::new();
    let mut violation = |field: &str, reason: &str, message: String| {
        causes.push(json!({"field": field, "reason": reason, "message": message}));
    };
    let text = |field: &str| event[field].as_str().unwrap_or("");
    if text("eventTime").is_empty() {
        violation("eventTime", "FieldValueRequired", "Required value".into());
    }
    if !matches!(text("type"), "Normal" | "Warning") {
        violation(
            "type",
            "FieldValueNotSupported",
            format!(
                "Unsupported value: \"{}\": supported values: \"Normal\", \"Warning\"",
                text("type")
            ),
        );
    }
    let controller = text("reportingController");
    let qualified = controller.split('/').count() <= 2
        && controller.split('/').next_back().is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 63
                && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && n.starts_with(|c: char| c.is_ascii_alphanumeric())
                && n.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    if !qualified {
        violation(
            "reportingController",
            "FieldValueInvalid",
            format!("Invalid value: \"{controller}\": must be a qualified name"),
        );
    }
    for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        if text(field).is_empty() {
            violation(field, "FieldValueRequired", "Required value".into());
        } else if text(field).len() > limit {
            violation(
                field,
                "FieldValueTooLong",
                format!("Too long: may not be more than {limit} bytes"),
            );
        }
    }
    if text("note").len() > 1024 {
        violation(
            "note",
            "FieldValueTooLong",
            "Too long: may not be more than 1024 bytes".into(),
        );
    }
    if let Some(series) = event.get("series") {
        if series["count"].as_i64().is_none_or(|c| c < 2) {
            violation(
                "series.count",
                "FieldValueInvalid",
                "Invalid value: should be at least 2".into(),
            );
        }
        if series["lastObservedTime"].as_str().is_none_or(str::is_empty) {
            violation("series.lastObservedTime", "FieldValueRequired", "Required value".into());
        }
    }
    for legacy in [
        "deprecatedCount",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedSource",
    ] {
        if event
            .get(legacy)
            .is_some_and(|v| !v.is_null() && *v != json!({}) && *v != json!(0))
        {
            violation(
                legacy,
                "FieldValueForbidden",
                "Forbidden: deprecated field must not be set".into(),
            );
        }
    }
    if let Some(old) = old {
        for field in [
            "action",
            "reason",
            "regarding",
            "reportingController",
            "reportingInstance",
            "type",
            "eventTime",
            "note",
        ] {
            if event.get(field) != old.get(field) {
                violation(field, "FieldValueInvalid", "Invalid value: field is immutable".into());
            }
        }
    }
    causes
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

/// Leaf paths of an object (objects are granular, lists and scalars are leaves).
fn leaf_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            // An empty object owns nothing (it only makes its parent exist).
            Value::Object(map) => {
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

/// Paths a write can own: everything but identity and server-set metadata, and only `status` on `/status`.
fn owned_paths(object: &Value, status: bool) -> BTreeSet<String> {
    const SERVER_SET: [&str; 8] = [
        "/metadata/uid",
        "/metadata/resourceVersion",
        "/metadata/generation",
        "/metadata/creationTimestamp",
        "/metadata/managedFields",
        "/metadata/deletionTimestamp",
        "/metadata/deletionGracePeriodSeconds",
        "/metadata/selfLink",
    ];
    let mut paths = leaf_paths(object);
    paths.retain(|p| {
        !SERVER_SET.iter().any(|s| overlaps(p, s)) && (p == "/status" || p.starts_with("/status/")) == status
    });
    paths
}

/// Whether two leaf paths touch the same field (equal, or one inside the other).
fn overlaps(a: &str, b: &str) -> bool {
    a == b
        || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
        || b.strip_prefix(a).is_some_and(|r| r.starts_with('/'))
}

/// Paths whose values differ between two versions of an object.
fn changed_paths(old: &Value, new: &Value, status: bool) -> BTreeSet<String> {
    let mut paths = owned_paths(old, status);
    paths.extend(owned_paths(new, status));
    paths.retain(|p| old.pointer(p) != new.pointer(p));
    paths
}

/// The ownership after a write: the writer gains the changed fields (update) or exactly its applied set
/// (apply); every other manager loses the fields whose values changed; empty entries disappear.
fn owned_after(
    entries: &[ManagedEntry],
    old: &Value,
    new: &Value,
    status: bool,
    ownership: Ownership,
) -> Vec<ManagedEntry> {
    let changed = changed_paths(old, new, status);
    let (manager, apply, fields) = match ownership {
        Ownership::Update(manager) => (manager, false, None),
        Ownership::Apply(manager, fields) => (manager, true, Some(fields)),
    };
    let is_writer = |e: &ManagedEntry| e.manager == manager && e.apply == apply && e.status == status;
    let mut result: Vec<ManagedEntry> = entries
        .iter()
        .filter(|e| !is_writer(e))
        .cloned()
        .map(|mut e| {
            e.fields.retain(|f| !changed.iter().any(|c| overlaps(f, c)));
            e
        })
        .filter(|e| !e.fields.is_empty())
        .collect();
    let previous = entries.iter().find(|e| is_writer(e));
    let fields = match fields {
        Some(applied) => applied,
        None => {
            let mut owned = previous.map(|e| e.fields.clone()).unwrap_or_default();
            owned.retain(|f| new.pointer(f).is_some());
            owned.extend(changed);
            owned
        }
    };
    if !fields.is_empty() {
        let time = match previous {
            Some(p) if p.fields == fields => p.time.clone(),
            _ => now_rfc3339(),
        };
        result.push(ManagedEntry {
            manager: manager.to_string(),
            apply,
            status,
            time,
            fields,
        });
    }
    result
}

/// Without `force`, an apply may not change a value another manager owns.
fn check_apply_conflicts(
    entries: &[ManagedEntry],
    manager: &str,
    status: bool,
    live: &Value,
    config: &Value,
    applied: &BTreeSet<String>,
) -> Result<(), ApiError> {
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for path in applied {
        if config.pointer(path) == live.pointer(path) {
            continue;
        }
        for entry in entries.iter().filter(|e| e.manager != manager && e.status == status) {
            if entry.fields.iter().any(|f| overlaps(f, path)) {
                conflicts.push((entry.manager.clone(), dotted(path)));
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    let n = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
        .collect();
    let mut error = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            lines.join("\n")
        ),
    );
    error.details = json!({
        "causes": conflicts.iter().map(|(m, f)| json!({
            "reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": f
        })).collect::<Vec<_>>()
    });
    Err(error)
}

/// `/spec/a~1b` as `.spec.a/b`.
fn dotted(path: &str) -> String {
    path.split('/')
        .skip(1)
        .map(|s| format!(".{}", s.replace("~1", "/").replace("~0", "~")))
        .collect()
}

/// `managedFields` as the API server shows them (FieldsV1 with `f:` keys; lists are atomic here).
fn render_managed_fields(entries: &[ManagedEntry], rt: &ResourceType) -> Vec<Value> {
    entries
        .iter()
        .map(|e| {
            let mut fields = json!({});
            for path in &e.fields {
                let mut node = &mut fields;
                for segment in path.split('/').skip(1) {
                    let key = format!("f:{}", segment.replace("~1", "/").replace("~0", "~"));
                    node = node
                        .as_object_mut()
                        .expect("fieldsV1 nodes are objects")
                        .entry(key)
                        .or_insert_with(|| json!({}));
                }
            }
            let mut entry = json!({
                "manager": e.manager,
                "operation": if e.apply { "Apply" } else { "Update" },
                "apiVersion": rt.api_version(),
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            });
            if e.status {
                entry["subresource"] = json!("status");
            }
            entry
        })
        .collect()
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

    fn apply(state: &mut State, manager: &str, force: bool, config: Value) -> Result<Value, ApiError> {
        let rt = secrets(state);
        let writer = Writer {
            manager: Some(manager.into()),
            force,
            dry_run: false,
        };
        let config = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}).merged(config);
        state
            .patch(&rt, "default", "s", PatchKind::Apply, config, false, &writer)
            .map(|(o, _)| o)
    }

    trait Merged {
        fn merged(self, other: Value) -> Value;
    }

    impl Merged for Value {
        fn merged(mut self, other: Value) -> Value {
            deep_merge(&mut self, &other);
            self
        }
    }

    #[test]
    fn apply_conflicts_force_and_shared_ownership() {
        let mut state = State::new(StoreOptions::default());
        apply(
            &mut state,
            "a",
            false,
            json!({"metadata": {"labels": {"x": "1", "y": "1"}}}),
        )
        .unwrap();
        // Same value: shared ownership, no conflict.
        apply(&mut state, "b", false, json!({"metadata": {"labels": {"x": "1"}}})).unwrap();
        // A different value for a field another manager owns: 409 naming the manager and the field.
        let err = apply(&mut state, "b", false, json!({"metadata": {"labels": {"y": "2"}}})).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"a\": .metadata.labels.y"
        );
        assert_eq!(err.details["causes"][0]["reason"], "FieldManagerConflict");
        // Forced: b takes y; a keeps only x, which it still shares with... nobody, since b dropped x.
        let object = apply(&mut state, "b", true, json!({"metadata": {"labels": {"y": "2"}}})).unwrap();
        assert_eq!(
            object["metadata"]["labels"],
            json!({"x": "1", "y": "2"}),
            "x stays: a owns it"
        );
        let managed = object["metadata"]["managedFields"].as_array().unwrap();
        let owner_of = |m: &str| {
            managed
                .iter()
                .find(|e| e["manager"] == m)
                .map(|e| e["fieldsV1"]["f:metadata"]["f:labels"].clone())
        };
        assert_eq!(owner_of("a"), Some(json!({"f:x": {}})));
        assert_eq!(owner_of("b"), Some(json!({"f:y": {}})));
        assert!(
            managed
                .iter()
                .all(|e| e["operation"] == "Apply" && e["fieldsType"] == "FieldsV1")
        );
        // a stops applying x and nobody else owns it: removed.
        let object = apply(&mut state, "a", false, json!({"metadata": {"labels": {}}})).unwrap();
        assert_eq!(object["metadata"]["labels"], json!({"y": "2"}));
    }

    #[test]
    fn updates_take_changed_fields_from_appliers() {
        let mut state = State::new(StoreOptions::default());
        let rt = secrets(&state);
        apply(&mut state, "a", false, json!({"metadata": {"labels": {"x": "1"}}})).unwrap();
        let (object, _) = state
            .patch(
                &rt,
                "default",
                "s",
                PatchKind::Merge,
                json!({"metadata": {"labels": {"x": "2"}}}),
                false,
                &Writer::by("kubectl-edit"),
            )
            .unwrap();
        let managed = object["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(managed.len(), 1, "a lost its only field: {managed:?}");
        assert_eq!(managed[0]["manager"], "kubectl-edit");
        assert_eq!(managed[0]["operation"], "Update");
        // The updater now owns x, so a's apply of another value conflicts.
        let err = apply(&mut state, "a", false, json!({"metadata": {"labels": {"x": "3"}}})).unwrap_err();
        assert!(
            err.message.contains("conflict with \"kubectl-edit\""),
            "{}",
            err.message
        );
    }
}

//! The object store: one global resourceVersion, an event log that watches read as cursors, and the write
//! pipeline every verb goes through (system fields, metadata normalisation, status and generation rules,
//! validation, no-op detection, finalizer-driven deletion).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

mod admission;
mod delete;
mod owners;
mod ownership;
mod patch;
mod write;

use ownership::{ManagedEntry, Ownership, overlaps, render_managed_fields};

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
    /// Issue order: the oldest snapshots expire first.
    serial: u64,
}

/// How many unfinished paged lists are kept; older continue tokens expire (410), as they do on a real
/// server after compaction, so abandoned lists cannot grow memory without bound.
const MAX_CONTINUES: usize = 32;

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
    /// Owner references, for garbage collection.
    owners: owners::OwnerIndex,
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

pub(super) fn now_rfc3339() -> String {
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

/// A DNS-1123 subdomain as the API server checks one (`IsDNS1123Subdomain`): at most 253 characters of
/// dot-separated alphanumeric-edged parts. Unlike a label, a part may be longer than 63 characters.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|part| is_alphanumeric_edged(part, 253))
}

/// A DNS-1123 label (`IsDNS1123Label`): at most 63 characters.
fn is_dns_label(name: &str) -> bool {
    is_alphanumeric_edged(name, 63)
}

fn is_alphanumeric_edged(part: &str, max: usize) -> bool {
    let bytes = part.as_bytes();
    !part.is_empty()
        && part.len() <= max
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

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
            owners: owners::OwnerIndex::default(),
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

    /// Every object of a resource as stored (no copy; `apiVersion` and `kind` may be another version's).
    /// Keys sort by group and plural first, so this walks only that resource's range.
    pub fn stored_of<'a>(&'a self, rt: &'a ResourceType) -> impl Iterator<Item = &'a Value> + 'a {
        self.stored_in(&rt.group, &rt.plural)
    }

    /// Every stored object of `group`/`plural`, walking only that range of keys.
    fn stored_in(&self, group: &str, plural: &str) -> impl Iterator<Item = &Value> + '_ {
        let (group, plural) = (group.to_string(), plural.to_string());
        let start = (group.clone(), plural.clone(), String::new(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((g, p, _, _), _)| *g == group && *p == plural)
            .map(|(_, o)| o.as_ref())
    }

    /// The RBAC objects held, for authorizing impersonated requests and answering access reviews.
    pub fn rbac(&self) -> super::rbac::Rbac<'_> {
        let of = |plural: &str| -> Vec<&Value> { self.stored_in("rbac.authorization.k8s.io", plural).collect() };
        super::rbac::Rbac {
            roles: of("roles"),
            cluster_roles: of("clusterroles"),
            role_bindings: of("rolebindings"),
            cluster_role_bindings: of("clusterrolebindings"),
        }
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
            if self.continues.len() >= MAX_CONTINUES
                && let Some(oldest) = self
                    .continues
                    .iter()
                    .min_by_key(|(_, c)| c.serial)
                    .map(|(t, _)| t.clone())
            {
                self.continues.remove(&oldest);
            }
            self.continues.insert(
                token.clone(),
                ContinueSnapshot {
                    revision,
                    items,
                    offset: end,
                    serial: self.next_continue,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(state: &State) -> ResourceType {
        state.resource("", "v1", "secrets").unwrap()
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
            super::patch::deep_merge(&mut self, &other);
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
    fn applied_string_data_is_owned_as_the_data_it_becomes() {
        let mut state = State::new(StoreOptions::default());
        let object = apply(&mut state, "installer", false, json!({"stringData": {"k": "v"}})).unwrap();
        assert_eq!(object["data"], json!({"k": "dg=="}));
        let managed = &object["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(managed["f:data"], json!({"f:k": {}}), "{managed}");
        assert!(managed.get("f:stringData").is_none(), "{managed}");
        // Another applier with the same stringData: the same stored value, shared, no conflict.
        apply(&mut state, "kubectl", false, json!({"stringData": {"k": "v"}})).unwrap();
        // A different value conflicts on the stored field.
        let err = apply(&mut state, "kubectl", false, json!({"stringData": {"k": "w"}})).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(err.message.contains(".data.k"), "{}", err.message);
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

    #[test]
    fn lists_page_with_continue_tokens_on_a_snapshot() {
        let mut state = State::new(StoreOptions::default());
        let rt = secrets(&state);
        for name in ["a", "b", "c"] {
            state
                .create(&rt, "default", json!({"metadata": {"name": name}}), &Writer::by("test"))
                .unwrap();
        }
        let page = |state: &mut State, token: Option<String>| {
            state
                .list(
                    &rt,
                    &ListQuery {
                        namespace: Some("default".into()),
                        labels: LabelSelector::parse("").unwrap(),
                        fields: FieldSelector::parse("", &[]).unwrap(),
                        limit: Some(2),
                        continue_token: token,
                    },
                )
                .unwrap()
        };
        let (first, revision, token) = page(&mut state, None);
        assert_eq!(first.len(), 2);
        // A write between pages does not show in the rest of the list.
        state
            .create(&rt, "default", json!({"metadata": {"name": "d"}}), &Writer::by("test"))
            .unwrap();
        let (rest, rest_revision, end) = page(&mut state, token);
        assert_eq!(rest.len(), 1);
        assert_eq!((rest_revision, end), (revision, None));
        // Abandoned lists expire oldest first instead of piling up.
        let (_, _, token) = page(&mut state, None);
        for _ in 0..MAX_CONTINUES {
            page(&mut state, None);
        }
        assert_eq!(state.continues.len(), MAX_CONTINUES);
        assert!(
            state
                .list(
                    &rt,
                    &ListQuery {
                        namespace: None,
                        labels: LabelSelector::parse("").unwrap(),
                        fields: FieldSelector::parse("", &[]).unwrap(),
                        limit: Some(2),
                        continue_token: token,
                    },
                )
                .is_err_and(|e| e.code == 410)
        );
    }

    #[test]
    fn names_follow_the_api_servers_dns_rules() {
        let long_part = "a".repeat(100);
        assert!(
            is_dns_subdomain(&format!("{long_part}.example")),
            "subdomain parts may exceed 63"
        );
        assert!(!is_dns_subdomain(&"a".repeat(254)));
        assert!(!is_dns_subdomain("-a.b") && !is_dns_subdomain("a..b") && !is_dns_subdomain("A"));
        assert!(is_dns_label(&"a".repeat(63)) && !is_dns_label(&"a".repeat(64)) && !is_dns_label("a.b"));
    }
}

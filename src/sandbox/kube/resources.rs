//! What the emulated API server serves: the built-in resources the operator and kubectl use, plus one
//! entry per served version of every installed CRD.

use serde_json::{Value, json};

/// One servable resource (a group/version/plural).
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name as it appears in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind of the objects.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories for kubectl (`kubectl get all`-style groups).
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource (and `.status` is ignored on the main endpoint).
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained (custom resources and CRDs).
    pub has_generation: bool,
    /// Whether a PUT of a missing object creates it (Leases and Events).
    pub create_on_update: bool,
    /// Whether a PUT without resourceVersion is refused (custom resources, CRDs and Leases).
    pub requires_resource_version_on_update: bool,
    /// The structural schema, for custom resources.
    pub schema: Option<super::schema::Schema>,
    /// `additionalPrinterColumns` of a custom resource version.
    pub printer_columns: Vec<Value>,
    /// Whether it is a custom resource (served from a CRD).
    pub custom: bool,
    /// Whether objects are only created and answered, never stored (access reviews).
    pub review: bool,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` or `plural` for the core group, as in API error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind of a list of these objects.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            kind: kind.to_string(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status_subresource: false,
            has_generation: false,
            create_on_update: false,
            requires_resource_version_on_update: false,
            schema: None,
            printer_columns: Vec::new(),
            custom: false,
            review: false,
        }
    }

    /// The APIResource entry of discovery.
    pub fn discovery_entry(&self) -> Value {
        json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": if self.review {
                json!(["create"])
            } else {
                json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
            },
            "shortNames": self.short_names,
            "categories": self.categories,
        })
    }
}

/// The built-in resources: Namespaces, Secrets, ConfigMaps, ServiceAccounts, Events (both APIs), Leases,
/// CRDs, the RBAC kinds and the self-subject access reviews.
pub fn builtins() -> Vec<ResourceType> {
    let mut namespaces = ResourceType::builtin("", "v1", "namespaces", "Namespace", false);
    namespaces.short_names = vec!["ns".into()];
    namespaces.status_subresource = true;
    let secrets = ResourceType::builtin("", "v1", "secrets", "Secret", true);
    let mut config_maps = ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true);
    config_maps.short_names = vec!["cm".into()];
    let mut core_events = ResourceType::builtin("", "v1", "events", "Event", true);
    core_events.short_names = vec!["ev".into()];
    core_events.create_on_update = true;
    let mut events = ResourceType::builtin("events.k8s.io", "v1", "events", "Event", true);
    events.short_names = vec!["ev".into()];
    events.create_on_update = true;
    let mut leases = ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease", true);
    leases.create_on_update = true;
    leases.requires_resource_version_on_update = true;
    let mut crds = ResourceType::builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    );
    crds.short_names = vec!["crd".into(), "crds".into()];
    crds.status_subresource = true;
    crds.has_generation = true;
    crds.requires_resource_version_on_update = true;
    let mut service_accounts = ResourceType::builtin("", "v1", "serviceaccounts", "ServiceAccount", true);
    service_accounts.short_names = vec!["sa".into()];
    let rbac = "rbac.authorization.k8s.io";
    let roles = ResourceType::builtin(rbac, "v1", "roles", "Role", true);
    let cluster_roles = ResourceType::builtin(rbac, "v1", "clusterroles", "ClusterRole", false);
    let role_bindings = ResourceType::builtin(rbac, "v1", "rolebindings", "RoleBinding", true);
    let cluster_role_bindings = ResourceType::builtin(rbac, "v1", "clusterrolebindings", "ClusterRoleBinding", false);
    let review = |plural: &str, kind: &str| ResourceType {
        review: true,
        ..ResourceType::builtin("authorization.k8s.io", "v1", plural, kind, false)
    };
    vec![
        namespaces,
        secrets,
        config_maps,
        service_accounts,
        core_events,
        events,
        leases,
        crds,
        roles,
        cluster_roles,
        role_bindings,
        cluster_role_bindings,
        review("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
        review("selfsubjectrulesreviews", "SelfSubjectRulesReview"),
    ]
}

/// The resource types a CRD serves, one per served version. Errors name what is wrong with the CRD.
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().ok_or("spec.group: Required value")?;
    let names = &spec["names"];
    let plural = names["plural"].as_str().ok_or("spec.names.plural: Required value")?;
    let kind = names["kind"].as_str().ok_or("spec.names.kind: Required value")?;
    let expected_name = format!("{plural}.{group}");
    if crd["metadata"]["name"].as_str() != Some(expected_name.as_str()) {
        return Err(format!(
            "metadata.name: Invalid value: must be spec.names.plural+\".\"+spec.group ({expected_name})"
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => return Err("spec.scope: Unsupported value: supported values: \"Cluster\", \"Namespaced\"".into()),
    };
    let versions = spec["versions"].as_array().ok_or("spec.versions: Required value")?;
    if versions.iter().filter(|v| v["storage"].as_bool() == Some(true)).count() != 1 {
        return Err("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    Ok(versions
        .iter()
        .filter(|v| v["served"].as_bool() == Some(true))
        .map(|v| ResourceType {
            group: group.to_string(),
            version: v["name"].as_str().unwrap_or_default().to_string(),
            plural: plural.to_string(),
            singular: names["singular"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| kind.to_lowercase()),
            kind: kind.to_string(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: v["subresources"]["status"].is_object(),
            has_generation: true,
            create_on_update: false,
            requires_resource_version_on_update: true,
            schema: Some(v["schema"]["openAPIV3Schema"].clone())
                .filter(Value::is_object)
                .map(super::schema::Schema::new),
            printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
            custom: true,
            review: false,
        })
        .collect())
}

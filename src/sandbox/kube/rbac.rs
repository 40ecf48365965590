//! Authorization from the RBAC objects the emulator holds, for requests that impersonate someone
//! (`kubectl --as`, `--as-group`) and for `kubectl auth can-i` (SelfSubjectAccessReview and
//! SelfSubjectRulesReview), so a chart's rules can be checked against the emulator as against a cluster.
//!
//! The sandbox's own user is the cluster's administrator (as `system:masters` is): only impersonated
//! requests are authorized. Roles are evaluated as the RBAC authorizer does: a request is allowed when
//! any rule of any role bound to the user (ClusterRoleBindings everywhere, RoleBindings in their
//! namespace) covers its verb, API group, resource (or `resource/subresource`) and name. Aggregated
//! ClusterRoles (`aggregationRule`) are not assembled.

use serde_json::{Value, json};

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user name (`system:serviceaccount:NS:NAME` for a service account).
    pub name: String,
    /// Its groups, including the ones every authenticated user has.
    pub groups: Vec<String>,
}

impl User {
    /// The user a request impersonates, with the groups the API server adds: `system:authenticated`
    /// for all, and `system:serviceaccounts` and `system:serviceaccounts:NS` for a service account.
    pub fn impersonated(name: &str, groups: &[String]) -> User {
        let mut all: Vec<String> = groups.to_vec();
        if let Some(namespace) = service_account(name).map(|(ns, _)| ns) {
            all.push("system:serviceaccounts".into());
            all.push(format!("system:serviceaccounts:{namespace}"));
        }
        all.push("system:authenticated".into());
        all.dedup();
        User {
            name: name.to_string(),
            groups: all,
        }
    }
}

/// `(namespace, name)` of a service account user name.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    rest.split_once(':')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
}

/// What a resource request asks to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete, deletecollection (or any custom verb).
    pub verb: String,
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource (`status`), empty for none.
    pub subresource: String,
    /// Namespace, empty for cluster scope (or all namespaces).
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
}

impl Attributes {
    /// Reads `spec.resourceAttributes` of an access review.
    pub fn from_review(attributes: &Value) -> Attributes {
        let text = |k: &str| attributes[k].as_str().unwrap_or_default().to_string();
        Attributes {
            verb: text("verb"),
            group: text("group"),
            resource: text("resource"),
            subresource: text("subresource"),
            namespace: text("namespace"),
            name: text("name"),
        }
    }

    /// The API server's denial message.
    pub fn forbidden_message(&self, user: &User) -> String {
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let object = if self.name.is_empty() {
            resource.clone()
        } else {
            format!("{} \"{}\"", self.resource, self.name)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", self.namespace)
        };
        format!(
            "{object} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            user.name, self.verb, self.group
        )
    }
}

/// The RBAC objects to evaluate, borrowed from the store.
#[derive(Clone, Debug, Default)]
pub struct Rbac<'a> {
    /// Roles (namespaced).
    pub roles: Vec<&'a Value>,
    /// ClusterRoles.
    pub cluster_roles: Vec<&'a Value>,
    /// RoleBindings (namespaced).
    pub role_bindings: Vec<&'a Value>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<&'a Value>,
}

/// An authorization decision and the reason the API server would give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Why (for an allowed request, the binding and role that allow it).
    pub reason: String,
}

fn text<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn strings(value: &Value) -> impl Iterator<Item = &str> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// Whether a binding's subject is this user. A ServiceAccount subject without a namespace takes the
/// binding's namespace.
fn subject_matches(subject: &Value, binding_namespace: &str, user: &User) -> bool {
    let name = text(subject, "/name");
    match text(subject, "/kind") {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let namespace = match text(subject, "/namespace") {
                "" => binding_namespace,
                ns => ns,
            };
            service_account(&user.name) == Some((namespace, name))
        }
        _ => false,
    }
}

/// Whether one PolicyRule covers the request.
fn rule_covers(rule: &Value, attributes: &Attributes) -> bool {
    let any_or = |list: &Value, wanted: &str| strings(list).any(|v| v == "*" || v == wanted);
    let resource_matches = strings(&rule["resources"]).any(|r| {
        if attributes.subresource.is_empty() {
            r == "*" || r == attributes.resource
        } else {
            r == "*"
                || r == format!("{}/{}", attributes.resource, attributes.subresource)
                || r == format!("*/{}", attributes.subresource)
        }
    });
    let names = &rule["resourceNames"];
    let name_matches = strings(names).next().is_none() || strings(names).any(|n| n == attributes.name);
    any_or(&rule["verbs"], &attributes.verb)
        && any_or(&rule["apiGroups"], &attributes.group)
        && resource_matches
        && name_matches
}

impl Rbac<'_> {
    /// The rules a binding grants: its Role (same namespace) or ClusterRole.
    fn rules_of(&self, binding: &Value) -> Vec<&Value> {
        let role_name = text(binding, "/roleRef/name");
        let namespace = text(binding, "/metadata/namespace");
        let role = match text(binding, "/roleRef/kind") {
            "ClusterRole" => self
                .cluster_roles
                .iter()
                .find(|r| text(r, "/metadata/name") == role_name),
            "Role" => self
                .roles
                .iter()
                .find(|r| text(r, "/metadata/name") == role_name && text(r, "/metadata/namespace") == namespace),
            _ => None,
        };
        role.map(|r| r["rules"].as_array().into_iter().flatten().collect())
            .unwrap_or_default()
    }

    /// The bindings that apply to `user` for requests in `namespace` (empty: cluster scope only).
    fn bindings_for<'b>(&'b self, user: &'b User, namespace: &'b str) -> impl Iterator<Item = &'b Value> + 'b {
        let bound = move |binding: &&Value| {
            let binding_namespace = text(binding, "/metadata/namespace");
            strings_of(&binding["subjects"]).any(|s| subject_matches(s, binding_namespace, user))
        };
        let cluster = self.cluster_role_bindings.iter().copied().filter(bound);
        let local = self
            .role_bindings
            .iter()
            .copied()
            .filter(move |b| !namespace.is_empty() && text(b, "/metadata/namespace") == namespace)
            .filter(bound);
        cluster.chain(local)
    }

    /// Decides a resource request as the RBAC authorizer does.
    pub fn decide(&self, user: &User, attributes: &Attributes) -> Decision {
        if always_allowed(attributes) {
            return Decision {
                allowed: true,
                reason: "every authenticated user may ask what it may do".into(),
            };
        }
        for binding in self.bindings_for(user, &attributes.namespace) {
            if self.rules_of(binding).iter().any(|rule| rule_covers(rule, attributes)) {
                let binding_kind = if text(binding, "/metadata/namespace").is_empty() {
                    "ClusterRoleBinding".to_string()
                } else {
                    format!("RoleBinding \"{}\" in namespace", text(binding, "/metadata/namespace"))
                };
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by {binding_kind} \"{}\" of {} \"{}\" to User \"{}\"",
                        text(binding, "/metadata/name"),
                        text(binding, "/roleRef/kind"),
                        text(binding, "/roleRef/name"),
                        user.name
                    ),
                };
            }
        }
        Decision {
            allowed: false,
            reason: String::new(),
        }
    }

    /// Every resource rule that applies to `user` in `namespace` (a SelfSubjectRulesReview's status).
    pub fn rules(&self, user: &User, namespace: &str) -> Vec<Value> {
        self.bindings_for(user, namespace)
            .flat_map(|b| self.rules_of(b))
            .filter(|r| r.get("nonResourceURLs").is_none())
            .map(|r| {
                json!({
                    "verbs": r["verbs"], "apiGroups": r["apiGroups"], "resources": r["resources"],
                    "resourceNames": r.get("resourceNames").cloned().unwrap_or_else(|| json!([])),
                })
            })
            .collect()
    }
}

fn strings_of(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// What every authenticated user may do on a cluster whatever the RBAC objects say (the bootstrap
/// roles `system:basic-user`: ask what it may do): create access and rules reviews.
fn always_allowed(attributes: &Attributes) -> bool {
    attributes.group == "authorization.k8s.io"
        && attributes.verb == "create"
        && matches!(
            attributes.resource.as_str(),
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, resource: &str, namespace: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn cluster_and_namespaced_bindings_grant_what_their_roles_say() {
        let cluster_roles = [json!({"metadata": {"name": "reader"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
            {"apiGroups": ["webhook-operator.dev"], "resources": ["webhooksubscriptions/status"], "verbs": ["patch"]}
        ]})];
        let roles = [json!({"metadata": {"name": "lease", "namespace": "ops"}, "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"], "resourceNames": ["leader"]}
        ]})];
        let cluster_role_bindings = [json!({"metadata": {"name": "op"},
            "roleRef": {"kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "ops"}]})];
        let role_bindings = [json!({"metadata": {"name": "op-lease", "namespace": "ops"},
            "roleRef": {"kind": "Role", "name": "lease"},
            "subjects": [{"kind": "ServiceAccount", "name": "op"}]})];
        let rbac = Rbac {
            roles: roles.iter().collect(),
            cluster_roles: cluster_roles.iter().collect(),
            role_bindings: role_bindings.iter().collect(),
            cluster_role_bindings: cluster_role_bindings.iter().collect(),
        };
        let op = User::impersonated("system:serviceaccount:ops:op", &[]);
        assert!(op.groups.contains(&"system:serviceaccounts:ops".to_string()));
        let allowed = rbac.decide(&op, &attrs("list", "", "secrets", "team-a"));
        assert!(allowed.allowed);
        assert!(
            allowed.reason.contains("ClusterRoleBinding \"op\""),
            "{}",
            allowed.reason
        );
        assert!(!rbac.decide(&op, &attrs("delete", "", "secrets", "team-a")).allowed);
        let mut status = attrs("patch", "webhook-operator.dev", "webhooksubscriptions", "a");
        assert!(!rbac.decide(&op, &status).allowed, "the main resource is not granted");
        status.subresource = "status".into();
        assert!(rbac.decide(&op, &status).allowed);
        // The Role applies only in its namespace, and only to the named lease.
        let mut lease = attrs("update", "coordination.k8s.io", "leases", "ops");
        lease.name = "leader".into();
        assert!(rbac.decide(&op, &lease).allowed);
        lease.name = "other".into();
        assert!(!rbac.decide(&op, &lease).allowed);
        lease.name = "leader".into();
        lease.namespace = "default".into();
        assert!(!rbac.decide(&op, &lease).allowed);
        // Someone else gets nothing; a group subject matches by group.
        let alice = User::impersonated("alice", &["devs".into()]);
        assert!(!rbac.decide(&alice, &attrs("get", "", "secrets", "ops")).allowed);
        assert_eq!(rbac.rules(&op, "ops").len(), 3);
        assert_eq!(rbac.rules(&op, "").len(), 2);
        assert_eq!(
            attrs("list", "", "secrets", "team-a").forbidden_message(&alice),
            "secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team-a\""
        );
    }

    #[test]
    fn access_reviews_are_always_allowed() {
        assert!(always_allowed(&attrs(
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            ""
        )));
        assert!(!always_allowed(&attrs("list", "", "secrets", "")));
    }
}

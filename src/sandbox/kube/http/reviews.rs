//! SelfSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i`, `can-i --list`): answered
//! from the RBAC objects held for an impersonated user, and allowed for the sandbox's administrator.
//! Nothing is stored.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::Shared;
use super::request::json_response;
use crate::sandbox::kube::error::ApiError;
use crate::sandbox::kube::rbac::{Attributes, User};
use crate::sandbox::kube::resources::ResourceType;

/// The non-resource paths every authenticated user may read (the bootstrap `system:discovery` and
/// `system:public-info-viewer` roles).
const DISCOVERY_PATHS: [&str; 11] = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
];

fn non_resource_allowed(path: &str, verb: &str) -> bool {
    verb == "get"
        && DISCOVERY_PATHS.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == *p,
        })
}

/// Answers a review: the request echoed with its `status`.
pub(super) fn answer(
    shared: &Arc<Shared>,
    rt: &ResourceType,
    user: Option<&User>,
    body: &axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut review = super::request::parse_json(body)?;
    if !review.is_object() {
        return Err(ApiError::bad_request("the body of the request was not an object"));
    }
    let spec = review["spec"].clone();
    let status = match rt.kind.as_str() {
        "SelfSubjectAccessReview" => access_review(shared, user, &spec)?,
        _ => rules_review(shared, user, &spec),
    };
    review["apiVersion"] = json!(rt.api_version());
    review["kind"] = json!(rt.kind);
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] = status;
    Ok(json_response(StatusCode::CREATED, &review))
}

fn access_review(shared: &Arc<Shared>, user: Option<&User>, spec: &Value) -> Result<Value, ApiError> {
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    if resource.is_object() == non_resource.is_object() {
        return Err(ApiError::invalid(
            "SelfSubjectAccessReview",
            "",
            "authorization.k8s.io",
            vec![
                json!({"reason": "FieldValueInvalid", "message": "Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified", "field": "spec.resourceAttributes"}),
            ],
        ));
    }
    let Some(user) = user else {
        return Ok(json!({"allowed": true}));
    };
    if non_resource.is_object() {
        let allowed = non_resource_allowed(
            non_resource["path"].as_str().unwrap_or_default(),
            non_resource["verb"].as_str().unwrap_or_default(),
        );
        return Ok(json!({"allowed": allowed}));
    }
    let decision = shared.with_state(|s| s.rbac().decide(user, &Attributes::from_review(resource)));
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    Ok(status)
}

fn rules_review(shared: &Arc<Shared>, user: Option<&User>, spec: &Value) -> Value {
    let Some(user) = user else {
        return json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        });
    };
    let namespace = spec["namespace"].as_str().unwrap_or_default();
    let mut rules = shared.with_state(|s| s.rbac().rules(user, namespace));
    rules.push(json!({
        "verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "resourceNames": []
    }));
    json!({
        "resourceRules": rules,
        "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": DISCOVERY_PATHS}],
        "incomplete": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_is_open_to_every_authenticated_user() {
        assert!(non_resource_allowed("/apis/webhook-operator.dev/v1alpha1", "get"));
        assert!(non_resource_allowed("/version", "get"));
        assert!(!non_resource_allowed("/metrics", "get"));
        assert!(!non_resource_allowed("/api", "post"));
    }
}

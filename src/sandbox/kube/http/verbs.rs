//! The verbs on a resource: list, get, create, replace, patch, delete and delete-collection. Each reads
//! the request, runs the store's write pipeline and renders the answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::Shared;
use super::request::{
    Query, Target, json_response, list_query, metadata_only, parse_json, parse_yaml, partial_object, patch_kind,
    strict_unknown_fields, table_requested, view, with_warnings,
};
use crate::sandbox::kube::error::ApiError;
use crate::sandbox::kube::store::{DeleteOutcome, ListQuery, PatchKind, Writer};
use crate::sandbox::kube::table;

/// A request on a resource, read once.
pub(super) struct Call<'a> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) target: Target,
    pub(super) query: &'a Query,
    pub(super) accept: &'a str,
    pub(super) content_type: &'a str,
    pub(super) body: &'a Bytes,
    pub(super) writer: Writer,
    pub(super) namespace: String,
    /// On the `/status` subresource.
    pub(super) status: bool,
    pub(super) dry_run: bool,
}

/// GET on a collection: a list, a Table or `PartialObjectMetadataList`.
pub(super) fn list(call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        shared,
        target,
        query,
        accept,
        ..
    } = call;
    let list_query = list_query(&target, query)?;
    let (items, revision, token) = shared.with_state(|s| s.list(&target.rt, &list_query))?;
    if let Some(include) = table_requested(accept, query) {
        return Ok(json_response(
            StatusCode::OK,
            &table::render(&target.rt, &items, revision, token.as_deref(), include),
        ));
    }
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = token {
        metadata["continue"] = json!(token);
    }
    if metadata_only(accept) {
        let items: Vec<Value> = items.iter().map(partial_object).collect();
        let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items});
        return Ok(json_response(StatusCode::OK, &list));
    }
    let list = json!({"kind": target.rt.list_kind(), "apiVersion": target.rt.api_version(), "metadata": metadata, "items": items});
    Ok(json_response(StatusCode::OK, &list))
}

/// GET on one object.
pub(super) fn get(call: Call<'_>, name: &str) -> Result<Response, ApiError> {
    let (object, revision) = call
        .shared
        .with_state(|s| s.get(&call.target.rt, &call.namespace, name).map(|o| (o, s.revision)))?;
    if let Some(include) = table_requested(call.accept, call.query) {
        return Ok(json_response(
            StatusCode::OK,
            &table::render(&call.target.rt, &[object], revision, None, include),
        ));
    }
    Ok(json_response(StatusCode::OK, &view(call.accept, object)))
}

/// POST on a collection.
pub(super) fn create(call: Call<'_>) -> Result<Response, ApiError> {
    let object = parse_json(call.body)?;
    let strict = strict_unknown_fields(&call.target.rt, &object, call.query)?;
    let created = call
        .shared
        .with_state(|s| s.create(&call.target.rt, &call.namespace, object, &call.writer))?;
    Ok(with_warnings(json_response(StatusCode::CREATED, &created), &strict))
}

/// PUT on an object (or its status).
pub(super) fn replace(call: Call<'_>, name: &str) -> Result<Response, ApiError> {
    let object = parse_json(call.body)?;
    let strict = strict_unknown_fields(&call.target.rt, &object, call.query)?;
    let (object, created) = call.shared.with_state(|s| {
        s.replace(
            &call.target.rt,
            &call.namespace,
            name,
            object,
            call.status,
            &call.writer,
        )
    })?;
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_warnings(json_response(code, &object), &strict))
}

/// PATCH on an object (or its status): JSON, merge, strategic merge or apply.
pub(super) fn patch(call: Call<'_>, name: &str) -> Result<Response, ApiError> {
    let kind = patch_kind(call.content_type)?;
    if call.writer.force && kind != PatchKind::Apply {
        return Err(ApiError::new(
            422,
            "Invalid",
            "force: Invalid value: true: may not be specified for non-apply patch",
        ));
    }
    let patch = if kind == PatchKind::Apply {
        if call.query.get("fieldManager").is_none() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        parse_yaml(call.body)?
    } else {
        parse_json(call.body)?
    };
    let (object, created) = call.shared.with_state(|s| {
        s.patch(
            &call.target.rt,
            &call.namespace,
            name,
            kind,
            patch,
            call.status,
            &call.writer,
        )
    })?;
    Ok(json_response(
        if created { StatusCode::CREATED } else { StatusCode::OK },
        &view(call.accept, object),
    ))
}

/// DELETE on an object: marked (finalizers pending) or removed.
pub(super) fn delete(call: Call<'_>, name: &str) -> Result<Response, ApiError> {
    let options = if call.body.is_empty() {
        json!({})
    } else {
        parse_json(call.body)?
    };
    let dry_run = call.dry_run || options["dryRun"].as_array().is_some_and(|d| d.contains(&json!("All")));
    let rt = &call.target.rt;
    match call
        .shared
        .with_state(|s| s.delete(rt, &call.namespace, name, &options, dry_run))?
    {
        DeleteOutcome::Marked(object) => Ok(json_response(StatusCode::OK, &object)),
        DeleteOutcome::Removed(object) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": object["metadata"]["uid"]}
            }),
        )),
    }
}

/// DELETE on a collection: every object the selectors match.
pub(super) fn delete_collection(call: Call<'_>) -> Result<Response, ApiError> {
    let list_query = list_query(&call.target, call.query)?;
    let rt = &call.target.rt;
    let deleted = call.shared.with_state(|s| -> Result<Vec<Value>, ApiError> {
        let (items, _, _) = s.list(
            rt,
            &ListQuery {
                limit: None,
                continue_token: None,
                ..list_query
            },
        )?;
        let mut deleted = Vec::new();
        for item in items {
            let ns = item["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
            let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
            match s.delete(rt, &ns, &name, &json!({}), call.dry_run)? {
                DeleteOutcome::Marked(o) | DeleteOutcome::Removed(o) => deleted.push(o),
            }
        }
        Ok(deleted)
    })?;
    let list = json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": {}, "items": deleted});
    Ok(json_response(StatusCode::OK, &list))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;

    use super::super::{ServerConfig, handle};
    use super::*;
    use crate::sandbox::kube::store::{State, StoreOptions};

    fn server() -> Arc<Shared> {
        let config = ServerConfig {
            minor_version: "35".into(),
            bookmark_interval: Duration::from_secs(60),
        };
        let shared = Arc::new(Shared::new(State::new(StoreOptions::default()), config));
        shared.with_state(|s| {
            let namespaces = s.resource("", "v1", "namespaces").unwrap();
            s.put(&namespaces, "", json!({"metadata": {"name": "d"}})).unwrap();
        });
        shared
    }

    async fn call(shared: &Arc<Shared>, method: &str, uri: &str, content_type: &str, body: Value) -> (u16, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(Body::from(if body.is_null() {
                Vec::new()
            } else {
                serde_json::to_vec(&body).unwrap()
            }))
            .unwrap();
        let response = handle(shared.clone(), request).await;
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    const SECRETS: &str = "/api/v1/namespaces/d/secrets";

    #[tokio::test]
    async fn each_verb_answers_as_the_api_server_does() {
        let shared = server();
        let json = "application/json";
        let (code, created) = call(
            &shared,
            "POST",
            SECRETS,
            json,
            json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
        )
        .await;
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["data"]["k"], json!("dg=="));
        let (code, _) = call(&shared, "GET", &format!("{SECRETS}/s"), json, Value::Null).await;
        assert_eq!(code, 200);
        let (code, list) = call(&shared, "GET", SECRETS, json, Value::Null).await;
        assert_eq!(
            (code, list["kind"].clone(), list["items"].as_array().map(Vec::len)),
            (200, json!("SecretList"), Some(1))
        );
        let (code, patched) = call(
            &shared,
            "PATCH",
            &format!("{SECRETS}/s"),
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .await;
        assert_eq!((code, patched["metadata"]["labels"]["a"].clone()), (200, json!("b")));
        let (code, _) = call(
            &shared,
            "PATCH",
            &format!("{SECRETS}/s?force=true"),
            "application/merge-patch+json",
            json!({}),
        )
        .await;
        assert_eq!(code, 422, "force is for apply only");
        let (code, _) = call(
            &shared,
            "PATCH",
            &format!("{SECRETS}/s"),
            "application/apply-patch+yaml",
            json!({}),
        )
        .await;
        assert_eq!(code, 422, "apply needs a fieldManager");
        let (code, _) = call(&shared, "PATCH", &format!("{SECRETS}/s"), "text/plain", json!({})).await;
        assert_eq!(code, 415);
        let (code, replaced) = call(
            &shared,
            "PUT",
            &format!("{SECRETS}/s"),
            json,
            json!({"metadata": {"name": "s"}, "stringData": {"k": "w"}}),
        )
        .await;
        assert_eq!((code, replaced["data"]["k"].clone()), (200, json!("dw==")));
        let (code, _) = call(&shared, "POST", &format!("{SECRETS}/s"), json, json!({})).await;
        assert_eq!(code, 405);
        let (code, gone) = call(&shared, "DELETE", &format!("{SECRETS}/s"), json, Value::Null).await;
        assert_eq!((code, gone["status"].clone()), (200, json!("Success")));
        let (code, _) = call(&shared, "GET", &format!("{SECRETS}/s"), json, Value::Null).await;
        assert_eq!(code, 404);
    }

    #[tokio::test]
    async fn collections_are_deleted_by_selector_and_unknown_paths_are_404() {
        let shared = server();
        for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
            let body = json!({"metadata": {"name": name, "labels": {"app": app}}});
            assert_eq!(call(&shared, "POST", SECRETS, "application/json", body).await.0, 201);
        }
        let (code, deleted) = call(
            &shared,
            "DELETE",
            &format!("{SECRETS}?labelSelector=app%3Dx"),
            "application/json",
            Value::Null,
        )
        .await;
        assert_eq!((code, deleted["items"].as_array().map(Vec::len)), (200, Some(2)));
        let (_, left) = call(&shared, "GET", SECRETS, "application/json", Value::Null).await;
        assert_eq!(left["items"][0]["metadata"]["name"], json!("c"));
        assert_eq!(
            call(
                &shared,
                "GET",
                "/apis/nope.example.com/v1/things",
                "application/json",
                Value::Null
            )
            .await
            .0,
            404
        );
        assert_eq!(
            call(
                &shared,
                "GET",
                &format!("{SECRETS}/c/scale"),
                "application/json",
                Value::Null
            )
            .await
            .0,
            404
        );
        assert_eq!(
            call(&shared, "GET", "/version", "application/json", Value::Null)
                .await
                .1["minor"],
            json!("35")
        );
    }
}

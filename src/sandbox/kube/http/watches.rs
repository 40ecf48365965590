//! Watches: cursors over the store's event log, with synthetic ADDED or replay from a resourceVersion, the
//! initial-events-end bookmark, periodic bookmarks, selector transitions, in-stream 410s, and the test
//! controls (close, abort, bookmark, error, paused or delayed delivery).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Shared;
use super::request::{Query, Target, list_query, shown};
use crate::sandbox::kube::error::ApiError;
use crate::sandbox::kube::resources::ResourceType;
use crate::sandbox::kube::store::{ChangeType, LogEntry, State};

/// How open watches deliver events (test control of R72f).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchDelivery {
    /// Hold events back until unpaused (they are then delivered together, in order).
    pub paused: bool,
    /// Wait this long before delivering each batch of changes.
    pub delay: Duration,
}

/// Commands to every open watch.
#[derive(Clone, Debug)]
pub enum WatchControl {
    /// End every stream cleanly; clients resume from their last resourceVersion.
    Close,
    /// Break every stream mid-response.
    Abort,
    /// Send a BOOKMARK now.
    Bookmark,
    /// Send this ERROR Status event, then close.
    Error(Value),
}

/// One line of a watch stream.
pub(super) fn watch_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": event_type, "object": object})).expect("JSON serializes");
    line.push(b'\n');
    Bytes::from(line)
}

/// A BOOKMARK at `revision` (the initial-events-end one when `initial_end`).
pub(super) fn bookmark(rt: &ResourceType, revision: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    watch_line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}),
    )
}

/// The Status of a watch that asked for a compacted revision.
pub(super) fn expired(requested: u64, current: u64) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {requested} ({current})"), "reason": "Expired", "code": 410})
}

/// A piece of a streamed body.
pub(super) type Chunk = Result<Bytes, std::io::Error>;

/// Starts a watch; its lines stream from a task that follows the store's revisions.
pub(super) fn watch_response(
    shared: Arc<Shared>,
    target: Target,
    query: &Query,
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let filter = list_query(&target, query)?;
    let allow_bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    if send_initial && (query.get("resourceVersionMatch") != Some("NotOlderThan") || !allow_bookmarks) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true",
        ));
    }
    let requested: Option<u64> = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .and_then(|v| v.parse().ok());
    let timeout = Duration::from_secs(query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800));
    let (tx, rx) = mpsc::channel::<Chunk>(1024);
    let rt = target.rt.clone();
    tokio::spawn(async move {
        let mut revisions = shared.revisions.subscribe();
        let mut control = shared.watch_control.subscribe();
        let matches = |o: &Value| {
            o["metadata"]["namespace"]
                .as_str()
                .is_none_or(|ns| filter.namespace.as_ref().is_none_or(|f| f == ns))
                && filter.labels.matches(o)
                && filter.fields.matches(o)
        };
        // The initial part: synthetic ADDED for a fresh watch, or a replay from the log.
        let (lines, ended, mut last) = {
            let state = shared.state.lock().expect("store lock");
            let mut lines = Vec::new();
            let mut ended = false;
            match requested {
                None => {
                    let items = state.objects_of(&rt).into_iter().filter(|o| matches(o));
                    lines.extend(items.map(|o| watch_line("ADDED", &shown(metadata_only, o))));
                    if send_initial {
                        lines.push(bookmark(&rt, state.revision, true));
                    }
                }
                Some(rv) => match state.changes_since(rv) {
                    None => {
                        lines.push(watch_line("ERROR", &expired(rv, state.revision)));
                        ended = true;
                    }
                    Some(entries) => lines.extend(translate(&state, &rt, &entries, &matches, metadata_only)),
                },
            }
            (lines, ended, state.revision)
        };
        if !lines.is_empty() && !wait_for_delivery(&shared, &tx).await {
            return;
        }
        for line in lines {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(shared.config.bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if allow_bookmarks { let _ = tx.send(Ok(bookmark(&rt, last, false))).await; }
                    return;
                }
                _ = ticker.tick(), if allow_bookmarks => {
                    if tx.send(Ok(bookmark(&rt, last, false))).await.is_err() { return; }
                }
                command = control.recv() => match command {
                    Ok(WatchControl::Close) | Err(broadcast::error::RecvError::Closed) => return,
                    Ok(WatchControl::Abort) => { let _ = tx.send(Err(std::io::Error::other("connection aborted by the sandbox"))).await; return; }
                    Ok(WatchControl::Bookmark) => { if tx.send(Ok(bookmark(&rt, last, false))).await.is_err() { return; } }
                    Ok(WatchControl::Error(status)) => { let _ = tx.send(Ok(watch_line("ERROR", &status))).await; return; }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                },
                changed = revisions.changed() => {
                    if changed.is_err() { return; }
                    if !wait_for_delivery(&shared, &tx).await { return; }
                    let batch = {
                        let state = shared.state.lock().expect("store lock");
                        let batch = match state.changes_since(last) {
                            None => Err(watch_line("ERROR", &expired(last, state.revision))),
                            Some(entries) => Ok(translate(&state, &rt, &entries, &matches, metadata_only)),
                        };
                        last = state.revision;
                        batch
                    };
                    match batch {
                        Ok(lines) => for line in lines { if tx.send(Ok(line)).await.is_err() { return; } },
                        Err(error) => { let _ = tx.send(Ok(error)).await; return; }
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Holds a watch while delivery is paused, then applies the configured delay; false when the client left.
pub(super) async fn wait_for_delivery(shared: &Shared, tx: &mpsc::Sender<Chunk>) -> bool {
    let mut delivery = shared.watch_delivery.subscribe();
    loop {
        let current = *delivery.borrow_and_update();
        if !current.paused {
            if !current.delay.is_zero() {
                tokio::time::sleep(current.delay).await;
            }
            return !tx.is_closed();
        }
        tokio::select! {
            changed = delivery.changed() => if changed.is_err() { return false; },
            _ = tx.closed() => return false,
        }
    }
}

/// Turns log entries into watch lines for one watcher, with selector transitions as ADDED/DELETED.
pub(super) fn translate(
    state: &State,
    rt: &ResourceType,
    entries: &[LogEntry],
    matches: &impl Fn(&Value) -> bool,
    metadata_only: bool,
) -> Vec<Bytes> {
    entries
        .iter()
        .filter(|e| e.group == rt.group && e.plural == rt.plural)
        .filter_map(|e| {
            let now = matches(&e.object);
            let before = e.previous.as_deref().is_some_and(matches);
            let event = match e.change {
                ChangeType::Added if now => "ADDED",
                ChangeType::Modified if now && before => "MODIFIED",
                ChangeType::Modified if now => "ADDED",
                ChangeType::Modified if before => "DELETED",
                ChangeType::Deleted if now => "DELETED",
                _ => return None,
            };
            Some(watch_line(
                event,
                &shown(metadata_only, state.at_version(rt, &e.object)),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::kube::store::StoreOptions;

    fn line(bytes: &Bytes) -> Value {
        assert!(bytes.ends_with(b"\n"));
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn lines_bookmarks_and_expiry_are_what_client_go_reads() {
        let added = line(&watch_line("ADDED", &json!({"metadata": {"name": "a"}})));
        assert_eq!(added["type"], json!("ADDED"));
        let state = State::new(StoreOptions::default());
        let secrets = state.resource("", "v1", "secrets").unwrap();
        let end = line(&bookmark(&secrets, 42, true));
        assert_eq!(end["type"], json!("BOOKMARK"));
        assert_eq!(end["object"]["metadata"]["resourceVersion"], json!("42"));
        assert_eq!(
            end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            json!("true")
        );
        assert!(
            line(&bookmark(&secrets, 42, false))["object"]["metadata"]
                .get("annotations")
                .is_none()
        );
        let gone = expired(3, 9);
        assert_eq!(
            (gone["code"].clone(), gone["reason"].clone()),
            (json!(410), json!("Expired"))
        );
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let mut state = State::new(StoreOptions::default());
        let secrets = state.resource("", "v1", "secrets").unwrap();
        state
            .put(
                &state.resource("", "v1", "namespaces").unwrap(),
                "",
                json!({"metadata": {"name": "d"}}),
            )
            .unwrap();
        let start = state.revision;
        state
            .put(
                &secrets,
                "d",
                json!({"metadata": {"name": "s", "labels": {"app": "x"}}, "stringData": {"k": "v"}}),
            )
            .unwrap();
        state
            .put(
                &secrets,
                "d",
                json!({"metadata": {"name": "s", "labels": {"app": "y"}}, "stringData": {"k": "v"}}),
            )
            .unwrap();
        state
            .put(
                &secrets,
                "d",
                json!({"metadata": {"name": "s", "labels": {"app": "x"}}, "stringData": {"k": "v"}}),
            )
            .unwrap();
        let entries = state.changes_since(start).unwrap();
        let app_x = |o: &Value| o["metadata"]["labels"]["app"] == "x";
        let types: Vec<Value> = translate(&state, &secrets, &entries, &app_x, false)
            .iter()
            .map(|l| line(l)["type"].clone())
            .collect();
        assert_eq!(types, vec![json!("ADDED"), json!("DELETED"), json!("ADDED")]);
    }
}

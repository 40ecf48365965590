//! API errors as the Kubernetes `Status` object.

use serde_json::{Value, json};

/// A failed API call, rendered as a `Status` body with the same HTTP code.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`, e.g. NotFound, AlreadyExists, Conflict, Invalid.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// `Status.details`.
    pub details: Value,
    /// Seconds a client should wait before retrying (429), sent as `Retry-After` too.
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: json!({}),
            retry_after_seconds: None,
        }
    }

    /// 404 for a named object of a resource.
    pub fn not_found(qualified_plural: &str, group: &str, plural: &str, name: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("{qualified_plural} \"{name}\" not found"));
        e.details = json!({"name": name, "group": group, "kind": plural});
        e
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 Invalid with field causes.
    pub fn invalid(kind: &str, name: &str, group: &str, causes: Vec<Value>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                let field = c["field"].as_str().unwrap_or_default();
                let message = c["message"].as_str().unwrap_or_default();
                if field.is_empty() {
                    message.to_string()
                } else {
                    format!("{field}: {message}")
                }
            })
            .collect();
        let text = if summary.len() == 1 {
            summary[0].clone()
        } else {
            format!("[{}]", summary.join(", "))
        };
        let mut e = Self::new(422, "Invalid", format!("{kind}.{group} \"{name}\" is invalid: {text}"));
        if group.is_empty() {
            e.message = format!("{kind} \"{name}\" is invalid: {text}");
        }
        e.details = json!({"name": name, "group": group, "kind": kind, "causes": causes});
        e
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn conflict(qualified_plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified_plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut details = self.details.clone();
        if let Some(seconds) = self.retry_after_seconds {
            details["retryAfterSeconds"] = json!(seconds);
        }
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "details": details, "code": self.code,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

//! Helpers shared by the test modules.

use std::path::PathBuf;

use serde_json::Value;
use webhook_operator::sandbox::kube::schema::{self, Admitted, FieldError};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The openAPIV3Schema of the served version of the CRD for `kind`, as the API server would use it.
pub fn schema_for_kind(kind: &str) -> Value {
    let crd = webhook_operator::api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("schema serializes")
}

/// Admits `object` as the API server would for a create of its kind.
pub fn admit(object: Value) -> Result<Admitted, Vec<FieldError>> {
    let kind = object["kind"].as_str().expect("object has a kind").to_string();
    schema::admit(&schema::Schema::new(schema_for_kind(&kind)), object, None)
}

/// A tool the tests drive: `$env`, or `.tools/bin/<name>` from `scripts/fetch-tools`. Missing, the test
/// fails saying how to get it: a test that cannot run must not report a pass.
pub fn tool_binary(name: &str, env: &str) -> std::path::PathBuf {
    let path = std::env::var_os(env)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin").join(name));
    assert!(
        path.is_file(),
        "{name} not found at {}; run scripts/fetch-tools (scripts/test does), or set {env}",
        path.display()
    );
    path
}

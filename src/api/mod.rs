//! The custom resource types: the single source of the CRDs under `crds/`, and the parsing of what users
//! write on them beyond the schema (annotations, durations).

mod annotations;
mod common;
mod duration;
mod provider;
mod subscription;

pub use annotations::{Annotations, MAX_DRIFT_CHECK_INTERVAL, MIN_DRIFT_CHECK_INTERVAL, annotation};
pub use common::*;
pub use duration::{DurationError, MAX_DURATION, parse_go_duration};
pub use provider::*;
pub use subscription::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRDs of every kind this operator serves, in install order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        ClusterWebhookProvider::crd(),
        WebhookProvider::crd(),
        WebhookSubscription::crd(),
    ]
}

/// File name under `crds/` for a CRD.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("crd"))
}

/// Renders a CRD as the YAML document committed under `crds/`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(crd)
}

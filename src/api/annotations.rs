//! The annotations a user (or Argo CD) writes on a `WebhookSubscription`, and the ones the operator
//! writes itself, parsed once into [`Annotations`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::duration::parse_go_duration;

/// Annotation names (prefix [`super::ANNOTATION_PREFIX`]).
pub mod annotation {
    /// Stop all remote writes (deletion still runs).
    pub const PAUSED: &str = "webhook-operator.dev/paused";
    /// On-demand sync token.
    pub const RECONCILE_REQUESTED_AT: &str = "webhook-operator.dev/reconcile-requested-at";
    /// On-demand renewal token.
    pub const RENEW_REQUESTED_AT: &str = "webhook-operator.dev/renew-requested-at";
    /// The remote id: written after a create, or set by a user to import.
    pub const EXTERNAL_ID: &str = "webhook-operator.dev/external-id";
    /// Written before a create and cleared after: found alone, a create may have leaked.
    pub const CREATE_PENDING: &str = "webhook-operator.dev/create-pending";
    /// Per-object drift check interval.
    pub const DRIFT_CHECK_INTERVAL: &str = "webhook-operator.dev/drift-check-interval";
}

/// The operator's annotations on a subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `paused: "true"`.
    pub paused: bool,
    /// `reconcile-requested-at`.
    pub reconcile_requested: Option<String>,
    /// `renew-requested-at`.
    pub renew_requested: Option<String>,
    /// `external-id`.
    pub external_id: Option<String>,
    /// `create-pending`.
    pub create_pending: Option<String>,
    /// `drift-check-interval` (a Go duration), overriding the operator's flag for this object; a value
    /// that is not a duration is ignored.
    pub drift_check_interval: Option<Duration>,
}

impl Annotations {
    /// Reads the operator's annotations (empty values count as unset; unknown ones are ignored).
    pub fn parse(map: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| map.get(name).filter(|v| !v.is_empty()).cloned();
        Annotations {
            paused: get(annotation::PAUSED).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            reconcile_requested: get(annotation::RECONCILE_REQUESTED_AT),
            renew_requested: get(annotation::RENEW_REQUESTED_AT),
            external_id: get(annotation::EXTERNAL_ID),
            create_pending: get(annotation::CREATE_PENDING),
            drift_check_interval: get(annotation::DRIFT_CHECK_INTERVAL).and_then(|v| parse_go_duration(&v).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_operator_annotations() {
        let map = BTreeMap::from([
            (annotation::PAUSED.to_string(), "TRUE".to_string()),
            (annotation::EXTERNAL_ID.to_string(), "id-1".to_string()),
            (annotation::CREATE_PENDING.to_string(), String::new()),
            (annotation::DRIFT_CHECK_INTERVAL.to_string(), "90s".to_string()),
            ("webhook-operator.dev/unknown".to_string(), "x".to_string()),
        ]);
        let a = Annotations::parse(&map);
        assert!(a.paused);
        assert_eq!(a.external_id.as_deref(), Some("id-1"));
        assert_eq!(a.create_pending, None, "an empty value is unset");
        assert_eq!(a.drift_check_interval, Some(Duration::from_secs(90)));
        for bad in ["99999999999999999999h", "soon"] {
            let map = BTreeMap::from([(annotation::DRIFT_CHECK_INTERVAL.to_string(), bad.to_string())]);
            assert_eq!(Annotations::parse(&map).drift_check_interval, None, "{bad}");
        }
        assert!(annotation::PAUSED.starts_with(crate::api::ANNOTATION_PREFIX));
    }
}

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
    /// `drift-check-interval` (a Go duration), overriding the operator's flag for this object.
    pub drift_check_interval: Option<Duration>,
    /// What is wrong with the annotations, each naming the annotation and the fix (empty when nothing is).
    pub problems: Vec<String>,
}

/// The shortest per-object drift check interval: a tenant cannot make the operator poll the provider
/// more often than this.
pub const MIN_DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// The longest one (a year).
pub const MAX_DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(8760 * 3600);

impl Annotations {
    /// Reads the operator's annotations (empty values count as unset; unknown ones are ignored). A value
    /// that cannot be understood is a problem, not a default: `paused: "yes"` must not resume writes.
    pub fn parse(map: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| map.get(name).filter(|v| !v.is_empty()).cloned();
        let mut problems = Vec::new();
        let paused = match get(annotation::PAUSED) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                problems.push(format!(
                    "annotation {} is {v:?}; write \"true\" to pause, or \"false\" (or remove it) to resume",
                    annotation::PAUSED
                ));
                // Until it is fixed, nothing is written remotely either way.
                true
            }
        };
        let drift_check_interval = get(annotation::DRIFT_CHECK_INTERVAL).and_then(|v| {
            let fix = format!(
                "use a duration between {}s and {}h, such as 30m, or remove it",
                MIN_DRIFT_CHECK_INTERVAL.as_secs(),
                MAX_DRIFT_CHECK_INTERVAL.as_secs() / 3600
            );
            match parse_go_duration(&v) {
                Ok(d) if (MIN_DRIFT_CHECK_INTERVAL..=MAX_DRIFT_CHECK_INTERVAL).contains(&d) => Some(d),
                Ok(_) => {
                    problems.push(format!(
                        "annotation {} is {v:?}, out of range; {fix}",
                        annotation::DRIFT_CHECK_INTERVAL
                    ));
                    None
                }
                Err(e) => {
                    problems.push(format!("annotation {}: {e}; {fix}", annotation::DRIFT_CHECK_INTERVAL));
                    None
                }
            }
        });
        Annotations {
            paused,
            reconcile_requested: get(annotation::RECONCILE_REQUESTED_AT),
            renew_requested: get(annotation::RENEW_REQUESTED_AT),
            external_id: get(annotation::EXTERNAL_ID),
            create_pending: get(annotation::CREATE_PENDING),
            drift_check_interval,
            problems,
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
        assert!(a.problems.is_empty());
        for bad in ["99999999999999999999h", "soon", "-5m", "1s", "9000h"] {
            let map = BTreeMap::from([(annotation::DRIFT_CHECK_INTERVAL.to_string(), bad.to_string())]);
            let parsed = Annotations::parse(&map);
            assert_eq!(parsed.drift_check_interval, None, "{bad}");
            assert_eq!(parsed.problems.len(), 1, "{bad}");
            assert!(
                parsed.problems[0].contains(annotation::DRIFT_CHECK_INTERVAL),
                "{parsed:?}"
            );
            assert!(parsed.problems[0].contains("between 10s and 8760h"), "{parsed:?}");
        }
        let yes = BTreeMap::from([(annotation::PAUSED.to_string(), "yes".to_string())]);
        let parsed = Annotations::parse(&yes);
        assert!(parsed.paused, "an unclear pause still holds remote writes");
        assert!(
            parsed.problems[0].contains("is \"yes\"; write \"true\" to pause"),
            "{parsed:?}"
        );
        let no = BTreeMap::from([(annotation::PAUSED.to_string(), "False".to_string())]);
        assert!(!Annotations::parse(&no).paused && Annotations::parse(&no).problems.is_empty());
        assert!(annotation::PAUSED.starts_with(crate::api::ANNOTATION_PREFIX));
    }

    #[test]
    fn any_annotation_values_parse_or_are_reported() {
        let mut g = crate::fuzz::Gen::new(2);
        let names = [
            annotation::PAUSED,
            annotation::DRIFT_CHECK_INTERVAL,
            annotation::EXTERNAL_ID,
            annotation::CREATE_PENDING,
            annotation::RECONCILE_REQUESTED_AT,
            annotation::RENEW_REQUESTED_AT,
        ];
        let pieces = ["true", "false", "TRUE", "yes", "1", "5m", "h", "9", "-", " ", ""];
        for _ in 0..crate::fuzz::CASES {
            let map: BTreeMap<String, String> = (0..3)
                .map(|_| (g.pick(&names).to_string(), g.text(&pieces, 4)))
                .collect();
            let parsed = Annotations::parse(&map);
            if let Some(d) = parsed.drift_check_interval {
                assert!((MIN_DRIFT_CHECK_INTERVAL..=MAX_DRIFT_CHECK_INTERVAL).contains(&d));
            }
            // An unclear pause is never taken as "resume".
            let paused = map.get(annotation::PAUSED).filter(|v| !v.is_empty());
            if paused.is_some_and(|v| !v.eq_ignore_ascii_case("false")) {
                assert!(parsed.paused, "{map:?}");
            }
        }
    }
}

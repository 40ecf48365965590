//! Fault rules: tests make chosen requests fail, slow down or drop their connection.

use std::time::Duration;

use axum::http::Method;

use super::Shared;
use crate::sandbox::kube::error::ApiError;

/// What a fault rule does to a matching request.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer with this error instead of serving the request.
    Fail(ApiError),
    /// Wait this long, then serve the request.
    Delay(Duration),
    /// Break the connection: the response starts, then its body fails.
    Drop,
}

/// A request fault. A request matches when every given criterion holds; the first `skip` matches pass
/// untouched (so "the Nth call" is `skip(N - 1)`), then each match gets the action with `probability`,
/// `remaining` times.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// Methods to match (empty: any).
    pub methods: Vec<Method>,
    /// A regex the path must match, or any.
    pub path: Option<regex::Regex>,
    /// A fragment the raw query must contain, or any.
    pub query_contains: Option<String>,
    /// Matching requests still to let through before acting.
    pub skip: u32,
    /// Chance in [0, 1] that a match is acted on.
    pub probability: f64,
    /// How many more requests it acts on (None: forever).
    pub remaining: Option<u32>,
    /// What to do.
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule acting on every request, forever; narrow it with the builder methods.
    pub fn new(action: FaultAction) -> Self {
        FaultRule {
            methods: Vec::new(),
            path: None,
            query_contains: None,
            skip: 0,
            probability: 1.0,
            remaining: None,
            action,
        }
    }

    /// Only these methods.
    pub fn methods(mut self, methods: &[Method]) -> Self {
        self.methods = methods.to_vec();
        self
    }

    /// Only writes (POST, PUT, PATCH, DELETE).
    pub fn writes(self) -> Self {
        self.methods(&[Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
    }

    /// Only paths matching this regex (panics on an invalid one: test code).
    pub fn path(mut self, pattern: &str) -> Self {
        self.path = Some(regex::Regex::new(pattern).expect("fault path regex"));
        self
    }

    /// Only queries containing this fragment.
    pub fn query(mut self, fragment: &str) -> Self {
        self.query_contains = Some(fragment.to_string());
        self
    }

    /// Let the first `n` matches through.
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Act on a match with this probability.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// Act `n` times, then retire.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }
}

/// The action of the first rule that matches a request, counting it against the rule.
pub(super) fn matching_fault(shared: &Shared, method: &Method, path: &str, query: &str) -> Option<FaultAction> {
    let mut faults = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
    take_matching(&mut faults, method, path, query)
}

/// [`matching_fault`] over a list of rules: skips count down, retired rules are removed.
fn take_matching(faults: &mut Vec<FaultRule>, method: &Method, path: &str, query: &str) -> Option<FaultAction> {
    for index in 0..faults.len() {
        let rule = &mut faults[index];
        let matches = (rule.methods.is_empty() || rule.methods.contains(method))
            && rule.path.as_ref().is_none_or(|p| p.is_match(path))
            && rule.query_contains.as_deref().is_none_or(|q| query.contains(q));
        if !matches {
            continue;
        }
        if rule.skip > 0 {
            rule.skip -= 1;
            continue;
        }
        if rule.probability < 1.0 && fastrand::f64() >= rule.probability {
            continue;
        }
        let action = rule.action.clone();
        if let Some(remaining) = rule.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                faults.remove(index);
            }
        }
        return Some(action);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> FaultAction {
        FaultAction::Fail(ApiError::new(500, "InternalError", "injected"))
    }

    #[test]
    fn rules_match_by_method_path_and_query_skip_then_retire() {
        let mut rules = vec![
            FaultRule::new(fail())
                .writes()
                .path("/secrets/s$")
                .query("dryRun")
                .skip(1)
                .times(2),
        ];
        let take = |rules: &mut Vec<FaultRule>, method: Method, path: &str, query: &str| {
            take_matching(rules, &method, path, query).is_some()
        };
        assert!(
            !take(&mut rules, Method::GET, "/api/v1/namespaces/d/secrets/s", "dryRun=All"),
            "reads pass"
        );
        assert!(
            !take(&mut rules, Method::PUT, "/api/v1/namespaces/d/secrets/t", "dryRun=All"),
            "other paths pass"
        );
        assert!(
            !take(&mut rules, Method::PUT, "/api/v1/namespaces/d/secrets/s", ""),
            "other queries pass"
        );
        assert!(
            !take(&mut rules, Method::PUT, "/api/v1/namespaces/d/secrets/s", "dryRun=All"),
            "skipped once"
        );
        assert!(take(
            &mut rules,
            Method::PUT,
            "/api/v1/namespaces/d/secrets/s",
            "dryRun=All"
        ));
        assert!(take(
            &mut rules,
            Method::PATCH,
            "/api/v1/namespaces/d/secrets/s",
            "dryRun=All"
        ));
        assert!(rules.is_empty(), "retired after two");
    }

    #[test]
    fn a_rule_with_probability_zero_never_acts() {
        let mut rules = vec![FaultRule::new(FaultAction::Drop).probability(0.0)];
        for _ in 0..100 {
            assert!(take_matching(&mut rules, &Method::GET, "/", "").is_none());
        }
        assert_eq!(rules.len(), 1);
    }
}

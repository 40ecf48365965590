//! Status bookkeeping: conditions that keep their `lastTransitionTime` unless their status flips, and
//! writes by server-side apply only when something changed.

use jiff::Timestamp;

use super::reason::Reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets a condition, keeping `lastTransitionTime` while the status stays the same.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: Reason,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        // Whole seconds, as the API server stores a Time: the status kept in memory then equals the one
        // the watch shows back.
        .unwrap_or_else(|| Time(Timestamp::from_second(now.as_second()).unwrap_or(now)));
    let condition = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.as_str().to_string(),
        message: message.to_string(),
        observed_generation: Some(generation),
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// `(status, reason)` of a condition.
pub fn condition_state(conditions: &[Condition], type_: &str) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// RFC 3339 with second precision, as Kubernetes writes times.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let mut conditions = Vec::new();
        set_condition(&mut conditions, "Ready", true, Reason::Available, "ok", 1, t0);
        set_condition(&mut conditions, "Ready", true, Reason::Available, "still ok", 2, t1);
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(&mut conditions, "Ready", false, Reason::Unavailable, "down", 2, t1);
        assert_eq!(conditions[0].last_transition_time, Time(t1));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn a_transition_time_is_whole_seconds_as_the_api_server_keeps_it() {
        let mut conditions = Vec::new();
        let now: Timestamp = "2026-01-01T00:00:07.987654321Z".parse().unwrap();
        set_condition(&mut conditions, "Ready", true, Reason::Available, "ok", 1, now);
        let stored: Condition = serde_json::from_value(serde_json::to_value(&conditions[0]).unwrap()).unwrap();
        assert_eq!(stored, conditions[0], "the watch shows back what was written");
        assert_eq!(
            conditions[0].last_transition_time,
            Time("2026-01-01T00:00:07Z".parse().unwrap())
        );
    }
}

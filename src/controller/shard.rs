//! Sharding: which subscriptions a replica set reconciles. A shard selects on the
//! `webhook-operator.dev/shard` label; a replica without a shard takes exactly the subscriptions without
//! that label. So shards and unsharded replicas never overlap, even when one is started without its
//! selector by mistake, and moving a subscription between shards is a label change.

/// The label that assigns a subscription to a shard.
pub const SHARD_LABEL: &str = "webhook-operator.dev/shard";

/// What a replica reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The shard names it takes; empty: the subscriptions without a shard label.
    names: Vec<String>,
}

/// A label value as Kubernetes allows it: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn is_label_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl Shard {
    /// The replica that takes every subscription without a shard label.
    pub fn unsharded() -> Self {
        Shard { names: Vec::new() }
    }

    /// Parses `--shard-selector`: `webhook-operator.dev/shard=NAME` (or `==`), or
    /// `webhook-operator.dev/shard in (A,B)`. Errors say what is accepted and why.
    pub fn parse(selector: &str) -> Result<Self, String> {
        let refuse = || {
            format!(
                "--shard-selector \"{selector}\" is not a shard selector: use {SHARD_LABEL}=NAME or {SHARD_LABEL} in (A,B) \
                 (label values: letters, digits, '-', '_', '.'); shards select on that one label so that a replica without a shard, \
                 which takes every subscription without it, never overlaps one"
            )
        };
        let rest = selector
            .trim()
            .strip_prefix(SHARD_LABEL)
            .ok_or_else(refuse)?
            .trim_start();
        let names: Vec<String> = if let Some(value) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            vec![value.trim().to_string()]
        } else if let Some(set) = rest.strip_prefix("in") {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(refuse)?;
            inner.split(',').map(|v| v.trim().to_string()).collect()
        } else {
            return Err(refuse());
        };
        if names.iter().any(|n| !is_label_value(n)) {
            return Err(refuse());
        }
        let mut names = names;
        names.sort();
        names.dedup();
        Ok(Shard { names })
    }

    /// The label selector of the subscription watch.
    pub fn label_selector(&self) -> String {
        match self.names.as_slice() {
            [] => format!("!{SHARD_LABEL}"),
            [one] => format!("{SHARD_LABEL}={one}"),
            many => format!("{SHARD_LABEL} in ({})", many.join(",")),
        }
    }

    /// The subscriptions this replica does not reconcile: the other shards' and, for a shard, those
    /// without a shard label (`notin` matches an object without the label). Their claims must still be
    /// seen, or a copy placed in another shard could take over a subscription.
    pub fn others_selector(&self) -> String {
        match self.names.as_slice() {
            [] => SHARD_LABEL.to_string(),
            names => format!("{SHARD_LABEL} notin ({})", names.join(",")),
        }
    }

    /// The leader Lease of this shard: `base` for unsharded replicas, `base-shard-NAME[-NAME...]` for a
    /// shard (cut to the 63 characters a DNS label allows, with a hash when cut).
    pub fn lease_name(&self, base: &str) -> String {
        if self.names.is_empty() {
            return base.to_string();
        }
        let wanted = format!("{base}-shard-{}", self.names.join("-"))
            .to_lowercase()
            .replace(['_', '.'], "-");
        if wanted.len() <= 63 {
            return wanted;
        }
        let hash = crate::providers::fingerprint_bytes(wanted.as_bytes());
        let short: String = hash.chars().filter(char::is_ascii_alphanumeric).take(10).collect();
        format!("{}-{short}", &wanted[..52].trim_end_matches('-'))
    }

    /// Whether this is a shard (not the unsharded replica set).
    pub fn is_shard(&self) -> bool {
        !self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_selectors_name_the_shard_label() {
        let a = Shard::parse("webhook-operator.dev/shard=a").unwrap();
        assert_eq!(a.label_selector(), "webhook-operator.dev/shard=a");
        assert_eq!(a.lease_name("webhook-operator"), "webhook-operator-shard-a");
        let several = Shard::parse("webhook-operator.dev/shard in (eu, us ,eu)").unwrap();
        assert_eq!(several.label_selector(), "webhook-operator.dev/shard in (eu,us)");
        assert_eq!(several.lease_name("webhook-operator"), "webhook-operator-shard-eu-us");
        assert_eq!(
            Shard::parse("webhook-operator.dev/shard==b").unwrap().label_selector(),
            "webhook-operator.dev/shard=b"
        );
        assert_eq!(several.others_selector(), "webhook-operator.dev/shard notin (eu,us)");
        let none = Shard::unsharded();
        assert_eq!(none.label_selector(), "!webhook-operator.dev/shard");
        assert_eq!(none.others_selector(), "webhook-operator.dev/shard");
        assert_eq!(none.lease_name("webhook-operator"), "webhook-operator");
        for bad in [
            "team=a",
            "webhook-operator.dev/shard",
            "webhook-operator.dev/shard!=a",
            "webhook-operator.dev/shard=",
            "webhook-operator.dev/shard in (a",
            "webhook-operator.dev/shard=a b",
        ] {
            let error = Shard::parse(bad).unwrap_err();
            assert!(error.contains("webhook-operator.dev/shard=NAME"), "{bad}: {error}");
        }
        let long = Shard::parse(&format!("webhook-operator.dev/shard={}", "x".repeat(60))).unwrap();
        let lease = long.lease_name("webhook-operator");
        assert!(
            lease.len() <= 63 && lease.starts_with("webhook-operator-shard-xxx"),
            "{lease}"
        );
    }
}

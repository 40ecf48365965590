//! A provider's `allowedEndpoints`: where its subscriptions may deliver. Decided before any remote call,
//! so a tenant of a shared ClusterWebhookProvider cannot point the account's events elsewhere.

use crate::api::AllowedEndpoint;

/// Whether `host` matches the pattern: equal, or for `*.domain` a subdomain (at any depth) of it.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == host,
    }
}

/// Whether `path` is `prefix` or under it, on a segment boundary.
fn path_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// How an entry reads in messages: `host/prefix`, or `host` for every path.
fn shown(entry: &AllowedEndpoint) -> String {
    match &entry.path_prefix {
        Some(prefix) => format!("{}{prefix}", entry.host),
        None => entry.host.clone(),
    }
}

/// `Err(message)` when `endpoint` matches none of `allowed` (an empty list allows every endpoint). The
/// endpoint is compared as the URL parser normalizes it (lower-case host, `..` segments resolved), so
/// `https://HOOKS.example.com/team-a/../team-b` is the `/team-b` path it is.
pub fn check_endpoint(allowed: &[AllowedEndpoint], endpoint: &str, provider: &str) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    let permitted = reqwest::Url::parse(endpoint).ok().is_some_and(|url| {
        let host = url.host_str().unwrap_or_default();
        allowed.iter().any(|entry| {
            host_matches(&entry.host, host) && entry.path_prefix.as_deref().is_none_or(|p| path_matches(p, url.path()))
        })
    });
    if permitted {
        return Ok(());
    }
    let patterns: Vec<String> = allowed.iter().map(shown).collect();
    Err(format!(
        "spec.endpoint {endpoint} is not allowed by {provider}: its spec.allowedEndpoints admit {}; use an endpoint under one of them, or ask the provider's owner to allow this one",
        patterns.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, prefix: Option<&str>) -> AllowedEndpoint {
        AllowedEndpoint {
            host: host.into(),
            path_prefix: prefix.map(str::to_string),
        }
    }

    #[test]
    fn endpoints_match_host_and_path_patterns() {
        let allowed = [
            entry("hooks.example.com", Some("/team-a")),
            entry("*.internal.example.com", None),
        ];
        let check = |endpoint: &str| check_endpoint(&allowed, endpoint, "ClusterWebhookProvider \"shared\"");
        for ok in [
            "https://hooks.example.com/team-a",
            "https://hooks.example.com/team-a/events",
            "https://HOOKS.example.com/team-a/x?y=1",
            "https://a.internal.example.com/anything",
            "https://a.b.internal.example.com/",
            "https://hooks.example.com:8443/team-a/events",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for refused in [
            "https://hooks.example.com/team-ab",
            "https://hooks.example.com/team-b/events",
            "https://hooks.example.com/team-a/../team-b",
            "https://internal.example.com/",
            "https://evil-internal.example.com/",
            "https://hooks.example.com.evil.test/team-a",
            "not a url",
        ] {
            let message = check(refused).unwrap_err();
            assert!(
                message.contains("not allowed by ClusterWebhookProvider \"shared\"")
                    && message.contains("hooks.example.com/team-a, *.internal.example.com"),
                "{refused}: {message}"
            );
        }
        assert!(
            check_endpoint(&[], "https://anywhere.test/", "p").is_ok(),
            "no list: anything"
        );
        assert!(check_endpoint(&[entry("h.test", Some("/"))], "https://h.test/x", "p").is_ok());
    }
}

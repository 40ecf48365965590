//! Where credentials may go. A provider object names the provider's API and token URLs (derived from
//! `customerId`/`region`/defaults, or overridden by `baseUrl`/`tokenUrl`), and the operator sends that
//! account's client id and secret there. Whoever may write a provider object must not be able to send them
//! anywhere else: an override must be https on the provider's own domain, unless the operator's installer
//! allowed its origin (`run --allow-override-origin`). The sandbox, instead of rewriting the user's
//! objects, redirects the providers' own hosts to its simulators here, at the operator level.

use reqwest::Url;

use super::error::ConfigError;
use crate::providers::ProviderType;

/// A URL's origin: scheme, host and port (`https://api.example.com:443`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    /// A host, or `*.domain` for every host under `domain`.
    host: String,
    port: Option<u16>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

impl Origin {
    /// Parses `scheme://host[:port]` (`*.domain` allowed as the host of a redirect's source).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not an origin such as https://api.example.com"))?;
        if scheme != "https" && scheme != "http" {
            return Err(format!("{text:?}: the scheme must be https or http"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(format!("{text:?} must be scheme://host[:port], without a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => (
                host,
                Some(
                    port.parse::<u16>()
                        .map_err(|_| format!("{text:?}: {port:?} is not a port"))?,
                ),
            ),
            _ => (rest, None),
        };
        Ok(Origin {
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }

    /// Whether `url` is at this origin (a `*.domain` host matches every host under the domain).
    fn matches(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        };
        url.scheme() == self.scheme && host_ok && url.port_or_known_default() == Some(self.port_or_default())
    }
}

/// The operator-wide rules for provider URLs.
#[derive(Clone, Debug, Default)]
pub struct EndpointPolicy {
    /// Origins an override may name besides the provider's own https hosts (plain http included).
    pub allowed_origins: Vec<Origin>,
    /// The sandbox's redirects of providers' own hosts (source may be `*.domain`) to its simulators.
    pub redirects: Vec<(Origin, Origin)>,
}

/// The domains each provider's API and token endpoints live under.
pub fn own_domains(provider: ProviderType) -> &'static [&'static str] {
    match provider {
        ProviderType::Avaya => &["avayacloud.com"],
        ProviderType::Vonage => &["newvoicemedia.com", "vonage.com"],
        ProviderType::Authvia => &["authvia.com"],
    }
}

impl EndpointPolicy {
    /// The URL to call for `field` of a provider object: checked when the user overrode it, then
    /// redirected when the operator says so. `field` names it in messages (`spec.avaya.baseUrl`).
    pub fn resolve(
        &self,
        provider: ProviderType,
        field: &str,
        url: &str,
        overridden: bool,
    ) -> Result<String, ConfigError> {
        let parsed =
            Url::parse(url).map_err(|_| ConfigError::provider(format!("{field} {url:?} is not an absolute URL")))?;
        if overridden && !self.allowed(provider, &parsed) {
            let domains: Vec<String> = own_domains(provider).iter().map(|d| format!("*.{d}")).collect();
            return Err(ConfigError::provider(format!(
                "{field} {url:?} is refused: the operator sends this account's credentials only over https to {}'s own hosts ({}); use an https URL there, or ask the operator's installer to allow its origin (run --allow-override-origin, chart value allowedOverrideOrigins)",
                provider.as_str(),
                domains.join(", ")
            )));
        }
        Ok(self.redirect(&parsed).unwrap_or_else(|| url.to_string()))
    }

    fn allowed(&self, provider: ProviderType, url: &Url) -> bool {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let own = url.scheme() == "https"
            && url.username().is_empty()
            && own_domains(provider)
                .iter()
                .any(|d| host == *d || host.ends_with(&format!(".{d}")));
        own || self.allowed_origins.iter().any(|o| o.matches(url))
    }

    fn redirect(&self, url: &Url) -> Option<String> {
        let (_, to) = self.redirects.iter().find(|(from, _)| from.matches(url))?;
        let port = to.port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        Some(format!("{}://{}{port}{}{query}", to.scheme, to.host, url.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EndpointPolicy {
        EndpointPolicy {
            allowed_origins: vec![Origin::parse("http://127.0.0.1:9000").unwrap()],
            redirects: vec![(
                Origin::parse("https://*.avayacloud.com").unwrap(),
                Origin::parse("http://127.0.0.1:7000").unwrap(),
            )],
        }
    }

    #[test]
    fn overrides_go_only_to_the_providers_own_https_hosts_or_allowed_origins() {
        let p = policy();
        let field = "spec.vonage.baseUrl";
        let vonage = |url: &str| p.resolve(ProviderType::Vonage, field, url, true);
        assert!(vonage("https://emea.api.newvoicemedia.com/webhooks").is_ok());
        assert!(vonage("https://emea.cc.vonage.com/Auth/connect/token").is_ok());
        for refused in [
            "http://emea.api.newvoicemedia.com/webhooks",
            "https://evil.example.com/webhooks",
            "https://newvoicemedia.com.evil.example.com/x",
            "https://user@emea.api.newvoicemedia.com/webhooks",
            "http://127.0.0.1:9001/webhooks",
        ] {
            let err = vonage(refused).unwrap_err();
            assert!(err.message.contains("is refused"), "{refused}: {err}");
            assert!(err.message.contains("*.newvoicemedia.com, *.vonage.com"), "{err}");
            assert!(err.message.contains("--allow-override-origin"), "{err}");
        }
        assert_eq!(
            vonage("http://127.0.0.1:9000/webhooks").unwrap(),
            "http://127.0.0.1:9000/webhooks"
        );
        // Another provider's domain is not this one's.
        assert!(
            p.resolve(
                ProviderType::Authvia,
                "spec.authvia.baseUrl",
                "https://x.avayacloud.com/v3",
                true
            )
            .is_err()
        );
        // A URL the operator derived itself (customerId, region, default) is not checked.
        assert!(
            p.resolve(ProviderType::Vonage, field, "https://example.com/", false)
                .is_ok()
        );
        assert!(p.resolve(ProviderType::Vonage, field, "not a url", true).is_err());
    }

    #[test]
    fn the_sandbox_redirects_the_providers_own_hosts() {
        let p = policy();
        let url = "https://core.avaya1234.ec.avayacloud.com/api/events/v1/subscriptions?x=1";
        assert_eq!(
            p.resolve(ProviderType::Avaya, "spec.avaya", url, false).unwrap(),
            "http://127.0.0.1:7000/api/events/v1/subscriptions?x=1"
        );
        assert_eq!(
            p.resolve(
                ProviderType::Avaya,
                "spec.avaya.baseUrl",
                "https://core.x.ec.avayacloud.com/api/events/v1",
                true
            )
            .unwrap(),
            "http://127.0.0.1:7000/api/events/v1",
            "an override on the provider's own domain is redirected too"
        );
    }

    #[test]
    fn origins_parse_strictly() {
        assert!(Origin::parse("https://api.example.com").is_ok());
        assert!(Origin::parse("http://127.0.0.1:8080/").is_ok());
        assert!(Origin::parse("ftp://x").is_err());
        assert!(Origin::parse("https://x/path").is_err());
        assert!(Origin::parse("https://x:99999").is_err());
        assert!(Origin::parse("api.example.com").is_err());
    }

    #[test]
    fn any_url_is_judged_without_panicking_and_never_leaves_the_allowed_hosts() {
        let p = EndpointPolicy::default();
        let mut g = crate::fuzz::Gen::new(3);
        let pieces = [
            "https://",
            "http://",
            "api.authvia.com",
            "authvia.com",
            ".evil",
            "@",
            ":443",
            "/v3",
            "%2e",
            "[::1]",
            "\\",
            "#",
        ];
        for _ in 0..crate::fuzz::CASES {
            let url = g.text(&pieces, 6);
            let _ = Origin::parse(&url);
            if let Ok(resolved) = p.resolve(ProviderType::Authvia, "spec.authvia.baseUrl", &url, true) {
                let host = Url::parse(&resolved).unwrap().host_str().unwrap_or("").to_string();
                assert!(
                    resolved.starts_with("https://") && (host == "authvia.com" || host.ends_with(".authvia.com")),
                    "{url:?} → {resolved}"
                );
            }
        }
    }
}

//! Provider clients by account. A client holds the account's token cache and rate limiter, so it lives as
//! long as the account's settings and credentials stay the same, and is rebuilt when they change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::bindings;
use super::endpoints::EndpointPolicy;
use super::error::ConfigError;
use super::observe::ProviderSettings;
use crate::clock::SharedClock;
use crate::providers::http::RetryPolicy;
use crate::providers::{AccountConfig, WebhookApi, fingerprint_bytes};

/// A cached client and the fingerprint of the settings it was built from.
type Account = (String, Arc<dyn WebhookApi>);

/// Provider clients by account key.
pub struct ProviderRegistry {
    clients: Mutex<HashMap<String, Account>>,
    http: reqwest::Client,
    clock: SharedClock,
    retry: RetryPolicy,
    endpoints: EndpointPolicy,
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRegistry").finish_non_exhaustive()
    }
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new(http: reqwest::Client, clock: SharedClock, retry: RetryPolicy, endpoints: EndpointPolicy) -> Self {
        ProviderRegistry {
            clients: Mutex::new(HashMap::new()),
            http,
            clock,
            retry,
            endpoints,
        }
    }

    /// The client for `settings` with these credentials.
    pub fn client(
        &self,
        settings: &ProviderSettings,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<Arc<dyn WebhookApi>, ConfigError> {
        let block = settings.block()?;
        let identity = serde_json::to_vec(&json!({
            "avaya": settings.avaya, "vonage": settings.vonage, "authvia": settings.authvia,
            "rateLimit": settings.rate_limit, "clientId": client_id, "secret": client_secret.expose_secret(),
        }))
        .unwrap_or_default();
        let fingerprint = fingerprint_bytes(&identity);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((existing, client)) = clients.get(&settings.key)
            && *existing == fingerprint
        {
            return Ok(client.clone());
        }
        let (rps, burst) = settings
            .rate_limit
            .as_ref()
            .map(|r| {
                (
                    f64::from(r.requests_per_second.max(1)),
                    u32::try_from(r.burst.max(1)).unwrap_or(1),
                )
            })
            .unwrap_or((5.0, 10));
        let account = |base_url: String, token_url: String| AccountConfig {
            base_url,
            token_url,
            client_id: client_id.to_string(),
            client_secret: client_secret.clone(),
            requests_per_second: rps,
            burst,
            retry: self.retry,
            http: self.http.clone(),
            clock: self.clock.clone(),
        };
        let client = bindings::client(block, &settings.display, &self.endpoints, account)?;
        clients.insert(settings.key.clone(), (fingerprint, client.clone()));
        Ok(client)
    }
}

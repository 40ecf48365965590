//! Provider clients by account. A client holds the account's token cache and rate limiter, so it lives as
//! long as the account's settings and credentials stay the same, and is rebuilt when they change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::bindings;
use super::endpoints::EndpointPolicy;
use super::error::ConfigError;
use super::inventory::{Inventoried, Inventory};
use super::observe::ProviderSettings;
use crate::clock::SharedClock;
use crate::providers::http::{RateLimiter, RetryPolicy};
use crate::providers::{AccountConfig, WebhookApi, fingerprint_bytes};

/// A cached client and the fingerprint of the settings it was built from.
type Account = (String, Arc<Inventoried>);

/// Provider clients by account key.
pub struct ProviderRegistry {
    clients: Mutex<HashMap<String, Account>>,
    /// Inventories by account key, with the fingerprint of what identifies the account (where it is and
    /// whose it is: a new rate limit or client secret keeps the inventory, another base URL does not).
    inventories: Mutex<HashMap<String, (String, Arc<Inventory>)>>,
    /// Rate limiters by account key.
    limiters: Mutex<HashMap<String, Arc<RateLimiter>>>,
    /// How old an inventory's listing may be (the drift check interval).
    inventory_age: std::time::Duration,
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
    /// An empty registry whose inventories are listed again when older than `inventory_age`.
    pub fn new(
        http: reqwest::Client,
        clock: SharedClock,
        retry: RetryPolicy,
        endpoints: EndpointPolicy,
        inventory_age: std::time::Duration,
    ) -> Self {
        ProviderRegistry {
            clients: Mutex::new(HashMap::new()),
            inventories: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
            inventory_age,
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
    ) -> Result<Arc<Inventoried>, ConfigError> {
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
        // One limiter per account, kept across rebuilt clients: a new rateLimit applies to calls already
        // waiting, and a Retry-After pause to every client of the account.
        let limiter = self.limiter(&settings.key);
        limiter.set(rps, burst);
        let labels = settings.metric_labels();
        let account = |base_url: String, token_url: String| AccountConfig {
            base_url,
            token_url,
            client_id: client_id.to_string(),
            client_secret: client_secret.clone(),
            limiter: limiter.clone(),
            retry: self.retry,
            http: self.http.clone(),
            clock: self.clock.clone(),
            labels: labels.clone(),
        };
        let api: Arc<dyn WebhookApi> = bindings::client(block, &settings.display, &self.endpoints, account)?;
        let client =
            Arc::new(Inventoried::new(api, self.inventory(settings, client_id), limiter).with_labels(labels.clone()));
        clients.insert(settings.key.clone(), (fingerprint, client.clone()));
        Ok(client)
    }

    /// Forgets the clients, inventories and rate limiters of accounts not in `live` (deleted providers).
    pub fn retain_accounts(&self, live: &std::collections::HashSet<String>) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| live.contains(key));
        self.inventories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| live.contains(key));
        self.limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| live.contains(key));
    }

    /// The account's rate limiter.
    fn limiter(&self, key: &str) -> Arc<RateLimiter> {
        self.limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(RateLimiter::new(5.0, 10)))
            .clone()
    }

    /// The account's inventory: kept while the account stays the same place and identity.
    fn inventory(&self, settings: &ProviderSettings, client_id: &str) -> Arc<Inventory> {
        let identity = serde_json::to_vec(&json!({
            "avaya": settings.avaya, "vonage": settings.vonage, "authvia": settings.authvia, "clientId": client_id,
        }))
        .map(|bytes| fingerprint_bytes(&bytes))
        .unwrap_or_default();
        let mut inventories = self.inventories.lock().unwrap_or_else(|e| e.into_inner());
        match inventories.get(&settings.key) {
            Some((known, inventory)) if *known == identity => inventory.clone(),
            _ => {
                let inventory = Arc::new(Inventory::new(self.inventory_age, self.clock.clone()));
                inventories.insert(settings.key.clone(), (identity, inventory.clone()));
                inventory
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WebhookProvider;

    fn settings(name: &str) -> ProviderSettings {
        let provider: WebhookProvider = serde_json::from_value(json!({
            "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookProvider",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {"vonage": {"region": "emea"}, "credentialsSecretRef": {"name": "creds"},
                     "rateLimit": {"requestsPerSecond": 7, "burst": 3}},
        }))
        .unwrap();
        ProviderSettings::namespaced(&provider)
    }

    #[test]
    fn a_deleted_providers_client_inventory_and_limiter_are_forgotten() {
        let registry = ProviderRegistry::new(
            crate::providers::http::http_client(std::time::Duration::from_secs(1)),
            Arc::new(crate::clock::SystemClock),
            RetryPolicy::default(),
            EndpointPolicy::default(),
            std::time::Duration::from_secs(600),
        );
        let secret = SecretString::from("s3cret");
        let (kept, gone) = (settings("kept"), settings("gone"));
        let first = registry.client(&kept, "id", &secret).unwrap();
        registry.client(&gone, "id", &secret).unwrap();
        assert_eq!(registry.clients.lock().unwrap().len(), 2);
        assert_eq!(registry.limiter(&kept.key).rate(), 7.0, "the provider's rateLimit");
        registry.retain_accounts(&[kept.key.clone()].into_iter().collect());
        assert_eq!(registry.clients.lock().unwrap().len(), 1);
        assert_eq!(registry.limiters.lock().unwrap().len(), 1);
        assert_eq!(registry.inventories.lock().unwrap().len(), 1);
        assert!(
            Arc::ptr_eq(&first, &registry.client(&kept, "id", &secret).unwrap()),
            "the live account keeps its client"
        );
    }
}

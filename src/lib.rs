//! webhook-operator: keeps webhook subscriptions on Avaya Infinity, Vonage Contact Center and AuthVia
//! true to their `WebhookSubscription` resources.

pub mod api;
#[cfg(feature = "sandbox")]
pub mod sandbox;

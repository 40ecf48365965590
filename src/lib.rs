//! webhook-operator: keeps webhook subscriptions on Avaya Infinity, Vonage Contact Center and AuthVia
//! true to their `WebhookSubscription` resources.

pub mod api;
pub mod cli;
pub mod clock;
pub mod controller;
#[cfg(test)]
mod fuzz;
pub mod providers;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod telemetry;

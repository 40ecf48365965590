//! The emulated Kubernetes API.

pub mod error;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod store;

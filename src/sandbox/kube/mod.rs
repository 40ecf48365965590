//! The emulated Kubernetes API.

pub mod schema;

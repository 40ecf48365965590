//! The sandbox: an emulated Kubernetes API and provider simulators, so the real operator and real kubectl
//! run on one machine without a cluster or provider accounts. Behind the default `sandbox` feature.

pub mod kube;
pub mod providers;
pub mod receiver;
pub mod system;

//! The one integration-test binary: modules per area, sharing `support`.

mod argocd;
mod cli;
mod cluster;
mod costs;
mod crash;
mod crds;
mod emulator;
mod examples;
mod faults;
mod fidelity;
mod helm;
mod hostile;
mod invalid_objects;
mod kubectl;
mod leader;
mod operator;
mod providers;
mod rbac;
mod readme;
mod sandbox;
mod scale;
mod shards;
mod support;

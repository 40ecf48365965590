//! The one integration-test binary: modules per area, sharing `support`.

mod crds;
mod emulator;
mod examples;
mod invalid_objects;
mod kubectl;
mod operator;
mod providers;
mod sandbox;
mod scale;
mod support;

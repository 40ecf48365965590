# The operator image: a release build of the production feature set (no sandbox), dynamically linked
# against glibc, on distroless "cc" (glibc, CA certificates, a nonroot user, no shell).
#
# Bases are pinned by version. Pin them by digest as well where you build (for example
# `--build-arg RUST_IMAGE=rust:1.89.0-slim-bookworm@sha256:...`): digests cannot be resolved from this
# repository's offline CI, so none is written here rather than an unverified one.
ARG RUST_IMAGE=rust:1.89.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --bin webhook-operator

FROM ${RUNTIME_IMAGE}
COPY --from=build /src/target/release/webhook-operator /usr/local/bin/webhook-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/webhook-operator"]

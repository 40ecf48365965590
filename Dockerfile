# The operator image: a static-ish release build without the sandbox feature, on a distroless base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --bin webhook-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/webhook-operator /usr/local/bin/webhook-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/webhook-operator"]

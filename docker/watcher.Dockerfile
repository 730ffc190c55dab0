# Multi-stage: build with the Rust toolchain, run on distroless (glibc, no shell) as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p watcher --bin watcher

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/watcher /usr/local/bin/watcher
USER 65532:65532
ENV WATCHER_ADMIN_LISTEN=0.0.0.0:9090 WATCHER_SPOOL_DIR=/spool
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/watcher"]

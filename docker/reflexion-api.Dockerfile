# Multi-stage: build with the Rust toolchain, run on distroless (glibc, no shell) as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p reflexion-api --bin reflexion-api

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/reflexion-api /usr/local/bin/reflexion-api
USER 65532:65532
ENV REFLEXION_LISTEN=0.0.0.0:8000 DATABASE_URL=sqlite:///data/reflexion.db
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/reflexion-api"]

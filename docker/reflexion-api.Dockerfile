# Multi-stage: build with the Rust toolchain; run on Debian slim with git and ssh (the Git write path runs the
# `git` program: fixes to GitOps-owned workloads are commits), as a non-root user, nothing else installed.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p reflexion-api --bin reflexion-api

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/kube-reflexion/gitops /data && chown -R 65532:65532 /var/lib/kube-reflexion /data
COPY --from=build /src/target/release/reflexion-api /usr/local/bin/reflexion-api
USER 65532:65532
# git's HOME and the clones of GitOps repositories: a writable volume in Kubernetes (the root file system is
# read-only there).
ENV REFLEXION_LISTEN=0.0.0.0:8000 DATABASE_URL=sqlite:///data/reflexion.db HOME=/var/lib/kube-reflexion \
    REFLEXION_GITOPS_WORKDIR=/var/lib/kube-reflexion/gitops
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/reflexion-api"]

# fhirgate container image.
#
#   docker build -t fhirgate .                        # debian-slim runtime with HEALTHCHECK
#   docker build -t fhirgate:distroless --target distroless .
#   docker run --rm -p 8080:8080 fhirgate demo --listen 0.0.0.0:8080
#   docker run --rm -p 8080:8080 -v "$PWD/fhirgate.yaml:/etc/fhirgate/fhirgate.yaml:ro" fhirgate
#
# Two runtimes, both running as the unprivileged user 65532 and both happy with a read-only
# root file system (everything fhirgate writes goes under /var/lib/fhirgate, a volume):
#   runtime     (default, last stage) debian:bookworm-slim. Docker's HEALTHCHECK needs a
#               program in the image that can ask /healthz; bash's /dev/tcp does it without
#               adding curl or wget.
#   distroless  gcr.io/distroless/cc-debian12: no shell, no package manager, so no
#               HEALTHCHECK; for Kubernetes, whose probes call /healthz and /readyz over HTTP
#               themselves (deploy/k8s, deploy/helm).
# The binary links glibc dynamically (aws-lc, SQLite): both runtimes are Debian 12, the same
# glibc the builder stage links against.

ARG RUST_VERSION=1.95

# --- build ------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
# aws-lc-sys falls back to CMake when its cc build cannot be used; the rust image has gcc.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and compiled dependencies between builds; the
# binary is copied out of the cached target dir because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fhirgate --bin fhirgate \
 && install -D -m 0755 target/release/fhirgate /out/fhirgate \
 && /out/fhirgate --version
# The data folder exists in the image with the right owner, so that a fresh named volume
# mounted there inherits it and the non-root user can write.
RUN install -d -m 0750 /out/var/lib/fhirgate /out/etc/fhirgate

# --- runtime for Kubernetes: distroless, no shell ------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS distroless
COPY --from=build /out/fhirgate /usr/local/bin/fhirgate
COPY --from=build --chown=65532:65532 /out/var/lib/fhirgate /var/lib/fhirgate
COPY --from=build /src/examples/fhirgate.yaml /etc/fhirgate/fhirgate.example.yaml
USER 65532:65532
WORKDIR /var/lib/fhirgate
ENV FHIRGATE_DATA_DIR=/var/lib/fhirgate
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/fhirgate"]
CMD ["serve", "--config", "/etc/fhirgate/fhirgate.yaml"]

# --- default runtime: debian-slim with a HEALTHCHECK ---------------------------------------
FROM debian:bookworm-slim AS runtime
# A fixed uid/gid (the distroless "nonroot" one) so volume ownership and Kubernetes
# runAsUser agree across both images.
RUN groupadd --system --gid 65532 fhirgate \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/fhirgate \
      --shell /usr/sbin/nologin fhirgate
COPY --from=build /out/fhirgate /usr/local/bin/fhirgate
COPY --from=build --chown=65532:65532 /out/var/lib/fhirgate /var/lib/fhirgate
COPY --from=build /src/examples/fhirgate.yaml /etc/fhirgate/fhirgate.example.yaml
USER 65532:65532
WORKDIR /var/lib/fhirgate
# `fhirgate auth ...` and the demo keep their data here; audit files go wherever the config
# says (use a path under this folder or another volume).
ENV FHIRGATE_DATA_DIR=/var/lib/fhirgate \
    FHIRGATE_HEALTH_PORT=8080
EXPOSE 8080
# /healthz answers 200 "ok" while the process serves; FHIRGATE_HEALTH_PORT follows the
# configured `listen` port (or `metrics.admin_listen`'s, which also serves /healthz).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${FHIRGATE_HEALTH_PORT} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && IFS= read -r -t 3 status <&3 && [[ $status == 'HTTP/1.1 200'* ]]"]
ENTRYPOINT ["/usr/local/bin/fhirgate"]
CMD ["serve", "--config", "/etc/fhirgate/fhirgate.yaml"]

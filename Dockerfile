# syntax=docker/dockerfile:1
#
# drainit's image: one fully static binary, /drainit, in a FROM scratch image.
#
#   docker build -t ghcr.io/example/drainit:0.1.0 .
#
# Use it two ways:
#  - as the source of the binary for your own image (distroless included):
#        FROM ghcr.io/example/drainit:0.1.0 AS drainit-image
#        FROM <your base>
#        COPY --from=drainit-image /drainit /drainit
#        ENTRYPOINT ["/drainit", "--"]
#        CMD ["/your/app", "--flag"]
#  - as is, for `drainit sidecar` (examples/kubernetes/sidecar-*.yaml).
#
# The same static build without Docker: scripts/build-static.sh.

# Pinned toolchain. For reproducible builds pin the digest as well:
#   docker buildx imagetools inspect rust:1.95-slim-bookworm
#   docker build --build-arg RUST_IMAGE=rust:1.95-slim-bookworm@sha256:<digest> .
ARG RUST_IMAGE=rust:1.95-slim-bookworm

FROM ${RUST_IMAGE} AS build
# Set by BuildKit from --platform (amd64, arm64); the build runs natively
# for that platform and targets its musl triple.
ARG TARGETARCH
# musl-tools (musl-gcc) is only needed if a dependency compiles C; it is
# cheap, and keeps such a dependency from silently linking glibc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-amd64}" in \
        amd64) arch=x86_64 ;; \
        arm64) arch=aarch64 ;; \
        *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && echo "${arch}-unknown-linux-musl" > /rust-target \
    && rustup target add "$(cat /rust-target)"
WORKDIR /src

# 1. Dependencies only, from the lock file, with a stub main: this layer is
#    rebuilt only when Cargo.toml or Cargo.lock change, and everything after
#    it works offline.
#    The workspace's second member (drainit-check) must be there for cargo
#    to read the workspace at all; it is fetched for, never built.
COPY Cargo.toml Cargo.lock ./
COPY drainit-check/Cargo.toml drainit-check/
RUN mkdir -p src drainit-check/src && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs drainit-check/src/lib.rs && echo 'fn main() {}' > drainit-check/src/main.rs \
    && cargo fetch --locked

# 2. The sources (.dockerignore keeps target/ and .git out), built offline.
COPY . .
RUN target="$(cat /rust-target)" \
    && cargo build --release --locked --offline --target "$target" --bin drainit \
    && cp "target/$target/release/drainit" /drainit \
    && /drainit --version

FROM scratch
COPY --from=build /drainit /drainit
# Only matters when this image runs as is (`drainit sidecar`): no root needed
# to serve the admin port (9095). Images that COPY /drainit pick their own.
USER 65532:65532
EXPOSE 9095
# STOPSIGNAL: the container runtime (`docker stop`, containerd and CRI-O for
# Kubernetes) sends the image's STOPSIGNAL to PID 1. drainit starts its drain
# on the signals of --drain-on (default TERM). SIGTERM is also the default
# when STOPSIGNAL is absent; it is spelled out because images built FROM
# another base inherit that base's STOPSIGNAL: the nginx image says SIGQUIT,
# which drainit would forward to the app at once instead of draining. In
# such an image write `STOPSIGNAL SIGTERM` again (and let drainit send the
# app its own signal with --stop-signal QUIT), or add the signal to
# --drain-on.
STOPSIGNAL SIGTERM
# Time: `docker stop` waits 10 s by default, then SIGKILLs the whole
# container, drainit included; drainit's --grace-period (default 30s) is
# meant to equal Kubernetes' terminationGracePeriodSeconds (default 30).
# Under plain Docker either give Docker the same time (`docker stop -t 30`,
# `docker run --stop-timeout 30`, compose `stop_grace_period: 30s`) or set
# --grace-period below Docker's timeout (e.g. DRAINIT_GRACE_PERIOD=10s with a
# short --propagation-delay), so that drainit, not SIGKILL, ends the drain.
ENTRYPOINT ["/drainit"]

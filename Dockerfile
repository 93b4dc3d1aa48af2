# drainit's image: one fully static binary, /drainit, in a FROM scratch image.
#
#   docker build -t ghcr.io/example/drainit:0.1.0 .
#
# Or, with no registry to pull the Rust image from, the same runtime stage
# from a binary built beforehand (what tests/container.rs builds):
#
#   cp "$(scripts/build-static.sh | tail -n 1)" ./drainit-static
#   DOCKER_BUILDKIT=1 docker build --build-arg DRAINIT_BINARY=prebuilt -t drainit:local .
#
# This needs BuildKit (the default since Docker 23, DOCKER_BUILDKIT=1 on
# 20.10), which builds only the stages the image uses; the legacy builder
# builds every stage. No `# syntax=` line: BuildKit would pull that
# frontend image from a registry, and the built-in one reads this file.
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
# Where /drainit comes from: `build` (the stage below, the default) or
# `prebuilt` (the file DRAINIT_PREBUILT of the build context).
ARG DRAINIT_BINARY=build

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

# 1. Dependencies only, from the lock file, with stub sources: this layer is
#    rebuilt only when Cargo.toml or Cargo.lock change, and everything after
#    it works offline. Cargo reads the manifest only if every target it
#    names exists (the library and the harness-less test target too), and
#    the workspace only with its second member (drainit-check), which is
#    fetched for, never built.
COPY Cargo.toml Cargo.lock ./
COPY drainit-check/Cargo.toml drainit-check/
RUN mkdir -p src tests drainit-check/src && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs tests/container.rs drainit-check/src/lib.rs \
    && echo 'fn main() {}' > drainit-check/src/main.rs \
    && cargo fetch --locked

# 2. The sources (.dockerignore keeps target/ and .git out), built offline.
COPY . .
RUN target="$(cat /rust-target)" \
    && cargo build --release --locked --offline --target "$target" --bin drainit \
    && cp "target/$target/release/drainit" /drainit \
    && /drainit --version

# A static binary built outside Docker (scripts/build-static.sh).
FROM scratch AS prebuilt
ARG DRAINIT_PREBUILT=drainit-static
COPY ${DRAINIT_PREBUILT} /drainit

# One name for the binary's source: the runtime stage below is the same
# whichever it is.
FROM ${DRAINIT_BINARY} AS binary

# The runtime image, what users run (and the last stage, so the default).
FROM scratch AS runtime
COPY --from=binary /drainit /drainit
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

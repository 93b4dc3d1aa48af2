#!/usr/bin/env bash
# Runs every check of drainit on a fresh machine: installs what the tests
# need (HAProxy and tini for the rollout rig, Docker and containerd for
# tests/container.rs, the musl target for the static build, cross compilers,
# qemu-user, rust-src and cargo-deb for tests/platforms.rs), then format,
# lint, the static build run as PID 1, and the whole test suite. The last
# line sums cargo test's results.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v tini >/dev/null 2>&1 || missing+=(tini)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
# tests/it/pid1_limits.rs and admin_prestop.rs: limits and another user.
command -v prlimit >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
command -v strace >/dev/null 2>&1 || missing+=(strace)
# tests/it/prestop_node.rs builds pod networks with ip netns and calls with
# curl; tests/it/auto_delay.rs counts TIME_WAIT sockets with ss.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# tests/kube.rs: the API emulation's test CA, and the admin's DELETE.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# ring (the kubernetes feature's TLS) compiles C for the musl static build.
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
# tests/container.rs starts these itself (Debian's client: /usr/bin/docker).
[[ -x /usr/bin/docker && -x /usr/sbin/dockerd ]] || missing+=(docker.io)
[[ -x /usr/bin/containerd && -x /usr/bin/ctr ]] || missing+=(containerd)
command -v runc >/dev/null 2>&1 || [[ -x /usr/sbin/runc ]] || missing+=(runc)
# tests/platforms.rs: scripts/release.sh for every architecture (Debian's
# cross compilers as linker drivers, also for the C test app), qemu-user to
# run each as PID 1, gpg for the signatures.
for triplet in aarch64-linux-gnu arm-linux-gnueabihf arm-linux-gnueabi i686-linux-gnu powerpc64le-linux-gnu riscv64-linux-gnu; do
    command -v "$triplet-gcc" >/dev/null 2>&1 || missing+=("gcc-$triplet")
done
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
# cargo-deb (below) is built without its own compressors and compresses
# the packages with the system's xz (the same .deb format).
command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]}" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        echo "test.sh: FAILED to install ${missing[*]}: the tests need them (run as root with Debian's package sources)" >&2
        exit 1
    fi
fi

# scripts/release.sh builds the standard library from source for the
# targets rustup cannot install here (-Z build-std needs rust-src), and
# packages with cargo-deb. It is built once per machine, unoptimized
# (--debug: 23 s instead of 100 s here, and packaging a binary still takes
# half a second, the compression being xz's) and without its default
# features: no liblzma to compile (it pipes through the system's xz, the
# same .deb format) and no ELF reader (only for separate debug symbols).
rustup component add rust-src >/dev/null 2>&1 || {
    echo "test.sh: FAILED to add the rust-src component (rustup component add rust-src)" >&2
    exit 1
}
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "test.sh: installing cargo-deb" >&2
    cargo install --locked --quiet --debug --no-default-features cargo-deb || {
        echo "test.sh: FAILED to install cargo-deb (cargo install --locked --debug --no-default-features cargo-deb): scripts/release.sh needs it" >&2
        exit 1
    }
fi
# drainit-check/tests/kustomize.rs renders with kubectl (kustomize 5 built
# in); the machine image has it, Debian has no package of it.
command -v kubectl >/dev/null 2>&1 || {
    echo "test.sh: kubectl is not installed: drainit-check/tests/kustomize.rs needs kubectl 1.27+ (kustomize 5)" >&2
    exit 1
}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== the same with the Kubernetes API client (feature kubernetes)"
cargo clippy --workspace --all-targets --quiet --features drainit/kubernetes -- -D warnings

if [[ -x scripts/build-static.sh ]]; then
    echo "== static build, run once as PID 1"
    # build-static.sh fails on a binary that is not static, PIE and RELRO,
    # or (musl) keeps unwind tables or is over the size budget; its size
    # line goes into the log.
    static_out=$(scripts/build-static.sh)
    echo "$static_out" | grep '^build-static:' || true
    static_bin=$(echo "$static_out" | tail -n 1)
    out=$(unshare --pid --fork --mount-proc "$static_bin" --admin-listen off -- sh -c 'echo "pid=$$"; exit 7' 2>&1) && rc=0 || rc=$?
    if [[ $rc -ne 7 || $out != *"pid=2"* ]]; then
        echo "test.sh: static drainit as PID 1 gave exit $rc, output: $out" >&2
        exit 1
    fi
    echo "static binary ok: exit code passed through as PID 1"
    echo "== static build with the Kubernetes API client (its own size budget)"
    DRAINIT_FEATURES=kubernetes scripts/build-static.sh | grep '^build-static:'
fi

# The whole suite on the build users get (no Kubernetes API client), then
# again with the client compiled in where it touches the drain: the unit
# tests, tests/kube.rs against the API emulation (rollout rig included), and
# every PID-1, sidecar and drain test of tests/it with no API in reach (they
# set no KUBERNETES_SERVICE_HOST), which shows that nothing changes then.
# The rollout rig without the API already ran in the first pass.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== cargo test --workspace (drainit and drainit-check, default features)"
cargo test --workspace 2>&1 | tee "$log"
echo "== cargo test -p drainit --features kubernetes --lib --test kube --test it (skipping it's rollout rig)"
cargo test -p drainit --features kubernetes --lib --test kube --test it -- --skip rollout:: 2>&1 | tee -a "$log"
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

#!/usr/bin/env bash
# Builds a drainit release on one x86_64 machine: static binaries of drainit
# and drainit-check for every architecture, .deb packages, the
# multi-architecture FROM scratch image, SHA256SUMS and (with a key)
# detached signatures.
#
#   scripts/release.sh 0.1.0                          # -> target/dist/0.1.0/
#   scripts/release.sh 0.1.0 --sign-key release@example.org
#   scripts/release.sh 0.1.0 --out /tmp/dist --targets "x86_64 aarch64"
#   scripts/release.sh 0.1.0 --profile cross-test --no-check   # what tests/platforms.rs builds
#
# VERSION must be the version in Cargo.toml (what `drainit --version` says).
# Options:
#   --out DIR          where the artifacts go (default target/dist/VERSION)
#   --targets "A B"    a subset of the architectures below (default: all)
#   --profile NAME     cargo profile (default release; cross-test: no LTO,
#                      unoptimized dependencies)
#   --no-check         build drainit only, without drainit-check
#   --sign-key KEY     gpg key (id, fingerprint or e-mail) for detached
#                      signatures (FILE.asc); also RELEASE_SIGNING_KEY
#
# Architectures (ARCH of the file names, Rust target, Debian package
# architecture, image platform):
#   x86_64       x86_64-unknown-linux-musl        amd64    linux/amd64
#   aarch64      aarch64-unknown-linux-musl       arm64    linux/arm64
#   armv7        armv7-unknown-linux-musleabihf   armhf    linux/arm/v7
#   armv6        arm-unknown-linux-musleabi       armel    linux/arm/v6
#   i686         i686-unknown-linux-musl          i386     linux/386
#   powerpc64le  powerpc64le-unknown-linux-musl   ppc64el  linux/ppc64le
#   riscv64      riscv64gc-unknown-linux-musl     riscv64  linux/riscv64
#
# Each binary is built and checked by scripts/build-static.sh (static,
# RELRO, PIE where the target makes static-pie binaries, drainit without
# unwind tables and within its size budget); Debian's gcc-<triplet> cross
# compilers drive the links. Artifacts, in --out:
#   drainit-VERSION-ARCH, drainit-check-VERSION-ARCH   the binaries
#   drainit_VERSION-1_DEBARCH.deb, drainit-check_...   packages (cargo-deb)
#   drainit-VERSION-image.tar   OCI image layout (one index, every
#                               platform) that `docker load` also reads
#                               (scripts/oci-image.py)
#   SIZES                       build-static.sh's line for each binary
#   SHA256SUMS                  over every artifact (sha256sum -c SHA256SUMS)
#   *.asc                       with a signing key: one per artifact and
#                               one for SHA256SUMS (gpg --verify FILE.asc FILE)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

all_arches="x86_64 aarch64 armv7 armv6 i686 powerpc64le riscv64"
version=""
out=""
arches=$all_arches
profile=release
with_check=yes
sign_key=${RELEASE_SIGNING_KEY:-}
while (($#)); do
    case $1 in
        --out) out=${2:?--out needs a DIR}; shift 2 ;;
        --targets) arches=${2:?--targets needs a list}; shift 2 ;;
        --profile) profile=${2:?--profile needs a NAME}; shift 2 ;;
        --no-check) with_check=""; shift ;;
        --sign-key) sign_key=${2:?--sign-key needs a KEY}; shift 2 ;;
        -*) echo "release: unknown option '$1' (see the head of scripts/release.sh)" >&2; exit 2 ;;
        *) [[ -z $version ]] || { echo "release: one VERSION only (got '$version' and '$1')" >&2; exit 2; }
           version=$1; shift ;;
    esac
done
[[ -n $version ]] || { echo "usage: scripts/release.sh VERSION [--out DIR] [--targets \"ARCH...\"] [--profile NAME] [--no-check] [--sign-key KEY]" >&2; exit 2; }
crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [[ $version != "$crate_version" ]]; then
    echo "release: VERSION $version is not the version in Cargo.toml ($crate_version): drainit --version would disagree with the file names" >&2
    exit 2
fi

# ARCH -> Rust target, Debian architecture, image platform.
rust_target() {
    case $1 in
        x86_64) echo x86_64-unknown-linux-musl ;;
        aarch64) echo aarch64-unknown-linux-musl ;;
        armv7) echo armv7-unknown-linux-musleabihf ;;
        armv6) echo arm-unknown-linux-musleabi ;;
        i686) echo i686-unknown-linux-musl ;;
        powerpc64le) echo powerpc64le-unknown-linux-musl ;;
        riscv64) echo riscv64gc-unknown-linux-musl ;;
        *) echo "release: unknown architecture '$1' (known: $all_arches)" >&2; return 2 ;;
    esac
}
deb_arch() {
    case $1 in
        x86_64) echo amd64 ;; aarch64) echo arm64 ;; armv7) echo armhf ;; armv6) echo armel ;;
        i686) echo i386 ;; powerpc64le) echo ppc64el ;; riscv64) echo riscv64 ;;
    esac
}
image_platform() {
    case $1 in
        x86_64) echo amd64 ;; aarch64) echo arm64 ;; armv7) echo arm/v7 ;; armv6) echo arm/v6 ;;
        i686) echo 386 ;; powerpc64le) echo ppc64le ;; riscv64) echo riscv64 ;;
    esac
}
for arch in $arches; do rust_target "$arch" >/dev/null; done

out=${out:-${CARGO_TARGET_DIR:-$repo/target}/dist/$version}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/drainit* "$out"/SIZES* "$out"/SHA256SUMS*

bins=(drainit)
[[ -n $with_check ]] && bins+=(drainit-check)

# Two chains of builds run side by side: the targets rustup has a standard
# library for, in the target directory, and the ones whose std is built
# from source (-Z build-std, in a target directory of their own, see
# build-static.sh), so neither waits for the other's directory lock and
# each fills the cores the other leaves idle (a crate's front end and a
# link use one core). That split is the cross-test profile's (the emulated
# tests); the release profile builds std from source for every target
# (build-static.sh), so there both chains share one directory and take
# turns at its lock: correct, only not parallel. The host's target leads
# its chain: if the toolchain or the gates are broken, that shows at the
# start.
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
# Builds `bin` for `arch` with the gates; leaves build-static.sh's size
# line and the binary's path in $results. (Called in a chain whose failure
# is tested, where set -e does not apply: each step checks its status.)
build_one() {
    local arch=$1 bin=$2 target built
    target=$(rust_target "$arch") || return 1
    echo "release: $bin for $arch ($target)" >&2
    built=$(scripts/build-static.sh --target "$target" --profile "$profile" --bin "$bin") || return 1
    grep '^build-static:' <<<"$built" >"$results/$bin-$arch.line" || return 1
    tail -n 1 <<<"$built" >"$results/$bin-$arch.path" || return 1
}
build_chain() {
    local arch bin
    for arch; do
        for bin in "${bins[@]}"; do
            build_one "$arch" "$bin" || {
                echo "release: FAILED to build $bin for $arch" >&2
                return 1
            }
        done
    done
}
# Rust's musl targets without a standard library from rustup (1.95).
rustup_chain=() std_chain=()
for arch in $arches; do
    case $arch in
        armv7 | armv6 | powerpc64le | riscv64) std_chain+=("$arch") ;;
        *) rustup_chain+=("$arch") ;;
    esac
done
std_pid=""
if ((${#std_chain[@]})); then
    build_chain "${std_chain[@]}" &
    std_pid=$!
fi
rustup_ok=yes std_ok=yes
build_chain "${rustup_chain[@]}" || rustup_ok=""
# Waits for the other chain even after a failure: no build outlives the script.
[[ -z $std_pid ]] || wait "$std_pid" || std_ok=""
if [[ -z $rustup_ok || -z $std_ok ]]; then
    echo "release: a build failed (see above)" >&2
    exit 1
fi

declare -A built_in
for arch in $arches; do
    for bin in "${bins[@]}"; do
        line=$(cat "$results/$bin-$arch.line")
        path=$(cat "$results/$bin-$arch.path")
        cp "$path" "$out/$bin-$version-$arch"
        # The target directory cargo built it in (build-std targets have one
        # of their own): cargo-deb looks for the binary there.
        built_in[$arch]=$(dirname "$(dirname "$(dirname "$path")")")
        echo "$bin-$version-$arch: ${line#build-static: }" >>"$out/SIZES"
        echo "$line"
    done
done

# .deb packages, with cargo-deb (the [package.metadata.deb] of each crate)
# from the binaries just built: a package of a static binary has no
# dependency.
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "release: cargo-deb is not installed: cargo install --locked cargo-deb" >&2
    exit 1
fi
for arch in $arches; do
    target=$(rust_target "$arch")
    for bin in "${bins[@]}"; do
        CARGO_TARGET_DIR=${built_in[$arch]} cargo deb --no-build --no-strip --locked -p "$bin" --target "$target" \
            --profile "$profile" --deb-version "$version-1" -o "$out/${bin}_$version-1_$(deb_arch "$arch").deb" >&2
    done
done

# The image: every architecture's drainit, COPY only.
images=()
for arch in $arches; do
    images+=("$(image_platform "$arch")=$out/drainit-$version-$arch")
done
python3 scripts/oci-image.py --version "$version" --out "$out/drainit-$version-image.tar" "${images[@]}"

(
    cd "$out"
    # drainit-VERSION-*, drainit-check-*, drainit_*.deb, drainit-check_*.deb
    # and the image (earlier signatures were removed above).
    artifacts=(drainit* SIZES)
    sha256sum "${artifacts[@]}" >SHA256SUMS
    if [[ -n $sign_key ]]; then
        for file in "${artifacts[@]}" SHA256SUMS; do
            gpg --batch --yes --local-user "$sign_key" --armor --detach-sign --output "$file.asc" "$file"
        done
        echo "release: signed every artifact and SHA256SUMS with $sign_key" >&2
    fi
)
echo "release: $version in $out"

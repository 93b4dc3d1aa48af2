#!/usr/bin/env bash
# Build a fully static drainit binary without Docker: the same build the
# Dockerfile does, for CI, for `COPY` into images built elsewhere, or for a
# quick check on a laptop.
#
#   scripts/build-static.sh            # -> target/x86_64-unknown-linux-musl/release/drainit
#   CARGO_TARGET_DIR=/tmp/t scripts/build-static.sh
#   bin=$(scripts/build-static.sh | tail -n 1)
#   STATIC_LIBC=gnu scripts/build-static.sh   # force the glibc fallback
#   DRAINIT_FEATURES=kubernetes scripts/build-static.sh   # with the API client
#
# Preferred: the musl target (`rustup target add x86_64-unknown-linux-musl`),
# which gives a static(-pie) binary with no libc to find at run time. If that
# target can't be had (no rustup, offline, distro toolchain without musl), it
# falls back to glibc with `-C target-feature=+crt-static`; that is static
# too, but glibc's NSS (getaddrinfo on host names) doesn't work statically, so
# give drainit IP addresses (127.0.0.1, not localhost) in that build.
#
# cargo's and rustup's output goes to stderr; stdout carries a size line and,
# on its LAST line, the absolute path of the binary. The script fails if the
# result is not statically linked, not position-independent (PIE) or has no
# RELRO segment (checked with readelf); for musl also if it kept its unwind
# tables or is over 1 200 000 bytes.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# CARGO_TARGET_DIR as cargo reads it: relative to the caller's directory;
# unset means <repo>/target.
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case $target_dir in
    /*) ;;
    *) target_dir=$PWD/$target_dir ;;
esac
export CARGO_TARGET_DIR=$target_dir
cd "$repo"

arch=$(uname -m)
if [ "$arch" != x86_64 ]; then
    # The triples below are spelled for x86_64; aarch64 works the same way.
    echo "build-static: note: host is $arch; building for ${arch}-unknown-linux-*" >&2
fi
musl=${arch}-unknown-linux-musl
gnu=${arch}-unknown-linux-gnu

have_musl_std() {
    local sysroot
    sysroot=$(rustc --print sysroot 2>/dev/null) || return 1
    [ -d "$sysroot/lib/rustlib/$musl/lib" ]
}

libc=${STATIC_LIBC:-auto}
case $libc in
    auto | musl | gnu) ;;
    *) echo "build-static: STATIC_LIBC must be auto, musl or gnu (got '$libc')" >&2; exit 2 ;;
esac

if [ "$libc" = gnu ]; then
    target=$gnu
elif command -v rustup >/dev/null 2>&1 && rustup target add "$musl" >&2; then
    target=$musl
elif have_musl_std; then
    target=$musl
elif [ "$libc" = musl ]; then
    echo "build-static: the $musl target is not available (STATIC_LIBC=musl)" >&2
    exit 1
else
    echo "build-static: the $musl target is not available; falling back to glibc +crt-static" >&2
    target=$gnu
fi

# The optional Kubernetes API client (issue 18) has a budget of its own:
# TLS is its cost, measured in BENCHMARKS.md.
features=${DRAINIT_FEATURES:-}
case ",$features," in
    *,kubernetes,*) budget=${KUBERNETES_BUDGET:-2100000} needs_c=1 ;;
    *) budget=1200000 needs_c= ;;
esac

# ring (the TLS of the kubernetes feature) compiles C and assembly: for
# the musl target that takes musl-gcc (Debian: musl-tools, as the
# Dockerfile installs).
if [ "$target" = "$musl" ] && [ -n "$needs_c" ] && ! command -v "${arch}-linux-musl-gcc" >/dev/null 2>&1 && ! command -v musl-gcc >/dev/null 2>&1; then
    echo "build-static: features $features need a musl C compiler (apt-get install musl-tools)" >&2
    exit 1
fi

if [ "$target" = "$musl" ]; then
    cargo build --release --locked --target "$target" --bin drainit ${features:+--features "$features"} >&2
else
    # RUSTFLAGS applies to this target only because --target is given (build
    # scripts and proc macros stay dynamic, which is what they need).
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --release --locked --target "$target" --bin drainit ${features:+--features "$features"} >&2
fi

bin=$CARGO_TARGET_DIR/$target/release/drainit
[ -x "$bin" ] || { echo "build-static: $bin was not produced" >&2; exit 1; }

# Static means: no shared library to load and no program interpreter.
# Hardened means: position-independent (ELF type DYN, so ASLR applies) and
# a GNU_RELRO segment (relocated data made read-only). readelf (binutils,
# which the link needs anyway) is required for both checks.
if ! command -v readelf >/dev/null 2>&1; then
    echo "build-static: readelf (binutils) is not installed: cannot check the binary" >&2
    exit 1
fi
needed=$(readelf -d "$bin" 2>/dev/null | grep -c '(NEEDED)' || true)
interp=$(readelf -l "$bin" 2>/dev/null | grep -c 'Requesting program interpreter' || true)
if [ "$needed" != 0 ] || [ "$interp" != 0 ]; then
    echo "build-static: $bin is dynamically linked:" >&2
    readelf -d "$bin" | grep '(NEEDED)' >&2 || true
    readelf -l "$bin" | grep 'interpreter' >&2 || true
    exit 1
fi
if ! readelf -h "$bin" | grep -Eq '^ *Type: +DYN '; then
    echo "build-static: $bin is not position-independent (no ASLR):" >&2
    readelf -h "$bin" | grep 'Type:' >&2 || true
    exit 1
fi
if ! readelf -lW "$bin" | grep -q 'GNU_RELRO'; then
    echo "build-static: $bin has no GNU_RELRO segment" >&2
    exit 1
fi
how="readelf: no NEEDED entry, no interpreter, PIE, RELRO"
# .cargo/config.toml asks for packed relative relocations (DT_RELR) on the
# musl target; a RUSTFLAGS variable replaces that setting, and a linker
# older than binutils 2.38 ignores it: the binary works, only bigger.
if [ "$target" = "$musl" ]; then
    if readelf -dW "$bin" | grep -q '(RELR)'; then
        how="$how, RELR"
    else
        echo "build-static: note: no packed relative relocations (RELR) in $bin; RUSTFLAGS set, or binutils < 2.38?" >&2
    fi
fi

size=$(wc -c <"$bin" | tr -d ' ')
# The musl release binary drops its unwind tables (build.rs,
# link/no-unwind-tables.ld): no PT_GNU_EH_FRAME header may be left, and
# the binary must stay within the footprint budget of issue 13. Both are
# product figures, so a build that misses them fails here, not in a
# benchmark read weeks later.
if [ "$target" = "$musl" ]; then
    if readelf -lW "$bin" | grep -q 'GNU_EH_FRAME'; then
        echo "build-static: $bin still has its unwind tables (GNU_EH_FRAME): build.rs's link arguments did not apply" >&2
        exit 1
    fi
    how="$how, no unwind tables"
    if [ "$size" -gt "$budget" ]; then
        echo "build-static: $bin is $size bytes, over the budget of $budget (issue 13${features:+, features $features}); measure what grew (cargo bloat) before raising it" >&2
        exit 1
    fi
fi
echo "build-static: $target, static ($how), $size bytes"
echo "$bin"

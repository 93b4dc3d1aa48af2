#!/usr/bin/env bash
# Build a fully static drainit binary without Docker: the same build the
# Dockerfile does, for CI, for `COPY` into images built elsewhere, or for a
# quick check on a laptop.
#
#   scripts/build-static.sh            # -> target/build-std/x86_64-unknown-linux-musl/release/drainit
#   CARGO_TARGET_DIR=/tmp/t scripts/build-static.sh
#   bin=$(scripts/build-static.sh | tail -n 1)
#   STATIC_LIBC=gnu scripts/build-static.sh   # force the glibc fallback
#   scripts/build-static.sh --target aarch64-unknown-linux-musl --bin drainit-check
#   scripts/build-static.sh --target riscv64gc-unknown-linux-musl --profile cross-test
#   DRAINIT_FEATURES=kubernetes scripts/build-static.sh   # with the API client
#
# Options: --target TRIPLE (a musl target of another architecture, cross
# linked by Debian's gcc-<triplet> as the linker driver; scripts/release.sh
# builds the whole list), --bin drainit|drainit-check, --profile NAME
# (release, or cross-test: drainit's code as in release, without LTO and
# with unoptimized dependencies, for the emulated tests). The release
# profile builds the standard library too, from the rust-src component
# (RUSTC_BOOTSTRAP=1 -Z build-std, the same compiler, std's
# optimize_for_size feature, no backtrace symboliser): a fifth smaller than
# with rustup's prebuilt std (STATIC_STD below). For a cross target whose
# standard library rustup cannot install (`rustup target add` fails), std
# is built so in every profile and linked against Debian's musl
# (scripts/musl-sysroot.sh).
#
# Preferred: the musl target (`rustup target add x86_64-unknown-linux-musl`),
# which gives a static(-pie) binary with no libc to find at run time. If that
# target can't be had (no rustup, offline, distro toolchain without musl), it
# falls back to glibc with `-C target-feature=+crt-static`; that is static
# too, but glibc's NSS (getaddrinfo on host names) doesn't work statically, so
# give drainit IP addresses (127.0.0.1, not localhost) in that build. A cross
# target has no fallback.
#
# cargo's and rustup's output goes to stderr; stdout carries a size line and,
# on its LAST line, the absolute path of the binary. The script fails if the
# result is not statically linked, has no RELRO segment, or is not
# position-independent (PIE) where the target makes static-pie binaries
# (x86_64; Rust's other musl targets link static non-PIE executables), checked
# with readelf; for musl's drainit also if it kept its unwind tables (32-bit
# ARM unwinds from .ARM.exidx, never from .eh_frame) or is over its size
# budget (1 000 000 bytes on x86_64, 1.2 MB or 1.3 MB elsewhere; below).
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

cross=""
# Whether rustup (or the toolchain) has a prebuilt std for the musl target.
prebuilt_std=""
profile=release
bin_name=drainit
while (($#)); do
    case $1 in
        --target) cross=${2:?--target needs a TRIPLE}; shift 2 ;;
        --profile) profile=${2:?--profile needs a NAME}; shift 2 ;;
        --bin) bin_name=${2:?--bin needs drainit or drainit-check}; shift 2 ;;
        *) echo "build-static: unknown argument '$1' (accepted: --target TRIPLE, --profile NAME, --bin drainit|drainit-check)" >&2; exit 2 ;;
    esac
done
case $bin_name in
    drainit) package=drainit ;;
    drainit-check) package=drainit-check ;;
    *) echo "build-static: --bin must be drainit or drainit-check (got '$bin_name')" >&2; exit 2 ;;
esac

arch=$(uname -m)
if [ -z "$cross" ] && [ "$arch" != x86_64 ]; then
    # The triples below are spelled for x86_64; aarch64 works the same way.
    echo "build-static: note: host is $arch; building for ${arch}-unknown-linux-*" >&2
fi
musl=${arch}-unknown-linux-musl
gnu=${arch}-unknown-linux-gnu
if [ "$cross" = "$musl" ]; then
    cross=""
fi

have_musl_std() {
    local sysroot
    sysroot=$(rustc --print sysroot 2>/dev/null) || return 1
    [ -d "$sysroot/lib/rustlib/$1/lib" ]
}

# Asks the compiler's own target description (stable rustc prints it only
# with RUSTC_BOOTSTRAP).
target_spec_says() {
    RUSTC_BOOTSTRAP=1 rustc --print target-spec-json -Z unstable-options --target "$1" | grep -q "\"$2\": *true"
}

libc=${STATIC_LIBC:-auto}
case $libc in
    auto | musl | gnu) ;;
    *) echo "build-static: STATIC_LIBC must be auto, musl or gnu (got '$libc')" >&2; exit 2 ;;
esac

# The optional Kubernetes API client (issue 18) has a budget of its own:
# TLS is its cost, measured in BENCHMARKS.md.
features=${DRAINIT_FEATURES:-}
case ",$features," in
    *,kubernetes,*) feature_budget=${KUBERNETES_BUDGET:-2100000} needs_c=1 ;;
    *) feature_budget= needs_c= ;;
esac

build=(cargo build --profile "$profile" --locked -p "$package" --bin "$bin_name" ${features:+--features "$features"})
if [ -n "$cross" ]; then
    # Another architecture: Debian's cross gcc drives the link (it passes
    # build.rs's -Wl, arguments and linker script to GNU ld; rust-lld
    # rejects them).
    case $cross in
        aarch64-unknown-linux-musl) linker=aarch64-linux-gnu-gcc ;;
        armv7-unknown-linux-musleabihf) linker=arm-linux-gnueabihf-gcc ;;
        arm-unknown-linux-musleabi) linker=arm-linux-gnueabi-gcc ;;
        i686-unknown-linux-musl) linker=i686-linux-gnu-gcc ;;
        powerpc64le-unknown-linux-musl) linker=powerpc64le-linux-gnu-gcc ;;
        riscv64gc-unknown-linux-musl) linker=riscv64-linux-gnu-gcc ;;
        *) echo "build-static: no cross linker known for --target $cross" >&2; exit 2 ;;
    esac
    command -v "$linker" >/dev/null 2>&1 || {
        echo "build-static: $linker is not installed (apt-get install gcc-${linker%-gcc})" >&2
        exit 1
    }
    target=$cross
    var=$(echo "$target" | tr 'a-z-' 'A-Z_')
    export "CARGO_TARGET_${var}_LINKER=$linker"
    # riscv64's musl target links dynamically unless told otherwise.
    flags="-C target-feature=+crt-static"
    if { command -v rustup >/dev/null 2>&1 && rustup target add "$target" >&2 2>/dev/null; } || have_musl_std "$target"; then
        prebuilt_std=yes
    else
        echo "build-static: rustup has no standard library for $target here: building it from rust-src against Debian's musl" >&2
        sysroot=$(scripts/musl-sysroot.sh "$target")
        flags="$flags -L native=$sysroot"
    fi
    export "CARGO_TARGET_${var}_RUSTFLAGS=$flags"
    musl=$target
elif [ "$libc" = gnu ]; then
    target=$gnu
elif { command -v rustup >/dev/null 2>&1 && rustup target add "$musl" >&2; } || have_musl_std "$musl"; then
    target=$musl
    prebuilt_std=yes
elif [ "$libc" = musl ]; then
    echo "build-static: the $musl target is not available (STATIC_LIBC=musl)" >&2
    exit 1
else
    echo "build-static: the $musl target is not available; falling back to glibc +crt-static" >&2
    target=$gnu
fi

# ring (the TLS of the kubernetes feature) compiles C and assembly: for
# the musl target that takes musl-gcc (Debian: musl-tools, as the
# Dockerfile installs).
if [ -z "$cross" ] && [ "$target" = "$musl" ] && [ -n "$needs_c" ] && ! command -v "${arch}-linux-musl-gcc" >/dev/null 2>&1 && ! command -v musl-gcc >/dev/null 2>&1; then
    echo "build-static: features $features need a musl C compiler (apt-get install musl-tools)" >&2
    exit 1
fi

# The standard library of a musl build. rustup's prebuilt one is built for
# speed and carries std's backtrace symboliser (gimli, addr2line,
# miniz_oxide: about 174 KiB of x86_64 code), which the panic hook keeps
# linked although a stripped binary has no symbols for it to show. Built
# from the rust-src component of the same compiler (-Z build-std under
# RUSTC_BOOTSTRAP=1, the toolchain pinned by rust-toolchain.toml) with only
# std's `optimize_for_size` feature, the release binary is about a fifth
# smaller (BENCHMARKS.md) and a panic still prints its message and aborts.
# STATIC_STD: auto (from source for the release profile, and wherever rustup
# has no std for the target), source, or prebuilt (rustup's; needs it).
std_source=${STATIC_STD:-auto}
case $std_source in
    auto | source | prebuilt) ;;
    *) echo "build-static: STATIC_STD must be auto, source or prebuilt (got '$std_source')" >&2; exit 2 ;;
esac
from_source=""
if [ "$target" = "$musl" ]; then
    if [ -z "$prebuilt_std" ]; then
        [ "$std_source" != prebuilt ] || {
            echo "build-static: STATIC_STD=prebuilt, but rustup has no standard library for $target" >&2
            exit 1
        }
        from_source=yes
    elif [ "$std_source" = source ] || { [ "$std_source" = auto ] && [ "$profile" = release ]; }; then
        from_source=yes
    fi
    if [ -n "$from_source" ]; then
        [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library/std" ] || {
            echo "build-static: building std for $target needs the rust-src component (rustup component add rust-src), or STATIC_STD=prebuilt" >&2
            exit 1
        }
        build+=(-Z build-std=std,panic_abort -Z build-std-features=optimize_for_size)
        export RUSTC_BOOTSTRAP=1
        # A directory of their own: rustc records RUSTC_BOOTSTRAP in the
        # host's build scripts and proc macros, which would otherwise be
        # rebuilt (and everything after them) at each switch between a
        # prebuilt std and one built here.
        export CARGO_TARGET_DIR=$CARGO_TARGET_DIR/build-std
        echo "build-static: the standard library for $target is built from rust-src (optimize_for_size)" >&2
    fi
fi

if [ "$target" = "$musl" ]; then
    "${build[@]}" --target "$target" >&2
else
    # RUSTFLAGS applies to this target only because --target is given (build
    # scripts and proc macros stay dynamic, which is what they need).
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        "${build[@]}" --target "$target" >&2
fi

# cargo's output directory of a profile: "dev" builds into debug/.
profile_dir=$profile
[ "$profile" = dev ] && profile_dir=debug
bin=$CARGO_TARGET_DIR/$target/$profile_dir/$bin_name
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
# PIE where the target makes static-pie executables (x86_64's musl and the
# glibc fallback); Rust's other musl targets link static non-PIE ones.
if [ "$target" = "$gnu" ] || target_spec_says "$target" static-position-independent-executables; then
    if ! readelf -h "$bin" | grep -Eq '^ *Type: +DYN '; then
        echo "build-static: $bin is not position-independent (no ASLR):" >&2
        readelf -h "$bin" | grep 'Type:' >&2 || true
        exit 1
    fi
    pie="PIE"
else
    pie="not PIE (no static-pie on $target)"
fi
if ! readelf -lW "$bin" | grep -q 'GNU_RELRO'; then
    echo "build-static: $bin has no GNU_RELRO segment" >&2
    exit 1
fi
how="readelf: no NEEDED entry, no interpreter, $pie, RELRO"
# .cargo/config.toml asks for packed relative relocations (DT_RELR) on the
# host's musl target; a RUSTFLAGS variable replaces that setting, and a linker
# older than binutils 2.38 ignores it: the binary works, only bigger.
if [ -z "$cross" ] && [ "$target" = "$musl" ]; then
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
# benchmark read weeks later. drainit-check keeps its tables (build.rs
# drops drainit's only); the cheap cross-test profile skips the budget (no
# LTO, unoptimized dependencies: bigger, never shipped).
if [ "$target" = "$musl" ] && [ "$bin_name" = drainit ]; then
    if readelf -lW "$bin" | grep -q 'GNU_EH_FRAME'; then
        echo "build-static: $bin still has its unwind tables (GNU_EH_FRAME): build.rs's link arguments did not apply" >&2
        exit 1
    fi
    how="$how, no unwind tables"
    # The budgets hold the release as shipped, with std built here (a
    # build with rustup's prebuilt std, STATIC_STD=prebuilt, is about
    # 0.26 MB bigger, is not shipped and has none). The promise is 1.2 MB
    # (issue 13, issue 18's build without the API client). The same source
    # is bigger where the instruction set is less dense: powerpc64le has
    # fixed 4-byte instructions and no compressed form (1.21x x86_64 at
    # ae7e6ba; i686 and armv6 1.02x, riscv64 0.83x: BENCHMARKS.md). CI
    # builds only x86_64's release binary, so its gate is the tight one:
    # at 1.0 MB on x86_64 every other architecture, at its measured ratio,
    # stays within its own budget, and growth that would fail the release
    # of another architecture fails CI first (it did not, once: the
    # release stopped at powerpc64le).
    case $target in
        x86_64-*) budget=1000000 ;;
        powerpc64le-*) budget=1300000 ;;
        *) budget=1200000 ;;
    esac
    [ -n "$feature_budget" ] && budget=$feature_budget
    if [ "$profile" = release ] && [ -n "$from_source" ] && [ "$size" -gt "$budget" ]; then
        echo "build-static: $bin is $size bytes, over the budget of $budget (issue 13${features:+, features $features}); measure what grew (cargo bloat) before raising it" >&2
        exit 1
    fi
fi
[ "$target" = "$musl" ] && [ -n "$from_source" ] && how="$how, std from rust-src"
echo "build-static: $target, static ($how), $size bytes"
echo "$bin"

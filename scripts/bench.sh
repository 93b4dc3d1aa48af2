#!/usr/bin/env bash
# scripts/bench.sh — footprint and speed of drainit next to the plain inits
# (Debian's tini-static, dumb-init, catatonit), issues 6 and 13.
#
# Usage: scripts/bench.sh [OPTIONS]
#
#   --drainit PATH    measure this drainit binary (default: build the static
#                     release binary, see below)
#   --skip-drainit    measure the peers only
#   --variant NAME=PATH
#                     also measure this drainit build, beside the first and
#                     with its flags (repeatable): one change alone, e.g.
#                     --variant main=/tmp/drainit-main
#   --no-install      do not apt-get install missing peers / wrk
#   --quick           smoke run (1 repeat, short windows, 1 000 orphans);
#                     writes no BENCHMARKS.md unless --out is given
#   --only LIST       subset of: size,idle,start,signal,reap,ready
#   --runs N          repeats of the idle benchmark (5; signal 11 runs, reap
#                     9 runs, start 200 starts: see bench.py --help)
#   --quiet-wait S    first wait up to S seconds (default 60) for the CPUs to
#                     be under 20% busy
#   --out FILE        Markdown file to update (default BENCHMARKS.md; a full
#                     run only). Only the part between the bench:begin and
#                     bench:end marks is replaced; text around it is kept.
#   --no-write        print only
#   -h, --help
#
# Environment: CARGO_TARGET_DIR (default target-bench/, so the benchmark's
# build does not fight over the lock of target/), BENCH_TIMEOUT (seconds for
# the whole run, default 1800).
#
# What it does:
#   1. installs what is missing: tini (for /usr/bin/tini-static), dumb-init,
#      catatonit, wrk — apt-get install, apt-get update first if that fails;
#   2. builds drainit the way it ships: scripts/build-static.sh (release
#      profile, musl target; plain `cargo build --release --target
#      x86_64-unknown-linux-musl` if that script is missing);
#   3. compiles the C helpers of scripts/bench/ with gcc into a temp dir;
#   4. runs scripts/bench/bench.py, which for drainit and every peer, in the
#      same run, measures (medians of repeated runs, drainit/peer ratios):
#        1. binary size (and whether it is static and stripped);
#        2. idle RSS as PID 1: `unshare --pid --fork --mount-proc INIT sleep
#           1000`, VmRSS from /proc/PID/status once the init has been
#           quiet for 1 s (drainit: after its admin server on 127.0.0.1
#           answered 12 requests);
#        3. wakeups while idle for 10 s: voluntary + involuntary context
#           switches of all the init's threads;
#        4. start-to-exec latency: CLOCK_MONOTONIC before posix_spawn of the
#           init until its child's main() runs;
#        5. SIGUSR1 forwarding latency, p50/p99 over 1 000 signals, each sent
#           after the child's handler acknowledged the previous one;
#        6. reaping 10 000 orphans that exit at once, until none is left as a
#           zombie (the init is PID 1 of its own PID namespace);
#        7. drainit's `/ready` under wrk: 64 connections, 1 thread, 3×10 s.
#      and prints a Markdown table (targets of issues 6 and 13 marked met/missed),
#      also written to BENCHMARKS.md; raw figures go to bench-out/.
#
# Every step has a deadline and kills what it started; all traffic stays on
# loopback. A full run takes about 4 minutes on 2 CPUs. Run it on a quiet
# machine: a concurrent build skews every figure (the report shows how busy
# the CPUs were at the start and the end). Needs root (or unprivileged user
# namespaces) for unshare.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DRAINIT=""
SKIP_DRAINIT=0
INSTALL=1
QUICK=0
OUT=""
WRITE=1
PYARGS=()
ORIG_ARGS=("$@")

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --drainit) DRAINIT=$2; shift 2 ;;
        --skip-drainit) SKIP_DRAINIT=1; shift ;;
        --variant) PYARGS+=(--drainit-variant "$2"); shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        --quick) QUICK=1; PYARGS+=(--quick); shift ;;
        --only) PYARGS+=(--only "$2"); shift 2 ;;
        --runs) PYARGS+=(--runs "$2"); shift 2 ;;
        --quiet-wait) PYARGS+=(--quiet-wait "$2"); shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[bench] $*" >&2; }

# 1. peers and tools ---------------------------------------------------------
need_pkgs=()
[ -x /usr/bin/tini-static ] || need_pkgs+=(tini)
[ -x /usr/bin/dumb-init ] || need_pkgs+=(dumb-init)
[ -x /usr/bin/catatonit ] || need_pkgs+=(catatonit)
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v gcc >/dev/null || need_pkgs+=(gcc libc6-dev)
command -v unshare >/dev/null || need_pkgs+=(util-linux)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$INSTALL" = 1 ]; then
        log "installing ${need_pkgs[*]}"
        apt_opts=(-y -q -o DPkg::Lock::Timeout=300)
        export DEBIAN_FRONTEND=noninteractive
        if ! timeout 600 apt-get install "${apt_opts[@]}" "${need_pkgs[@]}" >&2; then
            timeout 600 apt-get update -q -o DPkg::Lock::Timeout=300 >&2
            timeout 600 apt-get install "${apt_opts[@]}" "${need_pkgs[@]}" >&2
        fi
    else
        log "missing ${need_pkgs[*]} and --no-install given"; exit 2
    fi
fi

# 2. drainit -----------------------------------------------------------------
DRAINIT_VERSION=""
if [ "$SKIP_DRAINIT" = 0 ] && [ -z "$DRAINIT" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-bench}
    if [ -x scripts/build-static.sh ]; then
        # the same static build that ships (musl, else glibc +crt-static)
        log "building drainit with scripts/build-static.sh into $CARGO_TARGET_DIR"
        DRAINIT=$(timeout 1200 scripts/build-static.sh | tail -n 1) || DRAINIT=""
    else
        target=x86_64-unknown-linux-musl
        rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target" >&2
        log "building drainit (release, $target) into $CARGO_TARGET_DIR"
        timeout 1200 cargo build --release --target "$target" --bin drainit >&2 &&
            DRAINIT=$CARGO_TARGET_DIR/$target/release/drainit
    fi
    if [ -z "$DRAINIT" ]; then
        log "drainit does not build; use --skip-drainit to measure the peers only"
        exit 1
    fi
fi
if [ -n "$DRAINIT" ]; then
    [ -x "$DRAINIT" ] || { log "no drainit binary at $DRAINIT"; exit 2; }
    DRAINIT_VERSION=$("$DRAINIT" --version 2>/dev/null | awk '{print $NF; exit}' || true)
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)
    if [ -n "$rev" ]; then
        git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || rev="$rev+dirty"
        DRAINIT_VERSION="${DRAINIT_VERSION:+$DRAINIT_VERSION }(git $rev)"
    fi
fi

# 3. helpers -----------------------------------------------------------------
HELPERS=$(mktemp -d "${TMPDIR:-/tmp}/drainit-bench-helpers.XXXXXX")
trap 'rm -rf "$HELPERS"' EXIT
for prog in stamp launch sigchild sigbench orphaner minireap; do
    # static where libc.a is there: no dynamic loader in the measured paths
    gcc -O2 -Wall -static -o "$HELPERS/$prog" "scripts/bench/$prog.c" 2>/dev/null ||
        gcc -O2 -Wall -o "$HELPERS/$prog" "scripts/bench/$prog.c"
done

# 4. measure -----------------------------------------------------------------
mkdir -p bench-out
if [ "$WRITE" = 1 ] && [ -z "$OUT" ] && [ "$QUICK" = 0 ]; then OUT=BENCHMARKS.md; fi
[ -n "$OUT" ] && [ "$WRITE" = 1 ] && PYARGS+=(--out "$OUT")
[ -n "$DRAINIT" ] && PYARGS+=(--drainit "$DRAINIT" --drainit-version "$DRAINIT_VERSION")
: > bench-out/bench.log
log "inits' stderr and wrk output: bench-out/bench.log"
timeout -k 10 "${BENCH_TIMEOUT:-1800}" python3 scripts/bench/bench.py \
    --helpers "$HELPERS" --log bench-out/bench.log --json bench-out/results.json \
    --command "scripts/bench.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}" "${PYARGS[@]}"

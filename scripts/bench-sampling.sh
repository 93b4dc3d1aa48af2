#!/usr/bin/env bash
# What sampling the app's sockets costs while draining (issue 20, item
# 13), in % of one core: drainit itself (`--propagation-delay auto`, the
# app's ports given with --traffic-ports, in front of `sleep`), its CPU
# time (all threads, /proc/PID/stat) over SECONDS_PER_RUN of a drain that
# keeps its traffic (so it runs to its ceiling); and beside it the
# observer alone at a fixed 100 ms pace (examples/observe.rs: what one
# dump costs). The app's connections are on one port or spread over two,
# with and without 29 000 foreign sockets in the namespace (14 500 idle
# loopback connections to an unwatched port: a hostNetwork pod's
# neighbours). Every client of the app sends a byte each second.
# Loopback only.
#
#   scripts/bench-sampling.sh                       # this tree
#   scripts/bench-sampling.sh --before main         # and REV, same run
#   OBSERVE_BEFORE=/path/to/observe DRAINIT_BEFORE=/path/to/drainit \
#       scripts/bench-sampling.sh
#
# Scenarios (goal in brackets):
#   1000 conns, 1 port                    [<= 1 % of a core]
#   1000 conns, 2 ports                   [<= 1 %]
#   1000 conns, 2 ports + 29k foreign     [<= 1 % + 1 point]
#   5000 conns, 2 ports                   [<= 3 %]
#   5000 conns, 2 ports + 29k foreign     [<= 3 % + 1 point]
#
# With --before (or OBSERVE_BEFORE and DRAINIT_BEFORE), each scenario runs
# the old and the new build one after the other (same sockets, same load)
# and prints both.
# SECONDS_PER_RUN (default 10) sets each run's length. Uses the release
# build of examples/observe.rs; prints a Markdown table on stdout. Needs a
# file limit of 15 000 per process (the soft limit is raised to the hard).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SECONDS_PER_RUN:-10}
target_dir=${CARGO_TARGET_DIR:-target}
before_rev=
while [ $# -gt 0 ]; do
    case "$1" in
        --before) before_rev=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-sampling: unknown argument $1" >&2; exit 2 ;;
    esac
done

# The foreign sockets come from two processes of 14 500 descriptors each.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 15000 ]; then
    echo "bench-sampling: the file limit $(ulimit -n) is below 15 000 (raise its hard limit)" >&2
    exit 1
fi

scratch=$(mktemp -d)
holds=()
cleanup() {
    for pid in "${holds[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

cargo build --release --quiet --example observe --bin drainit >&2
after=$target_dir/release/examples/observe
drainit_after=$target_dir/release/drainit
before=${OBSERVE_BEFORE:-}
drainit_before=${DRAINIT_BEFORE:-}
if [ -n "$before_rev" ] && [ -z "$before" ]; then
    mkdir -p "$scratch/before"
    git archive "$before_rev" | tar -x -C "$scratch/before"
    (cd "$scratch/before" && CARGO_TARGET_DIR="$scratch/before/target" \
        cargo build --release --quiet --example observe --bin drainit >&2)
    before=$scratch/before/target/release/examples/observe
    drainit_before=$scratch/before/target/release/drainit
fi
if [ -n "$before" ] && [ -z "$drainit_before" ]; then
    echo "bench-sampling: OBSERVE_BEFORE needs DRAINIT_BEFORE too" >&2
    exit 2
fi
ticks=$(getconf CLK_TCK)

# hold NAME CONNECTIONS [--send-every 1s]: a listener of its own with N
# connections to itself; sets `port`.
hold() {
    local name=$1 connections=$2
    shift 2
    "$after" hold --listen 127.0.0.1:0 --connections "$connections" "$@" --for 900s \
        >"$scratch/$name" &
    holds+=("$!")
    local pid=$!
    for _ in $(seq 1200); do
        grep -q '^holding' "$scratch/$name" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { echo "bench-sampling: hold $name exited" >&2; exit 1; }
        sleep 0.1
    done
    grep -q '^holding' "$scratch/$name" || { echo "bench-sampling: $name not up in 120 s" >&2; exit 1; }
    port=$(awk '/^holding/ { n = split($4, a, ":"); print a[n] }' "$scratch/$name")
}

stop_holds() {
    for pid in "${holds[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    holds=()
}

# measure BINARY PORTS: "CPU% dumped median-dump-ms" over one run.
measure() {
    local binary=$1 ports=$2 out=$scratch/run
    "$binary" sample --ports "$ports" --interval 100ms --count "$((seconds * 10))" >"$out"
    if grep -q '^error' "$out"; then
        echo "bench-sampling: $(grep '^error' "$out")" >&2
        exit 1
    fi
    local open dumps
    open=$(awk '/^sample/ { for (i = 1; i <= NF; i++) if ($i ~ /^open=/) o = substr($i, 6) } END { print o }' "$out")
    dumps=$(awk '/^sample/ { for (i = 1; i <= NF; i++) if ($i ~ /^dump_us=/) print substr($i, 9) }' "$out" |
        sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] / 1000 }')
    awk -v open="$open" -v dumps="$dumps" '/^done/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        printf "%.2f %s %s\n", f["cpu_us"] / 1e4 / (f["wall_us"] / 1e6), open, dumps
    }' "$out"
}

# drain_cpu DRAINIT PORTS: drainit's CPU in % of a core over SECONDS_PER_RUN
# of a drain whose traffic goes on.
drain_cpu() {
    local binary=$1 ports=$2 admin pid cpu0 cpu1
    admin=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$binary" --admin-listen "127.0.0.1:$admin" --traffic-ports "$ports" \
        --propagation-delay auto --propagation-delay-max "$((seconds + 2))s" --grace-period 120s \
        -- sleep 600 2>"$scratch/drainit.log" &
    pid=$!
    sleep 4 # the rate before the drain: four samples at the running pace
    kill -TERM "$pid"
    sleep 1
    cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
    cpu0=$(cpu)
    sleep "$seconds"
    cpu1=$(cpu)
    wait "$pid" || true
    grep -q 'delay ended: ceiling' "$scratch/drainit.log" || {
        echo "bench-sampling: the drain did not run to its ceiling:" >&2
        cat "$scratch/drainit.log" >&2
        exit 1
    }
    awk -v a="$cpu0" -v b="$cpu1" -v t="$ticks" -v s="$seconds" 'BEGIN { printf "%.2f", (b - a) / t / s * 100 }'
}

printf '%s\n' "bench-sampling: kernel $(uname -r), TCP hash table $(cat /proc/sys/net/ipv4/tcp_ehash_entries 2>/dev/null || echo '?') entries, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $seconds s per run" >&2
if [ -n "$before" ]; then
    echo "| scenario | drainit draining, before | after | goal | observer every 100 ms, before | after | dump median before / after |"
    echo "|---|---|---|---|---|---|---|"
else
    echo "| scenario | drainit draining | goal | observer every 100 ms | dump median |"
    echo "|---|---|---|---|---|"
fi

# row LABEL PORTS GOAL
row() {
    local label=$1 ports=$2 goal=$3 new old drain_new drain_old
    drain_new=$(drain_cpu "$drainit_after" "$ports")
    new=$(measure "$after" "$ports")
    read -r cpu_new open dump_new <<<"$new"
    if [ -n "$before" ]; then
        drain_old=$(drain_cpu "$drainit_before" "$ports")
        old=$(measure "$before" "$ports")
        read -r cpu_old _ dump_old <<<"$old"
        echo "| $label | $drain_old % | $drain_new % | $goal | $cpu_old % | $cpu_new % | $dump_old / $dump_new ms |"
    else
        echo "| $label | $drain_new % | $goal | $cpu_new % | $dump_new ms |"
    fi
    [ "$open" = "${label%% *}" ] || echo "bench-sampling: $label: the observer saw $open open connections" >&2
}

port=
for total in 1000 5000; do
    goal=$([ "$total" = 1000 ] && echo "≤ 1 %" || echo "≤ 3 %")
    hold "one-$total" "$total" --send-every 1s
    row "$total conns, 1 port" "$port" "$goal"
    stop_holds
    hold "a-$total" "$((total / 2))" --send-every 1s
    a=$port
    hold "b-$total" "$((total / 2))" --send-every 1s
    row "$total conns, 2 ports" "$a,$port" "$goal"
    b=$port
    hold "foreign-a-$total" 7250
    hold "foreign-b-$total" 7250
    row "$total conns, 2 ports, 29k foreign sockets" "$a,$b" "$goal + 1 point"
    stop_holds
done

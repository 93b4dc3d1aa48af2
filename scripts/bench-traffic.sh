#!/usr/bin/env bash
# What the traffic observation (src/traffic.rs) costs: CPU per second of
# the observer, and how long one dump takes, with CONNECTIONS (1000)
# established loopback connections on one port, each client sending a
# byte every second. Three runs of SECONDS_PER_RUN (10) seconds each:
#
#   drain pace    one sample every 100 ms (traffic::DRAIN_INTERVAL), the
#                 watched port given, so the kernel filters by port
#   running pace  one sample every 1 s (traffic::RUNNING_INTERVAL)
#   all ports     100 ms, every listening port of the namespace: no kernel
#                 filter, the clients' 1000 sockets are dumped and decoded
#                 too (the worst case: clients and server in one namespace)
#   empty netns   100 ms in a fresh network namespace with one listener and
#                 no connection (root only: unshare --net): the fixed cost,
#                 mostly the walk over the kernel's TCP hash table, which
#                 all namespaces share
#
#   scripts/bench-traffic.sh
#   CONNECTIONS=200 SECONDS_PER_RUN=5 scripts/bench-traffic.sh
#
# Uses the release build of examples/observe.rs (the product's release
# profile). Prints one line per run and, first, what the figures depend
# on: the kernel, the size of its TCP hash table (a dump walks all of it),
# the load average (this machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."

connections=${CONNECTIONS:-1000}
seconds=${SECONDS_PER_RUN:-10}
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --release --quiet --example observe >&2
observe=$target_dir/release/examples/observe
[ -x "$observe" ] || { echo "bench-traffic: $observe was not built" >&2; exit 1; }

scratch=$(mktemp -d)
hold_pid=
cleanup() {
    [ -n "$hold_pid" ] && kill "$hold_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

"$observe" hold --listen 127.0.0.1:0 --connections "$connections" --send-every 1s \
    --for "$((3 * seconds + 60))s" >"$scratch/hold" &
hold_pid=$!
for _ in $(seq 600); do
    grep -q '^holding' "$scratch/hold" 2>/dev/null && break
    kill -0 "$hold_pid" 2>/dev/null || { echo "bench-traffic: hold exited" >&2; exit 1; }
    sleep 0.1
done
grep -q '^holding' "$scratch/hold" || { echo "bench-traffic: connections not up in 60 s" >&2; exit 1; }
port=$(awk '/^holding/ { n = split($4, a, ":"); print a[n] }' "$scratch/hold")

ehash=$(cat /proc/sys/net/ipv4/tcp_ehash_entries 2>/dev/null || echo unknown)
echo "bench-traffic: kernel $(uname -r), TCP hash table $ehash entries, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-traffic: $connections established loopback connections on port $port, $seconds s per run"

# run LABEL INTERVAL_MS PORTS [WRAPPER...]
run() {
    local label=$1 interval_ms=$2 ports=$3
    shift 3
    local count=$((seconds * 1000 / interval_ms))
    "$@" "$observe" sample --ports "$ports" --interval "${interval_ms}ms" --count "$count" \
        ${LISTEN:+--listen "$LISTEN"} >"$scratch/$label"
    if grep -q '^error' "$scratch/$label"; then
        echo "bench-traffic: $label: $(grep '^error' "$scratch/$label")" >&2
        exit 1
    fi
    local open
    open=$(awk '/^sample/ { for (i = 1; i <= NF; i++) if ($i ~ /^open=/) o = substr($i, 6) } END { print o }' "$scratch/$label")
    # Dump durations, sorted: median, 90th percentile, max (ms).
    local dumps
    dumps=$(awk '/^sample/ { for (i = 1; i <= NF; i++) if ($i ~ /^dump_us=/) print substr($i, 9) }' "$scratch/$label" |
        sort -n | awk '{ v[NR] = $1 } END { printf "%.2f %.2f %.2f", v[int((NR + 1) / 2)] / 1000, v[int(NR * 0.9 + 0.5)] / 1000, v[NR] / 1000 }')
    read -r median p90 max <<<"$dumps"
    awk -v label="$label" -v interval="$interval_ms" -v open="$open" -v median="$median" -v p90="$p90" -v max="$max" '
        /^done/ {
            for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
            wall = f["wall_us"] / 1e6
            printf "%-13s every %4d ms: %4d open seen, dump median %s ms, p90 %s ms, max %s ms; CPU %.1f ms/s (%.2f%% of a core; user %.1f, system %.1f ms/s); RSS +%d kB\n",
                label, interval, open, median, p90, max,
                f["cpu_us"] / 1000 / wall, f["cpu_us"] / 1e4 / wall, f["user_us"] / 1000 / wall, f["system_us"] / 1000 / wall,
                f["rss_growth_kb"]
        }' "$scratch/$label"
}

run "drain pace" 100 "$port"
run "running pace" 1000 "$port"
run "all ports" 100 all
if unshare --net true 2>/dev/null; then
    LISTEN=0.0.0.0:8099 run "empty netns" 100 8099 unshare --net
else
    echo "bench-traffic: empty netns skipped: unshare --net needs root"
fi

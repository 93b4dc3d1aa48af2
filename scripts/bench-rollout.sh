#!/usr/bin/env bash
# How long a pod takes to terminate with drainit next to `preStop: sleep D`,
# the speed claim of the rollout rig (tests/rollout/rig.py): with the same
# D, drainit's pods (setups 4 and 5, and 7 until both containers of the
# sidecar pod have exited) should end no later than setup 3's. A timing
# comparison, so a benchmark and not a test: tests/it/rollout.rs keeps
# the contract (no failed request, the stop signal after the delay).
#
#   scripts/bench-rollout.sh                 # the quick run (D = 2 s, ~100 s)
#   scripts/bench-rollout.sh --delay 5       # any further flags go to rig.py
#   TOLERANCE=0.4 scripts/bench-rollout.sh   # seconds of scheduling noise allowed
#
# Root, haproxy, tini and python3 (as for the rig). Prints the load
# average first (this machine is shared), then one line per setup; exits
# 1 if a drainit setup is slower than sleep D by more than TOLERANCE.
set -euo pipefail
cd "$(dirname "$0")/.."

tolerance=${TOLERANCE:-0.4}
cargo build --quiet --bin drainit
target_dir=${CARGO_TARGET_DIR:-target}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
results=$(python3 tests/rollout/rig.py --quick --setups 3,4,5,7 \
    --drainit "$target_dir/debug/drainit" "$@" | grep '^RESULT ')
echo "$results" | awk -v tolerance="$tolerance" '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); row[kv[1]] = kv[2] }
      term[row["setup"]] = row["term_mean"] + 0 }
    END {
        if (!("3" in term)) { print "bench-rollout: no result for setup 3 (preStop sleep D)"; exit 1 }
        printf "setup 3 (preStop sleep D): termination %.3f s\n", term["3"]
        slower = 0
        split("4 5 7", ids, " ")
        for (n = 1; n <= 3; n++) {
            id = ids[n]
            if (!(id in term)) { printf "setup %s: no result\n", id; slower = 1; continue }
            diff = term[id] - term["3"]
            verdict = diff <= tolerance ? "ok" : "SLOWER"
            if (diff > tolerance) slower = 1
            printf "setup %s (drainit): termination %.3f s, %+.3f s against sleep D: %s\n", id, term[id], diff, verdict
        }
        exit slower
    }'

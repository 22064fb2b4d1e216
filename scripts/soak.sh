#!/usr/bin/env bash
# A long simulation soak, meant for the background: `scripts/soak.sh [seeds] [first]`
# (default 100,000 seeds from 1,000,000) across the 3- and 5-member fault scenarios. Every seed
# runs even after a failure; the log keeps each failure's replay command. At the end it prints
# the summary: runs, simulated time, checked operations, faults by kind, failures.
#
#   nohup scripts/soak.sh 100000 > soak.out 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-100000}
first=${2:-1000000}
log=${SOAK_LOG:-target/soak-$(date +%Y%m%d-%H%M%S).log}
half=$(( (seeds + 1) / 2 ))
echo "soak: $seeds seeds from $first, log in $log" >&2
# One scenario at a time, its seeds spread over every core: the 3-member scenario runs about
# twice as fast as the 5-member one, so running the two side by side would leave a core idle.
: >"$log"
threads=${SIM_THREADS:-$(nproc)}
for scenario in three_members_under_faults five_members_under_faults; do
    SIM_KEEP_GOING=1 SIM_FIRST=$first SIM_RUNS=$half SIM_THREADS=$threads \
        cargo test --features sim --test sim "$scenario" -- --nocapture --test-threads 1 >>"$log" 2>&1 || true
done
echo "== summary"
grep -E 'runs, .* simulated s' "$log" || echo "no coverage line: the run did not finish (see $log)"
failed=$(grep -c '^seed [0-9]* failed' "$log" || true)
echo "failures: $failed"
grep -A1 '^seed [0-9]* failed' "$log" | grep '^replay with' || true

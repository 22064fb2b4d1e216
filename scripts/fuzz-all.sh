#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS (default 600) each, two at a time, on the stable
# toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags; no sanitizer: the crate has
# no unsafe code). New inputs land in fuzz/corpus/<target>/, crashes in fuzz/artifacts/<target>/.
# Prints each target's executions and findings from libFuzzer's log (fuzz/logs/<target>.log).
#   cargo install cargo-fuzz --locked; scripts/fuzz-all.sh [SECONDS]
set -u
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-600}
TARGETS=(wal_segment wal_damage snapshot_file store_snapshot membership raft_messages client_request)
mkdir -p logs
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none -O >/dev/null 2>&1 || { echo "cargo fuzz build failed"; exit 1; }
run() {
  cargo fuzz run --sanitizer none -O "$1" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
    -print_final_stats=1 >"logs/$1.log" 2>&1
  echo "$1: exit $?, $(grep -E '^Done' "logs/$1.log"), crashes: $(ls "artifacts/$1" 2>/dev/null | wc -l)"
}
for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
  run "${TARGETS[i]}" &
  [ $((i + 1)) -lt ${#TARGETS[@]} ] && run "${TARGETS[i + 1]}" &
  wait
done

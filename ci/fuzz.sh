#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 10), seeded from
# fuzz/seeds/<target>/ (the conformance table's rows and the shipped configs), and prints how
# many inputs each executed. Exits non-zero if any target crashes, panics, leaks or times out;
# the reproducer is left in fuzz/artifacts/<target>/.
#
#   ci/fuzz.sh            # 10 s per target
#   ci/fuzz.sh 300        # 5 min per target
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail

secs="${1:-10}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../fuzz"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

cargo +nightly fuzz build
failed=0
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target" "seeds/$target"
    log="$(mktemp)"
    # corpus/<target> is written (new inputs land there); seeds/<target> is only read.
    if cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        execs="$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log" | tail -n 1)"
        echo "$target: ok, ${execs:-?} executions in ${secs}s"
    else
        echo "$target: FAILED (log tail below; reproducer in fuzz/artifacts/$target/)"
        # The input's Debug dump can be huge: show the verdict lines, each cut to 300 columns.
        grep -a -E "panicked|assertion|left:|right:|SUMMARY|ERROR|Test unit written|Reproduce" "$log" \
            | cut -c1-300 | head -n 40
        failed=1
    fi
    rm -f "$log"
done
exit "$failed"

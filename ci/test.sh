#!/usr/bin/env bash
# The one test command (README: "The two commands"; .ci/run calls it too).
#
#   bash ci/test.sh                         # everything
#   SKIP=browser,fuzz bash ci/test.sh       # skip steps by name (listed as skipped, not passed)
#   FAIL_FAST=1 bash ci/test.sh             # stop at the first failing step
#
# First ci/setup.sh installs whatever the steps need and the machine lacks (or, without root,
# stops at once with the command to run). Then every step runs, even after one fails; a step
# that cannot run (a tool missing) fails. The summary lists each step with its result and time,
# and the last line printed is `N passed, M failed[, K skipped]`: tests counted from cargo's
# `test result:` lines, plus one per step that is not a cargo test run, plus one skipped per
# skipped step. The exit status is 0 only when nothing failed.
#
# Adding a step: `step NAME COMMAND...` below (NAME also goes into STEP_NAMES).
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

STEP_NAMES="fmt clippy cross tests asan kqueue sim browser soak fuzz bench newcomer workflow"
TARGETS="x86_64-unknown-freebsd x86_64-apple-darwin aarch64-apple-darwin"

SKIP="$(printf '%s' "${SKIP:-}" | tr ' ' ',')"
export SKIP
for s in ${SKIP//,/ }; do
    case " $STEP_NAMES " in
        *" $s "*) ;;
        *) echo "ci/test.sh: SKIP names an unknown step '$s' (steps: $STEP_NAMES)"; echo "0 passed, 1 failed"; exit 2 ;;
    esac
done
skipped() { case ",$SKIP," in *",$1,"*) return 0 ;; esac; return 1; }

LOGS="target/ci-logs"
mkdir -p "$LOGS"
T0=$SECONDS
rows=()          # summary rows
absent=()        # optional steps whose script is not in this checkout
PASSED=0 FAILED=0 SKIPPED=0

dur() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# step NAME COMMAND... : runs COMMAND (output shown and kept in target/ci-logs/NAME.log),
# times it and counts its tests.
step() {
    local name=$1
    shift
    if skipped "$name"; then
        printf '\n==> %s: SKIPPED (SKIP=%s)\n' "$name" "$SKIP"
        rows+=("$(printf '%-9s %-8s %8s  %s' "$name" skipped - "skipped by name")")
        SKIPPED=$((SKIPPED + 1))
        return 0
    fi
    printf '\n==> %s: %s\n' "$name" "$*"
    local log="$LOGS/$name.log" start=$SECONDS rc
    # A command (not a function of this script) gets a time limit, so that one hung step
    # (a stuck client, a deadlock) fails the run instead of eating CI's whole budget.
    if declare -F "$1" >/dev/null; then
        "$@" 2>&1 | tee "$log"
    else
        timeout -k 30 "${STEP_TIMEOUT:-1800}" "$@" 2>&1 | tee "$log"
    fi
    rc=${PIPESTATUS[0]}
    local took=$((SECONDS - start))
    # cargo test: "test result: ok. 12 passed; 0 failed; 1 ignored; ..."
    local p f i
    read -r p f i < <(awk '
        /^test result: / {
            for (k = 1; k <= NF; k++) {
                if ($k ~ /^passed;?$/) p += $(k - 1)
                if ($k ~ /^failed;?$/) f += $(k - 1)
                if ($k ~ /^ignored;?$/) i += $(k - 1)
            }
            n++
        }
        END { if (n) print p + 0, f + 0, i + 0; else print "- - -" }' "$log")
    local what
    if [ "$p" = - ]; then
        if [ "$rc" = 0 ]; then p=1 f=0; else p=0 f=1; fi
        what="1 check"
    else
        # A test binary that crashed, or a build that failed after some suites ran, prints no
        # failed count of its own: the step still counts one failure.
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
        what="$p passed, $f failed$([ "$i" = 0 ] || echo ", $i ignored")"
    fi
    # A step that let a suite pass on a second run says so (ci/kqueue.sh): never silently.
    if grep -q '^==> [a-z]*: FLAKY: ' "$log"; then
        what="$what; FLAKY: $(grep -m1 '^==> [a-z]*: FLAKY: ' "$log" | sed 's/.*passed when run again: //')"
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    local result=passed
    [ "$rc" = 0 ] || result="FAILED"
    rows+=("$(printf '%-9s %-8s %8s  %s' "$name" "$result" "$(dur "$took")" "$what$([ "$rc" = 0 ] || echo " (exit $rc; log: $log)")")")
    if [ "$rc" != 0 ] && [ "${FAIL_FAST:-}" = 1 ]; then
        absent+=("the steps after $name (FAIL_FAST=1)")
        summary
        exit 1
    fi
}

# An optional step whose script another change brings: run when present, said loudly when not.
optional_step() { # NAME SCRIPT
    if [ -f "$2" ]; then
        step "$1" bash "$2"
    elif skipped "$1"; then
        step "$1" true
    else
        printf '\n!!! %s: %s is not in this checkout: step NOT RUN, NOT PROVEN !!!\n' "$1" "$2"
        absent+=("$1 ($2 absent)")
    fi
}

summary() {
    printf '\n==> summary (%s in all; logs in %s/)\n' "$(dur $((SECONDS - T0)))" "$LOGS"
    printf '%-9s %-8s %8s  %s\n' step result time tests
    printf '%-9s %-8s %8s  %s\n' setup done "$SETUP_TIME" "$SETUP_NOTE"
    local r
    for r in "${rows[@]}"; do echo "$r"; done
    for r in "${absent[@]+"${absent[@]}"}"; do echo "!!! not run: $r"; done
    if [ "$SKIPPED" -gt 0 ]; then
        echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    else
        echo "$PASSED passed, $FAILED failed"
    fi
}

# ---- setup: stops everything at once when it cannot install what is missing ---------------
printf '==> setup: bash ci/setup.sh\n'
setup_rc=0
bash ci/setup.sh 2>&1 | tee "$LOGS/setup.log"
setup_rc=${PIPESTATUS[0]}
if [ "$setup_rc" != 0 ]; then
    echo "ci/test.sh: setup failed (see above); no step was run."
    echo "0 passed, 1 failed"
    exit 1
fi
SETUP_TIME="$(dur $((SECONDS - T0)))"
SETUP_NOTE="$(grep -E '^setup: (nothing missing|installed)' "$LOGS/setup.log" | tail -n 1 | sed 's/^setup: //')"

# ---- the steps ----------------------------------------------------------------------------
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets --features sim -- -D warnings

# The kqueue backend only compiles for BSD/macOS: type-check and lint it for each such target.
cross() {
    local t
    for t in $TARGETS; do
        echo "-- $t"
        local cc_env=()
        case "$t" in
            *-apple-darwin)
                # ring (rustls's crypto) compiles C even for a check, and there is no macOS SDK
                # here: clang, freestanding, ring's own no-libc switch, and a stand-in
                # TargetConditionals.h (ci/cross-include/). Nothing built so is linked.
                local u="${t//-/_}"
                cc_env=("CC_$u=clang" "AR_$u=llvm-ar"
                    "CFLAGS_$u=-ffreestanding -nostdlibinc -DRING_CORE_NOSTDLIBINC=1 -I$PWD/ci/cross-include")
                ;;
        esac
        env "${cc_env[@]}" cargo check --workspace --lib --bins --target "$t" || return 1
        env "${cc_env[@]}" cargo clippy --workspace --lib --bins --target "$t" -- -D warnings || return 1
    done
}
step cross cross

step tests cargo test --workspace --profile ci --no-fail-fast -- --test-threads=2

# AddressSanitizer over the backends crate, and kqueue on Linux through libkqueue.
optional_step asan ci/asan.sh
optional_step kqueue ci/kqueue.sh
# The deterministic simulation: the real server loop on the simulated backend, 10,000 seeds
# (a long campaign: ci/sim.sh SECONDS).
step sim cargo test --profile ci --features sim --test sim -- --test-threads=1

# browser.sh exits 77 when chromium or node is missing: here that is a failure like any other.
step browser bash ci/browser.sh
step soak bash ci/soak.sh --short
step fuzz bash ci/fuzz.sh 10

# Once each, as a smoke test, built with the suites' `ci` profile (already built by then; the
# bench profile's LTO build is for measuring: `cargo bench` by hand).
benches() {
    cargo bench --profile ci -p backends --bench echo -- --quick --noplot >"$LOGS/bench-echo.out" &&
        cargo bench --profile ci --bench parser -- --quick --noplot >"$LOGS/bench-parser.out" &&
        cargo bench --profile ci --bench config -- --quick --noplot >"$LOGS/bench-config.out" &&
        echo "benches ran once each (output: $LOGS/bench-*.out)"
}
step bench benches

# The README's first command from a fresh clone: 200 with the index page, then SIGTERM -> 0.
step newcomer bash ci/newcomer.sh

workflow_check() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import yaml' 2>/dev/null; then
            "$py" ci/check_workflow.py .github/workflows/ci.yml
            return
        fi
    done
    echo "no python3 with PyYAML (Debian: apt-get install python3-yaml)"
    return 1
}
step workflow workflow_check

summary
[ "$FAILED" = 0 ]

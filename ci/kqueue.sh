#!/usr/bin/env bash
# kqueue on Linux through libkqueue: builds libkqueue from ../shared/third_party/ (cached in
# target/libkqueue/), then runs the backend conformance suite and every end-to-end suite on the
# kqueue backend (feature `libkqueue`), and the browser test on kqueue.
#
#   bash ci/kqueue.sh            # all of it
#   NO_BROWSER=1 bash ci/kqueue.sh
#
# Without the libkqueue tarball (a user's clone) this says SKIPPED loudly and exits 77 — or 1
# under CI=true, where kqueue must be proven. Needs cmake and a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

TARBALL="${LIBKQUEUE_TARBALL:-../shared/third_party/libkqueue-f966089.tar.gz}"
# The tarball's commit and our patch level: either changing gets a fresh build directory.
STAMP=f966089-p1

skip() {
    echo "" >&2
    echo "==================================================================" >&2
    echo "kqueue (libkqueue): SKIPPED — not proven here ($1)" >&2
    echo "==================================================================" >&2
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    exit 77
}

[ -f "$TARBALL" ] || skip "no $TARBALL"
command -v cmake >/dev/null || skip "cmake not installed (apt-get install cmake)"
command -v cc >/dev/null || skip "no C compiler (cc)"

# Build once per tarball; the install prefix is what backends/build.rs links from.
ROOT="$PWD/target/libkqueue"
export LIBKQUEUE_DIR="$ROOT/install"
if [ ! -f "$LIBKQUEUE_DIR/lib/libkqueue.a" ] || [ "$(cat "$ROOT/stamp" 2>/dev/null)" != "$STAMP" ]; then
    echo "==> building libkqueue ($STAMP) into $ROOT"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    tar -xzf "$TARBALL" -C "$ROOT"
    # libkqueue drops events: one epoll event of a socket watched for reading and writing
    # becomes two kevents, and when the caller's kevent array fills, the epoll events not yet
    # copied out are lost (epoll already handed them over; edge-triggered, they never come
    # back). A burst of 300 closes left ~40 connections in CLOSE-WAIT. Asking epoll for at
    # most half as many events as kevent slots makes the array always large enough.
    wait_c="$ROOT/libkqueue/src/linux/platform.c"
    grep -q 'epoll_wait(kqueue_epoll_fd(kq), epoll_events, nevents, timeout)' "$wait_c" \
        || { echo "FAIL: libkqueue patch: epoll_wait call not found in $wait_c" >&2; exit 1; }
    sed -i 's/epoll_wait(kqueue_epoll_fd(kq), epoll_events, nevents, timeout)/epoll_wait(kqueue_epoll_fd(kq), epoll_events, nevents > 1 ? nevents \/ 2 : 1, timeout)/' "$wait_c"
    cmake -S "$ROOT/libkqueue" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$LIBKQUEUE_DIR" >"$ROOT/build.log" 2>&1 \
        && cmake --build "$ROOT/build" -j2 >>"$ROOT/build.log" 2>&1 \
        && cmake --install "$ROOT/build" >>"$ROOT/build.log" 2>&1 \
        || { tail -30 "$ROOT/build.log" >&2; echo "FAIL: libkqueue build (log: $ROOT/build.log)" >&2; exit 1; }
    echo "$STAMP" >"$ROOT/stamp"
else
    echo "==> libkqueue ($STAMP) already built in $ROOT"
fi

# The libkqueue FFI module compiles only with the feature: lint it here (ci/test.sh's clippy
# runs without it).
echo "==> clippy with --features libkqueue"
cargo clippy --workspace --all-targets --features libkqueue -j2 -- -D warnings

# Only kqueue: uring and epoll are ci/test.sh's plain run. The conformance suite prints
# "<test>: ran on kqueue" for each test (--show-output), the e2e suites the same.
export BACKENDS_ONLY=kqueue
export WEBSERV_E2E_BACKEND=kqueue

echo "==> conformance + end-to-end suites on kqueue (libkqueue)"
out=$(mktemp "${TMPDIR:-/tmp}/webserv-kqueue.XXXXXX")
trap 'rm -f "$out"' EXIT
suites() {
    cargo test --profile ci --workspace --features libkqueue --no-fail-fast -j2 -- --test-threads=2 --show-output
}
set +e
suites >"$out" 2>&1
rc=$?
set -e
# A suite that failed is run once more, by itself. Twice now (stop 20, and this script's first
# run of 2026-12-02) one first request of an end-to-end test was refused (ECONNREFUSED) right
# after the harness had connected to the server's port, with the server's log showing it
# listening and exiting cleanly; only on kqueue (libkqueue), never reproduced locally (250 runs
# of the suites concerned, idle and loaded). A harness race that gives exactly this (the port
# wait answered by a leftover of free_port's listener in another test's child) is closed; that
# it was the cause is not proven (README, "kqueue on Linux"). A suite that fails again fails
# the step; one that passes is named as FLAKY here and in the step's summary line, and its
# first run's result line is kept but relabelled, so that the step counts the second run.
flaky=""
if [ "$rc" -ne 0 ]; then
    mapfile -t again < <(grep -o 'to rerun pass `[^`]*`' "$out" | sed 's/^to rerun pass `//; s/`$//' | sort -u)
    if [ "${#again[@]}" -gt 0 ]; then
        second=$(mktemp "${TMPDIR:-/tmp}/webserv-kqueue-again.XXXXXX")
        rc2=0
        for a in "${again[@]}"; do
            echo "==> kqueue: running again: cargo test $a" >>"$second"
            # shellcheck disable=SC2086 # $a is cargo's own "-p P --test T" words
            cargo test --profile ci --features libkqueue -j2 $a -- --test-threads=2 --show-output >>"$second" 2>&1 || rc2=$?
        done
        if [ "$rc2" -eq 0 ]; then
            flaky="${again[*]}"
            sed -i 's/^test result: FAILED\./first run, failed (run again below): FAILED./' "$out"
            rc=0
        fi
        cat "$second" >>"$out"
        rm -f "$second"
    fi
fi
cat "$out"
if [ -n "$flaky" ]; then
    echo "==> kqueue: FLAKY: failed on the first run and passed when run again: $flaky"
fi
ran=$(grep -c ': ran on kqueue$' "$out" || true)
other=$(grep ': ran on ' "$out" | grep -vc ': ran on kqueue$' || true)
passed=$(awk '/^test result:/ { s += $4 } END { print s + 0 }' "$out")
echo "==> kqueue: $ran test bodies said 'ran on kqueue'; $passed tests passed in all; exit $rc"
if [ "$rc" -ne 0 ]; then
    echo "FAIL: cargo test on kqueue (libkqueue)" >&2
    exit "$rc"
fi
if [ "$ran" -eq 0 ] || [ "$other" -ne 0 ]; then
    echo "FAIL: expected every backend test to run on kqueue only ($ran on kqueue, $other elsewhere)" >&2
    exit 1
fi

if [ "${NO_BROWSER:-}" = "1" ]; then
    echo "NOTE: browser test on kqueue not run (NO_BROWSER=1)" >&2
    exit 0
fi
echo "==> browser test on kqueue"
rc=0
BACKENDS=kqueue CARGO_FEATURES=libkqueue CARGO_PROFILE=ci bash ci/browser.sh || rc=$?
if [ "$rc" -eq 77 ]; then
    echo "NOTE: browser test on kqueue SKIPPED (not passed): install chromium and Node >= 20" >&2
    exit 77
fi
exit "$rc"

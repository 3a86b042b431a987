#!/usr/bin/env bash
# The backends' tests under AddressSanitizer: user-space misuse of memory the backends hand to
# the kernel or take back (use after free, overflow, double free) aborts the run. ASan does not
# see the kernel's own writes: the conformance tests that check the bytes peers receive cover
# those. Needs the nightly toolchain (rustup toolchain install nightly). A separate target dir
# keeps the instrumented build from invalidating the normal one.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
        echo "asan: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
        exit 1
    fi
    echo "NOTE: asan SKIPPED (not passed): no nightly toolchain" >&2
    exit 77
fi

host=x86_64-unknown-linux-gnu
# detect_leaks=0: the backend leaks on purpose what the kernel may still hold when it is
# dropped with operations in flight (and the test harness leaks its own bits).
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
RUSTFLAGS="-Zsanitizer=address ${RUSTFLAGS:-}" \
RUSTDOCFLAGS="-Zsanitizer=address" \
    cargo +nightly test --target "$host" --target-dir target/asan -p backends --release \
    -- --test-threads=2 "$@"
